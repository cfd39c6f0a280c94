//! Addressing: reply source addresses with several server addresses, several client
//! addresses in the mount list, host-name rules, IP fragmentation.

use e2e::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A UDP reply must come from the address the call was sent to: clients (libtirpc's
/// connected UDP sockets, firewalls, NAT) drop replies from another address.
#[test]
fn udp_reply_comes_from_the_called_address() {
    let Some(pair) = NetPair::new("udp_reply_source_address") else {
        return;
    };
    let n = pair.n;
    // Secondary addresses, added before the daemon starts and after.
    pair.add_srv_addr(&format!("10.77.{n}.10/24"));
    pair.add_srv_addr(&format!("fd77:{n:x}::10/64"));
    let _d = pair.start_standard();
    pair.add_srv_addr(&format!("10.77.{n}.11/24"));
    let targets: Vec<SocketAddr> = [
        format!("10.77.{n}.10"),
        format!("10.77.{n}.11"),
        format!("fd77:{n:x}::10"),
        format!("10.77.{n}.1"),
        format!("fd77:{n:x}::1"),
    ]
    .iter()
    .map(|a| SocketAddr::new(a.parse::<IpAddr>().unwrap(), PORT))
    .collect();
    pair.in_client(move || {
        let mut wrong = Vec::new();
        for server in targets {
            let u = UdpClient::new(server, SrcPort::High).unwrap();
            let call = Call::mount(3, procs::NULL);
            u.send(&call.encode()).unwrap();
            let (reply, from) = u
                .recv_any(Duration::from_secs(3))
                .unwrap()
                .unwrap_or_else(|| panic!("no reply at all from {server}"));
            assert_eq!(Reply::parse(&reply).unwrap().xid, call.xid);
            if from != server {
                wrong.push(format!("called {server}, reply from {from}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "replies from the wrong source address: {wrong:#?}"
        );
    });
}

/// Two client addresses: DUMP lists both, UMNTALL from one leaves the other's entries.
#[test]
fn umntall_only_removes_the_callers_entries() {
    let Some(pair) = NetPair::new("umntall_per_client") else {
        return;
    };
    let n = pair.n;
    pair.add_cli_addr(&format!("10.77.{n}.3/24"));
    let _d = pair.start_standard();
    let server = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let a = UdpClient::bind_to(server, format!("10.77.{n}.2:0").parse().unwrap()).unwrap();
        let b = UdpClient::bind_to(server, format!("10.77.{n}.3:0").parse().unwrap()).unwrap();
        let (mut a, mut b) = (RpcClient::Udp(a), RpcClient::Udp(b));
        assert_eq!(a.mnt3("/srv/a").0, status::OK);
        assert_eq!(a.mnt3("/srv/ro").0, status::OK);
        assert_eq!(b.mnt3("/srv/a").0, status::OK);
        let (ha, hb) = (format!("10.77.{n}.2"), format!("10.77.{n}.3"));
        let mut got = a.dump(3);
        got.sort();
        let mut want = vec![
            (ha.clone(), "/srv/a".to_string()),
            (ha.clone(), "/srv/ro".to_string()),
            (hb.clone(), "/srv/a".to_string()),
        ];
        want.sort();
        assert_eq!(got, want);
        // UMNT by b of a's entry removes only b's (same dir, other host).
        b.umnt(1, "/srv/a");
        let mut got = a.dump(1);
        got.sort();
        want.retain(|(h, _)| h != &hb);
        assert_eq!(got, want, "UMNT must only remove the caller's entry");
        assert_eq!(b.mnt3("/srv/a").0, status::OK);
        a.umntall(3);
        assert_eq!(
            b.dump(2),
            vec![(hb, "/srv/a".to_string())],
            "UMNTALL is per client"
        );
    });
}

/// Host-name rules (`*.domain`, a plain name) through the daemon's reverse lookup, with a
/// private /etc/hosts for the server namespace; EXPORT shows the names as written.
#[test]
fn hostname_rules_use_reverse_lookup() {
    let Some(pair) = NetPair::new("hostname_rules") else {
        return;
    };
    let n = pair.n;
    pair.add_cli_addr(&format!("10.77.{n}.3/24"));
    pair.add_cli_addr(&format!("10.77.{n}.4/24"));
    pair.set_srv_hosts(&format!(
        "127.0.0.1 localhost\n\
         10.77.{n}.2 c2.e2e.test\n\
         10.77.{n}.3 other.example.org\n\
         fd77:{n:x}::2 c2v6.e2e.test\n"
    ));
    let exports = pair.write_file(
        "exports",
        "/srv/wild *.e2e.test(rw,insecure)\n\
         /srv/name other.example.org(insecure) c2.e2e.test(insecure,sec=krb5i)\n",
    );
    let _d = pair.start_daemon(&DaemonOpts::new(exports));
    let srv4 = pair.srv_addr(false, PORT);
    let srv6 = pair.srv_addr(true, PORT);
    pair.in_client(move || {
        for proto in [Proto::Udp, Proto::Tcp] {
            let mut c2 = RpcClient::new(proto, srv4, SrcPort::High).unwrap();
            assert_eq!(
                c2.mnt3("/srv/wild").0,
                status::OK,
                "{proto:?} c2 matches *.e2e.test"
            );
            let (st, ok) = c2.mnt3("/srv/name");
            assert_eq!(st, status::OK, "{proto:?} c2 matches its own name");
            assert_eq!(
                ok.unwrap().1,
                vec![390004],
                "{proto:?} c2's rule (2nd) applies"
            );
            let mut c6 = RpcClient::new(proto, srv6, SrcPort::High).unwrap();
            assert_eq!(
                c6.mnt3("/srv/wild").0,
                status::OK,
                "{proto:?} v6 name matches"
            );
            assert_eq!(
                c6.mnt3("/srv/name").0,
                status::ACCES,
                "{proto:?} v6 name not listed"
            );
            let exports = c2.exports(3, procs::EXPORT);
            assert_eq!(
                exports,
                vec![
                    ("/srv/wild".to_string(), vec!["*.e2e.test".to_string()]),
                    (
                        "/srv/name".to_string(),
                        vec!["other.example.org".to_string(), "c2.e2e.test".to_string()]
                    ),
                ]
            );
        }
        let local = |h: u8| -> SocketAddr { format!("10.77.{n}.{h}:0").parse().unwrap() };
        // 10.77.N.3 resolves to other.example.org: not *.e2e.test, but named in /srv/name.
        let mut c3 = RpcClient::Udp(UdpClient::bind_to(srv4, local(3)).unwrap());
        assert_eq!(c3.mnt3("/srv/wild").0, status::ACCES);
        let (st, ok) = c3.mnt3("/srv/name");
        assert_eq!(st, status::OK);
        assert_eq!(ok.unwrap().1, vec![1]);
        // 10.77.N.4 has no name at all.
        let mut c4 = RpcClient::Udp(UdpClient::bind_to(srv4, local(4)).unwrap());
        assert_eq!(c4.mnt3("/srv/wild").0, status::ACCES);
        assert_eq!(c4.mnt3("/srv/name").0, status::ACCES);
    });
}

/// Calls that arrive as IP fragments (client MTU 576 / 1280) are answered.
#[test]
fn fragmented_udp_calls_are_answered() {
    let Some(pair) = NetPair::new("fragmented_udp_calls") else {
        return;
    };
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    // IP fragments go to the kernel socket also when the AF_XDP path is on.
    opts.kernel_udp_ok = true;
    let _d = pair.start_daemon(&opts);
    let srv4 = pair.srv_addr(false, PORT);
    let srv6 = pair.srv_addr(true, PORT);
    // 1 + 998 bytes of sub-path: a 1024-byte dirpath under /srv/a after "/srv/a/".
    let long = format!("/srv/a/{}", "d".repeat(1017));
    assert_eq!(long.len(), 1024);
    // 1280 first: an MTU below 1280 disables IPv6 on the link (and drops its addresses).
    for mtu in [1280, 576] {
        pair.set_cli_mtu(mtu);
        let long = long.clone();
        pair.in_client(move || {
            for server in [srv4, srv6] {
                if mtu < 1280 && server.is_ipv6() {
                    continue; // IPv6 needs 1280
                }
                let u = UdpClient::new(server, SrcPort::High).unwrap();
                // A 255-byte machinename and 16 gids make the call ~1.5 KB.
                let call = Call::mount_path(3, procs::MNT, &long).with_cred(Auth::Sys {
                    stamp: 1,
                    machine: vec![b'h'; 255],
                    uid: 0,
                    gid: 0,
                    gids: (0..16).collect(),
                });
                assert!(call.encode().len() > 1400);
                let r = u.call(&call).unwrap();
                let (st, ok) = parse_mountres3(r.success()).unwrap();
                assert_eq!(st, status::OK, "mtu {mtu} {server}");
                assert_eq!(ok.unwrap().0, synthetic_handle(&long));
            }
        });
    }
}

/// --filter-exports with host-name rules: EXPORT needs the caller's name too.
#[test]
fn filtered_export_list_with_hostname_rules() {
    let Some(pair) = NetPair::new("filtered_exports_hostnames") else {
        return;
    };
    let n = pair.n;
    pair.add_cli_addr(&format!("10.77.{n}.3/24"));
    pair.set_srv_hosts(&format!(
        "127.0.0.1 localhost\n10.77.{n}.2 c2.e2e.test\n10.77.{n}.3 c3.example.org\n"
    ));
    let exports = pair.write_file(
        "exports",
        "/srv/wild *.e2e.test(insecure)\n\
         /srv/c3 c3.example.org(insecure)\n\
         /srv/all *(insecure)\n\
         /srv/none 192.0.2.1(insecure)\n",
    );
    let mut opts = DaemonOpts::new(exports);
    opts.filter_exports = true;
    let _d = pair.start_daemon(&opts);
    let srv = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let dirs = |c: &mut RpcClient| -> Vec<String> {
            c.exports(3, procs::EXPORT)
                .into_iter()
                .map(|e| e.0)
                .collect()
        };
        for proto in [Proto::Udp, Proto::Tcp] {
            let mut c2 = RpcClient::new(proto, srv, SrcPort::High).unwrap();
            assert_eq!(dirs(&mut c2), vec!["/srv/wild", "/srv/all"], "{proto:?} c2");
        }
        let local: SocketAddr = format!("10.77.{n}.3:0").parse().unwrap();
        let mut c3 = RpcClient::Udp(UdpClient::bind_to(srv, local).unwrap());
        assert_eq!(dirs(&mut c3), vec!["/srv/c3", "/srv/all"], "c3");
    });
}

/// Loopback is not trusted by itself: a `secure` export refuses 127.0.0.1 / ::1 from a
/// port ≥ 1024 too. DUMP keys loopback callers by their address like anyone else.
#[test]
fn loopback_is_not_trusted_by_itself() {
    let Some(pair) = NetPair::new("loopback_not_trusted") else {
        return;
    };
    let exports = pair.write_file("exports", "/srv/lo 127.0.0.1(rw) ::1(rw)\n");
    let mut opts = DaemonOpts::new(exports);
    // Loopback calls never cross the XDP interface: the kernel socket answers them.
    opts.kernel_udp_ok = true;
    let _d = pair.start_daemon(&opts);
    pair.in_server(|| {
        for lo in ["127.0.0.1", "::1"] {
            let server = SocketAddr::new(lo.parse().unwrap(), PORT);
            for proto in [Proto::Udp, Proto::Tcp] {
                let mut hi = RpcClient::new(proto, server, SrcPort::High).unwrap();
                assert_eq!(
                    hi.mnt3("/srv/lo").0,
                    status::ACCES,
                    "{proto:?} {lo} high port"
                );
                let mut lo_port = RpcClient::new(proto, server, SrcPort::Privileged).unwrap();
                assert_eq!(
                    lo_port.mnt3("/srv/lo").0,
                    status::OK,
                    "{proto:?} {lo} port<1024"
                );
            }
        }
        let server = SocketAddr::new("127.0.0.1".parse().unwrap(), PORT);
        let mut c = RpcClient::new(Proto::Udp, server, SrcPort::Privileged).unwrap();
        let mut got = c.dump(3);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("127.0.0.1".to_string(), "/srv/lo".to_string()),
                ("::1".to_string(), "/srv/lo".to_string())
            ]
        );
    });
}
