//! Cluster mode (`serve --cluster`, issue 12) end to end: three xdp-mountd nodes, each in
//! its own namespace with the AF_XDP path on (`--iface up0 --xdp native`), behind one
//! service address that the client reaches by ECMP (source-port hashing), sharing exports,
//! learned handles and the mount list through etcd in a backbone namespace.
//!
//! Calls meant for one node go to that node's own address, from the client's one address
//! (what every node sees as the client); calls to the service address land wherever the
//! ECMP hash sends them. Every wait is bounded; etcd and the namespaces go on drop.
//!
//! The tests choose their own data path, so under `cargo xtask test` they run in the
//! suite's first pass only (see `e2e::cluster::can_run`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::cluster::{afxdp_calls, cluster_part, generation, Cluster};
use e2e::ganesha::{Ganesha, SharedRpcbind, GANESHA_MNT_PORT, GANESHA_MNT_PROG, NFS_PORT};
use e2e::{status, Call, RpcClient, UdpClient, PORT};

/// Nodes in every test's cluster.
const NODES: usize = 3;
/// What the client is called in the nodes' mount lists.
const CLIENT: &str = "10.79.200.1";

/// The exports every test publishes: `dirs` to the bed's networks, `insecure` so storm
/// (unprivileged source ports) may mount too.
fn exports(dirs: &[&str]) -> String {
    dirs.iter()
        .map(|d| format!("{d} 10.79.0.0/16(rw,insecure)\n"))
        .collect()
}

/// A UDP client in the client namespace, from the client's address, to `to`. Must be
/// made inside [`Cluster::in_client`].
fn client_to(to: SocketAddr) -> RpcClient {
    let from = SocketAddr::new(testbed::ecmp::CLIENT.into(), 0);
    RpcClient::Udp(UdpClient::bind_to(to, from).expect("binding the client's address"))
}

/// DUMP (v3) through node `i`, as a set of (host, dir).
fn dump_via(c: &Cluster, i: usize) -> BTreeSet<(String, String)> {
    let to = c.node_addr(i);
    c.in_client(|| client_to(to).dump(3).into_iter().collect())
}

/// MNT v3 of `path` through node `i`: (status, handle).
fn mnt_via(c: &Cluster, i: usize, path: &str) -> (u32, Option<Vec<u8>>) {
    let to = c.node_addr(i);
    c.in_client(|| {
        let (st, ok) = client_to(to).mnt3(path);
        (st, ok.map(|(fh, _)| fh))
    })
}

/// UMNT v3 of `path` through node `i`.
fn umnt_via(c: &Cluster, i: usize, path: &str) {
    let to = c.node_addr(i);
    c.in_client(|| client_to(to).umnt(3, path));
}

/// The (client, dir) entry of a mount of `dir`.
fn entry(dir: &str) -> (String, String) {
    (CLIENT.to_string(), dir.to_string())
}

/// Every node's DUMP.
fn dumps(c: &Cluster) -> Vec<BTreeSet<(String, String)>> {
    (0..NODES).map(|i| dump_via(c, i)).collect()
}

/// A stats value as u64 (0 when absent), for counters that must move.
fn counter(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

macro_rules! cluster_or_skip {
    ($name:literal, $members:expr) => {{
        if !e2e::cluster::can_run($name) {
            return;
        }
        Cluster::new($name, NODES, $members)
            .unwrap_or_else(|e| panic!("[{}] setting up the cluster: {e:#}", $name))
    }};
}

#[test]
fn ecmp_spreads_calls_and_the_mount_list_is_one_list() {
    let mut c = cluster_or_skip!("cluster_mount_list", 1);
    let file = c.write_file("exports", &exports(&["/srv/c1", "/srv/c2"]));
    c.publish_ok(&[&file]);
    c.start_all(&[]).unwrap_or_else(|e| panic!("{e:#}"));

    // ECMP really spreads: 60 NULL calls to the service address, each from a new source
    // port, reach every node (read from each node's own AF_XDP counters).
    let before: Vec<u64> = (0..NODES)
        .map(|i| afxdp_calls(&c.node(i).stats().unwrap()))
        .collect();
    let service = c.service_addr();
    c.in_client(|| {
        for _ in 0..60 {
            client_to(service).null(3);
        }
    });
    let grew: Vec<u64> = (0..NODES)
        .map(|i| afxdp_calls(&c.node(i).stats().unwrap()) - before[i])
        .collect();
    eprintln!("60 NULL calls to the service address landed per node: {grew:?}");
    assert_eq!(grew.iter().sum::<u64>(), 60, "{grew:?}");
    assert!(grew.iter().all(|&n| n > 0), "ECMP did not spread: {grew:?}");

    // MNT via node 0; DUMP via node 2 lists it.
    assert_eq!(mnt_via(&c, 0, "/srv/c1").0, status::OK);
    let t = c.within(
        "node 2 lists the mount made via node 0",
        Duration::from_secs(2),
        || dump_via(&c, 2).contains(&entry("/srv/c1")),
    );
    eprintln!("MNT via node 0 seen in node 2's DUMP after {t:?}");

    // UMNT via node 1 of that mount: gone from every node's DUMP within 1 s.
    umnt_via(&c, 1, "/srv/c1");
    let t = c.within(
        "UMNT via node 1 reaches every DUMP",
        Duration::from_secs(1),
        || dumps(&c).iter().all(|d| !d.contains(&entry("/srv/c1"))),
    );
    eprintln!("UMNT via node 1 gone from every DUMP after {t:?}");

    // Mounted via two nodes, unmounted via one: stays until the last UMNT. Node 1's MNT
    // is given time to be written (batches go every 100 ms) before its UMNT.
    assert_eq!(mnt_via(&c, 0, "/srv/c2").0, status::OK);
    c.within(
        "node 0's mount of /srv/c2 everywhere",
        Duration::from_secs(2),
        || dumps(&c).iter().all(|d| d.contains(&entry("/srv/c2"))),
    );
    assert_eq!(mnt_via(&c, 1, "/srv/c2").0, status::OK);
    std::thread::sleep(Duration::from_millis(500));
    umnt_via(&c, 1, "/srv/c2");
    let still_listed = |what: &str| {
        std::thread::sleep(Duration::from_millis(1500));
        for (i, d) in dumps(&c).iter().enumerate() {
            assert!(
                d.contains(&entry("/srv/c2")),
                "node {i} lost /srv/c2 {what}: {d:?}"
            );
        }
    };
    still_listed("after one of its two UMNTs");
    // showmount -a on the service address agrees (whichever node answers).
    let out = c.run_client(&["showmount", "-a", "--no-headers", "10.79.100.1"]);
    assert_eq!(out.code, Some(0), "showmount -a: {}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("{CLIENT}:/srv/c2"),
        "{}",
        out.stdout
    );
    umnt_via(&c, 2, "/srv/c2");
    c.within(
        "the last UMNT reaches every DUMP",
        Duration::from_secs(1),
        || dumps(&c).iter().all(|d| d.is_empty()),
    );
    let out = c.run_client(&["showmount", "-a", "--no-headers", "10.79.100.1"]);
    assert_eq!(out.code, Some(0), "showmount -a: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "", "{}", out.stdout);
}

#[test]
fn a_quick_mount_and_unmount_through_one_node_leaves_another_nodes_mount() {
    let mut c = cluster_or_skip!("cluster_quick_umnt", 1);
    let file = c.write_file("exports", &exports(&["/srv/q"]));
    c.publish_ok(&[&file]);
    c.start_all(&[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(mnt_via(&c, 0, "/srv/q").0, status::OK);
    c.within("node 0's mount everywhere", Duration::from_secs(2), || {
        dumps(&c).iter().all(|d| d.contains(&entry("/srv/q")))
    });
    // Through node 2, MNT then UMNT at once (both in one 100 ms batch): node 0 still
    // holds its mount, so every node, node 2 included, still lists it.
    assert_eq!(mnt_via(&c, 2, "/srv/q").0, status::OK);
    umnt_via(&c, 2, "/srv/q");
    std::thread::sleep(Duration::from_millis(1500));
    for (i, d) in dumps(&c).iter().enumerate() {
        assert!(
            d.contains(&entry("/srv/q")),
            "node {i} lost /srv/q that node 0 still holds, after a MNT and UMNT through \
             node 2: {d:?}"
        );
    }
    // The last UMNT, through a node that never saw the MNT: gone everywhere within 1 s.
    umnt_via(&c, 1, "/srv/q");
    c.within(
        "the last UMNT reaches every DUMP",
        Duration::from_secs(1),
        || dumps(&c).iter().all(|d| d.is_empty()),
    );
}

#[test]
fn publish_reaches_every_node_and_a_bad_file_writes_nothing() {
    let mut c = cluster_or_skip!("cluster_publish", 1);
    // `--exports` with `--cluster` is refused, naming the conflict.
    let file = c.write_file("exports", &exports(&["/srv/p1", "/srv/p2"]));
    let url = c.etcd.url();
    let out = c
        .bed
        .backbone_command()
        .args(["timeout", "-k", "1", "5"])
        .arg(e2e::daemon_bin())
        .args([
            "serve",
            "--cluster",
            &url,
            "--node",
            "x",
            "--no-rpcbind",
            "--exports",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.status.code() != Some(124) && stderr.contains("--exports"),
        "serve --cluster --exports: {:?} {stderr}",
        out.status
    );

    // Nodes up before anything is published: they serve an empty table. Metrics on each
    // node's own loopback.
    c.start_all(&["--metrics", "127.0.0.1:9644"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let gen1 = c.publish_ok(&[&file]);
    let t = c.within(
        "every node serves the published generation",
        Duration::from_secs(2),
        || (0..NODES).all(|i| generation(&c.node(i).stats().unwrap()) == Some(gen1)),
    );
    eprintln!("generation {gen1} on every node after {t:?}");
    // A real client sees it on every node and through the service address.
    for target in ["10.79.16.2", "10.79.17.2", "10.79.18.2", "10.79.100.1"] {
        let out = c.run_client(&["showmount", "-e", "--no-headers", target]);
        assert_eq!(out.code, Some(0), "showmount -e {target}: {}", out.stderr);
        let dirs: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            dirs,
            ["/srv/p1", "/srv/p2"],
            "showmount -e {target}: {}",
            out.stdout
        );
    }

    // A second set (a directory of files): a newer generation, everywhere within 2 s.
    let d = c.dir.join("exports.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("a.exports"), exports(&["/srv/p1"])).unwrap();
    std::fs::write(d.join("b.exports"), exports(&["/srv/p3"])).unwrap();
    let gen2 = c.publish_ok(&[&d]);
    assert!(gen2 > gen1, "{gen2} after {gen1}");
    c.within(
        "every node serves the second set",
        Duration::from_secs(2),
        || (0..NODES).all(|i| generation(&c.node(i).stats().unwrap()) == Some(gen2)),
    );
    let out = c.run_client(&["showmount", "-e", "--no-headers", "10.79.100.1"]);
    assert!(
        out.stdout.contains("/srv/p3") && !out.stdout.contains("/srv/p2"),
        "{}",
        out.stdout
    );

    // A bad file: rejected with file:line as `check` says it, nothing written.
    let bad = c.write_file(
        "bad.exports",
        "/srv/ok 10.79.0.0/16(rw)\n/srv/bad *(rw,bogus_option)\n",
    );
    let check = c
        .xdp_mountd(&["check", "--exports", &bad.display().to_string()])
        .unwrap();
    assert_eq!(
        check.code,
        Some(1),
        "check: {}{}",
        check.stdout,
        check.stderr
    );
    let out = c.publish(&[&bad]).unwrap();
    assert_eq!(
        out.code,
        Some(1),
        "publish of a bad file: {}{}",
        out.stdout,
        out.stderr
    );
    let at = format!("{}:2", bad.display());
    assert!(
        out.stderr.contains(&at),
        "publish must name {at}: {}",
        out.stderr
    );
    assert!(
        check.stderr.contains(&at),
        "check must name {at}: {}",
        check.stderr
    );
    std::thread::sleep(Duration::from_millis(500));
    let st = c.status().unwrap();
    assert_eq!(st["published_generation"].as_u64(), Some(gen2), "{st}");
    for i in 0..NODES {
        let s = c.node(i).stats().unwrap();
        assert_eq!(generation(&s), Some(gen2), "node {i}");
    }

    // cluster status: the three nodes, each with the generation it serves (a node
    // rewrites its status every second).
    let mut st = serde_json::Value::Null;
    c.within(
        "cluster status shows every node at the generation",
        Duration::from_secs(3),
        || {
            st = c.status().unwrap();
            st["nodes"].as_array().is_some_and(|ns| {
                ns.len() == NODES && ns.iter().all(|n| n["generation"].as_u64() == Some(gen2))
            })
        },
    );
    let nodes = st["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes: {st}"));
    let names: BTreeSet<&str> = nodes.iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["n0", "n1", "n2"]), "{st}");
    for n in nodes {
        assert_eq!(n["generation"].as_u64(), Some(gen2), "{n}");
        assert_eq!(n["etcd_connected"].as_bool(), Some(true), "{n}");
        assert!(n["pending_ops"].is_u64() && n["lag_ms"].is_u64(), "{n}");
        assert!(
            n["last_contact_unix_ms"].as_u64().unwrap_or(0) > 1_600_000_000_000,
            "{n}"
        );
    }
    // The human form names them too.
    let text = c
        .xdp_mountd(&[
            "cluster",
            "status",
            "--cluster",
            &url,
            "--cluster-prefix",
            e2e::cluster::PREFIX,
        ])
        .unwrap();
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    for name in ["n0", "n1", "n2"] {
        assert!(text.stdout.contains(name), "{}", text.stdout);
    }
    // Each node's stats carry the cluster part, and Prometheus names it.
    let s = c.node(0).stats().unwrap();
    let part = cluster_part(&s);
    assert_eq!(part["node"].as_str(), Some("n0"), "{s}");
    assert_eq!(part["etcd_connected"].as_bool(), Some(true), "{part}");
    let out = testbed::netns::output(
        &c.bed.node(1).ns,
        &["curl", "-sf", "http://127.0.0.1:9644/metrics"],
        10,
    )
    .unwrap();
    assert_eq!(out.code, Some(0), "metrics: {}", out.stderr);
    let want = format!("xdp_mountd_cluster_generation{{node=\"n1\"}} {gen2}");
    assert!(out.stdout.contains(&want), "no {want} in:\n{}", out.stdout);
    assert!(out
        .stdout
        .contains("xdp_mountd_cluster_etcd_connected{node=\"n1\"} 1"));
}

/// Runs a bounded storm against the service address from the client; its JSON report.
fn storm(c: &Cluster, secs: u32, path: &str) -> std::process::Child {
    let json = c.dir.join("storm.json");
    let _ = std::fs::remove_file(&json);
    let mut cmd = testbed::netns::command(&c.bed.client_ns);
    cmd.args(["timeout", "-k", "2", &(secs + 20).to_string()])
        .arg(e2e::daemon_bin())
        .args(["storm", "--target", &c.service_addr().to_string()])
        .args(["--mix", "null=1,mnt3=8,umnt3=1", "--paths", path])
        .args(["--clients", "32", "--window", "8", "--count", "400000"])
        .args(["--duration", &secs.to_string(), "--json"])
        .arg(&json)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("starting xdp-mountd storm")
}

/// Waits for a storm (bounded by its own timeout) and reads its report.
fn storm_report(c: &Cluster, child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("waiting for storm");
    assert!(
        out.status.success(),
        "storm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path: PathBuf = c.dir.join("storm.json");
    let text = std::fs::read_to_string(&path).expect("storm's JSON report");
    serde_json::from_str(&text).expect("storm's report is JSON")
}

#[test]
fn etcd_leader_loss_under_load_loses_no_call() {
    let mut c = cluster_or_skip!("cluster_etcd_leader", 3);
    let file = c.write_file("exports", &exports(&["/srv/f1", "/srv/f2", "/srv/f3"]));
    let gen = c.publish_ok(&[&file]);
    c.start_all(&[]).unwrap_or_else(|e| panic!("{e:#}"));

    // Bounded storm through the service address; the etcd leader dies 2 s in.
    let before: Vec<u64> = (0..NODES)
        .map(|i| afxdp_calls(&c.node(i).stats().unwrap()))
        .collect();
    let child = storm(&c, 6, "/srv/f1");
    std::thread::sleep(Duration::from_secs(2));
    let leader = c.etcd.leader().unwrap();
    c.etcd.kill(leader);
    eprintln!("killed etcd leader (member {leader}) under load");
    let report = storm_report(&c, child);
    eprintln!(
        "storm: {} answered, {} lost, {} wrong, {:.0} calls/s",
        report["answered"],
        report["lost"],
        report["wrong"],
        report["calls_per_sec"].as_f64().unwrap_or(0.0)
    );
    assert_eq!(report["lost"].as_u64(), Some(0), "{report}");
    assert_eq!(report["wrong"].as_u64(), Some(0), "{report}");
    assert!(report["answered"].as_u64().unwrap_or(0) > 1000, "{report}");
    for (i, was) in before.iter().enumerate() {
        let grew = afxdp_calls(&c.node(i).stats().unwrap()) - was;
        assert!(grew > 0, "node {i} got none of the storm");
    }
    for i in 0..NODES {
        let s = c.node(i).stats().unwrap();
        assert_eq!(generation(&s), Some(gen), "node {i}");
    }
}

#[test]
fn mount_list_flows_through_the_surviving_etcd_members() {
    let mut c = cluster_or_skip!("cluster_etcd_survivors", 3);
    let file = c.write_file("exports", &exports(&["/srv/f1", "/srv/f2"]));
    c.publish_ok(&[&file]);
    c.start_all(&[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(mnt_via(&c, 0, "/srv/f1").0, status::OK);
    c.within("a mount reaches every node", Duration::from_secs(2), || {
        dumps(&c).iter().all(|d| d.contains(&entry("/srv/f1")))
    });
    // The leader dies; the other two elect one and take writes (the test bed's own
    // self-test checks that). The dead member's endpoint stays in every node's --cluster
    // list, as it would in a deployment until an operator edits it.
    let leader = c.etcd.leader().unwrap();
    c.etcd.kill(leader);
    let next = c.etcd.leader().unwrap();
    eprintln!("etcd leader {leader} killed, member {next} leads");
    assert_eq!(mnt_via(&c, 1, "/srv/f2").0, status::OK);
    let t = c.within(
        "a mount after the leader change reaches every node through the surviving members",
        Duration::from_secs(10),
        || dumps(&c).iter().all(|d| d.contains(&entry("/srv/f2"))),
    );
    eprintln!("mount via node 1 on every node {t:?} after the leader change");
    for i in 0..NODES {
        let s = c.node(i).stats().unwrap();
        assert_eq!(cluster_part(&s)["etcd_connected"], true, "node {i}: {s}");
    }
}

#[test]
fn etcd_outage_nodes_answer_and_converge_after() {
    let mut c = cluster_or_skip!("cluster_etcd_outage", 1);
    let file = c.write_file("exports", &exports(&["/srv/f1", "/srv/f2", "/srv/f3"]));
    let gen = c.publish_ok(&[&file]);
    c.start_all(&[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(mnt_via(&c, 0, "/srv/f2").0, status::OK);
    c.within("a mount reaches every node", Duration::from_secs(2), || {
        dumps(&c).iter().all(|d| d.contains(&entry("/srv/f2")))
    });

    // etcd gone altogether: every node still answers at once, from local state.
    c.etcd.kill_all();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..NODES {
        let start = Instant::now();
        let (st, _) = mnt_via(&c, i, "/srv/f3");
        assert_eq!(st, status::OK, "node {i} MNT with etcd down");
        assert!(!dump_via(&c, i).is_empty(), "node {i} DUMP with etcd down");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "node {i} waited on etcd: {:?}",
            start.elapsed()
        );
    }
    umnt_via(&c, 1, "/srv/f2");
    c.within("nodes report etcd away", Duration::from_secs(10), || {
        (0..NODES).all(|i| cluster_part(&c.node(i).stats().unwrap())["etcd_connected"] == false)
    });
    // A node started while etcd is away serves the exports it cached.
    if let Some(mut n2) = c.nodes[2].take() {
        n2.stop().unwrap();
    }
    c.start_node(2, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    let out = c.run_client(&["showmount", "-e", "--no-headers", "10.79.18.2"]);
    assert!(
        out.stdout.contains("/srv/f1"),
        "node 2 restarted without etcd: {}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        c.node(2).log().contains("cache"),
        "node 2 must log that it serves from its cache:\n{}",
        c.node(2).log()
    );

    // etcd back: the mount lists converge (f3 mounted via each node, f2 unmounted via
    // node 1 while etcd was away), and each node resynced.
    c.etcd.restart_all().unwrap();
    let t = c.within(
        "mount lists converge after etcd returns",
        Duration::from_secs(10),
        || {
            let d = dumps(&c);
            d.iter().all(|x| *x == d[0])
                && d[0].contains(&entry("/srv/f3"))
                && !d[0].contains(&entry("/srv/f2"))
        },
    );
    eprintln!("mount lists converged {t:?} after etcd was healthy again");
    c.within(
        "every node connected again at the same generation",
        Duration::from_secs(10),
        || {
            (0..NODES).all(|i| {
                let s = c.node(i).stats().unwrap();
                cluster_part(&s)["etcd_connected"] == true && generation(&s) == Some(gen)
            })
        },
    );
    // The outage was counted and logged (the log throttled: a handful of lines, not one
    // per failed attempt).
    for i in 0..2 {
        let s = c.node(i).stats().unwrap();
        assert!(
            counter(&cluster_part(&s)["etcd_errors"]) >= 1,
            "node {i}: {s}"
        );
        let log = c.node(i).log();
        let lines = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("etcd"))
            .count();
        assert!(
            (1..=10).contains(&lines),
            "node {i} logged the outage in {lines} lines:\n{log}"
        );
    }
}

/// The exported directory with a file, a subdirectory and a file in it; the two
/// contents (per run, so a stale read cannot pass).
fn export_dir(c: &Cluster) -> (PathBuf, String, String) {
    let dir = c.dir.join("export");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let nonce = format!("{:?}", Instant::now());
    let (top, inner) = (format!("top {nonce}\n"), format!("inner {nonce}\n"));
    std::fs::write(dir.join("hello.txt"), &top).unwrap();
    std::fs::write(dir.join("sub/inner.txt"), &inner).unwrap();
    (dir, top, inner)
}

#[test]
fn gateway_handles_are_shared_and_libnfs_reads_through_the_service_address() {
    let mut c = cluster_or_skip!("cluster_gateway", 1);
    let (dir, top, inner) = export_dir(&c);
    let path = dir.display().to_string();
    // Ganesha in the backbone, beside its own rpcbind; NFS (TCP 2049) to the service
    // address goes there, MOUNT to the nodes.
    let rpcb = SharedRpcbind::start(&c.bed.backbone_ns, &[c.bed.backbone_addr()])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    let _ganesha = Ganesha::start_at(&c.dir, &rpcb, &dir, 1, any, c.bed.backbone_addr());
    c.bed.bypass_to_backbone("tcp", NFS_PORT).unwrap();
    let file = c.write_file("exports", &exports(&[&path]));
    c.publish_ok(&[&file]);
    let upstream = format!("{}:{GANESHA_MNT_PORT}", c.bed.backbone_addr());
    let prog = GANESHA_MNT_PROG.to_string();
    c.start_all(&["--upstream", &upstream, "--upstream-program", &prog])
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Ganesha's own handle for the root, and every node hands out exactly it.
    let ganesha = SocketAddr::new(c.bed.backbone_addr(), GANESHA_MNT_PORT);
    let theirs = c.in_client(|| {
        let mut call = Call::mount_path(3, e2e::procs::MNT, &path);
        call.prog = GANESHA_MNT_PROG;
        let mut cl = RpcClient::new(e2e::Proto::Udp, ganesha, e2e::SrcPort::Privileged).unwrap();
        let (st, ok) = e2e::parse_mountres3(cl.must(&call).success()).unwrap();
        assert_eq!(st, status::OK, "Ganesha's own MNT");
        ok.map(|(fh, _)| fh)
    });
    for i in 0..NODES {
        let (st, fh) = mnt_via(&c, i, &path);
        assert_eq!((st, &fh), (status::OK, &theirs), "node {i}");
    }

    // A subdirectory learned by one node is known to the others without asking upstream.
    let sub = format!("{path}/sub");
    let (st, sub_fh) = mnt_via(&c, 0, &sub);
    assert_eq!(st, status::OK);
    std::thread::sleep(Duration::from_secs(1));
    let calls = |i: usize| counter(&c.node(i).stats().unwrap()["upstream"]["calls"]);
    let before: Vec<u64> = (1..NODES).map(calls).collect();
    for i in 1..NODES {
        assert_eq!(
            mnt_via(&c, i, &sub),
            (status::OK, sub_fh.clone()),
            "node {i}"
        );
    }
    let after: Vec<u64> = (1..NODES).map(calls).collect();
    assert_eq!(
        before, after,
        "nodes 1 and 2 asked upstream for a handle node 0 had shared"
    );
    for i in 1..NODES {
        let s = c.node(i).stats().unwrap();
        let adopted = counter(&cluster_part(&s)["handles_adopted"]);
        assert!(
            adopted >= 1,
            "node {i} adopted no handle from the others: {s}"
        );
    }

    // libnfs: MOUNT through the service address (ECMP to a node), NFS to Ganesha.
    for (file, want) in [
        (format!("{path}/hello.txt"), &top),
        (format!("{sub}/inner.txt"), &inner),
    ] {
        let url = format!("nfs://10.79.100.1{file}?mountport={PORT}&nfsport={NFS_PORT}&version=3");
        let out = c.run_client(&["nfs-cat", &url]);
        assert_eq!(out.code, Some(0), "nfs-cat {url}: {}", out.stderr);
        assert_eq!(&out.stdout, want);
    }
    drop(rpcb);
}

#[test]
fn standalone_nodes_behind_ecmp_share_nothing() {
    let mut c = cluster_or_skip!("cluster_standalone", 1);
    // Without --cluster each node is today's daemon: its own exports file, its own list.
    let file = c.write_file("exports", &exports(&["/srv/s1"]));
    for i in 0..NODES {
        c.start_standalone(i, &file)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let service = c.service_addr();
    c.in_client(|| {
        for _ in 0..30 {
            client_to(service).null(3);
        }
    });
    let landed: Vec<u64> = (0..NODES)
        .map(|i| afxdp_calls(&c.node(i).stats().unwrap()))
        .collect();
    assert_eq!(landed.iter().sum::<u64>(), 30, "{landed:?}");
    assert!(
        landed.iter().all(|&n| n > 0),
        "ECMP did not spread: {landed:?}"
    );
    assert_eq!(mnt_via(&c, 0, "/srv/s1").0, status::OK);
    std::thread::sleep(Duration::from_millis(500));
    assert!(dump_via(&c, 0).contains(&entry("/srv/s1")));
    assert!(dump_via(&c, 1).is_empty() && dump_via(&c, 2).is_empty());
    for i in 0..NODES {
        let s = c.node(i).stats().unwrap();
        assert!(
            s["cluster"].is_null(),
            "standalone node {i} reports a cluster part: {s}"
        );
    }
}
