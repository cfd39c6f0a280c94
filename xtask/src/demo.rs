//! `cargo xtask run`: the main job on a demo namespace pair — the release build serving the
//! example exports through AF_XDP (native XDP on the demo veth) — or, after `--`, the
//! daemon on this host with your arguments.
//!
//! At start the demo loads the daemon for a few seconds with `xdp-mountd storm` from the
//! client namespace and reads the daemon's own counters to show that the calls went
//! through AF_XDP, then prints commands to try. `--check` runs those commands itself, stops
//! as Ctrl-C would and verifies that nothing is left behind: the end-to-end test of the
//! demo, run by `cargo xtask test`.
use anyhow::{bail, ensure, Context, Result};
use mount_proto::mount::MOUNT_PROGRAM;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::bench::server::{Launch, Server};
use crate::bench::Interrupt;
use crate::{run_checked, workspace_root};
use testbed::{End, Pair, PairSpec};

/// Options of `cargo xtask run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Build and run the debug binary instead of the release one.
    #[arg(long)]
    debug: bool,
    /// Seconds of the start-up load (`xdp-mountd storm`); 0 skips it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=60))]
    storm_secs: u32,
    /// Run the printed client commands, stop as Ctrl-C would, check that no namespace and
    /// no XDP program is left, and exit (non-zero on any failure).
    #[arg(long)]
    check: bool,
    /// Arguments for `xdp-mountd serve` on this host's network instead of the demo,
    /// e.g. `-- --exports /etc/exports --port 644`.
    #[arg(last = true)]
    serve_args: Vec<String>,
}

const SERVER_NS: &str = "xmd-demo-srv";
const CLIENT_NS: &str = "xmd-demo-cli";
const SERVER_IF: &str = "xmd-demo0";
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
/// The demo's namespace pair.
fn demo_net() -> PairSpec {
    PairSpec {
        server: End {
            ns: SERVER_NS.into(),
            ifname: SERVER_IF.into(),
            v4: SERVER_V4,
            v6: Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, 1),
        },
        client: End {
            ns: CLIENT_NS.into(),
            ifname: "xmd-demo1".into(),
            v4: Ipv4Addr::new(10, 78, 0, 2),
            v6: Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, 2),
        },
        queues: 1,
    }
}
const DEMO_PORT: u16 = 644;
/// The example export that admits unprivileged source ports (storm's sockets).
const STORM_EXPORT: &str = "/srv/scratch";
/// How long the daemon may take to print READY (it attaches XDP and primes the rings).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Build the binary, then run it in the demo or with the given arguments.
pub fn run(args: RunArgs) -> Result<()> {
    let root = workspace_root();
    let profile = if args.debug { "debug" } else { "release" };
    let mut build = Command::new("cargo");
    build
        .current_dir(&root)
        .args(["build", "-p", "mount-user", "--bin", "xdp-mountd"]);
    if !args.debug {
        build.arg("--release");
    }
    run_checked(&mut build)?;
    let bin = root.join("target").join(profile).join("xdp-mountd");
    let stop = Interrupt::install()?;

    if !args.serve_args.is_empty() {
        let child = Command::new(&bin)
            .arg("serve")
            .args(&args.serve_args)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        return supervise_host(child, &stop);
    }

    let work = root.join("target/demo");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut program = None;
    let outcome = serve_demo(&args, &bin, &root, &work, &stop, &mut program);
    // The server and the namespaces are gone by now (dropped inside); say so, and prove it
    // under --check.
    let leftovers = leftovers(program);
    if leftovers.is_empty() {
        eprintln!("xtask: demo stopped; namespaces and XDP program removed");
    } else {
        eprintln!("xtask: demo left behind: {}", leftovers.join("; "));
    }
    outcome?;
    if args.check {
        ensure!(
            leftovers.is_empty(),
            "demo left behind: {}",
            leftovers.join("; ")
        );
        println!("xtask: demo check passed");
    }
    Ok(())
}

/// The demo proper; the daemon and the namespaces are stopped and removed on every way out.
fn serve_demo(
    args: &RunArgs,
    bin: &Path,
    root: &Path,
    work: &Path,
    stop: &Interrupt,
    program: &mut Option<u64>,
) -> Result<()> {
    let net = Pair::create(demo_net())?;
    let exports = root.join("mount-user/examples/exports");
    let log = work.join("xdp-mountd.log");
    let argv = [
        bin.display().to_string(),
        "serve".into(),
        "--exports".into(),
        exports.display().to_string(),
        "--port".into(),
        DEMO_PORT.to_string(),
        "--rmtab".into(),
        work.join("rmtab").display().to_string(),
        "--iface".into(),
        SERVER_IF.into(),
        "--xdp".into(),
        "native".into(),
    ];
    let mut server = Server::start(Launch {
        name: "xdp-mountd",
        netns: SERVER_NS,
        rpcbind_addr: SERVER_V4.into(),
        argv: argv.to_vec(),
        log: log.clone(),
        share_stats_dir: true,
    })?;
    // The daemon's log, shown as it is written.
    let mut follow = LogFollower::new(&log);
    let start = Instant::now();
    loop {
        server.check_alive()?;
        stop.check()?;
        if follow.print_new()?.iter().any(|l| l.contains("READY")) {
            break;
        }
        ensure!(
            start.elapsed() < READY_WITHIN,
            "xdp-mountd printed no READY within {READY_WITHIN:?}; log {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    *program = attached_program();
    ensure!(
        program.is_some(),
        "xdp-mountd is READY but no XDP program is attached to {SERVER_IF}"
    );
    if args.storm_secs > 0 {
        let summary = storm(bin, work, args.storm_secs, stop)?;
        follow.print_new()?;
        println!("{summary}");
    }
    let commands = client_commands(bin);
    println!("\nxdp-mountd serves {} on {SERVER_V4} port {DEMO_PORT}, AF_XDP with native XDP on {SERVER_IF}.", exports.display());
    println!("Try, from another shell (as root):");
    for c in &commands {
        println!("  {}", shell_line(c));
    }
    if args.check {
        for c in &commands {
            let out = Command::new(&c[0])
                .args(&c[1..])
                .output()
                .with_context(|| format!("running {}", shell_line(c)))?;
            let text = String::from_utf8_lossy(&out.stdout);
            println!("$ {}\n{}", shell_line(c), text.trim_end());
            ensure!(
                out.status.success(),
                "{} failed ({}): {}",
                shell_line(c),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        follow.print_new()?;
        // Ctrl-C's path: SIGTERM to the daemon, which detaches XDP and exits 0.
        server.stop()?;
        follow.print_new()?;
        drop(net);
        return Ok(());
    }
    println!("Ctrl-C stops the daemon and removes the namespaces.\n");
    while stop.sleep(Duration::from_millis(200)).is_ok() {
        follow.print_new()?;
        server.check_alive()?;
    }
    server.stop()?;
    follow.print_new()?;
    drop(net);
    Ok(())
}

/// The commands printed for the user (and run by `--check`), as argv.
fn client_commands(bin: &Path) -> Vec<Vec<String>> {
    let port = DEMO_PORT.to_string();
    let server = SERVER_V4.to_string();
    let server = server.as_str();
    let program = MOUNT_PROGRAM.to_string();
    let in_client = |args: &[&str]| {
        ["ip", "netns", "exec", CLIENT_NS]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    vec![
        in_client(&["rpcinfo", "-n", &port, "-u", server, &program]),
        in_client(&["rpcinfo", "-n", &port, "-t", server, &program, "3"]),
        in_client(&["showmount", "-e", server]),
        in_client(&["nfs-ls", "-D", &format!("nfs://{SERVER_V4}")]),
        in_client(&["showmount", "-a", server]),
        vec![bin.display().to_string(), "stats".into()],
    ]
}

/// Quote an argv for a shell line where needed.
fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A few seconds of `xdp-mountd storm` from the client namespace; returns the summary line
/// naming calls/s and, from the daemon's own counters, the path the calls took. Fails when
/// nothing was answered or the UDP calls did not go through AF_XDP.
fn storm(bin: &Path, work: &Path, secs: u32, stop: &Interrupt) -> Result<String> {
    let json = work.join("storm.json");
    let _ = std::fs::remove_file(&json);
    let before = daemon_calls(bin)?;
    println!("xtask: {secs} s of load from {CLIENT_NS}: xdp-mountd storm (NULL, MNT, UMNT v3 over UDP, 8 client ports, 64 in flight)");
    let status = testbed::netns::command(CLIENT_NS)
        .arg(bin)
        .args(["storm", "--target", &format!("{SERVER_V4}:{DEMO_PORT}")])
        .args(["--mix", "null=1,mnt3=8,umnt3=1", "--paths", STORM_EXPORT])
        .args(["--clients", "8", "--window", "64", "--count", "5000000"])
        .args(["--duration", &secs.to_string(), "--json"])
        .arg(&json)
        .status()
        .context("starting xdp-mountd storm")?;
    stop.check()?;
    ensure!(status.success(), "xdp-mountd storm failed: {status}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?,
    )
    .with_context(|| format!("parsing {}", json.display()))?;
    let field = |k: &str| report.get(k).and_then(serde_json::Value::as_f64);
    let answered = field("answered").unwrap_or(0.0);
    let rate = field("calls_per_sec").unwrap_or(0.0);
    let lost = field("lost").unwrap_or(0.0);
    let wrong = field("wrong").unwrap_or(0.0);
    let after = daemon_calls(bin)?;
    let afxdp = after.afxdp.saturating_sub(before.afxdp);
    let udp = after.udp.saturating_sub(before.udp);
    ensure!(answered > 0.0, "storm got no answers");
    ensure!(
        afxdp > 0 && udp == 0,
        "the storm's UDP calls did not go through AF_XDP: {afxdp} via AF_XDP, {udp} via the kernel UDP socket"
    );
    Ok(format!(
        "xtask: storm: {} calls/s ({} answered, {} lost, {} wrong); xdp-mountd stats: {} calls answered through AF_XDP, {} through the kernel UDP socket",
        thousands(rate),
        thousands(answered),
        thousands(lost),
        thousands(wrong),
        thousands(afxdp as f64),
        thousands(udp as f64),
    ))
}

/// Calls the daemon answered so far, per path, from `xdp-mountd stats --json`.
#[derive(Default)]
struct PathCalls {
    afxdp: u64,
    udp: u64,
}

fn daemon_calls(bin: &Path) -> Result<PathCalls> {
    let out = Command::new(bin)
        .args(["stats", "--port", &DEMO_PORT.to_string(), "--json"])
        .output()
        .context("running xdp-mountd stats")?;
    ensure!(
        out.status.success(),
        "xdp-mountd stats failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing xdp-mountd stats --json")?;
    let mut calls = PathCalls::default();
    for row in report
        .get("procedures")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let n = |k: &str| row.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        calls.afxdp += n("afxdp");
        calls.udp += n("udp");
    }
    Ok(calls)
}

/// 1234567.8 → "1,234,568".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The id of the XDP program attached to the demo's server interface, if any
/// (`ip -j link` reports it as `xdp.prog.id`).
fn attached_program() -> Option<u64> {
    let out = Command::new("ip")
        .args([
            "-j", "-d", "-n", SERVER_NS, "link", "show", "dev", SERVER_IF,
        ])
        .output()
        .ok()?;
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    links.get(0)?.get("xdp")?.get("prog")?.get("id")?.as_u64()
}

/// What the demo could have left behind: its namespaces, or its XDP program still loaded
/// (the kernel frees a program shortly after its last link and process are gone).
fn leftovers(program: Option<u64>) -> Vec<String> {
    let mut found: Vec<String> = [SERVER_NS, CLIENT_NS]
        .iter()
        .filter(|ns| testbed::netns::exists(ns))
        .map(|ns| format!("namespace {ns}"))
        .collect();
    if let Some(id) = program {
        let loaded = || {
            Command::new("bpftool")
                .args(["prog", "show", "id", &id.to_string()])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        while loaded() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if loaded() {
            found.push(format!("XDP program id {id}"));
        }
    }
    found
}

/// Prints the lines a log file gains, as it gains them.
struct LogFollower {
    path: PathBuf,
    offset: u64,
}

impl LogFollower {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
        }
    }

    /// Print the complete lines written since the last call, and return them.
    fn print_new(&mut self) -> Result<Vec<String>> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Ok(Vec::new());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut lines = Vec::new();
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                break; // a line still being written: read it whole next time
            }
            self.offset += line.len() as u64;
            eprint!("{line}");
            lines.push(std::mem::take(&mut line).trim_end().to_string());
        }
        Ok(lines)
    }
}

/// On this host: wait for the daemon to exit or for Ctrl-C, then stop it with SIGTERM.
fn supervise_host(mut child: Child, stop: &Interrupt) -> Result<()> {
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("xdp-mountd exited with {status}");
        }
        if stop.check().is_err() {
            let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            if testbed::process::wait_timeout(&mut child, Duration::from_secs(5)) {
                return Ok(());
            }
            child.kill()?;
            child.wait()?;
            bail!("xdp-mountd did not stop within 5 s of SIGTERM; killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
