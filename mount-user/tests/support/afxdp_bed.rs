//! Test bed for the AF_XDP daemon tests: two network namespaces joined by a veth pair
//! (optionally multi-queue), the real `xdp-mountd` binary in the server namespace, and a
//! small independent RPC client in the client namespace. Everything is removed on drop,
//! also when a test panics.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const PORT: u16 = 644;
pub const SRV_IF: &str = "xaf-srv";
pub const CLI_IF: &str = "xaf-cli";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// False (after printing SKIPPED) when the test cannot run here; under CI=true a
/// missing privilege fails instead.
pub fn privileged() -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but not root: the privileged XDP tests must run");
    }
    println!("SKIPPED (needs root)");
    false
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip -d link show` of `ifname` in namespace `ns` mentions an XDP program.
pub fn xdp_attached_in(ns: &str, ifname: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", ifname])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// Creates namespaces `ends[0].0` (server) and `ends[1].0` (client) joined by a veth
/// pair `ends[0].1`–`ends[1].1` with `queues` rx/tx queues, each end up with address
/// `v4[i]`/24 and `v6[i]`/64 (no DAD), loopback up.
pub fn veth_between(ends: [(&str, &str); 2], queues: u32, v4: [String; 2], v6: [String; 2]) {
    let [(srv, srv_if), (cli, cli_if)] = ends;
    ip(&["netns", "add", srv]);
    ip(&["netns", "add", cli]);
    let q = queues.to_string();
    ip(&[
        "link",
        "add",
        srv_if,
        "netns",
        srv,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        cli_if,
        "netns",
        cli,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
    ]);
    for (i, (ns, ifname)) in ends.into_iter().enumerate() {
        let v4 = format!("{}/24", v4[i]);
        let v6 = format!("{}/64", v6[i]);
        ip(&["-n", ns, "addr", "add", &v4, "dev", ifname]);
        ip(&["-n", ns, "addr", "add", &v6, "dev", ifname, "nodad"]);
        ip(&["-n", ns, "link", "set", ifname, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
}

/// Removes the namespaces (and with them the veth pair); errors ignored (for `Drop`).
pub fn del_netns(namespaces: [&str; 2]) {
    for ns in namespaces {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}

/// Two namespaces joined by a veth pair; removed on drop.
pub struct Bed {
    pub srv: String,
    pub cli: String,
    pub dir: PathBuf,
    pub v4: [IpAddr; 2],
    pub v6: [IpAddr; 2],
}

impl Bed {
    /// `tag` keeps names unique between tests; `net` (1..=250) keeps subnets apart.
    pub fn new(tag: &str, net: u8, queues: u32) -> Bed {
        let pid = std::process::id();
        let bed = Bed {
            srv: format!("xaf-s-{tag}-{pid}"),
            cli: format!("xaf-c-{tag}-{pid}"),
            dir: std::env::temp_dir().join(format!("xaf-{tag}-{pid}")),
            v4: [
                format!("10.233.{net}.1").parse().unwrap(),
                format!("10.233.{net}.2").parse().unwrap(),
            ],
            v6: [
                format!("fd00:233:{net:x}::1").parse().unwrap(),
                format!("fd00:233:{net:x}::2").parse().unwrap(),
            ],
        };
        std::fs::create_dir_all(&bed.dir).unwrap();
        veth_between(
            [(&bed.srv, SRV_IF), (&bed.cli, CLI_IF)],
            queues,
            bed.v4.map(|a| a.to_string()),
            bed.v6.map(|a| a.to_string()),
        );
        bed
    }

    pub fn srv_addr(&self, v6: bool) -> SocketAddr {
        SocketAddr::new(self.v6_or_v4(v6, 0), PORT)
    }

    fn v6_or_v4(&self, v6: bool, i: usize) -> IpAddr {
        if v6 {
            self.v6[i]
        } else {
            self.v4[i]
        }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs `f` on a thread inside namespace `ns`.
    pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{ns}");
        thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap();
                // SAFETY: a valid namespace fd; only this thread changes namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        Self::run_in(&self.cli, f)
    }

    /// `ip -d link show` of the server interface mentions an XDP program.
    pub fn xdp_attached(&self) -> bool {
        xdp_attached_in(&self.srv, SRV_IF)
    }

    /// The same for the client interface (storm's own AF_XDP socket).
    pub fn client_xdp_attached(&self) -> bool {
        xdp_attached_in(&self.cli, CLI_IF)
    }

    /// (InDatagrams, OutDatagrams) of the server namespace's kernel UDP (v4 + v6).
    pub fn srv_udp_counters(&self) -> (u64, u64) {
        let read = |file: &str| {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.srv, "cat", file])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let snmp = read("/proc/net/snmp");
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
        let field = |n: &str| {
            let i = names.split_whitespace().position(|f| f == n).unwrap();
            values
                .split_whitespace()
                .nth(i)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let snmp6 = read("/proc/net/snmp6");
        let field6 = |n: &str| {
            snmp6
                .lines()
                .find_map(|l| l.strip_prefix(n).map(|v| v.trim().parse::<u64>().unwrap()))
                .unwrap_or(0)
        };
        (
            field("InDatagrams") + field6("Udp6InDatagrams"),
            field("OutDatagrams") + field6("Udp6OutDatagrams"),
        )
    }

    /// Starts the daemon in the server namespace and waits for READY.
    pub fn daemon(&self, args: &[&str]) -> Daemon {
        self.try_daemon(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes `exports` and starts the daemon on the server interface in XDP `mode`.
    pub fn xdp_daemon(&self, exports: &str, mode: &str) -> Daemon {
        let exports = self.write("exports", exports);
        self.daemon(&[
            "--exports",
            exports.to_str().unwrap(),
            "--iface",
            SRV_IF,
            "--xdp",
            mode,
        ])
    }

    pub fn try_daemon(&self, args: &[&str]) -> Result<Daemon, String> {
        self.try_daemon_on(PORT, args)
    }

    /// Like [`Bed::try_daemon`] on another MOUNT port.
    pub fn try_daemon_on(&self, port: u16, args: &[&str]) -> Result<Daemon, String> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stats = self.dir.join(format!("stats-{seq}.sock"));
        let stderr = self.dir.join(format!("daemon-{seq}.log"));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.srv,
                env!("CARGO_BIN_EXE_xdp-mountd"),
                "serve",
            ])
            .args(["--no-rpcbind", "--port", &port.to_string()])
            // The bed's own subnets: these tests are about the data path, not the UDP
            // list budget (which would cut their EXPORT and DUMP replies).
            .args(["--trusted-networks", "10.233.0.0/16,fd00:233::/32"])
            .arg("--stats-socket")
            .arg(&stats)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("READY") {
                    let _ = tx.send(());
                }
            }
        });
        let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(()) => Ok(Daemon {
                child,
                stats,
                stderr,
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(format!("daemon not READY ({status:?}): {}", log()))
            }
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        del_netns([&self.srv, &self.cli]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub stats: PathBuf,
    pub stderr: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `xdp-mountd stats --json` against this daemon.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stats_output(&["--json"])).unwrap()
    }

    /// `xdp-mountd stats` (table) against this daemon.
    pub fn stats_table(&self) -> String {
        String::from_utf8(self.stats_output(&[])).unwrap()
    }

    fn stats_output(&self, flags: &[&str]) -> Vec<u8> {
        let out = Command::new(env!("CARGO_BIN_EXE_xdp-mountd"))
            .arg("stats")
            .args(flags)
            .arg("--socket")
            .arg(&self.stats)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "stats: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn signal(&self, sig: i32) {
        // `ip netns exec` execs the daemon: the child's pid is the daemon's.
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits (bounded) for the exit and returns the exit code (None: by signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Sum of a per-procedure column in a stats report.
pub fn proc_count(stats: &serde_json::Value, name: &str, path: &str) -> u64 {
    stats["procedures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()[path]
        .as_u64()
        .unwrap()
}

// --- a small RPC client, independent of the daemon's codec ---

pub const MOUNT_PROG: u32 = 100_005;

/// An RPC call with AUTH_NONE; `args` already XDR-encoded.
pub fn call(xid: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for w in [xid, 0, 2, MOUNT_PROG, vers, proc_, 0, 0, 0, 0] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    m.extend_from_slice(args);
    m
}

/// XDR string.
pub fn xdr_string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

/// The body after an accepted, successful reply header to `xid`.
pub fn reply_body(xid: u32, reply: &[u8]) -> Vec<u8> {
    let w = |i: usize| u32::from_be_bytes(reply[i * 4..i * 4 + 4].try_into().unwrap());
    assert!(reply.len() >= 24, "short reply {reply:?}");
    assert_eq!(w(0), xid, "xid");
    assert_eq!(w(1), 1, "REPLY");
    assert_eq!(w(2), 0, "MSG_ACCEPTED");
    let verf_len = w(4) as usize;
    let at = 20 + verf_len.div_ceil(4) * 4;
    assert_eq!(
        u32::from_be_bytes(reply[at..at + 4].try_into().unwrap()),
        0,
        "SUCCESS"
    );
    reply[at + 4..].to_vec()
}

/// One UDP call from `sock` (bound in the client namespace); returns the reply body.
pub fn udp_call(sock: &UdpSocket, to: SocketAddr, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let xid = rand_xid();
    let msg = call(xid, vers, proc_, args);
    let mut buf = vec![0u8; 65536];
    for _attempt in 0..3 {
        sock.send_to(&msg, to).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, to, "reply from the wrong address");
                return reply_body(xid, &buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    panic!("no UDP reply from {to} (vers {vers} proc {proc_})");
}

/// A UDP socket in the calling thread's namespace, for `to`'s family.
pub fn udp_socket(to: SocketAddr) -> UdpSocket {
    let any: SocketAddr = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .unwrap();
    let s = UdpSocket::bind(any).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// One TCP call (record marking); returns the reply body.
pub fn tcp_call(to: SocketAddr, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let xid = rand_xid();
    let msg = call(xid, vers, proc_, args);
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut rec = (0x8000_0000u32 | msg.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&msg);
    s.write_all(&rec).unwrap();
    let mut reply = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        s.read_exact(&mut mark).unwrap();
        let m = u32::from_be_bytes(mark);
        let mut frag = vec![0u8; (m & 0x7fff_ffff) as usize];
        s.read_exact(&mut frag).unwrap();
        reply.extend_from_slice(&frag);
        if m & 0x8000_0000 != 0 {
            break;
        }
    }
    reply_body(xid, &reply)
}

fn rand_xid() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0x5a00_0000);
    NEXT.fetch_add(1, Ordering::Relaxed) ^ std::process::id()
}

/// Names in an EXPORT (v3) reply body.
pub fn export_names(body: &[u8]) -> Vec<String> {
    let mut at = 0;
    let word = |at: &mut usize| {
        let w = u32::from_be_bytes(body[*at..*at + 4].try_into().unwrap());
        *at += 4;
        w
    };
    let string = |at: &mut usize| {
        let n = word(at) as usize;
        let s = String::from_utf8(body[*at..*at + n].to_vec()).unwrap();
        *at += n.div_ceil(4) * 4;
        s
    };
    let mut names = Vec::new();
    while word(&mut at) == 1 {
        names.push(string(&mut at));
        while word(&mut at) == 1 {
            string(&mut at); // group
        }
    }
    names
}
