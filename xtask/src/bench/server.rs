//! Starting and stopping one server under test (xdp-mountd or Ganesha) in the server
//! namespace, each with its own rpcbind in a private mount namespace. The process, the
//! private /run and rpcbind are the test bed's ([`testbed::Process`],
//! [`testbed::PrivateMounts`]); what is here is how the bench and the demo use them.
use anyhow::{bail, Context, Result};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed::mounts::KeepDir;
use testbed::{PrivateMounts, PrivateRpcbind, Process, Spawn};

use super::Interrupt;

/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// A running server: the `ip netns exec` child (which execs into the server itself) and
/// its rpcbind, all in one process group of their own. Stopped on drop.
pub struct Server {
    process: Process,
}

/// How to start one server.
pub struct Launch<'a> {
    /// For messages and the log file name.
    pub name: &'a str,
    /// The server namespace.
    pub netns: &'a str,
    /// The address rpcbind listens on.
    pub rpcbind_addr: IpAddr,
    /// The server's command line (program first).
    pub argv: Vec<String>,
    /// Where stdout+stderr go.
    pub log: PathBuf,
    /// Keep the host's /run/xdp-mountd under the private /run, so that `xdp-mountd stats`
    /// run from the host finds the daemon's stats socket (the demo). The bench leaves it
    /// private: it may run beside the demo, on the same port.
    pub share_stats_dir: bool,
}

/// Where xdp-mountd puts its stats socket by default (`/run/xdp-mountd/PORT.sock`).
const STATS_DIR: &str = "/run/xdp-mountd";

impl Server {
    /// Start rpcbind and then the server, both in the server namespace with a private /run
    /// (rpcbind's socket and lock files live there, shared by all network namespaces).
    pub fn start(l: Launch<'_>) -> Result<Self> {
        let mounts = PrivateMounts {
            tmpfs_run: true,
            // The host's stats directory is bind-mounted aside before the tmpfs hides it,
            // then moved back in (propagation is private: none of this reaches the host).
            keep_run_dir: l.share_stats_dir.then(|| KeepDir {
                dir: STATS_DIR.into(),
                aside: l.log.with_extension("run-aside"),
            }),
            // rpcbind -f stays in our process group, so stopping the group stops it too.
            rpcbind: Some(PrivateRpcbind {
                addrs: vec![l.rpcbind_addr],
                pidfile: None,
            }),
            ..Default::default()
        };
        let mut cmd = testbed::netns::command(l.netns);
        cmd.args(mounts.wrap()).args(&l.argv);
        let process = Process::spawn(
            cmd,
            Spawn {
                name: l.name.to_string(),
                log: Some(l.log),
                capture_stdout: false,
                // Own process group: a terminal Ctrl-C reaches only xtask, which stops
                // servers in order (a daemon must detach its XDP program).
                own_group: true,
            },
        )?;
        Ok(Server { process })
    }

    /// Its pid (after the namespace wrappers exec'd into it, the server itself).
    pub fn pid(&self) -> libc::pid_t {
        self.process.pid()
    }

    /// Where its output goes.
    pub fn log(&self) -> &Path {
        self.process.log_path().unwrap_or(Path::new("/dev/null"))
    }

    /// Fail with the log's tail if the server has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.process.check_alive()
    }

    /// Wait until `ready()` holds (the server answers), polling; bounded by `limit`.
    pub fn wait_ready(
        &mut self,
        limit: Duration,
        stop: &Interrupt,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        self.process
            .wait_until(limit, Duration::from_millis(200), || {
                stop.check()?;
                Ok(ready())
            })
    }

    /// SIGTERM the server, wait up to 10 s, then stop the rest of its group (rpcbind);
    /// SIGKILL whatever is left. Errors if the server had to be killed.
    pub fn stop(&mut self) -> Result<()> {
        let stopped = self.process.stop(libc::SIGTERM, STOP_WITHIN);
        self.process.stop_group();
        stopped.map(drop)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("xtask bench: {e:#}");
        }
    }
}

/// What `xdp-mountd stats --json` says through stats socket `socket` (the bench's view of
/// a running daemon's counters).
pub fn stats_json(bin: &Path, socket: &Path) -> Result<serde_json::Value> {
    let out = std::process::Command::new(bin)
        .args(["stats", "--json", "--socket"])
        .arg(socket)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running xdp-mountd stats")?;
    if !out.status.success() {
        bail!(
            "xdp-mountd stats --socket {}: {}",
            socket.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing xdp-mountd stats --json")
}
