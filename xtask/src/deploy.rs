//! `cargo xtask deploy [--ssh USER@HOST] [-- SERVE ARGS]`: build the package, install it
//! here or on HOST (copied with scp, installed through ssh), write the serve arguments,
//! start the service (systemd where it runs; otherwise as the unit would, and say so),
//! then check from here that it answers a MOUNT NULL call.
//!
//! The installation itself is one shell script (`deploy/install.sh`) run by `sh` on the
//! target, so the local and the ssh paths are the same code.
use anyhow::{bail, ensure, Context, Result};
use mount_proto::mount::MOUNT_PROGRAM;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::package::{self, PackageArgs};
use crate::run_checked;

/// The script run on the target.
const INSTALL_SCRIPT: &str = include_str!("deploy/install.sh");
/// What the package's /etc/default/xdp-mountd says when no arguments are given.
const DEFAULT_ARGS: &str = "--exports /etc/exports --rmtab /var/lib/xdp-mountd/rmtab";
/// How long the service may take to answer NULL after the install script returns.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// Options of `cargo xtask deploy`.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// Install on this machine over ssh (e.g. root@nfs1); without it, on this machine.
    #[arg(long, value_name = "USER@HOST")]
    ssh: Option<String>,
    /// An ssh/scp option, passed as `-o OPT` (repeatable), e.g. Port=2222.
    #[arg(long = "ssh-opt", value_name = "OPT")]
    ssh_opts: Vec<String>,
    /// Install into this directory instead of / (extracted, no maintainer scripts; the
    /// daemon is then started as the unit would run it). For tests and inspection.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Deploy this package instead of building one.
    #[arg(long, value_name = "FILE")]
    deb: Option<PathBuf>,
    /// Arguments for `xdp-mountd serve` [default: the package's /etc/default/xdp-mountd].
    #[arg(last = true)]
    serve_args: Vec<String>,
}

/// `'text'` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs the whole deployment.
pub fn run(args: DeployArgs) -> Result<()> {
    let deb = match &args.deb {
        Some(deb) => deb.clone(),
        None => package::build(&PackageArgs { no_lintian: true })?,
    };
    ensure!(deb.is_file(), "no package at {}", deb.display());
    let serve_args = if args.serve_args.is_empty() {
        DEFAULT_ARGS.to_owned()
    } else {
        args.serve_args.join(" ")
    };
    ensure!(
        !serve_args.contains(['"', '\\', '$', '`', '\n']),
        "serve arguments are written into /etc/default/xdp-mountd between double quotes: \
         they cannot contain \" \\ $ ` or newlines"
    );
    let root = match &args.root {
        Some(r) => r.to_str().context("--root must be valid UTF-8")?.to_owned(),
        None => "/".to_owned(),
    };
    let (deb_there, host) = match &args.ssh {
        None => (deb.display().to_string(), None),
        Some(target) => {
            let file = deb.file_name().context("package path has no file name")?;
            let there = format!("/tmp/{}", file.to_string_lossy());
            let mut scp = Command::new("scp");
            scp.arg("-q");
            for o in &args.ssh_opts {
                scp.args(["-o", o]);
            }
            run_checked(scp.arg(&deb).arg(format!("{target}:{there}")))
                .with_context(|| format!("copying the package to {target}"))?;
            println!(
                "xtask: deploy: copied {} to {target}:{there}",
                deb.display()
            );
            let host = target.rsplit_once('@').map_or(target.as_str(), |(_, h)| h);
            (there, Some(host.to_owned()))
        }
    };
    let env = [
        ("XMD_DEB", deb_there.as_str()),
        ("XMD_ROOT", root.as_str()),
        ("XMD_ARGS", serve_args.as_str()),
        ("XMD_REMOVE_DEB", if host.is_some() { "1" } else { "0" }),
    ];
    let mut sh = match &args.ssh {
        None => {
            let mut c = Command::new("sh");
            c.arg("-s").envs(env);
            c
        }
        Some(target) => {
            let mut c = Command::new("ssh");
            for o in &args.ssh_opts {
                c.args(["-o", o]);
            }
            let assignments: Vec<String> = env
                .iter()
                .map(|(k, v)| format!("{k}={}", shell_quote(v)))
                .collect();
            c.arg(target)
                .arg(format!("env {} sh -s", assignments.join(" ")));
            c
        }
    };
    let mut child = sh
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {sh:?}"))?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(INSTALL_SCRIPT.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "installing on {} failed: {status}",
            host.as_deref().unwrap_or("this machine")
        );
    }
    let target = null_target(host.as_deref(), &serve_args)?;
    let took = answers_null(target)?;
    println!("xtask: deploy: {target} answered MOUNT NULL after {took:?}");
    Ok(())
}

/// Where to send the NULL call: HOST (or this machine's loopback, or `--bind`) at the
/// serve arguments' `--port` (default 644).
fn null_target(host: Option<&str>, serve_args: &str) -> Result<SocketAddr> {
    let words: Vec<&str> = serve_args.split_whitespace().collect();
    let value = |flag: &str| {
        words
            .windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1])
            .or_else(|| {
                let prefix = format!("{flag}=");
                words.iter().find_map(|w| w.strip_prefix(prefix.as_str()))
            })
    };
    let port: u16 = match value("--port") {
        Some(p) => p.parse().with_context(|| format!("--port {p}"))?,
        None => 644,
    };
    let bind = value("--bind").filter(|b| !matches!(*b, "::" | "0.0.0.0"));
    let host = host.or(bind).unwrap_or("127.0.0.1");
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

/// A MOUNT v3 NULL call (AUTH_NONE) with transaction id `xid`.
fn null_call(xid: u32) -> Vec<u8> {
    [xid, 0, 2, MOUNT_PROGRAM, 3, 0, 0, 0, 0, 0]
        .iter()
        .flat_map(|w: &u32| w.to_be_bytes())
        .collect()
}

/// Whether `reply` is an accepted, successful reply to call `xid`.
fn is_success(reply: &[u8], xid: u32) -> bool {
    let word = |i: usize| {
        reply
            .get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    // xid, REPLY, MSG_ACCEPTED, verifier (AUTH_NONE, 0 bytes), SUCCESS
    word(0) == Some(xid) && word(1) == Some(1) && word(2) == Some(0) && word(5) == Some(0)
}

/// Sends NULL over UDP until a successful reply comes (bounded by [`ANSWER_WITHIN`]).
fn answers_null(target: SocketAddr) -> Result<Duration> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(Duration::from_millis(300)))?;
    let start = Instant::now();
    let mut xid = std::process::id();
    let mut buf = [0u8; 512];
    while start.elapsed() < ANSWER_WITHIN {
        xid = xid.wrapping_add(1);
        // A send error (no route yet, ICMP unreachable) is retried like a lost reply.
        if socket.send_to(&null_call(xid), target).is_ok() {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                if from.port() == target.port() && is_success(&buf[..n], xid) {
                    return Ok(start.elapsed());
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    bail!("{target} did not answer MOUNT NULL within {ANSWER_WITHIN:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_and_address() {
        let t = |host, args| null_target(host, args).unwrap().to_string();
        assert_eq!(t(None, DEFAULT_ARGS), "127.0.0.1:644");
        assert_eq!(t(None, "--exports e --port 4002"), "127.0.0.1:4002");
        assert_eq!(t(None, "--port=20048 --bind 10.1.2.3"), "10.1.2.3:20048");
        assert_eq!(t(Some("10.9.9.9"), "--bind :: --port 7"), "10.9.9.9:7");
        assert!(null_target(None, "--port x").is_err());
    }

    #[test]
    fn null_call_and_reply() {
        let call = null_call(7);
        assert_eq!(call.len(), 40);
        let ok: Vec<u8> = [7u32, 1, 0, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert!(is_success(&ok, 7));
        assert!(!is_success(&ok, 8));
        assert!(!is_success(&ok[..20], 7));
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
