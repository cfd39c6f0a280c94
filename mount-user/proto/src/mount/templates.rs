//! Reply templates for the XDP program's in-kernel answers (docs/xdp-answers.md): each
//! reply form the program sends is produced here by [`super::answer`] itself, on a
//! synthetic call, so the program copies exactly what the user-space path would send.

use std::net::{Ipv4Addr, SocketAddr};

use super::{answer, procs, Client, Context, Outcome, Policy, MAX_VERSION, MOUNT_PROGRAM};
use crate::exports::ExportTable;
use crate::mountlist::MountList;
use crate::rpc::{encode_call, Credential};

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
    fn the_program_checks_calls_against_the_same_constants() {
        use crate::rpc;
        use mount_ebpf::answer as prog;
        assert_eq!(prog::MOUNT_PROGRAM, MOUNT_PROGRAM);
        assert_eq!(prog::MOUNT_MIN_VERSION, super::super::MIN_VERSION);
        assert_eq!(prog::MOUNT_MAX_VERSION, MAX_VERSION);
        assert_eq!(prog::PROC_NULL, procs::NULL);
        assert_eq!(prog::MSG_CALL, rpc::MSG_CALL);
        assert_eq!(prog::RPC_VERSION, rpc::RPC_VERSION);
        assert_eq!(prog::AUTH_NONE, rpc::AUTH_NONE);
        assert_eq!(prog::AUTH_SYS, rpc::AUTH_SYS);
        assert_eq!(prog::MAX_AUTH_BYTES as usize, rpc::MAX_AUTH_BYTES);
        assert_eq!(prog::MAX_MACHINE_NAME as usize, rpc::auth::MAX_MACHINE_NAME);
        assert_eq!(prog::MAX_GIDS as usize, rpc::auth::MAX_GIDS);
    }
}
