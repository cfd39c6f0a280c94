//! Privileged end-to-end tests of the AF_XDP data path with the real `xdp-mountd`
//! binary: namespaces + veth, native and generic XDP. Needs root; prints SKIPPED
//! otherwise (and fails under CI=true, where root is expected).

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/afxdp_bed.rs"]
mod bed;

use bed::{
    export_names, privileged, proc_count, tcp_call, udp_call, udp_socket, xdr_string, Bed, CLI_IF,
    PORT, SRV_IF,
};

const EXPORTS: &str = "/srv/a *(ro,insecure)\n/srv/b *(rw,insecure)\n";

/// NULL, MNT (v1, v3), EXPORT, DUMP, UMNT over UDP from IPv4 and IPv6; returns how many
/// UDP calls were made.
fn udp_round(bed: &Bed) -> u64 {
    let mut calls = 0;
    for v6 in [false, true] {
        let to = bed.srv_addr(v6);
        bed.in_client(|| {
            let s = udp_socket(to);
            assert!(udp_call(&s, to, 3, 0, &[]).is_empty(), "NULL");
            let mnt = udp_call(&s, to, 3, 1, &xdr_string("/srv/a"));
            assert_eq!(&mnt[..4], &[0, 0, 0, 0], "MNT3_OK");
            let mnt1 = udp_call(&s, to, 1, 1, &xdr_string("/srv/b"));
            assert_eq!(&mnt1[..4], &[0, 0, 0, 0], "MNT v1 OK");
            let exports = udp_call(&s, to, 3, 5, &[]);
            assert_eq!(export_names(&exports), ["/srv/a", "/srv/b"]);
            let dump = udp_call(&s, to, 3, 2, &[]);
            assert_eq!(&dump[..4], &[0, 0, 0, 1], "DUMP lists the mount");
            assert!(
                udp_call(&s, to, 3, 3, &xdr_string("/srv/a")).is_empty(),
                "UMNT"
            );
        });
        calls += 6;
    }
    calls
}

fn answers_through_afxdp(mode: &str, tag: &str, net: u8) {
    let bed = Bed::new(tag, net, 1);
    let mut daemon = bed.xdp_daemon(EXPORTS, mode);
    assert!(bed.xdp_attached());
    let before = bed.srv_udp_counters();
    let calls = udp_round(&bed);
    let after = bed.srv_udp_counters();
    assert_eq!(
        before, after,
        "the server's kernel UDP counters moved: calls were not answered through AF_XDP"
    );
    // TCP goes through the kernel, same core.
    for v6 in [false, true] {
        let to = bed.srv_addr(v6);
        let body = bed.in_client(|| tcp_call(to, 3, 5, &[]));
        assert_eq!(export_names(&body), ["/srv/a", "/srv/b"]);
    }

    let stats = daemon.stats();
    println!("{}", daemon.stats_table());
    assert_eq!(stats["xdp"]["mode"], mode);
    let q = &stats["xdp"]["queues"][0];
    assert!(q["rx"].as_u64().unwrap() >= calls, "{q}");
    assert!(q["tx"].as_u64().unwrap() >= calls, "{q}");
    assert_eq!(q["bind_mode"], "copy", "veth has no zero-copy");
    assert!(q["xsk"]["rx_dropped"].is_u64(), "XDP_STATISTICS read: {q}");
    assert!(proc_count(&stats, "null", "afxdp") >= 2);
    assert!(proc_count(&stats, "mnt", "afxdp") >= 4);
    assert!(proc_count(&stats, "export", "afxdp") >= 2);
    assert_eq!(proc_count(&stats, "mnt", "udp"), 0);
    assert_eq!(proc_count(&stats, "export", "tcp"), 2);
    let program = stats["xdp"]["program"].as_array().unwrap();
    let redirected = program.iter().find(|p| p[0] == "redirected").unwrap()[1]
        .as_u64()
        .unwrap();
    assert!(redirected >= calls, "{program:?}");

    // SIGTERM: stop steering, drain, detach, exit 0.
    daemon.signal(libc::SIGTERM);
    assert_eq!(
        daemon.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        daemon.log()
    );
    assert!(!bed.xdp_attached(), "program left after SIGTERM");
    assert!(
        daemon.log().contains("XDP program detached"),
        "{}",
        daemon.log()
    );
}

#[test]
fn native_answers_through_afxdp() {
    if privileged() {
        answers_through_afxdp("native", "nat", 1);
    }
}

#[test]
fn generic_answers_through_afxdp() {
    if privileged() {
        answers_through_afxdp("generic", "gen", 2);
    }
}

/// ARP/ND, ICMP, TCP to the MOUNT port and UDP to other ports reach the kernel while
/// the program is attached.
#[test]
fn other_traffic_passes_while_attached() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("oth", 3, 1);
    let exports = bed.write("exports", EXPORTS);
    let daemon = bed.daemon(&["--exports", exports.to_str().unwrap(), "--iface", SRV_IF]);
    assert!(bed.xdp_attached());
    // Forget the neighbours so the next exchanges need ARP and ND again.
    bed::ip(&["-n", &bed.cli, "neigh", "flush", "dev", CLI_IF]);
    bed::ip(&["-n", &bed.srv, "neigh", "flush", "dev", SRV_IF]);
    for v6 in [false, true] {
        let echo_at = SocketAddr::new(bed.srv_addr(v6).ip(), 7777);
        let server = {
            let srv = bed.srv.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let handle = thread::spawn(move || {
                Bed::run_in(&srv, || {
                    let s = UdpSocket::bind(echo_at).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    ready_tx.send(()).unwrap();
                    let mut buf = [0u8; 64];
                    let (n, from) = s.recv_from(&mut buf).unwrap();
                    s.send_to(&buf[..n], from).unwrap();
                })
            });
            ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
            handle
        };
        bed.in_client(|| {
            let s = udp_socket(echo_at);
            s.send_to(b"echo", echo_at).unwrap();
            let mut buf = [0u8; 64];
            let (n, _) = s.recv_from(&mut buf).expect("UDP to another port");
            assert_eq!(&buf[..n], b"echo");
        });
        server.join().unwrap();
        // TCP to the MOUNT port.
        let to = bed.srv_addr(v6);
        assert!(bed.in_client(|| tcp_call(to, 3, 0, &[])).is_empty());
    }
    // ICMP echo (no ping installed: a raw socket).
    let target = bed.v4[0];
    bed.in_client(|| icmp_echo(target));
    let stats = daemon.stats();
    let program = stats["xdp"]["program"].as_array().unwrap();
    let get = |name: &str| {
        program.iter().find(|p| p[0] == name).unwrap()[1]
            .as_u64()
            .unwrap()
    };
    assert!(get("passed_not_ip") >= 1, "ARP seen: {program:?}");
    assert!(get("passed_other_port") >= 2, "{program:?}");
    assert!(get("passed_not_udp") >= 4, "TCP + ICMP + ND: {program:?}");
    // Neighbour entries were learnt again.
    let neigh = std::process::Command::new("ip")
        .args(["-n", &bed.cli, "neigh", "show", "dev", CLI_IF])
        .output()
        .unwrap();
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(neigh.contains(&bed.v4[0].to_string()), "{neigh}");
    assert!(neigh.contains(&bed.v6[0].to_string()), "{neigh}");
}

fn icmp_echo(target: std::net::IpAddr) {
    let std::net::IpAddr::V4(v4) = target else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(
        fd >= 0,
        "raw ICMP socket: {}",
        std::io::Error::last_os_error()
    );
    let id: u16 = 0x4d58;
    let mut pkt = vec![8u8, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&1u16.to_be_bytes());
    pkt.extend_from_slice(b"xdp-mountd-ping!");
    let sum = {
        let mut s: u32 = pkt
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    };
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(v4).to_be(),
        },
        sin_zero: [0; 8],
    };
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: valid pointers and sizes for each call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let rc = libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(rc, pkt.len() as isize);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 256];
    let got = loop {
        assert!(Instant::now() < deadline, "no ICMP echo reply");
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let icmp = &buf[ihl..n as usize];
        if icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() {
            break true;
        }
    };
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    assert!(got);
}

/// SIGKILL leaves no program behind (bpf_link), and a new daemon can attach at once.
#[test]
fn sigkill_leaves_no_program_and_restart_works() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("kil", 4, 1);
    let exports = bed.write("exports", EXPORTS);
    let args = [
        "--exports",
        exports.to_str().unwrap(),
        "--iface",
        SRV_IF,
        "--xdp",
        "native",
    ];
    let mut first = bed.daemon(&args);
    assert!(bed.xdp_attached());
    first.signal(libc::SIGKILL);
    assert_eq!(
        first.wait(Duration::from_secs(5)),
        None,
        "killed by a signal"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while bed.xdp_attached() {
        assert!(Instant::now() < deadline, "XDP program left after SIGKILL");
        thread::sleep(Duration::from_millis(20));
    }
    let second = bed.daemon(&args);
    assert!(bed.xdp_attached());
    let before = bed.srv_udp_counters();
    let to = bed.srv_addr(false);
    bed.in_client(|| {
        let s = udp_socket(to);
        assert!(udp_call(&s, to, 3, 0, &[]).is_empty());
    });
    assert_eq!(before, bed.srv_udp_counters(), "answered through AF_XDP");
    drop(second);
}

/// A second daemon on an interface that already has the program fails clearly and
/// leaves the first one serving.
#[test]
fn second_instance_is_refused() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("two", 5, 1);
    let exports = bed.write("exports", EXPORTS);
    let e = exports.to_str().unwrap();
    let _first = bed.daemon(&["--exports", e, "--iface", SRV_IF]);
    let err = match bed.try_daemon_on(PORT + 1, &["--exports", e, "--iface", SRV_IF]) {
        Ok(_) => panic!("a second daemon attached to the same interface"),
        Err(e) => e,
    };
    assert!(err.contains("already has an XDP program"), "{err}");
    let before = bed.srv_udp_counters();
    let to = bed.srv_addr(true);
    bed.in_client(|| {
        let s = udp_socket(to);
        assert!(udp_call(&s, to, 3, 0, &[]).is_empty());
    });
    assert_eq!(
        before,
        bed.srv_udp_counters(),
        "first daemon still on AF_XDP"
    );
}

/// A 2-queue veth in native mode: flows spread by hash, both queues' workers answer.
#[test]
fn two_queues_native_both_answer() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("mq", 6, 2);
    let exports = bed.write("exports", EXPORTS);
    let mut args = vec!["--exports", exports.to_str().unwrap(), "--iface", SRV_IF];
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    if cpus >= 2 {
        args.extend(["--cores", "0,1"]);
    }
    let daemon = bed.daemon(&args);
    let before = bed.srv_udp_counters();
    for v6 in [false, true] {
        let to = bed.srv_addr(v6);
        bed.in_client(|| {
            // Many source ports: many flows for the hash to spread.
            for _ in 0..32 {
                let s = udp_socket(to);
                let mnt = udp_call(&s, to, 3, 1, &xdr_string("/srv/a"));
                assert_eq!(&mnt[..4], &[0, 0, 0, 0]);
            }
        });
    }
    assert_eq!(before, bed.srv_udp_counters(), "answered through AF_XDP");
    let stats = daemon.stats();
    println!("{}", daemon.stats_table());
    let queues = stats["xdp"]["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2, "one socket per rx queue by default");
    for q in queues {
        assert!(q["rx"].as_u64().unwrap() > 0, "queue idle: {q}");
        assert!(q["tx"].as_u64().unwrap() > 0, "queue idle: {q}");
        if cpus >= 2 {
            assert_eq!(q["core"], q["queue"], "pinned per --cores");
        }
    }
    let tx: u64 = queues.iter().map(|q| q["tx"].as_u64().unwrap()).sum();
    assert_eq!(tx, 64);
}

/// An EXPORT reply bigger than the MTU leaves through the kernel socket, whole, over
/// IPv4 and IPv6, and equals the TCP answer.
#[test]
fn reply_larger_than_mtu_arrives_whole_via_kernel() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("big", 7, 1);
    let text: String = (0..100)
        .map(|i| format!("/srv/an-export-with-a-rather-long-name-{i:03} *(ro,insecure)\n"))
        .collect();
    let exports = bed.write("exports", &text);
    let daemon = bed.daemon(&["--exports", exports.to_str().unwrap(), "--iface", SRV_IF]);
    for v6 in [false, true] {
        let to = bed.srv_addr(v6);
        let (udp, tcp) = bed.in_client(|| {
            let s = udp_socket(to);
            (udp_call(&s, to, 3, 5, &[]), tcp_call(to, 3, 5, &[]))
        });
        assert!(
            udp.len() > 1500,
            "reply of {} bytes fits the MTU",
            udp.len()
        );
        assert_eq!(export_names(&udp).len(), 100);
        assert_eq!(udp, tcp, "UDP reply differs from TCP's");
    }
    let stats = daemon.stats();
    let q = &stats["xdp"]["queues"][0];
    assert_eq!(q["via_kernel"], 2, "{q}");
    assert_eq!(q["truncated"], 0, "{q}");
    assert_eq!(proc_count(&stats, "export", "afxdp"), 2);
}

/// A `*.domain` rule needs the client's name: the first call waits for the lookup
/// thread and is answered through the kernel socket, later ones (name cached) through
/// AF_XDP again.
#[test]
fn host_name_rules_resolve_off_the_hot_path() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("dns", 8, 1);
    // `ip netns exec` bind-mounts /etc/netns/NAME/hosts over /etc/hosts.
    let etc = std::path::PathBuf::from(format!("/etc/netns/{}", bed.srv));
    std::fs::create_dir_all(&etc).unwrap();
    struct RemoveDir(std::path::PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = RemoveDir(etc.clone());
    std::fs::write(
        etc.join("hosts"),
        format!("127.0.0.1 localhost\n{} client.xaf.test\n", bed.v4[1]),
    )
    .unwrap();
    let exports = bed.write("exports", "/srv/named *.xaf.test(ro,insecure)\n");
    let daemon = bed.daemon(&["--exports", exports.to_str().unwrap(), "--iface", SRV_IF]);
    let to = bed.srv_addr(false);
    let (_, out_before) = bed.srv_udp_counters();
    bed.in_client(|| {
        let s = udp_socket(to);
        let mnt = udp_call(&s, to, 3, 1, &xdr_string("/srv/named"));
        assert_eq!(&mnt[..4], &[0, 0, 0, 0], "MNT3_OK by host name");
    });
    let (_, out_mid) = bed.srv_udp_counters();
    assert_eq!(
        out_mid,
        out_before + 1,
        "first answer through the kernel socket"
    );
    bed.in_client(|| {
        let s = udp_socket(to);
        let mnt = udp_call(&s, to, 3, 1, &xdr_string("/srv/named"));
        assert_eq!(&mnt[..4], &[0, 0, 0, 0]);
    });
    assert_eq!(bed.srv_udp_counters().1, out_mid, "cached name: AF_XDP");
    let q = &daemon.stats()["xdp"]["queues"][0];
    assert_eq!(q["name_lookups"], 1, "{q}");
    assert_eq!(q["tx"], 1, "{q}");
}

/// SIGTERM while calls keep coming: steering stops first and the kernel socket (still
/// bound) takes over, so no call sent before the signal goes unanswered; then the
/// program is detached and the daemon exits 0.
#[test]
fn sigterm_under_load_loses_no_call() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("drn", 10, 1);
    let exports = bed.write("exports", EXPORTS);
    let mut daemon = bed.daemon(&["--exports", exports.to_str().unwrap(), "--iface", SRV_IF]);
    let to = bed.srv_addr(false);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<(Instant, bool)>();
    let mut early = Vec::new();
    let signalled = thread::scope(|s| {
        s.spawn(|| {
            bed.in_client(|| {
                let sock = udp_socket(to);
                sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut xid = 0u32;
                let mut buf = [0u8; 256];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    xid += 1;
                    let at = Instant::now();
                    let _ = sock.send_to(&bed::call(xid, 3, 0, &[]), to);
                    let answered = loop {
                        match sock.recv_from(&mut buf) {
                            Ok((n, _)) if n >= 4 && buf[..4] == xid.to_be_bytes() => break true,
                            Ok(_) => continue,
                            Err(_) => break false,
                        }
                    };
                    let _ = sent_tx.send((at, answered));
                }
            })
        });
        // Let calls flow through AF_XDP (20 answered), then signal mid-stream.
        let deadline = Instant::now() + Duration::from_secs(20);
        while early.iter().filter(|(_, ok)| *ok).count() < 20 {
            assert!(Instant::now() < deadline, "calls not flowing: {early:?}");
            if let Ok(c) = sent_rx.recv_timeout(Duration::from_secs(1)) {
                early.push(c);
            }
        }
        let signalled = Instant::now();
        daemon.signal(libc::SIGTERM);
        assert_eq!(
            daemon.wait(Duration::from_secs(10)),
            Some(0),
            "{}",
            daemon.log()
        );
        thread::sleep(Duration::from_millis(100));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        signalled
    });
    let calls: Vec<(Instant, bool)> = early.into_iter().chain(sent_rx.try_iter()).collect();
    let before: Vec<_> = calls.iter().filter(|(at, _)| *at < signalled).collect();
    assert!(
        before.len() > 10,
        "only {} calls before the signal",
        before.len()
    );
    let lost = before.iter().filter(|(_, ok)| !ok).count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} calls sent before SIGTERM unanswered",
        before.len()
    );
    assert!(!bed.xdp_attached(), "program left after SIGTERM");
    let log = daemon.log();
    let detached = log.find("XDP program detached").expect("detached");
    let stopped = log.find("kernel-stack listener counters").expect("stopped");
    assert!(
        detached < stopped,
        "XDP stops before the kernel listeners:\n{log}"
    );
}

/// Generic XDP on the same 2-queue veth: every packet reports rx queue 0 (docs/platform.md),
/// so queue 0's socket answers everything and queue 1's stays idle, still answered.
#[test]
fn two_queues_generic_all_on_queue_zero() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("mqg", 11, 2);
    let daemon = bed.xdp_daemon(EXPORTS, "generic");
    let before = bed.srv_udp_counters();
    let to = bed.srv_addr(false);
    bed.in_client(|| {
        for _ in 0..16 {
            let s = udp_socket(to);
            assert!(udp_call(&s, to, 3, 0, &[]).is_empty());
        }
    });
    assert_eq!(before, bed.srv_udp_counters(), "answered through AF_XDP");
    let stats = daemon.stats();
    let queues = stats["xdp"]["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!(queues[0]["tx"], 16, "{queues:?}");
    assert_eq!(queues[1]["rx"], 0, "{queues:?}");
}
