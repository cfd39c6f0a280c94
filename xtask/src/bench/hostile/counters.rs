//! The daemon's counters around a scenario (`xdp-mountd stats --json`) and how much they
//! grew in between.
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

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
        let stats = crate::bench::server::stats_json(bin, socket)?;
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
