//! Call rate limits (`--rate-limit`, `--rate-limit-global`): a flooding source is held to
//! its limit and counted, other sources lose nothing, prefixes group sources, TCP waits
//! instead of dropping. Run by the suite on every data path: with the AF_XDP path the XDP
//! program enforces the UDP limits, without it the kernel UDP workers do.

use e2e::*;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One NULL call with `xid`.
fn null_call(xid: u32) -> Vec<u8> {
    let mut call = Call::mount(3, procs::NULL);
    call.xid = xid;
    call.encode()
}

/// What a paced sender saw.
struct Sent {
    sent: u64,
    answered: u64,
    elapsed: Duration,
}

/// Sends NULL calls from `local` to `server` at `rate` per second for `secs` (bounded by
/// count), counting the replies on a second thread until 500 ms after the last call.
fn flood(socket: UdpSocket, rate: u64, secs: f64) -> Sent {
    let total = (rate as f64 * secs) as u64;
    let rx = socket.try_clone().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let receiver = {
        let (done, answered) = (done.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut quiet_since = None;
            loop {
                match rx.recv(&mut buf) {
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        quiet_since = None;
                    }
                    Err(_) if done.load(Ordering::Relaxed) => {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_millis(500) {
                            return;
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut sent = 0;
    for i in 0..total {
        let due = gap * i as u32;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        // A full socket buffer (ENOBUFS) is a call not sent, not a test failure.
        if socket.send(&null_call(0x5100_0000 + i as u32)).is_ok() {
            sent += 1;
        }
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    receiver.join().unwrap();
    Sent {
        sent,
        answered: answered.load(Ordering::Relaxed),
        elapsed,
    }
}

/// Calls one at a time at `rate` per second for `secs`, each waiting up to 1 s for its
/// reply and never retransmitted; (calls, answered).
fn steady(client: UdpClient, rate: u64, secs: f64) -> (u64, u64) {
    let total = (rate as f64 * secs) as u64;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut answered = 0;
    for i in 0..total {
        if let Some(wait) = (gap * i as u32).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let xid = 0x5200_0000 + i as u32;
        client.send(&null_call(xid)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match client.recv(left).unwrap() {
                Some(reply) if reply[..4] == xid.to_be_bytes() => {
                    answered += 1;
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    (total, answered)
}

/// A counter of the daemon's stats: the kernel listeners' `kernel_name` plus the XDP
/// program's `xdp_name` (whichever path enforced the limit).
fn limited(d: &Daemon<'_>, kernel_name: &str, xdp_name: &str) -> u64 {
    let stats = d.stats_json();
    let row = |rows: &serde_json::Value, name: &str| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r[0] == name))
            .and_then(|r| r[1].as_u64())
            .unwrap_or(0)
    };
    row(&stats["kernel"], kernel_name) + row(&stats["xdp"]["program"], xdp_name)
}

/// A daemon serving one export with these rate-limit options.
fn limited_daemon<'p>(pair: &'p NetPair, limits: &[&str]) -> Daemon<'p> {
    let mut opts = DaemonOpts::new(pair.write_file("exports", "/srv/a *(ro,insecure)\n"));
    opts.extra.extend(limits.iter().map(|a| a.to_string()));
    pair.start_daemon(&opts)
}

/// Gives the client a second IPv4 address, 10.77.N.`host`.
fn second_address(pair: &NetPair, host: u8) -> IpAddr {
    let ip: IpAddr = format!("10.77.{}.{host}", pair.n).parse().unwrap();
    pair.add_cli_addr(&format!("{ip}/24"));
    ip
}

fn bind(local: IpAddr, server: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(local, 0)).unwrap();
    s.connect(server).unwrap();
    s
}

/// One source floods at 10x its limit while another calls steadily: the flood gets its
/// limit (±10%) and the rest is dropped and counted; the steady source loses nothing.
#[test]
fn a_flooding_source_is_held_to_its_limit_and_others_lose_nothing() {
    let Some(pair) = NetPair::new("rate_limit_flood") else {
        return;
    };
    let other = second_address(&pair, 5);
    let d = limited_daemon(&pair, &["--rate-limit", "400/40"]);
    let server = pair.srv_addr(false, PORT);
    let flooder = pair.cli_v4();
    let (flood_result, (calls, answered)) = pair.in_client(move || {
        let flood_socket = bind(flooder, server);
        let steady_client = UdpClient::bind_to(server, SocketAddr::new(other, 0)).unwrap();
        let steady = std::thread::spawn(move || steady(steady_client, 50, 2.0));
        let flooded = flood(flood_socket, 4_000, 2.0);
        (flooded, steady.join().unwrap())
    });
    assert_eq!(answered, calls, "the steady source lost calls");
    let Sent {
        sent,
        answered,
        elapsed,
    } = flood_result;
    let limit = 400.0 * elapsed.as_secs_f64() + 40.0;
    let ratio = answered as f64 / limit;
    eprintln!("flood: {answered} of {sent} answered in {elapsed:?}, the limit allows {limit:.0} ({ratio:.3}); steady: {calls} of {calls}");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "flood: {answered} of {sent} answered in {elapsed:?}; the limit allows {limit:.0}"
    );
    let counted = limited(&d, "udp_rate_limited_source", "dropped_rate_source");
    let refused = sent - answered;
    assert!(
        counted <= refused && counted as f64 >= 0.9 * refused as f64,
        "{counted} counted for {refused} unanswered calls"
    );
    // The XDP path's drops are logged within a second of the first.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !d.stderr().contains("per-source rate limit") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        d.stderr().contains("per-source rate limit"),
        "no log line names the limit hit:\n{}",
        d.stderr()
    );
}

/// Sources are limited together by prefix: with /31 (IPv4) and /127 (IPv6), .2 and .3
/// share one limit and .4 has its own.
#[test]
fn sources_in_one_prefix_share_a_limit() {
    let Some(pair) = NetPair::new("rate_limit_prefix") else {
        return;
    };
    let n = pair.n;
    for host in [3, 4] {
        pair.add_cli_addr(&format!("10.77.{n}.{host}/24"));
        pair.add_cli_addr(&format!("fd77:{n:x}::{host}/64"));
    }
    let _d = limited_daemon(
        &pair,
        &[
            "--rate-limit",
            "1/3",
            "--rate-limit-v4-prefix",
            "31",
            "--rate-limit-v6-prefix",
            "127",
        ],
    );
    let servers = [pair.srv_addr(false, PORT), pair.srv_addr(true, PORT)];
    pair.in_client(move || {
        for server in servers {
            let from = |host: u8| -> UdpClient {
                let ip: IpAddr = match server {
                    SocketAddr::V4(_) => format!("10.77.{n}.{host}").parse().unwrap(),
                    SocketAddr::V6(_) => format!("fd77:{n:x}::{host}").parse().unwrap(),
                };
                UdpClient::bind_to(server, SocketAddr::new(ip, 0)).unwrap()
            };
            let answered = |c: &UdpClient, xid: u32| -> bool {
                c.send(&null_call(xid)).unwrap();
                c.recv(Duration::from_millis(300)).unwrap().is_some()
            };
            let first = from(2);
            for i in 0..3 {
                assert!(
                    answered(&first, 10 + i),
                    "{server}: burst call {i} from ::2"
                );
            }
            // Within the same second: the burst of the prefix is spent.
            assert!(
                !answered(&from(3), 20),
                "{server}: .3/::3 shares the prefix of .2/::2"
            );
            assert!(answered(&from(4), 30), "{server}: .4/::4 has its own limit");
        }
    });
}

/// Two sources, each within its own generous limit, together over the global ceiling:
/// together they get the ceiling (±10%), and the excess is counted as over the global limit.
#[test]
fn the_global_ceiling_holds_all_sources_together() {
    let Some(pair) = NetPair::new("rate_limit_global") else {
        return;
    };
    let other = second_address(&pair, 6);
    let d = limited_daemon(
        &pair,
        &["--rate-limit", "5000", "--rate-limit-global", "300/30"],
    );
    let server = pair.srv_addr(false, PORT);
    let first = pair.cli_v4();
    let (a, b) = pair.in_client(move || {
        let (sa, sb) = (bind(first, server), bind(other, server));
        let b = std::thread::spawn(move || flood(sb, 1_000, 1.5));
        (flood(sa, 1_000, 1.5), b.join().unwrap())
    });
    let elapsed = a.elapsed.max(b.elapsed).as_secs_f64();
    let ceiling = 300.0 * elapsed + 30.0;
    let together = (a.answered + b.answered) as f64;
    assert!(
        (0.9..=1.1).contains(&(together / ceiling)),
        "{} + {} answered in {elapsed:.2} s; the ceiling allows {ceiling:.0}",
        a.answered,
        b.answered
    );
    assert!(
        a.answered > 0 && b.answered > 0,
        "both sources get a share: {} and {}",
        a.answered,
        b.answered
    );
    let counted = limited(&d, "udp_rate_limited_global", "dropped_rate_global");
    assert!(counted > 0, "the global limit's drops are counted");
    assert_eq!(
        limited(&d, "udp_rate_limited_source", "dropped_rate_source"),
        0,
        "no source was over its own limit"
    );
}

/// Over TCP a call over the limit waits instead of being dropped: 120 pipelined calls at
/// 200/s with a burst of 20 are all answered, over at least (120 - 20) / 200 s.
#[test]
fn tcp_calls_over_the_limit_wait() {
    let Some(pair) = NetPair::new("rate_limit_tcp") else {
        return;
    };
    let d = limited_daemon(&pair, &["--rate-limit", "200/20"]);
    let server = pair.srv_addr(false, PORT);
    let elapsed = pair.in_client(move || {
        let mut c = TcpClient::connect(server, SrcPort::High).unwrap();
        let start = Instant::now();
        for i in 0..120 {
            c.send_record(&null_call(0x5300_0000 + i)).unwrap();
        }
        for i in 0..120 {
            let reply = c.recv_reply().unwrap();
            assert_eq!(reply.xid, 0x5300_0000 + i, "replies in order, none lost");
        }
        start.elapsed()
    });
    assert!(
        elapsed >= Duration::from_millis(450),
        "120 calls at 200/s (burst 20) answered in {elapsed:?}: not held to the limit"
    );
    assert!(
        limited(&d, "tcp_rate_delayed_source", "-") >= 1,
        "the waits are counted"
    );
}
