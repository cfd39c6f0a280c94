//! exports(5) drop-in, end to end: netgroups through NSS, wildcard classes, per-flavor
//! options, /etc/exports.d merging, and `xdp-mountd reload`.

use e2e::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// nsswitch.conf for the daemon: names from its private hosts file, netgroups from its
/// private /etc/netgroup.
const NSSWITCH: &str = "hosts: files\nnetgroup: files\n";

/// The daemon's /etc/hosts: the client's addresses 10.77.N.2..4 with the given names.
fn hosts(n: u8, names: [&str; 3]) -> String {
    format!(
        "127.0.0.1 localhost\n10.77.{n}.2 {}\n10.77.{n}.3 {}\n10.77.{n}.4 {}\n",
        names[0], names[1], names[2]
    )
}

/// The daemon's private /etc: [`NSSWITCH`], hosts naming the client's addresses 10.77.N.2..4
/// and, when given, a netgroup file. Adds the client addresses .3 and .4.
fn private_etc(pair: &NetPair, names: [&str; 3], netgroup: Option<&str>) -> std::path::PathBuf {
    let n = pair.n;
    pair.add_cli_addr(&format!("10.77.{n}.3/24"));
    pair.add_cli_addr(&format!("10.77.{n}.4/24"));
    let hosts = hosts(n, names);
    let mut files = vec![("nsswitch.conf", NSSWITCH), ("hosts", hosts.as_str())];
    files.extend(netgroup.map(|g| ("netgroup", g)));
    pair.private_etc(&files)
}

/// MNT v3 status of `path` over UDP from client address 10.77.N.`host`.
fn mnt_from(srv: SocketAddr, n: u8, host: u8, path: &str) -> u32 {
    let local: SocketAddr = format!("10.77.{n}.{host}:0").parse().unwrap();
    let mut c = RpcClient::Udp(UdpClient::bind_to(srv, local).unwrap());
    c.mnt3(path).0
}

/// MNT v3 of `path` from the client's main address over `proto`: (status, flavors).
fn mnt(proto: Proto, srv: SocketAddr, path: &str) -> (u32, Vec<u32>) {
    let mut c = RpcClient::new(proto, srv, SrcPort::High).unwrap();
    let (st, ok) = c.mnt3(path);
    (st, ok.map(|(_, flavors)| flavors).unwrap_or_default())
}

/// Polls `f` (in the client namespace) until it returns `want` or `secs` pass.
fn eventually(
    pair: &NetPair,
    secs: u64,
    want: u32,
    f: impl Fn() -> u32 + Send + Clone + 'static,
) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = pair.in_client(f.clone());
        if got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `@group` rules ask NSS (innetgr over a private /etc/netgroup): a member mounts, a
/// non-member is refused; a changed netgroup file shows after the cache TTL, or at once
/// after `xdp-mountd reload`.
#[test]
fn netgroups_through_nss() {
    let Some(pair) = NetPair::new("netgroups_nss") else {
        return;
    };
    let n = pair.n;
    let etc = private_etc(
        &pair,
        ["c2.e2e.test", "c3.e2e.test", "c4.e2e.test"],
        Some("trusted (c2.e2e.test,,) (-,nobody,)\n"),
    );
    let netgroup = etc.join("netgroup");
    let exports = pair.write_file(
        "exports",
        "/srv/ng @trusted(rw,insecure)\n/srv/open *(insecure)\n",
    );
    let srv = pair.srv_addr(false, PORT);

    // A long TTL: membership is cached until a reload.
    let mut opts = DaemonOpts::new(exports.clone());
    opts.etc = Some(etc.clone());
    let mut d = pair.start_daemon(&opts);
    pair.in_client(move || {
        for proto in [Proto::Udp, Proto::Tcp] {
            assert_eq!(
                mnt(proto, srv, "/srv/ng").0,
                status::OK,
                "{proto:?}: member"
            );
        }
        assert_eq!(mnt_from(srv, n, 3, "/srv/ng"), status::ACCES, "non-member");
        assert_eq!(mnt_from(srv, n, 3, "/srv/open"), status::OK);
    });
    std::fs::write(&netgroup, "trusted (c3.e2e.test,,)\n").unwrap();
    pair.in_client(move || {
        assert_eq!(
            mnt(Proto::Udp, srv, "/srv/ng").0,
            status::OK,
            "still cached"
        );
    });
    let (code, out, err) = d.reload();
    assert_eq!(code, Some(0), "reload: {out}{err}");
    pair.in_client(move || {
        assert_eq!(
            mnt(Proto::Tcp, srv, "/srv/ng").0,
            status::ACCES,
            "c2 left the group"
        );
        assert_eq!(mnt_from(srv, n, 3, "/srv/ng"), status::OK, "c3 joined it");
    });
    d.stop();

    // A short TTL: the change shows without a reload.
    let mut opts = DaemonOpts::new(exports);
    opts.etc = Some(etc);
    opts.extra
        .extend(["--name-ttl", "1", "--negative-ttl", "1"].map(String::from));
    let _d = pair.start_daemon(&opts);
    pair.in_client(move || assert_eq!(mnt_from(srv, n, 3, "/srv/ng"), status::OK));
    std::fs::write(&netgroup, "trusted (c2.e2e.test,,)\n").unwrap();
    let st = eventually(&pair, 10, status::ACCES, move || {
        mnt_from(srv, n, 3, "/srv/ng")
    });
    assert_eq!(st, status::ACCES, "c3's membership expired");
    let st = eventually(&pair, 10, status::OK, move || {
        mnt(Proto::Udp, srv, "/srv/ng").0
    });
    assert_eq!(st, status::OK, "c2 is a member again");
}

/// `?` and `[...]` classes match the client's reverse-resolved name.
#[test]
fn wildcard_classes_and_question_marks() {
    let Some(pair) = NetPair::new("wildcard_classes") else {
        return;
    };
    let n = pair.n;
    let etc = private_etc(
        &pair,
        ["node5.lab.test", "node55.lab.test", "rack2-a.lab.test"],
        None,
    );
    let exports = pair.write_file(
        "exports",
        "/srv/q node?.lab.test(rw,insecure)\n\
         /srv/c rack[1-3]-[!x]*.lab.test(insecure) node[0-4].lab.test(insecure)\n",
    );
    let mut opts = DaemonOpts::new(exports);
    opts.etc = Some(etc);
    let _d = pair.start_daemon(&opts);
    let srv = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        for proto in [Proto::Udp, Proto::Tcp] {
            assert_eq!(
                mnt(proto, srv, "/srv/q").0,
                status::OK,
                "{proto:?} node5 ~ node?"
            );
            assert_eq!(
                mnt(proto, srv, "/srv/c").0,
                status::ACCES,
                "{proto:?} 5 not in [0-4]"
            );
        }
        assert_eq!(
            mnt_from(srv, n, 3, "/srv/q"),
            status::ACCES,
            "node55 !~ node?"
        );
        assert_eq!(
            mnt_from(srv, n, 4, "/srv/c"),
            status::OK,
            "rack2-a ~ rack[1-3]-[!x]*"
        );
        assert_eq!(mnt_from(srv, n, 4, "/srv/q"), status::ACCES);
    });
}

/// Options after a `sec=` apply to its flavors: MNT lists every flavor in order, and
/// `check` shows each flavor's own ro/rw.
#[test]
fn per_flavor_sections() {
    let Some(pair) = NetPair::new("per_flavor_sections") else {
        return;
    };
    let n = pair.n;
    let exports = pair.write_file(
        "exports",
        &format!(
            "/srv/k *(sec=krb5:krb5i,rw,sec=sys,ro,insecure)\n\
             /srv/d -sec=krb5p,rw,insecure 10.77.{n}.0/24(sec=sys,ro)\n"
        ),
    );
    let check = std::process::Command::new(daemon_bin())
        .args(["check", "--exports"])
        .arg(&exports)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}");
    for want in [
        "sec=krb5(rw,secure,root_squash,no_all_squash) sec=krb5i(rw,secure,root_squash,no_all_squash) \
         sec=sys(ro,insecure,root_squash,no_all_squash)",
        "sec=krb5p(rw,insecure,root_squash,no_all_squash) sec=sys(ro,insecure,root_squash,no_all_squash)",
        "[network 10.77.",
        "[everyone]",
    ] {
        assert!(text.contains(want), "check output lacks {want:?}:\n{text}");
    }
    let _d = pair.start_daemon(&DaemonOpts::new(exports));
    let srv = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        for proto in [Proto::Udp, Proto::Tcp] {
            assert_eq!(
                mnt(proto, srv, "/srv/k"),
                (status::OK, vec![390003, 390004, 1]),
                "{proto:?}"
            );
            assert_eq!(
                mnt(proto, srv, "/srv/d"),
                (status::OK, vec![390005, 1]),
                "{proto:?}"
            );
        }
    });
}

/// `--exports FILE --exports DIR`: the directory's *.exports files join in name order, a
/// path exported in several files gets every file's clients, a duplicated client is
/// reported with both places (the first kept), other files are ignored.
#[test]
fn exports_d_merge_and_duplicates() {
    let Some(pair) = NetPair::new("exports_d_merge") else {
        return;
    };
    let n = pair.n;
    let main = pair.write_file("exports", &format!("/srv/a 10.77.{n}.2(rw,insecure)\n"));
    let dir = pair.dir.join("exports.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("10-more.exports"),
        format!("/srv/a 10.77.{n}.3(insecure)\n/srv/b *(insecure)\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("20-dup.exports"),
        format!("\n/srv/a 10.77.{n}.2(ro,insecure)\n"),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "/srv/ignored *(insecure)\n").unwrap();
    let mut opts = DaemonOpts::new(main);
    opts.extra
        .extend(["--exports".to_string(), dir.display().to_string()]);
    let d = pair.start_daemon(&opts);
    let srv = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let mut c = RpcClient::new(Proto::Tcp, srv, SrcPort::High).unwrap();
        assert_eq!(
            c.exports(3, procs::EXPORT),
            vec![
                (
                    "/srv/a".to_string(),
                    vec![format!("10.77.{n}.2"), format!("10.77.{n}.3")]
                ),
                ("/srv/b".to_string(), vec!["*".to_string()]),
            ]
        );
        assert_eq!(mnt(Proto::Udp, srv, "/srv/b").0, status::OK);
        assert_eq!(mnt(Proto::Udp, srv, "/srv/ignored").0, status::NOENT);
    });
    let log = d.stderr();
    assert!(
        log.contains(&format!(
            "20-dup.exports:2: incompatible duplicated export entries: 10.77.{n}.2:/srv/a [IGNORED]"
        )),
        "{log}"
    );
    assert!(log.contains("exports:1) kept"), "{log}");
}

/// `xdp-mountd reload` prints what changed; a broken file prints file:line, exits 1, and
/// the old exports keep answering; SIGHUP still reloads.
#[test]
fn reload_command_success_and_failure() {
    let Some(pair) = NetPair::new("reload_command") else {
        return;
    };
    let exports = pair.write_file("exports", "/srv/a *(insecure)\n/srv/gone *(insecure)\n");
    let d = pair.start_daemon(&DaemonOpts::new(exports.clone()));
    let srv = pair.srv_addr(false, PORT);
    std::fs::write(&exports, "/srv/a *(insecure,rw)\n/srv/new *(insecure)\n").unwrap();
    let (code, out, err) = d.reload();
    assert_eq!(code, Some(0), "{out}{err}");
    for want in [
        "added /srv/new",
        "removed /srv/gone",
        "changed /srv/a",
        "reloaded: 2 export(s) in force",
    ] {
        assert!(out.contains(want), "reload output lacks {want:?}:\n{out}");
    }
    pair.in_client(move || {
        assert_eq!(mnt(Proto::Udp, srv, "/srv/new").0, status::OK);
        assert_eq!(mnt(Proto::Tcp, srv, "/srv/gone").0, status::NOENT);
    });

    std::fs::write(&exports, "/srv/x *(insecure)\n/srv/y *(bogus)\n").unwrap();
    let (code, out, err) = d.reload();
    assert_eq!(code, Some(1), "{out}{err}");
    let want = format!(
        "{}:2: unknown option \"bogus\" in \"*(bogus)\"",
        exports.display()
    );
    assert!(err.contains(&want), "reload stderr lacks {want:?}:\n{err}");
    assert!(
        err.contains("keeps serving its previous 2 export(s)"),
        "{err}"
    );
    pair.in_client(move || {
        assert_eq!(
            mnt(Proto::Udp, srv, "/srv/new").0,
            status::OK,
            "old table serves"
        );
        assert_eq!(mnt(Proto::Tcp, srv, "/srv/x").0, status::NOENT);
    });

    std::fs::write(&exports, "/srv/x *(insecure)\n").unwrap();
    d.signal(libc::SIGHUP);
    let st = eventually(&pair, 10, status::OK, move || {
        mnt(Proto::Udp, srv, "/srv/x").0
    });
    assert_eq!(st, status::OK, "SIGHUP reloads too");
}

/// A host name that does not resolve is a warning, not a failed start; its rule matches by
/// reverse name meanwhile, and once the name resolves (the background retry) the table is
/// rebuilt and the rule matches by address.
#[test]
fn unresolvable_host_loads_and_resolves_later() {
    let Some(pair) = NetPair::new("late_host") else {
        return;
    };
    let n = pair.n;
    // .3's reverse name is other.e2e.test: only the forward lookup of late.e2e.test can
    // ever let it in.
    let etc = private_etc(
        &pair,
        ["late.e2e.test", "other.e2e.test", "c4.e2e.test"],
        None,
    );
    let hosts_file = etc.join("hosts");
    let exports = pair.write_file("exports", "/srv/late late.e2e.test(insecure)\n");
    std::fs::write(
        &hosts_file,
        format!("127.0.0.1 localhost\n10.77.{n}.2 late2.e2e.test\n10.77.{n}.3 other.e2e.test\n"),
    )
    .unwrap();
    let mut opts = DaemonOpts::new(exports);
    opts.etc = Some(etc);
    opts.extra
        .extend(["--resolve-retry", "1", "--negative-ttl", "1"].map(String::from));
    let d = pair.start_daemon(&opts);
    assert!(
        d.stderr().contains("cannot resolve host \"late.e2e.test\""),
        "{}",
        d.stderr()
    );
    let srv = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        assert_eq!(mnt_from(srv, n, 3, "/srv/late"), status::ACCES);
    });
    // late.e2e.test now names .3 (an alias: .3's reverse name stays other.e2e.test).
    std::fs::write(
        &hosts_file,
        format!(
            "127.0.0.1 localhost\n10.77.{n}.2 late2.e2e.test\n\
             10.77.{n}.3 other.e2e.test late.e2e.test\n"
        ),
    )
    .unwrap();
    let st = eventually(&pair, 15, status::OK, move || {
        mnt_from(srv, n, 3, "/srv/late")
    });
    assert_eq!(
        st,
        status::OK,
        "matched by address after the retry:\n{}",
        d.stderr()
    );
    assert!(
        d.stderr().contains("host \"late.e2e.test\" resolves now"),
        "{}",
        d.stderr()
    );
}
