//! Whether a MOUNT call's RPC header and credential are what user space's parser would
//! decode alike, and where its arguments start.
use aya_ebpf::programs::XdpContext;
use mount_ebpf::answer::{
    AUTH_NONE, AUTH_SYS, CALL_FIXED_LEN, MAX_AUTH_BYTES, MAX_GIDS, MAX_MACHINE_NAME,
    MOUNT_MAX_VERSION, MOUNT_MIN_VERSION, MOUNT_PROGRAM, MSG_CALL, RPC_VERSION,
};

use super::{load_be32, ptr_at, MAX_CALL_LEN};

/// The xid, version and the offset of the arguments of a MOUNT call at `P` (`len` payload
/// bytes) for procedure `proc_` that user space would decode alike: RPC v2 CALL to MOUNT
/// v1-v3, an AUTH_NONE credential or an AUTH_SYS one that decodes, a verifier of at most
/// 400 bytes, everything XDR-aligned and inside the datagram (bytes after the verifier are
/// the arguments, which NULL ignores as user space does).
#[inline(always)]
pub(super) fn rpc_call<const P: usize>(
    ctx: &XdpContext,
    len: u32,
    proc_: u32,
) -> Option<([u8; 4], u32, u32)> {
    if len % 4 != 0 || len < CALL_FIXED_LEN + 8 || len > MAX_CALL_LEN {
        return None;
    }
    // The fixed header and the credential body's first two words (for AUTH_NONE, the
    // verifier: `len` holds at least those 40 bytes), read in place: a helper call costs
    // more.
    let h = ptr_at::<[[u8; 4]; 10], P>(ctx)?;
    // SAFETY: `ptr_at` checked that the 40 bytes lie inside the frame.
    let word = |i: usize| u32::from_be_bytes(unsafe { (*h)[i / 4] });
    if word(4) != MSG_CALL || word(8) != RPC_VERSION || word(12) != MOUNT_PROGRAM {
        return None;
    }
    let vers = word(16);
    if !(MOUNT_MIN_VERSION..=MOUNT_MAX_VERSION).contains(&vers) || word(20) != proc_ {
        return None;
    }
    let (flavor, cred_len) = (word(24), word(28));
    if cred_len > MAX_AUTH_BYTES || cred_len % 4 != 0 {
        return None;
    }
    match flavor {
        AUTH_NONE => {}
        AUTH_SYS => auth_sys::<P>(ctx, cred_len, word(36))?,
        _ => return None,
    }
    let verf = P as u32 + CALL_FIXED_LEN + cred_len;
    let verf_len = load_be32(ctx, verf + 4)?;
    if verf_len > MAX_AUTH_BYTES
        || verf_len % 4 != 0
        || CALL_FIXED_LEN + cred_len + 8 + verf_len > len
    {
        return None;
    }
    Some((word(0).to_be_bytes(), vers, verf + 8 + verf_len))
}

/// Whether an AUTH_SYS body of `cred_len` bytes at `P + 32`, whose machine name is
/// `name_len` bytes, decodes as user space's `AuthSys::parse` wants: stamp, machine name
/// of at most 255 bytes (padding present), uid, gid, at most 16 gids, all inside the body.
#[inline(always)]
fn auth_sys<const P: usize>(ctx: &XdpContext, cred_len: u32, name_len: u32) -> Option<()> {
    let body = P as u32 + CALL_FIXED_LEN;
    if name_len > MAX_MACHINE_NAME {
        return None;
    }
    let name = (name_len + 3) & !3;
    // stamp, name length, name, uid, gid, gid count.
    let fixed = 8 + name + 12;
    if fixed > cred_len {
        return None;
    }
    let gids = load_be32(ctx, body + 8 + name + 8)?;
    if gids > MAX_GIDS || fixed + 4 * gids > cred_len {
        return None;
    }
    Some(())
}
