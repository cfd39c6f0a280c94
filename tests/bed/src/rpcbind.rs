//! A private rpcbind that several processes share: it runs in a namespace's private
//! mount namespace (a tmpfs /run, see [`crate::mounts`]), and the processes of the test
//! (NFS-Ganesha, a gateway daemon, rpcinfo) enter that mount namespace with nsenter, so
//! they all meet in its socket. Stopped on drop.
//!
//! When only one daemon needs an rpcbind, [`crate::PrivateRpcbind`] starts it inside the
//! daemon's own private mount namespace instead, with no process to enter.

use anyhow::{bail, Context, Result};
use std::net::IpAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::mounts::{enter_mounts_of, PrivateMounts};
use crate::netns;
use crate::process::{Process, Spawn};

/// How long a fresh rpcbind may take to answer.
const START_WITHIN: Duration = Duration::from_secs(10);
/// Bound of each command run beside it ([`Rpcbind::run`]).
const RUN_SECS: &str = "20";

/// A running private rpcbind; see the module documentation.
pub struct Rpcbind {
    ns: String,
    process: Process,
}

impl Rpcbind {
    /// Starts rpcbind in namespace `ns`, listening for UDP on `addrs` (and loopback), and
    /// waits (10 s at most) until it answers `rpcinfo -p 127.0.0.1` beside it.
    pub fn start(ns: &str, addrs: &[IpAddr]) -> Result<Rpcbind> {
        if addrs.is_empty() {
            bail!("rpcbind needs an address to listen on");
        }
        let mounts = PrivateMounts {
            tmpfs_run: true,
            ..Default::default()
        };
        let mut cmd = netns::command(ns);
        cmd.args(mounts.wrap()).args(["rpcbind", "-f", "-w"]);
        for a in addrs {
            cmd.arg("-h").arg(a.to_string());
        }
        let mut process = Process::spawn(
            cmd,
            Spawn {
                name: "rpcbind".into(),
                log: None,
                capture_stdout: false,
                own_group: false,
            },
        )?;
        let pid = process.pid().unsigned_abs();
        process.wait_until(START_WITHIN, Duration::from_millis(50), || {
            Ok(beside(ns, pid, &["rpcinfo", "-p", "127.0.0.1"])?
                .status
                .success())
        })?;
        Ok(Rpcbind {
            ns: ns.to_string(),
            process,
        })
    }

    /// The pid whose mount namespace the others enter.
    pub fn pid(&self) -> u32 {
        self.process.pid().unsigned_abs()
    }

    /// `ip netns exec NS nsenter --mount=…`: add a command to run it beside rpcbind.
    pub fn command(&self) -> Command {
        let mut cmd = netns::command(&self.ns);
        cmd.args(enter_mounts_of(self.pid()));
        cmd
    }

    /// Runs `argv` beside rpcbind (same network and mount namespace) under
    /// `timeout -k 2 20`, stdin closed.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        beside(&self.ns, self.pid(), argv)
    }
}

/// Runs `argv` in namespace `ns` and the mount namespace of `pid`, bounded.
fn beside(ns: &str, pid: u32, argv: &[&str]) -> Result<Output> {
    netns::command(ns)
        .args(enter_mounts_of(pid))
        .args(["timeout", "-k", "2", RUN_SECS])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {argv:?} beside rpcbind in {ns}"))
}
