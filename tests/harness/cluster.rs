//! Cluster mode's end-to-end bed: the test bed's [`testbed::Ecmp`] (a client namespace,
//! N node namespaces behind one ECMP service address, a backbone), etcd in the backbone,
//! and one xdp-mountd per node in `serve --cluster` mode with the AF_XDP path on the
//! node's client-facing interface (`--iface up0 --xdp native`) and a private rpcbind
//! listening on the node's own and the service address (so `showmount SERVICE` finds a
//! MOUNT port whichever node its calls land on).
//!
//! Every daemon gets its own stats socket, cluster cache file and log in the scratch
//! directory; [`Cluster`] stops them on drop before the namespaces go.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use testbed::{Ecmp, Etcd, PrivateMounts, PrivateRpcbind, Process, Scratch, Spawn};

use crate::daemon::{daemon_bin, PORT};
use crate::netns::CmdOutput;

/// The key prefix the tests give `--cluster-prefix` (not the default, to exercise it).
pub const PREFIX: &str = "/xmd-e2e";
/// How long a node may take to print READY.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One node's daemon.
pub struct NodeDaemon {
    /// Node index.
    pub index: usize,
    /// The `--node` name (`nI`).
    pub name: String,
    process: Process,
    /// Its control socket (`xdp-mountd stats --socket`).
    pub stats_socket: PathBuf,
    /// Its `--cluster-cache` file.
    pub cache: PathBuf,
    rpcbind_pidfile: PathBuf,
}

impl NodeDaemon {
    /// Its `stats --json` report.
    pub fn stats(&self) -> Result<serde_json::Value> {
        crate::afxdp::stats_json(&daemon_bin(), &self.stats_socket)
            .map_err(|e| anyhow::anyhow!("node {}: {e}", self.name))
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.process.alive()
    }

    /// SIGTERM, 15 s to exit (it must exit 0), then its rpcbind.
    pub fn stop(&mut self) -> Result<()> {
        let st = self.process.stop(libc::SIGTERM, Duration::from_secs(15));
        testbed::mounts::kill_pidfile(&self.rpcbind_pidfile, libc::SIGTERM);
        let st = st?;
        if !st.success() {
            bail!("node {} exited with {st}; log:\n{}", self.name, self.log());
        }
        Ok(())
    }
}

impl Drop for NodeDaemon {
    fn drop(&mut self) {
        testbed::mounts::kill_pidfile(&self.rpcbind_pidfile, libc::SIGTERM);
    }
}

/// The cluster part of a node's stats (`"cluster"` in `stats --json`).
pub fn cluster_part(stats: &serde_json::Value) -> &serde_json::Value {
    &stats["cluster"]
}

/// The export table generation a node's stats report.
pub fn generation(stats: &serde_json::Value) -> Option<u64> {
    cluster_part(stats)["generation"]
        .as_u64()
        .or_else(|| stats["exports"]["generation"].as_u64())
}

/// Calls a node answered through AF_XDP, summed over procedures.
pub fn afxdp_calls(stats: &serde_json::Value) -> u64 {
    stats["procedures"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["afxdp"].as_u64()).sum())
        .unwrap_or(0)
}

/// The bed, etcd and the node daemons; see the module documentation.
pub struct Cluster {
    /// Test name, for messages.
    pub test: String,
    /// The running node daemons (index = node index; None when stopped).
    pub nodes: Vec<Option<NodeDaemon>>,
    /// etcd in the backbone.
    pub etcd: Etcd,
    /// The namespaces.
    pub bed: Ecmp,
    /// Scratch directory (exports files, logs, caches, sockets).
    pub dir: PathBuf,
    _scratch: Scratch,
}

/// Whether cluster tests can run here: root (the SKIPPED rule) and etcd installed. Under
/// `cargo xtask test` the e2e suite runs three times over different data paths; these
/// tests choose their own (AF_XDP on every node), so they run in the first pass only.
pub fn can_run(test: &str) -> bool {
    if std::env::var("XMD_E2E_DAEMON_ARGS").is_ok_and(|a| !a.trim().is_empty()) {
        eprintln!(
            "[{test}] cluster tests pick their own data path (AF_XDP on each node): \
             run once, in the suite's first pass, not again under XMD_E2E_DAEMON_ARGS"
        );
        return false;
    }
    if !testbed::can_run(test) {
        return false;
    }
    let etcd = std::process::Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !etcd {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: etcd is not installed (`cargo xtask setup` installs etcd-server)");
        }
        eprintln!("\n*** SKIPPED (needs etcd): {test} — run `cargo xtask setup` ***\n");
        return false;
    }
    true
}

impl Cluster {
    /// The bed with `nodes` nodes and an etcd of `members` members in the backbone; no
    /// daemon yet ([`Cluster::start_node`], [`Cluster::start_all`]).
    pub fn new(test: &str, nodes: usize, members: usize) -> Result<Cluster> {
        let scratch = Scratch::create(
            &format!("xmd-e2e-cluster-{}-{test}", std::process::id()),
            test,
        )?;
        let dir = scratch.path().to_path_buf();
        let bed = Ecmp::create(nodes)?;
        let etcd = Etcd::cluster(Some(&bed.backbone_ns), bed.backbone_addr(), &dir, members)?;
        Ok(Cluster {
            test: test.to_string(),
            nodes: (0..nodes).map(|_| None).collect(),
            etcd,
            bed,
            dir,
            _scratch: scratch,
        })
    }

    /// Writes a file in the scratch directory; its path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        if let Err(e) = std::fs::write(&p, text) {
            panic!("[{}] writing {}: {e}", self.test, p.display());
        }
        p
    }

    /// The `serve` arguments every node gets, in cluster mode or not: port, data path,
    /// trusted networks and its own stats socket.
    pub fn common_args(&self, i: usize) -> Vec<String> {
        [
            "--port",
            &PORT.to_string(),
            "--iface",
            testbed::ecmp::NODE_IFACE,
            "--xdp",
            "native",
            "--trusted-networks",
            "10.79.0.0/16",
            "--stats-socket",
            &self
                .dir
                .join(format!("stats-n{i}.sock"))
                .display()
                .to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Node `i`'s cluster arguments: etcd, its name, the tests' prefix, its cache file.
    pub fn cluster_args(&self, i: usize) -> Vec<String> {
        let name = format!("n{i}");
        [
            "--cluster",
            &self.etcd.url(),
            "--node",
            &name,
            "--cluster-prefix",
            PREFIX,
            "--cluster-cache",
            &self
                .dir
                .join(format!("cache-{name}.exports"))
                .display()
                .to_string(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Starts node `i`'s daemon in cluster mode with `extra` arguments; waits for READY.
    pub fn start_node(&mut self, i: usize, extra: &[&str]) -> Result<()> {
        let mut args = vec!["serve".to_string()];
        args.extend(self.cluster_args(i));
        args.extend(self.common_args(i));
        args.extend(extra.iter().map(|a| a.to_string()));
        self.spawn_node(i, args)
    }

    /// Starts node `i`'s daemon standalone (no `--cluster`) on `exports`, with the same
    /// data path, port and sockets as a cluster node; waits for READY.
    pub fn start_standalone(&mut self, i: usize, exports: &Path) -> Result<()> {
        let mut args = vec!["serve".to_string(), "--exports".into()];
        args.push(exports.display().to_string());
        args.extend(self.common_args(i));
        self.spawn_node(i, args)
    }

    fn spawn_node(&mut self, i: usize, args: Vec<String>) -> Result<()> {
        let node = self.bed.node(i).clone();
        let name = format!("n{i}");
        let pidfile = self.dir.join(format!("rpcbind-{name}.pid"));
        let mounts = PrivateMounts {
            rpcbind: Some(PrivateRpcbind {
                addrs: vec![IpAddr::V4(node.addr), self.bed.service()],
                pidfile: Some(pidfile.clone()),
            }),
            ..Default::default()
        };
        let mut cmd = node.command();
        cmd.args(mounts.wrap()).arg(daemon_bin()).args(args);
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.dir.join(format!("node-{name}-{seq}.log"));
        let mut process = Process::spawn(cmd, Spawn::new(&format!("xdp-mountd {name}"), &log))?;
        process.wait_ready(READY_WITHIN)?;
        let stats_socket = self.dir.join(format!("stats-{name}.sock"));
        self.nodes[i] = Some(NodeDaemon {
            index: i,
            name: name.clone(),
            process,
            stats_socket,
            cache: self.dir.join(format!("cache-{name}.exports")),
            rpcbind_pidfile: pidfile,
        });
        Ok(())
    }

    /// Starts every node with the same `extra` arguments.
    pub fn start_all(&mut self, extra: &[&str]) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_node(i, extra)?;
        }
        Ok(())
    }

    /// Node `i`'s daemon (panics when it is not running).
    pub fn node(&self, i: usize) -> &NodeDaemon {
        match &self.nodes[i] {
            Some(n) => n,
            None => panic!("[{}] node {i} is not running", self.test),
        }
    }

    /// The address of node `i`'s own interface, MOUNT port.
    pub fn node_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.bed.node(i).addr), PORT)
    }

    /// The service address, MOUNT port.
    pub fn service_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bed.service(), PORT)
    }

    /// Runs `xdp-mountd ARGS` in the backbone (beside etcd) under `timeout 30`.
    pub fn xdp_mountd(&self, args: &[&str]) -> Result<CmdOutput> {
        let out = self
            .bed
            .backbone_command()
            .args(["timeout", "-k", "2", "30"])
            .arg(daemon_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running xdp-mountd {args:?}"))?;
        Ok(out.into())
    }

    /// `xdp-mountd cluster publish --exports FILE…` against this cluster's etcd.
    pub fn publish(&self, files: &[&Path]) -> Result<CmdOutput> {
        let url = self.etcd.url();
        let mut args = vec![
            "cluster",
            "publish",
            "--cluster",
            &url,
            "--cluster-prefix",
            PREFIX,
        ];
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        for f in &files {
            args.extend(["--exports", f.as_str()]);
        }
        self.xdp_mountd(&args)
    }

    /// Publishes and returns the generation printed (`published generation N (K exports)`).
    pub fn publish_ok(&self, files: &[&Path]) -> u64 {
        let out = self
            .publish(files)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test));
        assert_eq!(
            out.code,
            Some(0),
            "[{}] publish failed: {}{}",
            self.test,
            out.stdout,
            out.stderr
        );
        parse_published(&out.stdout)
            .unwrap_or_else(|| panic!("[{}] publish printed {:?}", self.test, out.stdout))
    }

    /// `xdp-mountd cluster status --json`, parsed.
    pub fn status(&self) -> Result<serde_json::Value> {
        let url = self.etcd.url();
        let out = self.xdp_mountd(&[
            "cluster",
            "status",
            "--cluster",
            &url,
            "--cluster-prefix",
            PREFIX,
            "--json",
        ])?;
        if out.code != Some(0) {
            bail!("cluster status failed: {}{}", out.stdout, out.stderr);
        }
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("cluster status --json printed {:?}", out.stdout))
    }

    /// Runs `f` on a thread in the client namespace (sockets made there stay there).
    pub fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.bed
            .in_client(f)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test))
    }

    /// Runs a tool in the client namespace under `timeout 20`.
    pub fn run_client(&self, argv: &[&str]) -> CmdOutput {
        self.bed
            .client_output(argv, 20)
            .unwrap_or_else(|e| panic!("[{}] {e:#}", self.test))
    }

    /// Polls `cond` every 50 ms until it holds; how long that took, or a panic naming
    /// `what` after `limit`.
    pub fn within(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if cond() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "[{}] not within {limit:?}: {what}",
                self.test
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every running node's logs, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .flatten()
            .map(|n| format!("--- node {} ---\n{}", n.name, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("[{}] node logs:\n{}", self.test, self.logs());
        }
        // Daemons first (they detach XDP and leave etcd), then etcd, then the namespaces.
        for n in self.nodes.iter_mut() {
            if let Some(mut d) = n.take() {
                let _ = d.stop();
            }
        }
    }
}

/// N from `published generation N (K exports)`.
pub fn parse_published(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("published generation "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_published_generation() {
        assert_eq!(
            parse_published("published generation 42 (3 exports)\n"),
            Some(42)
        );
        assert_eq!(
            parse_published("warning: x\npublished generation 7 (1 exports)"),
            Some(7)
        );
        assert_eq!(parse_published("nothing"), None);
    }
}
