//! What a node says about itself (its `P/nodes/NODE` value), the `cluster status` report
//! built from them, and the cluster part of `xdp-mountd stats`.
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// One node, as `cluster status` shows it (and as the node writes it, leased).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// The table generation it serves (the etcd revision of the exports it compiled).
    pub generation: u64,
    /// Mount-list writes not yet in etcd.
    pub pending_ops: u64,
    /// Age of the oldest of them, ms.
    pub lag_ms: u64,
    /// Time of its last successful etcd write (this one), Unix ms.
    pub last_contact_unix_ms: u64,
    /// Whether it was connected to etcd (true whenever it could write this).
    pub etcd_connected: bool,
}

/// `cluster status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The etcd revision of the published exports (0: none published).
    pub published_generation: u64,
    /// Live nodes (those whose lease holds), by name.
    pub nodes: Vec<NodeStatus>,
}

impl StatusReport {
    /// The human-readable form.
    pub fn to_table(&self, now_unix_ms: u64) -> String {
        let mut s = format!("published generation {}\n", self.published_generation);
        if self.nodes.is_empty() {
            s.push_str("no live nodes\n");
            return s;
        }
        let _ = writeln!(
            s,
            "{:<20} {:>10} {:>8} {:>8} {:>14} {:>5}",
            "node", "generation", "pending", "lag ms", "last contact", "etcd"
        );
        for n in &self.nodes {
            let stale = if n.generation == self.published_generation {
                ""
            } else {
                " (behind)"
            };
            let _ = writeln!(
                s,
                "{:<20} {:>10} {:>8} {:>8} {:>11} ms {:>5}{stale}",
                n.node,
                n.generation,
                n.pending_ops,
                n.lag_ms,
                now_unix_ms.saturating_sub(n.last_contact_unix_ms),
                if n.etcd_connected { "up" } else { "DOWN" },
            );
        }
        s
    }
}

/// The cluster part of `xdp-mountd stats` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterReport {
    /// This node's name.
    pub node: String,
    /// The table generation served (etcd revision; 0: none from etcd yet).
    pub generation: u64,
    /// Whether etcd answers now.
    pub etcd_connected: bool,
    /// Mount-list writes not yet in etcd.
    pub pending_ops: u64,
    /// Age of the oldest of them, ms.
    pub lag_ms: u64,
    /// Mount-list ops dropped because the queue was full.
    pub dropped_ops: u64,
    /// Full reloads from etcd (at each reconnect and after a compacted watch).
    pub resyncs: u64,
    /// etcd calls that failed.
    pub etcd_errors: u64,
    /// Entries in the cluster-wide mount list.
    pub mounts: u64,
    /// Learned handles adopted from other nodes (gateway mode).
    pub handles_adopted: u64,
}

impl ClusterReport {
    /// Lines for the `stats` table.
    pub fn to_lines(&self) -> String {
        format!(
            "cluster node {}: generation {}, etcd {}\n  mounts {}  pending {}  lag {} ms  dropped {}  resyncs {}  etcd errors {}  handles adopted {}\n",
            self.node,
            self.generation,
            if self.etcd_connected { "connected" } else { "DISCONNECTED" },
            self.mounts,
            self.pending_ops,
            self.lag_ms,
            self.dropped_ops,
            self.resyncs,
            self.etcd_errors,
            self.handles_adopted,
        )
    }
}

/// The counters the cluster task keeps and the report reads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Table generation served.
    pub generation: AtomicU64,
    /// etcd answers now.
    pub connected: AtomicBool,
    /// Pending writes (queue + planned).
    pub pending: AtomicU64,
    /// Lag of the oldest pending write, ms.
    pub lag_ms: AtomicU64,
    /// Ops dropped (queue or pending full).
    pub dropped: std::sync::Arc<AtomicU64>,
    /// Full reloads.
    pub resyncs: AtomicU64,
    /// Failed etcd calls.
    pub errors: AtomicU64,
    /// Cluster-wide mount entries.
    pub mounts: AtomicU64,
    /// Handles adopted from peers.
    pub adopted: AtomicU64,
}

impl Counters {
    /// The report for node `node`.
    pub fn report(&self, node: &str) -> ClusterReport {
        ClusterReport {
            node: node.to_owned(),
            generation: self.generation.load(Relaxed),
            etcd_connected: self.connected.load(Relaxed),
            pending_ops: self.pending.load(Relaxed),
            lag_ms: self.lag_ms.load(Relaxed),
            dropped_ops: self.dropped.load(Relaxed),
            resyncs: self.resyncs.load(Relaxed),
            etcd_errors: self.errors.load(Relaxed),
            mounts: self.mounts.load(Relaxed),
            handles_adopted: self.adopted.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_is_the_contracts() {
        let r = StatusReport {
            published_generation: 5,
            nodes: vec![NodeStatus {
                node: "a".into(),
                generation: 5,
                pending_ops: 0,
                lag_ms: 0,
                last_contact_unix_ms: 1000,
                etcd_connected: true,
            }],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"published_generation":5,"nodes":[{"node":"a","generation":5,"pending_ops":0,"lag_ms":0,"last_contact_unix_ms":1000,"etcd_connected":true}]}"#
        );
        let t = r.to_table(1500);
        assert!(t.contains("published generation 5"), "{t}");
        assert!(t.contains("500 ms"), "{t}");
    }
}
