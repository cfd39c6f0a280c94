//! Reply templates for the XDP program's in-kernel answers (docs/xdp-answers.md): each
//! reply form the program sends is produced here by [`super::answer`] itself, on a
//! synthetic call, so the program copies exactly what the user-space path would send.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{answer, procs, Client, Context, Outcome, Policy, MAX_VERSION, MOUNT_PROGRAM};
use crate::exports::{ClientCheck, ExportTable, HandleSource};
use crate::mountlist::MountList;
use crate::rpc::{encode_call, Credential};
use crate::xdr::Writer;

/// What the XDP program needs to answer a client's MNT of one export root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MntReplies {
    /// The export is `secure` for this client: only source ports below 1024 get the reply.
    pub secure: bool,
    /// The MNT v1/v2 reply (fhstatus), xid 0.
    pub v1: Vec<u8>,
    /// The MNT v3 reply (mountres3 with the client's flavors), xid 0.
    pub v3: Vec<u8>,
}

/// The MNT replies for `ip`'s MNT of `path` when the path is exactly an export's and the
/// table decides the client by its address alone (CIDR, address, everyone rules: no host
/// name, wildcard or netgroup before the matching rule) and allows it. None otherwise,
/// and for a gateway export (`gateway`: `--upstream`) whose handle comes from upstream:
/// those answers are user space's alone.
pub fn mnt_replies(
    table: &ExportTable,
    ip: IpAddr,
    path: &str,
    gateway: bool,
) -> Option<MntReplies> {
    let export = table.lookup_exact(path.as_bytes())?;
    if gateway && *export.handle_source() != HandleSource::Explicit {
        return None;
    }
    let ClientCheck::Allowed(options) = export.check_client(ip, None) else {
        return None;
    };
    let reply = |vers: u32| -> Option<Vec<u8>> {
        let mut call = [0u8; 1200];
        let mut w = Writer::new(&mut call);
        crate::rpc::emit_call(
            &mut w,
            0,
            MOUNT_PROGRAM,
            vers,
            procs::MNT,
            &Credential::None,
        )
        .ok()?;
        w.put_string(path.as_bytes(), super::MNTPATHLEN).ok()?;
        let len = w.position();
        let (mounts, policy) = (MountList::new(), Policy::default());
        let ctx = Context {
            exports: table,
            mounts: &mounts,
            policy: &policy,
            upstream: None,
        };
        // A reserved port: the reply for a port the `secure` rule refuses is user space's.
        let client = Client {
            addr: SocketAddr::new(ip, 1),
            host: None,
        };
        let mut out = [0u8; 512];
        let Outcome::Reply { len, .. } = answer(&call[..len], &client, &ctx, &mut out) else {
            return None;
        };
        // Accepted, SUCCESS, and the mount status (the results' first word) OK.
        let results = super::client::accepted_results(&out[..len], 0).ok()?;
        (results.get(..4)? == [0; 4]).then(|| out[..len].to_vec())
    };
    Some(MntReplies {
        secure: options.secure,
        v1: reply(1)?,
        v3: reply(3)?,
    })
}

/// The reply to a MOUNT NULL call, xid 0: the same bytes for every version and
/// credential (NULL has no results and every reply carries an AUTH_NONE verifier).
pub fn null_reply() -> Vec<u8> {
    let mut call = [0u8; 64];
    // 64 bytes hold a 40-byte NULL call; encode_call cannot fail on them.
    let len = encode_call(
        &mut call,
        0,
        MOUNT_PROGRAM,
        MAX_VERSION,
        procs::NULL,
        &Credential::None,
        &[],
    )
    .unwrap_or(0);
    let (table, mounts, policy) = (ExportTable::empty(), MountList::new(), Policy::default());
    let ctx = Context {
        exports: &table,
        mounts: &mounts,
        policy: &policy,
        upstream: None,
    };
    let client = Client {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
        host: None,
    };
    let mut out = [0u8; 64];
    match answer(&call[..len], &client, &ctx, &mut out) {
        Outcome::Reply { len, .. } => out[..len].to_vec(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_reply_is_an_accepted_success_without_results() {
        let reply = null_reply();
        assert_eq!(reply.len(), 24, "{reply:02x?}");
        let words: Vec<u32> = reply
            .chunks(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        // xid 0, REPLY, MSG_ACCEPTED, AUTH_NONE verifier (flavor, length), SUCCESS.
        assert_eq!(words, [0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn mnt_replies_only_for_exact_roots_of_allowed_address_clients() {
        use crate::exports::StaticResolver;
        let text = "/srv/a 10.0.0.0/8(rw,sec=sys:krb5) *.example(rw)\n\
                    /srv/b host.example(rw) 10.0.0.0/8(rw)\n\
                    /srv/c 192.168.0.0/16(rw,insecure)\n";
        let table = ExportTable::parse_str_with(text, "t", &StaticResolver::default()).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = mnt_replies(&table, ip("10.1.2.3"), "/srv/a", false).unwrap();
        assert!(a.secure);
        // v3: header, status, handle, flavor count 2 at the end.
        assert_eq!(a.v3[a.v3.len() - 12..a.v3.len() - 8], [0, 0, 0, 2]);
        // v1: header, status, 32-byte handle.
        assert_eq!(a.v1.len(), 24 + 4 + 32);
        assert!(
            mnt_replies(&table, ip("11.0.0.1"), "/srv/a", false).is_none(),
            "name rule after"
        );
        assert!(
            mnt_replies(&table, ip("10.1.2.3"), "/srv/b", false).is_none(),
            "name rule first"
        );
        assert!(
            mnt_replies(&table, ip("10.1.2.3"), "/srv/c", false).is_none(),
            "denied"
        );
        assert!(
            !mnt_replies(&table, ip("192.168.1.1"), "/srv/c", false)
                .unwrap()
                .secure
        );
        assert!(
            mnt_replies(&table, ip("10.1.2.3"), "/srv/a/", false).is_none(),
            "not exact"
        );
        assert!(mnt_replies(&table, ip("10.1.2.3"), "/srv", false).is_none());
        assert!(
            mnt_replies(&table, ip("10.1.2.3"), "/srv/a", true).is_none(),
            "gateway"
        );
    }

    #[test]
    fn the_program_checks_calls_against_the_same_constants() {
        use crate::rpc;
        use mount_ebpf::answer as prog;
        assert_eq!(prog::MOUNT_PROGRAM, MOUNT_PROGRAM);
        assert_eq!(prog::MOUNT_MIN_VERSION, super::super::MIN_VERSION);
        assert_eq!(prog::MOUNT_MAX_VERSION, MAX_VERSION);
        assert_eq!(prog::PROC_NULL, procs::NULL);
        assert_eq!(prog::PROC_MNT, procs::MNT);
        assert_eq!(prog::IPPORT_RESERVED, rpc::IPPORT_RESERVED);
        const { assert!(prog::MNT_PATH_MAX <= super::super::MNTPATHLEN) };
        assert_eq!(prog::MSG_CALL, rpc::MSG_CALL);
        assert_eq!(prog::RPC_VERSION, rpc::RPC_VERSION);
        assert_eq!(prog::AUTH_NONE, rpc::AUTH_NONE);
        assert_eq!(prog::AUTH_SYS, rpc::AUTH_SYS);
        assert_eq!(prog::MAX_AUTH_BYTES as usize, rpc::MAX_AUTH_BYTES);
        assert_eq!(prog::MAX_MACHINE_NAME as usize, rpc::auth::MAX_MACHINE_NAME);
        assert_eq!(prog::MAX_GIDS as usize, rpc::auth::MAX_GIDS);
    }
}
