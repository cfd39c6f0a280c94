//! etcd for cluster mode's tests and bench: one member, or a three-member cluster whose
//! leader can be found and killed. Each member runs Debian's `etcd` (3.4) in a namespace
//! the test made (or on the host's loopback), on free ports picked there, with its data
//! directory under the caller's scratch directory and `--unsafe-no-fsync` (a test's data
//! need not survive a power cut, and fsync on a shared CI disk costs seconds per write
//! burst). A member is killed and its directory removed on drop, also when a test panics.
//!
//! Health and leadership are read over plain HTTP (`GET /health`, and the
//! `etcd_server_is_leader` gauge of `GET /metrics`), which every etcd member serves on its
//! client port: no etcdctl and no gRPC client in this crate, which must stay light
//! (xtask builds it on a fresh machine first thing).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::netns;
use crate::process::{Process, Spawn};

/// How long a fresh (or restarted) cluster may take until every live member is healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);
/// Bound of one HTTP exchange with a member.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// One etcd member: its name, ports and data directory; running or stopped.
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    process: Option<Process>,
}

/// A running etcd of one or more members; see the module documentation.
pub struct Etcd {
    ns: Option<String>,
    members: Vec<Member>,
    token: String,
}

/// A free TCP port on `addr`, in namespace `ns` (or the host's): bound and let go. Another
/// process could take it in between, which inside a test's private namespace nothing does.
pub fn free_port(ns: Option<&str>, addr: IpAddr) -> Result<u16> {
    let pick = move || -> Result<u16> {
        let l = TcpListener::bind(SocketAddr::new(addr, 0))
            .with_context(|| format!("binding a free port on {addr}"))?;
        Ok(l.local_addr()?.port())
    };
    match ns {
        Some(ns) => netns::run(ns, pick)?,
        None => pick(),
    }
}

/// One HTTP/1.0 exchange with `at` from namespace `ns`: (status code, body).
pub fn http(
    ns: Option<&str>,
    at: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {at}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = move || -> Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&at, HTTP_TIMEOUT)
            .with_context(|| format!("connecting to {at}"))?;
        s.set_read_timeout(Some(HTTP_TIMEOUT))?;
        s.set_write_timeout(Some(HTTP_TIMEOUT))?;
        s.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .with_context(|| format!("reading {path} from {at}"))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("{at}{path}: no HTTP status line in {head:?}"))?;
        Ok((code, body.to_string()))
    };
    match ns {
        Some(ns) => netns::run(ns, exchange)?,
        None => exchange(),
    }
}

impl Etcd {
    /// One member on `addr` in `ns` (None: the host), data under `dir`; waits until healthy.
    pub fn single(ns: Option<&str>, addr: IpAddr, dir: &Path) -> Result<Etcd> {
        Etcd::start(ns, addr, dir, 1)
    }

    /// A cluster of `n` members (3 for the leader-failure case), all on `addr` (ports
    /// differ) in `ns`, data under `dir`; waits until every member is healthy.
    pub fn cluster(ns: Option<&str>, addr: IpAddr, dir: &Path, n: usize) -> Result<Etcd> {
        Etcd::start(ns, addr, dir, n)
    }

    fn start(ns: Option<&str>, addr: IpAddr, dir: &Path, n: usize) -> Result<Etcd> {
        if n == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("xmd-{}-{seq}", std::process::id());
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("{token}-m{i}");
            members.push(Member {
                client: SocketAddr::new(addr, free_port(ns, addr)?),
                peer: SocketAddr::new(addr, free_port(ns, addr)?),
                data_dir: dir.join(format!("etcd-{name}")),
                log: dir.join(format!("etcd-{name}.log")),
                name,
                process: None,
            });
        }
        let mut etcd = Etcd {
            ns: ns.map(String::from),
            members,
            token,
        };
        for i in 0..n {
            etcd.spawn(i)?;
        }
        etcd.wait_healthy(HEALTHY_WITHIN)?;
        Ok(etcd)
    }

    /// `--initial-cluster`: every member's name and peer URL.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let initial = self.initial_cluster();
        let m = &self.members[i];
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = netns::command(ns);
                c.arg("etcd");
                c
            }
            None => std::process::Command::new("etcd"),
        };
        let client = format!("http://{}", m.client);
        let peer = format!("http://{}", m.peer);
        cmd.args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--unsafe-no-fsync",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ]);
        let process = Process::spawn(
            cmd,
            Spawn {
                name: format!("etcd {}", m.name),
                log: Some(m.log.clone()),
                capture_stdout: false,
                own_group: false,
            },
        )?;
        self.members[i].process = Some(process);
        Ok(())
    }

    /// How many members it has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has no member (never: [`Etcd::single`] and [`Etcd::cluster`] make one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client address, running or not (what a daemon is told).
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client).collect()
    }

    /// `etcd://HOST:PORT[,HOST:PORT…]`, the `--cluster` argument of xdp-mountd.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.endpoints().iter().map(|a| a.to_string()).collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Whether member `i` is running.
    pub fn running(&mut self, i: usize) -> bool {
        self.members[i].process.as_mut().is_some_and(|p| p.alive())
    }

    /// Whether member `i` answers `GET /health` with `"health":"true"`.
    pub fn healthy(&self, i: usize) -> bool {
        matches!(
            http(self.ns.as_deref(), self.members[i].client, "GET", "/health", ""),
            Ok((200, body)) if body.contains("\"health\":\"true\"")
        )
    }

    /// Waits up to `limit` until every running member is healthy (which needs a leader).
    pub fn wait_healthy(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut all = true;
            for i in 0..self.members.len() {
                if let Some(p) = self.members[i].process.as_mut() {
                    p.check_alive()?;
                    all &= self.healthy(i);
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("{}:\n{}", m.name, crate::process::tail(&m.log, 10)))
                    .collect();
                bail!("etcd not healthy within {limit:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the member that is leader now (its `etcd_server_is_leader` gauge is
    /// 1), waiting up to 10 s for an election to finish.
    pub fn leader(&mut self) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for i in 0..self.members.len() {
                if !self.running(i) {
                    continue;
                }
                let Ok((200, metrics)) = http(
                    self.ns.as_deref(),
                    self.members[i].client,
                    "GET",
                    "/metrics",
                    "",
                ) else {
                    continue;
                };
                if metrics
                    .lines()
                    .any(|l| l.trim() == "etcd_server_is_leader 1")
                {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!("no etcd member reports itself leader within 10 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills member `i` (SIGKILL: a crash, no leadership hand-over) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.kill();
        }
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts member `i` again on its data directory and ports (it rejoins its cluster).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        if self.running(i) {
            return Ok(());
        }
        self.spawn(i)
    }

    /// Starts every stopped member again and waits until all are healthy.
    pub fn restart_all(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            self.restart(i)?;
        }
        self.wait_healthy(HEALTHY_WITHIN)
    }

    /// The store's current revision, read through member `i`'s JSON gateway (a range
    /// read of an empty key; its header carries the revision).
    pub fn revision(&self, i: usize) -> Result<u64> {
        let (code, body) = http(
            self.ns.as_deref(),
            self.members[i].client,
            "POST",
            "/v3/kv/range",
            r#"{"key":"AA=="}"#,
        )?;
        if code != 200 {
            bail!("etcd range read: HTTP {code}: {body}");
        }
        // {"header":{"cluster_id":"…","member_id":"…","revision":"42",…}}: the gateway
        // writes 64-bit integers as strings.
        let rev = body
            .split("\"revision\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|r| r.parse().ok())
            .with_context(|| format!("no revision in {body}"))?;
        Ok(rev)
    }

    /// The last lines of member `i`'s log, for messages.
    pub fn log_tail(&self, i: usize) -> String {
        crate::process::tail(&self.members[i].log, 20)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
        for m in &self.members {
            let _ = std::fs::remove_dir_all(&m.data_dir);
        }
    }
}
