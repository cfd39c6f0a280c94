//! The run's outcome: the JSON object `cargo xtask bench` reads (field names are a
//! contract, see docs/storm-json.md) and the human summary.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::engine::Stats;
use super::validate::Wrong;

/// Latency percentiles of right replies, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
}

/// Per-procedure counts (keyed by the mix label, e.g. `mnt3`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcReport {
    /// Calls sent.
    pub sent: u64,
    /// Right replies.
    pub answered: u64,
    /// Wrong replies.
    pub wrong: u64,
}

/// Generator CPU use over the run (getrusage of this process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuReport {
    /// User + system CPU seconds of this process during the run.
    pub cpu_s: f64,
    /// Of which in the kernel.
    pub sys_s: f64,
    /// CPU microseconds per answered call.
    pub us_per_call: f64,
}

/// The whole report, one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// HOST:PORT called.
    pub target: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// `socket` or `afxdp`.
    pub io: String,
    /// `closed` or `open`.
    pub mode: String,
    /// Outstanding calls at most (closed loop: the window).
    pub window: u32,
    /// Open loop: calls per second asked for; null in a closed loop.
    pub rate: Option<f64>,
    /// Measured time (warmup excluded, drain excluded), seconds.
    pub duration_s: f64,
    /// Measured calls sent.
    pub sent: u64,
    /// Right replies.
    pub answered: u64,
    /// `sent - answered - wrong` after the drain.
    pub lost: u64,
    /// Replies with an unexpected xid, accept state, mount status or body.
    pub wrong: u64,
    /// `answered / duration_s`.
    pub calls_per_sec: f64,
    /// Latency of right replies.
    pub latency_us: Latency,
    /// Wrong replies by reason (every reason present, zeros included).
    pub wrong_by_reason: BTreeMap<String, u64>,
    /// Per mix entry.
    pub per_proc: BTreeMap<String, ProcReport>,
    /// Simulated clients (source ports / connections).
    pub clients: u32,
    /// Generator threads.
    pub threads: u32,
    /// Source addresses used.
    pub source_addrs: Vec<String>,
    /// Warmup before measuring, seconds.
    pub warmup_s: f64,
    /// Drain after sending stopped, seconds.
    pub drain_s: f64,
    /// Why sending stopped: `count`, `duration` or `signal`.
    pub stopped_by: String,
    /// Replies that came after their call timed out (counted as lost).
    pub late: u64,
    /// Calls given up (timeout or end of drain).
    pub timeouts: u64,
    /// Open loop: calls due while the window was full, not sent.
    pub skipped: u64,
    /// Calls the transport failed to send.
    pub send_errors: u64,
    /// The generator's own CPU use.
    pub generator_cpu: CpuReport,
    /// AF_XDP details (bind mode, queues), when `io` is `afxdp`.
    pub afxdp: Option<serde_json::Value>,
}

/// Settings echoed into the report.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// HOST:PORT.
    pub target: String,
    /// `udp`/`tcp`.
    pub transport: String,
    /// `socket`/`afxdp`.
    pub io: String,
    /// Open-loop rate.
    pub rate: Option<f64>,
    /// Window.
    pub window: u32,
    /// Clients.
    pub clients: u32,
    /// Threads.
    pub threads: u32,
    /// Source addresses.
    pub source_addrs: Vec<String>,
    /// Warmup seconds.
    pub warmup_s: f64,
    /// Mix labels by entry.
    pub labels: Vec<String>,
    /// CPU used.
    pub cpu: CpuReport,
    /// AF_XDP details.
    pub afxdp: Option<serde_json::Value>,
}

impl Report {
    /// Builds the report from merged statistics.
    pub fn new(info: RunInfo, stats: &Stats) -> Report {
        let secs = stats.measured.as_secs_f64();
        let h = &stats.latency_ns;
        let us = |ns: u64| ns as f64 / 1000.0;
        let latency = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: us(h.value_at_quantile(0.50)),
                p90: us(h.value_at_quantile(0.90)),
                p99: us(h.value_at_quantile(0.99)),
                p999: us(h.value_at_quantile(0.999)),
                max: us(h.max()),
                mean: h.mean() / 1000.0,
                min: us(h.min()),
            }
        };
        let wrong_by_reason = Wrong::ALL
            .iter()
            .map(|w| (w.as_str().to_owned(), stats.wrong_by_reason[w.index()]))
            .collect();
        let per_proc = info
            .labels
            .iter()
            .zip(&stats.per_entry)
            .map(|(label, e)| {
                (
                    label.clone(),
                    ProcReport {
                        sent: e.sent,
                        answered: e.answered,
                        wrong: e.wrong,
                    },
                )
            })
            .collect();
        let mut cpu = info.cpu;
        if stats.answered > 0 {
            cpu.us_per_call = cpu.cpu_s * 1e6 / stats.answered as f64;
        }
        Report {
            target: info.target,
            transport: info.transport,
            io: info.io,
            mode: if info.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .to_owned(),
            window: info.window,
            rate: info.rate,
            duration_s: secs,
            sent: stats.sent,
            answered: stats.answered,
            lost: stats.lost(),
            wrong: stats.wrong,
            calls_per_sec: if secs > 0.0 {
                stats.answered as f64 / secs
            } else {
                0.0
            },
            latency_us: latency,
            wrong_by_reason,
            per_proc,
            clients: info.clients,
            threads: info.threads,
            source_addrs: info.source_addrs,
            warmup_s: info.warmup_s,
            drain_s: stats.drained.as_secs_f64(),
            stopped_by: stats.stopped_by.as_str().to_owned(),
            late: stats.late,
            timeouts: stats.timeouts,
            skipped: stats.skipped,
            send_errors: stats.send_errors,
            generator_cpu: cpu,
            afxdp: info.afxdp,
        }
    }

    /// The JSON object (one line).
    pub fn to_json(&self) -> String {
        // Serialising plain numbers, strings and maps with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human summary (several lines).
    pub fn human(&self) -> String {
        let mut s = String::new();
        let rate = match self.rate {
            Some(r) => format!(
                "open loop at {r:.0} calls/s (at most {} outstanding)",
                self.window
            ),
            None => format!("closed loop, window {}", self.window),
        };
        let _ = writeln!(
            s,
            "storm {} over {}/{}: {rate}, {} client(s), {} thread(s)",
            self.target, self.transport, self.io, self.clients, self.threads
        );
        let _ = writeln!(
            s,
            "  {:.2} s measured (stopped by {}), {:.2} s drain",
            self.duration_s, self.stopped_by, self.drain_s
        );
        let _ = writeln!(
            s,
            "  sent {}  answered {}  wrong {}  lost {}  ({} late, {} timeouts, {} skipped, {} send errors)",
            self.sent,
            self.answered,
            self.wrong,
            self.lost,
            self.late,
            self.timeouts,
            self.skipped,
            self.send_errors
        );
        let _ = writeln!(s, "  {:.0} calls/s", self.calls_per_sec);
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "  latency µs: min {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            l.min, l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        for (name, p) in &self.per_proc {
            let _ = writeln!(
                s,
                "  {name:<8} sent {:<10} answered {:<10} wrong {}",
                p.sent, p.answered, p.wrong
            );
        }
        let reasons: Vec<String> = self
            .wrong_by_reason
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if !reasons.is_empty() {
            let _ = writeln!(s, "  wrong by reason: {}", reasons.join(", "));
        }
        let _ = writeln!(
            s,
            "  generator CPU {:.2} s ({:.2} s system), {:.2} µs per answered call",
            self.generator_cpu.cpu_s, self.generator_cpu.sys_s, self.generator_cpu.us_per_call
        );
        s
    }
}

/// CPU seconds (user + system, system) this process has used so far.
pub fn process_cpu() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (user, sys) = (tv(ru.ru_utime), tv(ru.ru_stime));
    (user + sys, sys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Report {
        let mut stats = Stats::new(2);
        stats.sent = 100;
        stats.answered = 90;
        stats.wrong = 4;
        stats.wrong_by_reason[Wrong::MountStatus.index()] = 4;
        stats.per_entry[0].sent = 60;
        stats.per_entry[0].answered = 56;
        stats.per_entry[1].sent = 40;
        for v in [10_000u64, 20_000, 30_000, 1_000_000] {
            stats.latency_ns.record(v).unwrap();
        }
        stats.measured = Duration::from_secs(2);
        let info = RunInfo {
            target: "10.0.0.1:644".into(),
            transport: "udp".into(),
            io: "socket".into(),
            rate: None,
            window: 64,
            clients: 4,
            threads: 1,
            labels: vec!["mnt3".into(), "null".into()],
            cpu: CpuReport {
                cpu_s: 0.9,
                sys_s: 0.5,
                us_per_call: 0.0,
            },
            ..RunInfo::default()
        };
        Report::new(info, &stats)
    }

    #[test]
    fn json_has_the_contract_fields() {
        let r = sample();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in [
            "target",
            "transport",
            "io",
            "mode",
            "window",
            "rate",
            "duration_s",
            "sent",
            "answered",
            "lost",
            "wrong",
            "calls_per_sec",
            "latency_us",
            "wrong_by_reason",
            "per_proc",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(v["latency_us"][key].is_number(), "latency_us.{key}");
        }
        assert_eq!(v["mode"], "closed");
        assert!(v["rate"].is_null());
        assert_eq!(v["sent"], 100);
        assert_eq!(v["lost"], 6, "sent - answered - wrong");
        assert_eq!(v["calls_per_sec"], 45.0, "answered / duration");
        assert_eq!(v["per_proc"]["mnt3"]["sent"], 60);
        assert_eq!(v["per_proc"]["mnt3"]["answered"], 56);
        assert_eq!(v["per_proc"]["null"]["sent"], 40);
        assert_eq!(v["wrong_by_reason"]["mount_status"], 4);
        assert_eq!(v["wrong_by_reason"]["unknown_xid"], 0);
        assert_eq!(
            v["wrong_by_reason"].as_object().unwrap().len(),
            Wrong::COUNT
        );
        let p50 = v["latency_us"]["p50"].as_f64().unwrap();
        assert!((19.9..=20.1).contains(&p50), "p50 {p50}");
        assert!(v["latency_us"]["max"].as_f64().unwrap() >= 999.0);
        assert!((v["generator_cpu"]["us_per_call"].as_f64().unwrap() - 10_000.0).abs() < 1.0);
    }

    #[test]
    fn open_loop_mode_and_human_summary() {
        let mut r = sample();
        r.rate = Some(5000.0);
        r.mode = "open".into();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["rate"], 5000.0);
        let h = r.human();
        assert!(h.contains("open loop at 5000 calls/s"), "{h}");
        assert!(h.contains("mount_status 4"), "{h}");
        assert!(h.contains("sent 100"), "{h}");
    }
}
