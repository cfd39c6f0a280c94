//! Precomputed call frames: Ethernet + IP + UDP headers around a call template (emitted by
//! the protocol core's `packet::build`, the inverse of the `packet::parse` the server's
//! worker reads them with), with the UDP checksum's partial sum so that patching the
//! source port and xid costs a few adds.
use std::net::{IpAddr, SocketAddr};

use anyhow::{anyhow, bail};

use mount_proto::packet::{self, checksum, Addressing, IpPair, MacAddr, UDP_HDR_LEN};

/// A precomputed call frame.
pub(super) struct Frame {
    bytes: Vec<u8>,
    /// One's-complement sum of the UDP pseudo-header and segment with source port, xid
    /// and checksum zero: adding port and xid and folding gives the checksum.
    partial: u64,
    udp: usize,
    payload: usize,
}

/// Builds the frame of `message` from `src` (port 0, xid 0) to `target` via `dst_mac`.
pub(super) fn build_frame(
    message: &[u8],
    src: IpAddr,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    target: SocketAddr,
    mtu: usize,
) -> anyhow::Result<Frame> {
    let ips = match (src, target.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => IpPair::V4 { src, dst },
        (IpAddr::V6(src), IpAddr::V6(dst)) => IpPair::V6 { src, dst },
        _ => bail!("source {src} and target {target} are not of the same family"),
    };
    let call = Addressing {
        src_mac,
        dst_mac,
        ips,
        src_port: 0,
        dst_port: target.port(),
    };
    let payload = packet::payload_offset(&ips);
    let mut bytes = vec![0u8; payload + message.len()];
    let len = packet::build(&mut bytes, &call, mtu, |out| {
        out.copy_from_slice(message);
        message.len()
    })
    .map_err(|e| anyhow!("a call frame does not fit: {e}"))?;
    bytes.truncate(len);
    let udp = payload - UDP_HDR_LEN;
    // Partial sum: pseudo-header + segment with checksum, source port and xid at zero
    // (they are zero in `bytes` except the checksum).
    bytes[udp + 6..udp + 8].fill(0);
    let mut acc = match ips {
        IpPair::V4 { src, dst } => checksum::sum(&dst.octets(), checksum::sum(&src.octets(), 0)),
        IpPair::V6 { src, dst } => checksum::sum(&dst.octets(), checksum::sum(&src.octets(), 0)),
    };
    acc += u64::from(packet::IPPROTO_UDP) + (bytes.len() - udp) as u64;
    let partial = checksum::sum(&bytes[udp..], acc);
    Ok(Frame {
        bytes,
        partial,
        udp,
        payload,
    })
}

impl Frame {
    /// Writes this frame into `out` (at least `self.bytes.len()` long) from source port
    /// `port` with `xid`; returns the frame length.
    pub(super) fn write(&self, out: &mut [u8], port: u16, xid: u32) -> usize {
        let len = self.bytes.len();
        let out = &mut out[..len];
        out.copy_from_slice(&self.bytes);
        out[self.udp..self.udp + 2].copy_from_slice(&port.to_be_bytes());
        out[self.payload..self.payload + 4].copy_from_slice(&xid.to_be_bytes());
        let acc = self.partial + u64::from(port) + u64::from(xid >> 16) + u64::from(xid & 0xffff);
        let mut sum = !checksum::fold(acc);
        if sum == 0 {
            sum = 0xffff;
        }
        out[self.udp + 6..self.udp + 8].copy_from_slice(&sum.to_be_bytes());
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_back_with_valid_checksums_after_patching() {
        for (src, target) in [("10.1.0.2", "10.1.0.1:644"), ("fd00::2", "[fd00::1]:20048")] {
            let src: IpAddr = src.parse().unwrap();
            let target: SocketAddr = target.parse().unwrap();
            let msg = vec![0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3];
            let f = build_frame(&msg, src, MacAddr([2; 6]), MacAddr([4; 6]), target, 1500).unwrap();
            let (port, xid) = (40_001u16, 0xfedc_ba98u32);
            let mut out = vec![0u8; 2048];
            let len = f.write(&mut out, port, xid);
            out.truncate(len);
            let sum = u16::from_be_bytes([out[f.udp + 6], out[f.udp + 7]]);
            let parsed = packet::parse(&out).unwrap();
            assert_eq!(parsed.addressing.destination(), target);
            assert_eq!(parsed.addressing.source(), SocketAddr::new(src, port));
            assert_eq!(parsed.addressing.dst_mac, MacAddr([4; 6]));
            assert_eq!(&parsed.payload(&out)[..4], &xid.to_be_bytes());
            assert_eq!(&parsed.payload(&out)[4..], &msg[4..]);
            // The whole-segment checksum recomputed from scratch agrees.
            let mut zeroed = out.clone();
            zeroed[f.udp + 6..f.udp + 8].fill(0);
            let full = match (src, target.ip()) {
                (IpAddr::V4(s), IpAddr::V4(t)) => checksum::udp_ipv4(s, t, &zeroed[f.udp..]),
                (IpAddr::V6(s), IpAddr::V6(t)) => checksum::udp_ipv6(s, t, &zeroed[f.udp..]),
                _ => unreachable!(),
            };
            assert_eq!(full, sum, "{src}");
        }
    }
}
