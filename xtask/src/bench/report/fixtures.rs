//! Synthetic reports for the report and chart tests.
use super::*;

pub fn run(rate: f64, p99: f64, cpu: Option<f64>, lost: u64) -> Run {
    Run {
        round: 1,
        target_rate: None,
        storm: StormResult {
            calls_per_sec: rate,
            sent: 100,
            lost,
            latency_us: Latency {
                p50: p99 / 2.0,
                p99,
                p999: p99 * 2.0,
                ..Latency::default()
            },
            generator_cpu: GeneratorCpu {
                cpu_s: 1.0,
                us_per_call: 0.4,
            },
            ..StormResult::default()
        },
        cpu_us_per_call: cpu,
        cpu_busy_fraction: 1.0,
    }
}

pub fn cell(variant: &str, workload: &str, rate: f64, cpu: f64, half_lost: u64) -> Cell {
    let sat = vec![run(rate, 10.0, Some(cpu), 0)];
    let half = vec![run(rate / 2.0, 5.0, Some(cpu), half_lost)];
    Cell {
        variant: variant.into(),
        workload: workload.into(),
        saturation: Summary::of(&sat),
        half: Summary::of(&half),
        saturation_runs: sat,
        half_runs: half,
    }
}

pub fn report(cells: Vec<Cell>) -> Report {
    let mut r = Report {
        date: "2026-11-26T10:00:00Z".into(),
        machine: Machine {
            nproc: 2,
            cpu_model: "AMD EPYC".into(),
            kernel: "6.18".into(),
            clock_ticks_per_sec: 100,
        },
        commit: Commit {
            rev: "0123456789abcdef0123".into(),
            dirty: true,
        },
        config: Config {
            rounds: 3,
            duration_s: 1.0,
            ..Config::default()
        },
        note: "shared CPUs".into(),
        cells,
        targets: vec![],
        hostile: None,
        cost: None,
        cluster: None,
    };
    r.compute_targets();
    r
}
