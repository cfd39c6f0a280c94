//! The Internet checksum (RFC 1071) for IPv4 headers and UDP over IPv4/IPv6.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::IPPROTO_UDP;

/// Adds `data` as big-endian 16-bit words (odd tail padded with a zero byte) to `acc`.
/// Summing 32-bit words into a u64 and folding later gives the same one's-complement
/// sum with half the additions; a 64 KiB datagram cannot overflow the accumulator.
pub fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// Folds a running sum to 16 bits with end-around carry (the XDP program's own, so its
/// answers and these frames fold alike).
pub use mount_ebpf::answer::fold;
// A UDP checksum field from its final sum: complemented, 0 sent as 0xFFFF (RFC 768).
use mount_ebpf::answer::udp_checksum;

/// Checksum of an IPv4 header whose checksum field is zero.
pub fn ipv4_header(header: &[u8]) -> u16 {
    !fold(sum(header, 0))
}

/// True if an IPv4 header (checksum field included) sums to all ones.
pub fn ipv4_header_valid(header: &[u8]) -> bool {
    fold(sum(header, 0)) == 0xffff
}

/// UDP checksum over the IPv4 pseudo-header and `segment` (UDP header with a zero
/// checksum field, then payload). A result of 0 is sent as 0xFFFF (RFC 768).
pub fn udp_ipv4(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc += u64::from(IPPROTO_UDP) + segment.len() as u64;
    udp_checksum(sum(segment, acc))
}

/// UDP checksum over the IPv6 pseudo-header (RFC 8200 §8.1) and `segment`; mandatory
/// for IPv6, and 0 is sent as 0xFFFF.
pub fn udp_ipv6(src: Ipv6Addr, dst: Ipv6Addr, segment: &[u8]) -> u16 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc += u64::from(IPPROTO_UDP) + segment.len() as u64;
    udp_checksum(sum(segment, acc))
}
