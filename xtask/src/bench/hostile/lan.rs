//! The hostile section's network: three hosts on one Ethernet segment, each in its own
//! namespace, joined by a bridge in the bench's client namespace.
//!
//! The flooder and the victim need hosts of their own: storm's AF_XDP generator attaches
//! an XDP program to its interface that takes every UDP datagram from the MOUNT port, so
//! a victim sharing that interface would never see its replies. A bridge (not routing)
//! keeps all three on the server's veth, where the daemon's XDP program sees them alike.
//!
//! ```text
//!  xmd-bench-srv           xmd-bench-cli (bridge, 10.79.0.2)        xmd-bench-fld
//!  xmd-bench0 10.79.0.1 ── xmd-bench1 ┐                  ┌ xmd-bench-f0 ── xmd-bench-f1 10.79.1.2
//!                                     └─ xmd-bench-br ───┤                  xmd-bench-vic
//!                                                        └ xmd-bench-v0 ── xmd-bench-v1 10.81.2.2
//! ```
//!
//! The server and the bridge host are the bench's pair (same names and addresses, so
//! starting and checking a server works as in the comparison), except that the client end
//! `xmd-bench1` is a bridge port here and the bridge carries the client address.
//!
//! The segment is one /8 so flooder and victim sit in different /16s: a per-source rate
//! limit keyed by a prefix as short as /16 (`--rate-limit-v4-prefix 16`, which holds a
//! flood forged from one /16 to one limit; the default keys each address alone) must not
//! lump them together. Forged sources
//! ([`SPOOFED_NET`]) are configured nowhere; the server routes them via the flooder, as a
//! real server would send replies to them through its default route.
use anyhow::{Context, Result};
use std::process::Command;

use super::link::Framing;
use crate::run_checked;
use testbed::netns;
use testbed::pair::PairSpec;

/// One host on the segment besides the server.
pub struct Host {
    /// Its namespace.
    pub ns: &'static str,
    /// Its interface.
    pub iface: &'static str,
    /// The bridge port its interface is the peer of (in the bridge's namespace).
    pub port: &'static str,
    /// Its address.
    pub v4: &'static str,
}
/// The flooding host.
pub const FLOODER: Host = Host {
    ns: "xmd-bench-fld",
    iface: "xmd-bench-f1",
    port: "xmd-bench-f0",
    v4: "10.79.1.2",
};
/// The well-behaved client whose service is measured.
pub const VICTIM: Host = Host {
    ns: "xmd-bench-vic",
    iface: "xmd-bench-v1",
    port: "xmd-bench-v0",
    v4: "10.81.2.2",
};
/// How the server's veth counts bytes: the daemon's XDP program runs on it (received
/// frames counted without the Ethernet header); its peer, a bridge port, runs none (what
/// it sends is counted with the header).
pub const SERVER_FRAMING: Framing = Framing {
    rx_with_eth: false,
    tx_with_eth: true,
};
/// How the flooder's bridge port counts bytes: it runs no XDP program (received frames
/// counted with the header); its peer, the flooder's interface, runs storm's while a flood
/// runs (what it sends is counted without).
pub const FLOOD_PORT_FRAMING: Framing = Framing {
    rx_with_eth: true,
    tx_with_eth: false,
};
/// The network whose addresses the spoofed flood forges.
pub const SPOOFED_NET: &str = "10.80.0.0/16";
const BRIDGE: &str = "xmd-bench-br";
const PREFIX: u8 = 8;

/// The live segment; dropping it stops what runs in its namespaces and removes them.
pub struct Lan {
    namespaces: [String; 4],
}

impl Lan {
    /// Build it on the bench's pair of names and addresses (`net`), removing leftovers of
    /// an earlier run killed hard.
    pub fn create(net: &PairSpec) -> Result<Lan> {
        let lan = Lan {
            namespaces: [
                net.server.ns.clone(),
                net.client.ns.clone(),
                FLOODER.ns.into(),
                VICTIM.ns.into(),
            ],
        };
        lan.remove();
        // From here on, a failure half-way still removes what was made (Drop).
        let ip = |args: &[&str]| run_checked(Command::new("ip").args(args));
        for ns in &lan.namespaces {
            ip(&["netns", "add", ns]).context("creating namespaces needs root")?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (server, client) = (&net.server, &net.client);
        let bridge_ns = client.ns.as_str();
        ip(&["-n", bridge_ns, "link", "add", BRIDGE, "type", "bridge"])?;
        let ends = [
            (
                server.ns.as_str(),
                server.ifname.as_str(),
                client.ifname.as_str(),
            ),
            (FLOODER.ns, FLOODER.iface, FLOODER.port),
            (VICTIM.ns, VICTIM.iface, VICTIM.port),
        ];
        for (ns, iface, port) in ends {
            ip(&[
                "link", "add", iface, "netns", ns, "type", "veth", "peer", "name", port, "netns",
                bridge_ns,
            ])?;
            ip(&["-n", bridge_ns, "link", "set", port, "master", BRIDGE, "up"])?;
        }
        let hosts = [
            (
                server.ns.as_str(),
                server.ifname.as_str(),
                server.v4.to_string(),
                Some(server.v6.to_string()),
            ),
            (
                bridge_ns,
                BRIDGE,
                client.v4.to_string(),
                Some(client.v6.to_string()),
            ),
            (FLOODER.ns, FLOODER.iface, FLOODER.v4.into(), None),
            (VICTIM.ns, VICTIM.iface, VICTIM.v4.into(), None),
        ];
        for (ns, dev, v4, v6) in hosts {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/{PREFIX}"),
                "dev",
                dev,
            ])?;
            if let Some(v6) = v6 {
                let v6 = format!("{v6}/64");
                ip(&["-n", ns, "addr", "add", &v6, "dev", dev, "nodad"])?;
            }
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&[
            "-n",
            &server.ns,
            "route",
            "add",
            SPOOFED_NET,
            "via",
            FLOODER.v4,
        ])?;
        Ok(lan)
    }
}

impl Lan {
    /// Stops what runs in the namespaces and deletes them (those that exist).
    fn remove(&self) {
        for ns in &self.namespaces {
            netns::delete(ns);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}
