//! The pinned toolchain that builds the XDP program, and the bpf-linker that links it.
//!
//! rustc hands bpf-linker LLVM bitcode, which bpf-linker reads with the LLVM it was built
//! against; bitcode from a newer LLVM than the reader's fails deep inside the build with
//! "ERROR llvm: Invalid record". The `nightly` channel moves (on 2026-10-29 it went from
//! LLVM 22 to 23), so the build never names it: the eBPF toolchain is a dated nightly named
//! once, in `mount-ebpf/rust-toolchain.toml`, and bpf-linker is built against the LLVM major
//! that toolchain reports, into the workspace's own `.tools/` — where no other project's
//! `cargo install bpf-linker` can replace it, and where it replaces no one else's.
//!
//! Used by `mount-user/xdp/build.rs` (which checks before building the object, so a mismatch is
//! a plain error naming both sides) and by `cargo xtask setup` (which installs). It is one
//! file shared through `#[path]` rather than a crate: a build-dependency of its own for a
//! hundred lines, in a workspace whose top level is fixed, would cost more than it saves.
use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bpf-linker release the build uses. Moving the eBPF toolchain to another LLVM major
/// may need a newer release (bpf-linker's `llvm-NN` features name the majors it supports).
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// The eBPF toolchain file, relative to the workspace root.
pub const TOOLCHAIN_FILE: &str = "mount-ebpf/rust-toolchain.toml";

/// The fuzz crate's toolchain file (cargo-fuzz needs a nightly for its sanitizer flags).
pub const FUZZ_TOOLCHAIN_FILE: &str = "mount-user/fuzz/rust-toolchain.toml";

/// The `channel` of a rust-toolchain.toml, e.g. `nightly-2026-05-19`.
///
/// Read by hand instead of with the `toml` crate: the file has one `[toolchain]` table that
/// we write ourselves, and a parser dependency in both build scripts would cost a build.
pub fn read_channel(toolchain_file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(toolchain_file)
        .with_context(|| format!("reading {}", toolchain_file.display()))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("channel") else {
            continue;
        };
        let value = rest
            .trim_start()
            .strip_prefix('=')
            .map(str::trim)
            .and_then(|v| v.strip_prefix('"'))
            .and_then(|v| v.split('"').next())
            .ok_or_else(|| {
                anyhow!(
                    "{}:{}: expected channel = \"NAME\"",
                    toolchain_file.display(),
                    n + 1
                )
            })?;
        if is_moving_channel(value) {
            bail!(
                "{}:{}: channel {value:?} moves with every release; pin a dated toolchain \
                 (e.g. nightly-2026-05-19) or a version (e.g. 1.95.0)",
                toolchain_file.display(),
                n + 1
            );
        }
        return Ok(value.to_string());
    }
    bail!("{}: no channel = \"…\" line", toolchain_file.display())
}

/// `nightly`, `beta` and `stable` (with or without a host triple) name a different
/// compiler each release; a date or a version number does not.
fn is_moving_channel(channel: &str) -> bool {
    const MOVING: &str = "stable beta nightly";
    let base = channel.split('-').next().unwrap_or(channel);
    MOVING.split(' ').any(|m| m == base) && !channel[base.len()..].starts_with("-20")
}

/// What `rustc -vV` of a toolchain reports: its release line and its LLVM version.
#[derive(Debug, Clone)]
pub struct RustcInfo {
    /// e.g. `rustc 1.97.0-nightly (e50aa6fba 2026-05-19)`.
    pub release: String,
    /// e.g. `22.1.4`.
    pub llvm: String,
}

impl RustcInfo {
    /// The LLVM major version, e.g. 22.
    pub fn llvm_major(&self) -> Result<u32> {
        llvm_major(&self.llvm)
    }
}

fn llvm_major(version: &str) -> Result<u32> {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| anyhow!("cannot read an LLVM major version from {version:?}"))
}

/// Asks `rustup run TOOLCHAIN rustc -vV`. None when rustup has no such toolchain.
pub fn rustc_info(toolchain: &str) -> Result<Option<RustcInfo>> {
    // Not installing here: a build script that downloads toolchains surprises people.
    let out = Command::new("rustup")
        .args(["run", toolchain, "rustc", "-vV"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .context("running rustup (is it installed and on PATH?)")?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let release = text.lines().next().unwrap_or_default().to_string();
    let llvm = text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .ok_or_else(|| anyhow!("`rustc +{toolchain} -vV` printed no LLVM version:\n{text}"))?
        .trim()
        .to_string();
    Ok(Some(RustcInfo { release, llvm }))
}

/// Whether the toolchain has the `rust-src` component (`-Z build-std=core` needs it).
pub fn has_rust_src(toolchain: &str) -> bool {
    Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", toolchain])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false)
}

/// Where bpf-linker built against LLVM `llvm_major` is installed (`cargo install --root`).
pub fn bpf_linker_root(workspace: &Path, llvm_major: u32) -> PathBuf {
    workspace
        .join(".tools")
        .join(format!("bpf-linker-{BPF_LINKER_VERSION}-llvm{llvm_major}"))
}

/// The LLVM major the bpf-linker binary at `bin` was built against, or why it cannot be
/// used. It links LLVM dynamically (Debian's libLLVM.so.MAJOR.MINOR); `ldd` names it.
pub fn bpf_linker_llvm_major(bin: &Path) -> Result<u32> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !version.contains(BPF_LINKER_VERSION) {
        bail!(
            "{} is not bpf-linker {BPF_LINKER_VERSION} (it says {:?})",
            bin.display(),
            version.trim()
        );
    }
    let ldd = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    let libs = String::from_utf8_lossy(&ldd.stdout);
    libs.lines()
        .find_map(|l| {
            let name = l.split_whitespace().next()?;
            let v = name.strip_prefix("libLLVM.so.")?;
            llvm_major(v).ok()
        })
        .ok_or_else(|| {
            anyhow!(
                "{} links no libLLVM.so.N that ldd can see:\n{libs}",
                bin.display()
            )
        })
}

/// A checked eBPF build environment: the pinned toolchain and a matching bpf-linker.
#[derive(Debug, Clone)]
pub struct EbpfToolchain {
    /// The pinned channel, e.g. `nightly-2026-05-19`.
    pub channel: String,
    /// What its rustc reports.
    pub rustc: RustcInfo,
    /// The directory holding the matching `bpf-linker` (put first on PATH for the build).
    pub bpf_linker_bin: PathBuf,
}

/// The fix printed with every problem found by [`check`].
pub const FIX: &str = "run `cargo xtask setup` (it installs the pinned toolchain with rust-src \
    and bpf-linker against the same LLVM); to move the pin, see README \"Pinned toolchains\"";

/// Checks that the pinned eBPF toolchain is installed with rust-src and that the
/// project's bpf-linker reads its LLVM; each failure names both sides and the fix.
pub fn check(workspace: &Path) -> Result<EbpfToolchain> {
    let file = workspace.join(TOOLCHAIN_FILE);
    let channel = read_channel(&file)?;
    let Some(rustc) = rustc_info(&channel)? else {
        bail!("the eBPF toolchain {channel} (pinned in {TOOLCHAIN_FILE}) is not installed; {FIX}");
    };
    if !has_rust_src(&channel) {
        bail!("the eBPF toolchain {channel} lacks the rust-src component; {FIX}");
    }
    let major = rustc.llvm_major()?;
    let root = bpf_linker_root(workspace, major);
    let bin = root.join("bin");
    let linker = bin.join("bpf-linker");
    if !linker.exists() {
        bail!(
            "{channel} ({}) has LLVM {}, and there is no bpf-linker {BPF_LINKER_VERSION} \
             for LLVM {major} at {}; {FIX}",
            rustc.release,
            rustc.llvm,
            linker.display()
        );
    }
    let linker_major = bpf_linker_llvm_major(&linker)?;
    if linker_major != major {
        bail!(
            "LLVM mismatch: {channel} ({}) emits LLVM {} bitcode, but {} reads LLVM \
             {linker_major}; {FIX}",
            rustc.release,
            rustc.llvm,
            linker.display()
        );
    }
    Ok(EbpfToolchain {
        channel,
        rustc,
        bpf_linker_bin: bin,
    })
}

/// PATH with `dir` first (how aya-build's rustc finds our bpf-linker).
pub fn path_with(dir: &Path) -> Result<std::ffi::OsString> {
    let mut dirs = vec![dir.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).context("joining PATH")
}
