//! The cost section's figures: one run's server CPU per call and the AF_XDP worker's
//! syscalls per call, and their Markdown table.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write as _;

use super::super::report::Run;
use super::super::storm::Load;
use super::BUSY_POLL_US;

/// The whole section in `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CostSection {
    /// How to read it.
    pub note: String,
    /// The CPU of the server, its AF_XDP worker and its NAPI kthread.
    pub server_cpu: usize,
    /// The CPU of storm and the client's NAPI kthread.
    pub generator_cpu: usize,
    /// Why the xdp_tx path was not measured, if it was not.
    pub xdp_tx_skipped: Option<String>,
    /// Why the XDP program's run time was not measured (kernel.bpf_stats_enabled could
    /// not be set), if it was not.
    #[serde(default)]
    pub program_runs_skipped: Option<String>,
    /// Every run, by generator, path and load.
    pub runs: Vec<CostRun>,
}

/// The AF_XDP worker's counters (`xdp-mountd stats`, summed over queues).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerCalls {
    /// Frames received.
    pub rx: u64,
    /// Rounds that took frames off the RX ring.
    pub batches: u64,
    /// poll() calls.
    pub polls: u64,
    /// sendto() calls (TX kicks).
    pub tx_kicks: u64,
    /// recvfrom() calls (fill wakeups).
    pub fill_kicks: u64,
    /// recvfrom() calls that busy-polled (`--afxdp-busy-poll`).
    #[serde(default)]
    pub busy_polls: u64,
}

impl WorkerCalls {
    /// Picked out of `xdp-mountd stats --json` (absent fields: 0, an older daemon).
    pub fn from_stats(stats: &Value) -> WorkerCalls {
        let mut w = WorkerCalls::default();
        let queues = stats
            .get("xdp")
            .and_then(|x| x.get("queues"))
            .and_then(Value::as_array);
        for q in queues.into_iter().flatten() {
            let get = |f: &str| q.get(f).and_then(Value::as_u64).unwrap_or(0);
            w.rx += get("rx");
            w.batches += get("batches");
            w.polls += get("polls");
            w.tx_kicks += get("tx_kicks");
            w.fill_kicks += get("fill_kicks");
            w.busy_polls += get("busy_polls");
        }
        w
    }

    /// The growth since `before`.
    pub fn since(&self, before: &WorkerCalls) -> WorkerCalls {
        WorkerCalls {
            rx: self.rx.saturating_sub(before.rx),
            batches: self.batches.saturating_sub(before.batches),
            polls: self.polls.saturating_sub(before.polls),
            tx_kicks: self.tx_kicks.saturating_sub(before.tx_kicks),
            fill_kicks: self.fill_kicks.saturating_sub(before.fill_kicks),
            busy_polls: self.busy_polls.saturating_sub(before.busy_polls),
        }
    }

    /// poll + sendto + recvfrom per frame received.
    pub fn syscalls_per_call(&self) -> Option<f64> {
        (self.rx > 0)
            .then(|| (self.polls + self.tx_kicks + self.fill_kicks) as f64 / self.rx as f64)
    }

    /// Syscalls per RX batch: what a wakeup costs, whatever the burst size.
    pub fn syscalls_per_batch(&self) -> Option<f64> {
        let calls = self.polls + self.tx_kicks + self.fill_kicks + self.busy_polls;
        (self.batches > 0).then(|| calls as f64 / self.batches as f64)
    }

    /// Frames per RX batch.
    pub fn calls_per_batch(&self) -> Option<f64> {
        (self.batches > 0).then(|| self.rx as f64 / self.batches as f64)
    }
}

/// The daemon's XDP program as the kernel accounts its runs (`xdp.program_runs` of
/// `xdp-mountd stats --json`, counting while kernel.bpf_stats_enabled=1), and the MNTs
/// the daemon answered on every path (workers, kernel sockets, XDP_TX) read at the same
/// moment, so that runs per MNT compares like with like.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProgramRuns {
    /// Program runs.
    pub runs: u64,
    /// Their summed run time, ns.
    pub run_time_ns: u64,
    /// MNTs answered, all paths.
    pub mnt_answered: u64,
}

impl ProgramRuns {
    /// Picked out of `xdp-mountd stats --json`; None when the daemon has no XDP program or
    /// reports no run accounting (an older daemon, or the info call failed).
    pub fn from_stats(stats: &Value) -> Option<ProgramRuns> {
        let runs = stats.get("xdp")?.get("program_runs")?;
        let mnt = stats
            .get("procedures")
            .and_then(Value::as_array)
            .and_then(|rows| rows.iter().find(|r| r.get("name") == Some(&"mnt".into())));
        let mnt_answered = mnt.map_or(0, |row| {
            ["afxdp", "udp", "tcp", "xdp_tx"]
                .iter()
                .map(|col| row.get(*col).and_then(Value::as_u64).unwrap_or(0))
                .sum()
        });
        Some(ProgramRuns {
            runs: runs.get("runs")?.as_u64()?,
            run_time_ns: runs.get("run_time_ns")?.as_u64()?,
            mnt_answered,
        })
    }

    /// The growth since `before`.
    pub fn since(&self, before: &ProgramRuns) -> ProgramRuns {
        ProgramRuns {
            runs: self.runs.saturating_sub(before.runs),
            run_time_ns: self.run_time_ns.saturating_sub(before.run_time_ns),
            mnt_answered: self.mnt_answered.saturating_sub(before.mnt_answered),
        }
    }

    /// Run time per run, ns (None without runs: accounting off, or no frames).
    pub fn ns_per_frame(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.run_time_ns as f64 / self.runs as f64)
    }

    /// Program runs per MNT answered (~1: each call frame runs it once; ARP/NDP and the
    /// like add a few).
    pub fn runs_per_mnt(&self) -> Option<f64> {
        (self.runs > 0 && self.mnt_answered > 0)
            .then(|| self.runs as f64 / self.mnt_answered as f64)
    }
}

/// CPU time over a run's measured window, in units of `ticks_per_sec` (ns from schedstat).
pub struct TickSpan {
    /// Seconds between the two samples.
    pub secs: f64,
    /// The server process (all threads).
    pub server: u64,
    /// The server end's NAPI kthread.
    pub server_napi: u64,
    /// The client end's NAPI kthread.
    pub client_napi: u64,
    /// Units per second (1e9 for nanoseconds).
    pub ticks_per_sec: u64,
}

/// One run: a path under a generator at one load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CostRun {
    /// "afxdp" or "socket".
    pub generator: String,
    /// "socket", "afxdp" or "xdp_tx".
    pub path: String,
    /// "closed N" or "open R/s".
    pub load: String,
    /// MNTs answered per second.
    pub calls_per_sec: f64,
    /// Calls sent, lost, answered wrongly, skipped (open loop behind schedule).
    pub sent: u64,
    /// Calls never answered.
    pub lost: u64,
    /// Wrong replies.
    pub wrong: u64,
    /// Open loop: calls due while the window was full.
    pub skipped: u64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Server process + server NAPI kthread CPU µs per MNT.
    pub server_us_per_call: Option<f64>,
    /// Of which the server's NAPI kthread.
    pub server_napi_us_per_call: Option<f64>,
    /// Machine busy µs per MNT minus storm's own and the client NAPI kthread's.
    pub machine_minus_generator_us: Option<f64>,
    /// storm's own CPU µs per MNT (getrusage).
    pub generator_us_per_call: f64,
    /// The client NAPI kthread's µs per MNT.
    pub client_napi_us_per_call: Option<f64>,
    /// Busy share of all CPUs in the window.
    pub busy_fraction: f64,
    /// The AF_XDP worker's counters over the run (warm-up included).
    pub worker: Option<WorkerCalls>,
    /// The daemon's XDP program runs over the run (warm-up included).
    #[serde(default)]
    pub program: Option<ProgramRuns>,
    /// The client's veth end had a pass-through XDP program (storm --pass-through-xdp):
    /// the xdp_tx path under the kernel-socket generator, whose answers a native-XDP veth
    /// would drop otherwise.
    #[serde(default)]
    pub client_xdp_pass: bool,
}

/// One run's figures.
pub fn cost_run(
    generator: &str,
    path: &str,
    load: Load,
    run: &Run,
    span: Option<TickSpan>,
    worker: Option<WorkerCalls>,
    program: Option<ProgramRuns>,
) -> CostRun {
    let s = &run.storm;
    let per_call = |ticks: u64, span: &TickSpan| {
        let calls = s.calls_per_sec * span.secs;
        (calls > 0.0 && span.ticks_per_sec > 0)
            .then(|| ticks as f64 * 1e6 / span.ticks_per_sec as f64 / calls)
    };
    let server = span
        .as_ref()
        .and_then(|t| per_call(t.server + t.server_napi, t));
    let server_napi = span.as_ref().and_then(|t| per_call(t.server_napi, t));
    let client_napi = span.as_ref().and_then(|t| per_call(t.client_napi, t));
    let generator_us = s.generator_cpu.us_per_call;
    let machine_minus_generator = run
        .cpu_us_per_call
        .map(|m| m - generator_us - client_napi.unwrap_or(0.0));
    CostRun {
        generator: generator.into(),
        path: path.into(),
        load: match load {
            Load::Closed { window } => format!("closed {window}"),
            Load::Open { rate, .. } => format!("open {rate:.0}/s"),
        },
        calls_per_sec: s.calls_per_sec,
        sent: s.sent,
        lost: s.lost,
        wrong: s.wrong,
        skipped: s.skipped,
        p50_us: s.latency_us.p50,
        p99_us: s.latency_us.p99,
        server_us_per_call: server,
        server_napi_us_per_call: server_napi,
        machine_minus_generator_us: machine_minus_generator,
        generator_us_per_call: generator_us,
        client_napi_us_per_call: client_napi,
        busy_fraction: run.cpu_busy_fraction,
        worker,
        program,
        client_xdp_pass: false,
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

impl CostRun {
    /// The path's cell: marked when the client end had a pass-through XDP program.
    pub fn path_label(&self) -> String {
        if self.client_xdp_pass {
            format!("{} (+client XDP)", self.path)
        } else {
            self.path.clone()
        }
    }

    /// The derived figures, formatted once for both the terminal line and the Markdown
    /// row: server, NAPI and machine − generator µs/MNT, worker syscalls/call, calls/batch,
    /// syscalls/batch, program ns/frame and runs/MNT.
    fn figure_cells(&self) -> [String; 8] {
        let worker = |f: fn(&WorkerCalls) -> Option<f64>, digits| {
            num(self.worker.as_ref().and_then(f), digits)
        };
        let program = |f: fn(&ProgramRuns) -> Option<f64>, digits| {
            num(self.program.as_ref().and_then(f), digits)
        };
        [
            num(self.server_us_per_call, 2),
            num(self.server_napi_us_per_call, 2),
            num(self.machine_minus_generator_us, 2),
            worker(WorkerCalls::syscalls_per_call, 3),
            worker(WorkerCalls::calls_per_batch, 1),
            worker(WorkerCalls::syscalls_per_batch, 2),
            program(ProgramRuns::ns_per_frame, 1),
            program(ProgramRuns::runs_per_mnt, 3),
        ]
    }

    /// One line for the terminal while the bench runs.
    pub fn progress_line(&self) -> String {
        let [server, napi, machine, per_call, per_batch, kicks, ns, runs] = self.figure_cells();
        format!(
            "cost: gen {:<6} path {:<11} {:<14} {:>9.0} MNT/s server {server:>6} µs/MNT (NAPI {napi:>5}) machine−gen {machine:>6} p50 {:>5.0} p99 {:>6.0} µs lost {} | worker {per_call} syscalls/call, {per_batch} calls/batch, {kicks} syscalls/batch | program {ns} ns/frame, {runs} runs/MNT",
            self.generator,
            self.path_label(),
            self.load,
            self.calls_per_sec,
            self.p50_us,
            self.p99_us,
            self.lost,
        )
    }
}

impl CostSection {
    /// The section's Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n### Server CPU per MNT, threaded NAPI\n");
        let _ = writeln!(s, "{}\n", self.note);
        if let Some(why) = &self.xdp_tx_skipped {
            let _ = writeln!(s, "xdp_tx not measured: {why}.\n");
        }
        if let Some(why) = &self.program_runs_skipped {
            let _ = writeln!(s, "XDP program run time not measured: {why}.\n");
        }
        let _ = writeln!(
            s,
            "| generator | server path | load | MNT/s | server µs/MNT | of which NAPI thread | machine − generator µs/MNT | p50 µs | p99 µs | lost | worker syscalls/call | calls/batch | syscalls/batch | program ns/frame | program runs/MNT |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.runs {
            let [server, napi, machine, per_call, per_batch, kicks, ns, runs] = r.figure_cells();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.0} | {server} | {napi} | {machine} | {:.0} | {:.0} | {} | {per_call} | {per_batch} | {kicks} | {ns} | {runs} |",
                r.generator,
                r.path_label(),
                r.load,
                r.calls_per_sec,
                r.p50_us,
                r.p99_us,
                r.lost,
            );
        }
        s
    }
}

/// How to read the section.
pub fn note(server_cpu: usize, generator_cpu: usize) -> String {
    format!(
        "Reported, not asserted; one run per cell. Both veth ends use threaded NAPI (`gro on \
         tso off`, `threaded` 1): the server, its AF_XDP worker and the server end's NAPI \
         kthread are pinned to CPU {server_cpu}, storm and the client end's NAPI kthread to \
         CPU {generator_cpu}. Server µs/MNT: CPU time of the server process (all threads) and \
         of its NAPI kthread (the scheduler's run time from /proc/PID/task/*/schedstat) over the measured window ÷ MNTs \
         answered; other work on the machine does not count. Machine − generator: busy time \
         of the whole machine (/proc/stat) minus storm's getrusage and the client NAPI \
         kthread, per MNT: it includes any other work, so it is a cross-check, not the \
         figure. Worker syscalls/call: (poll + sendto + recvfrom) ÷ frames received by the \
         AF_XDP worker, from its counters over the run (warm-up included); calls/batch: \
         frames per RX round; syscalls/batch: what one wakeup costs, whatever the burst \
         size (storm's open loop sends what is due every 200 µs together, so only rates \
         under 5000/s give one call per wakeup). afxdp_busy: AF_XDP with `--afxdp-busy-poll {BUSY_POLL_US}` \
         (the worker spins in recvfrom(), running the NAPI poll itself, up to \
         {BUSY_POLL_US} µs after each burst). Open loop: the kernel-socket generator at a fixed rate (it may \
         fall short: see MNT/s). Program ns/frame: the daemon's XDP program as the kernel \
         accounts it with kernel.bpf_stats_enabled=1 (set for this section, put back after): \
         run_time_ns ÷ run_cnt growth from `xdp-mountd stats --json` over the run (warm-up \
         included), i.e. the program alone in the real data path, every frame it saw \
         (redirected into AF_XDP, answered with XDP_TX, or passed); the kernel's own timing \
         (sched_clock around each run) is inside and adds tens of ns; the redirect, the \
         XDP_TX transmit and the socket work after the verdict are not. Program runs/MNT: \
         runs ÷ MNTs the daemon answered on every path over the same span (~1; ARP/NDP add \
         a few). xdp_tx (+client XDP): under the kernel-socket generator the client's veth \
         end gets a pass-through XDP program (storm --pass-through-xdp: steers nothing), \
         because a native-XDP veth drops the frames its peer sends back with XDP_TX unless \
         its own end has an XDP program; that program runs on the client side's receive \
         path (its cost is the client NAPI thread's, not the server's), so that row's \
         client side differs from the other rows', which keep it off lest it change what \
         they measure."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_counters_are_summed_diffed_and_divided() {
        let stats = |rx: u64, polls: u64| {
            serde_json::json!({"xdp": {"queues": [
                {"queue": 0, "rx": rx, "batches": rx / 2, "polls": polls, "tx_kicks": rx, "fill_kicks": 0},
                {"queue": 1, "rx": 0}
            ]}})
        };
        let before = WorkerCalls::from_stats(&stats(10, 3));
        let after = WorkerCalls::from_stats(&stats(110, 53));
        let d = after.since(&before);
        assert_eq!((d.rx, d.batches, d.polls, d.tx_kicks), (100, 50, 50, 100));
        assert_eq!(d.syscalls_per_call(), Some(1.5));
        assert_eq!(d.calls_per_batch(), Some(2.0));
        assert_eq!(d.syscalls_per_batch(), Some(3.0));
        assert_eq!(WorkerCalls::default().syscalls_per_call(), None);
        assert_eq!(
            WorkerCalls::from_stats(&serde_json::json!({"xdp": null})),
            WorkerCalls::default()
        );
    }

    #[test]
    fn server_cpu_counts_process_and_napi_ticks() {
        let run = Run {
            round: 1,
            target_rate: None,
            storm: super::super::super::report::StormResult {
                calls_per_sec: 100_000.0,
                generator_cpu: super::super::super::report::GeneratorCpu {
                    cpu_s: 0.0,
                    us_per_call: 3.0,
                },
                ..Default::default()
            },
            cpu_us_per_call: Some(10.0),
            cpu_busy_fraction: 0.5,
        };
        // 2 s at 100k/s = 200k calls; 100 ticks/s: 50 + 10 ticks = 0.6 s = 3 µs per call.
        let span = TickSpan {
            secs: 2.0,
            server: 50,
            server_napi: 10,
            client_napi: 20,
            ticks_per_sec: 100,
        };
        let c = cost_run(
            "socket",
            "afxdp",
            Load::Closed { window: 64 },
            &run,
            Some(span),
            None,
            Some(ProgramRuns {
                runs: 202_000,
                run_time_ns: 10_100_000,
                mnt_answered: 200_000,
            }),
        );
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(
            close(c.server_us_per_call, 3.0),
            "{:?}",
            c.server_us_per_call
        );
        assert!(close(c.server_napi_us_per_call, 0.5));
        assert!(close(c.client_napi_us_per_call, 1.0));
        // 10 machine − 3 storm − 1 client NAPI.
        assert!(close(c.machine_minus_generator_us, 6.0));
        assert_eq!(c.load, "closed 64");
        assert!(c.progress_line().contains("afxdp"));
        assert!(
            c.progress_line()
                .ends_with("| program 50.0 ns/frame, 1.010 runs/MNT"),
            "{}",
            c.progress_line()
        );
        let mut passed = c.clone();
        passed.path = "xdp_tx".into();
        passed.client_xdp_pass = true;
        passed.program = None;
        let md = CostSection {
            note: String::new(),
            server_cpu: 0,
            generator_cpu: 1,
            xdp_tx_skipped: Some("no flag".into()),
            program_runs_skipped: None,
            runs: vec![c, passed],
        }
        .markdown();
        assert!(
            md.contains("| socket | afxdp | closed 64 | 100000 | 3.00 |"),
            "{md}"
        );
        assert!(md.contains(" | 50.0 | 1.010 |\n"), "{md}");
        assert!(
            md.contains("| socket | xdp_tx (+client XDP) | closed 64 |")
                && md.contains(" | – | – |\n"),
            "{md}"
        );
        // Header, rule and rows have as many columns.
        let columns: Vec<usize> = md
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.matches('|').count())
            .collect();
        assert_eq!(columns.len(), 4, "{md}");
        assert!(columns.iter().all(|&n| n == columns[0]), "{md}");
    }

    #[test]
    fn program_runs_are_read_diffed_and_divided() {
        let stats = |runs: u64, ns: u64, afxdp: u64, xdp_tx: u64| {
            serde_json::json!({
                "xdp": {"program_runs": {"runs": runs, "run_time_ns": ns, "bpf_stats_enabled": true}},
                "procedures": [
                    {"name": "null", "afxdp": 1000, "udp": 0, "tcp": 0, "xdp_tx": 1000},
                    {"name": "mnt", "afxdp": afxdp, "udp": 2, "tcp": 1, "xdp_tx": xdp_tx}
                ]
            })
        };
        let before = ProgramRuns::from_stats(&stats(100, 5_000, 10, 0)).unwrap();
        assert_eq!(before.mnt_answered, 13);
        let after = ProgramRuns::from_stats(&stats(1_100, 65_000, 20, 980)).unwrap();
        let d = after.since(&before);
        assert_eq!(
            (d.runs, d.run_time_ns, d.mnt_answered),
            (1_000, 60_000, 990)
        );
        assert_eq!(d.ns_per_frame(), Some(60.0));
        assert!(d
            .runs_per_mnt()
            .is_some_and(|r| (r - 1000.0 / 990.0).abs() < 1e-12));
        // Accounting off: runs do not move, nothing is claimed.
        let off = before.since(&before);
        assert_eq!((off.ns_per_frame(), off.runs_per_mnt()), (None, None));
        // No XDP, or a daemon without program_runs (or null): no figures at all.
        for v in [
            serde_json::json!({"xdp": null}),
            serde_json::json!({"xdp": {"program_runs": null}}),
            serde_json::json!({"xdp": {"queues": []}}),
        ] {
            assert_eq!(ProgramRuns::from_stats(&v), None, "{v}");
        }
    }
}
