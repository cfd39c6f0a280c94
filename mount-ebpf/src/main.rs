//! The XDP program: steers UDP datagrams for the MOUNT port (unfragmented, untagged
//! Ethernet, IPv4 or IPv6 without extension headers) into the AF_XDP socket of the rx
//! queue they arrived on, and passes everything else to the kernel stack.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// `packet_plus` below needs BPF inline assembly (a nightly feature; this crate is built
// with the pinned nightly only).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

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

    /// A pointer to a `T` at `OFFSET` from the start of the frame, if it lies entirely
    /// inside the frame. The comparison is written against `data_end` so the verifier
    /// can mark the range as safe.
    ///
    /// Every offset is a compile-time constant, added as an immediate: without
    /// CAP_PERFMON the verifier refuses packet-pointer arithmetic with a register operand
    /// (it cannot sanitise it against Spectre v1 and says "R3 has pointer with
    /// unsupported alu operation, pointer arithmetic with it prohibited for !root"), and
    /// the daemon loads this program with CAP_BPF and CAP_NET_ADMIN only.
    #[inline(always)]
    fn ptr_at<T, const OFFSET: usize>(ctx: &XdpContext) -> Option<*const T> {
        let at = packet_plus::<OFFSET>(ctx.data());
        if at + size_of::<T>() > ctx.data_end() {
            return None;
        }
        Some(at as *const T)
    }

    /// `packet + OFFSET` as one `rX += imm` instruction. Plain Rust would do for one
    /// constant, but the IPv4 header length picks one of eleven, and the optimiser may
    /// fold those back into a register computed at run time; inline assembly cannot be
    /// folded.
    #[inline(always)]
    fn packet_plus<const OFFSET: usize>(packet: usize) -> usize {
        let mut at = packet;
        // SAFETY: one register addition, no memory access; callers bounds-check the
        // result against data_end before any load.
        unsafe {
            core::arch::asm!(
                "{at} += {offset}",
                at = inout(reg) at,
                offset = const OFFSET,
                options(pure, nomem, nostack),
            );
        }
        at
    }

    /// Big-endian u16 at `OFFSET`.
    #[inline(always)]
    fn be16_at<const OFFSET: usize>(ctx: &XdpContext) -> Option<u16> {
        let p = ptr_at::<[u8; 2], OFFSET>(ctx)?;
        Some(u16::from_be_bytes(unsafe { *p }))
    }

    #[inline(always)]
    fn u8_at<const OFFSET: usize>(ctx: &XdpContext) -> Option<u8> {
        let p = ptr_at::<u8, OFFSET>(ctx)?;
        Some(unsafe { *p })
    }

    #[inline(always)]
    fn classify(ctx: &XdpContext) -> Verdict {
        let Some(ethertype) = be16_at::<12>(ctx) else {
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
        if ptr_at::<[u8; IPV4_HDR_LEN], ETH_HDR_LEN>(ctx).is_none() {
            return Verdict::Pass(Counter::Malformed);
        }
        let Some(hdr) = ptr_at::<[u8; 10], ETH_HDR_LEN>(ctx) else {
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
        // One constant offset per header length (see `ptr_at`); options are rare but
        // legal, and the AF_XDP path parses them.
        match ihl {
            5 => classify_udp::<{ ETH_HDR_LEN + 5 * 4 }>(ctx),
            6 => classify_udp::<{ ETH_HDR_LEN + 6 * 4 }>(ctx),
            7 => classify_udp::<{ ETH_HDR_LEN + 7 * 4 }>(ctx),
            8 => classify_udp::<{ ETH_HDR_LEN + 8 * 4 }>(ctx),
            9 => classify_udp::<{ ETH_HDR_LEN + 9 * 4 }>(ctx),
            10 => classify_udp::<{ ETH_HDR_LEN + 10 * 4 }>(ctx),
            11 => classify_udp::<{ ETH_HDR_LEN + 11 * 4 }>(ctx),
            12 => classify_udp::<{ ETH_HDR_LEN + 12 * 4 }>(ctx),
            13 => classify_udp::<{ ETH_HDR_LEN + 13 * 4 }>(ctx),
            14 => classify_udp::<{ ETH_HDR_LEN + 14 * 4 }>(ctx),
            15 => classify_udp::<{ ETH_HDR_LEN + 15 * 4 }>(ctx),
            _ => Verdict::Pass(Counter::Malformed),
        }
    }

    #[inline(always)]
    fn classify_ipv6(ctx: &XdpContext) -> Verdict {
        // A truncated fixed header is malformed whatever its next-header byte says.
        if ptr_at::<[u8; IPV6_HDR_LEN], ETH_HDR_LEN>(ctx).is_none() {
            return Verdict::Pass(Counter::Malformed);
        }
        let Some(version) = u8_at::<ETH_HDR_LEN>(ctx) else {
            return Verdict::Pass(Counter::Malformed);
        };
        if version >> 4 != 6 {
            return Verdict::Pass(Counter::Malformed);
        }
        let Some(next_header) = u8_at::<{ ETH_HDR_LEN + 6 }>(ctx) else {
            return Verdict::Pass(Counter::Malformed);
        };
        match next_header {
            IPPROTO_UDP => classify_udp::<{ ETH_HDR_LEN + IPV6_HDR_LEN }>(ctx),
            // Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility,
            // HIP, shim6, and the two experimental values (RFC 7045 list).
            0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254 => {
                Verdict::Pass(Counter::PassedIpv6Ext)
            }
            _ => Verdict::Pass(Counter::PassedNotUdp),
        }
    }

    #[inline(always)]
    fn classify_udp<const OFFSET: usize>(ctx: &XdpContext) -> Verdict {
        // The whole UDP header must be present, not only the destination port.
        let Some(udp) = ptr_at::<[u8; UDP_HDR_LEN], OFFSET>(ctx) else {
            return Verdict::Pass(Counter::Malformed);
        };
        let (wanted, match_source) = match CONFIG.get(0) {
            Some(config) => (config.port, config.match_source != 0),
            None => (0, false),
        };
        // Raw (network order) load, compared with the network-order configured port:
        // the destination port (a server's calls) or, for a load generator, the source
        // port (the server's replies). Both ports are read (volatile, so the optimiser
        // cannot turn the choice into a load at `udp + (match_source ? 0 : 2)`, a
        // register offset the verifier refuses without CAP_PERFMON; see `ptr_at`).
        let udp = udp as *const [u8; 2];
        let (source, destination) = unsafe {
            (
                core::ptr::read_volatile(udp),
                core::ptr::read_volatile(udp.add(1)),
            )
        };
        let port = u16::from_ne_bytes(if match_source { source } else { destination });
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
