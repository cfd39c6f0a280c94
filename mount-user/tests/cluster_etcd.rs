//! Cluster mode against a real etcd (`etcd --unsafe-no-fsync` on loopback ports, in a
//! scratch directory) with two real daemons (kernel sockets, `--no-rpcbind`): a publish
//! reaches both; a MNT via one is in the other's DUMP; a UMNT via the other removes it
//! everywhere; a (host, dir) mounted via both stays until the last UMNT; with etcd killed
//! both keep answering; restarted, they converge; a node started without etcd serves its
//! cached exports. Skips loudly without etcd (Debian etcd-server); with CI=true that fails.
//! Every wait is bounded.
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mount_proto::mount::client::{accepted_results, encode_path_call};
use mount_proto::mount::{procs, MOUNT_PROGRAM};
use mount_proto::rpc::{encode_call, Credential};
use mount_proto::xdr::Reader;
use testbed::etcd::Etcd;
use testbed::{Process, Scratch, Spawn};

const BIN: &str = env!("CARGO_BIN_EXE_xdp-mountd");
const PREFIX: &str = "/t";
/// Bound on every convergence wait (the contract's is 1 s; slack for a loaded machine).
const CONVERGE: Duration = Duration::from_secs(5);

/// Whether etcd is installed; else a loud skip (a failure under CI=true).
fn have_etcd() -> bool {
    let found = Command::new("etcd").arg("--version").output().is_ok();
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "etcd is not installed (apt-get install etcd-server; cargo xtask setup does it)"
        );
        eprintln!("\n*** SKIPPED: cluster_etcd needs etcd (apt-get install etcd-server) ***\n");
    }
    found
}

/// One etcd member on loopback, data under `dir`, healthy (the test bed's launcher).
fn start_etcd(dir: &Path) -> Etcd {
    Etcd::single(None, Ipv4Addr::LOCALHOST.into(), dir).expect("starting etcd")
}

fn xdp_mountd(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running xdp-mountd")
}

fn publish(url: &str, file: &Path) -> std::process::Output {
    let path = file.to_str().expect("utf-8 path");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = xdp_mountd(&[
            "cluster",
            "publish",
            "--cluster",
            url,
            "--cluster-prefix",
            PREFIX,
            "--exports",
            path,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // etcd may still be electing itself leader right after it listens.
        if out.status.success() || !stderr.contains("etcd") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Node {
    process: Process,
    addr: SocketAddr,
    socket: PathBuf,
}

/// A cluster node; DUMP lists over UDP to loopback are whole (no amplification cap).
fn start_node(dir: &Path, url: &str, name: &str) -> Node {
    start_gateway_node(dir, url, name, &["--trusted-networks", "127.0.0.0/8"])
}

/// One UDP call; the results, or None when nothing came back in 2 s.
fn call(to: SocketAddr, proc_: u32, path: Option<&str>) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let xid = rand_xid();
    let mut buf = [0u8; 2048];
    let len = match path {
        Some(p) => encode_path_call(&mut buf, xid, MOUNT_PROGRAM, 3, proc_, p, "client"),
        None => encode_call(
            &mut buf,
            xid,
            MOUNT_PROGRAM,
            3,
            proc_,
            &Credential::None,
            &[],
        ),
    }
    .ok()?;
    let mut reply = [0u8; 65536];
    for _ in 0..4 {
        sock.send_to(&buf[..len], to).ok()?;
        if let Ok(n) = sock.recv(&mut reply) {
            return accepted_results(&reply[..n], xid).ok().map(<[u8]>::to_vec);
        }
    }
    None
}

fn rand_xid() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0x5eed);
    NEXT.fetch_add(1, Ordering::Relaxed) ^ std::process::id().rotate_left(16)
}

/// MNT v3 status (0: mounted).
fn mnt(node: &Node, path: &str) -> u32 {
    let res = call(node.addr, procs::MNT, Some(path)).expect("MNT answered");
    Reader::new(&res).u32().expect("mountstat3")
}

fn umnt(node: &Node, path: &str) {
    call(node.addr, procs::UMNT, Some(path)).expect("UMNT answered");
}

/// DUMP as (host, dir) pairs.
fn dump(node: &Node) -> Vec<(String, String)> {
    let res = call(node.addr, procs::DUMP, None).expect("DUMP answered");
    let mut r = Reader::new(&res);
    let mut out = Vec::new();
    while r.bool().expect("list flag") {
        let host = String::from_utf8_lossy(r.string(255).expect("host")).into_owned();
        let dir = String::from_utf8_lossy(r.string(1024).expect("dir")).into_owned();
        out.push((host, dir));
    }
    out
}

fn entry(dir: &str) -> (String, String) {
    ("127.0.0.1".to_string(), dir.to_string())
}

/// Polls `f` until it holds, at most [`CONVERGE`]; returns how long it took.
fn converge(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < CONVERGE,
            "{what}: not within {CONVERGE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    eprintln!("{what}: {took:?}");
    took
}

fn stats(node: &Node) -> serde_json::Value {
    let out = xdp_mountd(&["stats", "--json", "--socket", node.socket.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("stats JSON")
}

#[test]
fn two_nodes_share_exports_and_mounts_through_etcd() {
    if !have_etcd() {
        return;
    }
    let scratch = Scratch::create(
        &format!("xmd-cluster-etcd-{}", std::process::id()),
        "cluster_etcd",
    )
    .expect("scratch");
    let dir = scratch.path();
    let mut etcd = start_etcd(dir);
    let url = etcd.url();

    // A bad set is refused with check's file:line and writes nothing.
    let exports = dir.join("exports");
    std::fs::write(&exports, "/srv/a *(rw,insecure)\n/srv/x *(bogus)\n").unwrap();
    let out = publish(&url, &exports);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exports:2: unknown option"), "{stderr}");
    std::fs::write(&exports, "/srv/a *(rw,insecure)\n").unwrap();
    let out = publish(&url, &exports);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.starts_with("published generation ") && stdout.contains("(1 exports)"),
        "{stdout}"
    );

    let a = start_node(dir, &url, "a");
    let b = start_node(dir, &url, "b");
    assert_eq!(mnt(&a, "/srv/a"), 0, "the published export serves on a");
    assert_eq!(mnt(&b, "/srv/b"), 2, "/srv/b is not published: NOENT");

    // MNT via a is in b's DUMP; UMNT via b removes it from a's.
    converge("MNT via a in b's DUMP", || {
        dump(&b).contains(&entry("/srv/a"))
    });
    umnt(&b, "/srv/a");
    converge("UMNT via b gone from a's DUMP", || dump(&a).is_empty());
    assert!(dump(&b).is_empty());

    // Mounted via both: one UMNT leaves it listed, the second removes it.
    assert_eq!(mnt(&a, "/srv/a"), 0);
    assert_eq!(mnt(&b, "/srv/a"), 0);
    converge("both holders written", || {
        stats(&a)["cluster"]["pending_ops"] == 0 && stats(&b)["cluster"]["pending_ops"] == 0
    });
    std::thread::sleep(Duration::from_millis(300));
    umnt(&a, "/srv/a");
    std::thread::sleep(Duration::from_millis(500));
    converge("still listed after one of two UMNTs", || {
        dump(&a) == [entry("/srv/a")] && dump(&b) == [entry("/srv/a")]
    });
    umnt(&a, "/srv/a");
    converge("gone after the second UMNT", || {
        dump(&a).is_empty() && dump(&b).is_empty()
    });

    // A new set reaches both nodes.
    std::fs::write(&exports, "/srv/a *(rw,insecure)\n/srv/b *(rw,insecure)\n").unwrap();
    let out = publish(&url, &exports);
    assert!(out.status.success(), "{out:?}");
    let generation: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .expect("generation N");
    converge("new exports on both", || {
        mnt(&a, "/srv/b") == 0 && mnt(&b, "/srv/b") == 0
    });
    converge("status shows both nodes at the new generation", || {
        let out = xdp_mountd(&[
            "cluster",
            "status",
            "--cluster",
            &url,
            "--cluster-prefix",
            PREFIX,
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["published_generation"] == generation
            && v["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["generation"] == generation))
    });
    umnt(&a, "/srv/b");
    umnt(&b, "/srv/b");
    converge("clean before the outage", || {
        dump(&a).is_empty() && dump(&b).is_empty()
    });

    // etcd gone: both keep answering from local state, and say so.
    etcd.kill_all();
    assert_eq!(mnt(&a, "/srv/b"), 0, "a answers without etcd");
    assert_eq!(mnt(&b, "/srv/a"), 0, "b answers without etcd");
    assert_eq!(dump(&a), [entry("/srv/b")], "a's own MNT, locally");
    converge("a sees etcd gone", || {
        stats(&a)["cluster"]["etcd_connected"] == false
    });
    assert!(stats(&a)["cluster"]["pending_ops"].as_u64() > Some(0));

    // etcd back: the held writes land and both converge.
    etcd.restart_all().expect("etcd restarted");
    converge("converged after etcd returned", || {
        let want = [entry("/srv/a"), entry("/srv/b")];
        dump(&a) == want && dump(&b) == want
    });
    // Nothing was dropped: the watch resumed where it broke, no second full read.
    assert_eq!(stats(&a)["cluster"]["resyncs"], 1);

    // A node that starts without etcd serves the exports it cached.
    drop(a);
    drop(etcd);
    let c = start_node(dir, &url, "a");
    assert_eq!(mnt(&c, "/srv/b"), 0, "served from the cache");
    assert!(c.process.log().contains("serving the cached exports"));
    drop(b);
}

/// MNT v3 via `node`: the handle, hex (None: a non-zero status).
fn mnt_handle(node: &Node, path: &str) -> Option<String> {
    let res = call(node.addr, procs::MNT, Some(path))?;
    let mut r = Reader::new(&res);
    (r.u32().ok()? == 0).then_some(())?;
    Some(hex::encode(r.opaque(64).ok()?))
}

#[test]
fn gateway_handles_are_shared_and_a_change_upstream_reaches_every_node() {
    if !have_etcd() {
        return;
    }
    let scratch = Scratch::create(
        &format!("xmd-cluster-gw-{}", std::process::id()),
        "cluster_etcd gateway",
    )
    .expect("scratch");
    let dir = scratch.path();
    let etcd = start_etcd(dir);
    let url = etcd.url();

    // Upstream: a standalone daemon whose export has an explicit handle.
    let up_exports = dir.join("upstream.exports");
    std::fs::write(&up_exports, "/srv/g *(rw,insecure,fh=0a0b0c0d)\n").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--exports"])
        .arg(&up_exports)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--no-rpcbind",
            "--udp-workers",
            "1",
        ])
        .arg("--stats-socket")
        .arg(dir.join("upstream.sock"));
    let mut upstream = Process::spawn(cmd, Spawn::new("upstream", dir.join("upstream.log")))
        .expect("starting the upstream daemon");
    upstream
        .wait_ready(Duration::from_secs(15))
        .expect("upstream READY");
    let up_addr = upstream
        .stdout()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("udp=").map(str::to_owned))
        .expect("upstream address");

    let exports = dir.join("exports");
    std::fs::write(&exports, "/srv/g *(rw,insecure)\n").unwrap();
    assert!(publish(&url, &exports).status.success());
    let gateway = ["--upstream", up_addr.as_str(), "--upstream-ttl", "4"];
    let a = start_gateway_node(dir, &url, "a", &gateway);
    // Started a second later, b's refreshes fall due after a's: a asks upstream, b adopts.
    std::thread::sleep(Duration::from_secs(1));
    let b = start_gateway_node(dir, &url, "b", &gateway);
    assert_eq!(mnt_handle(&a, "/srv/g").as_deref(), Some("0a0b0c0d"));
    assert_eq!(mnt_handle(&b, "/srv/g").as_deref(), Some("0a0b0c0d"));

    // The handle changes upstream: every node serves the new one (refresh after TTL/2).
    std::fs::write(&up_exports, "/srv/g *(rw,insecure,fh=01020304)\n").unwrap();
    upstream.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ha, hb) = (mnt_handle(&a, "/srv/g"), mnt_handle(&b, "/srv/g"));
        if ha.as_deref() == Some("01020304") && hb.as_deref() == Some("01020304") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new handle not on both: a {ha:?} b {hb:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // At least one node took it from the other instead of asking upstream itself.
    let adopted = |n: &Node| stats(n)["cluster"]["handles_adopted"].as_u64().unwrap_or(0);
    let (aa, ab) = (adopted(&a), adopted(&b));
    eprintln!("handles adopted: a {aa}, b {ab}");
    assert!(aa + ab >= 1, "no handle shared through etcd");
    drop((a, b, upstream, etcd));
}

/// A cluster node with `extra` serve options.
fn start_gateway_node(dir: &Path, url: &str, name: &str, extra: &[&str]) -> Node {
    let socket = dir.join(format!("{name}.sock"));
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--cluster",
        url,
        "--node",
        name,
        "--cluster-prefix",
        PREFIX,
    ])
    .arg("--cluster-cache")
    .arg(dir.join(format!("{name}.cache")))
    .args(["--bind", "127.0.0.1", "--port", "0", "--no-rpcbind"])
    .args(["--udp-workers", "1", "--stats-socket"])
    .arg(&socket)
    .args(extra);
    let mut process = Process::spawn(cmd, Spawn::new(name, dir.join(format!("{name}.log"))))
        .expect("starting xdp-mountd");
    process
        .wait_ready(Duration::from_secs(15))
        .expect("daemon READY");
    let ready = process.stdout();
    let addr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("udp="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no udp= on the READY line: {ready}"));
    Node {
        process,
        addr,
        socket,
    }
}

/// Keys under `prefix` in the etcd at `endpoint`, or None when it does not answer.
fn etcd_count(endpoint: &str, prefix: &str) -> Option<i64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let mut client = mount_user::cluster::connect(endpoint).await.ok()?;
        let options = etcd_client::GetOptions::new()
            .with_prefix()
            .with_count_only();
        let resp = tokio::time::timeout(Duration::from_secs(2), client.get(prefix, Some(options)))
            .await
            .ok()?
            .ok()?;
        Some(resp.count())
    })
}

#[test]
fn ops_dropped_while_etcd_is_away_are_restored_when_it_returns() {
    use mount_proto::mountlist::{Limits, MountList};
    use mount_user::cluster::mounts::{PENDING, QUEUE};
    use mount_user::cluster::{Cluster, Config, Deps, Keys};
    use std::sync::Arc;

    if !have_etcd() {
        return;
    }
    let scratch = Scratch::create(
        &format!("xmd-cluster-drop-{}", std::process::id()),
        "cluster_etcd drops",
    )
    .expect("scratch");
    let dir = scratch.path();
    // Started for its ports and data directory, then stopped until the drops are made.
    let mut etcd = start_etcd(dir);
    etcd.kill_all();
    let endpoint = format!("http://{}", etcd.endpoints()[0]);
    let mounts = Arc::new(MountList::with_limits(Limits {
        per_host: 16,
        total: 200_000,
    }));
    let config = Config {
        endpoints: vec![endpoint.clone()],
        node: "solo".into(),
        keys: Keys::new(PREFIX),
        cache: dir.join("solo.cache"),
    };
    let deps = Deps {
        mounts: mounts.clone(),
        install: Arc::new(|_, _| true),
        upstream: None,
    };
    let cluster = Cluster::start(config, deps, 0).expect("cluster task");
    // etcd not started yet: more distinct MNTs than the queue and the pending writes hold.
    let n = QUEUE + PENDING + 1000;
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).unwrap());
        mounts.mnt(ip.into(), "/srv/a");
    }
    assert_eq!(mounts.len(), n, "every MNT applies locally at once");
    converge("ops dropped", || cluster.report().dropped_ops > 0);
    eprintln!("dropped: {}", cluster.report().dropped_ops);

    etcd.restart_all().expect("etcd started");
    let want = i64::try_from(n).unwrap();
    let mounts_prefix = Keys::new(PREFIX).mounts();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    loop {
        let count = etcd_count(&endpoint, &mounts_prefix);
        if count == Some(want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd holds {count:?} mount keys of {want} after 60 s: {:?}",
            cluster.report()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "all {n} entries in etcd {:?} after etcd returned",
        start.elapsed()
    );
    assert_eq!(mounts.len(), n, "the local list kept them all meanwhile");
    let report = cluster.report();
    assert!(report.etcd_connected && report.resyncs == 1, "{report:?}");
    cluster.stop();
}
