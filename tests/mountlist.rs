//! Mount list (DUMP/UMNT/UMNTALL), persistence across restarts (rmtab), SIGINT, and
//! --filter-exports.

use e2e::*;

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

/// The mount list survives a crash: rmtab is rewritten after changes, not only at exit.
#[test]
fn mount_list_survives_sigkill() {
    let Some(pair) = NetPair::new("mount_list_survives_sigkill") else {
        return;
    };
    let rmtab = pair.dir.join("rmtab");
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.rmtab = Some(rmtab.clone());
    let server = pair.srv_addr(false, PORT);
    let host = pair.cli_v4().to_string();
    {
        let mut d = pair.start_daemon(&opts);
        pair.in_client(move || {
            let mut c = RpcClient::new(Proto::Udp, server, SrcPort::High).unwrap();
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
            assert_eq!(c.mnt3("/srv/ro").0, status::OK);
            c.umnt(3, "/srv/ro");
        });
        let want = format!("{host}:/srv/a:0x00000001\n");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&rmtab).unwrap_or_default() != want {
            assert!(
                std::time::Instant::now() < deadline,
                "rmtab not rewritten within 5 s of the changes: {:?}",
                std::fs::read_to_string(&rmtab)
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let st = d.stop_with(libc::SIGKILL);
        assert_eq!(st.code(), None, "killed by a signal");
    }
    let _d = pair.start_daemon(&opts);
    let host2 = host.clone();
    pair.in_client(move || {
        let mut c = RpcClient::new(Proto::Tcp, server, SrcPort::High).unwrap();
        assert_eq!(c.dump(3), vec![(host2, "/srv/a".to_string())]);
    });
}

/// MNT and UMNT agree on the normalised path: an entry mounted under one spelling is
/// listed normalised and removed under another spelling.
fn mount_list_uses_normalised_paths(c: &Ctx) {
    let ip = c.cli_ip.to_string();
    let mut cl = c.client();
    assert_eq!(cl.mnt3("//srv//a/").0, status::OK);
    assert_eq!(cl.mnt12(2, "/srv/a/./sub/").0, status::OK);
    let mut got = cl.dump(3);
    got.sort();
    assert_eq!(
        got,
        vec![
            (ip.clone(), "/srv/a".to_string()),
            (ip.clone(), "/srv/a/sub".to_string())
        ]
    );
    cl.umnt(3, "/srv/a/");
    cl.umnt(1, "/srv//a/sub");
    assert_eq!(
        cl.dump(3),
        vec![],
        "UMNT under another spelling removes the entry"
    );
}
matrix!(mount_list_uses_normalised_paths);
