//! Self-tests of the harness itself, independent of xdp-mountd: namespaces and veth work,
//! client/server threads land in the right namespace, the launcher's private rpcbind is
//! reachable, signals and exit codes are reported, and everything is cleaned up.

use e2e::*;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn ns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

#[test]
fn netpair_udp_v4_v6_and_cleanup() {
    let Some(pair) = NetPair::new("selftest_netpair") else {
        return;
    };
    let (srv, cli) = (pair.srv.clone(), pair.cli.clone());
    for v6 in [false, true] {
        let bind = pair.srv_addr(v6, 5555);
        let echo = pair.in_server(move || UdpSocket::bind(bind).unwrap());
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 64];
            echo.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let (n, from) = echo.recv_from(&mut b).unwrap();
            echo.send_to(&b[..n], from).unwrap();
            from
        });
        let got = pair.in_client(move || {
            let u = UdpClient::new(bind, SrcPort::Privileged).unwrap();
            assert!(u.local_port() < 1024);
            u.send(b"ping").unwrap();
            u.recv(Duration::from_secs(5)).unwrap()
        });
        assert_eq!(got.as_deref(), Some(&b"ping"[..]));
        assert_eq!(
            t.join().unwrap().ip(),
            pair.cli_ip(v6),
            "source address seen by the server"
        );
    }
    // The host namespace does not have our addresses.
    assert!(UdpSocket::bind(pair.srv_addr(false, 0)).is_err());
    assert!(ns_exists(&srv) && ns_exists(&cli));
    drop(pair);
    assert!(
        !ns_exists(&srv) && !ns_exists(&cli),
        "namespaces removed on drop"
    );
}

#[test]
fn launcher_with_private_rpcbind_and_stand_in_daemon() {
    let Some(pair) = NetPair::new("selftest_launcher") else {
        return;
    };
    let fake = pair.write_file(
        "fake-daemon",
        "#!/bin/sh\ntrap 'echo bye >&2; exit 0' TERM\necho \"args: $*\"\necho READY\n\
         while :; do sleep 0.05; done\n",
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut opts = DaemonOpts::new(pair.dir.join("exports"));
    opts.bin = Some(fake);
    opts.rpcbind = true;
    let mut d = pair.start_daemon(&opts);
    assert!(!d.stdout().contains("--no-rpcbind") && d.stdout().contains("--port 4002"));
    // The private rpcbind answers on the server address, seen from the client.
    let out = pair.run_client(&["rpcinfo", "-p", &pair.srv_v4().to_string()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("portmapper"), "{}", out.stdout);
    let st = d.stop();
    assert_eq!(st.code(), Some(0));
    assert!(d.stderr().contains("bye"));
}
