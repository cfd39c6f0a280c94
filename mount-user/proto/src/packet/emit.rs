//! Emitting a frame: Ethernet, IP and UDP headers written around a payload already in
//! place, the inverse of [`super::parse`]. [`emit`] addresses the frame as its
//! [`Addressing`] says (a load generator's request); [`finish_reply`]/[`build_reply`]
//! answer a parsed request in place, in the request's own buffer, with every
//! source/destination pair swapped.
//!
//! A frame always has a 20-byte IPv4 header (a request's options are not echoed) or the
//! 40-byte IPv6 header, so its payload starts at a fixed offset per family
//! ([`payload_offset`]). For a reply that offset may overlap the request's payload: the
//! caller must be done reading the request (or have decoded it into a scratch buffer)
//! before writing the reply payload.

use std::ops::Range;

use super::{
    checksum, Addressing, IpPair, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HDR_LEN, IPPROTO_UDP,
    IPV4_HDR_LEN, IPV6_HDR_LEN, UDP_HDR_LEN,
};

/// TTL / hop limit of emitted frames (Linux's default); the XDP program's own answers
/// write the same.
const TTL: u8 = mount_ebpf::answer::REPLY_TTL;

/// Why a frame could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The frame buffer cannot hold the headers plus payload.
    #[error("frame needs {needed} bytes, frame buffer has {capacity}")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },
    /// The IP datagram would exceed the MTU (or 65535). The payload is intact at
    /// `payload` in the buffer: send it through the kernel's UDP socket, which fragments.
    #[error("frame of {ip_len} IP bytes exceeds the MTU of {mtu}")]
    ExceedsMtu {
        /// Size of the IP datagram the frame would be.
        ip_len: usize,
        /// The MTU it was checked against.
        mtu: usize,
        /// Where the payload sits in the frame buffer.
        payload: Range<usize>,
    },
}

/// Offset of the UDP payload in a frame of this family (no IP options, no VLAN tag).
pub fn payload_offset(ips: &IpPair) -> usize {
    ETH_HDR_LEN
        + UDP_HDR_LEN
        + match ips {
            IpPair::V4 { .. } => IPV4_HDR_LEN,
            IpPair::V6 { .. } => IPV6_HDR_LEN,
        }
}

/// The part of `frame` where the payload of a frame of this family goes (up to the
/// buffer's end).
pub fn payload_mut<'f>(frame: &'f mut [u8], ips: &IpPair) -> Result<&'f mut [u8], EmitError> {
    let offset = payload_offset(ips);
    let capacity = frame.len();
    frame.get_mut(offset..).ok_or(EmitError::BufferTooSmall {
        needed: offset,
        capacity,
    })
}

/// Writes the headers of a datagram from `addressing`'s source to its destination around
/// a payload of `payload_len` bytes already placed at [`payload_offset`]: what
/// [`super::parse`] reads back as `addressing` and that payload. `mtu` is the interface
/// MTU (IP datagram size, Ethernet header excluded). Returns the frame length.
pub fn emit(
    frame: &mut [u8],
    addressing: &Addressing,
    payload_len: usize,
    mtu: usize,
) -> Result<usize, EmitError> {
    let offset = payload_offset(&addressing.ips);
    let frame_len = offset + payload_len;
    if frame_len > frame.len() {
        return Err(EmitError::BufferTooSmall {
            needed: frame_len,
            capacity: frame.len(),
        });
    }
    let ip_len = frame_len - ETH_HDR_LEN;
    // 65535 bounds both the IPv4 total length and the UDP length field.
    if ip_len > mtu || ip_len > usize::from(u16::MAX) {
        return Err(EmitError::ExceedsMtu {
            ip_len,
            mtu,
            payload: offset..frame_len,
        });
    }
    let a = addressing;
    let frame = &mut frame[..frame_len];
    frame[0..6].copy_from_slice(&a.dst_mac.0);
    frame[6..12].copy_from_slice(&a.src_mac.0);
    let udp_len = (UDP_HDR_LEN + payload_len) as u16;
    let udp_start = offset - UDP_HDR_LEN;
    {
        let udp = &mut frame[udp_start..udp_start + UDP_HDR_LEN];
        udp[0..2].copy_from_slice(&a.src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&a.dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]);
    }
    match a.ips {
        IpPair::V4 { src, dst } => {
            frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = &mut frame[ETH_HDR_LEN..ETH_HDR_LEN + IPV4_HDR_LEN];
            ip[0] = 0x45; // version 4, IHL 5: options are not echoed
            ip[1] = 0; // DSCP/ECN
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            // Id 0 with DF set: an atomic datagram (RFC 6864 §4.1).
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            ip[8] = TTL;
            ip[9] = IPPROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let sum = checksum::ipv4_header(ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            let sum = checksum::udp_ipv4(src, dst, &frame[udp_start..]);
            frame[udp_start + 6..udp_start + 8].copy_from_slice(&sum.to_be_bytes());
        }
        IpPair::V6 { src, dst } => {
            frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ip = &mut frame[ETH_HDR_LEN..ETH_HDR_LEN + IPV6_HDR_LEN];
            // Version 6, traffic class 0, flow label 0.
            ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            let sum = checksum::udp_ipv6(src, dst, &frame[udp_start..]);
            frame[udp_start + 6..udp_start + 8].copy_from_slice(&sum.to_be_bytes());
        }
    }
    Ok(frame_len)
}

/// [`payload_mut`], then `write` (which returns how many payload bytes it wrote), then
/// [`emit`]. Returns the frame length.
pub fn build(
    frame: &mut [u8],
    addressing: &Addressing,
    mtu: usize,
    write: impl FnOnce(&mut [u8]) -> usize,
) -> Result<usize, EmitError> {
    let area = payload_mut(frame, &addressing.ips)?;
    let capacity = area.len();
    let written = write(area);
    if written > capacity {
        // A writer claiming more than it was given is a bug; refuse rather than
        // checksum bytes it never wrote.
        return Err(EmitError::BufferTooSmall {
            needed: payload_offset(&addressing.ips) + written,
            capacity: frame.len(),
        });
    }
    emit(frame, addressing, written, mtu)
}

/// [`emit`] the answer to `request`: the headers of a reply of `payload_len` bytes already
/// placed at [`payload_offset`], addressed back to the sender of `request`.
pub fn finish_reply(
    frame: &mut [u8],
    request: &Addressing,
    payload_len: usize,
    mtu: usize,
) -> Result<usize, EmitError> {
    emit(frame, &request.reversed(), payload_len, mtu)
}

/// [`build`] the answer to `request`, in place: the reply payload that `write` puts at
/// [`payload_offset`], addressed back to the sender of `request`.
pub fn build_reply(
    frame: &mut [u8],
    request: &Addressing,
    mtu: usize,
    write: impl FnOnce(&mut [u8]) -> usize,
) -> Result<usize, EmitError> {
    build(frame, &request.reversed(), mtu, write)
}
