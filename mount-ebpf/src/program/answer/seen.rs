//! The `MOUNT_SEEN` lookup of a MNT call's (client, path) pair.
use aya_ebpf::{
    helpers::generated::bpf_xdp_load_bytes,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use mount_ebpf::answer::{
    SeenEntry, SeenKey, SeenLookup, CALL_COPY_MAX, CALL_FIXED_LEN, MNT_PATH_MAX, PATH_HEAD,
    SEEN_ENTRIES,
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
    // The length and the head's bytes must lie in the copy (they do but for calls with
    // verifiers of hundreds of bytes, which go to user space).
    if args + 4 + PATH_HEAD as u32 > CALL_COPY_MAX as u32 || args + 4 > call.copied {
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
    // The head from the copy (the path's bytes end inside the datagram and, checked above,
    // before CALL_COPY_MAX, so all of them were copied), each word cut at the path's end so
    // the key is zero-padded whatever follows the path. Cut without a branch: a branch per
    // word made the verifier follow every combination and give up (E2BIG) on the
    // unprivileged load.
    let head = |i: u32| {
        let word = u32::to_be(copied_be32(call.copy, args + 4 + 4 * i));
        word & path_mask(path_len, i)
    };
    put!(0 = addr[0]; 1 = addr[1]; 2 = addr[2]; 3 = addr[3]; 4 = path_len;
        5 = head(0); 6 = head(1); 7 = head(2); 8 = head(3);
        9 = head(4); 10 = head(5); 11 = head(6); 12 = head(7););
    // SAFETY: as above; nothing else runs on this CPU until the program returns.
    let lookup = unsafe { &mut *lookup };
    let args = P as u32 + CALL_FIXED_LEN + args;
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

/// The mask of the bytes of a `path_len`-byte path in the path's word `i` as it lies in
/// memory (little-endian: the first byte is the low one): all four, the first
/// `path_len - 4i`, or none. Clamped with arithmetic shifts in assembly, where the
/// optimiser cannot turn it back into branches.
#[inline(always)]
fn path_mask(path_len: u32, i: u32) -> u32 {
    let keep = path_len as u64;
    let mask: u64;
    // SAFETY: register arithmetic only, no memory access.
    unsafe {
        core::arch::asm!(
            // keep = max(path_len - 4i, 0)
            "{keep} -= {first}",
            "{sign} = {keep}",
            "{sign} s>>= 63",
            "{sign} ^= -1",
            "{keep} &= {sign}",
            // keep = min(keep, 4) = 4 + min(keep - 4, 0)
            "{keep} += -4",
            "{sign} = {keep}",
            "{sign} s>>= 63",
            "{keep} &= {sign}",
            "{keep} += 4",
            // mask = (1 << 8 keep) - 1
            "{keep} <<= 3",
            "{mask} = 1",
            "{mask} <<= {keep}",
            "{mask} += -1",
            keep = inout(reg) keep => _,
            first = in(reg) u64::from(4 * i),
            sign = out(reg) _,
            mask = out(reg) mask,
            options(pure, nomem, nostack),
        );
    }
    mask as u32
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
