//! Sans-IO checking of replies against what the call expects: RPC header, accept state,
//! mount status, and that the procedure's results decode completely, with the protocol
//! core's decoders (`rpc::Reply`, `mount::wire`).
use mount_proto::mount::wire::{ExportList, FhStatus, MountBodies, MountRes3};
use mount_proto::rpc::{self, AcceptStat, Reply, ReplyBody, ReplyError};
use mount_proto::xdr::Reader;

use super::mix::{Expect, Proc};
/// Most flavors a `mountres3` may list. (The lists' work is bounded by the reply's size,
/// which the receive buffer and the record cap bound.)
const MAX_FLAVORS: usize = 1 << 20;

/// Why a reply does not count as answered. Stable snake_case names go into the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wrong {
    /// Shorter than an xid, or not a decodable RPC reply.
    Garbage,
    /// A CALL (or another message type) instead of a REPLY.
    NotReply,
    /// No call in flight has this xid (and it is not a late reply).
    UnknownXid,
    /// The xid belongs to a call sent from another client (socket/port).
    WrongClient,
    /// MSG_DENIED (RPC version mismatch or an authentication error).
    Denied,
    /// Accepted, but accept_stat is not SUCCESS.
    AcceptStat,
    /// MNT returned a status other than OK.
    MountStatus,
    /// The results do not decode as the procedure's result type (or have extra bytes).
    BadResults,
    /// The datagram was larger than the receive buffer.
    Truncated,
}

impl Wrong {
    /// Every reason, in index order.
    pub const ALL: [Wrong; 9] = [
        Wrong::Garbage,
        Wrong::NotReply,
        Wrong::UnknownXid,
        Wrong::WrongClient,
        Wrong::Denied,
        Wrong::AcceptStat,
        Wrong::MountStatus,
        Wrong::BadResults,
        Wrong::Truncated,
    ];

    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Index into per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Wrong::Garbage => "garbage",
            Wrong::NotReply => "not_reply",
            Wrong::UnknownXid => "unknown_xid",
            Wrong::WrongClient => "wrong_client",
            Wrong::Denied => "denied",
            Wrong::AcceptStat => "accept_stat",
            Wrong::MountStatus => "mount_status",
            Wrong::BadResults => "bad_results",
            Wrong::Truncated => "truncated",
        }
    }
}

/// The xid of a reply, if it has one (the caller matches it to a call first).
pub fn reply_xid(reply: &[u8]) -> Option<u32> {
    rpc::xid(reply)
}

/// Checks a reply whose xid matched a call expecting `expect`.
pub fn check(reply: &[u8], expect: &Expect) -> Result<(), Wrong> {
    let parsed = Reply::parse(reply).map_err(|e| match e {
        ReplyError::NotReply(_) => Wrong::NotReply,
        ReplyError::Xdr(_) => Wrong::Garbage,
    })?;
    let results = match parsed.body {
        ReplyBody::Denied(_) => return Err(Wrong::Denied),
        ReplyBody::Accepted {
            stat: AcceptStat::Success,
            results,
            ..
        } => results,
        ReplyBody::Accepted { .. } => return Err(Wrong::AcceptStat),
    };
    let mut r = Reader::new(results);
    let status = match (expect.spec.proc_, expect.spec.vers) {
        (Proc::Null | Proc::Umnt, _) => None,
        (Proc::Mnt, 3) => match MountRes3::parse(&mut r) {
            // A handle is 1 to 64 bytes: an empty one is no handle.
            Ok(MountRes3::Ok { handle, flavors })
                if handle.is_empty() || flavors.len() > MAX_FLAVORS =>
            {
                return Err(Wrong::BadResults)
            }
            Ok(MountRes3::Ok { .. }) => None,
            Ok(MountRes3::Err(status)) => Some(status),
            Err(_) => return Err(Wrong::BadResults),
        },
        (Proc::Mnt, _) => match FhStatus::parse(&mut r) {
            Ok(FhStatus::Ok(_)) => None,
            Ok(FhStatus::Err(status)) => Some(status),
            Err(_) => return Err(Wrong::BadResults),
        },
        (Proc::Export, _) => ExportList::parse(&mut r)
            .map(|_| None)
            .map_err(|_| Wrong::BadResults)?,
        (Proc::Dump, _) => MountBodies::parse(&mut r)
            .map(|_| None)
            .map_err(|_| Wrong::BadResults)?,
    };
    if status.is_some() && expect.mount_ok {
        return Err(Wrong::MountStatus);
    }
    // The results decode completely: nothing follows them.
    if r.is_empty() {
        Ok(())
    } else {
        Err(Wrong::BadResults)
    }
}

#[cfg(test)]
mod tests {
    use mount_proto::mount::wire::{emit_list_end, ExportNode, Flavors, MountBody};
    use mount_proto::rpc::{encode_accepted, encode_denied, encode_success, AuthStat, RejectStat};
    use mount_proto::xdr::Writer;

    use super::*;
    use crate::mix::ProcSpec;

    fn expect(proc_: Proc, vers: u32) -> Expect {
        Expect {
            spec: ProcSpec { proc_, vers },
            mount_ok: true,
        }
    }

    fn success(xid: u32, body: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
        let mut out = [0u8; 512];
        let n = encode_success(&mut out, xid, |w| {
            body(w);
            Ok(())
        })
        .unwrap();
        out[..n].to_vec()
    }

    fn mnt3_ok(w: &mut Writer<'_>) {
        let flavors = Flavors::from_be_words(&[0, 0, 0, 1]).unwrap();
        let res = MountRes3::Ok {
            handle: &[7; 32],
            flavors,
        };
        res.emit(w).unwrap();
    }

    #[test]
    fn right_replies_pass() {
        assert_eq!(reply_xid(&success(9, |_| {})), Some(9));
        assert_eq!(check(&success(9, |_| {}), &expect(Proc::Null, 3)), Ok(()));
        assert_eq!(check(&success(9, |_| {}), &expect(Proc::Umnt, 1)), Ok(()));
        assert_eq!(check(&success(9, mnt3_ok), &expect(Proc::Mnt, 3)), Ok(()));
        let v1 = success(9, |w| FhStatus::Ok(&[1; 32]).emit(w).unwrap());
        assert_eq!(check(&v1, &expect(Proc::Mnt, 1)), Ok(()));
        let exports = success(1, |w| {
            for (dir, groups) in [("/a", &["*"][..]), ("/b", &[][..])] {
                let groups = groups.iter().map(|g| g.as_bytes());
                ExportNode::emit_entry(w, dir.as_bytes(), groups).unwrap();
            }
            emit_list_end(w).unwrap();
        });
        assert_eq!(check(&exports, &expect(Proc::Export, 3)), Ok(()));
        let dump = success(1, |w| {
            let body = MountBody {
                hostname: b"10.0.0.2",
                directory: b"/a",
            };
            body.emit_entry(w).unwrap();
            emit_list_end(w).unwrap();
        });
        assert_eq!(check(&dump, &expect(Proc::Dump, 2)), Ok(()));
        // An empty list is a single FALSE.
        let empty = success(1, |w| w.put_bool(false).unwrap());
        assert_eq!(check(&empty, &expect(Proc::Dump, 3)), Ok(()));
    }

    #[test]
    fn wrong_status_and_accept_state() {
        let acces = success(3, |w| w.put_u32(13).unwrap());
        assert_eq!(
            check(&acces, &expect(Proc::Mnt, 3)),
            Err(Wrong::MountStatus)
        );
        assert_eq!(
            check(&acces, &expect(Proc::Mnt, 1)),
            Err(Wrong::MountStatus)
        );
        // Accepted when any status will do.
        let any = Expect {
            mount_ok: false,
            ..expect(Proc::Mnt, 3)
        };
        assert_eq!(check(&acces, &any), Ok(()));
        let mut out = [0u8; 64];
        let n = encode_accepted(&mut out, 3, &AcceptStat::ProcUnavail).unwrap();
        assert_eq!(
            check(&out[..n], &expect(Proc::Null, 3)),
            Err(Wrong::AcceptStat)
        );
        let n =
            encode_accepted(&mut out, 3, &AcceptStat::ProgMismatch { low: 1, high: 3 }).unwrap();
        assert_eq!(
            check(&out[..n], &expect(Proc::Mnt, 3)),
            Err(Wrong::AcceptStat)
        );
        let n = encode_denied(&mut out, 3, &RejectStat::AuthError(AuthStat::TooWeak)).unwrap();
        assert_eq!(check(&out[..n], &expect(Proc::Null, 3)), Err(Wrong::Denied));
    }

    #[test]
    fn garbage_and_malformed_results() {
        let e = expect(Proc::Mnt, 3);
        assert_eq!(check(&[], &e), Err(Wrong::Garbage));
        assert_eq!(reply_xid(&[1, 2]), None);
        assert_eq!(check(&[0, 0, 0, 1, 0, 0], &e), Err(Wrong::Garbage));
        // A CALL echoed back.
        assert_eq!(check(&[0, 0, 0, 1, 0, 0, 0, 0], &e), Err(Wrong::NotReply));
        // MNT3 OK with a handle but no flavor list.
        let short = success(1, |w| {
            w.put_u32(0).unwrap();
            w.put_opaque(&[7; 32], 64).unwrap();
        });
        assert_eq!(check(&short, &e), Err(Wrong::BadResults));
        // Zero-length handle, and a 65-byte one.
        let empty_fh = success(1, |w| {
            w.put_u32(0).unwrap();
            w.put_u32(0).unwrap();
            w.put_u32(0).unwrap();
        });
        assert_eq!(check(&empty_fh, &e), Err(Wrong::BadResults));
        let long_fh = success(1, |w| {
            w.put_u32(0).unwrap();
            w.put_opaque(&[7; 65], 100).unwrap();
            w.put_u32(0).unwrap();
        });
        assert_eq!(check(&long_fh, &e), Err(Wrong::BadResults));
        // NULL with trailing bytes; an unterminated export list.
        let trailing = success(1, |w| w.put_u32(0).unwrap());
        assert_eq!(
            check(&trailing, &expect(Proc::Null, 3)),
            Err(Wrong::BadResults)
        );
        let open_list = success(1, |w| {
            w.put_bool(true).unwrap();
            w.put_string(b"/a", 1024).unwrap();
        });
        assert_eq!(
            check(&open_list, &expect(Proc::Export, 3)),
            Err(Wrong::BadResults)
        );
    }

    #[test]
    fn reason_names_are_distinct() {
        let names: std::collections::HashSet<_> = Wrong::ALL.iter().map(|w| w.as_str()).collect();
        assert_eq!(names.len(), Wrong::COUNT);
        for (i, w) in Wrong::ALL.iter().enumerate() {
            assert_eq!(w.index(), i);
        }
    }
}
