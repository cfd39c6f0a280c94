//! Real clients against the daemon: rpcinfo, showmount and nfs-ls (through a private
//! rpcbind in the server namespace), and tshark's dissector as a wire-format judge.

use e2e::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn ok(out: &CmdOutput, what: &str) {
    assert_eq!(
        out.code,
        Some(0),
        "{what} failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

fn rpcinfo_ping(pair: &NetPair, host: &str) {
    let port = PORT.to_string();
    for t in ["-u", "-t"] {
        let out = pair.run_client(&["rpcinfo", "-n", &port, t, host, "100005"]);
        ok(&out, &format!("rpcinfo -n {port} {t} {host} 100005"));
        let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            vec![
                "program 100005 version 1 ready and waiting",
                "program 100005 version 2 ready and waiting",
                "program 100005 version 3 ready and waiting",
            ],
            "rpcinfo {t} {host} without a version (probes v0 → PROG_MISMATCH 1..3)"
        );
        for v in ["1", "2", "3"] {
            let out = pair.run_client(&["rpcinfo", "-n", &port, t, host, "100005", v]);
            ok(&out, &format!("rpcinfo {t} {host} 100005 {v}"));
            assert_eq!(
                out.stdout.trim(),
                format!("program 100005 version {v} ready and waiting")
            );
        }
        // A version we do not serve is reported as such.
        let out = pair.run_client(&["rpcinfo", "-n", &port, t, host, "100005", "4"]);
        assert_ne!(out.code, Some(0), "rpcinfo of version 4 must fail");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains("version mismatch") || all.contains("Program/version mismatch"),
            "rpcinfo v4 should report a version mismatch: {all}"
        );
    }
}

/// `rpcinfo -n PORT` (Debian 12's libtirpc rpcinfo) still asks the server's rpcbind for the
/// program's address (GETADDR) and only then swaps in PORT, so it needs the registration.
#[test]
fn rpcinfo_direct_port() {
    let Some(pair) = NetPair::new("rpcinfo_direct_port") else {
        return;
    };
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.rpcbind = true;
    let _d = pair.start_daemon(&opts);
    rpcinfo_ping(&pair, &pair.srv_v4().to_string());
    rpcinfo_ping(&pair, &pair.srv_v6().to_string());
}

/// Parses `rpcinfo -s` lines for program 100005 into (versions, netids).
fn rpcinfo_s_mountd(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut vers = BTreeSet::new();
    let mut nets = BTreeSet::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() == Some(&"100005") && f.len() >= 3 {
            vers.extend(f[1].split(',').map(String::from));
            nets.extend(f[2].split(',').map(String::from));
        }
    }
    (vers, nets)
}

#[test]
fn rpcbind_registration_and_unregistration() {
    let Some(pair) = NetPair::new("rpcbind_registration") else {
        return;
    };
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.rpcbind = true;
    let mut d = pair.start_daemon(&opts);
    let host = pair.srv_v4().to_string();
    // Portmapper v2 view: udp and tcp, versions 1-3, our port.
    let out = pair.run_client(&["rpcinfo", "-p", &host]);
    ok(&out, "rpcinfo -p");
    let mut got = BTreeSet::new();
    for l in out.stdout.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() == Some(&"100005") {
            got.insert((f[1].to_string(), f[2].to_string(), f[3].to_string()));
        }
    }
    let mut want = BTreeSet::new();
    for v in ["1", "2", "3"] {
        for p in ["udp", "tcp"] {
            want.insert((v.to_string(), p.to_string(), PORT.to_string()));
        }
    }
    assert_eq!(got, want, "rpcinfo -p:\n{}", out.stdout);
    // rpcbind v3/v4 view: also udp6/tcp6.
    let out = pair.run_client(&["rpcinfo", "-s", &host]);
    ok(&out, "rpcinfo -s");
    let (vers, nets) = rpcinfo_s_mountd(&out.stdout);
    assert_eq!(
        vers,
        ["1", "2", "3"].map(String::from).into(),
        "{}",
        out.stdout
    );
    assert_eq!(
        nets,
        ["tcp", "tcp6", "udp", "udp6"].map(String::from).into(),
        "{}",
        out.stdout
    );
    // rpcbind v3/v4 dump: every (version, netid) with the universal address of our port
    // (wildcard address, as the daemon listens on [::]).
    let out = pair.run_client(&["rpcinfo", &host]);
    ok(&out, "rpcinfo (v3/v4 dump)");
    let suffix = format!(".{}.{}", PORT >> 8, PORT & 0xff);
    let mut seen = BTreeSet::new();
    for l in out.stdout.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first() == Some(&"100005") && f.len() >= 4 {
            assert!(
                f[3].ends_with(&suffix),
                "universal address {} for port {PORT}: {l}",
                f[3]
            );
            let want_host = if f[2].ends_with('6') { "::" } else { "0.0.0.0" };
            assert_eq!(&f[3][..f[3].len() - suffix.len()], want_host, "{l}");
            seen.insert((f[1].to_string(), f[2].to_string()));
        }
    }
    assert_eq!(seen.len(), 12, "3 versions x 4 netids:\n{}", out.stdout);
    // Through the portmapper, rpcinfo finds and pings every version.
    for t in ["udp", "tcp"] {
        let out = pair.run_client(&["rpcinfo", "-T", t, &host, "100005"]);
        ok(&out, &format!("rpcinfo -T {t}"));
        assert_eq!(
            out.stdout.matches("ready and waiting").count(),
            3,
            "{}",
            out.stdout
        );
    }
    // SIGTERM: exit 0 and the registrations are gone (rpcbind itself still runs).
    let st = d.stop_keep_rpcbind();
    assert_eq!(st.code(), Some(0));
    let out = pair.run_client(&["rpcinfo", "-s", &host]);
    ok(&out, "rpcinfo -s after stop");
    let (vers, nets) = rpcinfo_s_mountd(&out.stdout);
    assert!(
        vers.is_empty() && nets.is_empty(),
        "mountd still registered after exit:\n{}",
        out.stdout
    );
}

#[test]
fn showmount_and_nfs_ls() {
    let Some(pair) = NetPair::new("showmount_and_nfs_ls") else {
        return;
    };
    let n = pair.n;
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.rpcbind = true;
    let _d = pair.start_daemon(&opts);
    let host = pair.srv_v4().to_string();

    // showmount -e: every export with its groups, comma-separated.
    let out = pair.run_client(&["showmount", "-e", &host]);
    ok(&out, "showmount -e");
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("Export list for {host}:").as_str())
    );
    let got: Vec<(String, String)> = lines
        .map(|l| {
            let mut f = l.split_whitespace();
            (
                f.next().unwrap_or("").to_string(),
                f.collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    let want: Vec<(String, String)> = e2e::fixtures::standard_export_list(n)
        .into_iter()
        .map(|(d, g)| (d, g.join(",")))
        .collect();
    let (mut g2, mut w2) = (got.clone(), want.clone());
    g2.sort();
    w2.sort();
    assert_eq!(g2, w2, "showmount -e output:\n{}", out.stdout);

    // The same over IPv6 (rpcbind's udp6/tcp6 registrations).
    let host6 = pair.srv_v6().to_string();
    let out = pair.run_client(&["showmount", "-e", &host6]);
    ok(&out, "showmount -e over IPv6");
    let mut lines6 = out.stdout.lines();
    assert_eq!(
        lines6.next(),
        Some(format!("Export list for {host6}:").as_str())
    );
    assert_eq!(
        lines6.count(),
        want.len(),
        "showmount -e v6:\n{}",
        out.stdout
    );

    // showmount -a / -d after two mounts by our own client.
    let server = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let mut c = RpcClient::new(Proto::Udp, server, SrcPort::Privileged).unwrap();
        assert_eq!(c.mnt3("/srv/a").0, status::OK);
        assert_eq!(c.mnt3("/srv/secure").0, status::OK);
    });
    let cli = pair.cli_v4().to_string();
    let out = pair.run_client(&["showmount", "-a", &host]);
    ok(&out, "showmount -a");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec![
            format!("All mount points on {host}:"),
            format!("{cli}:/srv/a"),
            format!("{cli}:/srv/secure"),
        ],
        "showmount -a"
    );
    let out = pair.run_client(&["showmount", "-d", &host]);
    ok(&out, "showmount -d");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec![
            format!("Directories on {host}:"),
            "/srv/a".into(),
            "/srv/secure".into()
        ],
    );

    // nfs-ls -D: export discovery through GETPORT + MOUNT v3 EXPORT. (With a trailing `/`
    // the URL has a path and nfs-ls tries to mount `/` instead.)
    let url = format!("nfs://{host}");
    let out = pair.run_client(&["nfs-ls", "-D", &url]);
    ok(&out, "nfs-ls -D");
    let mut got: Vec<String> = out.stdout.lines().map(|l| l.trim().to_string()).collect();
    got.sort();
    let mut want: Vec<String> = e2e::fixtures::standard_export_list(n)
        .into_iter()
        .map(|(d, _)| format!("nfs://{host}{d}"))
        .collect();
    want.sort();
    assert_eq!(got, want, "nfs-ls -D output:\n{}", out.stdout);

    // nfs-ls of an export: MOUNT v3 MNT succeeds (there is no NFS server behind it, so
    // libnfs fails afterwards, on the NFS program), and the mount shows up in DUMP.
    let out = pair.run_client(&["nfs-ls", &format!("nfs://{host}/srv/ro?version=3")]);
    assert!(
        out.stderr.contains("Program is not available") && !out.stderr.contains("MNT3ERR"),
        "nfs-ls /srv/ro should get past MOUNT: {}",
        out.stderr
    );
    let out = pair.run_client(&["nfs-ls", &format!("nfs://{host}/srv/nope?version=3")]);
    assert!(
        out.stderr.contains("MNT3ERR_NOENT"),
        "nfs-ls /srv/nope: {}",
        out.stderr
    );
    let out = pair.run_client(&["showmount", "-a", &host]);
    ok(&out, "showmount -a after nfs-ls");
    assert!(
        out.stdout.lines().any(|l| l == format!("{cli}:/srv/ro")),
        "nfs-ls's MNT is listed: {}",
        out.stdout
    );
}

/// Runs one call of every procedure of every version over UDP and TCP (plus the error
/// replies), returning the xids of the answered calls that tshark can pair with their call
/// (not the rpcvers=3 one: tshark does not take a non-v2 call for RPC).
fn every_procedure(server: std::net::SocketAddr) -> Vec<u32> {
    let mut answered = Vec::new();
    for proto in [Proto::Udp, Proto::Tcp] {
        let mut c = RpcClient::new(proto, server, SrcPort::Privileged).unwrap();
        for v in [1u32, 2, 3] {
            let mut calls = vec![
                Call::mount(v, procs::NULL),
                Call::mount_path(v, procs::MNT, "/srv/a"),
                Call::mount_path(v, procs::MNT, "/srv/fh"),
                Call::mount_path(v, procs::MNT, "/srv/krb"),
                Call::mount_path(v, procs::MNT, "/srv/nope"),
                Call::mount_path(v, procs::MNT, "/srv/denied"),
                Call::mount(v, procs::DUMP),
                Call::mount(v, procs::EXPORT),
                Call::mount_path(v, procs::UMNT, "/srv/a"),
                Call::mount(v, procs::UMNTALL),
            ];
            if v < 3 {
                calls.push(Call::mount(v, procs::EXPORTALL));
            }
            if v == 2 {
                calls.push(Call::mount_path(v, procs::PATHCONF, "/srv/a"));
            } else {
                calls.push(Call::mount(v, procs::PATHCONF)); // PROC_UNAVAIL
            }
            for call in calls {
                c.must(&call);
                answered.push(call.xid);
            }
        }
        // Error replies of the RPC layer.
        let mut bad_vers = Call::mount(4, procs::NULL);
        bad_vers.vers = 4;
        let mut bad_prog = Call::mount(3, procs::NULL);
        bad_prog.prog = 100003;
        let mut bad_rpc = Call::mount(3, procs::NULL);
        bad_rpc.rpcvers = 3;
        let bad_cred = Call::mount(3, procs::NULL).with_cred(Auth::Raw {
            flavor: 7,
            body: vec![],
        });
        let garbage = Call::mount(3, procs::MNT).with_args(vec![0, 0, 0, 9]);
        c.must(&bad_rpc);
        for call in [bad_vers, bad_prog, bad_cred, garbage] {
            c.must(&call);
            answered.push(call.xid);
        }
    }
    answered
}

#[test]
fn tshark_finds_nothing_malformed() {
    let Some(pair) = NetPair::new("tshark_finds_nothing_malformed") else {
        return;
    };
    let _d = pair.start_standard();
    // Captured at the client's end: with the AF_XDP data path (XMD_E2E_DAEMON_ARGS) the
    // server's packet taps never see the UDP frames that XDP steers past its stack.
    let cap = pair.capture(
        &pair.cli,
        "veth1",
        &format!("port {PORT}"),
        "capture.pcapng",
    );
    let server = pair.srv_addr(false, PORT);
    let server6 = pair.srv_addr(true, PORT);
    let answered = pair.in_client(move || {
        let mut x = every_procedure(server);
        x.extend(every_procedure(server6));
        x
    });
    std::thread::sleep(Duration::from_millis(500));
    let pcap = cap.stop();
    let read = |filter: &str, fields: &[&str]| -> String {
        e2e::capture::tshark_read(&pcap, PORT, &[], filter, fields)
    };
    // Only the server's frames are judged: our deliberate GARBAGE_ARGS call is malformed.
    let bad = read(
        &format!(
            "(_ws.malformed || _ws.expert.severity >= error) \
             && (udp.srcport == {PORT} || tcp.srcport == {PORT})"
        ),
        &[],
    );
    assert!(
        bad.trim().is_empty(),
        "tshark flags malformed/error replies:\n{bad}"
    );
    // The filter does catch malformed frames: our garbage MNT calls (one per transport
    // and family) are flagged.
    let ours = read("_ws.malformed", &["frame.number"]);
    assert_eq!(
        ours.lines().count(),
        4,
        "expected our 4 garbage calls flagged:\n{ours}"
    );
    // It really dissected our replies as RPC (and MOUNT).
    let replies = read("rpc.msgtyp == 1", &["rpc.xid"]);
    let mut got: Vec<u32> = replies
        .lines()
        .flat_map(|l| l.split(','))
        .filter(|x| !x.is_empty())
        .map(|x| u32::from_str_radix(x.trim_start_matches("0x"), 16).unwrap())
        .collect();
    got.sort();
    let mut want = answered.clone();
    want.sort();
    assert_eq!(got, want, "every answered call appears as an RPC reply");
    let mounts = read(
        "mount && rpc.msgtyp == 1 && rpc.replystat == 0",
        &["frame.number"],
    );
    assert!(
        mounts.lines().count() >= 60,
        "expected the MOUNT replies to be dissected as MOUNT, got {}",
        mounts.lines().count()
    );
}
