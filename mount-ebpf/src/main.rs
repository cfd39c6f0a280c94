//! The XDP program: steers UDP datagrams for the MOUNT port (unfragmented, untagged
//! Ethernet, IPv4 or IPv6 without extension headers) into the AF_XDP socket of the rx
//! queue they arrived on, and passes everything else to the kernel stack.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use core::mem::size_of;

    use aya_ebpf::{
        bindings::xdp_action::XDP_PASS,
        macros::{map, xdp},
        maps::{Array, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use mount_ebpf::{Config, Counter, COUNTER_COUNT, XSK_MAP_ENTRIES};

    #[map(name = "MOUNT_XSKS")]
    static XSKS: XskMap = XskMap::with_max_entries(XSK_MAP_ENTRIES, 0);

    #[map(name = "MOUNT_CONFIG")]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

    #[map(name = "MOUNT_COUNTERS")]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

    const ETH_HDR_LEN: usize = 14;
    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_IPV6: u16 = 0x86DD;
    const ETHERTYPE_VLAN: u16 = 0x8100;
    const ETHERTYPE_QINQ: u16 = 0x88A8;
    const IPPROTO_UDP: u8 = 17;
    const IPV4_HDR_LEN: usize = 20;
    const IPV6_HDR_LEN: usize = 40;
    const UDP_HDR_LEN: usize = 8;

    /// What to do with a frame once classified.
    enum Verdict {
        Steer,
        Pass(Counter),
    }

    #[xdp]
    pub fn mount_xdp(ctx: XdpContext) -> u32 {
        bump(Counter::Seen);
        match classify(&ctx) {
            Verdict::Steer => match XSKS.redirect(ctx.rx_queue_index(), XDP_PASS as u64) {
                Ok(action) => {
                    bump(Counter::Redirected);
                    action
                }
                // The helper returns the low bits of the flags (XDP_PASS) when the queue's
                // slot is empty: the kernel's UDP socket answers instead.
                Err(_) => {
                    bump(Counter::PassedNoSocket);
                    XDP_PASS
                }
            },
            Verdict::Pass(counter) => {
                bump(counter);
                XDP_PASS
            }
        }
    }

    #[inline(always)]
    fn bump(counter: Counter) {
        if let Some(slot) = COUNTERS.get_ptr_mut(counter.index()) {
            // Per-CPU slot and XDP runs with preemption off: a plain add is race-free.
            unsafe { *slot += 1 };
        }
    }

    /// A pointer to a `T` at `offset` from the start of the frame, if it lies entirely
    /// inside the frame. The comparison is written against `data_end` so the verifier
    /// can mark the range as safe.
    #[inline(always)]
    fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
        let start = ctx.data();
        let end = ctx.data_end();
        if start + offset + size_of::<T>() > end {
            return None;
        }
        Some((start + offset) as *const T)
    }

    /// Big-endian u16 at `offset`.
    #[inline(always)]
    fn be16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
        let p = ptr_at::<[u8; 2]>(ctx, offset)?;
        Some(u16::from_be_bytes(unsafe { *p }))
    }

    #[inline(always)]
    fn u8_at(ctx: &XdpContext, offset: usize) -> Option<u8> {
        let p = ptr_at::<u8>(ctx, offset)?;
        Some(unsafe { *p })
    }

    #[inline(always)]
    fn classify(ctx: &XdpContext) -> Verdict {
        let Some(ethertype) = be16_at(ctx, 12) else {
            return Verdict::Pass(Counter::Malformed);
        };
        match ethertype {
            ETHERTYPE_IPV4 => classify_ipv4(ctx),
            ETHERTYPE_IPV6 => classify_ipv6(ctx),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ => Verdict::Pass(Counter::PassedVlan),
            _ => Verdict::Pass(Counter::PassedNotIp),
        }
    }

    #[inline(always)]
    fn classify_ipv4(ctx: &XdpContext) -> Verdict {
        // The whole fixed header must be there, even if only bytes 0..10 are read
        // (version/IHL, TOS, total length, id, flags/fragment offset, TTL, protocol).
        if ptr_at::<[u8; IPV4_HDR_LEN]>(ctx, ETH_HDR_LEN).is_none() {
            return Verdict::Pass(Counter::Malformed);
        }
        let Some(hdr) = ptr_at::<[u8; 10]>(ctx, ETH_HDR_LEN) else {
            return Verdict::Pass(Counter::Malformed);
        };
        let hdr = unsafe { *hdr };
        if hdr[0] >> 4 != 4 {
            return Verdict::Pass(Counter::Malformed);
        }
        let ihl = (hdr[0] & 0x0f) as usize;
        if ihl < 5 {
            return Verdict::Pass(Counter::Malformed);
        }
        // MF flag or a non-zero fragment offset: the kernel reassembles.
        if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0 {
            return Verdict::Pass(Counter::PassedFragment);
        }
        if hdr[9] != IPPROTO_UDP {
            return Verdict::Pass(Counter::PassedNotUdp);
        }
        classify_udp(ctx, ETH_HDR_LEN + ihl * 4)
    }

    #[inline(always)]
    fn classify_ipv6(ctx: &XdpContext) -> Verdict {
        // A truncated fixed header is malformed whatever its next-header byte says.
        if ptr_at::<[u8; IPV6_HDR_LEN]>(ctx, ETH_HDR_LEN).is_none() {
            return Verdict::Pass(Counter::Malformed);
        }
        let Some(version) = u8_at(ctx, ETH_HDR_LEN) else {
            return Verdict::Pass(Counter::Malformed);
        };
        if version >> 4 != 6 {
            return Verdict::Pass(Counter::Malformed);
        }
        let Some(next_header) = u8_at(ctx, ETH_HDR_LEN + 6) else {
            return Verdict::Pass(Counter::Malformed);
        };
        match next_header {
            IPPROTO_UDP => classify_udp(ctx, ETH_HDR_LEN + IPV6_HDR_LEN),
            // Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility,
            // HIP, shim6, and the two experimental values (RFC 7045 list).
            0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254 => {
                Verdict::Pass(Counter::PassedIpv6Ext)
            }
            _ => Verdict::Pass(Counter::PassedNotUdp),
        }
    }

    #[inline(always)]
    fn classify_udp(ctx: &XdpContext, offset: usize) -> Verdict {
        // The whole UDP header must be present, not only the destination port.
        let Some(udp) = ptr_at::<[u8; UDP_HDR_LEN]>(ctx, offset) else {
            return Verdict::Pass(Counter::Malformed);
        };
        let (wanted, match_source) = match CONFIG.get(0) {
            Some(config) => (config.port, config.match_source != 0),
            None => (0, false),
        };
        // Raw (network order) load, compared with the network-order configured port:
        // the destination port (a server's calls) or, for a load generator, the source
        // port (the server's replies).
        let port = if match_source {
            unsafe { u16::from_ne_bytes([(*udp)[0], (*udp)[1]]) }
        } else {
            unsafe { u16::from_ne_bytes([(*udp)[2], (*udp)[3]]) }
        };
        if wanted != 0 && port == wanted {
            Verdict::Steer
        } else {
            Verdict::Pass(Counter::PassedOtherPort)
        }
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "mount-xdp is an eBPF program: it is built for bpfel-unknown-none by mount-user's build.rs"
    );
}
