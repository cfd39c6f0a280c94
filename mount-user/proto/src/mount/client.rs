//! The client side of MOUNT, sans-IO: encode the MNT and UMNT calls a gateway sends to its
//! upstream MOUNT server and decode what comes back (`mountres3`, v1 `fhstatus`).
//!
//! Used by `upstream` (gateway mode). Decoding is strict: a reply that does not decode, does
//! not answer our xid, or carries a handle the protocol cannot carry is an error, never a
//! handle, so garbage from upstream can never reach a client as a file handle.
use super::wire::{FhStatus, MountRes3};
use super::{procs, MNTPATHLEN, MOUNT_PROGRAM};
use crate::exports::FileHandle;
use crate::rpc::{self, AcceptStat, AuthSys, Credential, RejectStat, Reply, ReplyBody};
use crate::xdr::{Reader, Writer, XdrError};

/// Room for the largest call we send: header, AUTH_SYS credential, a 1024-byte path.
pub const MAX_CALL: usize = 1536;

/// What upstream answered to one MNT: a handle, or its status (errno-valued, as
/// `mountstat3` and the v1 `fhstatus` share the numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MntAnswer {
    /// Status 0 and the root handle of the path (v1: the fixed 32 bytes).
    Handle(FileHandle),
    /// A non-zero status.
    Status(u32),
}

/// Why a reply is not the answer to our call (MNT, UMNT, or a portmapper GETPORT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyCheckError {
    /// Not a decodable RPC reply.
    #[error("undecodable reply: {0}")]
    Malformed(#[from] rpc::ReplyError),
    /// A reply, but to another call (a late retransmission, or a confused peer).
    #[error("reply to another call (xid {got:#x}, expected {want:#x})")]
    OtherXid {
        /// The xid of the reply.
        got: u32,
        /// Ours.
        want: u32,
    },
    /// The RPC layer refused the call (wrong program or version, garbage args, ...).
    #[error("call not accepted: {}", accept_name(.0))]
    NotAccepted(AcceptStat),
    /// The call was denied (RPC version or authentication).
    #[error("call denied: {0:?}")]
    Denied(RejectStat),
    /// The results do not decode as `mountres3`/`fhstatus`.
    #[error("malformed MNT result: {0}")]
    BadResult(XdrError),
    /// A success carrying a handle of 0 or more than 64 bytes.
    #[error("MNT result carries a handle of {0} bytes")]
    BadHandle(usize),
}

fn accept_name(stat: &AcceptStat) -> String {
    match stat {
        AcceptStat::Success => "success".into(),
        AcceptStat::ProgUnavail => "program unavailable (not a MOUNT server?)".into(),
        AcceptStat::ProgMismatch { low, high } => {
            format!("version not served (serves {low}..={high})")
        }
        AcceptStat::ProcUnavail => "procedure unavailable".into(),
        AcceptStat::GarbageArgs => "garbage arguments".into(),
        AcceptStat::SystemErr => "system error".into(),
    }
}

/// Encode a MOUNT call of `proc_` (MNT or UMNT) for `path` with an AUTH_SYS credential
/// (uid 0, gid 0: what rpc.mountd and Ganesha expect from a mount helper) naming `machine`.
pub fn encode_path_call(
    out: &mut [u8],
    xid: u32,
    program: u32,
    vers: u32,
    proc_: u32,
    path: &str,
    machine: &str,
) -> Result<usize, XdrError> {
    // A host name longer than AUTH_SYS allows is cut; upstream only logs it.
    let name = &machine.as_bytes()[..machine.len().min(rpc::auth::MAX_MACHINE_NAME)];
    let sys = AuthSys::new(0, name, 0, 0, &[0]).ok_or(XdrError::TooLong {
        len: name.len(),
        max: rpc::auth::MAX_MACHINE_NAME,
    })?;
    let mut w = Writer::new(out);
    rpc::emit_call(&mut w, xid, program, vers, proc_, &Credential::Sys(sys))?;
    w.put_string(path.as_bytes(), MNTPATHLEN)?;
    Ok(w.position())
}

/// Encode an MNT call (version 3 or 1) for `path`; see [`encode_path_call`].
pub fn encode_mnt(
    out: &mut [u8],
    xid: u32,
    program: u32,
    vers: u32,
    path: &str,
    machine: &str,
) -> Result<usize, XdrError> {
    encode_path_call(out, xid, program, vers, procs::MNT, path, machine)
}

/// The program number upstream is asked for unless told otherwise.
pub const DEFAULT_PROGRAM: u32 = MOUNT_PROGRAM;

/// Decode upstream's reply to our MNT call `xid` of version `vers` (3: `mountres3`; 1 or 2:
/// `fhstatus`, whose handle is always 32 bytes).
pub fn decode_mnt_reply(msg: &[u8], xid: u32, vers: u32) -> Result<MntAnswer, ReplyCheckError> {
    let results = accepted_results(msg, xid)?;
    let mut r = Reader::new(results);
    let bytes = if vers == 3 {
        // The flavor list after the handle is ours to decide (the local exports' sec=), so
        // a reply without one still gives its handle.
        let res = MountRes3::parse_handle(&mut r).map_err(|e| match e {
            XdrError::TooLong { len, .. } => ReplyCheckError::BadHandle(len),
            other => ReplyCheckError::BadResult(other),
        })?;
        match res {
            MountRes3::Ok { handle, .. } => handle,
            MountRes3::Err(status) => return Ok(MntAnswer::Status(status)),
        }
    } else {
        match FhStatus::parse(&mut r).map_err(ReplyCheckError::BadResult)? {
            FhStatus::Ok(handle) => handle,
            FhStatus::Err(status) => return Ok(MntAnswer::Status(status)),
        }
    };
    FileHandle::from_bytes(bytes)
        .map(MntAnswer::Handle)
        .ok_or(ReplyCheckError::BadHandle(bytes.len()))
}

/// Check that `msg` is an accepted, successful reply to `xid`; return the results. Used for
/// UMNT (void) as well.
pub fn accepted_results(msg: &[u8], xid: u32) -> Result<&[u8], ReplyCheckError> {
    let reply = Reply::parse(msg)?;
    if reply.xid != xid {
        return Err(ReplyCheckError::OtherXid {
            got: reply.xid,
            want: xid,
        });
    }
    match reply.body {
        ReplyBody::Accepted {
            stat: AcceptStat::Success,
            results,
            ..
        } => Ok(results),
        ReplyBody::Accepted { stat, .. } => Err(ReplyCheckError::NotAccepted(stat)),
        ReplyBody::Denied(stat) => Err(ReplyCheckError::Denied(stat)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Call;

    fn reply(xid: u32, results: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 256];
        let n = rpc::encode_success(&mut out, xid, |w| w.put_raw(results)).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn mnt_call_decodes_as_our_own_server_would() {
        let mut out = [0u8; MAX_CALL];
        let n = encode_mnt(&mut out, 9, 100_005, 3, "/srv/a", "gw").unwrap();
        let call = Call::parse(&out[..n]).unwrap();
        assert_eq!(
            (call.xid, call.prog, call.vers, call.proc_),
            (9, 100_005, 3, 1)
        );
        assert_eq!(call.cred.flavor, rpc::AUTH_SYS);
        let sys = AuthSys::parse(call.cred.body).unwrap();
        assert_eq!((sys.machine_name, sys.uid), (&b"gw"[..], 0));
        assert_eq!(Reader::new(call.args).string(1024).unwrap(), b"/srv/a");
        let long = "/".repeat(1025);
        assert!(encode_mnt(&mut out, 9, 100_005, 3, &long, "gw").is_err());
    }

    #[test]
    fn decodes_v3_handles_and_statuses() {
        // Ganesha-like: status 0, 24-byte handle, flavors [1].
        let mut res = vec![0, 0, 0, 0, 0, 0, 0, 24];
        res.extend((1..=24).collect::<Vec<u8>>());
        res.extend([0, 0, 0, 1, 0, 0, 0, 1]);
        let got = decode_mnt_reply(&reply(5, &res), 5, 3).unwrap();
        let want: Vec<u8> = (1..=24).collect();
        assert_eq!(
            got,
            MntAnswer::Handle(FileHandle::from_bytes(&want).unwrap())
        );
        assert_eq!(
            decode_mnt_reply(&reply(5, &[0, 0, 0, 13]), 5, 3),
            Ok(MntAnswer::Status(13))
        );
        assert!(matches!(
            decode_mnt_reply(&reply(6, &[0, 0, 0, 13]), 5, 3),
            Err(ReplyCheckError::OtherXid { got: 6, want: 5 })
        ));
    }

    #[test]
    fn decodes_v1_fixed_handles() {
        let mut res = vec![0, 0, 0, 0];
        res.extend([7u8; 32]);
        let got = decode_mnt_reply(&reply(1, &res), 1, 1).unwrap();
        assert_eq!(
            got,
            MntAnswer::Handle(FileHandle::from_bytes(&[7; 32]).unwrap())
        );
        assert!(matches!(
            decode_mnt_reply(&reply(1, &res[..20]), 1, 1),
            Err(ReplyCheckError::BadResult(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_never_a_handle() {
        for bad in [&[][..], &[1, 2, 3], &[0, 0, 0, 5, 0, 0, 0, 0], &[0xff; 40]] {
            assert!(decode_mnt_reply(bad, 5, 3).is_err(), "{bad:?}");
        }
        // Zero-length and over-long handles.
        assert_eq!(
            decode_mnt_reply(&reply(5, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 5, 3),
            Err(ReplyCheckError::BadHandle(0))
        );
        let mut long = vec![0, 0, 0, 0, 0, 0, 0, 65];
        long.extend([0u8; 68]);
        assert_eq!(
            decode_mnt_reply(&reply(5, &long), 5, 3),
            Err(ReplyCheckError::BadHandle(65))
        );
        let mut out = [0u8; 64];
        let n = rpc::encode_accepted(&mut out, 5, &AcceptStat::ProgUnavail).unwrap();
        assert_eq!(
            decode_mnt_reply(&out[..n], 5, 3),
            Err(ReplyCheckError::NotAccepted(AcceptStat::ProgUnavail))
        );
    }
}
