//! `cargo xtask run`: the daemon on a demo namespace pair, or on this host after `--`.
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{run_checked, workspace_root};

/// Options of `cargo xtask run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Build and run the release binary.
    #[arg(long)]
    release: bool,
    /// Arguments for `xdp-mountd serve` on this host's network instead of the demo,
    /// e.g. `-- --exports /etc/exports --port 644`.
    #[arg(last = true)]
    serve_args: Vec<String>,
}

const SERVER_NS: &str = "xmd-demo-srv";
const CLIENT_NS: &str = "xmd-demo-cli";
const SERVER_IF: &str = "xmd-demo0";
const CLIENT_IF: &str = "xmd-demo1";
const SERVER_V4: &str = "10.78.0.1";
const CLIENT_V4: &str = "10.78.0.2";
const SERVER_V6: &str = "fd78::1";
const CLIENT_V6: &str = "fd78::2";
const DEMO_PORT: u16 = 644;

/// Build the binary, then run it in the demo or with the given arguments.
pub fn run(args: RunArgs) -> Result<()> {
    let root = workspace_root();
    let mut build = Command::new("cargo");
    build
        .current_dir(&root)
        .args(["build", "-p", "mount-user", "--bin", "xdp-mountd"]);
    if args.release {
        build.arg("--release");
    }
    run_checked(&mut build)?;
    let bin = root
        .join("target")
        .join(if args.release { "release" } else { "debug" })
        .join("xdp-mountd");

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    if !args.serve_args.is_empty() {
        let child = Command::new(&bin)
            .arg("serve")
            .args(&args.serve_args)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        return supervise(child, &stop);
    }

    let demo = DemoNet::create()?;
    let exports = root.join("mount-user/examples/exports");
    let rmtab = std::env::temp_dir().join("xdp-mountd-demo.rmtab");
    // rpcbind keeps its state under /run, which network namespaces share: give the
    // server its own mount namespace with a private /run (shared/platform.md).
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && rpcbind -w -h {SERVER_V4} -h {SERVER_V6} && exec {} serve --exports {} --port {DEMO_PORT} --rmtab {}",
        bin.display(),
        exports.display(),
        rmtab.display()
    );
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            SERVER_NS,
            "unshare",
            "-m",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", &script])
        .spawn()
        .context("starting the daemon in the demo namespace")?;
    println!(
        "\nxdp-mountd serves {} on {SERVER_V4} and [{SERVER_V6}] port {DEMO_PORT}.\n\
         Try, from another shell:\n\
         \x20 ip netns exec {CLIENT_NS} rpcinfo -n {DEMO_PORT} -u {SERVER_V4} 100005\n\
         \x20 ip netns exec {CLIENT_NS} rpcinfo -n {DEMO_PORT} -t {SERVER_V4} 100005 3\n\
         \x20 ip netns exec {CLIENT_NS} showmount -e {SERVER_V4}\n\
         \x20 ip netns exec {CLIENT_NS} nfs-ls -D nfs://{SERVER_V4}\n\
         \x20 ip netns exec {CLIENT_NS} showmount -a {SERVER_V4}\n\
         Ctrl-C stops the daemon and removes the namespaces.\n",
        exports.display()
    );
    let result = supervise(child, &stop);
    drop(demo);
    result
}

/// Wait for the child to exit or for Ctrl-C, then stop it with SIGTERM.
fn supervise(mut child: Child, stop: &AtomicBool) -> Result<()> {
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("xdp-mountd exited with {status}");
        }
        if stop.load(Ordering::SeqCst) {
            let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            for _ in 0..50 {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            child.kill()?;
            child.wait()?;
            bail!("xdp-mountd did not stop within 5 s of SIGTERM; killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The demo's two namespaces and veth; removed on drop.
struct DemoNet;

impl DemoNet {
    fn create() -> Result<Self> {
        // A previous demo killed hard may have left them behind.
        remove_demo_namespaces();
        let net = DemoNet;
        let ip = |args: &[&str]| run_checked(Command::new("ip").args(args));
        ip(&["netns", "add", SERVER_NS]).context("creating namespaces needs root")?;
        ip(&["netns", "add", CLIENT_NS])?;
        ip(&[
            "link", "add", SERVER_IF, "netns", SERVER_NS, "type", "veth", "peer", "name",
            CLIENT_IF, "netns", CLIENT_NS,
        ])?;
        for (ns, dev, v4, v6) in [
            (SERVER_NS, SERVER_IF, SERVER_V4, SERVER_V6),
            (CLIENT_NS, CLIENT_IF, CLIENT_V4, CLIENT_V6),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(net)
    }
}

impl Drop for DemoNet {
    fn drop(&mut self) {
        remove_demo_namespaces();
        eprintln!("xtask: demo namespaces removed");
    }
}

/// Stop whatever still runs in the demo namespaces (rpcbind daemonises itself), then
/// delete them, which also removes the veth pair.
fn remove_demo_namespaces() {
    for ns in [SERVER_NS, CLIENT_NS] {
        if !Path::new("/run/netns").join(ns).exists() {
            continue;
        }
        let pids = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<libc::pid_t>().ok())
        {
            // SAFETY: signalling a process that lives in the demo namespace we created.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}
