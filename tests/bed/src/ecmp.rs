//! A cluster of MOUNT nodes behind one service address, as cluster mode is deployed: a
//! client namespace whose route to the service address is ECMP over one veth per node
//! (`net.ipv4.fib_multipath_hash_policy=1`: the hash takes the ports, so different client
//! source ports land on different nodes), node namespaces that each hold the service
//! address on `lo`, and a backbone namespace (a bridge every node joins) where etcd and an
//! upstream NFS server run. Removed on drop, also when a test panics.
//!
//! ```text
//!                    ┌ up0 ─ node 0 (10.79.16.2, lo: SERVICE) ─ bb0 ┐
//!  client ── ECMP ───┼ up0 ─ node 1 (10.79.17.2, lo: SERVICE) ─ bb0 ┼─ br0  backbone
//!  (lo: CLIENT)      └ up0 ─ node 2 (10.79.18.2, lo: SERVICE) ─ bb0 ┘  (10.79.1.1)
//!        └──────────────────────── bb (10.79.2.0/24) ───────────────────┘
//! ```
//!
//! The client speaks from [`CLIENT`] (on its `lo`), so every node sees the same client
//! address whichever way a call went: the mount list's key is the same. Each node's `up0`
//! (the interface its daemon's XDP program and AF_XDP sockets take) also has an address of
//! its own, reachable directly, for calls meant for one node. The client's direct link to
//! the backbone carries nothing unless [`Ecmp::bypass_to_backbone`] routes a port there
//! (the NFS port, when the NFS server behind the MOUNT nodes runs in the backbone).
//!
//! Addresses are fixed (the namespaces are private, so parallel beds cannot clash); the
//! names are process-unique (`xmd-PID-K-c`, `-b`, `-n0`…, swept like a [`crate::Pair`]'s).

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr};

use crate::netns::{self, ip, CmdOutput};
use crate::pair::{sweep_stale_once, Permit, NS_PREFIX};

/// The service address every node holds and the client's ECMP route leads to.
pub const SERVICE: Ipv4Addr = Ipv4Addr::new(10, 79, 100, 1);
/// The client's own address (on its `lo`): the source of every call it makes.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 79, 200, 1);
/// The backbone's address on its bridge (etcd, the upstream NFS server).
pub const BACKBONE: Ipv4Addr = Ipv4Addr::new(10, 79, 1, 1);
/// The most nodes a bed has (one /24 per client link: 10.79.16.0 … 10.79.23.0).
pub const MAX_NODES: usize = 8;

/// The interface of a node facing the client (give it to `serve --iface`).
pub const NODE_IFACE: &str = "up0";

/// One node's namespace and addresses.
#[derive(Clone, Debug)]
pub struct Node {
    /// Index (0-based).
    pub index: usize,
    /// Namespace name.
    pub ns: String,
    /// Its own address on [`NODE_IFACE`] (10.79.(16+i).2), for calls meant for it alone.
    pub addr: Ipv4Addr,
    /// The client's end of its link (10.79.(16+i).1): the ECMP next hop.
    pub gateway: Ipv4Addr,
    /// Its address on the backbone (10.79.1.(10+i)).
    pub backbone_addr: Ipv4Addr,
}

impl Node {
    /// `ip netns exec NS`: add the program and its arguments.
    pub fn command(&self) -> std::process::Command {
        netns::command(&self.ns)
    }

    /// Runs `f` on a thread inside this node's namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        netns::run(&self.ns, f)
    }
}

/// The bed; see the module documentation.
pub struct Ecmp {
    /// The client namespace.
    pub client_ns: String,
    /// The backbone namespace.
    pub backbone_ns: String,
    nodes: Vec<Node>,
    _permit: Permit,
}

/// `ip -n NS ARGS`.
fn ipn(ns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all)
}

/// Sets a sysctl inside namespace `ns` (`/proc/sys/net` is per network namespace).
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let out = netns::output(ns, &["sysctl", "-q", "-w", &format!("{key}={value}")], 10)?;
    if out.code != Some(0) {
        bail!("sysctl {key}={value} in {ns}: {}", out.stderr.trim());
    }
    Ok(())
}

impl Ecmp {
    /// Builds a bed of `nodes` nodes (1 to [`MAX_NODES`]). On an error half-way, what was
    /// made is removed.
    pub fn create(nodes: usize) -> Result<Ecmp> {
        if nodes == 0 || nodes > MAX_NODES {
            bail!("an ECMP bed has 1 to {MAX_NODES} nodes, not {nodes}");
        }
        sweep_stale_once();
        let permit = Permit::acquire();
        let names = crate::pair::unique_names();
        let base = format!("{NS_PREFIX}{}-{}", std::process::id(), names.k);
        let bed = Ecmp {
            client_ns: format!("{base}-c"),
            backbone_ns: format!("{base}-b"),
            nodes: (0..nodes)
                .map(|i| {
                    let link = 16 + i as u8;
                    Node {
                        index: i,
                        ns: format!("{base}-n{i}"),
                        addr: Ipv4Addr::new(10, 79, link, 2),
                        gateway: Ipv4Addr::new(10, 79, link, 1),
                        backbone_addr: Ipv4Addr::new(10, 79, 1, 10 + i as u8),
                    }
                })
                .collect(),
            _permit: permit,
        };
        for ns in bed.all_ns() {
            netns::delete(&ns);
        }
        // From here on Drop removes whatever part was made.
        bed.build().context("building the ECMP bed")?;
        Ok(bed)
    }

    fn all_ns(&self) -> Vec<String> {
        let mut all = vec![self.client_ns.clone(), self.backbone_ns.clone()];
        all.extend(self.nodes.iter().map(|n| n.ns.clone()));
        all
    }

    fn build(&self) -> Result<()> {
        let (c, b) = (self.client_ns.as_str(), self.backbone_ns.as_str());
        for ns in self.all_ns() {
            ip(&["netns", "add", &ns]).context("creating a network namespace (needs root)")?;
            ipn(&ns, &["link", "set", "lo", "up"])?;
        }
        // Replies come back over whichever link their node sits on: no reverse-path filter
        // in the client (the host's default may be strict).
        for key in [
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.default.rp_filter",
        ] {
            sysctl(c, key, "0")?;
        }
        // Hash on the ports too (L4), so one client address spreads over the nodes.
        sysctl(c, "net.ipv4.fib_multipath_hash_policy", "1")?;
        ipn(c, &["addr", "add", &format!("{CLIENT}/32"), "dev", "lo"])?;

        // The backbone: a bridge every node joins, and a direct link to the client.
        ipn(b, &["link", "add", "br0", "type", "bridge"])?;
        ipn(b, &["addr", "add", &format!("{BACKBONE}/24"), "dev", "br0"])?;
        ipn(b, &["link", "set", "br0", "up"])?;
        ip(&[
            "link", "add", "bb", "netns", c, "type", "veth", "peer", "name", "cli", "netns", b,
        ])?;
        ipn(c, &["addr", "add", "10.79.2.1/24", "dev", "bb"])?;
        ipn(b, &["addr", "add", "10.79.2.2/24", "dev", "cli"])?;
        ipn(c, &["link", "set", "bb", "up"])?;
        ipn(b, &["link", "set", "cli", "up"])?;
        ipn(
            b,
            &["route", "add", &format!("{CLIENT}/32"), "via", "10.79.2.1"],
        )?;
        // The backbone's servers (etcd, an upstream's own MOUNT) are reachable from the
        // client's tools too, over the direct link.
        ipn(c, &["route", "add", "10.79.1.0/24", "via", "10.79.2.2"])?;

        let mut ecmp: Vec<String> = vec![
            "route".into(),
            "add".into(),
            format!("{SERVICE}/32"),
            "src".into(),
            CLIENT.to_string(),
        ];
        for n in &self.nodes {
            let bridge_port = format!("c{}", n.index);
            let client_if = format!("n{}", n.index);
            // Client link: `up0` in the node, `nI` in the client.
            ip(&[
                "link", "add", NODE_IFACE, "netns", &n.ns, "type", "veth", "peer", "name",
                &client_if, "netns", c,
            ])?;
            ipn(
                &n.ns,
                &["addr", "add", &format!("{}/24", n.addr), "dev", NODE_IFACE],
            )?;
            ipn(
                c,
                &[
                    "addr",
                    "add",
                    &format!("{}/24", n.gateway),
                    "dev",
                    &client_if,
                ],
            )?;
            ipn(&n.ns, &["link", "set", NODE_IFACE, "up"])?;
            ipn(c, &["link", "set", &client_if, "up"])?;
            // Backbone link: `bb0` in the node, `cI` on the bridge.
            ip(&[
                "link",
                "add",
                "bb0",
                "netns",
                &n.ns,
                "type",
                "veth",
                "peer",
                "name",
                &bridge_port,
                "netns",
                b,
            ])?;
            let bb_addr = format!("{}/24", n.backbone_addr);
            ipn(&n.ns, &["addr", "add", &bb_addr, "dev", "bb0"])?;
            ipn(b, &["link", "set", &bridge_port, "master", "br0"])?;
            ipn(&n.ns, &["link", "set", "bb0", "up"])?;
            ipn(b, &["link", "set", &bridge_port, "up"])?;
            // The service address, and the way back to the client.
            ipn(
                &n.ns,
                &["addr", "add", &format!("{SERVICE}/32"), "dev", "lo"],
            )?;
            ipn(
                &n.ns,
                &[
                    "route",
                    "add",
                    &format!("{CLIENT}/32"),
                    "via",
                    &n.gateway.to_string(),
                ],
            )?;
            ecmp.extend(
                [
                    "nexthop",
                    "via",
                    &n.addr.to_string(),
                    "dev",
                    &client_if,
                    "weight",
                    "1",
                ]
                .map(String::from),
            );
        }
        let ecmp: Vec<&str> = ecmp.iter().map(String::as_str).collect();
        ipn(c, &ecmp)?;
        Ok(())
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The service address.
    pub fn service(&self) -> IpAddr {
        IpAddr::V4(SERVICE)
    }

    /// The client's source address.
    pub fn client_addr(&self) -> IpAddr {
        IpAddr::V4(CLIENT)
    }

    /// The backbone's address (etcd and the upstream server listen there).
    pub fn backbone_addr(&self) -> IpAddr {
        IpAddr::V4(BACKBONE)
    }

    /// Runs `f` on a thread inside the client namespace.
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        netns::run(&self.client_ns, f)
    }

    /// Runs `argv` in the client namespace under `timeout -k 2 SECS`.
    pub fn client_output(&self, argv: &[&str], secs: u32) -> Result<CmdOutput> {
        netns::output(&self.client_ns, argv, secs)
    }

    /// `ip netns exec BACKBONE`: add the program and its arguments.
    pub fn backbone_command(&self) -> std::process::Command {
        netns::command(&self.backbone_ns)
    }

    /// Sends the client's `proto` (tcp, udp) traffic for the service address's `port`
    /// straight to the backbone instead of the nodes (a policy route in the client), and
    /// gives the backbone the service address so a server there accepts it: how a test
    /// reaches an NFS server that sits behind the MOUNT nodes under the same address.
    pub fn bypass_to_backbone(&self, proto: &str, port: u16) -> Result<()> {
        let (c, b) = (self.client_ns.as_str(), self.backbone_ns.as_str());
        let service = format!("{SERVICE}/32");
        ipn(b, &["addr", "add", &service, "dev", "lo"])?;
        ipn(
            c,
            &[
                "route",
                "add",
                &service,
                "via",
                "10.79.2.2",
                "dev",
                "bb",
                "src",
                &CLIENT.to_string(),
                "table",
                "100",
            ],
        )?;
        ipn(
            c,
            &[
                "rule",
                "add",
                "to",
                &service,
                "ipproto",
                proto,
                "dport",
                &port.to_string(),
                "lookup",
                "100",
                "pref",
                "100",
            ],
        )
    }
}

impl Drop for Ecmp {
    fn drop(&mut self) {
        // Nodes first (their daemons detach XDP), then the client and the backbone.
        let mut all = self.all_ns();
        all.rotate_left(2);
        for ns in all {
            netns::delete(&ns);
        }
    }
}
