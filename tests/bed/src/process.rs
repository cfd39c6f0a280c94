//! A child process under test: spawned with its output in a log file (and optionally its
//! stdout captured), waited for until it prints READY, stopped with a signal and a bound
//! on every wait, and stopped on drop (SIGTERM, 3 s, SIGKILL), also when a test panics.
//!
//! xdp-mountd prints READY on stdout once it serves; a stand-in in a self-test does the
//! same. Captured stdout is drained by a thread for the whole life of the process, so a
//! daemon never blocks on a full pipe; READY is seen the moment it is printed. Without
//! capture, READY is looked for in the log file (the demo follows that file itself).
//!
//! A process can get a process group of its own: a terminal's Ctrl-C then reaches only
//! the tool that started it (which stops it in order: a daemon must detach its XDP
//! program), and whatever it started (an rpcbind beside it) is stopped with the group.
//! Polling with short sleeps was chosen over SIGCHLD handling: this is a library inside
//! test processes and xtask, where installing a signal handler is not ours to do.

use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The word a daemon prints (in a line of its own) once it serves.
pub const READY: &str = "READY";
/// How long [`Process`]'s drop waits after SIGTERM before SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(3);

/// How to start a [`Process`].
#[derive(Clone, Debug)]
pub struct Spawn {
    /// For messages.
    pub name: String,
    /// Where stderr goes, and stdout too unless captured; None: both to /dev/null.
    pub log: Option<PathBuf>,
    /// Capture stdout (READY is looked for there) instead of sending it to the log.
    pub capture_stdout: bool,
    /// Start it in a process group of its own; stopping it then stops the group.
    pub own_group: bool,
}

impl Spawn {
    /// A process named `name`, output to `log`, stdout captured, in the caller's group.
    pub fn new(name: &str, log: impl Into<PathBuf>) -> Spawn {
        Spawn {
            name: name.to_string(),
            log: Some(log.into()),
            capture_stdout: true,
            own_group: false,
        }
    }
}

/// A running (or finished) child; see the module documentation.
pub struct Process {
    name: String,
    child: Child,
    pid: libc::pid_t,
    status: Option<ExitStatus>,
    own_group: bool,
    log: Option<PathBuf>,
    stdout: Option<Arc<Mutex<String>>>,
    ready_rx: Option<Receiver<()>>,
    ready: bool,
}

impl Process {
    /// Spawns `cmd` (stdin closed) as `how` says.
    pub fn spawn(mut cmd: Command, how: Spawn) -> Result<Process> {
        cmd.stdin(Stdio::null());
        match &how.log {
            Some(path) => {
                let file =
                    File::create(path).with_context(|| format!("creating {}", path.display()))?;
                if !how.capture_stdout {
                    cmd.stdout(file.try_clone()?);
                }
                cmd.stderr(file);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        if how.capture_stdout {
            cmd.stdout(Stdio::piped());
        }
        if how.own_group {
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}: {cmd:?}", how.name))?;
        let pid = match libc::pid_t::try_from(child.id()) {
            Ok(pid) => pid,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{}: pid {} out of range", how.name, child.id());
            }
        };
        let (stdout, ready_rx) = match child.stdout.take() {
            Some(out) => {
                let (buf, rx) = drain(out);
                (Some(buf), Some(rx))
            }
            None => (None, None),
        };
        Ok(Process {
            name: how.name,
            child,
            pid,
            status: None,
            own_group: how.own_group,
            log: how.log,
            stdout,
            ready_rx,
            ready: false,
        })
    }

    /// Its name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its pid (the host's pid namespace).
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The log file, if any.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Everything in the log file so far ("" without one).
    pub fn log(&self) -> String {
        self.log
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Everything it printed on the captured stdout so far ("" when not captured).
    pub fn stdout(&self) -> String {
        self.stdout
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Whether it has printed READY, waiting up to `wait` for it on captured stdout.
    fn ready_within(&mut self, wait: Duration) -> bool {
        if !self.ready {
            self.ready = match &self.ready_rx {
                Some(rx) => match rx.recv_timeout(wait) {
                    Ok(()) => true,
                    Err(RecvTimeoutError::Timeout) => false,
                    Err(RecvTimeoutError::Disconnected) => {
                        // stdout closed: all it printed is in the buffer.
                        std::thread::sleep(wait);
                        false
                    }
                },
                None => {
                    let seen = self.log().lines().any(|l| l.contains(READY));
                    if !seen {
                        std::thread::sleep(wait);
                    }
                    seen
                }
            };
        }
        self.ready
    }

    /// Whether it has printed READY (on captured stdout, else in the log).
    pub fn is_ready(&mut self) -> bool {
        self.ready_within(Duration::ZERO)
    }

    /// Its exit status once it has exited (reaped here; cached).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// What it printed, for error messages: captured stdout and the whole log, or the
    /// log's last 20 lines.
    pub fn report(&self) -> String {
        if self.stdout.is_some() {
            format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.log())
        } else {
            match &self.log {
                Some(p) => format!("log {}:\n{}", p.display(), tail(p, 20)),
                None => "(no log)".to_string(),
            }
        }
    }

    /// Fails, quoting its output, if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.exit_status() {
            Some(st) => bail!("{} exited early ({st}); {}", self.name, self.report()),
            None => Ok(()),
        }
    }

    /// Waits up to `limit` for READY; fails (quoting its output) when it exits first or
    /// the time is up. It keeps running in the latter case (drop or stop it).
    pub fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.ready_within(Duration::from_millis(50)) {
                return Ok(());
            }
            if let Some(st) = self.exit_status() {
                bail!(
                    "{} exited ({st}) before {READY}\n{}",
                    self.name,
                    self.report()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} printed no {READY} within {limit:?}\n{}",
                    self.name,
                    self.report()
                );
            }
        }
    }

    /// Polls `ready` every `every` until it holds; fails when it errs, when the process
    /// exits first, or after `limit` (quoting the process's output).
    pub fn wait_until(
        &mut self,
        limit: Duration,
        every: Duration,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            if ready()? {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("{} not ready after {limit:?}; {}", self.name, self.report());
            }
            std::thread::sleep(every);
        }
    }

    /// Sends `sig` to it (not to its group); nothing once it is known to have exited.
    pub fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) has no memory effects; our own child, not yet reaped.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Waits up to `limit` for it to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.exit_status() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (if it still runs) and reap; its status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Sends `sig` and waits up to `grace` for it to exit; its status. If it does not
    /// exit in time it is killed (SIGKILL) and this fails. Its group is left alone
    /// (see [`Process::stop_group`]).
    pub fn stop(&mut self, sig: i32, grace: Duration) -> Result<ExitStatus> {
        if let Some(st) = self.exit_status() {
            return Ok(st);
        }
        self.signal(sig);
        if let Some(st) = self.wait_exit(grace) {
            return Ok(st);
        }
        self.kill();
        Err(anyhow!(
            "{} did not exit within {grace:?} of signal {sig}; killed",
            self.name
        ))
    }

    /// With a group of its own: SIGTERM to the whole group, up to 3 s for it to go, then
    /// SIGKILL (what the process started beside itself, e.g. rpcbind). Else nothing.
    pub fn stop_group(&self) {
        if !self.own_group {
            return;
        }
        // SAFETY: kill(2) on the process group this bed created; ESRCH when gone is fine.
        if unsafe { libc::kill(-self.pid, libc::SIGTERM) } != 0 {
            return;
        }
        let deadline = Instant::now() + DROP_GRACE;
        while Instant::now() < deadline {
            if !group_alive(self.pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
    }
}

/// Whether process group `pgid` has a member that is not a zombie. Zombies count as
/// gone: where pid 1 does not reap orphans (some containers), they never leave.
pub fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only probes whether the group has members.
    if unsafe { libc::kill(-pgid, 0) } != 0 {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    dir.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // "PID (COMM) STATE PPID PGRP …"; COMM may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|g| g.parse::<libc::pid_t>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.alive() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(DROP_GRACE).is_none() {
                self.kill();
            }
        }
        self.stop_group();
    }
}

/// Drains `out` on a thread of its own into a buffer; the receiver hears once, when a
/// line with READY has been read.
fn drain(out: impl std::io::Read + Send + 'static) -> (Arc<Mutex<String>>, Receiver<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut told = false;
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            {
                let mut b = sink.lock().unwrap_or_else(|e| e.into_inner());
                b.push_str(&line);
                b.push('\n');
            }
            if !told && line.contains(READY) {
                let _ = tx.send(());
                told = true;
            }
        }
    });
    (buf, rx)
}

/// Waits up to `limit` for `child` to exit; true when it has (or cannot be waited for).
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

/// The last `n` lines of a file ("" when unreadable), for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    fn log(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("testbed-{}-{name}.log", std::process::id()))
    }

    #[test]
    fn ready_on_stdout_then_stop_with_a_signal() {
        let script = "trap 'echo bye >&2; exit 0' TERM; echo hello; echo READY; \
                      while :; do sleep 0.05; done";
        let path = log("ready");
        let mut p = Process::spawn(sh(script), Spawn::new("stand-in", &path)).unwrap();
        p.wait_ready(Duration::from_secs(10)).unwrap();
        assert!(p.stdout().contains("hello\nREADY\n"));
        assert!(p.alive());
        let st = p.stop(libc::SIGTERM, Duration::from_secs(10)).unwrap();
        assert_eq!(st.code(), Some(0));
        assert!(p.log().contains("bye"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn exit_before_ready_is_reported_with_the_output() {
        let path = log("early");
        let mut p = Process::spawn(
            sh("echo 'no exports file' >&2; exit 3"),
            Spawn::new("stand-in", &path),
        )
        .unwrap();
        let err = p.wait_ready(Duration::from_secs(10)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("exited") && msg.contains("no exports file"),
            "{msg}"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn silence_is_bounded_and_a_stubborn_process_is_killed() {
        let path = log("silent");
        let mut p = Process::spawn(
            sh("trap '' TERM; while :; do sleep 0.05; done"),
            Spawn::new("stand-in", &path),
        )
        .unwrap();
        let err = p.wait_ready(Duration::from_millis(200)).unwrap_err();
        assert!(format!("{err}").contains("no READY within"), "{err}");
        let err = p
            .stop(libc::SIGTERM, Duration::from_millis(200))
            .unwrap_err();
        assert!(format!("{err}").contains("killed"), "{err}");
        assert!(!p.alive());
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn ready_in_the_log_and_the_group_is_stopped() {
        let path = log("group");
        let how = Spawn {
            capture_stdout: false,
            own_group: true,
            ..Spawn::new("stand-in", &path)
        };
        // A helper beside it in its group, as rpcbind is beside a daemon.
        let mut p = Process::spawn(
            sh("sleep 60 & echo READY; while :; do sleep 0.05; done"),
            how,
        )
        .unwrap();
        p.wait_ready(Duration::from_secs(10)).unwrap();
        let pgid = p.pid();
        drop(p);
        assert!(!group_alive(pgid), "the group outlived its process");
        let _ = std::fs::remove_file(path);
    }
}
