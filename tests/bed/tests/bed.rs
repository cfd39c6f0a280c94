//! Privileged self-tests of the test bed: a pair carries IPv4 and IPv6 between its ends
//! and nothing of it is left after drop, also after a panic; leftovers of a fixed name are
//! replaced; a private rpcbind answers from the other end. Need root; print SKIPPED
//! otherwise (and fail under CI=true).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use testbed::{can_run, netns, unique_names, End, Pair, PairSpec, Rpcbind};

/// A unique pair on 10.76.K.0/24 and fd76:K::/64.
fn spec() -> PairSpec {
    let names = unique_names();
    let n = (names.k % 250 + 1) as u8;
    let end = |ns: String, ifname: &str, host: u8| End {
        ns,
        ifname: ifname.into(),
        v4: Ipv4Addr::new(10, 76, n, host),
        v6: Ipv6Addr::new(0xfd76, n.into(), 0, 0, 0, 0, 0, host.into()),
    };
    PairSpec {
        server: end(names.server_ns, "bed0", 1),
        client: end(names.client_ns, "bed1", 2),
        queues: 1,
    }
}

#[test]
fn udp_over_v4_and_v6_then_nothing_left() {
    if !can_run("udp_over_v4_and_v6_then_nothing_left") {
        return;
    }
    let pair = Pair::create(spec()).unwrap();
    for v6 in [false, true] {
        let at = SocketAddr::new(pair.server().addr(v6), 5555);
        let server = pair.server().run(|| UdpSocket::bind(at).unwrap()).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        pair.client()
            .run(|| {
                let s = UdpSocket::bind(SocketAddr::new(pair.client().addr(v6), 0)).unwrap();
                s.send_to(b"ping", at).unwrap();
            })
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from.ip(), pair.client().addr(v6));
    }
    // A process left running in a namespace goes with it.
    let mut sleeper = pair.server().command();
    let mut sleeper = sleeper.args(["sleep", "60"]).spawn().unwrap();
    let names = [pair.server().ns.clone(), pair.client().ns.clone()];
    // Once `ip netns exec` has entered the namespace (and exec'd sleep).
    let pid = sleeper.id() as i32;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !netns::pids(&names[0]).contains(&pid) {
        assert!(std::time::Instant::now() < deadline, "sleep never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(names.iter().all(|n| netns::exists(n)));
    drop(pair);
    assert!(names.iter().all(|n| !netns::exists(n)), "namespaces left");
    assert!(
        testbed::process::wait_timeout(&mut sleeper, Duration::from_secs(5)),
        "a process in the namespace survived it"
    );
}

#[test]
fn a_panic_still_removes_the_pair() {
    if !can_run("a_panic_still_removes_the_pair") {
        return;
    }
    let spec = spec();
    let names = [spec.server.ns.clone(), spec.client.ns.clone()];
    let result = std::panic::catch_unwind(|| {
        let pair = Pair::create(spec).unwrap();
        pair.client().run(|| panic!("a failing test")).unwrap();
    });
    assert!(result.is_err(), "the panic reached the caller");
    assert!(names.iter().all(|n| !netns::exists(n)), "namespaces left");
}

#[test]
fn leftovers_of_a_fixed_name_are_replaced() {
    if !can_run("leftovers_of_a_fixed_name_are_replaced") {
        return;
    }
    let mut spec = spec();
    // A fixed-looking name of this process: left behind as a hard-killed run would.
    spec.server.ns = format!("xmd-bedtest-{}-s", std::process::id());
    testbed::ip(&["netns", "add", &spec.server.ns]).unwrap();
    let pair = Pair::create(spec).unwrap();
    pair.server().ip(&["link", "show", "bed0"]).unwrap();
    drop(pair);
}

#[test]
fn private_rpcbind_answers_from_the_client() {
    if !can_run("private_rpcbind_answers_from_the_client") {
        return;
    }
    let pair = Pair::create(spec()).unwrap();
    let srv = pair.server();
    let rpcbind = Rpcbind::start(&srv.ns, &[srv.addr(false), srv.addr(true)]).unwrap();
    let out = pair
        .client()
        .output(&["rpcinfo", "-p", &srv.v4.to_string()], 20)
        .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("portmapper"), "{}", out.stdout);
    // Beside it (its mount namespace), the same rpcbind.
    let beside = rpcbind.run(&["rpcinfo", "-p", "127.0.0.1"]).unwrap();
    assert!(beside.status.success());
    // Stopped on drop.
    drop(rpcbind);
    let out = pair
        .client()
        .output(&["rpcinfo", "-p", &srv.v4.to_string()], 20)
        .unwrap();
    assert_ne!(out.code, Some(0), "rpcbind still answers: {}", out.stdout);
}
