//! MNT answered by the XDP program itself (`serve --xdp-answers on`, docs/xdp-answers.md),
//! end to end on a real veth with the program in native mode: a repeated MNT of a recorded
//! export root is answered in the program, yet nothing is ever missing from DUMP: the first
//! MNT of a pair and the first after its UMNT/UMNTALL go to user space and are recorded; a
//! reload that denies the client is obeyed at once, also in a bounded loop of reloads.

use e2e::unit::rerun_of_the_suite;
use e2e::*;
use std::net::SocketAddr;
use std::path::Path;

fn exports(n: u8, allow_a: bool) -> String {
    let net = if allow_a {
        format!("10.77.{n}.0/24(rw) fd77:{n:x}::/64(rw)")
    } else {
        "192.0.2.0/24(rw)".to_string()
    };
    format!(
        "/srv/a {net}\n\
         /srv/b 10.77.{n}.0/24(rw,sec=krb5p:sys) fd77:{n:x}::/64(rw,sec=krb5p:sys)\n"
    )
}

fn reload(d: &Daemon<'_>, file: &Path, text: &str) {
    std::fs::write(file, text).unwrap();
    let (code, out, err) = d.reload();
    assert_eq!(code, Some(0), "reload: {out}\n{err}");
}

fn start<'p>(pair: &'p NetPair, file: &Path) -> Daemon<'p> {
    pair.start_daemon(&DaemonOpts::native_xdp_answers(file.to_path_buf()))
}

fn mnt3(server: SocketAddr, path: &'static str) -> u32 {
    let mut c = RpcClient::new(Proto::Udp, server, SrcPort::Privileged).unwrap();
    c.mnt3(path).0
}

#[test]
fn mnt_answered_in_the_program_is_always_listed() {
    if rerun_of_the_suite("mnt_answered_in_the_program_is_always_listed") {
        return;
    }
    let Some(pair) = NetPair::new("xdp_answers_mnt_listed") else {
        return;
    };
    let n = pair.n;
    let file = pair.write_file("exports", &exports(n, true));
    let mut d = start(&pair, &file);
    for v6 in [false, true] {
        let srv = pair.srv_addr(v6, PORT);
        let cli = if v6 { pair.cli_v6() } else { pair.cli_v4() }.to_string();
        let entry = |dir: &str| (cli.clone(), dir.to_string());
        let before = d.answered_in_program("mnt");
        // First MNT: user space answers and records it.
        let dump = pair.in_client(move || {
            let mut c = RpcClient::new(Proto::Udp, srv, SrcPort::Privileged).unwrap();
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
            c.dump(3)
        });
        assert!(dump.contains(&entry("/srv/a")), "{dump:?}");
        assert_eq!(
            d.answered_in_program("mnt"),
            before,
            "the first MNT of a pair is user space's"
        );
        // Repeats (v3, v1, v2, and /srv/b's flavors): the program answers, as user space
        // would (the same status, handle and flavors).
        let dump = pair.in_client(move || {
            let mut c = RpcClient::new(Proto::Udp, srv, SrcPort::Privileged).unwrap();
            for _ in 0..3 {
                let (st, ok) = c.mnt3("/srv/a");
                assert_eq!(st, status::OK);
                assert_eq!(ok.unwrap(), (synthetic_handle("/srv/a"), vec![1]));
            }
            assert_eq!(
                c.mnt12(1, "/srv/a"),
                (status::OK, Some(synthetic_handle("/srv/a")))
            );
            assert_eq!(
                c.mnt12(2, "/srv/a"),
                (status::OK, Some(synthetic_handle("/srv/a")))
            );
            assert_eq!(c.mnt3("/srv/b").0, status::OK);
            let (st, ok) = c.mnt3("/srv/b");
            assert_eq!(st, status::OK);
            assert_eq!(ok.unwrap(), (synthetic_handle("/srv/b"), vec![390005, 1]));
            // A high port on a `secure` export: refused, by user space.
            let mut hi = RpcClient::new(Proto::Udp, srv, SrcPort::High).unwrap();
            assert_eq!(hi.mnt3("/srv/a").0, status::ACCES);
            c.dump(3)
        });
        assert!(
            dump.contains(&entry("/srv/a")) && dump.contains(&entry("/srv/b")),
            "{dump:?}"
        );
        let answered = d.answered_in_program("mnt") - before;
        assert_eq!(answered, 6, "MNTs answered by the program");
        // UMNT, then MNT again: recorded again (user space), then answered again.
        let dump = pair.in_client(move || {
            let mut c = RpcClient::new(Proto::Udp, srv, SrcPort::Privileged).unwrap();
            c.umnt(3, "/srv/a");
            let gone = c.dump(3);
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
            (gone, c.dump(3))
        });
        assert!(!dump.0.contains(&entry("/srv/a")), "UMNT: {:?}", dump.0);
        assert!(
            dump.1.contains(&entry("/srv/a")),
            "MNT after UMNT: {:?}",
            dump.1
        );
        assert_eq!(
            d.answered_in_program("mnt") - before,
            6,
            "the MNT after UMNT is user space's"
        );
        // UMNTALL, then MNT: the same.
        let dump = pair.in_client(move || {
            let mut c = RpcClient::new(Proto::Udp, srv, SrcPort::Privileged).unwrap();
            c.umntall(3);
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
            c.dump(3)
        });
        let mine: Vec<_> = dump.into_iter().filter(|(h, _)| *h == cli).collect();
        assert_eq!(mine, vec![entry("/srv/a")], "after UMNTALL and MNT");
        assert_eq!(d.answered_in_program("mnt") - before, 7);
    }
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn reload_is_obeyed_by_the_program_at_once() {
    if rerun_of_the_suite("reload_is_obeyed_by_the_program_at_once") {
        return;
    }
    let Some(pair) = NetPair::new("xdp_answers_mnt_reload") else {
        return;
    };
    let n = pair.n;
    let file = pair.write_file("exports", &exports(n, true));
    let mut d = start(&pair, &file);
    let srv = pair.srv_addr(false, PORT);
    // Bounded: 30 rounds of (allow, MNT twice, deny, MNT) with a reload between each.
    const ROUNDS: usize = 30;
    let started = std::time::Instant::now();
    let mut answered_in_program = 0;
    for round in 0..ROUNDS {
        assert!(started.elapsed().as_secs() < 120, "round {round}: too slow");
        reload(&d, &file, &exports(n, true));
        let before = d.answered_in_program("mnt");
        let (first, second) = pair.in_client(move || (mnt3(srv, "/srv/a"), mnt3(srv, "/srv/a")));
        assert_eq!(
            (first, second),
            (status::OK, status::OK),
            "round {round}: allowed"
        );
        answered_in_program += d.answered_in_program("mnt") - before;
        reload(&d, &file, &exports(n, false));
        let denied = pair.in_client(move || mnt3(srv, "/srv/a"));
        assert_eq!(
            denied,
            status::ACCES,
            "round {round}: denied by the reload, yet answered OK"
        );
    }
    // The second MNT of each allowed round is the program's (the pair stayed listed).
    assert_eq!(
        answered_in_program, ROUNDS as u64,
        "MNTs the program answered"
    );
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn reloads_during_a_mnt_storm_are_obeyed() {
    if rerun_of_the_suite("reloads_during_a_mnt_storm_are_obeyed") {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let Some(pair) = NetPair::new("xdp_answers_mnt_storm") else {
        return;
    };
    let n = pair.n;
    let file = pair.write_file("exports", &exports(n, true));
    let mut d = start(&pair, &file);
    let srv = pair.srv_addr(false, PORT);
    // Bounded in count and time: at most 60 000 calls, 12 reload rounds, 2 minutes.
    const MAX_CALLS: usize = 60_000;
    const ROUNDS: usize = 12;
    let (epoch, stop) = (Instant::now(), AtomicBool::new(false));
    let before = d.answered_in_program("mnt");
    let (log, denied) = std::thread::scope(|s| {
        let storm = s.spawn(|| {
            pair.in_client(|| {
                let mut c = RpcClient::new(Proto::Udp, srv, SrcPort::Privileged).unwrap();
                let mut log = Vec::new();
                while log.len() < MAX_CALLS
                    && !stop.load(Ordering::Relaxed)
                    && epoch.elapsed() < Duration::from_secs(120)
                {
                    let sent = epoch.elapsed();
                    log.push((sent, c.mnt3("/srv/a").0));
                }
                log
            })
        });
        // Windows during which the table in force denies the client: from the moment the
        // denying reload returned to the moment the next allowing one starts.
        let mut denied = Vec::new();
        for _ in 0..ROUNDS {
            reload(&d, &file, &exports(n, true));
            std::thread::sleep(Duration::from_millis(40));
            reload(&d, &file, &exports(n, false));
            let from = epoch.elapsed();
            std::thread::sleep(Duration::from_millis(40));
            denied.push((from, epoch.elapsed()));
        }
        stop.store(true, Ordering::Relaxed);
        (storm.join().expect("the storm thread"), denied)
    });
    let mut checked = 0;
    for (sent, st) in &log {
        if denied.iter().any(|(from, to)| sent > from && sent < to) {
            assert_eq!(
                *st,
                status::ACCES,
                "a MNT sent {sent:?} after a denying reload got OK"
            );
            checked += 1;
        }
    }
    let ok = log.iter().filter(|(_, st)| *st == status::OK).count();
    let in_program = d.answered_in_program("mnt") - before;
    println!(
        "{} MNTs: {ok} OK, {checked} in denied windows (all ACCES), {in_program} answered \
         in the program",
        log.len()
    );
    assert!(
        checked > 0,
        "no call fell in a denied window: the test proved nothing"
    );
    assert!(
        in_program > 0,
        "the program answered none: the test proved nothing"
    );
    assert_eq!(d.stop().code(), Some(0));
}
