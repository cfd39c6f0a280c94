//! Writing the reply over the call: the template, the xid, and the headers turned
//! around in place with their checksums.
use aya_ebpf::{
    bindings::xdp_action::XDP_TX, helpers::generated::bpf_xdp_store_bytes, programs::XdpContext,
};
use mount_ebpf::answer::{fold, udp_checksum, ReplyTemplate, REPLY_TTL};
use mount_ebpf::wire::{ETH_HDR_LEN, IPPROTO_UDP, IPV4_HDR_LEN, UDP_HDR_LEN};

use super::{bounded, ptr_at, V4_PAYLOAD, V4_UDP, V6_PAYLOAD, V6_UDP};

/// Copies the template into the frame at `P` and patches its xid.
#[inline(always)]
fn put_reply<const P: usize>(
    ctx: &XdpContext,
    xid: [u8; 4],
    template: &ReplyTemplate,
    tlen: usize,
) -> Option<()> {
    // Bounded again where the verifier sees it (see `bounded`): the helper's size must
    // provably lie in 1..=TEMPLATE_MAX. For a `tlen` that `template_len` accepted (a
    // multiple of 4 in 24..=256) this is `tlen` itself.
    let n = bounded::<63>(tlen as u32 / 4) * 4;
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

/// Swaps the MACs and the UDP ports in place, writes the UDP length and checksum; `sum` is
/// the checksum's sum over the addresses (pseudo-header) and the template with its xid
/// (`template_sum`). Returns nothing to check: the caller proved the headers are there.
#[inline(always)]
fn turn_eth_udp<const UDP: usize>(ctx: &XdpContext, udp_len: u16, sum: u64) -> Option<()> {
    let eth = ptr_at::<[[u8; 2]; 6], 0>(ctx)? as *mut [[u8; 2]; 6];
    let udp = ptr_at::<[[u8; 2]; 4], UDP>(ctx)? as *mut [[u8; 2]; 4];
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame; one pair of halves at
    // a time, so nothing needs the stack.
    unsafe {
        let mut i = 0;
        while i < 3 {
            let (to, from) = ((*eth)[i], (*eth)[i + 3]);
            (*eth)[i] = from;
            (*eth)[i + 3] = to;
            i += 1;
        }
        let (sport, dport) = ((*udp)[0], (*udp)[1]);
        let sum = sum
            + u64::from(u16::from_be_bytes(sport))
            + u64::from(u16::from_be_bytes(dport))
            + 2 * u64::from(udp_len)
            + u64::from(IPPROTO_UDP);
        (*udp)[0] = dport;
        (*udp)[1] = sport;
        (*udp)[2] = udp_len.to_be_bytes();
        (*udp)[3] = udp_checksum(sum).to_be_bytes();
    }
    Some(())
}

/// The checksum's sum over the template and the xid patched into it.
#[inline(always)]
fn template_sum(xid: [u8; 4], template: &ReplyTemplate) -> u64 {
    u64::from(template.sum)
        + u64::from(u16::from_be_bytes([xid[0], xid[1]]))
        + u64::from(u16::from_be_bytes([xid[2], xid[3]]))
}

/// The IPv4 reply from `dst` back to `src` (host order), its payload the template.
#[inline(always)]
pub(super) fn v4(
    ctx: &XdpContext,
    src: u32,
    dst: u32,
    xid: [u8; 4],
    template: &ReplyTemplate,
    tlen: usize,
) -> Option<u32> {
    put_reply::<V4_PAYLOAD>(ctx, xid, template, tlen)?;
    let udp_len = (UDP_HDR_LEN + tlen) as u16;
    let total = IPV4_HDR_LEN as u16 + udp_len;
    let addrs = u64::from(src >> 16)
        + u64::from(src & 0xffff)
        + u64::from(dst >> 16)
        + u64::from(dst & 0xffff);
    // Version/IHL, total length, DF (id 0: an atomic datagram), TTL/protocol: what
    // mount-proto's emitter writes.
    let header =
        0x4500 + u64::from(total) + 0x4000 + (u64::from(REPLY_TTL) << 8) + u64::from(IPPROTO_UDP);
    let ip_sum = !fold(header + addrs);
    let ip = ptr_at::<[u32; 5], ETH_HDR_LEN>(ctx)? as *mut [u32; 5];
    let t = total.to_be_bytes();
    let c = ip_sum.to_be_bytes();
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
    unsafe {
        (*ip)[0] = u32::from_ne_bytes([0x45, 0, t[0], t[1]]);
        (*ip)[1] = u32::from_ne_bytes([0, 0, 0x40, 0]);
        (*ip)[2] = u32::from_ne_bytes([REPLY_TTL, IPPROTO_UDP, c[0], c[1]]);
        (*ip)[3] = u32::from_ne_bytes(dst.to_be_bytes());
        (*ip)[4] = u32::from_ne_bytes(src.to_be_bytes());
    }
    turn_eth_udp::<V4_UDP>(ctx, udp_len, template_sum(xid, template) + addrs)?;
    Some(XDP_TX)
}

/// The IPv6 reply: addresses swapped in place, the template as its payload.
#[inline(always)]
pub(super) fn v6(
    ctx: &XdpContext,
    xid: [u8; 4],
    template: &ReplyTemplate,
    tlen: usize,
) -> Option<u32> {
    put_reply::<V6_PAYLOAD>(ctx, xid, template, tlen)?;
    let udp_len = (UDP_HDR_LEN + tlen) as u16;
    let l = udp_len.to_be_bytes();
    let fixed = ptr_at::<[u32; 2], ETH_HDR_LEN>(ctx)? as *mut [u32; 2];
    // Source words 0..4, destination words 4..8.
    let a = ptr_at::<[u32; 8], { ETH_HDR_LEN + 8 }>(ctx)? as *mut [u32; 8];
    let mut addrs = 0u64;
    // SAFETY: `ptr_at` checked that the bytes lie inside the frame; one pair of words at a
    // time, so nothing needs the stack.
    unsafe {
        // Version 6, traffic class 0, flow label 0, payload length, UDP, hop limit.
        (*fixed)[0] = u32::from_ne_bytes([0x60, 0, 0, 0]);
        (*fixed)[1] = u32::from_ne_bytes([l[0], l[1], IPPROTO_UDP, REPLY_TTL]);
        let mut i = 0;
        while i < 4 {
            let (from, to) = ((*a)[i], (*a)[i + 4]);
            let (f, t) = (u32::from_be(from), u32::from_be(to));
            addrs += u64::from(f >> 16) + u64::from(f & 0xffff);
            addrs += u64::from(t >> 16) + u64::from(t & 0xffff);
            (*a)[i] = to;
            (*a)[i + 4] = from;
            i += 1;
        }
    }
    turn_eth_udp::<V6_UDP>(ctx, udp_len, template_sum(xid, template) + addrs)?;
    Some(XDP_TX)
}
