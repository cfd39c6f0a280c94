//! Mount list (DUMP/UMNT/UMNTALL), persistence across restarts, reload, `check`, signals,
//! and --filter-exports.

use e2e::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn dump_umnt_umntall(c: &Ctx) {
    let ip = c.cli_ip.to_string();
    let mut cl = c.client_from(SrcPort::Privileged);
    for v in [1, 2, 3] {
        assert_eq!(cl.dump(v), vec![], "DUMP v{v} of a fresh daemon is empty");
    }
    assert_eq!(cl.mnt3("/srv/a").0, status::OK);
    assert_eq!(cl.mnt12(1, "/srv/secure").0, status::OK);
    let mut got = cl.dump(3);
    got.sort();
    let mut want = vec![
        (ip.clone(), "/srv/a".to_string()),
        (ip.clone(), "/srv/secure".into()),
    ];
    want.sort();
    assert_eq!(got, want, "DUMP after two MNTs");
    // Mounting the same dir again does not duplicate the entry.
    assert_eq!(cl.mnt3("/srv/a").0, status::OK);
    assert_eq!(
        cl.dump(1).len(),
        2,
        "a repeated MNT must not duplicate the entry"
    );
    // Failed MNTs add nothing.
    assert_eq!(cl.mnt3("/srv/denied").0, status::ACCES);
    assert_eq!(cl.mnt3("/srv/nope").0, status::NOENT);
    assert_eq!(cl.dump(2).len(), 2, "failed MNTs must not be listed");
    // UMNT removes exactly that entry.
    cl.umnt(3, "/srv/a");
    assert_eq!(cl.dump(3), vec![(ip.clone(), "/srv/secure".to_string())]);
    // UMNT of something not mounted is a harmless no-op.
    cl.umnt(1, "/srv/never");
    assert_eq!(cl.dump(3).len(), 1);
    // UMNTALL removes everything of this client.
    assert_eq!(cl.mnt3("/srv/ro").0, status::OK);
    assert_eq!(cl.dump(3).len(), 2);
    cl.umntall(3);
    assert_eq!(
        cl.dump(3),
        vec![],
        "UMNTALL must remove every entry of the client"
    );
}
matrix!(dump_umnt_umntall);

fn filtered_exports(c: &Ctx) {
    // Privileged port, so "could mount" does not hinge on `secure`.
    let mut cl = c.client_from(SrcPort::Privileged);
    let all = e2e::fixtures::standard_export_list(c.n);
    let want: Vec<_> = all
        .into_iter()
        .filter(|(d, _)| d != "/srv/denied")
        .collect();
    for v in [1, 2, 3] {
        assert_eq!(
            cl.exports(v, procs::EXPORT),
            want,
            "--filter-exports EXPORT v{v}"
        );
    }
}
matrix!(filtered_exports, |o: &mut DaemonOpts| o.filter_exports =
    true);

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
fn restart_keeps_mount_list() {
    let Some(pair) = NetPair::new("restart_keeps_mount_list") else {
        return;
    };
    let rmtab = pair.dir.join("rmtab");
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.rmtab = Some(rmtab.clone());
    let v4 = pair.srv_addr(false, PORT);
    let v6 = pair.srv_addr(true, PORT);
    let (c4, c6) = (pair.cli_v4().to_string(), pair.cli_v6().to_string());
    {
        let mut d = pair.start_daemon(&opts);
        pair.in_client(move || {
            let mut u = RpcClient::new(Proto::Udp, v4, SrcPort::High).unwrap();
            assert_eq!(u.mnt3("/srv/a").0, status::OK);
            let mut t = RpcClient::new(Proto::Tcp, v6, SrcPort::High).unwrap();
            assert_eq!(t.mnt12(2, "/srv/ro").0, status::OK);
        });
        let st = d.stop();
        assert_eq!(st.code(), Some(0), "exit status on SIGTERM");
    }
    let text = std::fs::read_to_string(&rmtab).expect("rmtab written");
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.sort();
    // As nfs-utils does, ':' inside an (IPv6) host is written as ';'.
    let c6_rmtab = c6.replace(':', ";");
    let mut want = vec![
        format!("{c4}:/srv/a:0x00000001"),
        format!("{c6_rmtab}:/srv/ro:0x00000001"),
    ];
    want.sort();
    assert_eq!(lines, want, "rmtab content");
    let mut d = pair.start_daemon(&opts);
    let (c4b, c6b) = (c4.clone(), c6.clone());
    pair.in_client(move || {
        let mut u = RpcClient::new(Proto::Udp, v4, SrcPort::High).unwrap();
        let mut got = u.dump(3);
        got.sort();
        let mut want = vec![(c4b, "/srv/a".to_string()), (c6b, "/srv/ro".to_string())];
        want.sort();
        assert_eq!(got, want, "DUMP after restart");
        u.umnt(3, "/srv/a");
    });
    // SIGINT exits 0 as well, and the UMNT is persisted.
    let st = d.stop_with(libc::SIGINT);
    assert_eq!(st.code(), Some(0), "exit status on SIGINT");
    let text = std::fs::read_to_string(&rmtab).unwrap();
    assert!(
        !text.contains(":/srv/a:"),
        "UMNT must be persisted to rmtab: {text:?}"
    );
    assert!(text.contains(&format!("{c6_rmtab}:/srv/ro:0x00000001")));
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
    pair.in_client(move || {
        let mut cl = RpcClient::new(Proto::Udp, server, SrcPort::High).unwrap();
        assert_eq!(cl.mnt3("/srv/new").0, status::NOENT);
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
        assert_eq!(ok.unwrap(), (synthetic_handle("/srv/new"), vec![1, 390003]));
    });
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
