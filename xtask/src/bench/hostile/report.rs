//! The hostile section's figures as they go into `latest.json` and its Markdown block.
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

use super::link::Link;
use crate::bench::report::{fmt_rate, fmt_us, StormResult};

/// How the section was run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostileConfig {
    /// Measured seconds of the victim per scenario.
    pub duration_s: f64,
    /// The victim's open-loop MNT rate, calls/s.
    pub victim_rate: f64,
    /// The flood's open-loop rate asked for, calls/s (it sends as fast as it can below).
    pub flood_rate: f64,
    /// A flood call unanswered this long counts as lost, ms.
    pub flood_timeout_ms: u64,
    /// Paths in the exports file (what a whole EXPORT reply lists).
    pub exports: usize,
    /// The network the spoofed flood forges its sources from.
    pub spoofed_net: String,
    /// The server settings run: `off` or a `--rate-limit` value.
    pub rate_limits: Vec<String>,
}

/// One scenario against one server setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioRun {
    /// The server's `--rate-limit`, or `off`.
    pub rate_limit: String,
    /// `calm`, `flood` or `spoofed-export` (see [`super::Scenario`]).
    pub scenario: String,
    /// The victim's MNT run.
    pub victim: StormResult,
    /// The flood's run, when there is one.
    pub flood: Option<StormResult>,
    /// The server's veth over the scenario: all traffic (flood, victim, ARP).
    pub server_link: Link,
    /// The flooder's bridge port over the scenario, from the server's side: `rx` is what
    /// the flooder sent towards it, `tx` what came back to the flooder.
    pub flood_link: Link,
    /// Set when the two links disagree on the size of the same calls (their byte
    /// counts are then not what the ratios assume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The daemon's counters that grew over the scenario, with their growth.
    pub counters: Vec<(String, u64)>,
    /// Busy share of all CPUs over the scenario (generators, bridge and server).
    pub cpu_busy: f64,
}

/// The whole section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostileSection {
    /// The parameters.
    pub config: HostileConfig,
    /// How to read the figures.
    pub note: String,
    /// Every scenario run, server setting by server setting.
    pub runs: Vec<ScenarioRun>,
}

/// Human names of the scenarios.
fn scenario_label(id: &str) -> &str {
    match id {
        "calm" => "victim alone",
        "flood" => "one source floods (MNT)",
        "spoofed-export" => "spoofed-source EXPORT flood",
        other => other,
    }
}

/// Human names of the server settings.
fn limit_label(limit: &str) -> String {
    if limit == "off" {
        "no rate limit".into()
    } else {
        format!("`--rate-limit {limit}`")
    }
}

/// A ratio with two decimals, or a dash.
fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}"))
}

impl ScenarioRun {
    /// The flood's calls sent and answered per second, and the share answered.
    fn flood_rates(&self) -> Option<(f64, f64, f64)> {
        let f = self.flood.as_ref()?;
        let per_s = |n: u64| {
            if f.duration_s > 0.0 {
                n as f64 / f.duration_s
            } else {
                0.0
            }
        };
        let share = if f.sent > 0 {
            f.answered as f64 / f.sent as f64
        } else {
            0.0
        };
        Some((per_s(f.sent), per_s(f.answered), share))
    }

    /// The flood's two table cells: sent/s, and answered/s with the share.
    fn flood_cells(&self) -> (String, String) {
        match self.flood_rates() {
            Some((sent, answered, share)) => (
                fmt_rate(sent),
                format!("{} ({:.1}%)", fmt_rate(answered), share * 100.0),
            ),
            None => ("–".into(), "–".into()),
        }
    }

    /// One line for the console while the bench runs.
    pub fn progress_line(&self) -> String {
        let v = &self.victim;
        let flood = match self.flood_rates() {
            Some((sent, answered, share)) => format!(
                "flood sent {}/s, answered {}/s ({:.1}%)",
                fmt_rate(sent),
                fmt_rate(answered),
                share * 100.0
            ),
            None => "no flood".into(),
        };
        format!(
            "hostile {:<9} {:<14} victim lost {}/{} p50 {} µs p99 {} µs | {flood} | bytes out/in {} | CPU {:.0}%",
            self.rate_limit,
            self.scenario,
            v.lost,
            v.sent,
            fmt_us(v.latency_us.p50),
            fmt_us(v.latency_us.p99),
            fmt_ratio(self.server_link.bytes_out_per_in()),
            self.cpu_busy * 100.0,
        )
    }
}

impl HostileSection {
    /// The Markdown block (appended to `latest.md`).
    pub fn markdown(&self) -> String {
        let mut s = String::from("\n### Hostile traffic\n\n");
        let _ = writeln!(s, "{}\n", self.note);
        s.push_str(
            "| server | scenario | victim MNT lost/sent | p50 µs | p99 µs | flood sent/s | \
             answered/s (share) | server IP bytes out ÷ in | server UDP payload out ÷ in | \
             flood UDP payload out ÷ in | flood reply ÷ call | CPU busy |\n",
        );
        s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for r in &self.runs {
            let v = &r.victim;
            let (sent, answered) = r.flood_cells();
            let flood_ratio = |f: fn(&Link) -> Option<f64>| {
                if r.flood.is_some() {
                    fmt_ratio(f(&r.flood_link))
                } else {
                    "–".into()
                }
            };
            let _ = writeln!(
                s,
                "| {} | {} | {}/{} | {} | {} | {sent} | {answered} | {} | {} | {} | {} | {:.0}% |",
                limit_label(&r.rate_limit),
                scenario_label(&r.scenario),
                v.lost,
                v.sent,
                fmt_us(v.latency_us.p50),
                fmt_us(v.latency_us.p99),
                fmt_ratio(r.server_link.bytes_out_per_in()),
                fmt_ratio(r.server_link.payload_out_per_in()),
                flood_ratio(Link::payload_out_per_in),
                flood_ratio(Link::payload_per_datagram_out_per_in),
                r.cpu_busy * 100.0,
            );
        }
        s.push_str("\nThe daemon's counters that grew in each scenario (`xdp-mountd stats`):\n\n");
        for r in &self.runs {
            let list: Vec<String> = r
                .counters
                .iter()
                .map(|(name, n)| format!("{name} {}", fmt_rate(*n as f64)))
                .collect();
            let _ = writeln!(
                s,
                "- {}, {}: {}",
                limit_label(&r.rate_limit),
                scenario_label(&r.scenario),
                if list.is_empty() {
                    "none".into()
                } else {
                    list.join(", ")
                }
            );
        }
        for r in &self.runs {
            if let Some(w) = &r.warning {
                let _ = writeln!(
                    s,
                    "\n**Warning** ({}, {}): {w}.",
                    limit_label(&r.rate_limit),
                    scenario_label(&r.scenario)
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, flood: Option<StormResult>) -> ScenarioRun {
        let mut victim = StormResult {
            sent: 3000,
            answered: 2990,
            lost: 10,
            ..StormResult::default()
        };
        victim.latency_us.p50 = 41.04;
        victim.latency_us.p99 = 1234.4;
        ScenarioRun {
            rate_limit: "1000/2000".into(),
            scenario: scenario.into(),
            victim,
            flood,
            // 10 calls of 68 IP bytes (40 of UDP payload), 10 replies of 108 (80).
            server_link: Link {
                rx_bytes: 680,
                rx_packets: 10,
                tx_bytes: 1080,
                tx_packets: 10,
            },
            // Half of them answered.
            flood_link: Link {
                rx_bytes: 680,
                rx_packets: 10,
                tx_bytes: 540,
                tx_packets: 5,
            },
            warning: None,
            counters: vec![("xdp.dropped_rate_source".into(), 123_456)],
            cpu_busy: 0.974,
        }
    }

    #[test]
    fn markdown_has_a_row_per_run_and_the_counters() {
        let flood = StormResult {
            sent: 400_000,
            answered: 3_100,
            duration_s: 2.0,
            ..StormResult::default()
        };
        let mut spoofed = run("spoofed-export", Some(flood));
        spoofed.warning = Some("sizes disagree".into());
        let section = HostileSection {
            note: "How to read it.".into(),
            runs: vec![run("calm", None), spoofed],
            ..HostileSection::default()
        };
        let md = section.markdown();
        assert!(
            md.contains("### Hostile traffic\n\nHow to read it."),
            "{md}"
        );
        assert!(
            md.contains(
                "| `--rate-limit 1000/2000` | victim alone | 10/3000 | 41.0 | 1234 | – | – | 1.59 | 2.00 | – | – | 97% |"
            ),
            "{md}"
        );
        // 200 000 sent/s, 1 550 answered/s (0.775%); half the flood's calls answered with
        // replies twice their size: payload out ÷ in 1.00, per datagram 2.00.
        assert!(
            md.contains(
                "| spoofed-source EXPORT flood | 10/3000 | 41.0 | 1234 | 200\u{202f}000 | 1\u{202f}550 (0.8%) | 1.59 | 2.00 | 1.00 | 2.00 | 97% |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "- `--rate-limit 1000/2000`, victim alone: xdp.dropped_rate_source 123\u{202f}456"
            ),
            "{md}"
        );
        assert!(
            md.contains("**Warning** (`--rate-limit 1000/2000`, spoofed-source EXPORT flood): sizes disagree."),
            "{md}"
        );
    }
}
