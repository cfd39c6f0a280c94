//! Test bed for the AF_XDP daemon tests: two network namespaces joined by a veth pair
//! (optionally multi-queue), the real `xdp-mountd` binary in the server namespace, and a
//! small independent RPC client in the client namespace. Everything is removed on drop,
//! also when a test panics.
//!
//! Namespaces, the veth pair, processes and the SKIPPED rule are the workspace's test bed
//! ([`testbed`], `tests/bed/`); what is here is these tests' use of it: their interface
//! names and subnets, the daemon's arguments, XDP and UDP-counter probes, the RPC client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mount_proto::mount::client::accepted_results;
use mount_proto::mount::wire::ExportList;
use mount_proto::mount::MOUNT_PROGRAM;
use mount_proto::xdr::Reader;
use testbed::{End, Pair, PairSpec, Process, Scratch, Spawn};

pub const PORT: u16 = 644;
pub const SRV_IF: &str = "xaf-srv";
pub const CLI_IF: &str = "xaf-cli";
/// How long a daemon may take to print READY.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// False (after printing SKIPPED) when the test cannot run here; under CI=true a
/// missing privilege fails instead ([`testbed::can_run`]).
pub fn privileged() -> bool {
    testbed::can_run(&testbed::current_test())
}

/// `ip ARGS`; panics with its stderr.
pub fn ip(args: &[&str]) {
    testbed::ip(args).unwrap_or_else(|e| panic!("{e:#}"));
}

/// `ip -d link show` of `ifname` in namespace `ns` mentions an XDP program.
pub fn xdp_attached_in(ns: &str, ifname: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "link", "show", ifname])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// A pair with unique namespace names, interfaces `ifnames` (server, client) with
/// `queues` rx/tx queues, server `v4[0]`/`v6[0]`, client `v4[1]`/`v6[1]`.
pub fn pair(ifnames: [&str; 2], queues: u32, v4: [Ipv4Addr; 2], v6: [Ipv6Addr; 2]) -> Pair {
    let names = testbed::unique_names();
    let end = |ns: String, i: usize| End {
        ns,
        ifname: ifnames[i].into(),
        v4: v4[i],
        v6: v6[i],
    };
    Pair::create(PairSpec {
        server: end(names.server_ns, 0),
        client: end(names.client_ns, 1),
        queues,
    })
    .unwrap_or_else(|e| panic!("setting up namespaces failed: {e:#}"))
}

/// Two namespaces joined by a veth pair, with a scratch directory; removed on drop.
pub struct Bed {
    pub srv: String,
    pub cli: String,
    pub dir: PathBuf,
    pub v4: [IpAddr; 2],
    pub v6: [IpAddr; 2],
    // Dropped in this order: namespaces first, then the scratch directory.
    pair: Pair,
    _scratch: Scratch,
}

impl Bed {
    /// `tag` names the scratch directory; `net` (1..=250) keeps subnets apart.
    pub fn new(tag: &str, net: u8, queues: u32) -> Bed {
        let pid = std::process::id();
        let scratch = Scratch::create(&format!("xaf-{tag}-{pid}"), tag).unwrap();
        let v4 = [1, 2].map(|h| Ipv4Addr::new(10, 233, net, h));
        let v6 = [1, 2].map(|h| Ipv6Addr::new(0xfd00, 0x233, net.into(), 0, 0, 0, 0, h));
        let pair = pair([SRV_IF, CLI_IF], queues, v4, v6);
        Bed {
            srv: pair.server().ns.clone(),
            cli: pair.client().ns.clone(),
            dir: scratch.path().to_path_buf(),
            v4: v4.map(IpAddr::V4),
            v6: v6.map(IpAddr::V6),
            pair,
            _scratch: scratch,
        }
    }

    pub fn srv_addr(&self, v6: bool) -> SocketAddr {
        SocketAddr::new(self.pair.server().addr(v6), PORT)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs `f` on a thread inside namespace `ns`.
    pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        testbed::netns::run(ns, f).unwrap_or_else(|e| panic!("{e:#}"))
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
        let mut cmd = self.pair.server().command();
        cmd.args([env!("CARGO_BIN_EXE_xdp-mountd"), "serve"])
            .args(["--no-rpcbind", "--port", &port.to_string()])
            // The bed's own subnets: these tests are about the data path, not the UDP
            // list budget (which would cut their EXPORT and DUMP replies).
            .args(["--trusted-networks", "10.233.0.0/16,fd00:233::/32"])
            .arg("--stats-socket")
            .arg(&stats)
            .args(args);
        let mut process =
            Process::spawn(cmd, Spawn::new("xdp-mountd", &stderr)).map_err(|e| format!("{e:#}"))?;
        match process.wait_ready(READY_WITHIN) {
            Ok(()) => Ok(Daemon {
                process,
                stats,
                stderr,
            }),
            Err(e) => {
                process.kill();
                Err(format!("daemon not READY: {e:#}"))
            }
        }
    }
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    pub process: Process,
    pub stats: PathBuf,
    pub stderr: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        self.process.log()
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

    /// The daemon's pid: `ip netns exec` execs the daemon, so the child's pid is its.
    pub fn pid(&self) -> u32 {
        self.process.pid().unsigned_abs()
    }

    pub fn signal(&self, sig: i32) {
        self.process.signal(sig);
    }

    /// Waits (bounded) for the exit and returns the exit code (None: by signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        match self.process.wait_exit(limit) {
            Some(status) => status.code(),
            None => panic!("daemon did not exit: {}", self.log()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGKILL, not the test bed's SIGTERM first: these tests stop daemons themselves
        // when a clean stop is what they check.
        self.process.kill();
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

// --- a small RPC client: calls written by hand, replies read with mount-proto's parsers.
// (The end-to-end suite in tests/ keeps a client independent of the daemon's codec; this
// bed checks the data path, so it decodes with the protocol crate rather than a copy.)

/// An RPC call with AUTH_NONE; `args` already XDR-encoded.
pub fn call(xid: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for w in [xid, 0, 2, MOUNT_PROGRAM, vers, proc_, 0, 0, 0, 0] {
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

/// The results of an accepted, successful reply to `xid`.
pub fn reply_body(xid: u32, reply: &[u8]) -> Vec<u8> {
    accepted_results(reply, xid)
        .unwrap_or_else(|e| panic!("{e}: {reply:?}"))
        .to_vec()
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
    let list = ExportList::parse(&mut Reader::new(body))
        .unwrap_or_else(|e| panic!("EXPORT results: {e}: {body:?}"));
    list.iter()
        .map(|node| String::from_utf8_lossy(node.dir).into_owned())
        .collect()
}
