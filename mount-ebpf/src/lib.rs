//! Types shared by the XDP program and the userspace loader.
//!
//! Everything here is `#[repr(C)]` plain data so both sides agree on layout.
#![no_std]

/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "mount_xdp";

/// Name of the `BPF_MAP_TYPE_XSKMAP` that maps an rx queue index to its AF_XDP socket.
pub const XSK_MAP_NAME: &str = "MOUNT_XSKS";
/// Name of the one-entry `BPF_MAP_TYPE_ARRAY` holding the [`Config`].
pub const CONFIG_MAP_NAME: &str = "MOUNT_CONFIG";
/// Name of the `BPF_MAP_TYPE_PERCPU_ARRAY` of `u64` counters indexed by [`Counter`].
pub const COUNTERS_MAP_NAME: &str = "MOUNT_COUNTERS";

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
    /// Explicit padding so the layout has no hidden bytes; always 0.
    pub reserved: [u8; 5],
}

impl Config {
    /// A configuration steering UDP datagrams to `port` (host byte order; 0 = none).
    pub const fn for_port(port: u16) -> Self {
        Self {
            port: port.to_be(),
            match_source: 0,
            reserved: [0; 5],
        }
    }

    /// A configuration steering UDP datagrams *from* source port `port` (host byte order;
    /// 0 = none): the replies of a server on that port, for a client-side AF_XDP socket.
    pub const fn from_source_port(port: u16) -> Self {
        Self {
            port: port.to_be(),
            match_source: 1,
            reserved: [0; 5],
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
}

/// Number of entries in the counter array (one per [`Counter`] variant).
pub const COUNTER_COUNT: u32 = 10;

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
        }
    }

    /// Index of this counter in the per-CPU array.
    pub const fn index(self) -> u32 {
        self as u32
    }
}
