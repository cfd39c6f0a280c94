//! A private mount namespace for one command: `unshare -m --propagation private sh -c
//! SCRIPT sh ARGV…`, where the script changes mounts, optionally starts rpcbind, and
//! execs ARGV.
//!
//! Why: rpcbind keeps its socket and lock files under /run, which all network namespaces
//! share, so a second rpcbind (or the host's) would collide; and a daemon registers
//! through that socket, so it must see the same /run as "its" rpcbind. A tmpfs on /run in
//! a private mount namespace, with rpcbind started there and the daemon exec'd in the
//! same one, gives each test its own pair of them. The same namespace can carry an
//! overlay on /etc (netgroup, hosts, nsswitch.conf for a daemon, never touching the
//! host's) and keep one host directory under /run visible (the demo's stats socket, so
//! `xdp-mountd stats` run from the host finds it). Propagation is private, so nothing of
//! this reaches the host. A shell script was preferred to doing the mounts in Rust
//! between fork and exec: it is short, readable in `ps`, and needs no unsafe code.
//!
//! rpcbind started here runs in the background of the script with `-f`, so it stays in
//! the command's process group; its pid can be written to a file to stop it alone.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How many times (every 50 ms) the script asks a fresh rpcbind whether it answers.
const RPCBIND_POLLS: u32 = 100;

/// What the private mount namespace gets before the command is exec'd.
#[derive(Clone, Debug, Default)]
pub struct PrivateMounts {
    /// Overlay this directory's files over /etc (files /etc lacks can be given too).
    /// Rewrite them in place while the command runs, never rename over them.
    pub etc_overlay: Option<PathBuf>,
    /// An empty tmpfs on /run (implied by `rpcbind` and `keep_run_dir`).
    pub tmpfs_run: bool,
    /// A host directory under /run that stays visible through the tmpfs: bind-mounted to
    /// `aside` (a scratch directory outside /run) before the tmpfs, moved back after.
    pub keep_run_dir: Option<KeepDir>,
    /// Start rpcbind first and wait (5 s at most) until it answers.
    pub rpcbind: Option<PrivateRpcbind>,
}

/// A host directory under /run kept visible through the private tmpfs.
#[derive(Clone, Debug)]
pub struct KeepDir {
    /// The directory (created if missing), e.g. /run/xdp-mountd.
    pub dir: PathBuf,
    /// Where it waits while the tmpfs is mounted (created if missing; not under /run).
    pub aside: PathBuf,
}

/// rpcbind inside the private mount namespace.
#[derive(Clone, Debug)]
pub struct PrivateRpcbind {
    /// Addresses it listens on for UDP (`-h`, loopback is added by rpcbind); the first
    /// one is asked whether it answers. At least one.
    pub addrs: Vec<IpAddr>,
    /// Write its pid here (to stop it alone, see [`kill_pidfile`]).
    pub pidfile: Option<PathBuf>,
}

/// Quotes `s` for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn quote_path(p: &Path) -> String {
    sh_quote(&p.display().to_string())
}

impl PrivateMounts {
    /// Whether there is nothing to do (the command needs no private mount namespace).
    pub fn is_empty(&self) -> bool {
        self.etc_overlay.is_none()
            && !self.tmpfs_run
            && self.keep_run_dir.is_none()
            && self.rpcbind.is_none()
    }

    /// The script; it ends with `exec "$@"`.
    pub fn script(&self) -> String {
        let mut s = vec!["set -e".to_string()];
        if let Some(dir) = &self.etc_overlay {
            let opt = sh_quote(&format!("lowerdir={}:/etc", dir.display()));
            s.push(format!("mount -t overlay overlay -o {opt} /etc"));
        }
        if let Some(k) = &self.keep_run_dir {
            let (dir, aside) = (quote_path(&k.dir), quote_path(&k.aside));
            s.push(format!("mkdir -p {dir} {aside}"));
            s.push(format!("mount --bind {dir} {aside}"));
        }
        if self.tmpfs_run || self.keep_run_dir.is_some() || self.rpcbind.is_some() {
            s.push("mount -t tmpfs tmpfs /run".into());
            s.push("mkdir -p /run/rpcbind".into());
        }
        if let Some(k) = &self.keep_run_dir {
            let (dir, aside) = (quote_path(&k.dir), quote_path(&k.aside));
            s.push(format!("mkdir -p {dir}"));
            s.push(format!("mount --move {aside} {dir}"));
        }
        if let Some(r) = &self.rpcbind {
            let hosts: Vec<String> = r.addrs.iter().map(|a| format!("-h {a}")).collect();
            s.push(format!("rpcbind -f -w {} &", hosts.join(" ")));
            if let Some(pidfile) = &r.pidfile {
                s.push(format!("echo $! > {}", quote_path(pidfile)));
            }
            let probe = r
                .addrs
                .first()
                .map_or_else(|| "127.0.0.1".to_string(), IpAddr::to_string);
            s.push(format!(
                "i=0; until rpcinfo -p {probe} >/dev/null 2>&1; do i=$((i+1)); \
                 [ $i -lt {RPCBIND_POLLS} ] || {{ echo 'rpcbind did not start' >&2; exit 97; }}; \
                 sleep 0.05; done"
            ));
        }
        s.push("exec \"$@\"".into());
        s.join("\n")
    }

    /// `unshare -m --propagation private sh -c SCRIPT sh`: append the command's argv.
    pub fn wrap(&self) -> Vec<String> {
        ["unshare", "-m", "--propagation", "private", "sh", "-c"]
            .into_iter()
            .map(String::from)
            .chain([self.script(), "sh".into()])
            .collect()
    }
}

/// `nsenter --mount=/proc/PID/ns/mnt`: append a command to run it in the mount namespace
/// of process `pid` (e.g. an [`crate::Rpcbind`]'s).
pub fn enter_mounts_of(pid: u32) -> Vec<String> {
    vec!["nsenter".into(), format!("--mount=/proc/{pid}/ns/mnt")]
}

/// Sends `sig` to the pid written in `pidfile`; false when there is none to read.
pub fn kill_pidfile(pidfile: &Path, sig: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<libc::pid_t>() else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) has no memory effects; the pid is the process our script started.
    unsafe { libc::kill(pid, sig) };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_nothing_to_do() {
        let m = PrivateMounts::default();
        assert!(m.is_empty());
        assert_eq!(m.script(), "set -e\nexec \"$@\"");
    }

    #[test]
    fn rpcbind_implies_a_private_run_and_waits_for_it() {
        let m = PrivateMounts {
            rpcbind: Some(PrivateRpcbind {
                addrs: vec!["10.77.1.1".parse().unwrap(), "fd77:1::1".parse().unwrap()],
                pidfile: Some("/tmp/x y/rpcbind.pid".into()),
            }),
            ..Default::default()
        };
        let s = m.script();
        let tmpfs = s.find("mount -t tmpfs tmpfs /run").unwrap();
        let start = s.find("rpcbind -f -w -h 10.77.1.1 -h fd77:1::1 &").unwrap();
        let wait = s.find("rpcinfo -p 10.77.1.1").unwrap();
        let exec = s.find("exec \"$@\"").unwrap();
        assert!(tmpfs < start && start < wait && wait < exec, "{s}");
        assert!(s.contains("echo $! > '/tmp/x y/rpcbind.pid'"), "{s}");
        assert_eq!(
            &m.wrap()[..4],
            ["unshare", "-m", "--propagation", "private"]
        );
        assert_eq!(m.wrap().last().map(String::as_str), Some("sh"));
    }

    #[test]
    fn kept_dir_goes_aside_and_back_around_the_tmpfs() {
        let m = PrivateMounts {
            etc_overlay: Some("/tmp/etc".into()),
            keep_run_dir: Some(KeepDir {
                dir: "/run/xdp-mountd".into(),
                aside: "/tmp/aside".into(),
            }),
            ..Default::default()
        };
        let s = m.script();
        let overlay = s
            .find("mount -t overlay overlay -o 'lowerdir=/tmp/etc:/etc' /etc")
            .unwrap();
        let bind = s
            .find("mount --bind '/run/xdp-mountd' '/tmp/aside'")
            .unwrap();
        let tmpfs = s.find("mount -t tmpfs tmpfs /run").unwrap();
        let back = s
            .find("mount --move '/tmp/aside' '/run/xdp-mountd'")
            .unwrap();
        assert!(overlay < bind && bind < tmpfs && tmpfs < back, "{s}");
        assert!(!s.contains("rpcbind -f"), "{s}");
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
