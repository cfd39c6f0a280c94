//! The suite's [`NetPair`]: a [`testbed::Pair`] with the suite's names and addresses, a
//! scratch directory and the conveniences its tests use, all panicking with the test's
//! name (a test fails on the spot; the test bed itself returns errors).
//!
//! Namespaces are `xmd-PID-K-s` / `-c` (swept by the test bed if a test process died),
//! joined by `veth0` / `veth1` with 10.77.N.1-2/24 and fd77:N::1-2/64, N = K % 250 + 1.
//! Client sockets are made by running test code on a thread inside the client namespace
//! ([`NetPair::in_client`]); tools run under `ip netns exec CLI timeout 20`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use testbed::{can_run, CmdOutput};
use testbed::{End, Pair, PairSpec, Scratch};

/// A server namespace and a client namespace joined by veth, with a scratch directory.
/// Dropping it stops what still runs in them, removes them, and removes the scratch
/// directory (kept, and its path printed, when the test panics).
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
    /// The client end's pass-through XDP program, attached by the first daemon started
    /// with `--xdp-answers on` in native mode (see `NetPair::start_daemon`); kept for the
    /// pair's life, since one pair may run several daemons.
    pub(crate) peer_xdp: std::sync::Mutex<Option<mount_xdp::ebpf::XdpAttachment>>,
    // Dropped in this order: namespaces first, then the scratch directory.
    bed: Pair,
    _scratch: Scratch,
}

impl NetPair {
    /// Creates the pair, or returns None after printing SKIPPED (see [`can_run`]).
    pub fn new(test: &str) -> Option<NetPair> {
        if !can_run(test) {
            return None;
        }
        let names = testbed::unique_names();
        let n = (names.k % 250 + 1) as u8;
        let end = |ns: String, ifname: &str, host: u8| End {
            ns,
            ifname: ifname.into(),
            v4: Ipv4Addr::new(10, 77, n, host),
            v6: Ipv6Addr::new(0xfd77, n.into(), 0, 0, 0, 0, 0, host.into()),
        };
        let spec = PairSpec {
            server: end(names.server_ns, "veth0", 1),
            client: end(names.client_ns, "veth1", 2),
            queues: 1,
        };
        let pid = std::process::id();
        let scratch = Scratch::create(&format!("xmd-e2e-{pid}-{}-{test}", names.k), test)
            .unwrap_or_else(|e| panic!("{test}: {e:#}"));
        let bed = Pair::create(spec)
            .unwrap_or_else(|e| panic!("{test}: setting up namespaces failed: {e:#}"));
        Some(NetPair {
            test: test.to_string(),
            srv: bed.server().ns.clone(),
            cli: bed.client().ns.clone(),
            n,
            dir: scratch.path().to_path_buf(),
            peer_xdp: std::sync::Mutex::new(None),
            bed,
            _scratch: scratch,
        })
    }

    /// The test bed's pair underneath.
    pub fn bed(&self) -> &Pair {
        &self.bed
    }

    /// Server IPv4 address.
    pub fn srv_v4(&self) -> IpAddr {
        self.bed.server().addr(false)
    }
    /// Client IPv4 address.
    pub fn cli_v4(&self) -> IpAddr {
        self.bed.client().addr(false)
    }
    /// Server IPv6 address.
    pub fn srv_v6(&self) -> IpAddr {
        self.bed.server().addr(true)
    }
    /// Client IPv6 address.
    pub fn cli_v6(&self) -> IpAddr {
        self.bed.client().addr(true)
    }
    /// Server address of the given family with a port.
    pub fn srv_addr(&self, v6: bool, port: u16) -> SocketAddr {
        SocketAddr::new(self.bed.server().addr(v6), port)
    }
    /// The client address the server sees for the given family (mount list key).
    pub fn cli_ip(&self, v6: bool) -> IpAddr {
        self.bed.client().addr(v6)
    }

    /// Adds another address (CIDR, e.g. "10.77.N.10/24") to the server's veth.
    pub fn add_srv_addr(&self, cidr: &str) {
        self.bed
            .server()
            .add_addr(cidr)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test));
    }

    /// Adds another address (CIDR) to the client's veth.
    pub fn add_cli_addr(&self, cidr: &str) {
        self.bed
            .client()
            .add_addr(cidr)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test));
    }

    /// Sets the MTU of the client's veth (to force IP fragmentation of its datagrams).
    pub fn set_cli_mtu(&self, mtu: u32) {
        self.bed
            .client()
            .set_mtu(mtu)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test));
    }

    /// Gives processes started with `ip netns exec SRV` (the daemon) their own /etc/hosts:
    /// `ip netns exec` bind-mounts /etc/netns/SRV/* over /etc/*. Removed on drop.
    pub fn set_srv_hosts(&self, text: &str) {
        let d = Path::new(testbed::netns::ETC_NETNS).join(&self.srv);
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
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.bed
            .client()
            .run(f)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test))
    }

    /// Runs `f` on a thread inside the server namespace (e.g. to inspect sockets).
    pub fn in_server<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.bed
            .server()
            .run(f)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test))
    }

    /// Runs a command in the client namespace under `timeout 20`.
    pub fn run_client(&self, cmd: &[&str]) -> CmdOutput {
        self.run_in(self.bed.client(), cmd, 20)
    }

    /// Runs a command in the server namespace under `timeout SECS`.
    pub fn run_server(&self, cmd: &[&str], secs: u32) -> CmdOutput {
        self.run_in(self.bed.server(), cmd, secs)
    }

    fn run_in(&self, end: &End, cmd: &[&str], secs: u32) -> CmdOutput {
        end.output(cmd, secs)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test))
    }

    /// Starts a private rpcbind in the server namespace on both server addresses, for
    /// several servers to share (see [`testbed::Rpcbind`]).
    pub fn start_rpcbind(&self) -> testbed::Rpcbind {
        let srv = self.bed.server();
        testbed::Rpcbind::start(&srv.ns, &[srv.addr(false), srv.addr(true)])
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test))
    }
}
