//! Types shared by the XDP program and the userspace loader.
//!
//! Everything here is `#[repr(C)]` plain data so both sides agree on layout.
#![no_std]

/// The frame layout the XDP program steers by, and the constants userspace's frame parser
/// (mount-proto's `packet`) checks the same frames with: defined once here, so the program
/// steers exactly the frames the parser was written for.
pub mod wire {
    /// Ethernet II header length (no VLAN tag).
    pub const ETH_HDR_LEN: usize = 14;
    /// IPv4 header length without options.
    pub const IPV4_HDR_LEN: usize = 20;
    /// IPv6 fixed header length.
    pub const IPV6_HDR_LEN: usize = 40;
    /// UDP header length.
    pub const UDP_HDR_LEN: usize = 8;

    /// EtherType of IPv4.
    pub const ETHERTYPE_IPV4: u16 = 0x0800;
    /// EtherType of IPv6.
    pub const ETHERTYPE_IPV6: u16 = 0x86DD;
    /// EtherType of an 802.1Q VLAN tag.
    pub const ETHERTYPE_VLAN: u16 = 0x8100;
    /// EtherType of an 802.1ad (QinQ) service tag.
    pub const ETHERTYPE_QINQ: u16 = 0x88A8;

    /// IP protocol number of UDP.
    pub const IPPROTO_UDP: u8 = 17;

    /// Whether an IPv6 next-header value is an extension header (RFC 7045's list:
    /// hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP, shim6,
    /// and the two experimental values). Neither side looks past one: such a datagram is
    /// the kernel's.
    #[inline(always)]
    pub const fn is_ipv6_extension_header(next_header: u8) -> bool {
        matches!(
            next_header,
            0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
        )
    }
}

pub mod answer;

/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "mount_xdp";

/// Name of the `BPF_MAP_TYPE_XSKMAP` that maps an rx queue index to its AF_XDP socket.
pub const XSK_MAP_NAME: &str = "MOUNT_XSKS";
/// Name of the one-entry `BPF_MAP_TYPE_ARRAY` holding the [`Config`].
pub const CONFIG_MAP_NAME: &str = "MOUNT_CONFIG";
/// Name of the `BPF_MAP_TYPE_PERCPU_ARRAY` of `u64` counters indexed by [`Counter`].
pub const COUNTERS_MAP_NAME: &str = "MOUNT_COUNTERS";
/// Name of the `BPF_MAP_TYPE_LRU_HASH` of per-source rate-limit cells: key a
/// [`SourceKey`], value the cell's theoretical arrival time (see [`Gcra`]).
pub const SOURCES_MAP_NAME: &str = "MOUNT_SOURCES";
/// Name of the one-entry `BPF_MAP_TYPE_ARRAY` holding the global rate-limit cell.
pub const GLOBAL_MAP_NAME: &str = "MOUNT_GLOBAL";
/// Entries of [`SOURCES_MAP_NAME`] in the object; the loader sets the real size.
pub const SOURCES_MAP_DEFAULT_ENTRIES: u32 = 65_536;

/// A source prefix as the rate limiter keys it: the IPv6 address, or the IPv4 address as
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`), masked to the configured prefix length. Words in
/// network byte order, as loaded from the packet.
pub type SourceKey = [u32; 4];

/// Entries in the XSKMAP: rx queues with an index at or above this are never steered.
pub const XSK_MAP_ENTRIES: u32 = 256;

/// Steering configuration, entry 0 of [`CONFIG_MAP_NAME`], written by the loader.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// UDP destination port to steer, in NETWORK byte order (`u16::to_be(port)`), so the
    /// program compares it with the raw 16-bit load of the UDP header without swapping.
    /// 0 steers nothing.
    pub port: u16,
    /// 0 (the default, the server's case): match `port` against the UDP *destination*
    /// port. Non-zero: match the *source* port instead, so a load generator receives the
    /// replies of the server on `port` (used by `xdp-mountd storm`).
    pub match_source: u8,
    /// Which calls the program answers itself with XDP_TX ([`answer`]): a set of
    /// `answer::ANSWER_*` bits; 0 (the default) answers nothing in the program.
    pub answers: u8,
    /// The export table's generation for MNT answers: a [`answer::SeenEntry`] of another
    /// generation is not answered by the program (0: none is).
    pub mnt_generation: u32,
    /// Calls per source prefix ([`Gcra::OFF`]: no per-source limit).
    pub per_source: Gcra,
    /// Calls in all, after the per-source limit ([`Gcra::OFF`]: no ceiling).
    pub global: Gcra,
    /// The mask giving an IPv4 source's prefix, as a network-order word.
    pub v4_mask: u32,
    /// Explicit padding; always 0.
    pub reserved2: u32,
    /// The mask giving an IPv6 source's prefix, as network-order words.
    pub v6_mask: [u32; 4],
}

/// A rate limit as the Generic Cell Rate Algorithm (ITU-T I.371) sees it: a cell holds one
/// u64, the theoretical arrival time (TAT) of the next call, so the program needs one map
/// value and no division per call.
///
/// A call at `now` is admitted when `max(tat, now) + interval - now <= burst`, which lets
/// `burst / interval` calls through at once after a quiet spell and `1e9 / interval` per
/// second after that. Both sides (the XDP program and the kernel-path limiter in
/// userspace) decide with [`Gcra::decide`], so they count alike.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds per call at the sustained rate; 0 turns the limit off.
    pub interval_ns: u64,
    /// How far ahead of `now` the TAT may run: burst × interval, in nanoseconds.
    pub burst_ns: u64,
}

/// What [`Gcra::decide`] says about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcraDecision {
    /// Over the limit: drop (or delay) the call; it would fit after this many ns.
    Over { retry_after_ns: u64 },
    /// Admitted while the cell is busy: add `interval_ns` to the TAT. An addition (not a
    /// store of a computed value) so that CPUs updating one cell at once lose no call.
    Advance,
    /// Admitted after a quiet spell: the TAT restarts at this value.
    Restart(u64),
}

impl Gcra {
    /// No limit.
    pub const OFF: Gcra = Gcra {
        interval_ns: 0,
        burst_ns: 0,
    };

    /// `per_second` calls per second sustained, `burst` at once (both at least 1).
    pub const fn new(per_second: u32, burst: u32) -> Self {
        let per_second = if per_second == 0 { 1 } else { per_second };
        let burst = if burst == 0 { 1 } else { burst };
        let interval_ns = 1_000_000_000 / per_second as u64;
        let interval_ns = if interval_ns == 0 { 1 } else { interval_ns };
        Gcra {
            interval_ns,
            burst_ns: interval_ns * burst as u64,
        }
    }

    /// Whether this limit is on.
    pub const fn is_on(&self) -> bool {
        self.interval_ns != 0
    }

    /// The decision for a call at `now_ns` on a cell whose TAT is `tat_ns`.
    #[inline(always)]
    pub fn decide(&self, tat_ns: u64, now_ns: u64) -> GcraDecision {
        let busy = tat_ns > now_ns;
        let base = if busy { tat_ns } else { now_ns };
        let next = base + self.interval_ns;
        let ahead = next - now_ns;
        if ahead > self.burst_ns {
            GcraDecision::Over {
                retry_after_ns: ahead - self.burst_ns,
            }
        } else if busy {
            GcraDecision::Advance
        } else {
            GcraDecision::Restart(next)
        }
    }
}

/// The network-order mask word(s) of a prefix length: `v4_mask(24)` keeps the first three
/// bytes of an IPv4 address.
pub const fn v4_mask(prefix: u8) -> u32 {
    let bits: u32 = if prefix >= 32 {
        u32::MAX
    } else if prefix == 0 {
        0
    } else {
        !(u32::MAX >> prefix)
    };
    u32::from_ne_bytes(bits.to_be_bytes())
}

/// The network-order mask words of an IPv6 prefix length (0..=128).
pub const fn v6_mask(prefix: u8) -> [u32; 4] {
    let mut words = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        let left = prefix as i32 - 32 * i as i32;
        let bits: u32 = if left >= 32 {
            u32::MAX
        } else if left <= 0 {
            0
        } else {
            !(u32::MAX >> left)
        };
        words[i] = u32::from_ne_bytes(bits.to_be_bytes());
        i += 1;
    }
    words
}

/// The IPv4-mapped prefix word (`::ffff:0:0/96`, third word) in network order.
pub const V4_MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// The key of an IPv4 source (network-order word as loaded) under `mask`.
#[inline(always)]
pub const fn v4_key(addr: u32, mask: u32) -> SourceKey {
    [0, 0, V4_MAPPED_WORD, addr & mask]
}

/// The key of an IPv6 source (network-order words as loaded) under `mask`.
#[inline(always)]
pub const fn v6_key(addr: [u32; 4], mask: [u32; 4]) -> SourceKey {
    [
        addr[0] & mask[0],
        addr[1] & mask[1],
        addr[2] & mask[2],
        addr[3] & mask[3],
    ]
}

impl Config {
    /// A configuration steering UDP datagrams to `port` (host byte order; 0 = none).
    pub const fn for_port(port: u16) -> Self {
        Self {
            port: port.to_be(),
            match_source: 0,
            answers: 0,
            mnt_generation: 0,
            per_source: Gcra::OFF,
            global: Gcra::OFF,
            v4_mask: v4_mask(32),
            reserved2: 0,
            v6_mask: v6_mask(128),
        }
    }

    /// A configuration steering UDP datagrams *from* source port `port` (host byte order;
    /// 0 = none): the replies of a server on that port, for a client-side AF_XDP socket.
    pub const fn from_source_port(port: u16) -> Self {
        Self {
            match_source: 1,
            ..Self::for_port(port)
        }
    }

    /// This configuration with rate limits: `per_source` for each source prefix
    /// (`v4_prefix` bits of IPv4, `v6_prefix` of IPv6 addresses), then `global` for all.
    pub const fn with_limits(
        self,
        per_source: Gcra,
        global: Gcra,
        v4_prefix: u8,
        v6_prefix: u8,
    ) -> Self {
        Self {
            per_source,
            global,
            v4_mask: v4_mask(v4_prefix),
            v6_mask: v6_mask(v6_prefix),
            ..self
        }
    }

    /// This configuration with the steered port changed (host order), matching the same
    /// side (source or destination) as before.
    pub const fn with_port(self, port: u16) -> Self {
        Self {
            port: port.to_be(),
            ..self
        }
    }

    /// This configuration answering in the program what `answers` (`answer::ANSWER_*`
    /// bits) says.
    pub const fn with_answers(self, answers: u8) -> Self {
        Self { answers, ..self }
    }

    /// This configuration with MNT answers valid for `generation`.
    pub const fn with_mnt_generation(self, mnt_generation: u32) -> Self {
        Self {
            mnt_generation,
            ..self
        }
    }

    /// The steered port in host byte order (0 = steering off).
    pub const fn port_host(&self) -> u16 {
        u16::from_be(self.port)
    }
}

/// Index into the per-CPU counter array. Every frame the program sees bumps
/// [`Counter::Seen`] and exactly one of the other counters, so
/// `seen == sum(all others)` (up to reads racing the program).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Every frame the program ran on.
    Seen = 0,
    /// Matched and redirected into the AF_XDP socket of its rx queue.
    Redirected = 1,
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed.
    PassedNotIp = 2,
    /// 802.1Q / 802.1ad tagged: passed (the kernel's VLAN devices own it).
    PassedVlan = 3,
    /// IPv4 fragment (MF set or offset != 0): passed so the kernel reassembles it.
    PassedFragment = 4,
    /// IPv6 with an extension header before UDP (including a fragment header): passed.
    PassedIpv6Ext = 5,
    /// UDP, but not to the configured port (or steering is off): passed.
    PassedOtherPort = 6,
    /// IP, but not UDP (TCP, ICMP, ...): passed.
    PassedNotUdp = 7,
    /// Truncated headers, IHL < 5 or a wrong IP version: passed, the kernel drops it.
    Malformed = 8,
    /// Matched, but no AF_XDP socket in the XSKMAP slot of its rx queue: passed.
    PassedNoSocket = 9,
    /// Matched, but its source prefix was over the per-source rate limit: dropped.
    DroppedRateSource = 10,
    /// Matched and within its source's limit, but over the global ceiling: dropped.
    DroppedRateGlobal = 11,
    /// A MOUNT NULL call answered by the program itself (XDP_TX).
    AnsweredNull = 12,
    /// A MNT of an export root answered by the program itself (XDP_TX).
    AnsweredMnt = 13,
}

/// Number of entries in the counter array (one per [`Counter`] variant).
pub const COUNTER_COUNT: u32 = 14;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::Seen,
        Counter::Redirected,
        Counter::PassedNotIp,
        Counter::PassedVlan,
        Counter::PassedFragment,
        Counter::PassedIpv6Ext,
        Counter::PassedOtherPort,
        Counter::PassedNotUdp,
        Counter::Malformed,
        Counter::PassedNoSocket,
        Counter::DroppedRateSource,
        Counter::DroppedRateGlobal,
        Counter::AnsweredNull,
        Counter::AnsweredMnt,
    ];

    /// Stable snake_case name for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Redirected => "redirected",
            Counter::PassedNotIp => "passed_not_ip",
            Counter::PassedVlan => "passed_vlan",
            Counter::PassedFragment => "passed_fragment",
            Counter::PassedIpv6Ext => "passed_ipv6_ext",
            Counter::PassedOtherPort => "passed_other_port",
            Counter::PassedNotUdp => "passed_not_udp",
            Counter::Malformed => "malformed",
            Counter::PassedNoSocket => "passed_no_socket",
            Counter::DroppedRateSource => "dropped_rate_source",
            Counter::DroppedRateGlobal => "dropped_rate_global",
            Counter::AnsweredNull => "answered_null",
            Counter::AnsweredMnt => "answered_mnt",
        }
    }

    /// Index of this counter in the per-CPU array.
    pub const fn index(self) -> u32 {
        self as u32
    }
}
