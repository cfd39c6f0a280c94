//! An interface's byte and packet counters (`ip -s -j link`) around a scenario, brought to
//! IP bytes, and the ratios the section reports from them.
//!
//! A veth's byte counts do not all mean the same thing: what it receives is counted
//! without the 14-byte Ethernet header when an XDP program runs on it (the frame reaches
//! its NAPI poll with the header already pulled) and with it otherwise, and what it sends
//! is what its peer received, counted by the peer's rule. Measured here: the same MNT call
//! is 146 bytes on the flooder's bridge port and 132 on the server's veth. [`Framing`]
//! says which counts carry the header, and [`Link`] holds IP bytes only.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::process::Command;

/// An Ethernet header without a VLAN tag.
const ETH_HEADER: u64 = 14;
/// IPv4 (no options) and UDP headers: what an IP packet carries besides the UDP payload,
/// on this segment where every MOUNT datagram is unfragmented IPv4.
const IP_UDP_HEADERS: u64 = 20 + 8;

/// Whether an interface's received and sent byte counts include the Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Received bytes include it.
    pub rx_with_eth: bool,
    /// Sent bytes include it.
    pub tx_with_eth: bool,
}

/// An interface's counters in IP bytes, as its own host sees them: `rx` came in, `tx`
/// went out.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Link {
    /// IP bytes received.
    pub rx_bytes: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// IP bytes sent.
    pub tx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
}

impl Link {
    /// Parse `ip -s -j link show dev IF` (one interface) counted as `framing` says.
    pub fn parse(json: &str, framing: Framing) -> Result<Link> {
        let v: Value = serde_json::from_str(json).context("parsing `ip -s -j link`")?;
        let Some(stats) = v.get(0).and_then(|l| l.get("stats64")) else {
            bail!("`ip -s -j link` shows no stats64: {json}");
        };
        let n = |dir: &str, key: &str| {
            stats
                .get(dir)
                .and_then(|d| d.get(key))
                .and_then(Value::as_u64)
                .with_context(|| format!("`ip -s -j link` has no stats64.{dir}.{key}"))
        };
        let ip_bytes = |bytes: u64, packets: u64, with_eth: bool| {
            if with_eth {
                bytes.saturating_sub(packets.saturating_mul(ETH_HEADER))
            } else {
                bytes
            }
        };
        let (rx_packets, tx_packets) = (n("rx", "packets")?, n("tx", "packets")?);
        Ok(Link {
            rx_bytes: ip_bytes(n("rx", "bytes")?, rx_packets, framing.rx_with_eth),
            rx_packets,
            tx_bytes: ip_bytes(n("tx", "bytes")?, tx_packets, framing.tx_with_eth),
            tx_packets,
        })
    }

    /// Read interface `iface` in namespace `ns`, counted as `framing` says.
    pub fn read(ns: &str, iface: &str, framing: Framing) -> Result<Link> {
        let out = Command::new("ip")
            .args(["-n", ns, "-s", "-j", "link", "show", "dev", iface])
            .output()
            .context("running ip -s -j link")?;
        if !out.status.success() {
            bail!(
                "ip -n {ns} -s -j link show dev {iface}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Link::parse(&String::from_utf8_lossy(&out.stdout), framing)
    }

    /// What moved between `before` and `self`.
    pub fn since(self, before: Link) -> Link {
        Link {
            rx_bytes: self.rx_bytes.saturating_sub(before.rx_bytes),
            rx_packets: self.rx_packets.saturating_sub(before.rx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(before.tx_bytes),
            tx_packets: self.tx_packets.saturating_sub(before.tx_packets),
        }
    }

    /// IP bytes out ÷ IP bytes in (None when nothing came in).
    pub fn bytes_out_per_in(&self) -> Option<f64> {
        ratio(self.tx_bytes, self.rx_bytes)
    }

    /// UDP payload bytes out ÷ in: each packet's IPv4 and UDP headers taken off (exact
    /// when every frame is an unfragmented IPv4 UDP datagram; the odd ARP or IPv6
    /// neighbour frame counts as one).
    pub fn payload_out_per_in(&self) -> Option<f64> {
        ratio(self.tx_payload(), self.rx_payload())
    }

    /// The mean UDP payload of a datagram out ÷ that of a datagram in: what a reply
    /// weighs against its call, whatever share of the calls was answered.
    pub fn payload_per_datagram_out_per_in(&self) -> Option<f64> {
        let per_reply = ratio(self.tx_payload(), self.tx_packets)?;
        let per_call = ratio(self.rx_payload(), self.rx_packets)?;
        (per_call > 0.0).then(|| per_reply / per_call)
    }

    /// Mean IP bytes per received frame.
    pub fn rx_bytes_per_packet(&self) -> Option<f64> {
        ratio(self.rx_bytes, self.rx_packets)
    }

    fn rx_payload(&self) -> u64 {
        udp_payload(self.rx_bytes, self.rx_packets)
    }

    fn tx_payload(&self) -> u64 {
        udp_payload(self.tx_bytes, self.tx_packets)
    }
}

/// UDP payload bytes in `packets` IPv4 UDP datagrams of `ip_bytes` in all.
fn udp_payload(ip_bytes: u64, packets: u64) -> u64 {
    ip_bytes.saturating_sub(packets.saturating_mul(IP_UDP_HEADERS))
}

/// `num / den`, None when `den` is 0.
fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The same calls counted at two interfaces must weigh the same once brought to IP
/// bytes; a difference means a [`Framing`] is wrong on this kernel. Checked when the
/// flooder's port carried almost all the calls the server received (a flood drowns the
/// victim's): returns a warning naming both sizes.
pub fn framing_mismatch(server: &Link, flood_port: &Link) -> Option<String> {
    if server.rx_packets == 0 || (flood_port.rx_packets as f64) < 0.99 * server.rx_packets as f64 {
        return None;
    }
    let (a, b) = (
        server.rx_bytes_per_packet()?,
        flood_port.rx_bytes_per_packet()?,
    );
    ((a - b).abs() > 2.0).then(|| {
        format!(
            "the flood's calls are {a:.1} IP bytes at the server's veth but {b:.1} at the \
             flooder's bridge port: the interface counters do not count Ethernet headers \
             as assumed, so the byte ratios are off"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(rx: u64, rxp: u64, tx: u64, txp: u64) -> String {
        format!(
            r#"[{{"ifindex":2,"ifname":"xmd-bench0","stats64":{{"rx":{{"bytes":{rx},"packets":{rxp},"errors":0}},"tx":{{"bytes":{tx},"packets":{txp},"dropped":0}}}}}}]"#
        )
    }

    const SERVER: Framing = Framing {
        rx_with_eth: false,
        tx_with_eth: true,
    };

    #[test]
    fn counters_become_ip_bytes_and_ratios() {
        let before = Link::parse(&json(1_000, 10, 5_000, 20), SERVER).unwrap();
        // 100 calls of 68 IP bytes in (40 bytes of UDP payload), counted without the
        // Ethernet header; 100 replies of 108 IP bytes out (80), counted with it (122).
        let after = Link::parse(&json(7_800, 110, 17_200, 120), SERVER).unwrap();
        let d = after.since(before);
        assert_eq!(
            d,
            Link {
                rx_bytes: 6_800,
                rx_packets: 100,
                tx_bytes: 10_800,
                tx_packets: 100
            }
        );
        assert!((d.bytes_out_per_in().unwrap() - 10_800.0 / 6_800.0).abs() < 1e-12);
        assert!((d.payload_out_per_in().unwrap() - 2.0).abs() < 1e-12);
        assert!((d.payload_per_datagram_out_per_in().unwrap() - 2.0).abs() < 1e-12);
        // Half the calls answered: the bulk ratio halves, the per-datagram one does not.
        let half = Link {
            tx_bytes: 5_400,
            tx_packets: 50,
            ..d
        };
        assert!((half.payload_out_per_in().unwrap() - 1.0).abs() < 1e-12);
        assert!((half.payload_per_datagram_out_per_in().unwrap() - 2.0).abs() < 1e-12);
        // Nothing in: no ratio rather than infinity; a counter reset does not underflow.
        assert_eq!(Link::default().bytes_out_per_in(), None);
        assert_eq!(Link::default().payload_per_datagram_out_per_in(), None);
        assert_eq!(before.since(after), Link::default());
        for bad in [
            "",
            "[]",
            r#"[{"ifname":"x"}]"#,
            r#"[{"stats64":{"rx":{}}}]"#,
        ] {
            assert!(Link::parse(bad, SERVER).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn framing_is_checked_on_the_flood_calls_counted_twice() {
        let server = Link {
            rx_bytes: 132 * 1_000_000 + 120 * 3_000,
            rx_packets: 1_003_000,
            ..Link::default()
        };
        let port = |bytes_each: u64| Link {
            rx_bytes: bytes_each * 1_000_000,
            rx_packets: 1_000_000,
            ..Link::default()
        };
        assert_eq!(framing_mismatch(&server, &port(132)), None);
        let warning = framing_mismatch(&server, &port(146)).unwrap();
        assert!(warning.contains("146.0"), "{warning}");
        // No flood, or a flood that does not dominate: nothing to compare.
        assert_eq!(framing_mismatch(&server, &Link::default()), None);
        assert_eq!(framing_mismatch(&Link::default(), &port(146)), None);
    }
}
