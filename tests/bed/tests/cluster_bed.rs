//! Privileged self-tests of cluster mode's test bed: the ECMP bed spreads one client's
//! source ports over its nodes and reaches each node directly and the backbone; the etcd
//! launcher serves, finds its leader, survives the leader's death and leaves nothing
//! behind. Need root and etcd; print SKIPPED otherwise (and fail under CI=true).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use testbed::{can_run, netns, Ecmp, Etcd, Scratch};

/// Whether etcd is installed; a loud skip (a failure under CI=true) when not.
fn have_etcd(test: &str) -> bool {
    if std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: etcd is not installed (cargo xtask setup installs etcd-server)");
    }
    eprintln!("\n*** SKIPPED (needs etcd): {test} — install etcd-server ***\n");
    false
}

#[test]
fn ecmp_spreads_source_ports_over_the_nodes() {
    if !can_run("ecmp_spreads_source_ports_over_the_nodes") {
        return;
    }
    let bed = Ecmp::create(3).unwrap();
    let port = 5555;
    // Each node answers on SERVICE:port with its index.
    let responders: Vec<UdpSocket> = bed
        .nodes()
        .iter()
        .map(|n| {
            n.run(|| UdpSocket::bind(SocketAddr::new(bed.service(), port)).unwrap())
                .unwrap()
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for (i, sock) in responders.iter().enumerate() {
            let stop = &stop;
            s.spawn(move || {
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let mut buf = [0u8; 16];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&[i as u8], from);
                    }
                }
            });
        }
        let seen = bed
            .in_client(|| {
                let mut seen: BTreeMap<u8, usize> = BTreeMap::new();
                for _ in 0..60 {
                    let c = UdpSocket::bind("0.0.0.0:0").unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    c.send_to(b"?", SocketAddr::new(bed.service(), port))
                        .unwrap();
                    let mut b = [0u8; 4];
                    let (n, from) = c.recv_from(&mut b).expect("an answer from a node");
                    assert_eq!((n, from.ip()), (1, bed.service()));
                    *seen.entry(b[0]).or_default() += 1;
                }
                seen
            })
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(seen.len(), 3, "60 source ports all reached only {seen:?}");
    });
    // Each node's own address answers the client's address, and the backbone each node.
    let backbone = netns::run(&bed.backbone_ns, || {
        TcpListener::bind(SocketAddr::new(bed.backbone_addr(), 7000)).unwrap()
    })
    .unwrap();
    for n in bed.nodes() {
        let at = SocketAddr::new(n.addr.into(), 7001);
        let listener = n.run(|| TcpListener::bind(at).unwrap()).unwrap();
        bed.in_client(|| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::new(bed.client_addr(), 0).into())
                .unwrap();
            s.connect_timeout(&at.into(), Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("node {} from the client address: {e}", n.index));
        })
        .unwrap();
        let (_, from) = listener.accept().unwrap();
        assert_eq!(from.ip(), bed.client_addr());
        n.run(|| {
            TcpStream::connect_timeout(&backbone.local_addr().unwrap(), Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("backbone from node {}: {e}", n.index))
        })
        .unwrap();
    }
    let names = [
        bed.client_ns.clone(),
        bed.backbone_ns.clone(),
        bed.node(0).ns.clone(),
    ];
    drop(bed);
    for ns in names {
        assert!(!netns::exists(&ns), "{ns} left behind");
    }
}

#[test]
fn etcd_single_member_serves_and_goes_away() {
    let test = "etcd_single_member_serves_and_goes_away";
    if !can_run(test) || !have_etcd(test) {
        return;
    }
    let scratch = Scratch::create(&format!("xmd-bed-etcd1-{}", std::process::id()), test).unwrap();
    let bed = Ecmp::create(1).unwrap();
    let mut etcd =
        Etcd::single(Some(&bed.backbone_ns), bed.backbone_addr(), scratch.path()).unwrap();
    assert!(
        etcd.url().starts_with("etcd://10.79.1.1:"),
        "{}",
        etcd.url()
    );
    assert!(etcd.revision(0).unwrap() >= 1);
    assert_eq!(etcd.leader().unwrap(), 0);
    // Reachable from a node through the backbone.
    let at = etcd.endpoints()[0];
    let (code, body) =
        testbed::etcd::http(Some(&bed.node(0).ns), at, "GET", "/health", "").unwrap();
    assert_eq!(code, 200, "{body}");
    // Killed and started again on its data: healthy again.
    etcd.kill(0);
    assert!(!etcd.healthy(0));
    etcd.restart_all().unwrap();
    assert!(etcd.healthy(0));
    let dirs: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    drop(etcd);
    assert!(!dirs[0].exists(), "data dir left behind");
}

#[test]
fn etcd_cluster_survives_its_leader() {
    let test = "etcd_cluster_survives_its_leader";
    if !can_run(test) || !have_etcd(test) {
        return;
    }
    let scratch = Scratch::create(&format!("xmd-bed-etcd3-{}", std::process::id()), test).unwrap();
    let bed = Ecmp::create(1).unwrap();
    let mut etcd = Etcd::cluster(
        Some(&bed.backbone_ns),
        bed.backbone_addr(),
        scratch.path(),
        3,
    )
    .unwrap();
    assert_eq!(etcd.endpoints().len(), 3);
    let leader = etcd.leader().unwrap();
    etcd.kill(leader);
    let start = Instant::now();
    let next = etcd.leader().unwrap();
    assert_ne!(next, leader);
    eprintln!("new etcd leader after {:?}", start.elapsed());
    // Both survivors take writes (through the JSON gateway: key "k", value "v").
    for live in (0..3).filter(|i| *i != leader) {
        let before = etcd.revision(live).unwrap();
        let (code, body) = testbed::etcd::http(
            Some(&bed.backbone_ns),
            etcd.endpoints()[live],
            "POST",
            "/v3/kv/put",
            r#"{"key":"aw==","value":"dg=="}"#,
        )
        .unwrap();
        assert_eq!(code, 200, "put through member {live}: {body}");
        assert!(etcd.revision(live).unwrap() > before);
    }
    etcd.restart(leader).unwrap();
    etcd.wait_healthy(Duration::from_secs(20)).unwrap();
}
