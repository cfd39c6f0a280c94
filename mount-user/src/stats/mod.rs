//! Run-time statistics of a serving daemon: what `xdp-mountd stats` shows.
//!
//! The daemon builds a [`Report`] on demand (counters are summed when read, never on the
//! hot path) and serves it as one JSON document to whoever connects to its stats socket
//! ([`server`]); `xdp-mountd stats` connects, then prints a table or the JSON.
use serde::{Deserialize, Serialize};

use mount_xdp::xsk::XskStatistics;

pub mod calls;
pub mod latency;
pub mod procs;
pub mod server;

/// Where a daemon serving `port` puts its stats socket unless told otherwise.
pub fn default_socket_path(port: u16) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/run/xdp-mountd/{port}.sock"))
}

/// Everything `stats` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The MOUNT port.
    pub port: u16,
    /// The AF_XDP data path, when XDP is on.
    pub xdp: Option<XdpReport>,
    /// Calls per procedure and transport.
    pub procedures: Vec<ProcRow>,
    /// The kernel-stack listeners' event counters, by name.
    pub kernel: Vec<(String, u64)>,
    /// The mount list's caps and what they refused, by name.
    #[serde(default)]
    pub mount_list: Vec<(String, u64)>,
    /// Gateway mode (`--upstream`), when on.
    #[serde(default)]
    pub upstream: Option<crate::upstream::UpstreamReport>,
    /// Cluster mode (`--cluster`), when on.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterReport>,
    /// Times our rpcbind registrations were found missing and restored.
    #[serde(default)]
    pub rpcbind_restored: u64,
    /// Calls by path, procedure, version and outcome (only the non-zero ones).
    #[serde(default)]
    pub calls: Vec<CallCount>,
    /// The export table.
    #[serde(default)]
    pub exports: ExportsReport,
    /// Entries in the mount list (what DUMP reports).
    #[serde(default)]
    pub mount_list_entries: u64,
    /// The daemon's effective capabilities (lower-case `cap_*` names).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// Calls counted under one key on one path.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CallCount {
    /// `afxdp`, `udp` (kernel socket) or `tcp`.
    pub path: String,
    /// Procedure name.
    pub proc: String,
    /// MOUNT version (`1`, `2`, `3`, `other`).
    pub version: String,
    /// Outcome (see [`calls::STATUS_NAMES`]).
    pub status: String,
    /// How many.
    pub count: u64,
}

/// The export table's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExportsReport {
    /// Exports in the current table.
    pub loaded: u64,
    /// Successful reloads (SIGHUP).
    pub reloads: u64,
    /// Failed reloads (the previous table stayed in force).
    pub reload_failures: u64,
    /// How many tables have been published (1 at start, +1 per successful reload).
    pub generation: u64,
}

/// The XDP program and the AF_XDP sockets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct XdpReport {
    /// Interface the program is attached to.
    pub iface: String,
    /// native or generic.
    pub mode: String,
    /// The program's counters (summed over CPUs), by name.
    pub program: Vec<(String, u64)>,
    /// One entry per AF_XDP socket.
    pub queues: Vec<QueueReport>,
    /// Per call, the time its RX batch took to be answered (summed over the queues).
    #[serde(default)]
    pub latency: latency::LatencyReport,
    /// The kernel's run accounting of the program; None when it could not be read (the
    /// program detached, or the info call failed: stats never fail for it).
    #[serde(default)]
    pub program_runs: Option<ProgramRunsReport>,
}

/// The XDP program's runs as the kernel accounts them (`bpf_prog_info`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProgramRunsReport {
    /// Runs counted (only while `kernel.bpf_stats_enabled` is 1).
    pub runs: u64,
    /// Their summed run time, ns (the kernel's sched_clock around each run included).
    pub run_time_ns: u64,
    /// `kernel.bpf_stats_enabled` when the report was built (None: unreadable).
    pub bpf_stats_enabled: Option<bool>,
}

impl ProgramRunsReport {
    /// One line for the text table.
    pub fn to_line(&self) -> String {
        let per_run = if self.runs > 0 {
            format!("{:.1} ns/run", self.run_time_ns as f64 / self.runs as f64)
        } else {
            "– ns/run".to_owned()
        };
        let state = match self.bpf_stats_enabled {
            Some(true) => "counting: kernel.bpf_stats_enabled=1",
            Some(false) => "not counting: kernel.bpf_stats_enabled=0",
            None => "kernel.bpf_stats_enabled unreadable",
        };
        format!(
            "XDP program runs: {} in {} ns ({per_run}; {state})",
            self.runs, self.run_time_ns
        )
    }
}

/// One queue's socket and worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueReport {
    /// The rx queue index.
    pub queue: u32,
    /// The core the worker is pinned to, if pinning worked.
    pub core: Option<usize>,
    /// "zero-copy" or "copy".
    pub bind_mode: String,
    /// Frames received.
    pub rx: u64,
    /// Replies sent through the TX ring.
    pub tx: u64,
    /// Frames answered with nothing (not a valid datagram, not a call, ...).
    pub dropped: u64,
    /// Replies sent through the kernel UDP socket instead (larger than the MTU, or calls
    /// to a broadcast/multicast address).
    pub via_kernel: u64,
    /// Calls handed to the name-lookup thread (answered through the kernel socket).
    pub name_lookups: u64,
    /// Replies whose list was truncated to the UDP reply limit.
    pub truncated: u64,
    /// getsockopt(XDP_STATISTICS), when readable.
    pub xsk: Option<XskStatistics>,
    /// Rounds that took calls off the RX ring.
    #[serde(default)]
    pub batches: u64,
    /// poll() calls (the worker slept waiting for RX).
    #[serde(default)]
    pub polls: u64,
    /// sendto() calls (TX kicks).
    #[serde(default)]
    pub tx_kicks: u64,
    /// recvfrom() calls (fill-ring wakeups).
    #[serde(default)]
    pub fill_kicks: u64,
    /// recvfrom() calls that busy-polled the queue.
    #[serde(default)]
    pub busy_polls: u64,
}

/// Calls of one procedure by path.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcRow {
    /// Procedure name (null, mnt, ..., other).
    pub name: String,
    /// Answered from the AF_XDP workers.
    pub afxdp: u64,
    /// Through the kernel UDP socket.
    pub udp: u64,
    /// Through TCP.
    pub tcp: u64,
    /// Answered by the XDP program itself (XDP_TX, `--xdp-answers on`); absent in the
    /// reports of older daemons.
    #[serde(default)]
    pub xdp_tx: u64,
}

impl Report {
    /// The report as an aligned text table.
    pub fn to_table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "xdp-mountd on port {}", self.port);
        let caps = if self.capabilities.is_empty() {
            "none".to_owned()
        } else {
            self.capabilities.join(",")
        };
        let _ = writeln!(s, "capabilities: {caps}");
        let e = &self.exports;
        let _ = writeln!(
            s,
            "exports: {} loaded, generation {}, {} reloads, {} failed; mount list: {} entries",
            e.loaded, e.generation, e.reloads, e.reload_failures, self.mount_list_entries
        );
        match &self.xdp {
            None => {
                let _ = writeln!(s, "XDP: off (kernel sockets only)");
            }
            Some(x) => {
                let _ = writeln!(s, "XDP: {} mode on {}", x.mode, x.iface);
                let _ = writeln!(
                    s,
                    "\n{:>5} {:>4} {:>9} {:>10} {:>10} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                    "queue", "core", "bind", "rx", "tx", "dropped", "kernel", "names", "trunc",
                    "xsk_rxdrop", "rx_full", "fill_empty", "tx_inval", "batches", "polls", "kicks"
                );
                for q in &x.queues {
                    let core = q.core.map_or("-".to_owned(), |c| c.to_string());
                    let xsk = q.xsk.unwrap_or_default();
                    let _ = writeln!(
                        s,
                        "{:>5} {:>4} {:>9} {:>10} {:>10} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                        q.queue,
                        core,
                        q.bind_mode,
                        q.rx,
                        q.tx,
                        q.dropped,
                        q.via_kernel,
                        q.name_lookups,
                        q.truncated,
                        xsk.rx_dropped,
                        xsk.rx_ring_full,
                        xsk.rx_fill_ring_empty_descs,
                        xsk.tx_invalid_descs,
                        q.batches,
                        q.polls,
                        q.tx_kicks + q.fill_kicks + q.busy_polls
                    );
                }
                let _ = writeln!(s, "\nXDP program counters:");
                for (name, v) in &x.program {
                    let _ = writeln!(s, "  {name:<20} {v:>12}");
                }
                if let Some(runs) = &x.program_runs {
                    let _ = writeln!(s, "{}", runs.to_line());
                }
            }
        }
        let _ = writeln!(
            s,
            "\n{:<10} {:>12} {:>12} {:>12} {:>12}",
            "procedure", "xdp_tx", "afxdp", "kernel_udp", "tcp"
        );
        for p in &self.procedures {
            let _ = writeln!(
                s,
                "{:<10} {:>12} {:>12} {:>12} {:>12}",
                p.name, p.xdp_tx, p.afxdp, p.udp, p.tcp
            );
        }
        for (title, rows) in [
            ("kernel listeners", &self.kernel),
            ("mount list", &self.mount_list),
        ] {
            if !rows.is_empty() {
                let _ = writeln!(s, "\n{title}:");
                for (name, v) in rows {
                    let _ = writeln!(s, "  {name:<20} {v:>12}");
                }
            }
        }
        if let Some(up) = &self.upstream {
            let _ = write!(s, "\n{}", up.to_lines());
        }
        if let Some(cluster) = &self.cluster {
            let _ = write!(s, "\n{}", cluster.to_lines());
        }
        let _ = writeln!(
            s,
            "\nrpcbind registrations restored: {}",
            self.rpcbind_restored
        );
        s
    }
}

/// Procedure rows from the three paths' call counts (one entry per [`calls::CALL_SLOTS`]).
pub fn proc_rows(afxdp: &[u64], udp: &[u64], tcp: &[u64]) -> Vec<ProcRow> {
    let (afxdp, udp, tcp) = (
        calls::proc_totals(afxdp),
        calls::proc_totals(udp),
        calls::proc_totals(tcp),
    );
    procs::PROC_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| ProcRow {
            name: (*name).to_owned(),
            afxdp: afxdp[i],
            udp: udp[i],
            tcp: tcp[i],
            xdp_tx: 0,
        })
        .collect()
}

/// Puts the XDP program's own answers (its `answered_*` verdicts) into the procedure rows'
/// `xdp_tx` column.
pub fn add_program_answers(report: &mut Report) {
    let Some(xdp) = &report.xdp else {
        return;
    };
    let answered = |verdict: &str| {
        xdp.program
            .iter()
            .find(|(name, _)| name == verdict)
            .map_or(0, |(_, v)| *v)
    };
    for (proc_, counter) in [
        ("null", mount_ebpf::Counter::AnsweredNull),
        ("mnt", mount_ebpf::Counter::AnsweredMnt),
    ] {
        let n = answered(counter.name());
        if let Some(row) = report.procedures.iter_mut().find(|p| p.name == proc_) {
            row.xdp_tx = n;
        }
    }
}

/// The mount list's caps and refusals as name/value pairs.
pub fn mount_list_counters(list: &mount_proto::mountlist::MountList) -> Vec<(String, u64)> {
    use std::sync::atomic::Ordering::Relaxed;
    let limits = list.limits();
    let refused = list.refused();
    // The entry count itself is `Report::mount_list_entries`.
    [
        ("max_entries", limits.total),
        ("max_per_host", limits.per_host),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v as u64))
    .chain([
        ("refused_total_cap".to_owned(), refused.total.load(Relaxed)),
        (
            "refused_host_cap".to_owned(),
            refused.per_host.load(Relaxed),
        ),
    ])
    .collect()
}

/// The non-zero call counts of each path, with their names.
pub fn call_rows(paths: &[(&str, &[u64])]) -> Vec<CallCount> {
    let mut out = Vec::new();
    for (path, counts) in paths {
        for (slot, &count) in counts.iter().enumerate().filter(|(_, &n)| n > 0) {
            let key = calls::call_key(slot);
            out.push(CallCount {
                path: (*path).to_owned(),
                proc: key.proc.to_owned(),
                version: key.version.to_owned(),
                status: key.status.to_owned(),
                count,
            });
        }
    }
    out
}

/// The kernel listeners' counters as name/value pairs.
pub fn kernel_counters(c: &crate::socket::Counters) -> Vec<(String, u64)> {
    use std::sync::atomic::Ordering::Relaxed;
    [
        ("udp_replies", &c.udp_replies),
        ("udp_truncated", &c.udp_truncated),
        ("udp_dropped", &c.udp_dropped),
        ("name_lookups", &c.name_lookups),
        ("name_queue_full", &c.name_queue_full),
        ("upstream_waits", &c.upstream_waits),
        ("tcp_connections", &c.tcp_connections),
        ("tcp_closed", &c.tcp_closed),
        ("tcp_refused", &c.tcp_refused),
        ("tcp_refused_host", &c.tcp_refused_host),
        ("tcp_evicted", &c.tcp_evicted),
        ("tcp_record_timeout", &c.tcp_record_timeout),
        ("tcp_oversize", &c.tcp_oversize),
        ("tcp_replies", &c.tcp_replies),
        ("udp_rate_limited_source", &c.udp_rate_limited_source),
        ("udp_rate_limited_global", &c.udp_rate_limited_global),
        ("tcp_rate_delayed_source", &c.tcp_rate_delayed_source),
        ("tcp_rate_delayed_global", &c.tcp_rate_delayed_global),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.load(Relaxed)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_queues_and_procedures() {
        let report = Report {
            port: 644,
            xdp: Some(XdpReport {
                iface: "veth0".into(),
                mode: "native".into(),
                program: vec![("redirected".into(), 42)],
                program_runs: Some(ProgramRunsReport {
                    runs: 40,
                    run_time_ns: 1000,
                    bpf_stats_enabled: Some(true),
                }),
                queues: vec![QueueReport {
                    queue: 1,
                    core: Some(0),
                    bind_mode: "copy".into(),
                    rx: 40,
                    tx: 39,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            procedures: vec![ProcRow {
                name: "mnt".into(),
                afxdp: 3,
                udp: 0,
                tcp: 1,
                xdp_tx: 0,
            }],
            kernel: vec![("tcp_replies".into(), 9)],
            mount_list: vec![("refused_host_cap".into(), 5)],
            upstream: None,
            cluster: None,
            rpcbind_restored: 0,
            capabilities: vec!["cap_bpf".into(), "cap_net_admin".into()],
            ..Default::default()
        };
        let t = report.to_table();
        assert!(
            t.contains("mount list:") && t.contains("refused_host_cap"),
            "{t}"
        );
        assert!(t.contains("native mode on veth0"), "{t}");
        assert!(t.contains("redirected"), "{t}");
        assert!(
            t.lines().any(|l| l
                .split_whitespace()
                .take(6)
                .eq(["1", "0", "copy", "40", "39", "0"])),
            "{t}"
        );
        assert!(t
            .lines()
            .any(|l| l.split_whitespace().eq(["mnt", "0", "3", "0", "1"])));
        assert!(t.contains("capabilities: cap_bpf,cap_net_admin"), "{t}");
        assert!(
            t.contains("XDP program runs: 40 in 1000 ns (25.0 ns/run; counting"),
            "{t}"
        );
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["xdp"]["program_runs"]["runs"], 40);
        assert_eq!(value["xdp"]["program_runs"]["run_time_ns"], 1000);
    }

    #[test]
    fn program_runs_line_says_whether_the_kernel_counts() {
        let mut r = ProgramRunsReport {
            runs: 0,
            run_time_ns: 0,
            bpf_stats_enabled: Some(false),
        };
        assert_eq!(
            r.to_line(),
            "XDP program runs: 0 in 0 ns (– ns/run; not counting: kernel.bpf_stats_enabled=0)"
        );
        r.bpf_stats_enabled = None;
        assert!(r.to_line().ends_with("unreadable)"), "{}", r.to_line());
        // An older daemon's XDP report (no program_runs) still reads.
        let x: XdpReport =
            serde_json::from_str(r#"{"iface":"v","mode":"native","program":[],"queues":[]}"#)
                .unwrap();
        assert_eq!(x.program_runs, None);
    }

    #[test]
    fn program_answers_fill_the_null_row() {
        let mut report = Report {
            xdp: Some(XdpReport {
                program: vec![("seen".into(), 9), ("answered_null".into(), 7)],
                ..Default::default()
            }),
            procedures: proc_rows(
                &[0; calls::CALL_SLOTS],
                &[0; calls::CALL_SLOTS],
                &[0; calls::CALL_SLOTS],
            ),
            ..Default::default()
        };
        add_program_answers(&mut report);
        let null = report.procedures.iter().find(|p| p.name == "null").unwrap();
        assert_eq!((null.xdp_tx, null.afxdp), (7, 0));
        assert!(report
            .to_table()
            .lines()
            .any(|l| l.split_whitespace().eq(["null", "7", "0", "0", "0"])));
        // An older daemon's JSON (no xdp_tx) still reads.
        let row: ProcRow =
            serde_json::from_str(r#"{"name":"mnt","afxdp":1,"udp":2,"tcp":3}"#).unwrap();
        assert_eq!(row.xdp_tx, 0);
    }
}
