//! One-line MOUNT calls through one node of a [`Cluster`], from the client's address (so
//! every node sees the same client, the mount list's key), and the small helpers the
//! cluster tests share.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::{RpcClient, UdpClient};

/// Nodes in every cluster test's bed.
pub const NODES: usize = 3;
/// What the client is called in the nodes' mount lists (the bed's client address).
pub const CLIENT: &str = "10.79.200.1";

/// An exports file: `dirs` to the bed's networks, `insecure` so storm (unprivileged
/// source ports) may mount too.
pub fn exports(dirs: &[&str]) -> String {
    dirs.iter()
        .map(|d| format!("{d} 10.79.0.0/16(rw,insecure)\n"))
        .collect()
}

/// A UDP client in the client namespace, from the client's address, to `to`. Must be
/// made inside [`Cluster::in_client`].
pub fn client_to(to: SocketAddr) -> RpcClient {
    let from = SocketAddr::new(testbed::ecmp::CLIENT.into(), 0);
    match UdpClient::bind_to(to, from) {
        Ok(c) => RpcClient::Udp(c),
        Err(e) => panic!("binding the client's address: {e:#}"),
    }
}

/// The (client, dir) entry of a mount of `dir`.
pub fn entry(dir: &str) -> (String, String) {
    (CLIENT.to_string(), dir.to_string())
}

/// A stats value as u64 (0 when absent), for counters that must move.
pub fn counter(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

impl Cluster {
    /// The bed for test `test` with `nodes` nodes and `members` etcd members, or None
    /// (after a loud SKIPPED) when it cannot run here ([`crate::cluster::can_run`]).
    pub fn for_test(test: &str, nodes: usize, members: usize) -> Option<Cluster> {
        if !crate::cluster::can_run(test) {
            return None;
        }
        match Cluster::new(test, nodes, members) {
            Ok(c) => Some(c),
            Err(e) => panic!("[{test}] setting up the cluster: {e:#}"),
        }
    }

    /// DUMP (v3) through node `i`, as a set of (host, dir).
    pub fn dump_via(&self, i: usize) -> BTreeSet<(String, String)> {
        let to = self.node_addr(i);
        self.in_client(|| client_to(to).dump(3).into_iter().collect())
    }

    /// Every node's DUMP, in node order.
    pub fn dumps(&self) -> Vec<BTreeSet<(String, String)>> {
        (0..self.nodes.len()).map(|i| self.dump_via(i)).collect()
    }

    /// After `settle`, every node's DUMP still lists the client's mount of `dir` (`what`
    /// says after which calls, for the failure message).
    pub fn assert_all_still_list(&self, dir: &str, settle: Duration, what: &str) {
        std::thread::sleep(settle);
        for (i, d) in self.dumps().iter().enumerate() {
            assert!(d.contains(&entry(dir)), "node {i} lost {dir} {what}: {d:?}");
        }
    }

    /// MNT v3 of `path` through node `i`: (status, handle).
    pub fn mnt_via(&self, i: usize, path: &str) -> (u32, Option<Vec<u8>>) {
        let to = self.node_addr(i);
        self.in_client(|| {
            let (st, ok) = client_to(to).mnt3(path);
            (st, ok.map(|(fh, _)| fh))
        })
    }

    /// UMNT v3 of `path` through node `i`.
    pub fn umnt_via(&self, i: usize, path: &str) {
        let to = self.node_addr(i);
        self.in_client(|| client_to(to).umnt(3, path));
    }
}
