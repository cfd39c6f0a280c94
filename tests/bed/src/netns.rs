//! One named network namespace (`ip netns`, a file under /run/netns): whether it exists,
//! the processes in it, its removal, and running code or commands inside it.
//!
//! Code runs inside on a thread of its own that `setns(CLONE_NEWNET)`s first ([`run`]):
//! setns changes only the calling thread, so the process and other tests running in
//! parallel stay where they are. The alternative, re-executing the test binary under
//! `ip netns exec` for each client, would lose closures and shared state. Commands do go
//! through `ip netns exec` ([`command`]), which also bind-mounts /etc/netns/NAME/* over
//! /etc for them (how a test gives a daemon its own /etc/hosts).

use anyhow::{bail, Context, Result};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where `ip netns` keeps its namespaces.
pub const RUN_NETNS: &str = "/run/netns";
/// Where `ip netns exec NAME` finds files to bind-mount over /etc.
pub const ETC_NETNS: &str = "/etc/netns";

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether namespace `ns` exists.
pub fn exists(ns: &str) -> bool {
    Path::new(RUN_NETNS).join(ns).exists()
}

/// Pids of the processes in namespace `ns` (`ip netns pids`); empty when it is gone.
pub fn pids(ns: &str) -> Vec<libc::pid_t> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Stops whatever still runs in `ns`: SIGTERM (a daemon detaches its XDP program), up to
/// `grace` to go, then SIGKILL and up to `grace` again. Only processes this test bed's
/// users started can be in their namespaces.
pub fn kill_all(ns: &str, grace: Duration) {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let found = pids(ns);
        if found.is_empty() {
            return;
        }
        for pid in found {
            // SAFETY: kill(2) has no memory effects; the pid lives in a namespace we made.
            unsafe { libc::kill(pid, signal) };
        }
        let deadline = Instant::now() + grace;
        while !pids(ns).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Removes namespace `ns` if it exists: stops its processes ([`kill_all`], 3 s grace),
/// deletes it and its /etc/netns/NAME directory. Errors are ignored (used by `Drop`).
pub fn delete(ns: &str) {
    if exists(ns) {
        kill_all(ns, Duration::from_secs(3));
        let _ = ip(&["netns", "del", ns]);
    }
    let _ = std::fs::remove_dir_all(Path::new(ETC_NETNS).join(ns));
}

/// Moves the calling thread into namespace `ns`, for good. For a thread that outlives a
/// call, e.g. a responder; otherwise use [`run`].
pub fn enter(ns: &str) -> Result<()> {
    let path = Path::new(RUN_NETNS).join(ns);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the fd is an open namespace file for the duration of the call;
    // CLONE_NEWNET changes only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "setns({}): {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Runs `f` on a thread inside namespace `ns` and returns its result. Sockets made there
/// stay in that namespace wherever they are used later. A panic in `f` is resumed here.
pub fn run<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        let handle = s.spawn(|| -> Result<T> {
            enter(ns)?;
            Ok(f())
        });
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// `ip netns exec NS`: add the program and its arguments.
pub fn command(ns: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    cmd
}

/// Runs `argv` in namespace `ns` under `timeout -k 2 SECS`, stdin closed; its output.
pub fn output(ns: &str, argv: &[&str], secs: u32) -> Result<CmdOutput> {
    let out = command(ns)
        .args(["timeout", "-k", "2", &secs.to_string()])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {argv:?} in {ns}"))?;
    Ok(out.into())
}

/// Output of a finished command, as text.
#[derive(Debug)]
pub struct CmdOutput {
    /// exit code (None when killed by a signal)
    pub code: Option<i32>,
    /// stdout as text
    pub stdout: String,
    /// stderr as text
    pub stderr: String,
}

impl From<Output> for CmdOutput {
    fn from(o: Output) -> Self {
        CmdOutput {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}
