//! Daemon lifecycle: SIGHUP reload (good and broken files), `check`, start-up failures
//! (bad exports file, port in use), a damaged rmtab.

use e2e::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

#[test]
fn sighup_reload() {
    let Some(pair) = NetPair::new("sighup_reload") else {
        return;
    };
    let n = pair.n;
    let base = e2e::fixtures::standard_exports(n);
    let exports = pair.write_file("exports", &base);
    let d = pair.start_daemon(&DaemonOpts::new(exports.clone()));
    let server = pair.srv_addr(false, PORT);
    // A TCP connection opened before the reload (sockets keep the namespace they were
    // made in, so it can be used from any thread afterwards).
    let mut old_conn = pair.in_client(move || {
        let mut cl = RpcClient::new(Proto::Tcp, server, SrcPort::High).unwrap();
        assert_eq!(cl.mnt3("/srv/new").0, status::NOENT);
        cl
    });
    // Add an export, SIGHUP: the new export becomes mountable.
    std::fs::write(
        &exports,
        format!("{base}/srv/new *(insecure,sec=sys:krb5)\n"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    pair.in_client(move || {
        let mut cl = RpcClient::new(Proto::Udp, server, SrcPort::High).unwrap();
        wait_until("/srv/new mountable after SIGHUP", 5, || {
            cl.mnt3("/srv/new").0 == 0
        });
        let (_, ok) = cl.mnt3("/srv/new");
        assert_eq!(
            cl.exports(3, procs::EXPORT).last().map(|e| e.0.clone()),
            Some("/srv/new".to_string()),
            "EXPORT reflects the reload"
        );
        assert_eq!(ok.unwrap(), (synthetic_handle("/srv/new"), vec![1, 390003]));
    });
    let (st, ok) = old_conn.mnt3("/srv/new");
    assert_eq!(
        st,
        status::OK,
        "a connection from before the reload sees the new table"
    );
    assert_eq!(ok.unwrap().0, synthetic_handle("/srv/new"));
    // A broken file: old table stays, stderr names file:line.
    std::fs::write(
        &exports,
        format!("{base}/srv/b *(ro)\n/srv/broken *(bogus_option)\n"),
    )
    .unwrap();
    let bad_line = base.lines().count() + 2;
    d.signal(libc::SIGHUP);
    let want = format!("{}:{bad_line}", exports.display());
    wait_until(&format!("stderr naming {want}"), 5, || {
        d.stderr().contains(&want)
    });
    pair.in_client(move || {
        let mut cl = RpcClient::new(Proto::Tcp, server, SrcPort::High).unwrap();
        assert_eq!(
            cl.mnt3("/srv/new").0,
            status::OK,
            "old table kept after a bad reload"
        );
        assert_eq!(cl.mnt3("/srv/a").0, status::OK);
        assert_eq!(
            cl.mnt3("/srv/b").0,
            status::NOENT,
            "nothing of the bad file applied"
        );
    });
    drop(d); // asserts exit 0 on SIGTERM
}

#[test]
fn check_command() {
    // No namespaces needed: `check` only reads the file.
    let bin = daemon_bin();
    let dir = std::env::temp_dir().join(format!("xmd-e2e-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(&good, e2e::fixtures::standard_exports(9)).unwrap();
    let out = Command::new(&bin)
        .args(["check", "--exports"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "check on a good file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (text, line) in [
        ("/srv/a *(rw)\n\n/srv/b *(ro,nosuchoption)\n", 3),
        ("# c\n/srv/a 10.0.0.0/33(rw)\n", 2),
        ("/srv/a *(fh=zz)\n", 1),
        ("/srv/a *(rw\n", 1),
        ("relative *(rw)\n", 1),
    ] {
        let bad = dir.join("bad");
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(&bin)
            .args(["check", "--exports"])
            .arg(&bad)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "check on {text:?}: {all}");
        let want = format!("{}:{line}:", bad.display());
        assert!(
            all.contains(&want),
            "check on {text:?} must say {want:?}, said {all:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_with_a_bad_exports_file_fails_fast() {
    let Some(pair) = NetPair::new("serve_bad_exports") else {
        return;
    };
    let bad = pair.write_file("exports", "/srv/a *(rw)\n/srv/b *(nonsense)\n");
    let err = match pair.try_start_daemon(&DaemonOpts::new(bad.clone())) {
        Ok(_) => panic!("serve must refuse a broken exports file"),
        Err(e) => e,
    };
    assert!(err.contains("exited"), "must exit, not hang: {err}");
    assert!(
        err.contains(&format!("{}:2", bad.display())),
        "names file:line: {err}"
    );
    let missing = pair.dir.join("no-such-file");
    let err = match pair.try_start_daemon(&DaemonOpts::new(missing.clone())) {
        Ok(_) => panic!("serve must refuse a missing exports file"),
        Err(e) => e,
    };
    assert!(
        err.contains(&missing.display().to_string()),
        "names the file: {err}"
    );
}

/// A second daemon on the same port must fail, not silently share it (SO_REUSEPORT would
/// let it steal part of the traffic).
#[test]
fn second_daemon_on_the_same_port_fails() {
    let Some(pair) = NetPair::new("second_daemon_same_port") else {
        return;
    };
    let first = pair.start_standard();
    let other = pair.write_file("exports2", "/srv/other *(insecure)\n");
    if let Ok(mut second) = pair.try_start_daemon(&DaemonOpts::new(other)) {
        // Show the damage: some calls to the port now reach the wrong daemon.
        let server = pair.srv_addr(false, PORT);
        let wrong = pair.in_client(move || {
            let mut wrong = 0;
            for _ in 0..32 {
                let mut c = RpcClient::new(Proto::Udp, server, SrcPort::High).unwrap();
                if c.mnt3("/srv/a").0 != status::OK {
                    wrong += 1;
                }
            }
            wrong
        });
        second.stop();
        panic!("a second daemon reported READY on port {PORT}; {wrong}/32 MNTs hit it");
    }
    drop(first);
}

#[test]
fn damaged_rmtab_lines_are_skipped() {
    let Some(pair) = NetPair::new("damaged_rmtab") else {
        return;
    };
    let n = pair.n;
    let rmtab = pair.write_file(
        "rmtab",
        &format!(
            "10.77.{n}.2:/srv/a:0x00000001\n\
             garbage-without-colons\n\
             \n\
             10.77.{n}.9:/srv/ro:0x00000001\n"
        ),
    );
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.rmtab = Some(rmtab);
    let _d = pair.start_daemon(&opts);
    let server = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let mut c = RpcClient::new(Proto::Udp, server, SrcPort::High).unwrap();
        let mut got = c.dump(3);
        got.sort();
        assert_eq!(
            got,
            vec![
                (format!("10.77.{n}.2"), "/srv/a".to_string()),
                (format!("10.77.{n}.9"), "/srv/ro".to_string()),
            ]
        );
    });
}

/// Log lines written to a file or pipe (journald, log collectors) carry no terminal colour
/// escapes.
#[test]
fn logs_to_a_non_terminal_have_no_ansi_escapes() {
    let Some(pair) = NetPair::new("logs_no_ansi") else {
        return;
    };
    let mut d = pair.start_standard();
    d.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.stop().code(), Some(0));
    let err = d.stderr();
    assert!(
        !err.trim().is_empty(),
        "the daemon logs something at start/stop"
    );
    assert!(
        !err.contains('\u{1b}'),
        "stderr is a file, yet the log has ANSI escapes:\n{}",
        err.lines().take(3).collect::<Vec<_>>().join("\n")
    );
}

/// Without rpcbind (and without --no-rpcbind) the daemon still starts promptly and serves.
#[test]
fn serve_without_rpcbind_running() {
    let Some(pair) = NetPair::new("serve_without_rpcbind_running") else {
        return;
    };
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.rpcbind_absent = true;
    let t0 = Instant::now();
    let mut d = pair.start_daemon(&opts);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "READY took {:?}",
        t0.elapsed()
    );
    let server = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let mut c = RpcClient::new(Proto::Udp, server, SrcPort::High).unwrap();
        assert_eq!(c.mnt3("/srv/a").0, status::OK);
    });
    let t0 = Instant::now();
    assert_eq!(d.stop().code(), Some(0));
    // A liveness bound, not a speed target: far below the rpcbind call timeouts that a
    // hung unregistration would add up to, far above a loaded CI machine's scheduling noise.
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        t0.elapsed()
    );
}

/// SIGTERM with open, idle and half-sent TCP connections and UDP traffic: exit 0 promptly
/// (connections must not hold shutdown up to the idle timeout).
#[test]
fn sigterm_with_open_connections_exits_promptly() {
    let Some(pair) = NetPair::new("sigterm_open_connections") else {
        return;
    };
    let mut d = pair.start_standard();
    let server = pair.srv_addr(false, PORT);
    let conns = pair.in_client(move || {
        let mut v = Vec::new();
        for i in 0..10 {
            let mut t = TcpClient::connect(server, SrcPort::High).unwrap();
            if i % 2 == 0 {
                use std::io::Write;
                t.stream.write_all(&[0x80, 0, 0, 40, 1, 2]).unwrap(); // half a record
            }
            v.push(t);
        }
        v
    });
    let t0 = Instant::now();
    let st = d.stop();
    assert_eq!(st.code(), Some(0));
    // A liveness bound: open connections must not hold shutdown up to the 120 s idle
    // timeout; generous enough for XDP detach waiting on the RTNL lock under load.
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "SIGTERM took {:?}",
        t0.elapsed()
    );
    drop(conns);
}

/// Reloads under load are atomic: an export present in both the old and the new file never
/// disappears, not even for one call, while SIGHUPs swap the table back and forth.
#[test]
fn reload_under_load_is_atomic() {
    let Some(pair) = NetPair::new("reload_under_load") else {
        return;
    };
    let base = e2e::fixtures::standard_exports(pair.n);
    let exports = pair.write_file("exports", &base);
    let d = pair.start_daemon(&DaemonOpts::new(exports.clone()));
    let srv4 = pair.srv_addr(false, PORT);
    let srv6 = pair.srv_addr(true, PORT);
    // Sockets made in the client namespace keep it on any thread.
    let clients: Vec<RpcClient> = pair.in_client(move || {
        [
            (Proto::Udp, srv4),
            (Proto::Tcp, srv4),
            (Proto::Udp, srv6),
            (Proto::Tcp, srv6),
        ]
        .into_iter()
        .map(|(p, a)| RpcClient::new(p, a, SrcPort::High).unwrap())
        .collect()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut calls = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let (st, ok) = c.mnt3("/srv/a");
                    assert_eq!(st, status::OK, "MNT /srv/a during reloads (call {calls})");
                    assert_eq!(ok.unwrap().0, synthetic_handle("/srv/a"));
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    for i in 0..20 {
        let extra = if i % 2 == 0 {
            "/srv/x *(insecure)\n"
        } else {
            "/srv/y *(insecure)\n"
        };
        // Replace the file atomically, as configuration tools do: a plain rewrite could be
        // read half-written by the reload the previous SIGHUP started.
        let staged = exports.with_extension("staged");
        std::fs::write(&staged, format!("{base}{extra}")).unwrap();
        std::fs::rename(&staged, &exports).unwrap();
        d.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let mut calls = 0;
    for h in load {
        calls += h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    }
    assert!(calls > 100, "only {calls} calls ran during the reloads");
}
