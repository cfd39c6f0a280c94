//! `cargo xtask run`: the daemon on a demo namespace pair, or on this host after `--`.
use anyhow::{bail, Context, Result};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::netns::{NetPair, NetSpec};
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
const SERVER_V4: &str = "10.78.0.1";
const SERVER_V6: &str = "fd78::1";
/// The demo's namespace pair.
const DEMO_NET: NetSpec = NetSpec {
    server_ns: SERVER_NS,
    client_ns: CLIENT_NS,
    server_if: "xmd-demo0",
    client_if: "xmd-demo1",
    server_v4: SERVER_V4,
    client_v4: "10.78.0.2",
    server_v6: SERVER_V6,
    client_v6: "fd78::2",
    queues: 1,
};
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

    let demo = NetPair::create(DEMO_NET)?;
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
    eprintln!("xtask: demo namespaces removed");
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
