//! Builds the XDP program (`mount-ebpf`) for bpfel-unknown-none with the pinned eBPF
//! toolchain (`mount-ebpf/rust-toolchain.toml`) and the project's own bpf-linker, so that
//! `cargo build` alone yields a binary with the object embedded. `cargo xtask setup`
//! installs what this needs; when something is missing or the LLVM versions disagree, this
//! fails with a message naming both and the fix (see `build/ebpf_toolchain.rs`).
use anyhow::{anyhow, Context as _};
use std::path::Path;

#[path = "build/ebpf_toolchain.rs"]
#[allow(dead_code)] // xtask uses the installation half
mod ebpf_toolchain;

/// The file aya-build writes for the `mount-xdp` binary of `mount-ebpf`.
const OBJECT: &str = "mount-xdp";

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    // This crate is mount-user/xdp; the workspace root is two levels up.
    let workspace = Path::new(&manifest_dir)
        .ancestors()
        .nth(2)
        .ok_or_else(|| anyhow!("{manifest_dir} is not two levels below the workspace"))?;
    let ebpf_dir = workspace.join("mount-ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    let out_dir = std::env::var("OUT_DIR").context("OUT_DIR")?;
    let object = Path::new(&out_dir).join(OBJECT);

    // With AYA_BUILD_SKIP=1 (fast iteration on userspace code) nothing of
    // the eBPF toolchain is needed: embed an empty object, which the loader reports clearly.
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if matches!(std::env::var("AYA_BUILD_SKIP").as_deref(), Ok("1" | "true")) {
        println!("cargo:rustc-env=XDP_MOUNTD_EBPF_TOOLCHAIN=none (AYA_BUILD_SKIP)");
        if !object.exists() {
            std::fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
        }
        return Ok(());
    }

    let toolchain = ebpf_toolchain::check(workspace).map_err(|e| anyhow!("eBPF build: {e:#}"))?;
    println!(
        "cargo:rerun-if-changed={}",
        toolchain.bpf_linker_bin.join("bpf-linker").display()
    );
    // rustc finds the linker for bpfel-unknown-none as `bpf-linker` on PATH; aya-build's
    // `rustup run` keeps PATH and puts only the toolchain's own directory before it.
    std::env::set_var(
        "PATH",
        ebpf_toolchain::path_with(&toolchain.bpf_linker_bin)?,
    );
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "mount-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain.channel),
    )?;
    // `EBPF_TOOLCHAIN`: shown by `xdp-mountd --version`, and checked against the pin by a test.
    println!(
        "cargo:rustc-env=XDP_MOUNTD_EBPF_TOOLCHAIN={} ({}, LLVM {}; bpf-linker {})",
        toolchain.channel,
        toolchain.rustc.release,
        toolchain.rustc.llvm,
        ebpf_toolchain::BPF_LINKER_VERSION
    );
    Ok(())
}
