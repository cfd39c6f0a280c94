//! Membership: each node holds a lease ([`LEASE_TTL`]) and keeps its status under
//! `P/nodes/NODE`, attached to it, rewritten every [`STATUS_EVERY`]; a node that stops or
//! loses etcd for longer than the TTL drops out of `cluster status`.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, GetOptions};

use super::{bounded, ExportsSet, Keys, NodeStatus, StatusReport};

/// The lease's time to live, seconds.
pub const LEASE_TTL: i64 = 10;
/// How often the status is rewritten (and the lease kept alive).
pub const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Now, Unix ms.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads what `cluster status` shows: the published generation and the live nodes.
pub async fn read_status(client: &mut Client, keys: &Keys) -> anyhow::Result<StatusReport> {
    let exports = bounded("get exports", client.get(keys.exports(), None)).await?;
    let published_generation = exports
        .kvs()
        .first()
        .map_or(0, |kv| kv.mod_revision() as u64);
    let nodes = bounded(
        "get nodes",
        client.get(keys.nodes(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let mut out = Vec::new();
    for kv in nodes.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        match serde_json::from_slice::<NodeStatus>(kv.value()) {
            Ok(status) if keys.parse_node(&key).is_some() => out.push(status),
            _ => tracing::warn!(key = %key, "not a node status; skipped"),
        }
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(StatusReport {
        published_generation,
        nodes: out,
    })
}

/// Publishes `set`; returns the etcd revision of the write (the new generation).
pub async fn publish(client: &mut Client, keys: &Keys, set: &ExportsSet) -> anyhow::Result<u64> {
    let resp = bounded(
        "put exports",
        client.put(keys.exports(), set.to_value(), None),
    )
    .await?;
    resp.header()
        .map(|h| h.revision() as u64)
        .ok_or_else(|| anyhow::anyhow!("etcd put exports: no revision in the answer"))
}
