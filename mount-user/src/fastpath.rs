//! `serve`'s AF_XDP side: the `--iface/--xdp/--queues/--cores` options, starting the
//! [`Datapath`] next to the kernel listeners, the stats socket, and the ordered stop.
//!
//! Kept apart from `serve.rs` so that the kernel-stack wiring there only gains a few
//! lines: count calls per procedure, start this, shut it down first at exit.
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use mount_user::afxdp::{Datapath, DatapathConfig};
use mount_user::ebpf::XdpMode;
use mount_user::mountlist::MountList;
use mount_user::socket::resolve::NameCache;
use mount_user::socket::{Counters, Responder};
use mount_user::stats::procs::{ShardedCounts, PROC_SLOTS};
use mount_user::stats::server::StatsServer;
use mount_user::stats::{self, Report};
use mount_user::upstream::Upstream;

/// `--xdp` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpChoice {
    /// XDP in the driver (fails clearly when the driver cannot).
    Native,
    /// XDP in the generic network stack (any interface, slower).
    Generic,
    /// No XDP: kernel sockets only.
    Off,
}

/// The AF_XDP and stats options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct XdpArgs {
    /// Answer UDP calls arriving on this interface through AF_XDP (kernel bypass). Without
    /// it everything goes through the kernel sockets.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,

    /// Where the XDP program runs [default: native when --iface is given, else off].
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp: Option<XdpChoice>,

    /// AF_XDP sockets (and workers), one per rx queue 0..N [default: the interface's
    /// RX queue count].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub queues: Option<u32>,

    /// Cores to pin the workers to, one per queue, e.g. 0,1 or 2-5 [default: queue i on
    /// core i modulo the CPU count].
    #[arg(long, value_name = "LIST", value_parser = parse_core_list)]
    pub cores: Option<CoreList>,

    /// Unix socket that `xdp-mountd stats` reads [default: /run/xdp-mountd/PORT.sock].
    #[arg(long, value_name = "PATH")]
    pub stats_socket: Option<PathBuf>,
}

/// A parsed `--cores` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<usize>);

/// Parses "0,2,4-6" into [0, 2, 4, 5, 6].
pub fn parse_core_list(s: &str) -> Result<CoreList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let num = |t: &str| {
            t.parse::<usize>()
                .map_err(|_| format!("{t:?} is not a core number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 1024 {
                    return Err(format!("bad core range {part:?}"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(CoreList(out))
}

impl XdpArgs {
    /// The data path to start, or None for kernel sockets only.
    pub fn config(&self, port: u16) -> anyhow::Result<Option<DatapathConfig>> {
        let mode = match (self.xdp, &self.iface) {
            (Some(XdpChoice::Off), _) | (None, None) => None,
            (Some(XdpChoice::Native), Some(_)) | (None, Some(_)) => Some(XdpMode::Native),
            (Some(XdpChoice::Generic), Some(_)) => Some(XdpMode::Generic),
            (Some(_), None) => bail!("--xdp native|generic needs --iface"),
        };
        let Some(mode) = mode else {
            if self.queues.is_some() || self.cores.is_some() {
                bail!("--queues and --cores apply to the AF_XDP path: give --iface");
            }
            return Ok(None);
        };
        Ok(Some(DatapathConfig {
            iface: self.iface.clone().unwrap_or_default(),
            mode,
            port,
            queues: self.queues,
            cores: self.cores.as_ref().map(|c| c.0.clone()),
        }))
    }
}

/// Per-procedure counters of the kernel shells.
#[derive(Default)]
pub struct KernelCounts {
    /// UDP calls.
    pub udp: Arc<ShardedCounts>,
    /// TCP calls.
    pub tcp: Arc<ShardedCounts>,
}

/// What the stats report reads besides the data paths' counters.
pub struct ReportSources {
    /// The mount list (its caps and refusals).
    pub mounts: Arc<MountList>,
    /// Gateway mode's learner, when on.
    pub upstream: Option<Arc<Upstream>>,
    /// Times the rpcbind watch restored our registrations.
    pub rpcbind_restored: Arc<AtomicU64>,
}

/// The running AF_XDP path and stats socket.
pub struct FastPath {
    datapath: Option<Arc<Datapath>>,
    stats: Option<StatsServer>,
}

impl FastPath {
    /// Starts the data path (when configured) on the kernel UDP socket's port, then the
    /// stats socket. A data path failure is fatal; a stats socket failure is logged.
    pub fn start(
        args: &XdpArgs,
        kernel_udp: &UdpSocket,
        udp_responder: Arc<dyn Responder>,
        names: Arc<NameCache>,
        counters: Arc<Counters>,
        counts: &KernelCounts,
        sources: ReportSources,
    ) -> anyhow::Result<FastPath> {
        let port = kernel_udp.local_addr().context("UDP local address")?.port();
        let datapath = match args.config(port)? {
            Some(config) => {
                let kernel = kernel_udp
                    .try_clone()
                    .context("sharing the UDP socket with AF_XDP")?;
                Some(Arc::new(Datapath::start(
                    &config,
                    udp_responder,
                    names,
                    kernel,
                )?))
            }
            None => None,
        };
        let report = {
            let (datapath, udp, tcp) = (datapath.clone(), counts.udp.clone(), counts.tcp.clone());
            move || Report {
                port,
                xdp: datapath.as_ref().map(|d| d.report()),
                procedures: stats::proc_rows(
                    &datapath
                        .as_ref()
                        .map_or([0; PROC_SLOTS], |d| d.proc_counts()),
                    &udp.snapshot(),
                    &tcp.snapshot(),
                ),
                kernel: stats::kernel_counters(&counters),
                mount_list: stats::mount_list_counters(&sources.mounts),
                upstream: sources.upstream.as_ref().map(|u| u.report()),
                rpcbind_restored: sources.rpcbind_restored.load(Ordering::Relaxed),
            }
        };
        let path = args
            .stats_socket
            .clone()
            .unwrap_or_else(|| stats::default_socket_path(port));
        let stats = match StatsServer::start(&path, Arc::new(report)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("stats socket not available: {e:#}");
                None
            }
        };
        Ok(FastPath { datapath, stats })
    }

    /// Stops the stats socket, then the data path (steering off, drain, detach).
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stats) = self.stats.take() {
            stats.stop();
        }
        match self.datapath.take() {
            Some(d) => d.shutdown(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("0,2,4-6").unwrap().0, vec![0, 2, 4, 5, 6]);
        assert_eq!(parse_core_list("3").unwrap().0, vec![3]);
        for bad in ["", "a", "3-1", "1,,2", "0-99999"] {
            assert!(parse_core_list(bad).is_err(), "{bad:?}");
        }
    }

    fn args(iface: Option<&str>, xdp: Option<XdpChoice>) -> XdpArgs {
        XdpArgs {
            iface: iface.map(str::to_owned),
            xdp,
            queues: None,
            cores: None,
            stats_socket: None,
        }
    }

    #[test]
    fn modes() {
        let mode = |a: XdpArgs| a.config(644).unwrap().map(|c| c.mode);
        assert_eq!(mode(args(None, None)), None);
        assert_eq!(mode(args(Some("eth0"), None)), Some(XdpMode::Native));
        assert_eq!(
            mode(args(Some("eth0"), Some(XdpChoice::Generic))),
            Some(XdpMode::Generic)
        );
        assert_eq!(mode(args(Some("eth0"), Some(XdpChoice::Off))), None);
        assert!(args(None, Some(XdpChoice::Native)).config(644).is_err());
        let mut a = args(None, None);
        a.queues = Some(2);
        assert!(a.config(644).is_err());
    }
}
