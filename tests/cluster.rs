//! Cluster mode (`serve --cluster`, issue 12) end to end: three xdp-mountd nodes, each in
//! its own namespace with the AF_XDP path on (`--iface up0 --xdp native`), behind one
//! service address that the client reaches by ECMP (source-port hashing), sharing exports,
//! learned handles and the mount list through etcd in a backbone namespace.
//!
//! Calls meant for one node go to that node's own address, from the client's one address
//! (what every node sees as the client); calls to the service address land wherever the
//! ECMP hash sends them. Every wait is bounded; etcd and the namespaces go on drop.
//!
//! When etcd fails (leader loss, outage): `cluster_failover.rs`. The tests choose their
//! own data path, so under `cargo xtask test` they run in the suite's first pass only (see
//! `e2e::cluster::can_run`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::cluster::{afxdp_calls, cluster_part, generation, Cluster};
use e2e::cluster_ops::{client_to, counter, entry, exports, CLIENT, NODES};
use e2e::ganesha::{Ganesha, SharedRpcbind, GANESHA_MNT_PORT, GANESHA_MNT_PROG, NFS_PORT};
use e2e::{status, Call, RpcClient, PORT};

#[test]
fn ecmp_spreads_calls_and_the_mount_list_is_one_list() {
    let Some(mut c) = Cluster::for_test("cluster_mount_list", NODES, 1) else {
        return;
    };
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
    assert_eq!(c.mnt_via(0, "/srv/c1").0, status::OK);
    let t = c.within(
        "node 2 lists the mount made via node 0",
        Duration::from_secs(2),
        || c.dump_via(2).contains(&entry("/srv/c1")),
    );
    eprintln!("MNT via node 0 seen in node 2's DUMP after {t:?}");

    // UMNT via node 1 of that mount: gone from every node's DUMP within 1 s.
    c.umnt_via(1, "/srv/c1");
    let t = c.within(
        "UMNT via node 1 reaches every DUMP",
        Duration::from_secs(1),
        || c.dumps().iter().all(|d| !d.contains(&entry("/srv/c1"))),
    );
    eprintln!("UMNT via node 1 gone from every DUMP after {t:?}");

    // Mounted via two nodes, unmounted via one: stays until the last UMNT. Node 1's MNT
    // is given time to be written (batches go every 100 ms) before its UMNT.
    assert_eq!(c.mnt_via(0, "/srv/c2").0, status::OK);
    c.within(
        "node 0's mount of /srv/c2 everywhere",
        Duration::from_secs(2),
        || c.dumps().iter().all(|d| d.contains(&entry("/srv/c2"))),
    );
    assert_eq!(c.mnt_via(1, "/srv/c2").0, status::OK);
    std::thread::sleep(Duration::from_millis(500));
    c.umnt_via(1, "/srv/c2");
    c.assert_all_still_list(
        "/srv/c2",
        Duration::from_millis(1500),
        "after one of its two UMNTs",
    );
    // showmount -a on the service address agrees (whichever node answers).
    let out = c.run_client(&["showmount", "-a", "--no-headers", "10.79.100.1"]);
    assert_eq!(out.code, Some(0), "showmount -a: {}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("{CLIENT}:/srv/c2"),
        "{}",
        out.stdout
    );
    c.umnt_via(2, "/srv/c2");
    c.within(
        "the last UMNT reaches every DUMP",
        Duration::from_secs(1),
        || c.dumps().iter().all(|d| d.is_empty()),
    );
    let out = c.run_client(&["showmount", "-a", "--no-headers", "10.79.100.1"]);
    assert_eq!(out.code, Some(0), "showmount -a: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "", "{}", out.stdout);
}

#[test]
fn a_quick_mount_and_unmount_through_one_node_leaves_another_nodes_mount() {
    let Some(mut c) = Cluster::for_test("cluster_quick_umnt", NODES, 1) else {
        return;
    };
    let file = c.write_file("exports", &exports(&["/srv/q"]));
    c.publish_ok(&[&file]);
    c.start_all(&[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(c.mnt_via(0, "/srv/q").0, status::OK);
    c.within("node 0's mount everywhere", Duration::from_secs(2), || {
        c.dumps().iter().all(|d| d.contains(&entry("/srv/q")))
    });
    // Through node 2, MNT then UMNT at once (both in one 100 ms batch): node 0 still
    // holds its mount, so every node, node 2 included, still lists it.
    assert_eq!(c.mnt_via(2, "/srv/q").0, status::OK);
    c.umnt_via(2, "/srv/q");
    c.assert_all_still_list(
        "/srv/q",
        Duration::from_millis(1500),
        "that node 0 still holds, after a MNT and UMNT through node 2",
    );
    // The last UMNT, through a node that never saw the MNT: gone everywhere within 1 s.
    c.umnt_via(1, "/srv/q");
    c.within(
        "the last UMNT reaches every DUMP",
        Duration::from_secs(1),
        || c.dumps().iter().all(|d| d.is_empty()),
    );
}

#[test]
fn publish_reaches_every_node_and_a_bad_file_writes_nothing() {
    let Some(mut c) = Cluster::for_test("cluster_publish", NODES, 1) else {
        return;
    };
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
    let Some(mut c) = Cluster::for_test("cluster_gateway", NODES, 1) else {
        return;
    };
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
        let (st, fh) = c.mnt_via(i, &path);
        assert_eq!((st, &fh), (status::OK, &theirs), "node {i}");
    }

    // A subdirectory learned by one node is known to the others without asking upstream.
    let sub = format!("{path}/sub");
    let (st, sub_fh) = c.mnt_via(0, &sub);
    assert_eq!(st, status::OK);
    std::thread::sleep(Duration::from_secs(1));
    let calls = |i: usize| counter(&c.node(i).stats().unwrap()["upstream"]["calls"]);
    let before: Vec<u64> = (1..NODES).map(calls).collect();
    for i in 1..NODES {
        assert_eq!(c.mnt_via(i, &sub), (status::OK, sub_fh.clone()), "node {i}");
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
    let Some(mut c) = Cluster::for_test("cluster_standalone", NODES, 1) else {
        return;
    };
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
    assert_eq!(c.mnt_via(0, "/srv/s1").0, status::OK);
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.dump_via(0).contains(&entry("/srv/s1")));
    assert!(c.dump_via(1).is_empty() && c.dump_via(2).is_empty());
    for i in 0..NODES {
        let s = c.node(i).stats().unwrap();
        assert!(
            s["cluster"].is_null(),
            "standalone node {i} reports a cluster part: {s}"
        );
    }
}
