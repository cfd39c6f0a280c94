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
//!
//! Headers are read and rewritten in place, word by word, never copied to the stack: for
//! a loader without CAP_PERFMON the verifier puts a speculation barrier (Spectre v4) after
//! the first store to each stack slot, and the copies of the MACs, UDP and IP headers
//! cost about 180 ns per answer that way (measured through test-run); the frame's headers
//! stay where they are through `bpf_xdp_adjust_tail`, which only moves its end.
mod emit;
mod rpc;
mod seen;

use aya_ebpf::{
    bindings::xdp_action::XDP_DROP,
    helpers::generated::{bpf_xdp_adjust_tail, bpf_xdp_get_buff_len},
    macros::map,
    maps::Array,
    programs::XdpContext,
};
use mount_ebpf::answer::{
    fold, ReplyTemplate, ANSWER_MNT_V4, ANSWER_MNT_V6, ANSWER_NULL_V4, ANSWER_NULL_V6,
    IPPORT_RESERVED, MOUNT_MAX_VERSION, MOUNT_MIN_VERSION, MOUNT_PROGRAM, MSG_CALL, PROC_MNT,
    PROC_NULL, RPC_VERSION, SEEN_SECURE, TEMPLATE_ENTRIES, TEMPLATE_MAX, TEMPLATE_MIN,
    TEMPLATE_NULL,
};
use mount_ebpf::wire::{ETH_HDR_LEN, IPV4_HDR_LEN, IPV6_HDR_LEN, UDP_HDR_LEN};
use mount_ebpf::{Config, Counter};

use super::{be16_at, ptr_at};

/// The reply templates user space encoded (`TEMPLATE_*` indices).
#[map(name = "MOUNT_TEMPLATES")]
static TEMPLATES: Array<ReplyTemplate> = Array::with_max_entries(TEMPLATE_ENTRIES, 0);

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
    // pay a few loads for answers being on, not the header checks below (which cost far
    // more when the verifier adds its Spectre barriers to an unprivileged load).
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

/// The frame's length when its Ethernet and UDP headers allow an answer (unicast MACs, a
/// source port), with the UDP length and source port.
#[inline(always)]
fn frame_basics<const UDP: usize>(ctx: &XdpContext) -> Option<(usize, usize, u16)> {
    let eth = ptr_at::<[u8; 12], 0>(ctx)?;
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    let (to, from) = unsafe { ((*eth)[0], (*eth)[6]) };
    // A group source cannot be answered, and a call to a group address is answered by the
    // kernel socket, which picks a proper source (as the AF_XDP worker does).
    if to & 1 != 0 || from & 1 != 0 {
        return None;
    }
    let udp = ptr_at::<[[u8; 2]; 4], UDP>(ctx)?;
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    let (port, udp_len) = unsafe { ((*udp)[0], (*udp)[2]) };
    let (port, udp_len) = (u16::from_be_bytes(port), u16::from_be_bytes(udp_len));
    // Source port 0 cannot be answered (user space's parser refuses it).
    if port == 0 {
        return None;
    }
    // The frame's length from the helper: `data_end - data` is a pointer subtraction, which
    // the verifier refuses without CAP_PERFMON ("pointer -= pointer prohibited"). The program
    // is not loaded for multi-buffer frames, so this is the linear part's length.
    // SAFETY: the helper only reads the context.
    let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    Some((len, udp_len as usize, port))
}

#[inline(always)]
fn answer_v4(ctx: &XdpContext, config: &Config, proc_: u32) -> Option<u32> {
    let ip = ptr_at::<[[u8; 2]; 10], ETH_HDR_LEN>(ctx)?;
    // SAFETY: `ptr_at` checked that the 20 bytes lie inside the frame.
    let half = |i: usize| u16::from_be_bytes(unsafe { (*ip)[i] });
    // User space drops a bad header checksum; so must we (to AF_XDP, which drops it).
    let mut acc = 0u64;
    let mut i = 0;
    while i < 10 {
        acc += u64::from(half(i));
        i += 1;
    }
    if fold(acc) != 0xffff {
        return None;
    }
    let (frame_len, udp_len, port) = frame_basics::<V4_UDP>(ctx)?;
    let total = half(1) as usize;
    if total != IPV4_HDR_LEN + udp_len || ETH_HDR_LEN + total > frame_len || udp_len < UDP_HDR_LEN {
        return None;
    }
    let (src, dst) = (
        (u32::from(half(6)) << 16) | u32::from(half(7)),
        (u32::from(half(8)) << 16) | u32::from(half(9)),
    );
    if !v4_unicast(src) || !v4_unicast(dst) {
        return None;
    }
    // `::ffff:a.b.c.d`, as user space keys IPv4 clients.
    let addr = [
        0,
        0,
        u32::from_ne_bytes([0, 0, 0xff, 0xff]),
        u32::from_ne_bytes(src.to_be_bytes()),
    ];
    let len = (udp_len - UDP_HDR_LEN) as u32;
    let (xid, index) = call::<V4_PAYLOAD>(ctx, len, proc_, config, addr, port)?;
    let template = TEMPLATES.get(index)?;
    let tlen = template_len(template)?;
    resize(ctx, frame_len, V4_PAYLOAD + tlen)?;
    Some(emit::v4(ctx, src, dst, xid, template, tlen).unwrap_or(XDP_DROP))
}

#[inline(always)]
fn answer_v6(ctx: &XdpContext, config: &Config, proc_: u32) -> Option<u32> {
    let payload_len = be16_at::<{ ETH_HDR_LEN + 4 }>(ctx)? as usize;
    let (frame_len, udp_len, port) = frame_basics::<V6_UDP>(ctx)?;
    if payload_len != udp_len || ETH_HDR_LEN + IPV6_HDR_LEN + payload_len > frame_len {
        return None;
    }
    // The UDP checksum is mandatory over IPv6: user space drops a call without one.
    if udp_len < UDP_HDR_LEN || be16_at::<{ V6_UDP + 6 }>(ctx)? == 0 {
        return None;
    }
    // Source words 0..4, destination words 4..8.
    let a = ptr_at::<[u32; 8], { ETH_HDR_LEN + 8 }>(ctx)?;
    // SAFETY: `ptr_at` checked that the 32 bytes lie inside the frame.
    let word = |i: usize| unsafe { (*a)[i] };
    if !v6_unicast(word(0), word(1), word(2), word(3))
        || !v6_unicast(word(4), word(5), word(6), word(7))
    {
        return None;
    }
    let addr = [word(0), word(1), word(2), word(3)];
    let len = (udp_len - UDP_HDR_LEN) as u32;
    let (xid, index) = call::<V6_PAYLOAD>(ctx, len, proc_, config, addr, port)?;
    let template = TEMPLATES.get(index)?;
    let tlen = template_len(template)?;
    resize(ctx, frame_len, V6_PAYLOAD + tlen)?;
    Some(emit::v6(ctx, xid, template, tlen).unwrap_or(XDP_DROP))
}

/// Not multicast, broadcast or unspecified (what user space refuses to answer from or to;
/// the reserved 240/4 is refused too, which only sends it to AF_XDP). `a` in host order.
#[inline(always)]
fn v4_unicast(a: u32) -> bool {
    a >> 24 < 224 && a != 0
}

/// The same for IPv6, from the address's four words as they lie in the frame.
#[inline(always)]
fn v6_unicast(w0: u32, w1: u32, w2: u32, w3: u32) -> bool {
    let first = w0.to_ne_bytes()[0];
    first != 0xff && (w0 | w1 | w2 | w3) != 0
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

/// The xid and reply template of a NULL or MNT call at `P` (`len` payload bytes) from
/// `addr` (IPv4-mapped for IPv4), source port `port`, that user space would answer with
/// that template.
#[inline(always)]
fn call<const P: usize>(
    ctx: &XdpContext,
    len: u32,
    proc_: u32,
    config: &Config,
    addr: [u32; 4],
    port: u16,
) -> Option<([u8; 4], u32)> {
    let call = rpc::rpc_call::<P>(ctx, len, proc_)?;
    if proc_ == PROC_NULL {
        return Some((call.xid, TEMPLATE_NULL));
    }
    let entry = seen::seen_mnt::<P>(ctx, &call, len, addr)?;
    // 0 is "no generation": a zeroed Config answers no MNT.
    if config.mnt_generation == 0 || entry.generation != config.mnt_generation {
        return None;
    }
    if entry.flags & SEEN_SECURE != 0 && port >= IPPORT_RESERVED {
        return None;
    }
    Some((
        call.xid,
        if call.vers == 3 {
            entry.template_v3
        } else {
            entry.template_v1
        },
    ))
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
