//! Forged source addresses (`--spoof-sources CIDR`, AF_XDP only): every call leaves from
//! the next address of a network configured nowhere, the way a reflection attack forges
//! its victims' addresses. Tests a server's anti-amplification cap and per-source rate
//! limits; the replies still come back, caught by storm's XDP program on the client
//! interface, so they are counted like any others.
use std::net::IpAddr;

use anyhow::bail;
use ipnet::IpNet;

/// The most forged addresses one run cycles through: a frame is precomputed per address
/// and call template, so the network is bounded (an IPv4 /16, an IPv6 /112).
pub const MAX_FORGED: usize = 65_536;

/// The host addresses of `net`, in order (IPv4 without the network and broadcast
/// addresses when the prefix is shorter than /31); an error beyond [`MAX_FORGED`].
pub fn forged_addresses(net: IpNet) -> anyhow::Result<Vec<IpAddr>> {
    let addrs: Vec<IpAddr> = net.hosts().take(MAX_FORGED + 1).collect();
    if addrs.len() > MAX_FORGED {
        bail!(
            "--spoof-sources {net} has more than {MAX_FORGED} addresses (at most an IPv4 /16 \
             or an IPv6 /112)"
        );
    }
    if addrs.is_empty() {
        bail!("--spoof-sources {net} has no host address");
    }
    Ok(addrs)
}

/// Which of `len` forged addresses each call leaves from: 0, 1, …, len − 1, 0, … so that
/// consecutive calls come from different addresses and all of them are used in turn.
#[derive(Debug, Clone)]
pub struct Cycle {
    next: usize,
    len: usize,
}

impl Cycle {
    /// A cycle over `len` addresses (at least one).
    pub fn new(len: usize) -> Self {
        Cycle {
            next: 0,
            len: len.max(1),
        }
    }

    /// The index of the address the next call uses.
    pub fn advance(&mut self) -> usize {
        let i = self.next;
        self.next = if i + 1 == self.len { 0 } else { i + 1 };
        i
    }
}
