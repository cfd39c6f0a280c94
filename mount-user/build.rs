//! Builds the XDP program (`mount-ebpf`) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, so that `cargo build` alone yields a binary with the
//! object embedded. `cargo xtask setup` installs what this needs.
use anyhow::{anyhow, Context as _};

/// The file aya-build writes for the `mount-xdp` binary of `mount-ebpf`.
const OBJECT: &str = "mount-xdp";

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("mount-user has no parent directory"))?
        .join("mount-ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "mount-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )?;
    // With AYA_BUILD_SKIP=1 (fast iteration on userspace code) aya-build writes nothing;
    // embed an empty object so the crate compiles, and the loader reports it clearly.
    let out_dir = std::env::var("OUT_DIR").context("OUT_DIR")?;
    let object = std::path::Path::new(&out_dir).join(OBJECT);
    if !object.exists() {
        std::fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
    }
    Ok(())
}
