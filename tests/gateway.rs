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

/// A daemon in rpcbind's namespaces with `--upstream` to Ganesha's MOUNT, plus `extra`.
fn gateway<'p>(
    pair: &'p NetPair,
    rpcb: &SharedRpcbind,
    dir: &std::path::Path,
    extra: &[&str],
) -> Daemon<'p> {
    let exports = pair.write_file(
        "exports",
        &format!(
            "{} 10.77.{}.0/24(rw) fd77:{:x}::/64(rw)\n",
            dir.display(),
            pair.n,
            pair.n
        ),
    );
    let mut opts = DaemonOpts::new(exports);
    opts.mount_ns_of = Some(rpcb.pid());
    opts.extra.extend(
        [
            "--upstream",
            &format!("{}:{GANESHA_MNT_PORT}", pair.srv_v4()),
            "--upstream-program",
            &GANESHA_MNT_PROG.to_string(),
        ]
        .iter()
        .chain(extra)
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
    let rpcb = SharedRpcbind::start(&pair);
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
    // The stats socket is under the daemon's (private) /run.
    let out = rpcb.run(
        &pair,
        &[
            &e2e::daemon_bin().display().to_string(),
            "stats",
            "--json",
            "--port",
            &PORT.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let up = &v["upstream"];
    assert!(up["learned"].as_u64().unwrap() >= 2, "{up}");
    assert_eq!(up["changed"].as_u64(), Some(0), "{up}");
    assert!(up["calls"].as_u64().unwrap() >= 2, "{up}");
    assert!(d.stderr().contains("handle learned from upstream"));
    assert!(d.stop().success());
}
