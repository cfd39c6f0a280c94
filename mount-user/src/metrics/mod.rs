//! `/metrics` in the Prometheus text format (0.0.4), rendered from a stats [`Report`] at
//! scrape time: the data paths keep their own lock-free counters and nothing on the hot
//! path knows about Prometheus.
//!
//! Encoding uses the `prometheus` crate (TiKV's, MIT/Apache-2.0) with its protobuf
//! feature off: its `TextEncoder` writes the classic text format that `promtool check
//! metrics` and every Prometheus version read. The metric families are built from the
//! report on each scrape rather than registered, because every value already lives in a
//! counter the daemon owns.
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::TextEncoder;

use crate::stats::{calls, Report};

pub mod http;

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
        // Counters above 2^53 lose precision as f64, which Prometheus stores anyway.
        let value = value as f64;
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
    xdp_families(report, &mut out);
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

fn xdp_families(report: &Report, out: &mut Vec<MetricFamily>) {
    let Some(xdp) = &report.xdp else {
        return;
    };
    let mut seen = Family::counter(
        "xdp_frames_seen_total",
        "Frames the XDP program ran on (the sum of xdp_mountd_xdp_frames_total).",
    );
    let mut verdicts = Family::counter(
        "xdp_frames_total",
        "Frames by the XDP program's verdict: redirected into AF_XDP, passed to the \
         kernel and why, dropped over a rate limit, or answered by the program itself.",
    );
    let mut answers = Family::counter(
        "xdp_answers_total",
        "MOUNT calls the XDP program answered itself with XDP_TX (--xdp-answers on), by \
         procedure; not in xdp_mountd_calls_total, which counts the workers and sockets.",
    );
    for p in report
        .procedures
        .iter()
        .filter(|p| p.name == "null" || p.name == "mnt")
    {
        answers.sample(&[("proc", &p.name)], p.xdp_tx);
    }
    push(out, answers);
    for (name, v) in &xdp.program {
        if name == "seen" {
            seen.sample(&[], *v);
        } else {
            verdicts.sample(&[("verdict", name)], *v);
        }
    }
    push(out, seen);
    push(out, verdicts);
    if xdp.latency.count() > 0 {
        out.push(latency_family(&xdp.latency));
    }

    type Field = fn(&crate::stats::QueueReport) -> u64;
    let per_queue: [(&str, &str, Field); 11] = [
        ("afxdp_rx_frames_total", "Frames received on the AF_XDP socket.", |q| q.rx),
        ("afxdp_tx_frames_total", "Replies sent through the AF_XDP TX ring.", |q| q.tx),
        ("afxdp_dropped_frames_total", "Frames answered with nothing.", |q| q.dropped),
        (
            "afxdp_via_kernel_total",
            "Replies sent through the kernel UDP socket instead (larger than the MTU, or to a broadcast/multicast call).",
            |q| q.via_kernel,
        ),
        (
            "afxdp_name_lookups_total",
            "Calls handed to the host-name lookup thread.",
            |q| q.name_lookups,
        ),
        (
            "afxdp_truncated_replies_total",
            "Replies whose list was cut to the UDP reply limit.",
            |q| q.truncated,
        ),
        (
            "afxdp_batches_total",
            "Rounds that took calls off the RX ring.",
            |q| q.batches,
        ),
        (
            "afxdp_polls_total",
            "poll() calls: the worker slept waiting for RX.",
            |q| q.polls,
        ),
        ("afxdp_tx_kicks_total", "sendto() calls: TX kicks.", |q| q.tx_kicks),
        (
            "afxdp_fill_kicks_total",
            "recvfrom() calls: fill-ring wakeups.",
            |q| q.fill_kicks,
        ),
        (
            "afxdp_busy_polls_total",
            "recvfrom() calls that busy-polled the queue.",
            |q| q.busy_polls,
        ),
    ];
    for (name, help, field) in per_queue {
        let mut f = Family::counter(name, help);
        for q in &xdp.queues {
            f.sample(&[("queue", &q.queue.to_string())], field(q));
        }
        push(out, f);
    }

    type XskField = fn(&mount_xdp::xsk::XskStatistics) -> u64;
    let socket_stats: [(&str, &str, XskField); 6] = [
        ("xsk_rx_dropped_total", "XDP_STATISTICS rx_dropped.", |s| {
            s.rx_dropped
        }),
        (
            "xsk_rx_invalid_descs_total",
            "XDP_STATISTICS rx_invalid_descs.",
            |s| s.rx_invalid_descs,
        ),
        (
            "xsk_tx_invalid_descs_total",
            "XDP_STATISTICS tx_invalid_descs.",
            |s| s.tx_invalid_descs,
        ),
        (
            "xsk_rx_ring_full_total",
            "XDP_STATISTICS rx_ring_full.",
            |s| s.rx_ring_full,
        ),
        (
            "xsk_rx_fill_ring_empty_total",
            "XDP_STATISTICS rx_fill_ring_empty_descs.",
            |s| s.rx_fill_ring_empty_descs,
        ),
        (
            "xsk_tx_ring_empty_total",
            "XDP_STATISTICS tx_ring_empty_descs.",
            |s| s.tx_ring_empty_descs,
        ),
    ];
    for (name, help, field) in socket_stats {
        let mut f = Family::counter(name, help);
        for q in &xdp.queues {
            if let Some(s) = &q.xsk {
                f.sample(&[("queue", &q.queue.to_string())], field(s));
            }
        }
        push(out, f);
    }
}

/// The AF_XDP answer-time histogram (classic buckets, cumulative, in seconds).
fn latency_family(latency: &crate::stats::latency::LatencyReport) -> MetricFamily {
    let mut histogram = Histogram::default();
    histogram.set_sample_count(latency.count());
    histogram.set_sample_sum(latency.sum_seconds);
    histogram.set_bucket(
        latency
            .cumulative()
            .into_iter()
            .map(|(bound, count)| {
                let mut b = Bucket::default();
                b.set_upper_bound(bound);
                b.set_cumulative_count(count);
                b
            })
            .collect(),
    );
    let mut metric = Metric::default();
    metric.set_histogram(histogram);
    let mut family = Family::new(
        "afxdp_answer_duration_seconds",
        "Per call answered through AF_XDP, the time its RX batch took from the ring to \
         the TX kick (an upper bound of the call's time inside the daemon).",
        MetricType::HISTOGRAM,
    );
    family.inner.mut_metric().push(metric);
    family.inner
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
        ] {
            assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
        }
        // Every sample's name carries the prefix; no per-client labels exist at all.
        for l in body.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("xdp_mountd_"), "{l}");
        }
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
