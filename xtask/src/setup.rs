//! Idempotent installation of the toolchain and the packages the tests use.
use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};

use crate::run_checked;

/// Debian packages: LLVM for bpf-linker, BPF tools, the real clients and the peer.
const DEBIAN_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "clang-22",
    "bpftool",
    "iproute2",
    "rpcbind",
    "nfs-common",
    "libnfs-utils",
    "tshark",
    "nfs-ganesha",
    "nfs-ganesha-vfs",
    // The bench chart's text (rendered from this TTF, no fontconfig needed).
    "fonts-dejavu-core",
];

/// The bpf-linker release that matches nightly's LLVM 22 (see shared/platform.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

fn missing_packages() -> Vec<&'static str> {
    DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .stderr(Stdio::null())
                .output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn has_nightly_rust_src() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false)
}

fn has_bpf_linker() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
        .unwrap_or(false)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Install whatever is missing; does nothing on a machine that has everything.
pub fn install_missing() -> Result<()> {
    let packages = missing_packages();
    if !packages.is_empty() {
        if !is_root() {
            bail!(
                "missing Debian packages {packages:?}; run `sudo cargo xtask setup` or install them with apt-get"
            );
        }
        eprintln!("xtask: installing Debian packages {packages:?}");
        run_checked(Command::new("apt-get").arg("update").arg("-q"))?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if !has_nightly_rust_src() {
        eprintln!("xtask: installing nightly toolchain with rust-src (for the eBPF build)");
        run_checked(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    if !has_bpf_linker() {
        eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} against LLVM 22");
        run_checked(
            Command::new("cargo")
                .args([
                    "install",
                    "bpf-linker",
                    "--locked",
                    "--version",
                    BPF_LINKER_VERSION,
                ])
                .args(["--no-default-features", "--features", "llvm-22"])
                // Without these its build script finds Debian's default LLVM 14 and fails.
                .env("LLVM_PREFIX", "/usr/lib/llvm-22")
                .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22"),
        )
        .context("installing bpf-linker")?;
    }
    eprintln!("xtask: setup complete");
    Ok(())
}

/// Run `install_missing` only when something is missing (the cheap checks first).
pub fn ensure_ready() -> Result<()> {
    if missing_packages().is_empty() && has_nightly_rust_src() && has_bpf_linker() {
        return Ok(());
    }
    install_missing()
}
