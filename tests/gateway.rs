//! Gateway mode (`serve --upstream`) against NFS-Ganesha: Ganesha serves NFS on 2049 and
//! its MOUNT on another port and a private program; xdp-mountd learns Ganesha's handles
//! and hands them out; libnfs reads files through the pair. Bad upstreams too.
//!
//! Every test runs over whatever data path `XMD_E2E_DAEMON_ARGS` selects (kernel sockets,
//! or AF_XDP native/generic under `cargo xtask test`).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::ganesha::{Ganesha, SharedRpcbind, GANESHA_MNT_PORT, GANESHA_MNT_PROG, NFS_PORT};
use e2e::{procs, status, Call, Daemon, DaemonOpts, NetPair, RpcClient, SrcPort, PORT};

/// MNT3ERR_SERVERFAULT: a handle upstream could not supply in time.
const SERVERFAULT: u32 = 10006;

/// The exported directory with a file, a subdirectory and a file in it; returns its path
/// and the two files' contents (different per run, so a stale read cannot pass).
fn export_dir(pair: &NetPair) -> (PathBuf, String, String) {
    let dir = pair.dir.join("export");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let nonce = format!("{:?}", Instant::now());
    let top = format!("top file {nonce}\n");
    let inner = format!("inner file {nonce}\n");
    std::fs::write(dir.join("hello.txt"), &top).unwrap();
    std::fs::write(dir.join("sub/inner.txt"), &inner).unwrap();
    (dir, top, inner)
}

/// The exports file of the gateway tests: `dir` to the client subnets.
fn gateway_exports(pair: &NetPair, dir: &std::path::Path) -> PathBuf {
    pair.write_file(
        "exports",
        &format!(
            "{} 10.77.{}.0/24(rw) fd77:{:x}::/64(rw)\n",
            dir.display(),
            pair.n,
            pair.n
        ),
    )
}

/// A daemon in rpcbind's namespaces with `--upstream` to Ganesha's MOUNT, plus `extra`.
/// Without `:PORT` when `extra` asks for the portmapper (`--upstream-program` still given).
fn gateway<'p>(
    pair: &'p NetPair,
    rpcb: &SharedRpcbind,
    dir: &std::path::Path,
    extra: &[&str],
) -> Daemon<'p> {
    let exports = gateway_exports(pair, dir);
    let mut opts = DaemonOpts::new(exports);
    opts.mount_ns_of = Some(rpcb.pid());
    opts.extra.extend(
        [
            "--upstream",
            &if extra.contains(&"via-portmapper") {
                pair.srv_v4().to_string()
            } else {
                format!("{}:{GANESHA_MNT_PORT}", pair.srv_v4())
            },
            "--upstream-program",
            &GANESHA_MNT_PROG.to_string(),
        ]
        .iter()
        .chain(extra.iter().filter(|a| **a != "via-portmapper"))
        .map(|s| s.to_string()),
    );
    pair.start_daemon(&opts)
}

/// MNT v3 of `path` over UDP from a reserved port to `server` (program `prog`).
fn mnt3(pair: &NetPair, server: SocketAddr, prog: u32, path: &str) -> (u32, Option<Vec<u8>>) {
    let path = path.to_string();
    pair.in_client(move || {
        let mut c = RpcClient::new(e2e::Proto::Udp, server, SrcPort::Privileged).unwrap();
        let mut call = Call::mount_path(3, procs::MNT, &path);
        call.prog = prog;
        let r = c.must(&call);
        let (stat, ok) = e2e::parse_mountres3(r.success()).unwrap();
        (stat, ok.map(|(fh, _)| fh))
    })
}

/// MNT v1 over UDP: (status, handle).
fn mnt1(pair: &NetPair, server: SocketAddr, prog: u32, path: &str) -> (u32, Option<Vec<u8>>) {
    let path = path.to_string();
    pair.in_client(move || {
        let mut c = RpcClient::new(e2e::Proto::Udp, server, SrcPort::Privileged).unwrap();
        let mut call = Call::mount_path(1, procs::MNT, &path);
        call.prog = prog;
        e2e::parse_fhstatus(c.must(&call).success()).unwrap()
    })
}

/// nfs-cat of `file` below the export through xdp-mountd's MOUNT and Ganesha's NFS.
fn nfs_cat(pair: &NetPair, path: &str) -> e2e::CmdOutput {
    let url = format!(
        "nfs://{}{path}?mountport={PORT}&nfsport={NFS_PORT}&version=3",
        pair.srv_v4()
    );
    pair.run_client(&["nfs-cat", &url])
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn gateway_hands_out_ganesha_handles_and_libnfs_reads_through_it() {
    let Some(pair) = NetPair::new("gw_ganesha") else {
        return;
    };
    let (dir, top, inner) = export_dir(&pair);
    let path = dir.display().to_string();
    let rpcb = pair.start_rpcbind();
    let _ganesha = Ganesha::start(&pair, &rpcb, &dir, 1);
    let upstream = SocketAddr::new(pair.srv_v4(), GANESHA_MNT_PORT);
    let ours = SocketAddr::new(pair.srv_v4(), PORT);
    let mut d = gateway(&pair, &rpcb, &dir, &[]);

    // Byte for byte what Ganesha hands out (v3), learned before READY.
    let (st, theirs) = mnt3(&pair, upstream, GANESHA_MNT_PROG, &path);
    assert_eq!(st, status::OK, "Ganesha's own MNT");
    let theirs = theirs.unwrap();
    assert_eq!(
        mnt3(&pair, ours, e2e::MOUNT_PROG, &path),
        (status::OK, Some(theirs.clone()))
    );
    assert!(!theirs.starts_with(b"XMD1"), "not a synthetic handle");
    // v1: Ganesha 4.3 does not serve MNT v1 (PROC_UNAVAIL): we answer v1 EACCES, as
    // documented (no v1 handle we could know).
    assert_eq!(
        mnt1(&pair, ours, e2e::MOUNT_PROG, &path),
        (status::ACCES, None)
    );

    // libnfs: MOUNT over TCP through us, NFS to Ganesha.
    let out = nfs_cat(&pair, &format!("{path}/hello.txt"));
    assert_eq!(out.code, Some(0), "nfs-cat: {}", out.stderr);
    assert_eq!(out.stdout, top);

    // A subdirectory: learned on demand, equal to Ganesha's own answer, and readable.
    let sub = format!("{path}/sub");
    let (st, sub_theirs) = mnt3(&pair, upstream, GANESHA_MNT_PROG, &sub);
    assert_eq!(st, status::OK, "Ganesha's MNT of a subdirectory");
    assert_eq!(
        mnt3(&pair, ours, e2e::MOUNT_PROG, &sub),
        (status::OK, sub_theirs)
    );
    let out = nfs_cat(&pair, &format!("{sub}/inner.txt"));
    assert_eq!(
        out.code,
        Some(0),
        "nfs-cat in the subdirectory: {}",
        out.stderr
    );
    assert_eq!(out.stdout, inner);
    // Not exported locally: NOENT without asking upstream.
    assert_eq!(
        mnt3(&pair, ours, e2e::MOUNT_PROG, "/elsewhere").0,
        status::NOENT
    );

    // stats: the gateway counters.
    let v = d.stats_json();
    let up = &v["upstream"];
    assert!(up["learned"].as_u64().unwrap() >= 2, "{up}");
    assert_eq!(up["changed"].as_u64(), Some(0), "{up}");
    assert!(up["calls"].as_u64().unwrap() >= 2, "{up}");
    assert!(d.stderr().contains("handle learned from upstream"));
    assert!(d.stop().success());

    // check --upstream prints what upstream answers for each export.
    let exports = gateway_exports(&pair, &dir);
    let upstream_arg = format!("{}:{GANESHA_MNT_PORT}", pair.srv_v4());
    let prog = GANESHA_MNT_PROG.to_string();
    let bin = e2e::daemon_bin().display().to_string();
    let out = rpcb
        .run(&[
            &bin,
            "check",
            "--exports",
            &exports.display().to_string(),
            "--upstream",
            &upstream_arg,
            "--upstream-program",
            &prog,
        ])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("v3: handle {}", hex(&theirs))),
        "{text}"
    );
}

#[test]
fn gateway_keeps_serving_while_ganesha_restarts_and_after_it_stops() {
    let Some(pair) = NetPair::new("gw_restart") else {
        return;
    };
    let (dir, _, _) = export_dir(&pair);
    std::fs::create_dir_all(dir.join("later")).unwrap();
    let path = dir.display().to_string();
    let sub = format!("{path}/sub");
    let rpcb = pair.start_rpcbind();
    let mut ganesha = Ganesha::start(&pair, &rpcb, &dir, 1);
    let ours = SocketAddr::new(pair.srv_v4(), PORT);
    let mut d = gateway(&pair, &rpcb, &dir, &["--upstream-wait-ms", "1000"]);
    let (st, root) = mnt3(&pair, ours, e2e::MOUNT_PROG, &path);
    assert_eq!(st, status::OK);
    let (st, sub_fh) = mnt3(&pair, ours, e2e::MOUNT_PROG, &sub);
    assert_eq!(st, status::OK);

    // Restarted (same Export_Id, same handles): still served, new paths learned again.
    ganesha.stop();
    drop(ganesha);
    let ganesha = Ganesha::start(&pair, &rpcb, &dir, 1);
    assert_eq!(
        mnt3(&pair, ours, e2e::MOUNT_PROG, &path),
        (status::OK, root.clone())
    );
    let out = nfs_cat(&pair, &format!("{path}/hello.txt"));
    assert_eq!(
        out.code,
        Some(0),
        "nfs-cat after the restart: {}",
        out.stderr
    );

    // Stopped: what is known is still served, at once; a new subdirectory gets the
    // documented SERVERFAULT after a bounded wait, never a hang, never a made-up handle.
    drop(ganesha);
    assert_eq!(
        mnt3(&pair, ours, e2e::MOUNT_PROG, &path),
        (status::OK, root)
    );
    assert_eq!(
        mnt3(&pair, ours, e2e::MOUNT_PROG, &sub),
        (status::OK, sub_fh)
    );
    let t0 = Instant::now();
    let later = format!("{path}/later");
    assert_eq!(
        mnt3(&pair, ours, e2e::MOUNT_PROG, &later),
        (SERVERFAULT, None)
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // v1 of an unknown path: EIO.
    assert_eq!(mnt1(&pair, ours, e2e::MOUNT_PROG, &later), (5, None));
    eventually("the failure is logged", Duration::from_secs(5), || {
        d.stderr().contains("upstream MOUNT call failed")
    });
    assert!(d.alive());
    assert!(d.stop().success());
}

#[test]
fn changed_upstream_handle_is_logged_and_served_after_refresh() {
    let Some(pair) = NetPair::new("gw_changed") else {
        return;
    };
    let (dir, _, _) = export_dir(&pair);
    let path = dir.display().to_string();
    let rpcb = pair.start_rpcbind();
    let ganesha = Ganesha::start(&pair, &rpcb, &dir, 1);
    let upstream = SocketAddr::new(pair.srv_v4(), GANESHA_MNT_PORT);
    let ours = SocketAddr::new(pair.srv_v4(), PORT);
    // TTL 2 s: refreshed every second. Upstream's port from its portmapper.
    let mut d = gateway(
        &pair,
        &rpcb,
        &dir,
        &["--upstream-ttl", "2", "via-portmapper"],
    );
    let (_, old) = mnt3(&pair, ours, e2e::MOUNT_PROG, &path);
    let old = old.expect("a handle");

    // A new Export_Id changes Ganesha's handle (its header carries it).
    drop(ganesha);
    let _ganesha = Ganesha::start(&pair, &rpcb, &dir, 2);
    let (st, new) = mnt3(&pair, upstream, GANESHA_MNT_PROG, &path);
    assert_eq!(st, status::OK);
    let new = new.unwrap();
    assert_ne!(new, old, "Ganesha's handle did not change with Export_Id");
    eventually("the new handle is served", Duration::from_secs(15), || {
        mnt3(&pair, ours, e2e::MOUNT_PROG, &path) == (status::OK, Some(new.clone()))
    });
    let log = d.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("upstream handle changed"))
        .unwrap_or_else(|| panic!("no change logged:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&hex(&old)) && line.contains(&hex(&new)),
        "{line}"
    );
    assert!(d.stats_json()["upstream"]["changed"].as_u64() >= Some(1));
    assert!(d.stop().success());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn removed_rpcbind_registration_is_restored() {
    let Some(pair) = NetPair::new("gw_rpcbind") else {
        return;
    };
    let rpcb = pair.start_rpcbind();
    let exports = pair.write_file("exports", "/srv *(ro)\n");
    let mut opts = DaemonOpts::new(exports);
    opts.mount_ns_of = Some(rpcb.pid());
    opts.extra
        .extend(["--rpcbind-check".to_string(), "1".to_string()]);
    let mut d = pair.start_daemon(&opts);
    let ours = |rpcb: &SharedRpcbind| {
        let out = rpcb.run(&["rpcinfo", "-p", "127.0.0.1"]).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() >= 4 && w[0] == "100005" && w[3] == PORT.to_string()
            })
            .count()
    };
    // v1..v3 over udp and tcp.
    assert_eq!(ours(&rpcb), 6);
    let out = rpcb.run(&["rpcinfo", "-d", "100005", "3"]).unwrap();
    assert!(
        out.status.success(),
        "rpcinfo -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ours(&rpcb) < 6, "rpcinfo -d removed nothing");
    eventually("registration restored", Duration::from_secs(5), || {
        ours(&rpcb) == 6
    });
    assert!(d.stderr().contains("registering again"));
    assert!(d.stats_json()["rpcbind_restored"].as_u64() >= Some(1));
    assert!(d.stop().success());
}

/// A UDP responder in the server namespace on `port`: answers every datagram with
/// `reply(request)` (None: stays silent) until `until`.
fn responder(pair: &NetPair, port: u16, until: Instant, reply: fn(&[u8]) -> Option<Vec<u8>>) {
    let ns = pair.srv.clone();
    let addr = SocketAddr::new(pair.srv_v4(), port);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        e2e::testbed::netns::enter(&ns).unwrap();
        let sock = std::net::UdpSocket::bind(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                if let Some(r) = reply(&buf[..n]) {
                    let _ = sock.send_to(&r, from);
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn bad_upstreams_leave_the_daemon_serving_what_it_can() {
    let Some(pair) = NetPair::new("gw_bad") else {
        return;
    };
    let rpcb = pair.start_rpcbind();
    let until = Instant::now() + Duration::from_secs(120);
    // Garbage: the request's xid, then noise that is no RPC reply.
    responder(&pair, 7001, until, |req| {
        let mut r = req.get(..4)?.to_vec();
        r.extend([0xde, 0xad, 0xbe, 0xef, 9, 9]);
        Some(r)
    });
    // Replies that never come.
    responder(&pair, 7002, until, |_| None);
    let cases = [
        ("wrong port", 7003, "no reply"),
        ("not a MOUNT server (rpcbind)", 111, "program unavailable"),
        ("garbage replies", 7001, "undecodable"),
        ("replies that never come", 7002, "no reply"),
    ];
    let ours = SocketAddr::new(pair.srv_v4(), PORT);
    for (what, port, expect) in cases {
        let exports = pair.write_file(
            "exports",
            &format!("/srv 10.77.{}.0/24(rw)\n/fixed *(ro,fh=0a0b0c)\n", pair.n),
        );
        let mut opts = DaemonOpts::new(exports);
        opts.mount_ns_of = Some(rpcb.pid());
        opts.extra.extend([
            "--upstream".to_string(),
            format!("{}:{port}", pair.srv_v4()),
            "--upstream-wait-ms".to_string(),
            "500".to_string(),
        ]);
        let t0 = Instant::now();
        let mut d = pair.start_daemon(&opts);
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "{what}: READY took {:?}",
            t0.elapsed()
        );
        let (export_list, fixed, srv, srv1) = pair.in_client(move || {
            let mut c = RpcClient::new(e2e::Proto::Udp, ours, SrcPort::Privileged).unwrap();
            c.null(3);
            let list = c.exports(3, procs::EXPORT);
            (list, c.mnt3("/fixed"), c.mnt3("/srv"), c.mnt12(1, "/srv"))
        });
        assert_eq!(export_list.len(), 2, "{what}: EXPORT");
        assert_eq!(
            fixed.0,
            status::OK,
            "{what}: an fh= export needs no upstream"
        );
        assert_eq!(fixed.1.map(|(fh, _)| fh), Some(vec![0x0a, 0x0b, 0x0c]));
        assert_eq!(
            srv,
            (SERVERFAULT, None),
            "{what}: MNT without a learned handle"
        );
        assert_eq!(srv1, (5, None), "{what}: MNT v1 without a learned handle");
        let log = d.stderr();
        let line = log
            .lines()
            .find(|l| l.contains("upstream MOUNT call failed"))
            .unwrap_or_else(|| panic!("{what}: not logged:\n{log}"));
        assert!(
            line.contains(expect) && line.contains("/srv"),
            "{what}: {line}"
        );
        assert!(d.alive(), "{what}: daemon died");
        assert!(d.stop().success(), "{what}");
    }
}
