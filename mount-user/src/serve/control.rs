//! The daemon's control socket (`xdp-mountd stats` and `xdp-mountd reload`) and the report
//! it serves, which `/metrics` renders too: the counters of every data path, plus the parts
//! `serve` owns (exports, mount list, capabilities) through [`ControlHooks`].
use std::path::Path;
use std::sync::Arc;

use mount_user::afxdp::Datapath;
use mount_user::socket::Counters;
use mount_user::stats::calls::CALL_SLOTS;
use mount_user::stats::procs::ShardedCounts;
use mount_user::stats::server::{ReloadFn, ReportFn, StatsServer};
use mount_user::stats::{self, Report};

/// Counters of the kernel shells.
#[derive(Default)]
pub struct KernelCounts {
    /// The listeners' event counters.
    pub listeners: Arc<Counters>,
    /// UDP calls.
    pub udp: Arc<ShardedCounts>,
    /// TCP calls.
    pub tcp: Arc<ShardedCounts>,
}

/// Fills the parts of a [`Report`] that `serve` owns (exports, mount list, privileges).
pub type ReportExtras = dyn Fn(&mut Report) + Send + Sync;

/// What the serving daemon adds to the control socket: its parts of the stats report, and
/// the reload `xdp-mountd reload` asks for.
pub struct ControlHooks {
    /// Fills the report's fields owned by `serve` (exports, mount list, capabilities).
    pub extras: Arc<ReportExtras>,
    /// Reloads the exports and reports the outcome.
    pub reload: Arc<ReloadFn>,
}

/// The running control socket.
pub struct Control {
    server: Option<StatsServer>,
    report: Arc<ReportFn>,
}

impl Control {
    /// Serves the report of the daemon on `port` (its AF_XDP `datapath`, if any, and the
    /// kernel shells' `counts`) at `path`, and `xdp-mountd reload` through `hooks`. A socket
    /// that cannot be created is logged, not fatal: the daemon serves without it.
    pub fn start(
        path: &Path,
        port: u16,
        datapath: Option<Arc<Datapath>>,
        counts: &KernelCounts,
        hooks: ControlHooks,
    ) -> Control {
        let (udp, tcp) = (counts.udp.clone(), counts.tcp.clone());
        let counters = counts.listeners.clone();
        let report = move || {
            let afxdp = datapath
                .as_ref()
                .map_or_else(|| vec![0; CALL_SLOTS], |d| d.call_counts());
            let (udp, tcp) = (udp.snapshot(), tcp.snapshot());
            let mut report = Report {
                port,
                xdp: datapath.as_ref().map(|d| d.report()),
                procedures: stats::proc_rows(&afxdp, &udp, &tcp),
                kernel: stats::kernel_counters(&counters),
                calls: stats::call_rows(&[("afxdp", &afxdp), ("udp", &udp), ("tcp", &tcp)]),
                ..Default::default()
            };
            stats::add_program_answers(&mut report);
            (hooks.extras)(&mut report);
            report
        };
        let report: Arc<ReportFn> = Arc::new(report);
        let server = match StatsServer::start(path, report.clone(), Some(hooks.reload)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("stats socket not available: {e:#}");
                None
            }
        };
        Control { server, report }
    }

    /// Builds a fresh report (for `/metrics`).
    pub fn report_fn(&self) -> Arc<ReportFn> {
        self.report.clone()
    }

    /// Removes the socket.
    pub fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}
