//! Tests of the learner against a fake upstream on loopback.
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use mount_proto::mount::wire::{Flavors, MountRes3};
use mount_proto::mount::MNTPATHLEN;
use mount_proto::rpc::{encode_success, Call};
use mount_proto::xdr::Reader;

use super::*;

/// A fake MOUNT server: answers MNT v3 with the path's bytes plus `generation` as handle
/// (after `delay`), MNT v1 with PROG_MISMATCH; counts v3 MNT calls; `silent` stops answers.
struct Fake {
    port: u16,
    mnt_calls: Arc<AtomicU32>,
    generation: Arc<AtomicU64>,
    silent: Arc<AtomicBool>,
}

fn fake(delay: Duration) -> Fake {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let (mnt_calls, generation, silent) = Default::default();
    let fake = Fake {
        port,
        mnt_calls,
        generation,
        silent,
    };
    let (calls, gen, quiet) = (
        fake.mnt_calls.clone(),
        fake.generation.clone(),
        fake.silent.clone(),
    );
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Bounded: the tests end long before.
        for _ in 0..600 {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(call) = Call::parse(&buf[..len]) else {
                continue;
            };
            if quiet.load(Ordering::SeqCst) {
                continue;
            }
            let mut out = [0u8; 512];
            let n = if call.vers == 1 {
                let stat = mount_proto::rpc::AcceptStat::ProgMismatch { low: 3, high: 3 };
                mount_proto::rpc::encode_accepted(&mut out, call.xid, &stat).unwrap()
            } else if call.proc_ == 1 {
                calls.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(delay);
                let path = Reader::new(call.args).string(MNTPATHLEN).unwrap().to_vec();
                let mut handle = path.clone();
                handle.extend(gen.load(Ordering::SeqCst).to_be_bytes());
                let status = if path.ends_with(b"/denied") { 13 } else { 0 };
                let res = match status {
                    0 => MountRes3::Ok {
                        handle: &handle,
                        flavors: Flavors::default(),
                    },
                    _ => MountRes3::Err(status),
                };
                encode_success(&mut out, call.xid, |w| res.emit(w)).unwrap()
            } else {
                encode_success(&mut out, call.xid, |_| Ok(())).unwrap()
            };
            let _ = sock.send_to(&out[..n], from);
        }
    });
    fake
}

fn upstream(port: u16, ttl: Duration) -> Arc<Upstream> {
    Upstream::start(UpstreamConfig {
        target: Target {
            host: "127.0.0.1".parse().unwrap(),
            port: Some(port),
            program: mount_proto::mount::MOUNT_PROGRAM,
            try_timeout: Duration::from_millis(150),
            tries: 2,
        },
        ttl,
        wait: Duration::from_secs(2),
        umnt: true,
    })
    .unwrap()
}

fn v3_handle(up: &Upstream, path: &str) -> Option<Vec<u8>> {
    match up.handles().get(path)?.v3 {
        MntAnswer::Handle(h) => Some(h.as_bytes().to_vec()),
        MntAnswer::Status(_) => None,
    }
}

#[test]
fn roots_are_learned_with_statuses_and_without_v1() {
    let f = fake(Duration::ZERO);
    let up = upstream(f.port, Duration::from_secs(600));
    let roots = vec!["/srv/a".to_string(), "/srv/denied".to_string()];
    let missing = up.learn_paths(&roots, Instant::now() + Duration::from_secs(5));
    assert!(missing.is_empty(), "{missing:?}");
    let mut want = b"/srv/a".to_vec();
    want.extend(0u64.to_be_bytes());
    assert_eq!(v3_handle(&up, "/srv/a"), Some(want));
    let denied = up.handles().get("/srv/denied").copied().unwrap();
    assert_eq!(denied.v3, MntAnswer::Status(13));
    assert_eq!(denied.v1, None, "upstream does not serve v1");
    let report = up.report();
    assert_eq!((report.learned, report.refused, report.failed), (1, 1, 0));
}

#[test]
fn concurrent_waits_for_one_path_coalesce_into_one_call() {
    let f = fake(Duration::from_millis(100));
    let up = upstream(f.port, Duration::from_secs(600));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let up = up.clone();
            std::thread::spawn(move || up.wait_for("/srv/a/sub"))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(v3_handle(&up, "/srv/a/sub").is_some());
    assert_eq!(f.mnt_calls.load(Ordering::SeqCst), 1);
    // Cached: no further call.
    up.wait_for("/srv/a/sub");
    assert_eq!(f.mnt_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn refresh_detects_a_changed_handle_and_keeps_serving_when_upstream_goes_quiet() {
    let f = fake(Duration::ZERO);
    let up = upstream(f.port, Duration::from_secs(2));
    let roots = vec!["/srv/a".to_string()];
    assert!(up
        .learn_paths(&roots, Instant::now() + Duration::from_secs(5))
        .is_empty());
    let first = v3_handle(&up, "/srv/a").unwrap();
    f.generation.store(7, Ordering::SeqCst);
    // Refreshed after half the TTL (1 s); bounded wait.
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.report().changed == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(up.report().changed, 1);
    let second = v3_handle(&up, "/srv/a").unwrap();
    assert_ne!(first, second);
    // Upstream silent: the known handle stays; a new path returns without a long wait.
    f.silent.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.report().up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!up.report().up);
    assert_eq!(v3_handle(&up, "/srv/a"), Some(second));
    let t0 = Instant::now();
    up.wait_for("/srv/a/new");
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert!(up.handles().get("/srv/a/new").is_none());
}

#[test]
fn paths_below_roots() {
    assert!(is_under("/srv/a", "/srv/a"));
    assert!(is_under("/srv/a/b", "/srv/a"));
    assert!(!is_under("/srv/ab", "/srv/a"));
    assert!(is_under("/x", "/"));
    assert_eq!(status_name(13), "ACCES");
    assert_eq!(status_name(10006), "SERVERFAULT");
    assert_eq!(status_name(9999), "unknown");
}

#[test]
fn learned_answers_reach_the_hook_and_adopted_ones_are_served_without_a_call() {
    let f = fake(Duration::ZERO);
    let up = upstream(f.port, Duration::from_secs(600));
    let (tx, rx) = crossbeam_channel::unbounded();
    up.set_on_learned(Box::new(move |path, learned| {
        tx.send((path.to_owned(), *learned)).unwrap();
    }));
    let roots = vec!["/srv/a".to_string()];
    assert!(up
        .learn_paths(&roots, Instant::now() + Duration::from_secs(5))
        .is_empty());
    let (path, learned) = rx.recv_timeout(Duration::from_secs(1)).unwrap();
    assert_eq!(path, "/srv/a");
    assert_eq!(Some(learned), up.handles().get("/srv/a").copied());
    // A peer's answer: served at once, upstream not asked, the hook not told.
    let calls = f.mnt_calls.load(Ordering::SeqCst);
    let peer = Learned {
        v3: MntAnswer::Status(2),
        v1: None,
    };
    assert!(up.adopt("/srv/a/sub", peer));
    assert!(!up.adopt("/srv/a/sub", peer), "same answer: no change");
    up.wait_for("/srv/a/sub");
    assert_eq!(up.handles().get("/srv/a/sub").copied(), Some(peer));
    assert_eq!(f.mnt_calls.load(Ordering::SeqCst), calls);
    assert!(rx.try_recv().is_err());
}
