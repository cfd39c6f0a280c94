//! Launching xdp-mountd in the server namespace (optionally behind a private rpcbind):
//! the suite's own part, its options ([`DaemonOpts`]) and checks at stop (exit status,
//! the AF_XDP proof). Spawning, the READY wait, signals and the private mount namespace
//! with rpcbind are the test bed's ([`testbed::Process`], [`testbed::PrivateMounts`]).

use crate::netns::NetPair;
use mount_xdp::ebpf::XdpAttachment;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;
use testbed::{PrivateMounts, PrivateRpcbind, Process, Spawn};

/// The MOUNT port the tests use inside their namespaces (namespaces are private, so one
/// fixed port is fine; it is deliberately not 644 so nothing relies on the default).
pub const PORT: u16 = 4002;

/// The daemon binary: env XDP_MOUNTD_BIN, else `<workspace>/target/debug/xdp-mountd`.
pub fn daemon_bin() -> PathBuf {
    let p = match std::env::var_os("XDP_MOUNTD_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target/debug/xdp-mountd"),
    };
    if !p.is_file() {
        panic!(
            "xdp-mountd binary not found at {}: run `cargo build -p mount-user` first \
             (or use `cargo xtask test`), or set XDP_MOUNTD_BIN",
            p.display()
        );
    }
    p
}

/// How to start the daemon.
#[derive(Clone, Debug)]
pub struct DaemonOpts {
    /// exports file
    pub exports: PathBuf,
    /// rmtab file (None: no --rmtab)
    pub rmtab: Option<PathBuf>,
    /// start a private rpcbind and let the daemon register with it
    pub rpcbind: bool,
    /// with `rpcbind` false: do not pass --no-rpcbind either, so the daemon tries to
    /// register and finds no rpcbind (a private, empty /run keeps it off the host's)
    pub rpcbind_absent: bool,
    /// pass --filter-exports
    pub filter_exports: bool,
    /// extra arguments
    pub extra: Vec<String>,
    /// binary override (harness self-tests use a stand-in); None: [`daemon_bin`]
    pub bin: Option<PathBuf>,
    /// With the AF_XDP path on: this test sends UDP calls that reach the kernel socket by
    /// design (IP fragments, loopback), so the AF_XDP-only check at stop is skipped.
    pub kernel_udp_ok: bool,
    /// Leave the test subnets out of --trusted-networks, so UDP list replies meet the
    /// anti-amplification budget (by default the suite trusts its own subnets: its list
    /// checks over UDP are about the protocol, not the budget).
    pub untrusted: bool,
    /// A directory whose files replace /etc's for the daemon (nsswitch.conf, netgroup,
    /// hosts): an overlay on /etc in a private mount namespace, so files /etc lacks (the
    /// host has no /etc/netgroup) can be given too. Rewrite them in place while the daemon
    /// runs (`std::fs::write`), never rename over them: the overlay keeps the old file.
    pub etc: Option<PathBuf>,
    /// Run in the mount namespace of this process (a shared rpcbind's, see
    /// [`crate::ganesha::SharedRpcbind`]) and register with that rpcbind.
    pub mount_ns_of: Option<u32>,
    /// With `--xdp-answers on` in native mode: leave the client's veth end without the
    /// harness's pass-through XDP program (a test that puts its own there, e.g. `storm
    /// --pass-through-xdp`, or that shows what happens without one).
    pub client_xdp_free: bool,
}

impl DaemonOpts {
    /// Defaults: no rpcbind (--no-rpcbind), no rmtab. Extra arguments for every daemon of
    /// the run come from env XMD_E2E_DAEMON_ARGS (whitespace-separated), e.g. to run the
    /// whole suite against another data path (the server's veth is always `veth0`).
    pub fn new(exports: PathBuf) -> Self {
        let extra = std::env::var("XMD_E2E_DAEMON_ARGS")
            .map(|v| v.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        DaemonOpts {
            exports,
            rmtab: None,
            rpcbind: false,
            rpcbind_absent: false,
            filter_exports: false,
            extra,
            bin: None,
            kernel_udp_ok: false,
            untrusted: false,
            etc: None,
            mount_ns_of: None,
            client_xdp_free: false,
        }
    }

    /// [`DaemonOpts::new`] on the data path of the in-kernel answers' tests, whatever
    /// XMD_E2E_DAEMON_ARGS says: native XDP on `veth0` with `--xdp-answers on`.
    pub fn native_xdp_answers(exports: PathBuf) -> Self {
        let mut opts = DaemonOpts::new(exports);
        opts.extra = ["--iface", "veth0", "--xdp", "native", "--xdp-answers", "on"]
            .map(String::from)
            .to_vec();
        opts
    }
}

/// A running daemon; Drop stops it (SIGTERM, then SIGKILL) and its private rpcbind.
pub struct Daemon<'p> {
    pair: &'p NetPair,
    process: Process,
    /// stderr log file
    pub stderr_path: PathBuf,
    rpcbind_pidfile: Option<PathBuf>,
    /// Its exit status, once seen here.
    status: Option<ExitStatus>,
    /// It never printed READY: dropped without the checks of a daemon that served.
    failed_start: bool,
    /// With the AF_XDP path on: the stats socket, and whether kernel UDP calls are fine.
    xdp_stats: Option<(PathBuf, bool)>,
    /// This daemon's own stats socket (None for a stand-in binary).
    stats_socket: Option<PathBuf>,
}

/// Every address the test pairs use (10.77.N.0/24, fd77:N::/64).
pub const TEST_NETWORKS: &str = "10.77.0.0/16,fd77::/16";

/// How long a daemon may take to print READY.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// How long a daemon may take to exit after a signal ([`Daemon::stop_with`]).
const STOP_WITHIN: Duration = Duration::from_secs(15);

static START_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl NetPair {
    /// A frame the server's program sends back with XDP_TX (`--xdp-answers on`) in native
    /// mode crosses a veth pair only when the receiving end has an XDP program of its own
    /// (veth drops it otherwise; GRO is not enough, measured on 6.18; docs/xdp-answers.md).
    /// A real client's NIC needs nothing. Here the client's end gets our own program
    /// steering nothing (port 0: every frame passes), once per pair, held by the pair.
    fn let_client_receive_xdp_tx(&self) -> Result<(), String> {
        let mut held = self.peer_xdp.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_some() {
            return Ok(());
        }
        let ifname = self.bed().client().ifname.clone();
        let attached = testbed::netns::run(&self.cli, || XdpAttachment::pass_through(&ifname))
            .map_err(|e| format!("entering {}: {e:#}", self.cli))?
            .map_err(|e| format!("a pass-through XDP program on the client's {ifname}: {e:#}"))?;
        *held = Some(attached);
        Ok(())
    }

    /// Starts xdp-mountd in the server namespace and waits (10 s) for READY.
    pub fn start_daemon(&self, opts: &DaemonOpts) -> Daemon<'_> {
        match self.try_start_daemon(opts) {
            Ok(d) => d,
            Err(msg) => panic!("[{}] {msg}", self.test),
        }
    }

    /// Like [`NetPair::start_daemon`] but returns an error text (with stderr) instead of panicking.
    pub fn try_start_daemon(&self, opts: &DaemonOpts) -> Result<Daemon<'_>, String> {
        let bin = opts.bin.clone().unwrap_or_else(daemon_bin);
        let seq = START_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stderr_path = self.dir.join(format!("daemon-{seq}.stderr"));
        let mut args: Vec<String> = vec![
            bin.display().to_string(),
            "serve".into(),
            "--exports".into(),
            opts.exports.display().to_string(),
            "--port".into(),
            PORT.to_string(),
        ];
        if let Some(r) = &opts.rmtab {
            args.push("--rmtab".into());
            args.push(r.display().to_string());
        }
        if !opts.rpcbind && !opts.rpcbind_absent && opts.mount_ns_of.is_none() {
            args.push("--no-rpcbind".into());
        }
        if opts.filter_exports {
            args.push("--filter-exports".into());
        }
        if !opts.untrusted && opts.bin.is_none() {
            args.push("--trusted-networks".into());
            args.push(TEST_NETWORKS.into());
        }
        args.extend(opts.extra.iter().cloned());
        // Every daemon of ours gets its own stats socket: parallel tests' daemons would share
        // the default path under /run.
        let stats_socket = opts.bin.is_none().then(|| {
            let socket = self.dir.join(format!("stats-{seq}.sock"));
            args.push("--stats-socket".into());
            args.push(socket.display().to_string());
            socket
        });
        let xdp_stats = stats_socket
            .clone()
            .filter(|_| crate::afxdp::xdp_mode(&opts.extra))
            .map(|socket| (socket, opts.kernel_udp_ok));

        if crate::afxdp::xdp_answers_native(&opts.extra) && !opts.client_xdp_free {
            self.let_client_receive_xdp_tx()?;
        }
        let mut cmd = testbed::netns::command(&self.srv);
        let mut rpcbind_pidfile = None;
        if let Some(pid) = opts.mount_ns_of {
            // A shared rpcbind's mount namespace: register with that rpcbind.
            cmd.args(testbed::mounts::enter_mounts_of(pid));
        } else {
            // rpcbind keeps its socket/lock under /run, shared by all net namespaces: a
            // private rpcbind gets a private mount namespace with a tmpfs /run, and the
            // daemon is exec'd in the same one so its registration reaches it (docs/platform.md).
            // Without one (rpcbind_absent), an empty private /run keeps the host's out of
            // reach.
            let pidfile = self.dir.join(format!("rpcbind-{seq}.pid"));
            let mounts = PrivateMounts {
                etc_overlay: opts.etc.clone(),
                tmpfs_run: opts.rpcbind_absent,
                rpcbind: opts.rpcbind.then(|| PrivateRpcbind {
                    addrs: vec![self.srv_v4(), self.srv_v6()],
                    pidfile: Some(pidfile.clone()),
                }),
                ..Default::default()
            };
            if !mounts.is_empty() {
                cmd.args(mounts.wrap());
            }
            rpcbind_pidfile = opts.rpcbind.then_some(pidfile);
        }
        cmd.args(&args);
        let process = Process::spawn(cmd, Spawn::new("xdp-mountd", &stderr_path))
            .map_err(|e| format!("{e:#}"))?;
        let mut d = Daemon {
            pair: self,
            process,
            stderr_path,
            rpcbind_pidfile,
            status: None,
            failed_start: false,
            xdp_stats,
            stats_socket,
        };
        match d.process.wait_ready(READY_WITHIN) {
            Ok(()) => Ok(d),
            Err(e) => {
                d.failed_start = true;
                Err(format!("{e:#}"))
            }
        }
    }
}

impl Daemon<'_> {
    /// The daemon's `xdp-mountd stats --json` report, read from its own stats socket.
    pub fn stats_json(&self) -> serde_json::Value {
        let socket = self
            .stats_socket
            .as_ref()
            .expect("a stand-in binary has no stats socket");
        crate::afxdp::stats_json(&daemon_bin(), socket)
            .unwrap_or_else(|e| panic!("[{}] {e}", self.pair.test))
    }

    /// The `xdp_tx` column of procedure `name` (`null`, `mnt`) in `stats --json`: its calls
    /// the XDP program answered itself.
    pub fn answered_in_program(&self, name: &str) -> u64 {
        let stats = self.stats_json();
        stats["procedures"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .and_then(|r| r["xdp_tx"].as_u64())
            .unwrap_or_else(|| panic!("no {name} row with xdp_tx in {stats}"))
    }

    /// The daemon's pid (host pid namespace).
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The daemon's control socket (`xdp-mountd stats|reload --socket`).
    pub fn control_socket(&self) -> &Path {
        self.stats_socket
            .as_deref()
            .expect("a stand-in binary has no control socket")
    }

    /// Runs `xdp-mountd reload` against this daemon (from the host: the socket is a file
    /// in the scratch directory); returns (exit code, stdout, stderr).
    pub fn reload(&self) -> (Option<i32>, String, String) {
        let out = Command::new("timeout")
            .args(["-k", "2", "60"])
            .arg(daemon_bin())
            .args(["reload", "--socket"])
            .arg(self.control_socket())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running xdp-mountd reload: {e}"));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.log()
    }

    /// Everything the daemon wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.process.stdout()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        self.process.signal(sig);
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        self.status = self.process.exit_status();
        self.status.is_none()
    }

    /// Sends `sig` and waits up to 15 s for exit; SIGKILL after that (then panics). A bound
    /// against hangs, far above a normal stop (0.2 s): XDP detach waits for the RTNL lock,
    /// and once a daemon that had logged "stopped" took over 5 s to exit on a loaded machine.
    pub fn stop_with(&mut self, sig: i32) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        self.check_afxdp();
        let stopped = self.process.stop(sig, STOP_WITHIN);
        self.status = self.process.exit_status();
        self.kill_rpcbind();
        match stopped {
            Ok(st) => st,
            Err(e) => panic!("[{}] {e:#}\nstderr:\n{}", self.pair.test, self.stderr()),
        }
    }

    /// With the AF_XDP path on, a running daemon must not have received MOUNT calls on its
    /// kernel UDP socket (see [`crate::afxdp`]). Checked once, before stopping.
    fn check_afxdp(&mut self) {
        let Some((socket, kernel_udp_ok)) = self.xdp_stats.take() else {
            return;
        };
        if kernel_udp_ok || std::thread::panicking() || !self.alive() {
            return;
        }
        let bin = daemon_bin();
        match crate::afxdp::udp_call_counts(&bin, &socket) {
            Ok((_, 0)) => {}
            Ok((afxdp, kernel)) => panic!(
                "[{}] --xdp is on, yet {kernel} UDP call(s) reached the kernel socket \
                 ({afxdp} through AF_XDP); a test that sends IP fragments or uses loopback sets kernel_udp_ok",
                self.pair.test
            ),
            Err(e) => panic!("[{}] reading stats: {e}", self.pair.test),
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Stops the private rpcbind (if any). The daemon may be stopped first to inspect what
    /// it left registered.
    pub fn kill_rpcbind(&mut self) {
        if let Some(pf) = self.rpcbind_pidfile.take() {
            testbed::mounts::kill_pidfile(&pf, libc::SIGTERM);
        }
    }

    /// Stops the daemon but leaves the private rpcbind running (to check unregistration).
    pub fn stop_keep_rpcbind(&mut self) -> ExitStatus {
        let pf = self.rpcbind_pidfile.take();
        let st = self.stop();
        self.rpcbind_pidfile = pf;
        st
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        // A daemon seen to exit, or one that never got READY, has nothing to check; while
        // unwinding there must be no second panic. The process itself is stopped on drop
        // (SIGTERM, 3 s, SIGKILL).
        if self.status.is_none() && !self.failed_start && !std::thread::panicking() {
            let st = self.stop();
            if !st.success() {
                panic!(
                    "[{}] xdp-mountd exited with {st} on SIGTERM\nstderr:\n{}",
                    self.pair.test,
                    self.stderr()
                );
            }
        }
        self.kill_rpcbind();
        if std::thread::panicking() {
            eprintln!(
                "[{}] xdp-mountd stderr ({}):\n{}",
                self.pair.test,
                self.stderr_path.display(),
                self.stderr()
            );
        }
    }
}
