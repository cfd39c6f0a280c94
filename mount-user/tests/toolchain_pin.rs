//! The embedded XDP program was built by the pinned eBPF toolchain, not by whatever
//! `nightly` means on this machine today (a moving nightly once brought LLVM 23, which
//! bpf-linker 0.13 cannot read). CI installs the newest `nightly` before the build, so a
//! build that fell back to the channel would fail here or in the link.
use std::process::Command;

#[path = "../xdp/build/ebpf_toolchain.rs"]
#[allow(dead_code)]
mod ebpf_toolchain;

#[test]
fn embedded_object_was_built_by_the_pinned_toolchain() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("mount-user has a parent");
    let pin = ebpf_toolchain::read_channel(&workspace.join(ebpf_toolchain::TOOLCHAIN_FILE))
        .expect("the eBPF toolchain file names a dated channel");
    let out = Command::new(env!("CARGO_BIN_EXE_xdp-mountd"))
        .arg("--version")
        .output()
        .expect("xdp-mountd --version runs");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "--version failed: {version}");
    let line = version
        .lines()
        .find_map(|l| l.strip_prefix("eBPF toolchain: "))
        .unwrap_or_else(|| panic!("--version names no eBPF toolchain:\n{version}"));
    if line.starts_with("none (AYA_BUILD_SKIP)") {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI built without the XDP program (AYA_BUILD_SKIP)"
        );
        eprintln!("SKIPPED: built with AYA_BUILD_SKIP, no XDP program embedded");
        return;
    }
    assert!(
        line.starts_with(&format!("{pin} (")),
        "the XDP program was built by {line:?}, not by the pin {pin}"
    );
    // The LLVM it reports is the one the pinned toolchain has now, and bpf-linker's.
    let rustc = ebpf_toolchain::rustc_info(&pin)
        .expect("rustup answers")
        .expect("the pinned toolchain is installed");
    assert!(
        line.contains(&format!("LLVM {};", rustc.llvm)),
        "{line:?} does not name {pin}'s LLVM {}",
        rustc.llvm
    );
    let major = rustc.llvm_major().expect("LLVM major");
    let linker = ebpf_toolchain::bpf_linker_root(workspace, major).join("bin/bpf-linker");
    assert_eq!(
        ebpf_toolchain::bpf_linker_llvm_major(&linker).expect("bpf-linker is usable"),
        major,
        "{} reads another LLVM than {pin}",
        linker.display()
    );
}

#[test]
fn a_missing_pinned_toolchain_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("xmd-pin-{}", std::process::id()));
    let file = dir.join(ebpf_toolchain::TOOLCHAIN_FILE);
    std::fs::create_dir_all(file.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&file, "[toolchain]\nchannel = \"nightly-2001-01-01\"\n").expect("write");
    let err = ebpf_toolchain::check(&dir).expect_err("no such toolchain is installed");
    let _ = std::fs::remove_dir_all(&dir);
    let msg = format!("{err:#}");
    assert!(
        msg.contains("nightly-2001-01-01") && msg.contains("cargo xtask setup"),
        "{msg}"
    );
}

#[test]
fn moving_channels_are_refused_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("xmd-chan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("rust-toolchain.toml");
    let moving =
        "nightly stable beta nightly-x86_64-unknown-linux-gnu stable-x86_64-unknown-linux-gnu";
    let pinned = "nightly-2026-05-19 1.95.0";
    let cases = (moving.split(' ').map(|c| (c, true))).chain(pinned.split(' ').map(|c| (c, false)));
    for (channel, moving) in cases {
        std::fs::write(
            &file,
            format!("# pin\n[toolchain]\nchannel = \"{channel}\"\n"),
        )
        .expect("write");
        match ebpf_toolchain::read_channel(&file) {
            Ok(c) => {
                assert!(!moving, "{channel} was accepted");
                assert_eq!(c, channel);
            }
            Err(e) => {
                assert!(moving, "{channel} was refused: {e:#}");
                let msg = format!("{e:#}");
                assert!(msg.contains("rust-toolchain.toml:3:"), "{msg}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
