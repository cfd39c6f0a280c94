//! A pair of network namespaces joined by a veth pair, for the demo and the bench.
//! Created by [`NetPair::create`]; removed (and anything left running in them killed) on drop.
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::run_checked;

/// Names and addresses of a namespace pair: the server end and the client end.
#[derive(Debug, Clone, Copy)]
pub struct NetSpec {
    /// Server namespace name.
    pub server_ns: &'static str,
    /// Client namespace name.
    pub client_ns: &'static str,
    /// The veth end inside the server namespace.
    pub server_if: &'static str,
    /// The veth end inside the client namespace.
    pub client_if: &'static str,
    /// Server IPv4 address (a /24 is configured).
    pub server_v4: &'static str,
    /// Client IPv4 address.
    pub client_v4: &'static str,
    /// Server IPv6 address (a /64 is configured).
    pub server_v6: &'static str,
    /// Client IPv6 address.
    pub client_v6: &'static str,
    /// RX/TX queues per veth end (1 = the kernel default).
    pub queues: u32,
}

/// The live pair; dropping it removes both namespaces.
pub struct NetPair {
    spec: NetSpec,
}

impl NetPair {
    /// Create the pair, removing leftovers of an earlier run killed hard.
    pub fn create(spec: NetSpec) -> Result<Self> {
        remove_namespaces(&[spec.server_ns, spec.client_ns]);
        // From here on, a failure half-way still removes what was made (Drop).
        let pair = NetPair { spec };
        let ip = |args: &[&str]| run_checked(Command::new("ip").args(args));
        ip(&["netns", "add", spec.server_ns]).context("creating namespaces needs root")?;
        ip(&["netns", "add", spec.client_ns])?;
        let q = spec.queues.max(1).to_string();
        let mut link = vec!["link", "add", spec.server_if, "netns", spec.server_ns];
        if spec.queues > 1 {
            link.extend(["numrxqueues", &q, "numtxqueues", &q]);
        }
        link.extend(["type", "veth", "peer", "name", spec.client_if]);
        link.extend(["netns", spec.client_ns]);
        if spec.queues > 1 {
            link.extend(["numrxqueues", &q, "numtxqueues", &q]);
        }
        ip(&link)?;
        for (ns, dev, v4, v6) in [
            (
                spec.server_ns,
                spec.server_if,
                spec.server_v4,
                spec.server_v6,
            ),
            (
                spec.client_ns,
                spec.client_if,
                spec.client_v4,
                spec.client_v6,
            ),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            let v6 = format!("{v6}/64");
            ip(&["-n", ns, "addr", "add", &v6, "dev", dev, "nodad"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        remove_namespaces(&[self.spec.server_ns, self.spec.client_ns]);
    }
}

/// Kill whatever still runs in these namespaces (only processes we started can be there),
/// then delete them.
pub(crate) fn remove_namespaces(names: &[&str]) {
    for &ns in names {
        if !Path::new("/run/netns").join(ns).exists() {
            continue;
        }
        for signal in [libc::SIGTERM, libc::SIGKILL] {
            let pids = pids_in(ns);
            if pids.is_empty() {
                break;
            }
            for pid in &pids {
                // SAFETY: plain kill(2) on a pid living in a namespace this tool created.
                unsafe { libc::kill(*pid, signal) };
            }
            for _ in 0..30 {
                if pids_in(ns).is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}

/// Pids of the processes in namespace `ns` (`ip netns pids`).
fn pids_in(ns: &str) -> Vec<libc::pid_t> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
