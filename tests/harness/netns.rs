//! Two network namespaces joined by a veth pair, torn down on drop (also on panic).
//!
//! Client-side sockets are created by running test code in a thread that has `setns`-ed
//! into the client namespace ([`NetPair::in_client`]): `setns(CLONE_NEWNET)` only affects the
//! calling thread, so the test process itself and other tests are untouched.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::time::Duration;

/// Prefix of every namespace we create; stale ones from dead test processes are swept.
pub const NS_PREFIX: &str = "xmd-";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// At most this many pairs exist at once per process (env XMD_E2E_MAX_PAIRS, default 6),
/// so `--test-threads` on a big machine cannot exhaust the 2-CPU VM.
struct Cap {
    used: Mutex<usize>,
    cv: Condvar,
}
static CAP: Cap = Cap {
    used: Mutex::new(0),
    cv: Condvar::new(),
};

fn cap_limit() -> usize {
    std::env::var("XMD_E2E_MAX_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn cap_acquire() {
    let mut used = CAP.used.lock().unwrap_or_else(|e| e.into_inner());
    while *used >= cap_limit() {
        used = CAP.cv.wait(used).unwrap_or_else(|e| e.into_inner());
    }
    *used += 1;
}

fn cap_release() {
    let mut used = CAP.used.lock().unwrap_or_else(|e| e.into_inner());
    *used -= 1;
    CAP.cv.notify_one();
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Deletes `xmd-PID-*` namespaces left behind by test processes that no longer exist
/// (killed with SIGKILL, so their Drop never ran).
fn sweep_stale() {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid != std::process::id() as i32 && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_ns_pids(&name);
            let _ = ip(&["netns", "del", &name]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&name));
        }
    }
}

fn kill_ns_pids(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain syscall; the pid is in a namespace only this harness creates.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Decides whether this test can run: root and a working `ip netns add`. Otherwise prints a
/// loud SKIPPED line — or panics when CI=true, where a skip counts as a failure.
pub fn can_run(test: &str) -> bool {
    static PROBE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    match PROBE.get_or_init(probe) {
        None => true,
        Some(why) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: cannot run in CI ({why}); end-to-end tests need root");
            }
            eprintln!("\n*** SKIPPED (needs root): {test} — {why} ***\n");
            false
        }
    }
}

/// None when we can create namespaces, else the reason we cannot.
fn probe() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        Some("not root".to_string())
    } else {
        let probe = format!("{NS_PREFIX}{}-probe", std::process::id());
        match ip(&["netns", "add", &probe]) {
            Ok(()) => {
                let _ = ip(&["netns", "del", &probe]);
                None
            }
            Err(e) => Some(format!("ip netns add failed: {e}")),
        }
    }
}

/// Output of a command run in the client namespace.
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

/// A server namespace and a client namespace joined by veth, with a scratch directory.
pub struct NetPair {
    /// Test name (for messages).
    pub test: String,
    /// Server namespace name.
    pub srv: String,
    /// Client namespace name.
    pub cli: String,
    /// Subnet index N: server 10.77.N.1 / fd77:N::1, client 10.77.N.2 / fd77:N::2 (N in hex there).
    pub n: u8,
    /// Scratch directory for exports files, rmtab, logs and captures.
    pub dir: PathBuf,
}

impl NetPair {
    /// Creates the pair, or returns None after printing SKIPPED (see [`can_run`]).
    pub fn new(test: &str) -> Option<NetPair> {
        if !can_run(test) {
            return None;
        }
        SWEEP.call_once(sweep_stale);
        cap_acquire();
        let c = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let n = (c % 250 + 1) as u8;
        let pair = NetPair {
            test: test.to_string(),
            srv: format!("{NS_PREFIX}{pid}-{c}-s"),
            cli: format!("{NS_PREFIX}{pid}-{c}-c"),
            n,
            dir: std::env::temp_dir().join(format!("xmd-e2e-{pid}-{c}-{test}")),
        };
        // From here on Drop cleans up whatever part was created.
        if let Err(e) = pair.setup() {
            panic!("{test}: setting up namespaces failed: {e:#}");
        }
        Some(pair)
    }

    fn setup(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        ip(&["netns", "add", &self.srv])?;
        ip(&["netns", "add", &self.cli])?;
        // Create the veth ends directly inside the namespaces: no name clash in the host ns.
        ip(&[
            "link", "add", "veth0", "netns", &self.srv, "type", "veth", "peer", "name", "veth1",
            "netns", &self.cli,
        ])?;
        let n = self.n;
        for (ns, dev, host) in [(&self.srv, "veth0", 1), (&self.cli, "veth1", 2)] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.77.{n}.{host}/24"),
                "dev",
                dev,
            ])?;
            // nodad: the address is usable at once, no DAD wait.
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("fd77:{n:x}::{host}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// Server IPv4 address.
    pub fn srv_v4(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, self.n, 1))
    }
    /// Client IPv4 address.
    pub fn cli_v4(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, self.n, 2))
    }
    /// Server IPv6 address.
    pub fn srv_v6(&self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfd77, self.n as u16, 0, 0, 0, 0, 0, 1))
    }
    /// Client IPv6 address.
    pub fn cli_v6(&self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0xfd77, self.n as u16, 0, 0, 0, 0, 0, 2))
    }
    /// Server address of the given family with a port.
    pub fn srv_addr(&self, v6: bool, port: u16) -> SocketAddr {
        SocketAddr::new(if v6 { self.srv_v6() } else { self.srv_v4() }, port)
    }
    /// The client address the server sees for the given family (mount list key).
    pub fn cli_ip(&self, v6: bool) -> IpAddr {
        if v6 {
            self.cli_v6()
        } else {
            self.cli_v4()
        }
    }

    /// Adds another address (CIDR, e.g. "10.77.N.10/24") to the server's veth.
    pub fn add_srv_addr(&self, cidr: &str) {
        ip(&[
            "-n", &self.srv, "addr", "add", cidr, "dev", "veth0", "nodad",
        ])
        .unwrap();
    }

    /// Adds another address (CIDR) to the client's veth.
    pub fn add_cli_addr(&self, cidr: &str) {
        ip(&[
            "-n", &self.cli, "addr", "add", cidr, "dev", "veth1", "nodad",
        ])
        .unwrap();
    }

    /// Sets the MTU of the client's veth (to force IP fragmentation of its datagrams).
    pub fn set_cli_mtu(&self, mtu: u32) {
        ip(&[
            "-n",
            &self.cli,
            "link",
            "set",
            "veth1",
            "mtu",
            &mtu.to_string(),
        ])
        .unwrap();
    }

    /// Gives processes started with `ip netns exec SRV` (the daemon) their own /etc/hosts:
    /// `ip netns exec` bind-mounts /etc/netns/SRV/* over /etc/*. Removed on drop.
    pub fn set_srv_hosts(&self, text: &str) {
        let d = Path::new("/etc/netns").join(&self.srv);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hosts"), text).unwrap();
    }

    /// Writes `files` (name, text) into the scratch directory's `etc/`, for
    /// [`crate::DaemonOpts::etc`]; returns that directory.
    pub fn private_etc(&self, files: &[(&str, &str)]) -> PathBuf {
        let d = self.dir.join("etc");
        std::fs::create_dir_all(&d).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        d
    }

    /// Writes a file in the scratch directory and returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs `f` on a thread inside the client namespace; panics propagate.
    pub fn in_client<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.in_ns(&self.cli.clone(), f)
    }

    /// Runs `f` on a thread inside the server namespace (e.g. to inspect sockets).
    pub fn in_server<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.in_ns(&self.srv.clone(), f)
    }

    fn in_ns<T: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        let h = std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: fd is a valid namespace file; CLONE_NEWNET affects only this thread.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// Runs a command in the client namespace under `timeout 20`.
    pub fn run_client(&self, cmd: &[&str]) -> CmdOutput {
        self.run_in(&self.cli, cmd, 20)
    }

    /// Runs a command in the server namespace under `timeout SECS`.
    pub fn run_server(&self, cmd: &[&str], secs: u32) -> CmdOutput {
        self.run_in(&self.srv, cmd, secs)
    }

    fn run_in(&self, ns: &str, cmd: &[&str], secs: u32) -> CmdOutput {
        let secs = secs.to_string();
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "-k", "2", &secs])
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        out.into()
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Anything still running in our namespaces was started by this test.
        kill_ns_pids(&self.srv);
        kill_ns_pids(&self.cli);
        std::thread::sleep(Duration::from_millis(10));
        let _ = ip(&["netns", "del", &self.srv]);
        let _ = ip(&["netns", "del", &self.cli]);
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.srv));
        if std::thread::panicking() {
            eprintln!(
                "[{}] keeping scratch dir {} for inspection",
                self.test,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        cap_release();
    }
}
