//! The `MOUNT_SEEN` lookup of a MNT call's (client, path) pair.
use aya_ebpf::{
    helpers::generated::bpf_xdp_load_bytes,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use mount_ebpf::answer::{
    SeenEntry, SeenKey, SeenLookup, CALL_FIXED_LEN, MNT_PATH_MAX, PATH_HEAD, SEEN_ENTRIES,
};

use super::bounded;
use super::rpc::{copied_be32, Call};

/// The (client, export root) pairs user space answered, allowed and recorded itself.
#[map(name = "MOUNT_SEEN")]
static SEEN: LruHashMap<SeenKey, SeenEntry> = LruHashMap::with_max_entries(SEEN_ENTRIES, 0);

/// Where a MNT call's `MOUNT_SEEN` key and path tail are built: they do not fit the
/// program's stack beside the rest.
#[map(name = "MOUNT_SEEN_KEY")]
static SEEN_KEY: PerCpuArray<SeenLookup> = PerCpuArray::with_max_entries(1, 0);

/// The `MOUNT_SEEN` entry of the MNT path of `call` (a `dirpath` at its arguments: length,
/// bytes, padding, all inside the `len`-byte payload at `P`) from `addr`; None when the
/// path is empty, longer than `MNT_PATH_MAX`, not in the call's copy, or the pair is not
/// in the map.
#[inline(always)]
pub(super) fn seen_mnt<const P: usize>(
    ctx: &XdpContext,
    call: &Call,
    len: u32,
    addr: [u32; 4],
) -> Option<SeenHit> {
    let args = call.args;
    // The length must lie in the copy (it does but for calls with verifiers of hundreds of
    // bytes, which go to user space).
    if args + 4 > call.copied {
        return None;
    }
    let path_len = copied_be32(call.copy, args);
    if path_len == 0 || path_len > MNT_PATH_MAX as u32 {
        return None;
    }
    if CALL_FIXED_LEN + args + 4 + ((path_len + 3) & !3) > len {
        return None;
    }
    let lookup = SEEN_KEY.get_ptr_mut(0)?;
    // SAFETY: the per-CPU slot is this program run's own; nothing else runs on this CPU
    // until the program returns.
    let words = lookup.cast::<u32>();
    // Word by word at constant offsets: an aggregate copy or fill becomes a byte loop, and
    // a loop's changing offset into a map value is refused without CAP_PERFMON ("pointer
    // arithmetic ... prohibited for !root").
    macro_rules! put {
        ($($i:literal = $v:expr;)*) => {
            // SAFETY: `SeenLookup` starts with the key's 13 words (repr(C)) in this CPU's
            // own slot.
            unsafe { $(core::ptr::write_volatile(words.add($i), $v);)* }
        };
    }
    macro_rules! zero {
        ($($i:literal)*) => { put!($($i = 0;)*); };
    }
    put!(0 = addr[0]; 1 = addr[1]; 2 = addr[2]; 3 = addr[3]; 4 = path_len;);
    zero!(5 6 7 8 9 10 11 12);
    // SAFETY: as above; nothing else runs on this CPU until the program returns.
    let lookup = unsafe { &mut *lookup };
    // The path's bytes from the frame, not from the copy: cutting copied words at the
    // path's end takes a branch per word, and the verifier, following every combination,
    // gave up (E2BIG) on the unprivileged load.
    let args = P as u32 + CALL_FIXED_LEN + args;
    let head = if path_len > PATH_HEAD as u32 {
        PATH_HEAD as u32
    } else {
        path_len
    };
    // The helper's size must provably lie in 1..=PATH_HEAD where the verifier sees it (see
    // `bounded`): the identity for 1..=32.
    let n = bounded::<{ PATH_HEAD as u64 - 1 }>(head);
    // SAFETY: the helper bounds-checks `args + 4 .. + n` against the frame and writes `n`
    // bytes into `path_head`, which holds PATH_HEAD.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            args + 4,
            lookup.key.path_head.as_mut_ptr().cast(),
            n,
        )
    };
    if r != 0 {
        return None;
    }
    let long = path_len > PATH_HEAD as u32;
    if long {
        read_tail(ctx, lookup, args, path_len)?;
    }
    // SAFETY: the map lookup returns a pointer into the map's value, valid until the
    // program returns.
    let entry = unsafe { SEEN.get(&lookup.key)? };
    if long && !same_tail(lookup, entry) {
        return None;
    }
    Some(SeenHit {
        generation: entry.generation,
        flags: entry.flags,
        template_v1: entry.template_v1,
        template_v3: entry.template_v3,
    })
}

/// What [`call`] needs of a `MOUNT_SEEN` entry (not its path tail).
pub(super) struct SeenHit {
    pub generation: u32,
    pub flags: u32,
    pub template_v1: u32,
    pub template_v3: u32,
}

/// Reads the call's path bytes after `PATH_HEAD` (`path_len` > `PATH_HEAD` in all) into
/// the scratch's tail, zero-padded. Before the map lookup, so that no entry pointer has to
/// live across the helper call (the stack has no room for it).
#[inline(always)]
fn read_tail(ctx: &XdpContext, lookup: &mut SeenLookup, args: u32, path_len: u32) -> Option<()> {
    let words = lookup.tail.as_mut_ptr().cast::<u64>();
    macro_rules! zero {
        ($($i:literal)*) => {
            // SAFETY: `tail` is 16 u64 words, 8-aligned, in this CPU's own slot.
            unsafe { $(core::ptr::write_volatile(words.add($i), 0);)* }
        };
    }
    zero!(0 1 2 3 4 5 6 7 8 9 10 11);
    // 1..=96 for the lengths `seen_mnt` accepted; the mask bounds it by 128, the buffer.
    let n = bounded::<127>(path_len - PATH_HEAD as u32);
    // SAFETY: the helper bounds-checks the frame range and writes `n` bytes into `tail`,
    // which holds 128.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            args + 4 + PATH_HEAD as u32,
            lookup.tail.as_mut_ptr().cast(),
            n,
        )
    };
    (r == 0).then_some(())
}

/// Whether the tail [`read_tail`] read equals the entry's.
#[inline(always)]
fn same_tail(lookup: &SeenLookup, entry: &SeenEntry) -> bool {
    let (theirs, ours) = (
        lookup.tail.as_ptr().cast::<u64>(),
        entry.path_tail.as_ptr().cast::<u64>(),
    );
    let mut diff = 0u64;
    macro_rules! cmp {
        ($($i:literal)*) => {
            // SAFETY: both are 12 u64 words at constant offsets, 8-aligned (the structs
            // are `align(8)`): the entry's tail and this CPU's scratch.
            unsafe { $(diff |= *ours.add($i) ^ *theirs.add($i);)* }
        };
    }
    cmp!(0 1 2 3 4 5 6 7 8 9 10 11);
    diff == 0
}
