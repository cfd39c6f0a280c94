//! The AF_XDP data path (README, "AF_XDP fast path": `serve --iface IF --xdp
//! native|generic|off`): UDP calls answered from the XDP socket must be byte-for-byte as
//! good as the kernel path's, with correct checksums and addresses, while TCP, fragments
//! and everything else still reach the kernel-stack listeners; the program is attached
//! while serving and gone after exit.
//!
//! The whole suite can also be run over XDP: `XMD_E2E_DAEMON_ARGS="--iface veth0 --xdp generic"`.

use e2e::*;
use std::net::SocketAddr;
use std::time::Duration;

/// `ip link show veth0` in the server namespace.
fn link_show(pair: &NetPair) -> String {
    let out = pair.run_server(&["ip", "link", "show", "veth0"], 5);
    out.stdout
}

fn udp_checks(server: SocketAddr, n: u8) {
    let mut c = RpcClient::new(Proto::Udp, server, SrcPort::Privileged).unwrap();
    for v in [1, 2, 3] {
        c.null(v);
    }
    let r = c.must(&Call::mount(4, procs::NULL));
    assert_eq!(
        r.accept_stat(),
        &AcceptStat::ProgMismatch { low: 1, high: 3 }
    );
    let mut bad = Call::mount(3, procs::NULL);
    bad.rpcvers = 3;
    assert_eq!(
        c.must(&bad).denied(),
        &Denied::RpcMismatch { low: 2, high: 2 }
    );
    let r = c.must(&Call::mount(3, procs::MNT).with_args(vec![0, 0, 0, 9]));
    assert_eq!(r.accept_stat(), &AcceptStat::GarbageArgs);
    let (st, ok) = c.mnt3("/srv/a");
    assert_eq!(st, status::OK);
    assert_eq!(ok.unwrap(), (synthetic_handle("/srv/a"), vec![1]));
    assert_eq!(
        c.mnt12(1, "/srv/secure"),
        (status::OK, Some(synthetic_handle("/srv/secure")))
    );
    assert_eq!(c.mnt3("/srv/denied").0, status::ACCES);
    assert_eq!(c.mnt3("/srv/nope").0, status::NOENT);
    assert_eq!(
        c.exports(3, procs::EXPORT),
        e2e::fixtures::standard_export_list(n)
    );
    // `secure` from a high port is refused on the XDP path too.
    let mut hi = RpcClient::new(Proto::Udp, server, SrcPort::High).unwrap();
    assert_eq!(hi.mnt3("/srv/secure").0, status::ACCES);
    // Silence for a non-call, then service as usual.
    let mut call = Call::mount(3, procs::NULL);
    call.msg_type = 1;
    assert_eq!(
        c.send_expect_silence(&call.encode(), Duration::from_millis(400))
            .unwrap(),
        None
    );
    c.null(3);
}

/// `mode` "kernel" runs the same checks without XDP (the baseline, and a check of this
/// test itself); "generic"/"native" pass `--iface veth0 --xdp MODE`.
fn run_mode(test: &str, mode: &str) {
    let xdp = mode != "kernel";
    let Some(pair) = NetPair::new(test) else {
        return;
    };
    let n = pair.n;
    pair.add_srv_addr(&format!("10.77.{n}.10/24"));
    // Client MTU 1280: a maximal MNT call leaves it in IP fragments.
    pair.set_cli_mtu(1280);
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    // This test chooses the data path itself, whatever XMD_E2E_DAEMON_ARGS says.
    opts.extra.clear();
    // The IP-fragmented call below goes to the kernel socket by design.
    opts.kernel_udp_ok = true;
    if xdp {
        opts.extra
            .extend(["--iface", "veth0", "--xdp", mode].map(String::from));
    }
    let mut d = pair.start_daemon(&opts);
    let link = link_show(&pair);
    let want = if mode == "generic" {
        "xdpgeneric"
    } else {
        "xdp"
    };
    assert!(
        !xdp || link
            .split_whitespace()
            .any(|w| w == want || w.starts_with(&format!("{want}/"))),
        "{mode}: no XDP program on veth0:\n{link}"
    );

    let cap = pair.capture(
        &pair.cli,
        "veth1",
        &format!("udp port {PORT}"),
        "xdp.pcapng",
    );

    let srv4 = pair.srv_addr(false, PORT);
    let srv6 = pair.srv_addr(true, PORT);
    let secondary: SocketAddr = format!("10.77.{n}.10:{PORT}").parse().unwrap();
    let cli = pair.cli_v4().to_string();
    // The port the fragmented call is sent from: its reply leaves through the kernel.
    let frag_port = pair.in_client(move || {
        udp_checks(srv4, n);
        udp_checks(srv6, n);
        // The reply comes from the address called.
        let u = UdpClient::new(secondary, SrcPort::High).unwrap();
        u.send(&Call::mount(3, procs::NULL).encode()).unwrap();
        let (_, from) = u
            .recv_any(Duration::from_secs(3))
            .unwrap()
            .expect("a reply");
        assert_eq!(from, secondary);
        // A fragmented call (IP fragments pass to the kernel) is answered as well.
        let long = format!("/srv/a/{}", "f".repeat(1017));
        let big = Call::mount_path(3, procs::MNT, &long).with_cred(Auth::Sys {
            stamp: 1,
            machine: vec![b'x'; 255],
            uid: 0,
            gid: 0,
            gids: (0..16).collect(),
        });
        assert!(
            big.encode().len() > 1280 - 28,
            "fragmented at the client's MTU 1280"
        );
        let frag_client = UdpClient::new(srv4, SrcPort::High).unwrap();
        let r = frag_client.call(&big).unwrap();
        assert_eq!(parse_mountres3(r.success()).unwrap().0, status::OK);
        // One mount list across both paths: MNT over UDP (XDP) shows in DUMP over TCP.
        let mut t = RpcClient::new(Proto::Tcp, srv4, SrcPort::High).unwrap();
        let dump = t.dump(3);
        assert!(
            dump.contains(&(cli.clone(), "/srv/a".to_string())),
            "{dump:?}"
        );
        frag_client.local_port()
    });

    std::thread::sleep(Duration::from_millis(300));
    let pcap = cap.stop();
    // Checksums validated by tshark (the client kernel may trust veth's offload flags).
    let bad = e2e::capture::tshark_read(
        &pcap,
        PORT,
        &[
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ],
        &format!(
            "udp.srcport == {PORT} && (ip.checksum.status == \"Bad\" || _ws.malformed{})",
            // The kernel leaves UDP checksums to veth's offload (partial sums on the wire
            // we capture); AF_XDP frames must carry complete ones. The fragmented call
            // reached the kernel socket, so its reply is the kernel's.
            if xdp {
                format!(" || (udp.checksum.status == \"Bad\" && udp.dstport != {frag_port})")
            } else {
                String::new()
            }
        ),
        &[],
    );
    let replies =
        e2e::capture::tshark_read(&pcap, PORT, &[], &format!("udp.srcport == {PORT}"), &[]);
    assert!(
        replies.lines().count() >= 25,
        "the capture saw the replies:\n{replies}"
    );
    assert!(
        bad.trim().is_empty(),
        "{mode}: bad checksums or malformed replies:\n{bad}"
    );

    assert_eq!(d.stop().code(), Some(0));
    let link = link_show(&pair);
    assert!(
        !link.contains(" xdp"),
        "{mode}: XDP program still attached after exit:\n{link}"
    );
}

#[test]
fn kernel_udp_path_baseline() {
    run_mode("kernel_udp_path_baseline", "kernel");
}

#[test]
fn xdp_generic_mode() {
    run_mode("xdp_generic_mode", "generic");
}

#[test]
fn xdp_native_mode() {
    run_mode("xdp_native_mode", "native");
}
