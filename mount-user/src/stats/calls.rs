//! The key each call is counted under: procedure, MOUNT version and outcome.
//!
//! Read from the call's fixed header and the reply's first words only (no decoding beyond
//! that), so the shells can count after answering at the cost of a few loads. The key is
//! one index into a flat counter array ([`CALL_SLOTS`] entries), which keeps the hot path
//! a single add into a slot of the calling thread's own shard.
use mount_proto::mount::{procs, MOUNT_PROGRAM};

use super::procs::{PROC_NAMES, PROC_SLOTS};

/// Version slots: 1, 2, 3, then one for anything else (answered PROG_MISMATCH).
pub const VERSION_SLOTS: usize = 4;
/// Names of the version slots, as metric label values.
pub const VERSION_NAMES: [&str; VERSION_SLOTS] = ["1", "2", "3", "other"];

/// Outcome slots: the MNT status, the RPC-level errors, and what got no reply.
pub const STATUS_SLOTS: usize = 20;
/// Names of the outcome slots, as metric label values. `ok` is success (for MNT: status
/// 0); then the MOUNT statuses (mountstat3 / the v1-v2 fhstatus numbers); `mount_error`
/// is a status not in that list; then the RPC errors; `no_reply` (not a call, or
/// dropped); `deferred` (an AF_XDP call handed to the host-name lookup, answered later
/// through the kernel socket).
pub const STATUS_NAMES: [&str; STATUS_SLOTS] = [
    "ok",
    "perm",
    "noent",
    "io",
    "acces",
    "notdir",
    "inval",
    "nametoolong",
    "notsupp",
    "serverfault",
    "mount_error",
    "prog_unavail",
    "prog_mismatch",
    "proc_unavail",
    "garbage_args",
    "system_err",
    "rpc_mismatch",
    "auth_error",
    "no_reply",
    "deferred",
];

/// The first outcome slot that is an RPC-level error (and the one after the last).
const RPC_ERRORS: std::ops::Range<usize> = 11..18;
const MOUNT_ERROR: usize = 10;
const NO_REPLY: usize = 18;
const DEFERRED: usize = 19;

/// Counter slots: procedure x version x outcome.
pub const CALL_SLOTS: usize = PROC_SLOTS * VERSION_SLOTS * STATUS_SLOTS;

/// How a call ended, as seen by the shell that answered it.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// This reply (the RPC reply message) was sent.
    Reply(&'a [u8]),
    /// Nothing was sent.
    NoReply,
    /// Handed to the host-name lookup; answered later, through the kernel socket.
    Deferred,
}

/// A counter slot split into its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey {
    /// Procedure name (`null`, `mnt`, ..., `other`).
    pub proc: &'static str,
    /// MOUNT version (`1`, `2`, `3`, `other`).
    pub version: &'static str,
    /// Outcome (see [`STATUS_NAMES`]).
    pub status: &'static str,
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The procedure slot of an RPC call message: its procedure number when it is a MOUNT
/// call with a known procedure, else the "other" slot. Reads only the fixed call header.
pub fn proc_slot(request: &[u8]) -> usize {
    // xid, msg_type (0 = CALL), rpcvers, prog, vers, proc
    match (word(request, 4), word(request, 12), word(request, 20)) {
        (Some(0), Some(MOUNT_PROGRAM), Some(p)) if p <= procs::PATHCONF => p as usize,
        _ => PROC_SLOTS - 1,
    }
}

fn version_slot(request: &[u8]) -> usize {
    match word(request, 16) {
        Some(v @ 1..=3) => v as usize - 1,
        _ => VERSION_SLOTS - 1,
    }
}

fn mount_status_slot(status: u32) -> usize {
    match status {
        0 => 0,
        1 => 1,
        2 => 2,
        5 => 3,
        13 => 4,
        20 => 5,
        22 => 6,
        63 => 7,
        10004 => 8,
        10006 => 9,
        _ => MOUNT_ERROR,
    }
}

/// The outcome slot of an RPC reply to a call of procedure slot `proc`.
fn reply_status_slot(proc: usize, reply: &[u8]) -> usize {
    // xid, msg_type (1 = REPLY), reply_stat (0 accepted, 1 denied)
    match word(reply, 8) {
        Some(0) => {}
        Some(1) => {
            return match word(reply, 12) {
                Some(0) => RPC_ERRORS.start + 5,
                _ => RPC_ERRORS.start + 6,
            }
        }
        _ => return NO_REPLY,
    }
    // The verifier (flavor, length, body padded to 4), then accept_stat.
    let Some(verifier_len) = word(reply, 16) else {
        return NO_REPLY;
    };
    let at = 20 + (verifier_len as usize).div_ceil(4) * 4;
    match word(reply, at) {
        Some(0) if proc == procs::MNT as usize => {
            word(reply, at + 4).map_or(NO_REPLY, mount_status_slot)
        }
        Some(0) => 0,
        Some(stat @ 1..=5) => RPC_ERRORS.start + stat as usize - 1,
        _ => NO_REPLY,
    }
}

/// The counter slot of `request`, ended as `outcome`.
pub fn call_slot(request: &[u8], outcome: Outcome<'_>) -> usize {
    let proc = proc_slot(request);
    let status = match outcome {
        Outcome::Reply(reply) => reply_status_slot(proc, reply),
        Outcome::NoReply => NO_REPLY,
        Outcome::Deferred => DEFERRED,
    };
    (proc * VERSION_SLOTS + version_slot(request)) * STATUS_SLOTS + status
}

/// The names of a counter slot.
pub fn call_key(slot: usize) -> CallKey {
    let status = slot % STATUS_SLOTS;
    let version = (slot / STATUS_SLOTS) % VERSION_SLOTS;
    let proc = (slot / (STATUS_SLOTS * VERSION_SLOTS)).min(PROC_SLOTS - 1);
    CallKey {
        proc: PROC_NAMES[proc],
        version: VERSION_NAMES[version],
        status: STATUS_NAMES[status],
    }
}

/// Whether an outcome name is an RPC-level error (the call was not executed).
pub fn is_rpc_error(status: &str) -> bool {
    STATUS_NAMES[RPC_ERRORS].contains(&status)
}

/// Calls per procedure slot, summed over versions and outcomes.
pub fn proc_totals(calls: &[u64]) -> [u64; PROC_SLOTS] {
    let mut out = [0; PROC_SLOTS];
    for (slot, n) in calls.iter().enumerate() {
        if let Some(o) = out.get_mut(slot / (STATUS_SLOTS * VERSION_SLOTS)) {
            *o += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(prog: u32, vers: u32, procedure: u32) -> Vec<u8> {
        [7, 0, 2, prog, vers, procedure]
            .iter()
            .flat_map(|w: &u32| w.to_be_bytes())
            .collect()
    }

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn procedure_slots() {
        assert_eq!(proc_slot(&call(MOUNT_PROGRAM, 3, 0)), 0);
        assert_eq!(proc_slot(&call(MOUNT_PROGRAM, 3, 1)), 1);
        assert_eq!(proc_slot(&call(MOUNT_PROGRAM, 3, 7)), 7);
        assert_eq!(proc_slot(&call(MOUNT_PROGRAM, 3, 8)), PROC_SLOTS - 1);
        assert_eq!(proc_slot(&call(100_003, 3, 1)), PROC_SLOTS - 1);
        assert_eq!(proc_slot(&[0; 10]), PROC_SLOTS - 1);
        let mut reply = call(MOUNT_PROGRAM, 3, 1);
        reply[7] = 1; // msg_type REPLY
        assert_eq!(proc_slot(&reply), PROC_SLOTS - 1);
    }

    #[test]
    fn keys_from_calls_and_replies() {
        let key = |req: &[u8], out| call_key(call_slot(req, out));
        let mnt3 = call(MOUNT_PROGRAM, 3, 1);
        // Accepted, AUTH_NONE verifier, SUCCESS, mountstat3 ACCES.
        let acces = words(&[7, 1, 0, 0, 0, 0, 13]);
        assert_eq!(
            key(&mnt3, Outcome::Reply(&acces)),
            CallKey {
                proc: "mnt",
                version: "3",
                status: "acces"
            }
        );
        let ok = words(&[7, 1, 0, 0, 0, 0, 0]);
        assert_eq!(key(&mnt3, Outcome::Reply(&ok)).status, "ok");
        // A verifier with a 5-byte body (padded to 8) moves accept_stat.
        let garbage = words(&[7, 1, 0, 1, 5, 0, 0, 4]);
        assert_eq!(key(&mnt3, Outcome::Reply(&garbage)).status, "garbage_args");
        let null1 = call(MOUNT_PROGRAM, 1, 0);
        assert_eq!(
            key(&null1, Outcome::Reply(&ok)),
            CallKey {
                proc: "null",
                version: "1",
                status: "ok"
            }
        );
        let v9 = call(MOUNT_PROGRAM, 9, 0);
        let mismatch = words(&[7, 1, 0, 0, 0, 2, 1, 3]);
        assert_eq!(
            key(&v9, Outcome::Reply(&mismatch)),
            CallKey {
                proc: "null",
                version: "other",
                status: "prog_mismatch"
            }
        );
        let denied = words(&[7, 1, 1, 1, 2]);
        assert_eq!(key(&mnt3, Outcome::Reply(&denied)).status, "auth_error");
        assert_eq!(key(&[1, 2], Outcome::NoReply).proc, "other");
        assert_eq!(key(&mnt3, Outcome::Deferred).status, "deferred");
        assert_eq!(key(&mnt3, Outcome::Reply(&[0; 6])).status, "no_reply");
        assert!(is_rpc_error("garbage_args") && is_rpc_error("auth_error"));
        assert!(!is_rpc_error("acces") && !is_rpc_error("no_reply"));
    }

    #[test]
    fn every_slot_round_trips_and_totals_sum_by_procedure() {
        let mut calls = vec![0u64; CALL_SLOTS];
        for (slot, n) in calls.iter_mut().enumerate() {
            let k = call_key(slot);
            assert!(PROC_NAMES.contains(&k.proc));
            *n = 1;
        }
        let totals = proc_totals(&calls);
        assert!(totals
            .iter()
            .all(|&t| t == (VERSION_SLOTS * STATUS_SLOTS) as u64));
    }
}
