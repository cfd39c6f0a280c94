//! The XDP program: steers UDP datagrams for the MOUNT port (unfragmented, untagged
//! Ethernet, IPv4 or IPv6 without extension headers) into the AF_XDP socket of the rx
//! queue they arrived on, and passes everything else to the kernel stack.
//!
//! Before steering, a call must fit its source prefix's rate limit and then the global
//! ceiling (both off unless configured); calls over either are dropped here, before they
//! cost the workers anything, and counted by reason. Per-source first, so a flooding
//! source's excess never uses up the global budget that other clients share.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// `packet_plus` below needs BPF inline assembly (a nightly feature; this crate is built
// with the pinned nightly only).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod program {
    mod answer;

    use core::mem::size_of;

    use answer::Family;

    use aya_ebpf::{
        bindings::xdp_action::{XDP_DROP, XDP_PASS},
        helpers::bpf_ktime_get_ns,
        macros::{map, xdp},
        maps::{Array, LruHashMap, PerCpuArray, XskMap},
        programs::XdpContext,
    };
    use mount_ebpf::wire::{
        is_ipv6_extension_header, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN,
        ETH_HDR_LEN, IPPROTO_UDP, IPV4_HDR_LEN, IPV6_HDR_LEN, UDP_HDR_LEN,
    };
    use mount_ebpf::{
        v4_key, v6_key, Config, Counter, Gcra, GcraDecision, SourceKey, COUNTER_COUNT,
        SOURCES_MAP_DEFAULT_ENTRIES, XSK_MAP_ENTRIES,
    };

    #[map(name = "MOUNT_XSKS")]
    static XSKS: XskMap = XskMap::with_max_entries(XSK_MAP_ENTRIES, 0);

    #[map(name = "MOUNT_CONFIG")]
    static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

    #[map(name = "MOUNT_COUNTERS")]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

    /// Per-source-prefix rate-limit cells. LRU, so a flood of forged sources evicts the
    /// quietest prefixes instead of failing inserts; an evicted prefix starts again with a
    /// full burst, which the global ceiling bounds.
    #[map(name = "MOUNT_SOURCES")]
    static SOURCES: LruHashMap<SourceKey, u64> =
        LruHashMap::with_max_entries(SOURCES_MAP_DEFAULT_ENTRIES, 0);

    /// The global rate-limit cell (one TAT shared by all CPUs).
    #[map(name = "MOUNT_GLOBAL")]
    static GLOBAL: Array<u64> = Array::with_max_entries(1, 0);

    /// What to do with a frame once classified.
    enum Verdict {
        /// A call for us, from this source prefix, in this header layout.
        Steer(SourceKey, Family),
        Pass(Counter),
    }

    #[xdp]
    pub fn mount_xdp(ctx: XdpContext) -> u32 {
        bump(Counter::Seen);
        let Some(config) = CONFIG.get(0) else {
            bump(Counter::PassedOtherPort);
            return XDP_PASS;
        };
        match classify(&ctx, config) {
            Verdict::Steer(source, family) => steer(&ctx, config, &source, family),
            Verdict::Pass(counter) => {
                bump(counter);
                XDP_PASS
            }
        }
    }

    #[inline(always)]
    fn steer(ctx: &XdpContext, config: &Config, source: &SourceKey, family: Family) -> u32 {
        if config.per_source.is_on() || config.global.is_on() {
            // SAFETY: a helper without arguments or preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            if config.per_source.is_on() && !admit_source(&config.per_source, source, now) {
                bump(Counter::DroppedRateSource);
                return XDP_DROP;
            }
            if config.global.is_on() && !admit_global(&config.global, now) {
                bump(Counter::DroppedRateGlobal);
                return XDP_DROP;
            }
        }
        // Admitted: answered here when it is a plain NULL call, or a MNT user space has
        // already answered for this client and path, and answers are on.
        if config.answers != 0 {
            if let Some((action, counter)) = answer::try_answer(ctx, config, family) {
                bump(counter);
                return action;
            }
        }
        match XSKS.redirect(ctx.rx_queue_index(), XDP_PASS as u64) {
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
        }
    }

    /// Whether the source prefix's cell admits a call at `now`, updating it if so.
    #[inline(always)]
    fn admit_source(limit: &Gcra, source: &SourceKey, now: u64) -> bool {
        match SOURCES.get_ptr_mut(source) {
            Some(cell) => admit(limit, cell, now),
            None => {
                // A new prefix: its first call is admitted (burst >= interval). Two CPUs
                // racing here both insert; one call of slack, once per prefix.
                let _ = SOURCES.insert(source, &(now + limit.interval_ns), 0);
                true
            }
        }
    }

    #[inline(always)]
    fn admit_global(limit: &Gcra, now: u64) -> bool {
        match GLOBAL.get_ptr_mut(0) {
            Some(cell) => admit(limit, cell, now),
            None => true,
        }
    }

    /// Apply [`Gcra::decide`] to a cell in a map value.
    #[inline(always)]
    fn admit(limit: &Gcra, cell: *mut u64, now: u64) -> bool {
        // SAFETY: `cell` points into a map value that lives as long as the map. Other
        // CPUs update it concurrently: the loads and stores are single 8-byte accesses,
        // and the busy case adds atomically (see `atomic_add`).
        let tat = unsafe { core::ptr::read_volatile(cell) };
        match limit.decide(tat, now) {
            GcraDecision::Over { .. } => false,
            GcraDecision::Advance => {
                // The check above and this add race by at most one call per CPU.
                // SAFETY: `cell` is a map value's u64, as above.
                unsafe { atomic_add(cell, limit.interval_ns) };
                true
            }
            GcraDecision::Restart(tat) => {
                // Quiet cell: racing restarts write nearly the same value.
                // SAFETY: `cell` is a map value's u64, as above.
                unsafe { core::ptr::write_volatile(cell, tat) };
                true
            }
        }
    }

    /// `*cell += value` as one BPF atomic add (`BPF_ATOMIC | BPF_ADD`, the old XADD), so
    /// that CPUs advancing one busy cell at once each count. Written in assembly because
    /// the bpfel target offers no `AtomicU64::fetch_add`, and its fetching form would
    /// need BPF CPU v3.
    ///
    /// # Safety
    /// `cell` must point to a live, 8-byte aligned u64 in a map value.
    #[inline(always)]
    unsafe fn atomic_add(cell: *mut u64, value: u64) {
        // SAFETY: one atomic add to the u64 the caller vouches for; no other memory.
        unsafe {
            core::arch::asm!(
                "lock *(u64 *)({cell} + 0) += {value}",
                cell = in(reg) cell,
                value = in(reg) value,
                options(nostack),
            );
        }
    }

    #[inline(always)]
    fn bump(counter: Counter) {
        if let Some(slot) = COUNTERS.get_ptr_mut(counter.index()) {
            // SAFETY: a valid per-CPU slot of the map, and XDP runs with preemption off: a
            // plain add is race-free.
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
        // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
        Some(u16::from_be_bytes(unsafe { *p }))
    }

    #[inline(always)]
    fn u8_at<const OFFSET: usize>(ctx: &XdpContext) -> Option<u8> {
        let p = ptr_at::<u8, OFFSET>(ctx)?;
        // SAFETY: `ptr_at` checked that the byte lies inside the frame.
        Some(unsafe { *p })
    }

    #[inline(always)]
    fn classify(ctx: &XdpContext, config: &Config) -> Verdict {
        let Some(ethertype) = be16_at::<12>(ctx) else {
            return Verdict::Pass(Counter::Malformed);
        };
        match ethertype {
            ETHERTYPE_IPV4 => classify_ipv4(ctx, config),
            ETHERTYPE_IPV6 => classify_ipv6(ctx, config),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ => Verdict::Pass(Counter::PassedVlan),
            _ => Verdict::Pass(Counter::PassedNotIp),
        }
    }

    #[inline(always)]
    fn classify_ipv4(ctx: &XdpContext, config: &Config) -> Verdict {
        // The whole fixed header must be there, even if only bytes 0..10 are read
        // (version/IHL, TOS, total length, id, flags/fragment offset, TTL, protocol).
        if ptr_at::<[u8; IPV4_HDR_LEN], ETH_HDR_LEN>(ctx).is_none() {
            return Verdict::Pass(Counter::Malformed);
        }
        let Some(hdr) = ptr_at::<[u8; 10], ETH_HDR_LEN>(ctx) else {
            return Verdict::Pass(Counter::Malformed);
        };
        // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
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
        let ours = match ihl {
            5 => is_ours::<{ ETH_HDR_LEN + 5 * 4 }>(ctx, config),
            6 => is_ours::<{ ETH_HDR_LEN + 6 * 4 }>(ctx, config),
            7 => is_ours::<{ ETH_HDR_LEN + 7 * 4 }>(ctx, config),
            8 => is_ours::<{ ETH_HDR_LEN + 8 * 4 }>(ctx, config),
            9 => is_ours::<{ ETH_HDR_LEN + 9 * 4 }>(ctx, config),
            10 => is_ours::<{ ETH_HDR_LEN + 10 * 4 }>(ctx, config),
            11 => is_ours::<{ ETH_HDR_LEN + 11 * 4 }>(ctx, config),
            12 => is_ours::<{ ETH_HDR_LEN + 12 * 4 }>(ctx, config),
            13 => is_ours::<{ ETH_HDR_LEN + 13 * 4 }>(ctx, config),
            14 => is_ours::<{ ETH_HDR_LEN + 14 * 4 }>(ctx, config),
            15 => is_ours::<{ ETH_HDR_LEN + 15 * 4 }>(ctx, config),
            _ => Err(Counter::Malformed),
        };
        if let Err(counter) = ours {
            return Verdict::Pass(counter);
        }
        let family = if ihl == 5 { Family::V4 } else { Family::Other };
        // The source address (bytes 12..16 of the header, inside the fixed part checked
        // above), as loaded: network order.
        match ptr_at::<[u8; 4], { ETH_HDR_LEN + 12 }>(ctx) {
            // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
            Some(source) => Verdict::Steer(
                v4_key(u32::from_ne_bytes(unsafe { *source }), config.v4_mask),
                family,
            ),
            None => Verdict::Pass(Counter::Malformed),
        }
    }

    #[inline(always)]
    fn classify_ipv6(ctx: &XdpContext, config: &Config) -> Verdict {
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
            IPPROTO_UDP => {
                if let Err(counter) = is_ours::<{ ETH_HDR_LEN + IPV6_HDR_LEN }>(ctx, config) {
                    return Verdict::Pass(counter);
                }
                // The source address, bytes 8..24 of the fixed header checked above.
                match ptr_at::<[[u8; 4]; 4], { ETH_HDR_LEN + 8 }>(ctx) {
                    Some(source) => {
                        // SAFETY: `ptr_at` checked that the bytes lie inside the frame.
                        let s = unsafe { *source };
                        let words = [
                            u32::from_ne_bytes(s[0]),
                            u32::from_ne_bytes(s[1]),
                            u32::from_ne_bytes(s[2]),
                            u32::from_ne_bytes(s[3]),
                        ];
                        Verdict::Steer(v6_key(words, config.v6_mask), Family::V6)
                    }
                    None => Verdict::Pass(Counter::Malformed),
                }
            }
            nh if is_ipv6_extension_header(nh) => Verdict::Pass(Counter::PassedIpv6Ext),
            _ => Verdict::Pass(Counter::PassedNotUdp),
        }
    }

    /// Whether the UDP header at `OFFSET` is for the configured port; the counter to bump
    /// when not.
    #[inline(always)]
    fn is_ours<const OFFSET: usize>(ctx: &XdpContext, config: &Config) -> Result<(), Counter> {
        // The whole UDP header must be present, not only the destination port.
        let Some(udp) = ptr_at::<[u8; UDP_HDR_LEN], OFFSET>(ctx) else {
            return Err(Counter::Malformed);
        };
        let (wanted, match_source) = (config.port, config.match_source != 0);
        // Raw (network order) load, compared with the network-order configured port:
        // the destination port (a server's calls) or, for a load generator, the source
        // port (the server's replies). Both ports are read (volatile, so the optimiser
        // cannot turn the choice into a load at `udp + (match_source ? 0 : 2)`, a
        // register offset the verifier refuses without CAP_PERFMON; see `ptr_at`).
        let udp = udp as *const [u8; 2];
        // SAFETY: both ports lie inside the UDP header `ptr_at` checked above.
        let (source, destination) = unsafe {
            (
                core::ptr::read_volatile(udp),
                core::ptr::read_volatile(udp.add(1)),
            )
        };
        let port = u16::from_ne_bytes(if match_source { source } else { destination });
        if wanted != 0 && port == wanted {
            Ok(())
        } else {
            Err(Counter::PassedOtherPort)
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
