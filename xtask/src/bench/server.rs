//! Starting and stopping one server under test (xdp-mountd or Ganesha) in the server
//! namespace, each with its own rpcbind in a private mount namespace.
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Interrupt;

/// A running server: the `ip netns exec` child (which execs into the server itself) and
/// its rpcbind, all in one process group of their own. Stopped on drop.
pub struct Server {
    child: Option<Child>,
    pgid: libc::pid_t,
    /// Where its output goes, quoted when it fails.
    pub log: PathBuf,
    /// What it is, for messages.
    pub name: String,
}

/// How to start one server.
pub struct Launch<'a> {
    /// For messages and the log file name.
    pub name: &'a str,
    /// The server namespace.
    pub netns: &'a str,
    /// The address rpcbind listens on.
    pub rpcbind_addr: &'a str,
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

/// Quote `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Server {
    /// Start rpcbind and then the server, both in the server namespace with a private /run
    /// (rpcbind's socket and lock files live there, shared by all network namespaces).
    pub fn start(l: Launch<'_>) -> Result<Self> {
        let addr = sh_quote(l.rpcbind_addr);
        let cmd: Vec<String> = l.argv.iter().map(|a| sh_quote(a)).collect();
        // The host's stats directory is bind-mounted aside before the tmpfs hides it, then
        // moved back in (propagation is private, so none of this reaches the host).
        let private_run = if l.share_stats_dir {
            let aside = l.log.with_extension("run-aside");
            std::fs::create_dir_all(STATS_DIR)
                .and_then(|()| std::fs::create_dir_all(&aside))
                .with_context(|| format!("creating {STATS_DIR} and {}", aside.display()))?;
            let aside = sh_quote(&aside.display().to_string());
            format!(
                "mount --bind {STATS_DIR} {aside} && mount -t tmpfs tmpfs /run && \
                 mkdir -p /run/rpcbind {STATS_DIR} && mount --move {aside} {STATS_DIR}"
            )
        } else {
            "mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind".to_string()
        };
        // rpcbind -f stays in our process group, so stopping the group stops it too.
        let script = format!(
            "{private_run} || exit 97\n\
             rpcbind -f -w -h {addr} &\n\
             i=0; until rpcinfo -p {addr} >/dev/null 2>&1; do\n\
               i=$((i+1)); [ $i -gt 100 ] && {{ echo 'rpcbind did not start' >&2; exit 98; }}\n\
               sleep 0.05\n\
             done\n\
             exec {}",
            cmd.join(" ")
        );
        let out = File::create(&l.log).with_context(|| format!("creating {}", l.log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("ip")
            .args(["netns", "exec", l.netns, "unshare", "-m", "--propagation"])
            .args(["private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Own process group: a terminal Ctrl-C reaches only xtask, which stops
            // servers in order (a daemon must detach its XDP program).
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", l.name))?;
        let pgid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        Ok(Server {
            child: Some(child),
            pgid,
            log: l.log,
            name: l.name.to_string(),
        })
    }

    /// Fail with the log's tail if the server has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "{} exited early ({status}); log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
        }
        Ok(())
    }

    /// Wait until `ready()` holds (the server answers), polling; bounded by `limit`.
    pub fn wait_ready(
        &mut self,
        limit: Duration,
        stop: &Interrupt,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            stop.check()?;
            if ready() {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!(
                    "{} not answering after {limit:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM the server, wait up to 10 s, then stop the rest of its group (rpcbind);
    /// SIGKILL whatever is left. Errors if the server had to be killed.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            kill_group(self.pgid);
            return Ok(());
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pgid, libc::SIGTERM) };
        let clean = wait_timeout(&mut child, Duration::from_secs(10));
        if !clean {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_group(self.pgid);
        if !clean {
            bail!("{} did not stop within 10 s of SIGTERM; killed", self.name);
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("xtask bench: {e}");
        }
    }
}

/// SIGTERM then SIGKILL the process group `pgid` (our server and its rpcbind).
fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill(2) on a process group this tool created; ESRCH when gone is fine.
    unsafe {
        if libc::kill(-pgid, libc::SIGTERM) != 0 {
            return;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        // SAFETY: signal 0 only probes for existence.
        if unsafe { libc::kill(-pgid, 0) } != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Wait for `child` up to `limit`; true when it exited.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The last `n` lines of a log file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
