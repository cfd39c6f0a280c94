//! The package and `cargo xtask deploy` over ssh: the unit passes `systemd-analyze
//! verify` silently, and a deploy to a real sshd (started here on a private port in the
//! server namespace, with generated keys) installs into a scratch root, starts the daemon
//! as the unit would, and the AF_XDP path answers. Nothing is installed into this
//! machine's own /usr or /etc.
//!
//! Needs the package (`cargo xtask package`; env XMD_DEB overrides) and the xtask binary
//! (env XMD_XTASK_BIN, else target/debug/xtask); `cargo xtask test` provides both.

use e2e::unit::{
    calls_on, reported_capabilities, rerun_of_the_suite, stats_json, unit_capabilities, KillOnDrop,
};
use e2e::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The newest `target/debian/xdp-mountd_*.deb`, or env XMD_DEB.
fn package() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("XMD_DEB") {
        return Some(PathBuf::from(p));
    }
    let dir = workspace().join("target/debian");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

fn xtask_bin() -> Option<PathBuf> {
    let p = std::env::var_os("XMD_XTASK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/xtask"));
    p.is_file().then_some(p)
}

/// The package and xtask, or a loud skip (a failure under CI=true).
fn artifacts(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (package(), xtask_bin()) {
        (Some(deb), Some(xtask)) => Some((deb, xtask)),
        missing => {
            let why = format!(
                "needs the package and the xtask binary (found {missing:?}): run `cargo xtask package`"
            );
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{test}: {why}");
            eprintln!("\n*** SKIPPED: {test} — {why} ***\n");
            None
        }
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unit_verifies_silently_and_reports_its_exposure() {
    let test = "unit-verify";
    let Some((deb, _)) = artifacts(test) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("xmd-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, text) = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir));
    assert!(ok, "{text}");
    // A root in which systemd-analyze finds what the unit refers to: the host's targets
    // and sockets, /bin/kill (ExecReload), the package's binary and man page.
    let units = dir.join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/lib/systemd/system").unwrap().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".target") || name.ends_with(".socket") {
            let _ = std::fs::copy(entry.path(), units.join(&*name));
        }
    }
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/kill", dir.join("bin/kill")).unwrap();
    let unit = units.join("xdp-mountd.service");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", dir.display()))
        .arg(&unit)
        .env("MANPATH", dir.join("usr/share/man"))
        .output()
        .unwrap();
    // verify exits 0 on unknown keys: anything printed is a failure.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, text) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit));
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("xdp-mountd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    println!("systemd-analyze security --offline=true: exposure {exposure}");
    // README "Operations" reports 2.1; five capabilities and the host network stay.
    assert!(exposure <= 2.5, "exposure {exposure}:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// sshd in the server namespace (its own mount namespace, a tmpfs /run); killed on drop.
struct Sshd {
    _child: KillOnDrop,
}

const SSH_PORT: u16 = 2222;

impl Sshd {
    /// Generates a host key and a client key, authorises the client key for root, and
    /// starts sshd on the server address, port [`SSH_PORT`]. Returns it and the client key.
    fn start(pair: &NetPair) -> (Sshd, PathBuf) {
        let keygen = |path: &Path| {
            let (ok, text) = run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path));
            assert!(ok, "ssh-keygen: {text}");
        };
        let host_key = pair.dir.join("ssh_host_key");
        let client_key = pair.dir.join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        let authorized = pair.dir.join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        let config = pair.write_file(
            "sshd_config",
            &format!(
                "Port {SSH_PORT}\nListenAddress {addr}\nHostKey {host}\nPidFile none\n\
                 AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nSubsystem sftp internal-sftp\n",
                addr = pair.srv_v4(),
                host = host_key.display(),
                auth = authorized.display()
            ),
        );
        let log = std::fs::File::create(pair.dir.join("sshd.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.srv,
                "unshare",
                "-m",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && \
                 exec /usr/sbin/sshd -D -e -f \"$0\"",
            )
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sshd (cargo xtask setup installs openssh-server)");
        let sshd = Sshd {
            _child: KillOnDrop(child),
        };
        let addr = std::net::SocketAddr::new(pair.srv_v4(), SSH_PORT);
        let listening = pair.in_client(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        });
        let log = std::fs::read_to_string(pair.dir.join("sshd.log")).unwrap_or_default();
        assert!(listening, "sshd did not listen on {addr}: {log}");
        (sshd, client_key)
    }
}

#[test]
fn deploy_over_ssh_into_a_scratch_root() {
    let test = "deploy";
    if rerun_of_the_suite(test) {
        return;
    }
    let Some((deb, xtask)) = artifacts(test) else {
        return;
    };
    let Some(pair) = NetPair::new(test) else {
        return;
    };
    let host_binary_before = Path::new("/usr/sbin/xdp-mountd").exists();
    let (_sshd, key) = Sshd::start(&pair);
    let scratch = pair.dir.join("scratch");
    let stats = scratch.join("run/xdp-mountd/stats.sock");
    let exports = pair.standard_exports_file();
    let serve_args = format!(
        "--exports {} --port {PORT} --no-rpcbind --iface veth0 --xdp native --stats-socket {}",
        exports.display(),
        stats.display()
    );
    let mut deploy = Command::new("ip");
    deploy
        .args(["netns", "exec", &pair.cli, "timeout", "120"])
        .arg(&xtask)
        .args(["deploy", "--ssh", &format!("root@{}", pair.srv_v4())])
        .args(["--ssh-opt", &format!("Port={SSH_PORT}")])
        .args(["--ssh-opt", &format!("IdentityFile={}", key.display())])
        .args([
            "--ssh-opt",
            "IdentitiesOnly=yes",
            "--ssh-opt",
            "BatchMode=yes",
        ])
        .args(["--ssh-opt", "StrictHostKeyChecking=no"])
        .args(["--ssh-opt", "UserKnownHostsFile=/dev/null"])
        .args(["--ssh-opt", "LogLevel=ERROR"])
        .arg("--root")
        .arg(&scratch)
        .arg("--deb")
        .arg(&deb)
        .arg("--")
        .args(serve_args.split_whitespace());
    let (ok, text) = run(&mut deploy);
    println!("{text}");
    assert!(ok, "cargo xtask deploy failed:\n{text}");
    for said in [
        "extracted the package into the scratch root",
        "a scratch root is not a system systemd manages: started",
        "as user nobody with capabilities",
        "answered MOUNT NULL",
    ] {
        assert!(text.contains(said), "deploy did not say {said:?}:\n{text}");
    }
    assert!(scratch.join("usr/sbin/xdp-mountd").is_file());
    let defaults = std::fs::read_to_string(scratch.join("etc/default/xdp-mountd")).unwrap();
    assert!(
        defaults.contains(&format!("XDP_MOUNTD_ARGS=\"{serve_args}\"")),
        "{defaults}"
    );
    assert_eq!(
        Path::new("/usr/sbin/xdp-mountd").exists(),
        host_binary_before,
        "deploy touched this machine's /usr"
    );

    // The deployed daemon: unprivileged, the unit's capabilities, answering via AF_XDP.
    let bin = scratch.join("usr/sbin/xdp-mountd");
    let report = stats_json(&bin, &stats);
    let mut want = unit_capabilities();
    want.sort();
    assert_eq!(reported_capabilities(&report), want, "{report}");
    assert!(calls_on(&report, "afxdp") >= 1, "{report}");
    assert_eq!(calls_on(&report, "udp"), 0, "{report}");

    // Stop it as the script told us to, and wait (bounded) for a clean exit.
    let pid: i32 = std::fs::read_to_string(scratch.join("run/xdp-mountd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the daemon this test deployed.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    // SAFETY: signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(scratch.join("var/log/xdp-mountd.log")).unwrap_or_default();
    assert!(
        log.contains("stopped"),
        "the daemon did not stop cleanly:\n{log}"
    );
}
