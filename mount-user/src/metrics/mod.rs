//! `/metrics` in the Prometheus text format (0.0.4), rendered from a stats [`Report`] at
//! scrape time: the data paths keep their own lock-free counters and nothing on the hot
//! path knows about Prometheus.
//!
//! Encoding uses the `prometheus` crate (TiKV's, MIT/Apache-2.0) with its protobuf
//! feature off: its `TextEncoder` writes the classic text format that `promtool check
//! metrics` and every Prometheus version read. The metric families are built from the
//! report on each scrape rather than registered, because every value already lives in a
//! counter the daemon owns.
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::TextEncoder;

use crate::stats::{calls, Report};

pub mod http;
mod xdp;

/// The Content-Type of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// One family under construction: name, help, type and samples.
struct Family {
    inner: MetricFamily,
}

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Self {
        let mut inner = MetricFamily::default();
        inner.set_name(format!("xdp_mountd_{name}"));
        inner.set_help(help.to_owned());
        inner.set_field_type(kind);
        Self { inner }
    }

    fn counter(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::COUNTER)
    }

    fn gauge(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricType::GAUGE)
    }

    /// Adds one sample with `labels`.
    fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        // Counters above 2^53 lose precision as f64, which Prometheus stores anyway.
        self.sample_f64(labels, value as f64)
    }

    /// Adds one sample with `labels` and a fractional value (e.g. seconds).
    fn sample_f64(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let mut metric = Metric::default();
        metric.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut pair = LabelPair::default();
                    pair.set_name((*k).to_owned());
                    pair.set_value((*v).to_owned());
                    pair
                })
                .collect(),
        );
        match self.inner.get_field_type() {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                metric.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                metric.set_gauge(g);
            }
        }
        self.inner.mut_metric().push(metric);
        self
    }
}

/// Appends `family` to `out` unless it has no samples (the text format cannot say
/// "a family with nothing in it").
fn push(out: &mut Vec<MetricFamily>, family: Family) {
    if !family.inner.get_metric().is_empty() {
        out.push(family.inner);
    }
}

/// The report's metric families.
pub fn families(report: &Report) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    call_families(report, &mut out);
    xdp::families(report, &mut out);
    service_families(report, &mut out);
    cluster_families(report, &mut out);
    out
}

/// Cluster mode's families (`xdp_mountd_cluster_*`, labelled with the node), when on.
fn cluster_families(report: &Report, out: &mut Vec<MetricFamily>) {
    let Some(c) = &report.cluster else {
        return;
    };
    let node = [("node", c.node.as_str())];
    let scalars = [
        (
            MetricType::GAUGE,
            "cluster_generation",
            "Table generation served: the etcd revision of the exports set compiled.",
            c.generation,
        ),
        (
            MetricType::GAUGE,
            "cluster_etcd_connected",
            "1 while etcd answers.",
            u64::from(c.etcd_connected),
        ),
        (
            MetricType::GAUGE,
            "cluster_pending_ops",
            "Mount-list writes not yet in etcd.",
            c.pending_ops,
        ),
        (
            MetricType::GAUGE,
            "cluster_lag_ms",
            "Age of the oldest mount-list write not yet in etcd, ms.",
            c.lag_ms,
        ),
        (
            MetricType::GAUGE,
            "cluster_mounts",
            "Entries in the cluster-wide mount list.",
            c.mounts,
        ),
        (
            MetricType::COUNTER,
            "cluster_dropped_ops_total",
            "Mount-list ops dropped because the queue was full.",
            c.dropped_ops,
        ),
        (
            MetricType::COUNTER,
            "cluster_resyncs_total",
            "Full reloads from etcd (each reconnect, a compacted watch).",
            c.resyncs,
        ),
        (
            MetricType::COUNTER,
            "cluster_etcd_errors_total",
            "etcd calls that failed or timed out.",
            c.etcd_errors,
        ),
        (
            MetricType::COUNTER,
            "cluster_handles_adopted_total",
            "Gateway handles taken from other nodes instead of asking upstream.",
            c.handles_adopted,
        ),
    ];
    for (kind, name, help, v) in scalars {
        let mut f = Family::new(name, help, kind);
        f.sample(&node, v);
        push(out, f);
    }
}

/// The report as a `/metrics` body.
pub fn render(report: &Report) -> anyhow::Result<String> {
    let mut body = String::new();
    TextEncoder::new().encode_utf8(&families(report), &mut body)?;
    Ok(body)
}

fn call_families(report: &Report, out: &mut Vec<MetricFamily>) {
    let mut calls_total = Family::counter(
        "calls_total",
        "MOUNT calls answered, by procedure, MOUNT version, data path (afxdp, udp, tcp) \
         and outcome (ok, a MOUNT status, an RPC error, no_reply, deferred).",
    );
    let mut errors = Family::counter(
        "rpc_errors_total",
        "Calls refused at the RPC level (the procedure did not run), by kind and path.",
    );
    for c in &report.calls {
        calls_total.sample(
            &[
                ("proc", &c.proc),
                ("version", &c.version),
                ("path", &c.path),
                ("status", &c.status),
            ],
            c.count,
        );
    }
    // Summed over procedures and versions: one sample per kind and path.
    let mut by_kind: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for c in report
        .calls
        .iter()
        .filter(|c| calls::is_rpc_error(&c.status))
    {
        *by_kind.entry((&c.status, &c.path)).or_default() += c.count;
    }
    for ((kind, path), n) in by_kind {
        errors.sample(&[("kind", kind), ("path", path)], n);
    }
    push(out, calls_total);
    push(out, errors);
}

fn service_families(report: &Report, out: &mut Vec<MetricFamily>) {
    let e = &report.exports;
    let scalars = [
        (
            MetricType::GAUGE,
            "exports_loaded",
            "Exports in the current table.",
            e.loaded,
        ),
        (
            MetricType::GAUGE,
            "exports_generation",
            "Export tables published since start (1, +1 per successful reload).",
            e.generation,
        ),
        (
            MetricType::GAUGE,
            "mount_list_entries",
            "Entries in the mount list (what DUMP reports).",
            report.mount_list_entries,
        ),
        (
            MetricType::COUNTER,
            "exports_reloads_total",
            "Successful exports reloads.",
            e.reloads,
        ),
        (
            MetricType::COUNTER,
            "exports_reload_failures_total",
            "Failed exports reloads (the previous table stayed in force).",
            e.reload_failures,
        ),
    ];
    for (kind, name, help, v) in scalars {
        let mut f = Family::new(name, help, kind);
        f.sample(&[], v);
        push(out, f);
    }
    let kernel = |name: &str| {
        report
            .kernel
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    };
    let mut open = Family::gauge("tcp_connections_open", "TCP connections open now.");
    open.sample(
        &[],
        kernel("tcp_connections").saturating_sub(kernel("tcp_closed")),
    );
    push(out, open);
    for (name, help) in [
        ("tcp_connections", "TCP connections accepted and served."),
        (
            "tcp_refused",
            "TCP connections closed at once (connection cap).",
        ),
        (
            "tcp_oversize",
            "TCP connections closed for an oversized record.",
        ),
        ("udp_dropped", "Kernel UDP datagrams answered with nothing."),
        (
            "udp_truncated",
            "Kernel UDP replies with a list cut to fit.",
        ),
        (
            "name_queue_full",
            "Calls dropped: the name-lookup queue was full.",
        ),
    ] {
        let mut f = Family::counter(&format!("{name}_total"), help);
        f.sample(&[], kernel(name));
        push(out, f);
    }
    let mut limited = Family::counter(
        "kernel_rate_limited_total",
        "Calls on the kernel paths over a rate limit (UDP: dropped; TCP: delayed), by \
         path and limit (source: --rate-limit, global: --rate-limit-global). The XDP \
         program's drops are among its frame verdicts (dropped_rate_source, \
         dropped_rate_global).",
    );
    for (path, limit, name) in [
        ("udp", "source", "udp_rate_limited_source"),
        ("udp", "global", "udp_rate_limited_global"),
        ("tcp", "source", "tcp_rate_delayed_source"),
        ("tcp", "global", "tcp_rate_delayed_global"),
    ] {
        limited.sample(&[("path", path), ("limit", limit)], kernel(name));
    }
    push(out, limited);
    let mut caps = Family::gauge(
        "capability",
        "1 for each capability in the daemon's effective set.",
    );
    for name in &report.capabilities {
        caps.sample(&[("name", name)], 1);
    }
    push(out, caps);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{CallCount, QueueReport, XdpReport};

    fn report() -> Report {
        let call = |path: &str, proc: &str, status: &str, count| CallCount {
            path: path.into(),
            proc: proc.into(),
            version: "3".into(),
            status: status.into(),
            count,
        };
        Report {
            port: 644,
            xdp: Some(XdpReport {
                iface: "veth0".into(),
                mode: "native".into(),
                program: vec![("seen".into(), 10), ("redirected".into(), 9)],
                latency: crate::stats::latency::LatencyReport {
                    buckets: vec![4, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    sum_seconds: 1.4e-5,
                },
                queues: vec![QueueReport {
                    queue: 0,
                    rx: 9,
                    tx: 9,
                    xsk: Some(Default::default()),
                    ..Default::default()
                }],
                program_runs: Some(crate::stats::ProgramRunsReport {
                    runs: 12,
                    run_time_ns: 1_500_000_000,
                    bpf_stats_enabled: Some(true),
                }),
            }),
            procedures: vec![crate::stats::ProcRow {
                name: "null".into(),
                xdp_tx: 1,
                ..Default::default()
            }],
            calls: vec![
                call("afxdp", "mnt", "ok", 7),
                call("udp", "mnt", "garbage_args", 2),
                call("tcp", "null", "garbage_args", 1),
            ],
            kernel: vec![("tcp_connections".into(), 5), ("tcp_closed".into(), 3)],
            capabilities: vec!["cap_bpf".into()],
            ..Default::default()
        }
    }

    #[test]
    fn renders_names_labels_and_values() {
        let body = render(&report()).unwrap();
        for line in [
            r#"xdp_mountd_calls_total{proc="mnt",version="3",path="afxdp",status="ok"} 7"#,
            r#"xdp_mountd_rpc_errors_total{kind="garbage_args",path="udp"} 2"#,
            r#"xdp_mountd_rpc_errors_total{kind="garbage_args",path="tcp"} 1"#,
            r#"xdp_mountd_xdp_frames_total{verdict="redirected"} 9"#,
            "xdp_mountd_xdp_frames_seen_total 10",
            r#"xdp_mountd_xdp_answers_total{proc="null"} 1"#,
            r#"xdp_mountd_afxdp_rx_frames_total{queue="0"} 9"#,
            r#"xdp_mountd_xsk_rx_ring_full_total{queue="0"} 0"#,
            "xdp_mountd_tcp_connections_open 2",
            "xdp_mountd_exports_generation 0",
            r#"xdp_mountd_capability{name="cap_bpf"} 1"#,
            "# TYPE xdp_mountd_calls_total counter",
            r#"xdp_mountd_afxdp_answer_duration_seconds_bucket{le="0.000002"} 9"#,
            r#"xdp_mountd_afxdp_answer_duration_seconds_bucket{le="+Inf"} 9"#,
            "xdp_mountd_afxdp_answer_duration_seconds_count 9",
            "xdp_mountd_xdp_program_runs_total 12",
            "xdp_mountd_xdp_program_run_seconds_total 1.5",
            "# TYPE xdp_mountd_xdp_program_run_seconds_total counter",
        ] {
            assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
        }
        // Every sample's name carries the prefix; no per-client labels exist at all.
        for l in body.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("xdp_mountd_"), "{l}");
        }
    }

    #[test]
    fn program_run_help_says_when_the_kernel_counts() {
        let body = render(&report()).unwrap();
        for name in ["xdp_program_runs_total", "xdp_program_run_seconds_total"] {
            let help = body
                .lines()
                .find(|l| l.starts_with(&format!("# HELP xdp_mountd_{name} ")))
                .unwrap_or_else(|| panic!("no HELP for {name} in\n{body}"));
            assert!(help.contains("kernel.bpf_stats_enabled=1"), "{help}");
        }
        // Unreadable run accounting: the families are absent, not zero.
        let mut r = report();
        if let Some(x) = r.xdp.as_mut() {
            x.program_runs = None;
        }
        assert!(!render(&r).unwrap().contains("xdp_program_run"));
    }

    #[test]
    fn without_xdp_there_are_no_xdp_families() {
        let mut r = report();
        r.xdp = None;
        let body = render(&r).unwrap();
        assert!(!body.contains("xdp_mountd_xdp_"), "{body}");
        assert!(!body.contains("xdp_mountd_afxdp_"), "{body}");
    }

    #[test]
    fn cluster_families_only_in_cluster_mode() {
        let mut r = report();
        assert!(!render(&r).unwrap().contains("xdp_mountd_cluster_"));
        r.cluster = Some(crate::cluster::ClusterReport {
            node: "a".into(),
            generation: 9,
            etcd_connected: true,
            dropped_ops: 3,
            ..Default::default()
        });
        let body = render(&r).unwrap();
        assert!(
            body.contains("xdp_mountd_cluster_generation{node=\"a\"} 9"),
            "{body}"
        );
        assert!(
            body.contains("xdp_mountd_cluster_etcd_connected{node=\"a\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("xdp_mountd_cluster_dropped_ops_total{node=\"a\"} 3"),
            "{body}"
        );
    }
}
