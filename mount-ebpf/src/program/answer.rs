//! Answers in the program (XDP_TX): a MOUNT NULL call (v1-v3, IPv4 or IPv6) is answered
//! with the reply template user space encoded, when the call is plain enough that
//! user space's parser and encoder would give exactly that reply; so is a MNT whose
//! (client, exact path) pair user space put in `MOUNT_SEEN` for the current generation
//! (it answered, allowed and recorded that pair itself, docs/xdp-answers.md). Anything else (IP
//! options, odd lengths, an unknown credential flavor, a group address, a bad IPv4
//! header checksum, ...) returns None and goes to AF_XDP as before.
//!
//! Offsets past the credential depend on its length: those words are read with
//! `bpf_xdp_load_bytes` (a helper taking a scalar offset), never with packet-pointer
//! arithmetic on a register, which the verifier refuses without CAP_PERFMON.
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_TX},
    helpers::generated::{
        bpf_xdp_adjust_tail, bpf_xdp_get_buff_len, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use mount_ebpf::answer::{
    fold, udp_checksum, ReplyTemplate, SeenEntry, SeenKey, SeenLookup, ANSWER_MNT_V4,
    ANSWER_MNT_V6, ANSWER_NULL_V4, ANSWER_NULL_V6, AUTH_NONE, AUTH_SYS, CALL_FIXED_LEN,
    IPPORT_RESERVED, MAX_AUTH_BYTES, MAX_GIDS, MAX_MACHINE_NAME, MNT_PATH_MAX, MOUNT_MAX_VERSION,
    MOUNT_MIN_VERSION, MOUNT_PROGRAM, MSG_CALL, PATH_HEAD, PROC_MNT, PROC_NULL, REPLY_TTL,
    RPC_VERSION, SEEN_ENTRIES, SEEN_SECURE, TEMPLATE_ENTRIES, TEMPLATE_MAX, TEMPLATE_MIN,
    TEMPLATE_NULL,
};
use mount_ebpf::wire::{ETH_HDR_LEN, IPPROTO_UDP, IPV4_HDR_LEN, IPV6_HDR_LEN, UDP_HDR_LEN};
use mount_ebpf::{Config, Counter};

use super::ptr_at;

/// The reply templates user space encoded (`TEMPLATE_*` indices).
#[map(name = "MOUNT_TEMPLATES")]
static TEMPLATES: Array<ReplyTemplate> = Array::with_max_entries(TEMPLATE_ENTRIES, 0);

/// The (client, export root) pairs user space answered, allowed and recorded itself.
#[map(name = "MOUNT_SEEN")]
static SEEN: LruHashMap<SeenKey, SeenEntry> = LruHashMap::with_max_entries(SEEN_ENTRIES, 0);

/// Where a MNT call's `MOUNT_SEEN` key and path tail are built: they do not fit the
/// program's stack beside the rest.
#[map(name = "MOUNT_SEEN_KEY")]
static SEEN_KEY: PerCpuArray<SeenLookup> = PerCpuArray::with_max_entries(1, 0);

/// Longest call payload answered here (a NULL call is 40 bytes plus credential and
/// verifier, each at most 400).
const MAX_CALL_LEN: u32 = 1024;

/// The family and header layout of a steered call, as `classify` found it.
#[derive(Clone, Copy)]
pub enum Family {
    /// IPv4 with a 20-byte header (no options).
    V4,
    /// IPv6 with UDP right after the fixed header.
    V6,
    /// Anything else (IPv4 options): never answered here.
    Other,
}

/// The action for a call the program answers itself (XDP_TX, or XDP_DROP when the frame
/// was already resized and could not be finished) and the counter to bump, or None to
/// steer it as before.
#[inline(always)]
pub fn try_answer(ctx: &XdpContext, config: &Config, family: Family) -> Option<(u32, Counter)> {
    // The cheap test first: most steered calls are neither NULL nor MNT, and they should
    // pay a few loads for answers being on, not the header copies and checks below (which
    // cost far more when the verifier adds its Spectre barriers to an unprivileged load).
    let (null_bit, mnt_bit) = match family {
        Family::V4 => (ANSWER_NULL_V4, ANSWER_MNT_V4),
        Family::V6 => (ANSWER_NULL_V6, ANSWER_MNT_V6),
        Family::Other => return None,
    };
    let proc_ = match family {
        Family::V4 => mount_proc::<V4_PAYLOAD>(ctx)?,
        _ => mount_proc::<V6_PAYLOAD>(ctx)?,
    };
    let (bit, counter) = if proc_ == PROC_NULL {
        (null_bit, Counter::AnsweredNull)
    } else {
        (mnt_bit, Counter::AnsweredMnt)
    };
    if config.answers & bit == 0 {
        return None;
    }
    let action = match family {
        Family::V4 => answer_v4(ctx, config, proc_)?,
        _ => answer_v6(ctx, config, proc_)?,
    };
    Some((action, counter))
}

/// The procedure (NULL or MNT) when the payload at `P` starts like a MOUNT NULL or MNT
/// call (CALL, RPC v2, MOUNT v1-v3): word loads straight from the frame, no copies.
#[inline(always)]
fn mount_proc<const P: usize>(ctx: &XdpContext) -> Option<u32> {
    let h = ptr_at::<[[u8; 4]; 6], P>(ctx)?;
    // SAFETY: `ptr_at` checked that the 24 bytes lie inside the frame.
    let word = |i: usize| u32::from_be_bytes(unsafe { (*h)[i] });
    let proc_ = word(5);
    ((proc_ == PROC_NULL || proc_ == PROC_MNT)
        && word(3) == MOUNT_PROGRAM
        && word(1) == MSG_CALL
        && word(2) == RPC_VERSION
        && (MOUNT_MIN_VERSION..=MOUNT_MAX_VERSION).contains(&word(4)))
    .then_some(proc_)
}

const V4_UDP: usize = ETH_HDR_LEN + IPV4_HDR_LEN;
const V4_PAYLOAD: usize = V4_UDP + UDP_HDR_LEN;
const V6_UDP: usize = ETH_HDR_LEN + IPV6_HDR_LEN;
const V6_PAYLOAD: usize = V6_UDP + UDP_HDR_LEN;

/// What both families read before answering: the MACs (destination, source) and the
/// UDP header.
struct Frame {
    macs: [u8; 12],
    udp: [u8; 8],
    len: usize,
}

#[inline(always)]
fn frame_basics<const UDP: usize>(ctx: &XdpContext) -> Option<Frame> {
    // SAFETY (both reads): `ptr_at` checked that the bytes lie inside the frame.
    let macs = unsafe { *ptr_at::<[u8; 12], 0>(ctx)? };
    let udp = unsafe { *ptr_at::<[u8; 8], UDP>(ctx)? };
    // A group source cannot be answered, and a call to a group address is answered by the
    // kernel socket, which picks a proper source (as the AF_XDP worker does).
    if macs[0] & 1 != 0 || macs[6] & 1 != 0 {
        return None;
    }
    // Source port 0 cannot be answered (user space's parser refuses it).
    if udp[0] == 0 && udp[1] == 0 {
        return None;
    }
    // The frame's length from the helper: `data_end - data` is a pointer subtraction, which
    // the verifier refuses without CAP_PERFMON ("pointer -= pointer prohibited"). The program
    // is not loaded for multi-buffer frames, so this is the linear part's length.
    // SAFETY: the helper only reads the context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    Some(Frame { macs, udp, len })
}

#[inline(always)]
fn answer_v4(ctx: &XdpContext, config: &Config, proc_: u32) -> Option<u32> {
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    let ip = unsafe { *ptr_at::<[u8; IPV4_HDR_LEN], ETH_HDR_LEN>(ctx)? };
    let f = frame_basics::<V4_UDP>(ctx)?;
    // User space drops a bad header checksum; so must we (to AF_XDP, which drops it).
    let mut acc = 0u64;
    let mut i = 0;
    while i < IPV4_HDR_LEN {
        acc += u64::from(u16::from_be_bytes([ip[i], ip[i + 1]]));
        i += 2;
    }
    if fold(acc) != 0xffff {
        return None;
    }
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let udp_len = u16::from_be_bytes([f.udp[4], f.udp[5]]) as usize;
    if total != IPV4_HDR_LEN + udp_len || ETH_HDR_LEN + total > f.len || udp_len < UDP_HDR_LEN {
        return None;
    }
    let (src, dst) = (
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
    );
    if !v4_unicast(src) || !v4_unicast(dst) {
        return None;
    }
    // `::ffff:a.b.c.d`, as user space keys IPv4 clients.
    let addr = [
        0,
        0,
        u32::from_ne_bytes([0, 0, 0xff, 0xff]),
        u32::from_ne_bytes(src),
    ];
    let len = (udp_len - UDP_HDR_LEN) as u32;
    let (xid, index) = call::<V4_PAYLOAD>(ctx, len, proc_, config, addr, &f)?;
    let template = TEMPLATES.get(index)?;
    let tlen = template_len(template)?;
    resize(ctx, f.len, V4_PAYLOAD + tlen)?;
    Some(emit_v4(ctx, &f, src, dst, xid, template, tlen).unwrap_or(XDP_DROP))
}

#[inline(always)]
fn answer_v6(ctx: &XdpContext, config: &Config, proc_: u32) -> Option<u32> {
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    let ip = unsafe { *ptr_at::<[u8; IPV6_HDR_LEN], ETH_HDR_LEN>(ctx)? };
    let f = frame_basics::<V6_UDP>(ctx)?;
    let payload_len = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let udp_len = u16::from_be_bytes([f.udp[4], f.udp[5]]) as usize;
    if payload_len != udp_len || ETH_HDR_LEN + IPV6_HDR_LEN + payload_len > f.len {
        return None;
    }
    // The UDP checksum is mandatory over IPv6: user space drops a call without one.
    if udp_len < UDP_HDR_LEN || (f.udp[6] == 0 && f.udp[7] == 0) {
        return None;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    if !v6_unicast(&src) || !v6_unicast(&dst) {
        return None;
    }
    let len = (udp_len - UDP_HDR_LEN) as u32;
    let w = |i: usize| u32::from_ne_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]);
    let addr = [w(0), w(4), w(8), w(12)];
    let (xid, index) = call::<V6_PAYLOAD>(ctx, len, proc_, config, addr, &f)?;
    let template = TEMPLATES.get(index)?;
    let tlen = template_len(template)?;
    resize(ctx, f.len, V6_PAYLOAD + tlen)?;
    Some(emit_v6(ctx, &f, &src, &dst, xid, template, tlen).unwrap_or(XDP_DROP))
}

/// Not multicast, broadcast or unspecified (what user space refuses to answer from or to;
/// the reserved 240/4 is refused too, which only sends it to AF_XDP).
#[inline(always)]
fn v4_unicast(a: [u8; 4]) -> bool {
    a[0] < 224 && u32::from_ne_bytes(a) != 0
}

#[inline(always)]
fn v6_unicast(a: &[u8; 16]) -> bool {
    let zero = a.iter().fold(0u8, |acc, b| acc | b) == 0;
    a[0] != 0xff && !zero
}

#[inline(always)]
fn template_len(t: &ReplyTemplate) -> Option<usize> {
    let len = t.len as usize;
    if !(TEMPLATE_MIN..=TEMPLATE_MAX).contains(&len) || len % 4 != 0 {
        return None;
    }
    Some(len)
}

/// Shrinks (or grows) the frame to `new_len` bytes; None (frame untouched) if the driver
/// refuses.
#[inline(always)]
fn resize(ctx: &XdpContext, old_len: usize, new_len: usize) -> Option<()> {
    let delta = new_len as i32 - old_len as i32;
    if delta == 0 {
        return Some(());
    }
    // SAFETY: the helper checks the frame's bounds itself; every packet pointer is
    // derived again afterwards.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return None;
    }
    Some(())
}

/// Reads one big-endian word at a run-time offset of the frame.
#[inline(always)]
fn load_be32(ctx: &XdpContext, offset: u32) -> Option<u32> {
    let mut word = [0u8; 4];
    // SAFETY: the helper bounds-checks `offset..offset + 4` against the frame and writes
    // 4 bytes into `word`.
    let r = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset, word.as_mut_ptr().cast(), 4) };
    (r == 0).then_some(u32::from_be_bytes(word))
}

/// The xid and reply template of a NULL or MNT call at `P` (`len` payload bytes) from
/// `addr` (IPv4-mapped for IPv4) that user space would answer with that template.
#[inline(always)]
fn call<const P: usize>(
    ctx: &XdpContext,
    len: u32,
    proc_: u32,
    config: &Config,
    addr: [u32; 4],
    f: &Frame,
) -> Option<([u8; 4], u32)> {
    let (xid, vers, args) = rpc_call::<P>(ctx, len, proc_)?;
    if proc_ == PROC_NULL {
        return Some((xid, TEMPLATE_NULL));
    }
    let entry = seen_mnt::<P>(ctx, len, args, addr)?;
    // 0 is "no generation": a zeroed Config answers no MNT.
    if config.mnt_generation == 0 || entry.generation != config.mnt_generation {
        return None;
    }
    let port = u16::from_be_bytes([f.udp[0], f.udp[1]]);
    if entry.flags & SEEN_SECURE != 0 && port >= IPPORT_RESERVED {
        return None;
    }
    Some((
        xid,
        if vers == 3 {
            entry.template_v3
        } else {
            entry.template_v1
        },
    ))
}

/// The `MOUNT_SEEN` entry of the MNT path at offset `args` (a `dirpath`: length, bytes,
/// padding, all inside the `len`-byte payload at `P`) from `addr`; None when the path is
/// empty, longer than `MNT_PATH_MAX`, or the pair is not in the map.
#[inline(always)]
fn seen_mnt<const P: usize>(
    ctx: &XdpContext,
    len: u32,
    args: u32,
    addr: [u32; 4],
) -> Option<SeenHit> {
    let path_len = load_be32(ctx, args)?;
    if path_len == 0 || path_len > MNT_PATH_MAX as u32 {
        return None;
    }
    if args + 4 + ((path_len + 3) & !3) > P as u32 + len {
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
            // SAFETY: `SeenLookup` is 46 words (repr(C), 4-aligned) in this CPU's own slot.
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
    let head = if path_len > PATH_HEAD as u32 {
        PATH_HEAD as u32
    } else {
        path_len
    };
    // The helper's size must provably lie in 1..=PATH_HEAD where the verifier sees it (see
    // `put_reply`): the identity for 1..=32.
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
struct SeenHit {
    generation: u32,
    flags: u32,
    template_v1: u32,
    template_v3: u32,
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

/// `n` masked into 1..=MASK+1 where the verifier sees it (a helper's size must provably lie
/// inside the buffer): for `n` in that range already, `n` itself. A Rust comparison may be
/// made on a copy of the register the call then uses, and the verifier loses the bound;
/// masking in assembly cannot be moved. MASK+1 must be a power of two.
#[inline(always)]
fn bounded<const MASK: u64>(n: u32) -> u32 {
    let mut n = n as u64;
    // SAFETY: register arithmetic only, no memory access.
    unsafe {
        core::arch::asm!(
            "{n} += -1",
            "{n} &= {mask}",
            "{n} += 1",
            n = inout(reg) n,
            mask = const MASK,
            options(pure, nomem, nostack),
        );
    }
    n as u32
}

/// The xid, version and the offset of the arguments of a MOUNT call at `P` (`len` payload
/// bytes) for procedure `proc_` that user space would decode alike: RPC v2 CALL to MOUNT
/// v1-v3, an AUTH_NONE credential or an AUTH_SYS one that decodes, a verifier of at most
/// 400 bytes, everything XDR-aligned and inside the datagram (bytes after the verifier are
/// the arguments, which NULL ignores as user space does).
#[inline(always)]
fn rpc_call<const P: usize>(ctx: &XdpContext, len: u32, proc_: u32) -> Option<([u8; 4], u32, u32)> {
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

/// Copies the template into the frame at `P` and patches its xid.
#[inline(always)]
fn put_reply<const P: usize>(
    ctx: &XdpContext,
    xid: [u8; 4],
    template: &ReplyTemplate,
    tlen: usize,
) -> Option<()> {
    // Bounded again where the verifier sees it: the helper's size must provably lie in
    // 1..=TEMPLATE_MAX (see `bounded`), here also a multiple of 4. For a `tlen` that
    // `template_len` accepted (a multiple of 4 in 24..=256) this is `tlen` itself.
    let mut n = tlen as u64;
    // SAFETY: register arithmetic only, no memory access.
    unsafe {
        core::arch::asm!(
            "{n} += -4",
            "{n} &= 252",
            "{n} += 4",
            n = inout(reg) n,
            options(pure, nomem, nostack),
        );
    }
    let n = n as u32;
    // SAFETY: the helper bounds-checks `P..P + n` against the frame and reads `n` bytes of
    // the template, which holds TEMPLATE_MAX.
    let r = unsafe { bpf_xdp_store_bytes(ctx.ctx, P as u32, template.bytes.as_ptr() as *mut _, n) };
    if r != 0 {
        return None;
    }
    let at = ptr_at::<[u8; 4], P>(ctx)? as *mut [u8; 4];
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    unsafe { *at = xid };
    Some(())
}

/// The UDP checksum's sum over the template, the xid, the ports and twice the UDP length
/// (header and pseudo-header); the caller adds the addresses.
#[inline(always)]
fn udp_sum(f: &Frame, xid: [u8; 4], template: &ReplyTemplate, udp_len: u16) -> u64 {
    u64::from(template.sum)
        + u64::from(u16::from_be_bytes([xid[0], xid[1]]))
        + u64::from(u16::from_be_bytes([xid[2], xid[3]]))
        + u64::from(u16::from_be_bytes([f.udp[0], f.udp[1]]))
        + u64::from(u16::from_be_bytes([f.udp[2], f.udp[3]]))
        + 2 * u64::from(udp_len)
        + u64::from(IPPROTO_UDP)
}

#[inline(always)]
fn put_eth_udp<const UDP: usize>(
    f: &Frame,
    ctx: &XdpContext,
    udp_len: u16,
    sum: u16,
) -> Option<()> {
    let eth = ptr_at::<[u8; 12], 0>(ctx)? as *mut [u8; 12];
    let m = f.macs;
    let udp = ptr_at::<[u8; 8], UDP>(ctx)? as *mut [u8; 8];
    let (l, c) = (udp_len.to_be_bytes(), sum.to_be_bytes());
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    unsafe {
        *eth = [
            m[6], m[7], m[8], m[9], m[10], m[11], m[0], m[1], m[2], m[3], m[4], m[5],
        ];
        *udp = [
            f.udp[2], f.udp[3], f.udp[0], f.udp[1], l[0], l[1], c[0], c[1],
        ];
    }
    Some(())
}

#[inline(always)]
fn emit_v4(
    ctx: &XdpContext,
    f: &Frame,
    src: [u8; 4],
    dst: [u8; 4],
    xid: [u8; 4],
    template: &ReplyTemplate,
    tlen: usize,
) -> Option<u32> {
    put_reply::<V4_PAYLOAD>(ctx, xid, template, tlen)?;
    let udp_len = (UDP_HDR_LEN + tlen) as u16;
    let total = IPV4_HDR_LEN as u16 + udp_len;
    let addrs = u64::from(u16::from_be_bytes([src[0], src[1]]))
        + u64::from(u16::from_be_bytes([src[2], src[3]]))
        + u64::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u64::from(u16::from_be_bytes([dst[2], dst[3]]));
    // Version/IHL, total length, DF (id 0: an atomic datagram), TTL/protocol: what
    // mount-proto's emitter writes.
    let header =
        0x4500 + u64::from(total) + 0x4000 + (u64::from(REPLY_TTL) << 8) + u64::from(IPPROTO_UDP);
    let ip_sum = (!fold(header + addrs)).to_be_bytes();
    let t = total.to_be_bytes();
    let ip = ptr_at::<[u8; IPV4_HDR_LEN], ETH_HDR_LEN>(ctx)? as *mut [u8; IPV4_HDR_LEN];
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    unsafe {
        *ip = [
            0x45,
            0,
            t[0],
            t[1],
            0,
            0,
            0x40,
            0,
            REPLY_TTL,
            IPPROTO_UDP,
            ip_sum[0],
            ip_sum[1],
            dst[0],
            dst[1],
            dst[2],
            dst[3],
            src[0],
            src[1],
            src[2],
            src[3],
        ];
    }
    let sum = udp_checksum(udp_sum(f, xid, template, udp_len) + addrs);
    put_eth_udp::<V4_UDP>(f, ctx, udp_len, sum)?;
    Some(XDP_TX)
}

#[inline(always)]
fn emit_v6(
    ctx: &XdpContext,
    f: &Frame,
    src: &[u8; 16],
    dst: &[u8; 16],
    xid: [u8; 4],
    template: &ReplyTemplate,
    tlen: usize,
) -> Option<u32> {
    put_reply::<V6_PAYLOAD>(ctx, xid, template, tlen)?;
    let udp_len = (UDP_HDR_LEN + tlen) as u16;
    let mut addrs = 0u64;
    let mut i = 0;
    while i < 16 {
        addrs += u64::from(u16::from_be_bytes([src[i], src[i + 1]]))
            + u64::from(u16::from_be_bytes([dst[i], dst[i + 1]]));
        i += 2;
    }
    let l = udp_len.to_be_bytes();
    let fixed = ptr_at::<[u8; 8], ETH_HDR_LEN>(ctx)? as *mut [u8; 8];
    let from = ptr_at::<[u8; 16], { ETH_HDR_LEN + 8 }>(ctx)? as *mut [u8; 16];
    let to = ptr_at::<[u8; 16], { ETH_HDR_LEN + 24 }>(ctx)? as *mut [u8; 16];
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    unsafe {
        // Version 6, traffic class 0, flow label 0, payload length, UDP, hop limit.
        *fixed = [0x60, 0, 0, 0, l[0], l[1], IPPROTO_UDP, REPLY_TTL];
        *from = *dst;
        *to = *src;
    }
    let sum = udp_checksum(udp_sum(f, xid, template, udp_len) + addrs);
    put_eth_udp::<V6_UDP>(f, ctx, udp_len, sum)?;
    Some(XDP_TX)
}
