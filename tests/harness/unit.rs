//! The packaged systemd unit as the tests see it: its capabilities, and a launcher that
//! runs the daemon the way the unit would (an unprivileged user, exactly those
//! capabilities) without systemd.

use std::path::{Path, PathBuf};

/// The unit file in the source tree (what `cargo xtask package` ships).
pub fn unit_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mount-user/debian/xdp-mountd.service")
}

/// The unit's `AmbientCapabilities=`, lower case without `CAP_` (`net_admin`, `bpf`, ...).
pub fn unit_capabilities() -> Vec<String> {
    let path = unit_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .unwrap_or_else(|| panic!("{} has no AmbientCapabilities=", path.display()));
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

/// Writes `DIR/NAME`, a script that execs `bin` as user nobody with exactly `caps`
/// (ambient, inheritable and bounding sets), like the unit's `DynamicUser=` and
/// `AmbientCapabilities=`; returns its path, for [`crate::DaemonOpts::bin`].
pub fn unprivileged_launcher(dir: &Path, name: &str, bin: &Path, caps: &[String]) -> PathBuf {
    let list: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let script = format!(
        "#!/bin/sh\nexec setpriv --reuid=nobody --regid=nogroup --clear-groups \
         --inh-caps=-all{list} --ambient-caps=-all{list} --bounding-set=-all{list} \
         {bin} \"$@\"\n",
        bin = bin.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    set_mode(&path, 0o755);
    path
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// `xdp-mountd stats --json` of the daemon behind `socket`.
pub fn stats_json(bin: &Path, socket: &Path) -> serde_json::Value {
    let out = std::process::Command::new(bin)
        .args(["stats", "--json", "--socket"])
        .arg(socket)
        .output()
        .unwrap_or_else(|e| panic!("running {} stats: {e}", bin.display()));
    assert!(
        out.status.success(),
        "stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stats --json is JSON")
}

/// The sum of a procedure-table column (`afxdp`, `udp`, `tcp`) of a stats report.
pub fn calls_on(stats: &serde_json::Value, column: &str) -> u64 {
    stats["procedures"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r[column].as_u64()).sum())
        .unwrap_or(0)
}

/// The report's capabilities, without the `cap_` prefix, sorted.
pub fn reported_capabilities(stats: &serde_json::Value) -> Vec<String> {
    let mut caps: Vec<String> = stats["capabilities"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str())
                .map(|c| c.trim_start_matches("cap_").to_owned())
                .collect()
        })
        .unwrap_or_default();
    caps.sort();
    caps
}

/// A helper process (Prometheus, sshd) killed and reaped when the test ends, even when it
/// fails.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True (with a note) in the suite's reruns over AF_XDP (XMD_E2E_DAEMON_ARGS set), which
/// tests that choose their own data path need not repeat: the plain run covers them.
pub fn rerun_of_the_suite(test: &str) -> bool {
    let rerun = std::env::var_os("XMD_E2E_DAEMON_ARGS").is_some();
    if rerun {
        eprintln!("{test}: chooses its own data path; covered by the plain run");
    }
    rerun
}
