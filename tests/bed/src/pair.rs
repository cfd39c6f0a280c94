//! Two network namespaces joined by a veth pair, each end with an IPv4 (/24) and an IPv6
//! (/64, no duplicate address detection) address and loopback up; removed on drop, also
//! when a test panics.
//!
//! Names are the caller's: fixed ones (the demo's `xmd-demo-srv`, which a user may type)
//! or process-unique ones from [`unique_names`] (`xmd-PID-K-s` / `-c`), which tests use
//! to run in parallel. A namespace of either kind that already exists when a pair is
//! created is a leftover of a run killed hard (SIGKILL: no Drop ran) and is removed
//! first; unique ones whose process is gone are also swept once per process, whatever
//! their K, so a killed test run does not leave namespaces behind for good.
//!
//! At most `XMD_E2E_MAX_PAIRS` (default 6) pairs exist at once per process, so that
//! `--test-threads` on a big machine cannot exhaust a 2-CPU VM; creating one more waits.
//! (The variable kept the name it had when only the e2e suite had the cap.)

use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, Once};

use crate::netns::{self, ip, CmdOutput};

/// Prefix of every namespace name from [`unique_names`] (and of the fixed ones xtask uses).
pub const NS_PREFIX: &str = "xmd-";

/// One end of a pair: its namespace, its veth interface and that interface's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// Namespace name.
    pub ns: String,
    /// The veth end inside that namespace.
    pub ifname: String,
    /// IPv4 address (a /24 is configured).
    pub v4: Ipv4Addr,
    /// IPv6 address (a /64 is configured).
    pub v6: Ipv6Addr,
}

impl End {
    /// Its IPv6 address if `v6`, else its IPv4 address.
    pub fn addr(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.v6)
        } else {
            IpAddr::V4(self.v4)
        }
    }

    /// Runs `f` on a thread inside this namespace (see [`netns::run`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        netns::run(&self.ns, f)
    }

    /// `ip netns exec NS`: add the program and its arguments.
    pub fn command(&self) -> Command {
        netns::command(&self.ns)
    }

    /// Runs `argv` in this namespace under `timeout -k 2 SECS`; its output.
    pub fn output(&self, argv: &[&str], secs: u32) -> Result<CmdOutput> {
        netns::output(&self.ns, argv, secs)
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.ns.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Adds another address (CIDR, e.g. "10.77.1.10/24") to the veth end, usable at once.
    pub fn add_addr(&self, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", &self.ifname, "nodad"])
    }

    /// Sets the MTU of the veth end.
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.ip(&["link", "set", &self.ifname, "mtu", &mtu.to_string()])
    }
}

/// What [`Pair::create`] makes.
#[derive(Clone, Debug)]
pub struct PairSpec {
    /// The server end.
    pub server: End,
    /// The client end.
    pub client: End,
    /// RX/TX queues per veth end (0 or 1: the kernel default, one).
    pub queues: u32,
}

/// Namespace names unique in this process, in the pattern the stale sweep knows.
#[derive(Clone, Debug)]
pub struct UniqueNames {
    /// K: 0, 1, 2, … per call in this process (callers derive subnets from it).
    pub k: u32,
    /// `xmd-PID-K-s`.
    pub server_ns: String,
    /// `xmd-PID-K-c`.
    pub client_ns: String,
}

/// The next pair of unique namespace names (`xmd-PID-K-s`, `xmd-PID-K-c`).
pub fn unique_names() -> UniqueNames {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    UniqueNames {
        k,
        server_ns: format!("{NS_PREFIX}{pid}-{k}-s"),
        client_ns: format!("{NS_PREFIX}{pid}-{k}-c"),
    }
}

/// The pid in a unique name (`xmd-PID-…`), if it is one.
fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix(NS_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Deletes `xmd-PID-*` namespaces of processes that no longer exist (killed with
/// SIGKILL, so their Drop never ran). Runs once per process, before its first pair.
pub fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir(netns::RUN_NETNS) else {
        return;
    };
    let me = std::process::id() as i32;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid != me && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            netns::delete(&name);
        }
    }
}

/// The per-process cap: pairs alive now, and a wake-up for those waiting.
struct Cap {
    used: Mutex<usize>,
    freed: Condvar,
}

static CAP: Cap = Cap {
    used: Mutex::new(0),
    freed: Condvar::new(),
};

/// The cap (env XMD_E2E_MAX_PAIRS, default 6; at least 1).
fn cap_limit() -> usize {
    std::env::var("XMD_E2E_MAX_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6usize)
        .max(1)
}

/// A place under the cap, given back on drop (an ECMP bed takes one too).
pub(crate) struct Permit;

impl Permit {
    /// Waits until fewer than the cap's pairs exist, then takes a place.
    pub(crate) fn acquire() -> Permit {
        let mut used = CAP.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= cap_limit() {
            used = CAP.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Permit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut used = CAP.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(1);
        CAP.freed.notify_one();
    }
}

/// The live pair; dropping it stops what still runs in its namespaces and removes them.
pub struct Pair {
    spec: PairSpec,
    _permit: Permit,
}

/// [`sweep_stale`], the first time any bed of this process is created.
pub(crate) fn sweep_stale_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_stale);
}

impl Pair {
    /// Creates the pair: sweeps stale namespaces (once per process), waits for a place
    /// under the cap, removes leftovers of the same names, then builds it. On an error
    /// half-way, what was made is removed.
    pub fn create(spec: PairSpec) -> Result<Pair> {
        sweep_stale_once();
        let permit = Permit::acquire();
        for end in [&spec.server, &spec.client] {
            netns::delete(&end.ns);
        }
        // From here on Drop removes whatever part was made.
        let pair = Pair {
            spec,
            _permit: permit,
        };
        pair.build()?;
        Ok(pair)
    }

    fn build(&self) -> Result<()> {
        let (srv, cli) = (&self.spec.server, &self.spec.client);
        ip(&["netns", "add", &srv.ns]).context("creating a network namespace (needs root)")?;
        ip(&["netns", "add", &cli.ns])?;
        // The ends are created inside the namespaces: no name clash in the host's.
        let q = self.spec.queues.to_string();
        let queues: &[&str] = if self.spec.queues > 1 {
            &["numrxqueues", &q, "numtxqueues", &q]
        } else {
            &[]
        };
        let mut link = vec!["link", "add", &srv.ifname, "netns", &srv.ns];
        link.extend_from_slice(queues);
        link.extend([
            "type",
            "veth",
            "peer",
            "name",
            &cli.ifname,
            "netns",
            &cli.ns,
        ]);
        link.extend_from_slice(queues);
        ip(&link)?;
        for end in [srv, cli] {
            end.ip(&["link", "set", "lo", "up"])?;
            end.ip(&["addr", "add", &format!("{}/24", end.v4), "dev", &end.ifname])?;
            // nodad: the address is usable at once, no DAD wait.
            let v6 = format!("{}/64", end.v6);
            end.ip(&["addr", "add", &v6, "dev", &end.ifname, "nodad"])?;
            end.ip(&["link", "set", &end.ifname, "up"])?;
        }
        Ok(())
    }

    /// The server end.
    pub fn server(&self) -> &End {
        &self.spec.server
    }

    /// The client end.
    pub fn client(&self) -> &End {
        &self.spec.client
    }

    /// What it was made from.
    pub fn spec(&self) -> &PairSpec {
        &self.spec
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for end in [&self.spec.server, &self.spec.client] {
            netns::delete(&end.ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_carry_the_pid_the_sweep_reads() {
        let a = unique_names();
        let b = unique_names();
        assert_ne!(a.k, b.k);
        let me = std::process::id() as i32;
        assert_eq!(owner_pid(&a.server_ns), Some(me));
        assert_eq!(owner_pid(&b.client_ns), Some(me));
        assert!(a.server_ns.ends_with("-s") && a.client_ns.ends_with("-c"));
    }

    #[test]
    fn fixed_names_are_not_swept() {
        assert_eq!(owner_pid("xmd-demo-srv"), None);
        assert_eq!(owner_pid("xmd-bench-cli"), None);
        assert_eq!(owner_pid("other-123-0-s"), None);
        assert_eq!(owner_pid("xmd-123-probe"), Some(123));
    }
}
