//! Cluster mode (`serve --cluster`, issue 12) when etcd fails: the leader killed under
//! storm load through the service address (no call lost), the mount list still flowing
//! through the surviving members, and a whole outage (every node answers from local state
//! at once, a node starts from its cache, the lists converge when etcd returns). The bed
//! is [`e2e::cluster`]'s, as in `cluster.rs`.
//!
//! The tests choose their own data path, so under `cargo xtask test` they run in the
//! suite's first pass only (see `e2e::cluster::can_run`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::cluster::{afxdp_calls, cluster_part, generation, Cluster};
use e2e::cluster_ops::{counter, entry, exports, NODES};
use e2e::status;

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
    let Some(mut c) = Cluster::for_test("cluster_etcd_leader", NODES, 3) else {
        return;
    };
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
    let Some(mut c) = Cluster::for_test("cluster_etcd_survivors", NODES, 3) else {
        return;
    };
    let file = c.write_file("exports", &exports(&["/srv/f1", "/srv/f2"]));
    c.publish_ok(&[&file]);
    c.start_all(&[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(c.mnt_via(0, "/srv/f1").0, status::OK);
    c.within("a mount reaches every node", Duration::from_secs(2), || {
        c.dumps().iter().all(|d| d.contains(&entry("/srv/f1")))
    });
    // The leader dies; the other two elect one and take writes (the test bed's own
    // self-test checks that). The dead member's endpoint stays in every node's --cluster
    // list, as it would in a deployment until an operator edits it.
    let leader = c.etcd.leader().unwrap();
    c.etcd.kill(leader);
    let next = c.etcd.leader().unwrap();
    eprintln!("etcd leader {leader} killed, member {next} leads");
    assert_eq!(c.mnt_via(1, "/srv/f2").0, status::OK);
    let t = c.within(
        "a mount after the leader change reaches every node through the surviving members",
        Duration::from_secs(10),
        || c.dumps().iter().all(|d| d.contains(&entry("/srv/f2"))),
    );
    eprintln!("mount via node 1 on every node {t:?} after the leader change");
    for i in 0..NODES {
        let s = c.node(i).stats().unwrap();
        assert_eq!(cluster_part(&s)["etcd_connected"], true, "node {i}: {s}");
    }
}

#[test]
fn etcd_outage_nodes_answer_and_converge_after() {
    let Some(mut c) = Cluster::for_test("cluster_etcd_outage", NODES, 1) else {
        return;
    };
    let file = c.write_file("exports", &exports(&["/srv/f1", "/srv/f2", "/srv/f3"]));
    let gen = c.publish_ok(&[&file]);
    c.start_all(&[]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(c.mnt_via(0, "/srv/f2").0, status::OK);
    c.within("a mount reaches every node", Duration::from_secs(2), || {
        c.dumps().iter().all(|d| d.contains(&entry("/srv/f2")))
    });

    // etcd gone altogether: every node still answers at once, from local state.
    c.etcd.kill_all();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..NODES {
        let start = Instant::now();
        let (st, _) = c.mnt_via(i, "/srv/f3");
        assert_eq!(st, status::OK, "node {i} MNT with etcd down");
        assert!(!c.dump_via(i).is_empty(), "node {i} DUMP with etcd down");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "node {i} waited on etcd: {:?}",
            start.elapsed()
        );
    }
    c.umnt_via(1, "/srv/f2");
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
            let d = c.dumps();
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
