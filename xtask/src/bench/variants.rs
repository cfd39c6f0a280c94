//! The servers under test and the call types: how each server is started (with its own
//! rpcbind) and checked before it is measured.
use anyhow::{bail, Result};
use mount_proto::mount::MOUNT_PROGRAM;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::server::{Launch, Server};
use super::{ganesha, Interrupt, PORT};
use testbed::mounts::sh_quote;
use testbed::PairSpec;

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// xdp-mountd with the XDP program in the veth driver.
    XdpNative,
    /// xdp-mountd with generic (SKB) XDP.
    XdpGeneric,
    /// xdp-mountd on kernel sockets only.
    Socket,
    /// NFS-Ganesha's MOUNT service.
    Ganesha,
    /// xdp-mountd with native XDP in gateway mode: `--upstream` to a Ganesha beside it
    /// (MOUNT on another port and program); MNT is served from the learned handles.
    Gateway,
}

impl Variant {
    pub fn id(self) -> &'static str {
        match self {
            Variant::XdpNative => "xdp-native",
            Variant::XdpGeneric => "xdp-generic",
            Variant::Socket => "socket",
            Variant::Ganesha => "ganesha",
            Variant::Gateway => "gateway",
        }
    }
}

/// storm's I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GeneratorIo {
    /// AF_XDP on the client veth end (native XDP).
    Afxdp,
    /// Kernel UDP sockets.
    Socket,
}

/// A call type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// MOUNT v3 NULL.
    Null,
    /// MOUNT v3 MNT of the exported directory.
    Mnt,
    /// MOUNT v3 EXPORT (one export).
    Export,
}

impl Workload {
    pub fn id(self) -> &'static str {
        match self {
            Workload::Null => "null",
            Workload::Mnt => "mnt",
            Workload::Export => "export",
        }
    }
    pub fn mix(self) -> &'static str {
        match self {
            Workload::Null => "null=1",
            Workload::Mnt => "mnt3=1",
            Workload::Export => "export3=1",
        }
    }
}

/// What starting and checking servers needs.
pub struct Ctx<'a> {
    /// The xdp-mountd binary.
    pub bin: &'a Path,
    /// The namespace pair's names and addresses.
    pub net: &'a PairSpec,
    /// Scratch directory for logs and configs.
    pub work: &'a Path,
    /// xdp-mountd's exports file.
    pub exports: &'a Path,
    /// Ganesha's configuration file.
    pub ganesha_conf: &'a Path,
    /// The gateway variant's upstream Ganesha's configuration file.
    pub upstream_conf: &'a Path,
    /// The exported directory (what MNT asks for and showmount must list).
    pub export_path: String,
    /// Ctrl-C.
    pub stop: &'a Interrupt,
}

impl Ctx<'_> {
    pub fn start(&self, variant: Variant, round: u32) -> Result<Server> {
        let log = self.work.join(format!("{}-{round}.log", variant.id()));
        let argv: Vec<String> = match variant {
            Variant::Ganesha => ganesha::argv(
                self.ganesha_conf,
                &self.work.join(format!("ganesha-{round}.nfsd.log")),
                &self.work.join("ganesha.pid"),
            ),
            _ => {
                let mut a = self.serve_argv(variant);
                a.extend([
                    "--rmtab".into(),
                    self.work.join("rmtab").display().to_string(),
                    // The generator's subnet gets whole EXPORT lists over UDP, as Ganesha
                    // gives them: the bench compares servers, not the amplification budget.
                    "--trusted-networks".into(),
                    format!("{}/24", self.net.client.v4),
                ]);
                if variant == Variant::Gateway {
                    a = self.behind_upstream(a, round);
                }
                a
            }
        };
        Server::start(Launch {
            name: variant.id(),
            netns: &self.net.server.ns,
            rpcbind_addr: self.net.server.v4.into(),
            argv,
            log,
            share_stats_dir: false,
        })
    }

    /// `xdp-mountd serve` of `variant` (an xdp-mountd one) on the exports and port, with
    /// XDP as the variant runs it (native for the gateway, whose upstream is added by
    /// `start`), trusting no network and keeping the mount list in memory.
    pub fn serve_argv(&self, variant: Variant) -> Vec<String> {
        let mut a = vec![
            self.bin.display().to_string(),
            "serve".into(),
            "--exports".into(),
            self.exports.display().to_string(),
            "--port".into(),
            PORT.to_string(),
        ];
        let xdp: &[&str] = match variant {
            Variant::XdpNative | Variant::Gateway => {
                &["--iface", &self.net.server.ifname, "--xdp", "native"]
            }
            Variant::XdpGeneric => &["--iface", &self.net.server.ifname, "--xdp", "generic"],
            _ => &["--xdp", "off"],
        };
        a.extend(xdp.iter().map(|s| s.to_string()));
        a
    }

    /// `sh -c`: start the upstream Ganesha, wait (bounded) until its MOUNT answers, then
    /// exec `daemon` with `--upstream` to it. All in the server's process group, so
    /// stopping the server stops Ganesha too.
    fn behind_upstream(&self, mut daemon: Vec<String>, round: u32) -> Vec<String> {
        let addr = self.net.server.v4;
        let (port, prog) = (ganesha::UPSTREAM_MNT_PORT, ganesha::UPSTREAM_MNT_PROGRAM);
        daemon.extend([
            "--upstream".into(),
            format!("{addr}:{port}"),
            "--upstream-program".into(),
            prog.to_string(),
        ]);
        let ganesha: Vec<String> = ganesha::argv(
            self.upstream_conf,
            &self.work.join(format!("upstream-{round}.nfsd.log")),
            &self.work.join("upstream.pid"),
        )
        .iter()
        .map(|a| sh_quote(a))
        .collect();
        let daemon: Vec<String> = daemon.iter().map(|a| sh_quote(a)).collect();
        let script = format!(
            "{} &\n\
             i=0; until rpcinfo -n {port} -u {addr} {prog} 3 >/dev/null 2>&1; do\n\
               i=$((i+1)); [ $i -gt 150 ] && {{ echo 'upstream Ganesha not answering' >&2; exit 99; }}\n\
               sleep 0.2\n\
             done\n\
             exec {}",
            ganesha.join(" "),
            daemon.join(" ")
        );
        vec!["sh".into(), "-c".into(), script]
    }

    /// Wait until the server answers (xdp-mountd: READY, i.e. XDP attached), then require
    /// rpcinfo over UDP and TCP and showmount -e to work from the client namespace.
    pub fn verify(&self, server: &mut Server, variant: Variant) -> Result<()> {
        let addr = self.net.server.v4.to_string();
        let addr = addr.as_str();
        let log = server.log().to_path_buf();
        let port = PORT.to_string();
        let program = MOUNT_PROGRAM.to_string();
        let client = |args: &[&str]| {
            testbed::netns::command(&self.net.client.ns)
                .args(["timeout", "5"])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .output()
        };
        let udp = ["rpcinfo", "-n", &port, "-u", addr, &program, "3"];
        server.wait_ready(Duration::from_secs(30), self.stop, || {
            let ready = variant == Variant::Ganesha
                || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("READY"));
            ready && client(&udp).is_ok_and(|o| o.status.success())
        })?;
        let tcp = ["rpcinfo", "-n", &port, "-t", addr, &program, "3"];
        let out = client(&tcp)?;
        if !out.status.success() {
            bail!("{}: rpcinfo -t fails", variant.id());
        }
        let out = client(&["showmount", "-e", addr])?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !text.contains(&self.export_path) {
            bail!(
                "{}: showmount -e does not list {}: {text}",
                variant.id(),
                self.export_path
            );
        }
        Ok(())
    }
}
