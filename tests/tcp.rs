//! TCP record marking: fragments, pipelining, the record cap, many connections.

use e2e::*;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// Starts the standard daemon and runs `f(server_addr)` in the client namespace.
fn with_server(test: &str, v6: bool, f: fn(SocketAddr)) {
    let Some(pair) = NetPair::new(test) else {
        return;
    };
    let _d = pair.start_standard();
    let server = pair.srv_addr(v6, PORT);
    pair.in_client(move || f(server));
}

/// Like [`with_server`] with extra daemon arguments.
fn with_server_args(test: &str, args: &[&str], f: fn(SocketAddr)) {
    let Some(pair) = NetPair::new(test) else {
        return;
    };
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.extra.extend(args.iter().map(|a| a.to_string()));
    let _d = pair.start_daemon(&opts);
    let server = pair.srv_addr(false, PORT);
    pair.in_client(move || f(server));
}

fn connect(server: SocketAddr) -> TcpClient {
    TcpClient::connect(server, SrcPort::High).unwrap()
}

fn check_mnt_reply(r: &Reply, xid: u32) {
    assert_eq!(r.xid, xid);
    let (st, ok) = parse_mountres3(r.success()).unwrap();
    assert_eq!(st, status::OK);
    assert_eq!(ok.unwrap().0, synthetic_handle("/srv/a"));
}

fn multi_fragment(server: SocketAddr) {
    let mut t = connect(server);
    let call = Call::mount_path(3, procs::MNT, "/srv/a");
    let msg = call.encode();
    // Fragments of 3, 10 (mid-word), 1 and the rest, each written in two pieces.
    t.send_fragments(&msg, &[3, 10, 1, 0]).unwrap();
    check_mnt_reply(&t.recv_reply().unwrap(), call.xid);
    // A zero-length non-last fragment is legal too.
    let call = Call::mount_path(3, procs::MNT, "/srv/a");
    t.send_fragments(&call.encode(), &[0, 17, 0]).unwrap();
    check_mnt_reply(&t.recv_reply().unwrap(), call.xid);
    // One fragment per byte of a NULL call.
    let call = Call::mount(1, procs::NULL);
    let msg = call.encode();
    let sizes = vec![1usize; msg.len()];
    t.send_fragments(&msg, &sizes).unwrap();
    let r = t.recv_reply().unwrap();
    assert_eq!(r.xid, call.xid);
    assert!(r.success().is_empty());
}

#[test]
fn tcp_multi_fragment_v4() {
    with_server("tcp_multi_fragment_v4", false, multi_fragment);
}

#[test]
fn tcp_multi_fragment_v6() {
    with_server("tcp_multi_fragment_v6", true, multi_fragment);
}

fn record(msg: &[u8]) -> Vec<u8> {
    let mut v = (0x8000_0000u32 | msg.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

fn pipelined(server: SocketAddr) {
    let mut t = connect(server);
    // Two calls in one write.
    let a = Call::mount(3, procs::NULL);
    let b = Call::mount_path(3, procs::MNT, "/srv/a");
    let mut buf = record(&a.encode());
    buf.extend(record(&b.encode()));
    t.stream.write_all(&buf).unwrap();
    let r1 = t.recv_reply().unwrap();
    assert_eq!(r1.xid, a.xid, "first reply answers the first call");
    assert!(r1.success().is_empty());
    check_mnt_reply(&t.recv_reply().unwrap(), b.xid);
    // Three calls and half of a fourth in one write, the rest later.
    let calls: Vec<Call> = (0..4).map(|_| Call::mount(3, procs::EXPORT)).collect();
    let mut buf = Vec::new();
    for c in &calls {
        buf.extend(record(&c.encode()));
    }
    let cut = buf.len() - 7;
    t.stream.write_all(&buf[..cut]).unwrap();
    for c in &calls[..3] {
        let r = t.recv_reply().unwrap();
        assert_eq!(r.xid, c.xid);
        parse_exports(r.success()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    t.stream.write_all(&buf[cut..]).unwrap();
    let r = t.recv_reply().unwrap();
    assert_eq!(r.xid, calls[3].xid);
    assert_eq!(
        parse_exports(r.success()).unwrap().len(),
        e2e::fixtures::standard_export_list(0).len(),
        "EXPORT lists the standard exports"
    );
}

#[test]
fn tcp_pipelined_v4() {
    with_server("tcp_pipelined_v4", false, pipelined);
}

fn oversized(server: SocketAddr) {
    let mut keep = RpcClient::Tcp(connect(server));
    keep.null(3);
    // One fragment announcing 1 MiB: only this connection closes.
    let mut big = connect(server);
    let mut data = (0x8000_0000u32 | (1 << 20)).to_be_bytes().to_vec();
    data.extend(vec![0u8; 8192]);
    let _ = big.stream.write_all(&data); // the server may reset mid-write
    assert!(
        big.closed_within(Duration::from_secs(3)).unwrap(),
        "a 1 MiB record must close its connection"
    );
    // Many small non-last fragments adding up past any sane cap (64 KiB).
    let mut many = connect(server);
    let mut data = Vec::new();
    for _ in 0..64 {
        data.extend(1024u32.to_be_bytes());
        data.extend(vec![0u8; 1024]);
    }
    let _ = many.stream.write_all(&data);
    assert!(
        many.closed_within(Duration::from_secs(3)).unwrap(),
        "64 KiB of fragments without an end must close the connection"
    );
    // The other connection and new ones still work.
    keep.null(3);
    let (st, _) = keep.mnt3("/srv/a");
    assert_eq!(st, status::OK);
    let mut fresh = RpcClient::Tcp(connect(server));
    fresh.null(1);
}

#[test]
fn tcp_record_over_cap_closes_only_that_connection_v4() {
    with_server("tcp_record_cap_v4", false, oversized);
}

#[test]
fn tcp_record_over_cap_closes_only_that_connection_v6() {
    with_server("tcp_record_cap_v6", true, oversized);
}

fn runt_record(server: SocketAddr) {
    // A 3-byte record gets no reply; the server may keep or drop the connection, but the
    // service must keep answering (on this connection if it stayed open).
    let mut t = RpcClient::Tcp(connect(server));
    let got = t.send_expect_silence(&[1, 2, 3], Duration::from_millis(700));
    match got {
        Ok(None) => t.null(3),
        Ok(Some(b)) => panic!("runt record got a reply {b:02x?}"),
        Err(e) => {
            eprintln!("runt record closed the connection ({e:#}); checking a new one");
            RpcClient::Tcp(connect(server)).null(3);
        }
    }
}

#[test]
fn tcp_runt_record_v4() {
    with_server("tcp_runt_record_v4", false, runt_record);
}

fn many_connections(server: SocketAddr) {
    let mut conns: Vec<RpcClient> = (0..64).map(|_| RpcClient::Tcp(connect(server))).collect();
    for c in conns.iter_mut() {
        let (st, _) = c.mnt3("/srv/a");
        assert_eq!(st, status::OK);
    }
    // Half close abruptly; the rest keep working.
    conns.truncate(32);
    for c in conns.iter_mut() {
        c.null(2);
    }
}

#[test]
fn tcp_many_connections_v4() {
    with_server("tcp_many_connections_v4", false, many_connections);
}

#[test]
fn tcp_idle_connections_are_closed() {
    with_server_args("tcp_idle_timeout", &["--idle-timeout", "1"], |server| {
        let mut idle = connect(server);
        let mut busy = RpcClient::Tcp(connect(server));
        // `busy` keeps talking every 300 ms for 2.4 s; `idle` says nothing.
        for _ in 0..8 {
            busy.null(3);
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(
            idle.closed_within(Duration::from_secs(2)).unwrap(),
            "an idle connection must be closed after --idle-timeout 1"
        );
        busy.null(3);
    });
}

#[test]
fn tcp_connection_limit() {
    with_server_args(
        "tcp_connection_limit",
        &["--max-connections", "4"],
        |server| {
            let mut four: Vec<RpcClient> = Vec::new();
            for _ in 0..4 {
                let mut c = RpcClient::Tcp(connect(server));
                c.null(3);
                four.push(c);
                // Distinct idle-since times: the first is idle longest.
                std::thread::sleep(Duration::from_millis(20));
            }
            // The fifth is admitted by closing the connection idle longest, the first.
            let mut fifth = RpcClient::Tcp(connect(server));
            fifth.null(3);
            let RpcClient::Tcp(first) = &mut four[0] else {
                unreachable!()
            };
            assert!(
                first.closed_within(Duration::from_secs(2)).unwrap(),
                "the longest idle connection makes room at --max-connections"
            );
            for c in four.iter_mut().skip(1) {
                c.null(1);
            }
        },
    );
}

#[test]
fn tcp_connection_limit_per_host() {
    with_server_args(
        "tcp_connection_limit_per_host",
        &["--max-connections-per-host", "2"],
        |server| {
            let mut two: Vec<RpcClient> = (0..2).map(|_| RpcClient::Tcp(connect(server))).collect();
            for c in two.iter_mut() {
                c.null(3);
            }
            // The third from this host is accepted and closed at once.
            let mut third = connect(server);
            assert!(
                third.closed_within(Duration::from_secs(2)).unwrap(),
                "a connection over --max-connections-per-host must be closed"
            );
            for c in two.iter_mut() {
                c.null(1);
            }
            // Closing one makes room.
            two.pop();
            std::thread::sleep(Duration::from_millis(300));
            let mut again = RpcClient::Tcp(connect(server));
            again.null(2);
        },
    );
}

/// A client that sends its call and then shuts down its write side still gets the reply.
fn half_close(server: SocketAddr) {
    let mut t = connect(server);
    let call = Call::mount_path(3, procs::MNT, "/srv/a");
    t.send_record(&call.encode()).unwrap();
    t.stream.shutdown(std::net::Shutdown::Write).unwrap();
    check_mnt_reply(&t.recv_reply().unwrap(), call.xid);
    assert!(t.recv_record().unwrap().is_none(), "then the server closes");
}

#[test]
fn tcp_half_close_still_gets_the_reply_v4() {
    with_server("tcp_half_close_v4", false, half_close);
}

/// One host opens 3000 TCP connections and holds them idle; three more hosts fill the
/// total; a fifth host's calls over TCP are still all answered (the per-host cap stops the
/// first, eviction of the longest idle makes room for the rest), and the daemon's memory
/// stays bounded.
#[test]
fn idle_connection_floods_lock_no_one_out() {
    let Some(pair) = NetPair::new("idle_connection_floods_lock_no_one_out") else {
        return;
    };
    let n = pair.n;
    let hosts: Vec<std::net::IpAddr> = (0..5u8)
        .map(|h| format!("10.77.{n}.{}", 100 + h).parse().unwrap())
        .collect();
    for h in &hosts {
        pair.add_cli_addr(&format!("{h}/24"));
    }
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.extra.extend(
        [
            "--max-connections",
            "200",
            "--max-connections-per-host",
            "64",
        ]
        .map(String::from),
    );
    let d = pair.start_daemon(&opts);
    let rss_before = rss_kib(d.pid());
    let server = pair.srv_addr(false, PORT);
    let answered = pair.in_client(move || {
        raise_fd_limit(4000);
        let mut held = Vec::new();
        // The flood: 3000 connections from one host, kept open (most are closed at once by
        // the server; the client end stays until the test ends).
        for _ in 0..3000 {
            if let Ok(c) = TcpClient::connect_from(server, hosts[0]) {
                held.push(c);
            }
        }
        // Three more hosts take 64 each: the total (200) is reached, and the longest idle
        // connections (the flooder's) make room.
        for h in &hosts[1..4] {
            for _ in 0..64 {
                held.push(TcpClient::connect_from(server, *h).unwrap());
            }
        }
        // Another host: every call answered, each over a new connection.
        let mut answered = 0;
        for _ in 0..5 {
            let mut c = TcpClient::connect_from(server, hosts[4]).unwrap();
            if c.call(&Call::mount(3, procs::NULL)).is_ok() {
                answered += 1;
            }
        }
        drop(held);
        answered
    });
    assert_eq!(
        answered, 5,
        "calls from an innocent host while others hold connections"
    );
    let rss_after = rss_kib(d.pid());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    let report = d.stats_json();
    let counter = |name: &str| {
        report["kernel"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r[0] == name))
            .and_then(|r| r[1].as_u64())
            .unwrap_or_else(|| panic!("no counter {name} in {report}"))
    };
    assert_eq!(
        counter("tcp_refused_host"),
        3000 - 64,
        "the flooder is held to its cap"
    );
    assert!(
        // 64 + 3 x 64 connections for 200 places; the fifth host's may find a place
        // freed by its own previous connection.
        counter("tcp_evicted") >= 56,
        "idle connections made room: {report}"
    );
    assert!(
        d.stderr().contains("--max-connections-per-host"),
        "the cap is logged with how to raise it"
    );
}

/// The resident set of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// Lets this test process hold `n` sockets (the soft limit is often 1024).
fn raise_fd_limit(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(n.max(lim.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}
