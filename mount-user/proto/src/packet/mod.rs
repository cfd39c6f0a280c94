//! Ethernet + IPv4/IPv6 + UDP frames for the AF_XDP path, sans-IO.
//!
//! [`parse`] re-validates a frame the XDP program steered to us (it checked only what it
//! needed to steer) and returns the addressing plus the UDP payload's byte range: no
//! copies. [`emit`] is its inverse: headers written around a payload, addressed as an
//! [`Addressing`] says (the load generator's request frames). [`build_reply`] (or a payload
//! at [`payload_offset`] + [`finish_reply`]) turns the request's own buffer into the reply
//! frame: addresses and ports swapped, lengths set, checksums computed in full (requests
//! over veth carry partial checksums, so incremental updates would propagate garbage).
//!
//! Only untagged Ethernet II frames are handled: VLAN-tagged ones never reach AF_XDP.

pub mod checksum;
mod emit;
mod parse;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

pub use emit::{build, build_reply, emit, finish_reply, payload_mut, payload_offset, EmitError};
pub use parse::{parse, ParseError};

/// The frame layout, shared with the XDP program (defined in `mount-ebpf`, which steers
/// by the same constants): header lengths (the reply's IPv4 header never carries options,
/// so [`IPV4_HDR_LEN`] is its length), EtherTypes, the UDP protocol number and the IPv6
/// extension headers neither side looks past.
pub use mount_ebpf::wire::{
    is_ipv6_extension_header, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN,
    ETH_HDR_LEN, IPPROTO_UDP, IPV4_HDR_LEN, IPV6_HDR_LEN, UDP_HDR_LEN,
};

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Group (multicast/broadcast) address: the I/G bit is set.
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

/// Source and destination IP addresses of one datagram (always the same family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpPair {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// Source address.
    pub fn src(&self) -> IpAddr {
        match *self {
            IpPair::V4 { src, .. } => IpAddr::V4(src),
            IpPair::V6 { src, .. } => IpAddr::V6(src),
        }
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        match *self {
            IpPair::V4 { dst, .. } => IpAddr::V4(dst),
            IpPair::V6 { dst, .. } => IpAddr::V6(dst),
        }
    }

    /// Source and destination swapped.
    pub fn reversed(&self) -> IpPair {
        match *self {
            IpPair::V4 { src, dst } => IpPair::V4 { src: dst, dst: src },
            IpPair::V6 { src, dst } => IpPair::V6 { src: dst, dst: src },
        }
    }
}

/// Who sent a datagram to whom, at layers 2 to 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Addressing {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IP source and destination.
    pub ips: IpPair,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
}

impl Addressing {
    /// The sender's address and port (the RPC client).
    pub fn source(&self) -> SocketAddr {
        SocketAddr::new(self.ips.src(), self.src_port)
    }

    /// The receiver's address and port (us).
    pub fn destination(&self) -> SocketAddr {
        SocketAddr::new(self.ips.dst(), self.dst_port)
    }

    /// The addressing of the answer: every source/destination pair swapped.
    pub fn reversed(&self) -> Addressing {
        Addressing {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            ips: self.ips.reversed(),
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// A validated UDP datagram inside an Ethernet frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpFrame {
    /// Addresses and ports as they appear in the frame.
    pub addressing: Addressing,
    /// Byte range of the UDP payload inside the frame (trailing Ethernet padding excluded).
    pub payload: Range<usize>,
}

impl UdpFrame {
    /// The UDP payload, borrowed from the frame this was parsed from.
    pub fn payload<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        // `parse` guarantees the range lies inside the frame it parsed; `get` keeps a
        // mismatched frame from panicking.
        frame.get(self.payload.clone()).unwrap_or(&[])
    }
}

/// Big-endian u16 at `at` (caller has checked the bounds).
fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}
