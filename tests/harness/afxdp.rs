//! Proof that a daemon run with the AF_XDP data path (`--xdp native|generic`, e.g. the
//! whole suite under `XMD_E2E_DAEMON_ARGS="--iface veth0 --xdp native"`) answered UDP
//! calls through AF_XDP: before the daemon is stopped, its `stats` must show no MOUNT
//! call received by the kernel UDP socket, unless the test said it sends IP fragments or
//! calls over loopback (which reach the kernel by design).

use std::path::Path;
use std::process::Command;

/// Whether these daemon arguments turn the AF_XDP path on.
pub fn xdp_mode(args: &[String]) -> bool {
    args.windows(2)
        .any(|w| w[0] == "--xdp" && (w[1] == "native" || w[1] == "generic"))
        || (args.iter().any(|a| a == "--iface") && !args.iter().any(|a| a == "--xdp"))
}

/// Whether these daemon arguments let the XDP program answer calls itself in native mode
/// (the default with --iface).
pub fn xdp_answers_native(args: &[String]) -> bool {
    xdp_mode(args)
        && !args
            .windows(2)
            .any(|w| w[0] == "--xdp" && w[1] == "generic")
        && args
            .windows(2)
            .any(|w| w[0] == "--xdp-answers" && w[1] == "on")
}

/// (calls answered from AF_XDP, calls received by the kernel UDP socket), summed over
/// procedures, from `xdp-mountd stats --json`.
pub fn udp_call_counts(bin: &Path, socket: &Path) -> Result<(u64, u64), String> {
    let v = stats_json(bin, socket)?;
    let procs = v["procedures"]
        .as_array()
        .ok_or_else(|| format!("no procedures in stats: {v}"))?;
    let sum = |col: &str| procs.iter().filter_map(|p| p[col].as_u64()).sum::<u64>();
    Ok((sum("afxdp"), sum("udp")))
}

/// The daemon's `xdp-mountd stats --json` report.
pub fn stats_json(bin: &Path, socket: &Path) -> Result<serde_json::Value, String> {
    let out = Command::new(bin)
        .args(["stats", "--json", "--socket"])
        .arg(socket)
        .output()
        .map_err(|e| format!("running {} stats: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "xdp-mountd stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("stats output is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_xdp_path() {
        let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(xdp_mode(&v("--iface veth0 --xdp native")));
        assert!(xdp_mode(&v("--iface veth0 --xdp generic")));
        assert!(xdp_mode(&v("--iface veth0")));
        assert!(!xdp_mode(&v("--iface veth0 --xdp off")));
        assert!(!xdp_mode(&v("--udp-workers 2")));
        assert!(xdp_answers_native(&v("--iface veth0 --xdp-answers on")));
        assert!(xdp_answers_native(&v(
            "--iface veth0 --xdp native --xdp-answers on"
        )));
        assert!(!xdp_answers_native(&v(
            "--iface veth0 --xdp generic --xdp-answers on"
        )));
        assert!(!xdp_answers_native(&v(
            "--iface veth0 --xdp off --xdp-answers on"
        )));
        assert!(!xdp_answers_native(&v("--iface veth0 --xdp-answers off")));
    }
}
