//! `cargo xtask …`: everything a newcomer needs beyond `cargo` itself.
//!
//! - `setup` installs, idempotently, what a fresh machine lacks (Debian packages, the
//!   pinned eBPF and fuzz toolchains, a bpf-linker built against the eBPF toolchain's LLVM).
//! - `run` serves the example exports on a demo namespace pair (or, after `--`, runs
//!   `xdp-mountd serve` with your arguments).
//! - `test` runs the whole suite, privileged end-to-end tests included.
//! - `fuzz` runs the cargo-fuzz targets for a bounded time each.
//! - `bench` measures xdp-mountd (native/generic XDP, XDP off) against NFS-Ganesha.
//! - `package` builds the Debian package; `deploy` installs it here or over ssh and starts it.

mod bench;
mod demo;
mod deploy;
mod fuzz;
mod package;
mod setup;
mod suite;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set-up, demo, test and bench runner for xdp-mountd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks: Debian packages, the pinned eBPF toolchain with
    /// rust-src, and bpf-linker built against that toolchain's LLVM (checked to match).
    Setup,
    /// Serve the example exports on a demo namespace pair, or pass `-- ARGS` to
    /// `xdp-mountd serve` to run on this host's network.
    Run(demo::RunArgs),
    /// Run formatting and lint checks, unit tests and the end-to-end suite.
    Test(suite::TestArgs),
    /// Side-by-side throughput/latency/CPU bench on a namespace pair; writes
    /// target/bench/latest.{json,md,png}.
    Bench(bench::BenchArgs),
    /// Run the cargo-fuzz targets (every parser of untrusted bytes) for a bounded time each.
    Fuzz(fuzz::FuzzArgs),
    /// Build the Debian package (target/debian/) with cargo-deb and check it with lintian.
    Package(package::PackageArgs),
    /// Build the package, install it here or on `--ssh USER@HOST`, write the serve
    /// arguments given after `--`, start the service and check that it answers NULL.
    Deploy(deploy::DeployArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::install_missing(),
        Command::Run(args) => {
            setup::ensure_ready()?;
            demo::run(args)
        }
        Command::Test(args) => {
            setup::ensure_ready()?;
            suite::run(args)
        }
        Command::Bench(args) => {
            setup::ensure_ready()?;
            bench::run(args)
        }
        Command::Fuzz(args) => {
            setup::ensure_ready()?;
            fuzz::run(args)
        }
        Command::Package(args) => {
            setup::ensure_ready()?;
            package::build(&args).map(drop)
        }
        Command::Deploy(args) => {
            setup::ensure_ready()?;
            deploy::run(args)
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Builds the daemon in release (the eBPF object included) and returns its path.
pub(crate) fn build_release_daemon() -> Result<std::path::PathBuf> {
    let root = workspace_root();
    run_checked(
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "-p",
                "mount-user",
                "--bin",
                "xdp-mountd",
            ]),
    )?;
    Ok(root.join("target/release/xdp-mountd"))
}

/// Run a command, failing with its command line when it exits non-zero.
pub(crate) fn run_checked(cmd: &mut std::process::Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("cannot start {cmd:?}: {e}"))?;
    if !status.success() {
        anyhow::bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
