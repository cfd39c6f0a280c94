//! Idempotent installation of the toolchains and the packages the tests use.
//!
//! Every toolchain is pinned (see README "Pinned toolchains"): userspace by the workspace's
//! rust-toolchain.toml (rustup installs it when cargo first runs), the XDP program by
//! `mount-ebpf/rust-toolchain.toml`, the fuzz crate by its own. bpf-linker is built against
//! the LLVM major that the eBPF toolchain reports, into the workspace's `.tools/`; cargo-deb
//! (for `cargo xtask package`) is installed there too, pinned by version.
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{run_checked, workspace_root};

#[path = "../../mount-user/xdp/build/ebpf_toolchain.rs"]
#[allow(dead_code)] // the build script uses the PATH half
pub(crate) mod ebpf_toolchain;

/// Debian packages: BPF tools, the real clients and the peer. Debian's LLVM for
/// bpf-linker (`llvm-NN-dev`) is added to these with NN from the eBPF toolchain.
const DEBIAN_PACKAGES: &[&str] = &[
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
    // The bench's cost section: GRO on, TSO off on the veth ends, for threaded NAPI.
    "ethtool",
    // Operations: a real Prometheus (and promtool) for the metrics test, an sshd for the
    // deploy test, lintian for the package, curl to scrape.
    "prometheus",
    "openssh-server",
    "lintian",
    "curl",
    // Cluster mode (`serve --cluster`): etcd for its tests and bench, and protoc, which
    // the etcd-client crate's build script needs to compile etcd's gRPC definitions.
    "etcd-server",
    "protobuf-compiler",
];

/// The cargo-fuzz release `cargo xtask fuzz` runs, installed into `.tools/`.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The directory holding the pinned `cargo-fuzz`.
pub fn cargo_fuzz_bin(workspace: &Path) -> std::path::PathBuf {
    workspace
        .join(".tools")
        .join(format!("cargo-fuzz-{CARGO_FUZZ_VERSION}"))
        .join("bin")
}

fn has_cargo_fuzz(workspace: &Path) -> bool {
    Command::new(cargo_fuzz_bin(workspace).join("cargo-fuzz"))
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)
        })
}

fn install_cargo_fuzz(workspace: &Path) -> Result<()> {
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} into .tools/");
    let bin = cargo_fuzz_bin(workspace);
    let root = bin.parent().unwrap_or(&bin);
    run_checked(cargo_install("cargo-fuzz", CARGO_FUZZ_VERSION, root).current_dir(workspace))
        .context("installing cargo-fuzz")
}

fn llvm_package(llvm_major: u32) -> String {
    format!("llvm-{llvm_major}-dev")
}

fn missing_packages(llvm_major: Option<u32>) -> Vec<String> {
    let llvm = llvm_major.map(llvm_package);
    DEBIAN_PACKAGES
        .iter()
        .map(|p| p.to_string())
        .chain(llvm)
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .stderr(Stdio::null())
                .output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn install_packages(packages: &[String]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
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
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// `rustup toolchain install CHANNEL` (a no-op when it is there with the components).
fn install_toolchain(channel: &str, components: &[&str]) -> Result<()> {
    let mut cmd = Command::new("rustup");
    cmd.args(["toolchain", "install", channel, "--profile", "minimal"]);
    for c in components {
        cmd.args(["--component", c]);
    }
    run_checked(&mut cmd).with_context(|| format!("installing the pinned toolchain {channel}"))
}

/// `cargo install KRATE --version VERSION --root ROOT` (locked, replacing what is there).
fn cargo_install(krate: &str, version: &str, root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "install",
        krate,
        "--locked",
        "--force",
        "--version",
        version,
    ])
    .arg("--root")
    .arg(root);
    cmd
}

/// Builds bpf-linker against Debian's LLVM `major` into the workspace's `.tools/`.
fn install_bpf_linker(workspace: &Path, major: u32) -> Result<()> {
    use ebpf_toolchain::BPF_LINKER_VERSION;
    let root = ebpf_toolchain::bpf_linker_root(workspace, major);
    let llvm = format!("/usr/lib/llvm-{major}");
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {major} into {} (about a minute)",
        root.display()
    );
    run_checked(
        cargo_install("bpf-linker", BPF_LINKER_VERSION, &root)
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{major}"))
            // Without these its build script finds Debian's default LLVM 14 and fails.
            // llvm-sys names its variable after its own version (221 for LLVM 22.1).
            .env("LLVM_PREFIX", &llvm)
            .env(format!("LLVM_SYS_{major}0_PREFIX"), &llvm)
            .env(format!("LLVM_SYS_{major}1_PREFIX"), &llvm)
            // The userspace pin builds it, wherever this is run from.
            .current_dir(workspace),
    )
    .with_context(|| {
        format!(
            "building bpf-linker {BPF_LINKER_VERSION} with feature llvm-{major}: if that \
             feature does not exist, this bpf-linker release does not support LLVM {major}; \
             move BPF_LINKER_VERSION in mount-user/xdp/build/ebpf_toolchain.rs with the pin"
        )
    })
}

/// Installs the pinned cargo-deb into the workspace's `.tools/`.
fn install_cargo_deb(workspace: &Path) -> Result<()> {
    use crate::package::{cargo_deb_root, CARGO_DEB_VERSION};
    let root = cargo_deb_root(workspace);
    eprintln!(
        "xtask: installing cargo-deb {CARGO_DEB_VERSION} into {} (about a minute)",
        root.display()
    );
    run_checked(cargo_install("cargo-deb", CARGO_DEB_VERSION, &root).current_dir(workspace))
        .with_context(|| format!("installing cargo-deb {CARGO_DEB_VERSION}"))
}

/// Install whatever is missing; does little on a machine that has everything.
pub fn install_missing() -> Result<()> {
    let workspace = workspace_root();
    let ebpf = ebpf_toolchain::read_channel(&workspace.join(ebpf_toolchain::TOOLCHAIN_FILE))?;
    if ebpf_toolchain::rustc_info(&ebpf)?.is_none() || !ebpf_toolchain::has_rust_src(&ebpf) {
        eprintln!("xtask: installing the eBPF toolchain {ebpf} with rust-src");
        install_toolchain(&ebpf, &["rust-src"])?;
    }
    let fuzz = ebpf_toolchain::read_channel(&workspace.join(ebpf_toolchain::FUZZ_TOOLCHAIN_FILE))?;
    if ebpf_toolchain::rustc_info(&fuzz)?.is_none() {
        eprintln!("xtask: installing the fuzz crate's toolchain {fuzz}");
        install_toolchain(&fuzz, &[])?;
    }
    let rustc = ebpf_toolchain::rustc_info(&ebpf)?
        .with_context(|| format!("{ebpf} is still not installed after rustup installed it"))?;
    let major = rustc.llvm_major()?;
    eprintln!(
        "xtask: eBPF toolchain {ebpf}: {} with LLVM {}",
        rustc.release, rustc.llvm
    );
    install_packages(&missing_packages(Some(major))).with_context(|| {
        format!(
            "bpf-linker for {ebpf} needs Debian's {}",
            llvm_package(major)
        )
    })?;

    let linker = ebpf_toolchain::bpf_linker_root(&workspace, major).join("bin/bpf-linker");
    match ebpf_toolchain::bpf_linker_llvm_major(&linker) {
        Ok(m) if m == major => {}
        Ok(m) => {
            eprintln!(
                "xtask: {} reads LLVM {m}, {ebpf} emits LLVM {major}: rebuilding it",
                linker.display()
            );
            install_bpf_linker(&workspace, major)?;
        }
        Err(_) => install_bpf_linker(&workspace, major)?,
    }
    if !has_cargo_fuzz(&workspace) {
        install_cargo_fuzz(&workspace)?;
    }
    if !crate::package::cargo_deb_bin(&workspace).is_file() {
        install_cargo_deb(&workspace)?;
    }
    let ready = ebpf_toolchain::check(&workspace)?;
    eprintln!(
        "xtask: setup complete: eBPF toolchain {} (LLVM {}) with bpf-linker {} (LLVM {major}) from {}",
        ready.channel,
        ready.rustc.llvm,
        ebpf_toolchain::BPF_LINKER_VERSION,
        ready.bpf_linker_bin.display()
    );
    Ok(())
}

/// Run `install_missing` only when something is missing (the cheap checks first).
pub fn ensure_ready() -> Result<()> {
    let workspace = workspace_root();
    let ready = ebpf_toolchain::check(&workspace).and_then(|t| {
        let major = t.rustc.llvm_major()?;
        let fuzz =
            ebpf_toolchain::read_channel(&workspace.join(ebpf_toolchain::FUZZ_TOOLCHAIN_FILE))?;
        Ok(missing_packages(Some(major)).is_empty()
            && ebpf_toolchain::rustc_info(&fuzz)?.is_some()
            && has_cargo_fuzz(&workspace)
            && crate::package::cargo_deb_bin(&workspace).is_file())
    });
    match ready {
        Ok(true) => Ok(()),
        Ok(false) => install_missing(),
        Err(e) => {
            eprintln!("xtask: set-up needed: {e:#}");
            install_missing()
        }
    }
}
