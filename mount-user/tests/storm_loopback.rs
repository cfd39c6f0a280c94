//! In-process runs of the `storm` generator (crate `mount-storm`) against the daemon's own
//! UDP and TCP shells on 127.0.0.1 (ephemeral ports), with the real protocol core and with
//! wrong-answering fakes. Here rather than in mount-storm: the servers are this crate's, and
//! mount-user depends on mount-storm (the `storm` subcommand), so mount-storm cannot
//! depend back on it, not even as a dev-dependency, without a package cycle.
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use mount_proto::exports::HostFacts;
use mount_proto::mount::wire::{Flavors, MountRes3};
use mount_proto::mount::Policy;
use mount_proto::mountlist::MountList;
use mount_proto::rpc::{encode_success, Call};

use mount_storm::report::Report;
use mount_storm::{execute, StormArgs};
use mount_user::exports::{parse_str, SharedExports};
use mount_user::service::mount::MountService;
use mount_user::service::names::NameCache;
use mount_user::service::{Answer, Responder};
use mount_user::socket::tcp::{self, TcpConfig};
use mount_user::socket::udp::UdpServer;
use mount_user::socket::{bind_tcp, bind_udp_group};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    storm: StormArgs,
}

fn args(list: &[&str]) -> StormArgs {
    let argv = std::iter::once("storm").chain(list.iter().copied());
    Cli::try_parse_from(argv).unwrap().storm
}

fn names() -> Arc<NameCache> {
    Arc::new(NameCache::with_lookup(Box::new(|_| None)))
}

const EXPORTS: &str = "/srv 127.0.0.1(rw,insecure)\n/data *(ro,insecure)\n";

fn service() -> Arc<MountService> {
    let table = parse_str(EXPORTS, "test").unwrap();
    Arc::new(MountService::new(
        Arc::new(SharedExports::new(table)),
        Arc::new(MountList::new()),
        Policy::default(),
    ))
}

fn udp_server(responder: Arc<dyn Responder>) -> (UdpServer, SocketAddr) {
    let sockets = bind_udp_group("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let addr = sockets[0].local_addr().unwrap();
    let server = UdpServer::start(sockets, responder, names(), Arc::default(), None).unwrap();
    (server, addr)
}

/// Runs storm against a TCP shell serving `responder`; returns the report.
fn against_tcp(responder: Arc<dyn Responder>, extra: &[&str]) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), 64).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = TcpConfig {
        max_connections: 64,
        max_per_host: 64,
        record_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        max_record: 8192,
        reply_capacity: tcp::TCP_REPLY_CAPACITY,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let target = addr.to_string();
    let mut list = vec!["--target", &target, "--transport", "tcp"];
    list.extend_from_slice(extra);
    let a = args(&list);
    let client = std::thread::spawn(move || {
        let r = execute(&a, Arc::new(AtomicBool::new(false)), false);
        let _ = stop.send(true);
        r
    });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tcp::serve(
            listener,
            responder,
            names(),
            Arc::default(),
            config,
            None,
            stop_rx,
        )
        .await;
    });
    client.join().unwrap().unwrap()
}

const FULL_MIX: &str = "null=1,mnt3=4,umnt3=1,export3=1,dump3=1,mnt1=1,mnt2=1,umnt1=1,export1=1";

fn assert_clean(r: &Report, n: u64) {
    assert_eq!(r.sent, n, "{}", r.to_json());
    assert_eq!(r.answered, n, "{}", r.to_json());
    assert_eq!(r.wrong, 0, "{}", r.to_json());
    assert_eq!(r.lost, 0, "{}", r.to_json());
    assert_eq!(r.stopped_by, "count");
    assert!(r.calls_per_sec > 0.0);
    assert!(r.latency_us.p50 > 0.0 && r.latency_us.max >= r.latency_us.p99);
    let per_proc: u64 = r.per_proc.values().map(|p| p.answered).sum();
    assert_eq!(per_proc, n);
}

#[test]
fn udp_against_the_real_core_answers_everything() {
    let (server, addr) = udp_server(service());
    let target = addr.to_string();
    let a = args(&[
        "--target",
        &target,
        "--mix",
        FULL_MIX,
        "--paths",
        "/srv,/data,/srv/sub",
        "--count",
        "2000",
        "--clients",
        "4",
        "--window",
        "32",
        "--duration",
        "20",
    ]);
    let r = execute(&a, Arc::new(AtomicBool::new(false)), false).unwrap();
    server.stop();
    assert_clean(&r, 2000);
    assert_eq!(r.per_proc.len(), 9);
    assert!(r.per_proc["mnt3"].answered > r.per_proc["null"].answered);
    assert_eq!(
        (r.transport.as_str(), r.io.as_str(), r.mode.as_str()),
        ("udp", "socket", "closed")
    );
}

#[test]
fn udp_two_threads_and_open_loop() {
    let (server, addr) = udp_server(service());
    let target = addr.to_string();
    let a = args(&[
        "--target",
        &target,
        "--paths",
        "/srv",
        "--count",
        "2000",
        "--clients",
        "4",
        "--threads",
        "2",
        "--window",
        "16",
    ]);
    let r = execute(&a, Arc::new(AtomicBool::new(false)), false).unwrap();
    assert_clean(&r, 2000);
    assert_eq!(r.threads, 2);
    // Open loop: 2000 calls/s for 0.5 s sends about 1000, paced, all answered.
    let a = args(&[
        "--target",
        &target,
        "--paths",
        "/srv",
        "--rate",
        "2000",
        "--duration",
        "0.5",
        "--count",
        "100000",
    ]);
    let started = Instant::now();
    let r = execute(&a, Arc::new(AtomicBool::new(false)), false).unwrap();
    server.stop();
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(r.mode, "open");
    assert_eq!(r.stopped_by, "duration");
    assert!((900..=1100).contains(&r.sent), "{}", r.to_json());
    assert_eq!(r.answered, r.sent);
    assert_eq!((r.wrong, r.lost), (0, 0));
    // Calls sent ahead of their due time (within a tick) are timed from when they left:
    // no reply comes back faster than a loopback round trip.
    assert!(r.latency_us.min >= 1.0, "{}", r.to_json());
}

#[test]
fn tcp_against_the_real_core_answers_everything() {
    let r = against_tcp(
        service(),
        &[
            "--mix",
            FULL_MIX,
            "--paths",
            "/srv,/data",
            "--count",
            "2000",
            "--clients",
            "3",
            "--window",
            "48",
            "--duration",
            "20",
        ],
    );
    assert_clean(&r, 2000);
    assert_eq!(r.transport, "tcp");
}

/// Answers every call wrongly in turn: a foreign xid, MNT status ACCES, PROC_UNAVAIL,
/// garbage, and (one in five) rightly.
struct Wrong;

impl Responder for Wrong {
    fn respond(&self, req: &[u8], _: SocketAddr, _: Option<&HostFacts>, out: &mut [u8]) -> Answer {
        let Ok(call) = Call::parse(req) else {
            return Answer::Drop;
        };
        let status: u32 = if call.xid % 5 == 1 { 13 } else { 0 };
        let xid = if call.xid % 5 == 2 {
            call.xid ^ 0x4000_0000
        } else {
            call.xid
        };
        let len = match call.xid % 5 {
            3 => mount_proto::rpc::encode_accepted(
                out,
                xid,
                &mount_proto::rpc::AcceptStat::ProcUnavail,
            )
            .unwrap(),
            4 => {
                // The xid, then a message type and nothing else.
                out[..4].copy_from_slice(&xid.to_be_bytes());
                out[4..6].copy_from_slice(&[0, 1]);
                6
            }
            _ => encode_success(out, xid, |w| {
                if call.proc_ != 1 {
                    return Ok(());
                }
                match status {
                    0 => MountRes3::Ok {
                        handle: &[9; 32],
                        flavors: Flavors::from_be_words(&[0, 0, 0, 1]).unwrap_or_default(),
                    }
                    .emit(w),
                    _ => MountRes3::Err(status).emit(w),
                }
            })
            .unwrap(),
        };
        Answer::Reply {
            len,
            truncated: false,
        }
    }
}

#[test]
fn wrong_answers_are_counted_apart_from_lost_ones() {
    let (server, addr) = udp_server(Arc::new(Wrong));
    let target = addr.to_string();
    let a = args(&[
        "--target",
        &target,
        "--mix",
        "mnt3",
        "--paths",
        "/srv",
        "--count",
        "1000",
        "--window",
        "8",
        "--timeout",
        "50",
        "--duration",
        "20",
    ]);
    let r = execute(&a, Arc::new(AtomicBool::new(false)), false).unwrap();
    server.stop();
    assert!(r.wrong > 0, "{}", r.to_json());
    assert!(r.answered > 0 && r.answered < r.sent, "{}", r.to_json());
    for reason in ["mount_status", "accept_stat", "unknown_xid"] {
        assert!(r.wrong_by_reason[reason] > 0, "{reason}: {}", r.to_json());
    }
    // Garbage 6-byte replies still carry the xid: counted as wrong for their call.
    assert!(r.wrong_by_reason["garbage"] > 0, "{}", r.to_json());
    assert_eq!(r.lost, r.sent - r.answered - r.wrong);
    assert!(r.per_proc["mnt3"].wrong > 0);
}

#[test]
fn wrong_answers_over_tcp() {
    let r = against_tcp(
        Arc::new(Wrong),
        &[
            "--mix",
            "mnt3",
            "--paths",
            "/srv",
            "--count",
            "500",
            "--timeout",
            "50",
        ],
    );
    assert!(
        r.wrong > 0 && r.wrong_by_reason["mount_status"] > 0,
        "{}",
        r.to_json()
    );
}

/// Never answers: everything is lost, and the run still ends (bounded drain).
struct Silent;

impl Responder for Silent {
    fn respond(&self, _: &[u8], _: SocketAddr, _: Option<&HostFacts>, _: &mut [u8]) -> Answer {
        Answer::Drop
    }
}

#[test]
fn silence_is_loss_and_the_run_is_bounded() {
    let (server, addr) = udp_server(Arc::new(Silent));
    let target = addr.to_string();
    let a = args(&[
        "--target",
        &target,
        "--mix",
        "null",
        "--count",
        "1000000",
        "--duration",
        "0.3",
        "--timeout",
        "100",
        "--window",
        "4",
    ]);
    let started = Instant::now();
    let r = execute(&a, Arc::new(AtomicBool::new(false)), false).unwrap();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(r.stopped_by, "duration");
    assert!(r.sent >= 4, "{}", r.to_json());
    assert_eq!((r.answered, r.wrong), (0, 0));
    assert_eq!(r.lost, r.sent);
    assert_eq!(r.timeouts, r.sent);
}

#[test]
fn stop_flag_ends_the_run_early_with_a_report() {
    let (server, addr) = udp_server(service());
    let target = addr.to_string();
    let a = args(&[
        "--target",
        &target,
        "--mix",
        "null",
        "--count",
        "100000000",
        "--duration",
        "60",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        s2.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let started = Instant::now();
    let r = execute(&a, stop, false).unwrap();
    t.join().unwrap();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.stopped_by, "signal");
    assert!(r.answered > 0);
    assert_eq!(r.wrong, 0);
}

/// Answers NULL and records who called.
#[derive(Default)]
struct Recorder {
    peers: std::sync::Mutex<std::collections::HashSet<SocketAddr>>,
    calls: std::sync::atomic::AtomicU64,
}

impl Responder for Recorder {
    fn respond(
        &self,
        req: &[u8],
        peer: SocketAddr,
        _: Option<&HostFacts>,
        out: &mut [u8],
    ) -> Answer {
        let Ok(call) = Call::parse(req) else {
            return Answer::Drop;
        };
        self.peers.lock().unwrap().insert(peer);
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let len = encode_success(out, call.xid, |_| Ok(())).unwrap();
        Answer::Reply {
            len,
            truncated: false,
        }
    }
}

#[test]
fn clients_use_distinct_ports_and_source_addresses_and_warmup_is_not_counted() {
    // The server listens on every loopback address, so 127.0.0.2 can call 127.0.0.1.
    let recorder = Arc::new(Recorder::default());
    let sockets = bind_udp_group("0.0.0.0:0".parse().unwrap(), 1).unwrap();
    let port = sockets[0].local_addr().unwrap().port();
    let server =
        UdpServer::start(sockets, recorder.clone(), names(), Arc::default(), None).unwrap();
    let target = format!("127.0.0.1:{port}");
    let a = args(&[
        "--target",
        &target,
        "--mix",
        "null",
        "--clients",
        "6",
        "--source-addrs",
        "127.0.0.1,127.0.0.2",
        "--count",
        "600",
        "--warmup",
        "0.2",
        "--duration",
        "20",
        // Fewer slots than clients: every client is still used.
        "--window",
        "4",
    ]);
    let r = execute(&a, Arc::new(AtomicBool::new(false)), false).unwrap();
    server.stop();
    assert_clean(&r, 600);
    let peers = recorder.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 6, "{peers:?}");
    let ips: std::collections::HashSet<_> = peers.iter().map(|p| p.ip()).collect();
    assert_eq!(ips.len(), 2, "{ips:?}");
    // Warmup calls were sent and answered, but not counted.
    let seen = recorder.calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(seen > 600, "the server saw only {seen} calls");
    assert_eq!(r.source_addrs, vec!["127.0.0.1", "127.0.0.2"]);
}
