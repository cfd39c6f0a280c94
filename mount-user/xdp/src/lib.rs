//! The XDP side of xdp-mountd that both of its users need: the daemon (which answers
//! MOUNT calls through AF_XDP) and the `storm` load generator (which sends them through
//! AF_XDP). Its own crate so that the generator (`mount-storm`) does not depend on the
//! daemon's library, and the daemon's binary can still carry the `storm` subcommand.
//!
//! [`ebpf`]: the loader of the XDP program from `mount-ebpf`, whose object `build.rs`
//! builds with the pinned eBPF toolchain and embeds (the toolchain check is in
//! `build/ebpf_toolchain.rs`, shared with `cargo xtask setup`). [`xsk`]: one AF_XDP socket
//! with its own UMEM and rings. [`rx_queue_count`]: how many sockets an interface needs.
//!
//! Nothing here knows MOUNT: the daemon's workers and the generator's transport are built
//! on top, in their own crates.
use anyhow::Context as _;

pub mod ebpf;
mod ring;
pub mod xsk;

/// The toolchain that built the embedded XDP program, e.g. `nightly-2026-05-19 (rustc …,
/// LLVM 22.1.0; bpf-linker 0.13.0)`, or `none (AYA_BUILD_SKIP)` (`xdp-mountd --version`).
pub const EBPF_TOOLCHAIN: &str = env!("XDP_MOUNTD_EBPF_TOOLCHAIN");

/// The interface's RX queue count, from /sys/class/net/IF/queues/rx-*.
pub fn rx_queue_count(iface: &str) -> anyhow::Result<u32> {
    let dir = format!("/sys/class/net/{iface}/queues");
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))?;
    let mut count = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {dir}"))?;
        if entry.file_name().to_string_lossy().starts_with("rx-") {
            count += 1;
        }
    }
    Ok(count.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_a_queue() {
        assert!(rx_queue_count("lo").unwrap() >= 1);
        assert!(rx_queue_count("no-such-if0").is_err());
    }
}
