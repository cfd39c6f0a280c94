//! The XDP program's and the AF_XDP data path's families (`xdp_mountd_xdp_*`,
//! `xdp_mountd_afxdp_*`, `xdp_mountd_xsk_*`): present only when XDP is on.
use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};

use super::{push, Family};
use crate::stats::{ProgramRunsReport, Report};

/// The XDP program's and the AF_XDP sockets' families, when XDP is on.
pub(super) fn families(report: &Report, out: &mut Vec<MetricFamily>) {
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
    if let Some(runs) = &xdp.program_runs {
        program_run_families(runs, out);
    }
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

/// The kernel's run accounting of the program (`bpf_prog_info`), which only moves while
/// `kernel.bpf_stats_enabled` is 1: both HELP lines say so, since a flat counter would
/// otherwise read as an idle program.
fn program_run_families(runs: &ProgramRunsReport, out: &mut Vec<MetricFamily>) {
    let mut count = Family::counter(
        "xdp_program_runs_total",
        "Runs of the XDP program as the kernel accounts them; counts only while \
         kernel.bpf_stats_enabled=1.",
    );
    count.sample(&[], runs.runs);
    push(out, count);
    let mut time = Family::counter(
        "xdp_program_run_seconds_total",
        "Time spent in the XDP program as the kernel accounts it (its sched_clock around \
         each run included); counts only while kernel.bpf_stats_enabled=1.",
    );
    time.sample_f64(&[], runs.run_time_ns as f64 / 1e9);
    push(out, time);
}
