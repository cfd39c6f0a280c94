//! Whether a MOUNT call's RPC header and credential are what user space's parser would
//! decode alike, and where its arguments start.
//!
//! Everything after the fixed header (credential body, verifier, arguments) lies at
//! offsets that depend on the credential's length, which packet pointers may not take
//! without CAP_PERFMON. It is copied once into per-CPU scratch with one
//! `bpf_xdp_load_bytes` and read there at masked offsets (a map value allows a bounded
//! variable offset). One copy replaced four 4-byte helper reads (the gid count, the
//! verifier's length, the path's length and bytes), which cost about 35 ns each here.
use aya_ebpf::{
    helpers::generated::bpf_xdp_load_bytes, macros::map, maps::PerCpuArray, programs::XdpContext,
};
use mount_ebpf::answer::{
    CallCopy, AUTH_NONE, AUTH_SYS, CALL_COPY_MAX, CALL_FIXED_LEN, MAX_AUTH_BYTES, MAX_GIDS,
    MAX_MACHINE_NAME, MOUNT_MAX_VERSION, MOUNT_MIN_VERSION, MOUNT_PROGRAM, MSG_CALL, PROC_NULL,
    RPC_VERSION,
};

use super::{bounded, ptr_at, MAX_CALL_LEN};

/// Where a call's bytes after its fixed header are copied.
#[map(name = "MOUNT_CALL_COPY")]
static COPY: PerCpuArray<CallCopy> = PerCpuArray::with_max_entries(1, 0);

/// A MOUNT call user space would decode alike (see [`rpc_call`]).
pub(super) struct Call {
    /// The call's xid, as on the wire.
    pub xid: [u8; 4],
    /// The MOUNT version.
    pub vers: u32,
    /// The bytes after the fixed header, copied: the first `copied` of them (null and 0 for
    /// a NULL call with AUTH_NONE, which needs none).
    pub copy: *const CallCopy,
    /// Bytes in `copy` (all the call's, or [`CALL_COPY_MAX`]).
    pub copied: u32,
    /// Offset of the arguments in `copy` (and after the fixed header in the frame).
    pub args: u32,
}

/// The big-endian word at `offset` of the copy; the offset masked where the verifier sees
/// it (the identity for the offsets callers check against `copied`).
#[inline(always)]
pub(super) fn copied_be32(copy: *const CallCopy, offset: u32) -> u32 {
    let mut at = offset as u64;
    // The two byte swaps give back the value but leave the verifier knowing nothing of it,
    // so after the mask its range is 0..CALL_COPY_MAX on every path to this read. Without
    // them paths bring different ranges to the same pointer addition, and the verifier's
    // Spectre masking refuses that without CAP_PERFMON ("tried to add from different maps,
    // paths or scalars").
    // SAFETY: register arithmetic only, no memory access.
    unsafe {
        core::arch::asm!(
            "{at} = be64 {at}",
            "{at} = be64 {at}",
            "{at} &= {mask}",
            at = inout(reg) at,
            mask = const CALL_COPY_MAX - 1,
            options(pure, nomem, nostack),
        );
    }
    // SAFETY: `at` < CALL_COPY_MAX and the copy holds CALL_COPY_MAX + 4 bytes; the slot
    // is this CPU's own until the program returns.
    let word = unsafe { *((*copy).bytes.as_ptr().add(at as usize) as *const [u8; 4]) };
    u32::from_be_bytes(word)
}

/// The MOUNT call at `P` (`len` payload bytes) for procedure `proc_` when user space would
/// decode it alike: RPC v2 CALL to MOUNT v1-v3, an AUTH_NONE credential or an AUTH_SYS one
/// that decodes, a verifier of at most 400 bytes, everything XDR-aligned and inside the
/// datagram (bytes after the verifier are the arguments, which NULL ignores as user space
/// does).
#[inline(always)]
pub(super) fn rpc_call<const P: usize>(ctx: &XdpContext, len: u32, proc_: u32) -> Option<Call> {
    if len % 4 != 0 || len < CALL_FIXED_LEN + 8 || len > MAX_CALL_LEN {
        return None;
    }
    // The fixed header and the credential body's first two words (for AUTH_NONE, the
    // verifier: `len` holds at least those 40 bytes), read in place.
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
    let rest = len - CALL_FIXED_LEN;
    // NULL with AUTH_NONE, the common NULL: the verifier's length is in the words read in
    // place, and NULL reads no arguments, so nothing need be copied (the copy's variable
    // reads cost more than they save here when loaded without CAP_PERFMON).
    if proc_ == PROC_NULL && flavor == AUTH_NONE && cred_len == 0 {
        let verf_len = word(36);
        if verf_len > MAX_AUTH_BYTES || verf_len % 4 != 0 || 8 + verf_len > rest {
            return None;
        }
        return Some(Call {
            xid: word(0).to_be_bytes(),
            vers,
            copy: core::ptr::null(),
            copied: 0,
            args: 8 + verf_len,
        });
    }
    let copied = if rest > CALL_COPY_MAX as u32 {
        CALL_COPY_MAX as u32
    } else {
        rest
    };
    // The verifier's flavor and length must be in the copy.
    if cred_len + 8 > copied {
        return None;
    }
    let copy = COPY.get_ptr_mut(0)?;
    // 8..=CALL_COPY_MAX here; the mask bounds it where the verifier sees it.
    let n = bounded::<{ CALL_COPY_MAX as u64 - 1 }>(copied);
    // SAFETY: the helper bounds-checks the frame range and writes `n` bytes into this
    // CPU's copy, which holds CALL_COPY_MAX.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            P as u32 + CALL_FIXED_LEN,
            (*copy).bytes.as_mut_ptr().cast(),
            n,
        )
    };
    if r != 0 {
        return None;
    }
    match flavor {
        AUTH_NONE => {}
        AUTH_SYS => auth_sys(copy, cred_len, word(36))?,
        _ => return None,
    }
    let verf_len = copied_be32(copy, cred_len + 4);
    if verf_len > MAX_AUTH_BYTES || verf_len % 4 != 0 || cred_len + 8 + verf_len > rest {
        return None;
    }
    Some(Call {
        xid: word(0).to_be_bytes(),
        vers,
        copy,
        copied,
        args: cred_len + 8 + verf_len,
    })
}

/// Whether an AUTH_SYS body of `cred_len` bytes at the start of `copy` (all of it copied),
/// whose machine name is `name_len` bytes, decodes as user space's `AuthSys::parse` wants:
/// stamp, machine name of at most 255 bytes (padding present), uid, gid, at most 16 gids,
/// all inside the body.
#[inline(always)]
fn auth_sys(copy: *const CallCopy, cred_len: u32, name_len: u32) -> Option<()> {
    if name_len > MAX_MACHINE_NAME {
        return None;
    }
    let name = (name_len + 3) & !3;
    // stamp, name length, name, uid, gid, gid count.
    let fixed = 8 + name + 12;
    if fixed > cred_len {
        return None;
    }
    let gids = copied_be32(copy, 8 + name + 8);
    if gids > MAX_GIDS || fixed + 4 * gids > cred_len {
        return None;
    }
    Some(())
}
