//! Portmapper version 2 PMAPPROC_GETPORT (RFC 1833 section 3), sans-IO: "on which port does
//! program P version V listen over protocol X". Every rpcbind answers it on port 111.
use super::{emit_call, Credential};
use crate::mount::client::{accepted_results, ReplyCheckError};
use crate::xdr::{Reader, Writer, XdrError};

/// The portmapper's program number.
pub const PMAP_PROGRAM: u32 = 100_000;
/// Portmapper protocol version 2.
pub const PMAP_VERSION: u32 = 2;
/// PMAPPROC_GETPORT.
pub const PMAPPROC_GETPORT: u32 = 3;
/// `prot` value of UDP.
pub const IPPROTO_UDP: u32 = 17;
/// `prot` value of TCP.
pub const IPPROTO_TCP: u32 = 6;
/// The portmapper's well-known port.
pub const PMAP_PORT: u16 = 111;

/// Encode GETPORT for (`prog`, `vers`, `prot`); returns the call's length.
pub fn encode_getport(
    out: &mut [u8],
    xid: u32,
    prog: u32,
    vers: u32,
    prot: u32,
) -> Result<usize, XdrError> {
    let mut w = Writer::new(out);
    emit_call(
        &mut w,
        xid,
        PMAP_PROGRAM,
        PMAP_VERSION,
        PMAPPROC_GETPORT,
        &Credential::None,
    )?;
    // struct mapping { prog, vers, prot, port (ignored) }
    for v in [prog, vers, prot, 0] {
        w.put_u32(v)?;
    }
    Ok(w.position())
}

/// Decode the reply to GETPORT `xid`: the port, 0 when the program is not registered.
pub fn decode_getport_reply(msg: &[u8], xid: u32) -> Result<u16, ReplyCheckError> {
    let results = accepted_results(msg, xid)?;
    let port = Reader::new(results)
        .u32()
        .map_err(ReplyCheckError::BadResult)?;
    u16::try_from(port).map_err(|_| ReplyCheckError::BadResult(XdrError::BadValue(port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Call;

    #[test]
    fn getport_round_trip() {
        let mut out = [0u8; 128];
        let n = encode_getport(&mut out, 3, 100_005, 3, IPPROTO_UDP).unwrap();
        let call = Call::parse(&out[..n]).unwrap();
        assert_eq!((call.prog, call.vers, call.proc_), (100_000, 2, 3));
        assert_eq!(
            call.args,
            &[0, 1, 0x86, 0xa5, 0, 0, 0, 3, 0, 0, 0, 17, 0, 0, 0, 0][..]
        );
        let mut reply = [0u8; 64];
        let n = crate::rpc::encode_success(&mut reply, 3, |w| w.put_u32(644)).unwrap();
        assert_eq!(decode_getport_reply(&reply[..n], 3), Ok(644));
        assert!(decode_getport_reply(&reply[..n], 4).is_err());
        let n = crate::rpc::encode_success(&mut reply, 3, |w| w.put_u32(70_000)).unwrap();
        assert!(decode_getport_reply(&reply[..n], 3).is_err());
    }
}
