//! `cargo xtask package`: the Debian package, built with the pinned cargo-deb from the
//! release binary, its man pages (generated from the clap definitions) and the unit in
//! `mount-user/debian/`, then checked with lintian (errors fail the build).
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run_checked, workspace_root};

/// The cargo-deb release `cargo xtask setup` installs and this uses.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Where setup installs cargo-deb: the workspace's `.tools/`, next to bpf-linker.
pub fn cargo_deb_root(workspace: &Path) -> PathBuf {
    workspace
        .join(".tools")
        .join(format!("cargo-deb-{CARGO_DEB_VERSION}"))
}

/// The pinned cargo-deb binary.
pub fn cargo_deb_bin(workspace: &Path) -> PathBuf {
    cargo_deb_root(workspace).join("bin/cargo-deb")
}

/// Options of `cargo xtask package`.
#[derive(clap::Args)]
pub struct PackageArgs {
    /// Skip lintian (it takes a while; `cargo xtask test` runs it once).
    #[arg(long)]
    pub no_lintian: bool,
}

/// Builds the package and returns its path.
pub fn build(args: &PackageArgs) -> Result<PathBuf> {
    let root = workspace_root();
    let cargo_deb = cargo_deb_bin(&root);
    if !cargo_deb.is_file() {
        bail!(
            "{} is missing: run `cargo xtask setup` (installs cargo-deb {CARGO_DEB_VERSION})",
            cargo_deb.display()
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let daemon = crate::build_release_daemon()?;
    let man = root.join("target/man");
    // Stale pages of a renamed subcommand must not end up in the package.
    let _ = std::fs::remove_dir_all(&man);
    run_checked(Command::new(&daemon).args(["manpage", "--out"]).arg(&man))?;
    for page in std::fs::read_dir(&man).with_context(|| format!("reading {}", man.display()))? {
        // -n: no name or time stamp inside, so the package is reproducible.
        run_checked(Command::new("gzip").args(["-9nf"]).arg(page?.path()))?;
    }
    let out_dir = root.join("target/debian");
    std::fs::create_dir_all(&out_dir)?;
    let output = Command::new(&cargo_deb)
        .args([
            "deb",
            "--no-build",
            "--strip",
            "-p",
            "mount-user",
            "--output",
        ])
        .arg(&out_dir)
        .current_dir(&root)
        .env("CARGO", &cargo)
        .output()
        .with_context(|| format!("running {}", cargo_deb.display()))?;
    if !output.status.success() {
        bail!(
            "cargo-deb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let deb = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo-deb printed no .deb path: {stdout}"))?;
    println!("xtask: package {}", deb.display());
    if !args.no_lintian {
        lintian(&deb)?;
    }
    Ok(deb)
}

/// Runs lintian; errors fail, warnings are shown.
pub fn lintian(deb: &Path) -> Result<()> {
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .context("running lintian (cargo xtask setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let errors = text.lines().filter(|l| l.starts_with("E: ")).count();
    let warnings = text.lines().filter(|l| l.starts_with("W: ")).count();
    println!("xtask: lintian: {errors} errors, {warnings} warnings");
    if !out.status.success() || errors > 0 {
        bail!(
            "lintian reports errors for {}: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
