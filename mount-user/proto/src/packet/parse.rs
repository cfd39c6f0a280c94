//! Validation of a received Ethernet/IP/UDP frame.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    be16, checksum, is_ipv6_extension_header, Addressing, IpPair, MacAddr, UdpFrame,
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETH_HDR_LEN, IPPROTO_UDP,
    IPV4_HDR_LEN, IPV6_HDR_LEN, UDP_HDR_LEN,
};

/// Why a frame is not a datagram we answer. The caller counts these; none is a bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The frame ends inside a header.
    #[error("truncated {0} header")]
    Truncated(&'static str),
    /// 802.1Q/802.1ad tagged (the XDP program passes these).
    #[error("VLAN-tagged frame")]
    Vlan,
    /// Neither IPv4 nor IPv6.
    #[error("not IP (EtherType {0:#06x})")]
    NotIp(u16),
    /// The IP version nibble disagrees with the EtherType.
    #[error("IP version {0} under the wrong EtherType")]
    BadIpVersion(u8),
    /// IPv4 IHL below 5.
    #[error("IPv4 IHL {0} < 5")]
    BadIhl(u8),
    /// IP total/payload length inconsistent with the header or the frame.
    #[error("IP length inconsistent with the frame")]
    IpLength,
    /// IPv4 header checksum wrong (the kernel would drop it too).
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    /// An IPv4 fragment (the kernel reassembles those).
    #[error("IPv4 fragment")]
    Fragment,
    /// Not UDP.
    #[error("IP protocol {0} is not UDP")]
    NotUdp(u8),
    /// IPv6 with an extension header before UDP.
    #[error("IPv6 extension header {0} before UDP")]
    Ipv6ExtensionHeader(u8),
    /// UDP length below 8 or beyond the IP payload.
    #[error("UDP length inconsistent with the IP payload")]
    UdpLength,
    /// IPv6 UDP with checksum 0, which RFC 8200 forbids (the kernel drops it).
    #[error("IPv6 UDP datagram without checksum")]
    MissingUdpChecksum,
    /// A source we must not answer: group MAC, multicast/broadcast/unspecified IP, port 0.
    #[error("source cannot be answered")]
    BadSource,
}

/// Validates `frame` as untagged Ethernet + IPv4 (options allowed) or IPv6 (no extension
/// headers) + UDP and locates the payload. Trailing bytes after the IP datagram
/// (Ethernet padding) are ignored. The UDP checksum is not verified: over veth it is
/// only partial, and the XDP path cannot tell.
pub fn parse(frame: &[u8]) -> Result<UdpFrame, ParseError> {
    if frame.len() < ETH_HDR_LEN {
        return Err(ParseError::Truncated("Ethernet"));
    }
    let mut dst_mac = [0u8; 6];
    let mut src_mac = [0u8; 6];
    dst_mac.copy_from_slice(&frame[0..6]);
    src_mac.copy_from_slice(&frame[6..12]);
    let src_mac = MacAddr(src_mac);
    let dst_mac = MacAddr(dst_mac);
    if src_mac.is_group() {
        return Err(ParseError::BadSource);
    }
    let (ips, udp_start, udp_end) = match be16(frame, 12) {
        ETHERTYPE_IPV4 => ipv4(frame)?,
        ETHERTYPE_IPV6 => ipv6(frame)?,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ => return Err(ParseError::Vlan),
        other => return Err(ParseError::NotIp(other)),
    };
    // udp_end - udp_start >= UDP_HDR_LEN is checked by ipv4/ipv6.
    let udp = &frame[udp_start..udp_end];
    let udp_len = usize::from(be16(udp, 4));
    if udp_len < UDP_HDR_LEN || udp_len > udp.len() {
        return Err(ParseError::UdpLength);
    }
    let src_port = be16(udp, 0);
    let dst_port = be16(udp, 2);
    if src_port == 0 {
        return Err(ParseError::BadSource);
    }
    if matches!(ips, IpPair::V6 { .. }) && be16(udp, 6) == 0 {
        return Err(ParseError::MissingUdpChecksum);
    }
    Ok(UdpFrame {
        addressing: Addressing {
            src_mac,
            dst_mac,
            ips,
            src_port,
            dst_port,
        },
        // Like the kernel, a UDP length shorter than the IP payload trims the datagram.
        payload: udp_start + UDP_HDR_LEN..udp_start + udp_len,
    })
}

/// Validates the IPv4 header; returns the addresses and the UDP segment's bounds
/// (as given by the IP total length, at least a UDP header long).
fn ipv4(frame: &[u8]) -> Result<(IpPair, usize, usize), ParseError> {
    let ip = &frame[ETH_HDR_LEN..];
    if ip.len() < IPV4_HDR_LEN {
        return Err(ParseError::Truncated("IPv4"));
    }
    if ip[0] >> 4 != 4 {
        return Err(ParseError::BadIpVersion(ip[0] >> 4));
    }
    let ihl = ip[0] & 0x0f;
    if ihl < 5 {
        return Err(ParseError::BadIhl(ihl));
    }
    let header_len = usize::from(ihl) * 4;
    if ip.len() < header_len {
        return Err(ParseError::Truncated("IPv4"));
    }
    let total_len = usize::from(be16(ip, 2));
    if total_len < header_len || total_len > ip.len() {
        return Err(ParseError::IpLength);
    }
    if !checksum::ipv4_header_valid(&ip[..header_len]) {
        return Err(ParseError::BadIpChecksum);
    }
    if be16(ip, 6) & 0x3fff != 0 {
        return Err(ParseError::Fragment);
    }
    if ip[9] != IPPROTO_UDP {
        return Err(ParseError::NotUdp(ip[9]));
    }
    if total_len - header_len < UDP_HDR_LEN {
        return Err(ParseError::UdpLength);
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    if src.is_multicast() || src.is_broadcast() || src.is_unspecified() {
        return Err(ParseError::BadSource);
    }
    Ok((
        IpPair::V4 { src, dst },
        ETH_HDR_LEN + header_len,
        ETH_HDR_LEN + total_len,
    ))
}

/// Validates the IPv6 header; next header must be UDP directly.
fn ipv6(frame: &[u8]) -> Result<(IpPair, usize, usize), ParseError> {
    let ip = &frame[ETH_HDR_LEN..];
    if ip.len() < IPV6_HDR_LEN {
        return Err(ParseError::Truncated("IPv6"));
    }
    if ip[0] >> 4 != 6 {
        return Err(ParseError::BadIpVersion(ip[0] >> 4));
    }
    let payload_len = usize::from(be16(ip, 4));
    if IPV6_HDR_LEN + payload_len > ip.len() {
        return Err(ParseError::IpLength);
    }
    match ip[6] {
        IPPROTO_UDP => {}
        // RFC 7045's extension headers, as the XDP program passes them.
        nh if is_ipv6_extension_header(nh) => return Err(ParseError::Ipv6ExtensionHeader(nh)),
        nh => return Err(ParseError::NotUdp(nh)),
    }
    if payload_len < UDP_HDR_LEN {
        return Err(ParseError::UdpLength);
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    let src = Ipv6Addr::from(src);
    let dst = Ipv6Addr::from(dst);
    if src.is_multicast() || src.is_unspecified() {
        return Err(ParseError::BadSource);
    }
    let start = ETH_HDR_LEN + IPV6_HDR_LEN;
    Ok((IpPair::V6 { src, dst }, start, start + payload_len))
}
