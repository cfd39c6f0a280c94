//! What the hostile section reads before and after each scenario: an interface's byte and
//! packet counters (`ip -s -j link`) and the daemon's counters (`xdp-mountd stats
//! --json`), and how much they moved in between.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Ethernet, IPv4 (no options) and UDP headers: what a frame carries besides the UDP
/// payload, on this segment where every MOUNT datagram is untagged, unfragmented IPv4.
const FRAME_OVERHEAD: u64 = 14 + 20 + 8;

/// An interface's counters as its own host sees them: `rx` came in, `tx` went out.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Link {
    /// Bytes received (whole frames, Ethernet header included).
    pub rx_bytes: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
}

impl Link {
    /// Parse `ip -s -j link show dev IF` (one interface).
    pub fn parse(json: &str) -> Result<Link> {
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
        Ok(Link {
            rx_bytes: n("rx", "bytes")?,
            rx_packets: n("rx", "packets")?,
            tx_bytes: n("tx", "bytes")?,
            tx_packets: n("tx", "packets")?,
        })
    }

    /// Read interface `iface` in namespace `ns`.
    pub fn read(ns: &str, iface: &str) -> Result<Link> {
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
        Link::parse(&String::from_utf8_lossy(&out.stdout))
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

    /// Bytes out ÷ bytes in (None when nothing came in).
    pub fn bytes_out_per_in(&self) -> Option<f64> {
        ratio(self.tx_bytes, self.rx_bytes)
    }

    /// The same ratio over UDP payloads: each frame's Ethernet, IPv4 and UDP headers
    /// taken off (exact when every frame is an unfragmented IPv4 UDP datagram; the odd
    /// ARP frame counts as a datagram).
    pub fn payload_out_per_in(&self) -> Option<f64> {
        let payload = |bytes: u64, packets: u64| bytes.saturating_sub(packets * FRAME_OVERHEAD);
        ratio(
            payload(self.tx_bytes, self.tx_packets),
            payload(self.rx_bytes, self.rx_packets),
        )
    }
}

/// `num / den`, None when `den` is 0.
fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The daemon's counters by name: the XDP program's (`xdp.NAME`), the AF_XDP sockets'
/// statistics and the workers' drop, kernel-fallback and truncation counts summed over
/// the queues (`xsk.NAME`, `queue.NAME`), and the kernel listeners' (`kernel.NAME`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonCounters(BTreeMap<String, u64>);

/// The per-queue worker fields kept: what was not answered through the TX ring.
const QUEUE_FIELDS: [&str; 3] = ["dropped", "via_kernel", "truncated"];

impl DaemonCounters {
    /// Pick the counters out of `xdp-mountd stats --json`; absent sections are empty.
    pub fn from_stats(stats: &Value) -> DaemonCounters {
        let mut all = BTreeMap::new();
        let xdp = stats.get("xdp");
        let pairs = |v: Option<&Value>| -> Vec<(String, u64)> {
            v.and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|pair| {
                    let name = pair.get(0)?.as_str()?;
                    Some((name.to_owned(), pair.get(1)?.as_u64()?))
                })
                .collect()
        };
        for (name, n) in pairs(xdp.and_then(|x| x.get("program"))) {
            all.insert(format!("xdp.{name}"), n);
        }
        for (name, n) in pairs(stats.get("kernel")) {
            all.insert(format!("kernel.{name}"), n);
        }
        let queues = xdp.and_then(|x| x.get("queues")).and_then(Value::as_array);
        for q in queues.into_iter().flatten() {
            for field in QUEUE_FIELDS {
                if let Some(n) = q.get(field).and_then(Value::as_u64) {
                    *all.entry(format!("queue.{field}")).or_default() += n;
                }
            }
            let xsk = q.get("xsk").and_then(Value::as_object);
            for (name, n) in xsk.into_iter().flatten() {
                if let Some(n) = n.as_u64() {
                    *all.entry(format!("xsk.{name}")).or_default() += n;
                }
            }
        }
        DaemonCounters(all)
    }

    /// Ask the daemon behind stats socket `socket`.
    pub fn read(bin: &Path, socket: &Path) -> Result<DaemonCounters> {
        let out = Command::new(bin)
            .args(["stats", "--json", "--socket"])
            .arg(socket)
            .output()
            .context("running xdp-mountd stats")?;
        if !out.status.success() {
            bail!(
                "xdp-mountd stats --socket {}: {}",
                socket.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stats: Value =
            serde_json::from_slice(&out.stdout).context("parsing xdp-mountd stats --json")?;
        Ok(DaemonCounters::from_stats(&stats))
    }

    /// The counters that grew since `before`, with their growth, in name order.
    pub fn grown_since(&self, before: &DaemonCounters) -> Vec<(String, u64)> {
        self.0
            .iter()
            .filter_map(|(name, &n)| {
                let grown = n.saturating_sub(before.0.get(name).copied().unwrap_or(0));
                (grown > 0).then(|| (name.clone(), grown))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_counters_parse_and_give_ratios() {
        let at = |rx: u64, rxp: u64, tx: u64, txp: u64| {
            format!(
                r#"[{{"ifindex":2,"ifname":"xmd-bench0","stats64":{{"rx":{{"bytes":{rx},"packets":{rxp},"errors":0}},"tx":{{"bytes":{tx},"packets":{txp},"dropped":0}}}}}}]"#
            )
        };
        let before = Link::parse(&at(1_000, 10, 5_000, 20)).unwrap();
        // 100 calls of 82 bytes in (40 bytes of UDP payload), 100 replies of 122 out (80).
        let after = Link::parse(&at(9_200, 110, 17_200, 120)).unwrap();
        let d = after.since(before);
        assert_eq!(
            d,
            Link {
                rx_bytes: 8_200,
                rx_packets: 100,
                tx_bytes: 12_200,
                tx_packets: 100
            }
        );
        assert!((d.bytes_out_per_in().unwrap() - 12_200.0 / 8_200.0).abs() < 1e-12);
        assert!((d.payload_out_per_in().unwrap() - 2.0).abs() < 1e-12);
        // Nothing in: no ratio rather than infinity; a counter reset does not underflow.
        assert_eq!(Link::default().bytes_out_per_in(), None);
        assert_eq!(before.since(after), Link::default());
        for bad in [
            "",
            "[]",
            r#"[{"ifname":"x"}]"#,
            r#"[{"stats64":{"rx":{}}}]"#,
        ] {
            assert!(Link::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn daemon_counters_are_picked_summed_and_diffed() {
        let stats = |seen: u64, dropped_q1: u64, rate: u64| {
            serde_json::json!({
                "port": 644,
                "xdp": {
                    "iface": "xmd-bench0",
                    "program": [["seen", seen], ["redirected", seen], ["dropped_rate_source", rate]],
                    "queues": [
                        {"queue": 0, "rx": 5, "tx": 5, "dropped": 1, "via_kernel": 0,
                         "truncated": 0, "xsk": {"rx_dropped": 0, "rx_ring_full": 3}},
                        {"queue": 1, "rx": 5, "tx": 5, "dropped": dropped_q1, "via_kernel": 2,
                         "truncated": 0, "xsk": null}
                    ]
                },
                "kernel": [["udp_replies", 7], ["udp_rate_limited_source", rate]],
                "procedures": []
            })
        };
        let before = DaemonCounters::from_stats(&stats(100, 0, 0));
        assert_eq!(before.0.get("queue.dropped"), Some(&1));
        assert_eq!(before.0.get("queue.via_kernel"), Some(&2));
        assert_eq!(before.0.get("xsk.rx_ring_full"), Some(&3));
        assert_eq!(before.0.get("kernel.udp_replies"), Some(&7));
        // rx/tx are not drop counters.
        assert!(!before.0.contains_key("queue.rx"));
        let after = DaemonCounters::from_stats(&stats(250, 4, 90));
        assert_eq!(
            after.grown_since(&before),
            vec![
                ("kernel.udp_rate_limited_source".to_owned(), 90),
                ("queue.dropped".to_owned(), 4),
                ("xdp.dropped_rate_source".to_owned(), 90),
                ("xdp.redirected".to_owned(), 150),
                ("xdp.seen".to_owned(), 150),
            ]
        );
        // A daemon without XDP (or a report without sections) gives no counters.
        assert_eq!(
            DaemonCounters::from_stats(&serde_json::json!({"xdp": null})),
            DaemonCounters::default()
        );
    }
}
