//! The bench's figures: one storm run's JSON, medians over rounds, the target ratios, and
//! their rendering as `latest.json` and the Markdown table the README embeds.
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

use super::cluster::ClusterSection;
use super::cost::CostSection;
use super::hostile::HostileSection;

/// Latency percentiles of one storm run, in microseconds (storm's JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
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
}

/// The subset of `xdp-mountd storm --json` the bench uses (docs/storm-json.md). A copy, not
/// `mount_storm::report::Report`: mount-storm depends on mount-xdp, whose build script needs
/// the eBPF toolchain that `cargo xtask setup` installs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StormResult {
    /// "closed" or "open".
    pub mode: String,
    /// Seconds measured (after warm-up).
    pub duration_s: f64,
    /// Calls sent.
    pub sent: u64,
    /// Calls answered correctly.
    pub answered: u64,
    /// Calls never answered.
    pub lost: u64,
    /// Replies that were wrong (xid, accept_stat, mount status).
    pub wrong: u64,
    /// answered / duration_s.
    pub calls_per_sec: f64,
    /// Latency percentiles.
    pub latency_us: Latency,
    /// Open loop: calls due while the window was full, so not sent.
    pub skipped: u64,
    /// Replies after their call had timed out (counted as lost).
    pub late: u64,
    /// Seconds spent draining replies after sending stopped.
    pub drain_s: f64,
    /// Why sending stopped: "count", "duration" or "signal".
    pub stopped_by: String,
    /// The generator's own CPU (getrusage).
    pub generator_cpu: GeneratorCpu,
}

/// storm's own CPU use over its run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorCpu {
    /// User + system seconds.
    pub cpu_s: f64,
    /// CPU µs per answered call.
    pub us_per_call: f64,
}

/// One measured interval: a storm run plus the CPU sampled during it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// Round number, from 1.
    pub round: u32,
    /// Open-loop target rate, for half-saturation runs.
    pub target_rate: Option<f64>,
    /// What storm reported.
    pub storm: StormResult,
    /// Machine-wide busy CPU µs per answered call (generator included).
    pub cpu_us_per_call: Option<f64>,
    /// Busy share of both CPUs over the sampled interval.
    pub cpu_busy_fraction: f64,
}

/// Medians over rounds of one (server, call, load) cell; lost/wrong are totals.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Rounds summarised.
    pub rounds: usize,
    /// Median calls/s.
    pub calls_per_sec: f64,
    /// Median p50 latency, µs.
    pub p50_us: f64,
    /// Median p99 latency, µs.
    pub p99_us: f64,
    /// Median p99.9 latency, µs.
    pub p999_us: f64,
    /// Median busy CPU µs per answered call (machine-wide, generator included).
    pub cpu_us_per_call: Option<f64>,
    /// Median of the generator's own CPU µs per answered call (storm's getrusage).
    pub generator_us_per_call: f64,
    /// Median busy share of all CPUs during the measured interval (0..=1).
    pub busy_fraction: f64,
    /// Total calls lost over all rounds.
    pub lost: u64,
    /// Total wrong replies over all rounds.
    pub wrong: u64,
    /// Total calls sent over all rounds.
    pub sent: u64,
    /// Open loop: total calls not sent because the outstanding cap was reached (the
    /// generator fell behind its schedule).
    pub skipped: u64,
}

impl Summary {
    /// Summarise runs (medians; totals for lost/wrong/sent).
    pub fn of(runs: &[Run]) -> Self {
        let med = |f: &dyn Fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us_per_call).collect();
        Summary {
            rounds: runs.len(),
            calls_per_sec: med(&|r| r.storm.calls_per_sec).unwrap_or(0.0),
            p50_us: med(&|r| r.storm.latency_us.p50).unwrap_or(0.0),
            p99_us: med(&|r| r.storm.latency_us.p99).unwrap_or(0.0),
            p999_us: med(&|r| r.storm.latency_us.p999).unwrap_or(0.0),
            cpu_us_per_call: median(&cpu),
            generator_us_per_call: med(&|r| r.storm.generator_cpu.us_per_call).unwrap_or(0.0),
            busy_fraction: med(&|r| r.cpu_busy_fraction).unwrap_or(0.0),
            lost: runs.iter().map(|r| r.storm.lost).sum(),
            wrong: runs.iter().map(|r| r.storm.wrong).sum(),
            sent: runs.iter().map(|r| r.storm.sent).sum(),
            skipped: runs.iter().map(|r| r.storm.skipped).sum(),
        }
    }
}

/// Median of the finite values; the mean of the middle two for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Everything measured for one server answering one call type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// Server variant id, e.g. "xdp-native".
    pub variant: String,
    /// Call type id: "null", "mnt" or "export".
    pub workload: String,
    /// Closed loop at saturation.
    pub saturation: Summary,
    /// Open loop at half the saturation rate measured in the same round.
    pub half: Summary,
    /// Every run, saturation then half, in round order.
    pub saturation_runs: Vec<Run>,
    /// The half-rate runs.
    pub half_runs: Vec<Run>,
}

/// A goal the bench makes visible (reported, never asserted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    /// Short id.
    pub id: String,
    /// What is compared.
    pub what: String,
    /// The measured value (ratio or count); None when a figure is missing.
    pub value: Option<f64>,
    /// The goal, as text ("≥ 20").
    pub goal: String,
    /// Whether the value meets the goal.
    pub met: Option<bool>,
}

/// The machine the figures come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// /proc/cpuinfo "model name".
    pub cpu_model: String,
    /// `uname -r`.
    pub kernel: String,
    /// /proc/stat ticks per second.
    pub clock_ticks_per_sec: u64,
}

/// The source the figures come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Commit {
    /// `git rev-parse HEAD`.
    pub rev: String,
    /// Uncommitted changes present.
    pub dirty: bool,
}

/// How the run was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    /// `--quick` given.
    pub quick: bool,
    /// Rounds interleaving all variants.
    pub rounds: u32,
    /// Measured seconds per run.
    pub duration_s: f64,
    /// Warm-up seconds per run.
    pub warmup_s: f64,
    /// Closed-loop window (outstanding calls) at saturation.
    pub window: u32,
    /// Generator sockets.
    pub clients: u32,
    /// storm's I/O: "afxdp" or "socket".
    pub generator: String,
    /// The CPU the generator was pinned to (None: it floated).
    pub generator_cpu: Option<String>,
    /// Variants measured, in order.
    pub variants: Vec<String>,
    /// Call types measured.
    pub workloads: Vec<String>,
    /// Wall-clock seconds the whole bench took.
    pub elapsed_s: f64,
    /// Busy share of all CPUs during one second before the bench (other work).
    pub background_busy: f64,
    /// Sections run (`servers`, `hostile`).
    #[serde(default)]
    pub sections: Vec<String>,
}

/// The whole `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// UTC, RFC 3339.
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// The commit.
    pub commit: Commit,
    /// The run's parameters.
    pub config: Config,
    /// How to read the CPU figures.
    pub note: String,
    /// Every measured cell.
    pub cells: Vec<Cell>,
    /// The goals and how far they are met.
    pub targets: Vec<Target>,
    /// The hostile-traffic section, when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostile: Option<HostileSection>,
    /// The server-cost section, when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSection>,
    /// The cluster-mode section, when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSection>,
}

/// ` --sections A,B` unless the sections are the default ones.
fn sections_flag(sections: &[String]) -> String {
    if sections.is_empty() || sections.join(",") == super::DEFAULT_SECTIONS {
        String::new()
    } else {
        format!(" --sections {}", sections.join(","))
    }
}

/// Human names of the variants.
pub fn variant_label(id: &str) -> &str {
    match id {
        "xdp-native" => "xdp-mountd, AF_XDP (native XDP)",
        "xdp-generic" => "xdp-mountd, AF_XDP (generic XDP)",
        "socket" => "xdp-mountd, kernel UDP socket (XDP off)",
        "ganesha" => "NFS-Ganesha 4.3",
        "gateway" => "xdp-mountd, AF_XDP (native XDP), --upstream Ganesha",
        other => other,
    }
}

impl Report {
    /// The cell of `variant` answering `workload`.
    pub fn cell(&self, variant: &str, workload: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.variant == variant && c.workload == workload)
    }

    /// Compute the goals from the cells (AF_XDP = native XDP; the socket path = XDP off).
    pub fn compute_targets(&mut self) {
        let rate = |v: &str, w: &str| self.cell(v, w).map(|c| c.saturation.calls_per_sec);
        let cpu = |v: &str, w: &str| self.cell(v, w).and_then(|c| c.saturation.cpu_us_per_call);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let mut t = Vec::new();
        // Native XDP is the goal's "AF_XDP"; generic XDP is shown beside it.
        for (v, name) in [("xdp-native", "native"), ("xdp-generic", "generic")] {
            t.push(Target {
                id: format!("afxdp_{name}_mnt_vs_ganesha"),
                what: format!("AF_XDP ({name}) MNT calls/s ÷ Ganesha MNT calls/s"),
                value: ratio(rate(v, "mnt"), rate("ganesha", "mnt")),
                goal: "≥ 20".into(),
                met: None,
            });
            t.push(Target {
                id: format!("afxdp_{name}_cpu_vs_socket"),
                what: format!("AF_XDP ({name}) MNT CPU/call ÷ kernel-socket MNT CPU/call"),
                value: ratio(cpu(v, "mnt"), cpu("socket", "mnt")),
                goal: "≤ 0.5".into(),
                met: None,
            });
        }
        for v in ["xdp-native", "xdp-generic", "socket"] {
            t.push(Target {
                id: format!("mnt_vs_null_{v}"),
                what: format!("{v}: MNT calls/s ÷ NULL calls/s"),
                value: ratio(rate(v, "mnt"), rate(v, "null")),
                goal: "≥ 0.9".into(),
                met: None,
            });
        }
        t.push(Target {
            id: "gateway_mnt_vs_xdp_native".into(),
            what: "--upstream (native XDP) MNT calls/s ÷ native XDP MNT calls/s".into(),
            value: ratio(rate("gateway", "mnt"), rate("xdp-native", "mnt")),
            goal: "≥ 0.9".into(),
            met: None,
        });
        for v in ["xdp-native", "xdp-generic", "socket", "gateway"] {
            let cells: Vec<&Cell> = self.cells.iter().filter(|c| c.variant == v).collect();
            let value = (!cells.is_empty()).then(|| {
                cells
                    .iter()
                    .map(|c| (c.half.lost + c.half.wrong) as f64)
                    .sum()
            });
            t.push(Target {
                id: format!("lost_wrong_at_half_{v}"),
                what: format!("{v}: lost + wrong replies at 50% load, all calls, all rounds"),
                value,
                goal: "= 0".into(),
                met: None,
            });
        }
        for target in &mut t {
            target.met = target.value.map(|v| meets(v, &target.goal));
        }
        self.targets = t;
    }

    /// The Markdown block for the README (and `latest.md`).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let c = &self.commit;
        let rev = c.rev.get(..12).unwrap_or(&c.rev);
        let dirty = if c.dirty { ", uncommitted changes" } else { "" };
        let m = &self.machine;
        let servers = !self.cells.is_empty();
        let _ = write!(
            s,
            "Measured {} on {} × {} (Linux {}), commit `{rev}`{dirty}, with `cargo xtask bench{}{}`",
            self.date,
            m.nproc,
            m.cpu_model,
            m.kernel,
            if self.config.quick { " --quick" } else { "" },
            sections_flag(&self.config.sections),
        );
        if servers {
            self.servers_markdown(&mut s);
        } else {
            let _ = writeln!(
                s,
                ". The machine was {:.0}% busy with other work just before the run.",
                self.config.background_busy * 100.0
            );
        }
        if let Some(hostile) = &self.hostile {
            s.push_str(&hostile.markdown());
        }
        if let Some(cost) = &self.cost {
            s.push_str(&cost.markdown());
        }
        if let Some(cluster) = &self.cluster {
            s.push_str(&cluster.markdown());
        }
        s
    }

    /// The servers table and the goals (after the "Measured …" opening).
    fn servers_markdown(&self, s: &mut String) {
        let _ = writeln!(
            s,
            ": {} rounds × {} s per figure, medians over rounds.",
            self.config.rounds, self.config.duration_s
        );
        let _ = writeln!(
            s,
            "\n{} The machine was {:.0}% busy with other work just before the run.\n",
            self.note,
            self.config.background_busy * 100.0
        );
        s.push_str(
            "| server | call | calls/s | p50 µs | p99 µs | p99.9 µs | CPU µs/call | \
             of which generator | at 50%: p50 µs | p99 µs | p99.9 µs | CPU busy | \
             lost/wrong at sat. | lost/wrong/skipped at 50% |\n",
        );
        s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for cell in &self.cells {
            let (a, h) = (&cell.saturation, &cell.half);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% | {}/{} | {}/{}/{} |",
                variant_label(&cell.variant),
                workload_label(&cell.workload),
                fmt_rate(a.calls_per_sec),
                fmt_us(a.p50_us),
                fmt_us(a.p99_us),
                fmt_us(a.p999_us),
                a.cpu_us_per_call.map_or("–".into(), fmt_us),
                fmt_us(a.generator_us_per_call),
                fmt_us(h.p50_us),
                fmt_us(h.p99_us),
                fmt_us(h.p999_us),
                h.busy_fraction * 100.0,
                a.lost,
                a.wrong,
                h.lost,
                h.wrong,
                h.skipped,
            );
        }
        s.push_str("\n| target | measured | goal | met |\n|---|--:|--:|:-:|\n");
        for t in &self.targets {
            let value = t.value.map_or("–".into(), |v| {
                if t.goal.starts_with('=') {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            });
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            let _ = writeln!(s, "| {} | {value} | {} | {met} |", t.what, t.goal);
        }
    }
}

/// Whether `value` satisfies a goal written as "≥ x", "≤ x" or "= x".
pub fn meets(value: f64, goal: &str) -> bool {
    let goal = goal.trim();
    let (op, num) = goal.split_at(goal.chars().next().map_or(0, char::len_utf8));
    let Ok(x) = num.trim().parse::<f64>() else {
        return false;
    };
    match op {
        "≥" => value >= x,
        "≤" => value <= x,
        "=" => (value - x).abs() < 1e-9,
        _ => false,
    }
}

/// Human names of the call types.
pub fn workload_label(id: &str) -> &str {
    match id {
        "null" => "NULL",
        "mnt" => "MNT v3",
        "export" => "EXPORT v3",
        other => other,
    }
}

/// Calls/s with thousands grouped by a thin space.
pub fn fmt_rate(r: f64) -> String {
    let n = r.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(ch);
    }
    out
}

/// Microseconds: one decimal below 100, none above.
pub fn fmt_us(us: f64) -> String {
    if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// Replace the text between the README's bench markers with `block`.
pub fn splice_readme(readme: &str, block: &str) -> Option<String> {
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let a = readme.find(START)? + START.len();
    let b = a + readme[a..].find(END)?;
    Some(format!(
        "{}\n{}\n{}",
        &readme[..a],
        block.trim_end(),
        &readme[b..]
    ))
}

#[cfg(test)]
pub mod fixtures;
#[cfg(test)]
mod tests;
