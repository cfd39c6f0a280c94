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
/// PMAPPROC_DUMP.
pub const PMAPPROC_DUMP: u32 = 4;
/// Entries of a DUMP reply read at most (a local rpcbind holds a few dozen).
pub const MAX_MAPPINGS: usize = 4096;

/// One registration as the portmapper lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Program.
    pub prog: u32,
    /// Version.
    pub vers: u32,
    /// IPPROTO_UDP or IPPROTO_TCP.
    pub prot: u32,
    /// Port.
    pub port: u32,
}

/// Encode DUMP (no arguments): every registration. Unlike GETPORT, which answers with
/// another version's port when the asked one is missing, DUMP shows exactly what is there.
pub fn encode_dump(out: &mut [u8], xid: u32) -> Result<usize, XdrError> {
    let mut w = Writer::new(out);
    pmap_call(&mut w, xid, PMAPPROC_DUMP)?;
    Ok(w.position())
}

/// The call header of portmapper v2 procedure `proc_`, unauthenticated.
fn pmap_call(w: &mut Writer<'_>, xid: u32, proc_: u32) -> Result<(), XdrError> {
    emit_call(w, xid, PMAP_PROGRAM, PMAP_VERSION, proc_, &Credential::None)
}

/// Decode the reply to DUMP `xid`: the `pmaplist` (XDR optional-pointer list).
pub fn decode_dump_reply(msg: &[u8], xid: u32) -> Result<Vec<Mapping>, ReplyCheckError> {
    let results = accepted_results(msg, xid)?;
    let mut r = Reader::new(results);
    let mut all = Vec::new();
    let bad = ReplyCheckError::BadResult;
    while r.bool().map_err(bad)? {
        if all.len() >= MAX_MAPPINGS {
            return Err(bad(XdrError::TooLong {
                len: all.len() + 1,
                max: MAX_MAPPINGS,
            }));
        }
        all.push(Mapping {
            prog: r.u32().map_err(bad)?,
            vers: r.u32().map_err(bad)?,
            prot: r.u32().map_err(bad)?,
            port: r.u32().map_err(bad)?,
        });
    }
    Ok(all)
}
/// `prot` value of UDP (its IP protocol number, widened to the XDR word).
pub const IPPROTO_UDP: u32 = mount_ebpf::wire::IPPROTO_UDP as u32;
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
    pmap_call(&mut w, xid, PMAPPROC_GETPORT)?;
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

    #[test]
    fn dump_round_trip() {
        let mut out = [0u8; 64];
        let n = encode_dump(&mut out, 8).unwrap();
        let call = Call::parse(&out[..n]).unwrap();
        assert_eq!((call.prog, call.proc_, call.args.len()), (100_000, 4, 0));
        let mut reply = [0u8; 128];
        let n = crate::rpc::encode_success(&mut reply, 8, |w| {
            for v in [1, 100_005, 3, 17, 644, 1, 100_000, 2, 6, 111, 0] {
                w.put_u32(v)?;
            }
            Ok(())
        })
        .unwrap();
        let got = decode_dump_reply(&reply[..n], 8).unwrap();
        assert_eq!(
            got,
            vec![
                Mapping {
                    prog: 100_005,
                    vers: 3,
                    prot: 17,
                    port: 644
                },
                Mapping {
                    prog: 100_000,
                    vers: 2,
                    prot: 6,
                    port: 111
                }
            ]
        );
        // A list that never ends is an error, not a hang.
        assert!(decode_dump_reply(&reply[..n - 4], 8).is_err());
    }
}
