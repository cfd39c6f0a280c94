//! Machine-wide busy CPU time from /proc/stat, sampled around a measured interval.
//!
//! The bench machine's CPUs are shared by the load generator and the server, so this is
//! the cost of one answered call *including* the generator's share; comparisons between
//! variants stay fair because every variant is driven by the same generator.
use anyhow::{bail, Context, Result};

/// The aggregate `cpu` line of /proc/stat, in clock ticks (USER_HZ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// idle + iowait.
    pub idle: u64,
}

impl CpuTimes {
    /// Parse the first (`cpu `) line of /proc/stat text.
    pub fn parse(stat: &str) -> Result<Self> {
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("/proc/stat has no aggregate cpu line")?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse::<u64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("unparsable /proc/stat line {line:?}"))?;
        if fields.len() < 7 {
            bail!("/proc/stat cpu line has {} fields, want >= 7", fields.len());
        }
        // user nice system idle iowait irq softirq [steal guest guest_nice]
        let (user, nice, system, idle, iowait, irq, softirq) = (
            fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6],
        );
        Ok(Self {
            busy: user + nice + system + irq + softirq,
            idle: idle + iowait,
        })
    }

    /// Read /proc/stat now.
    pub fn sample() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        Self::parse(&text)
    }
}

/// Ticks per second of /proc/stat (USER_HZ).
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// Busy CPU microseconds per answered call between two samples; None without answers.
pub fn us_per_call(before: CpuTimes, after: CpuTimes, hz: u64, answered: f64) -> Option<f64> {
    if answered <= 0.0 || hz == 0 {
        return None;
    }
    let busy_ticks = after.busy.saturating_sub(before.busy);
    Some(busy_ticks as f64 * 1e6 / hz as f64 / answered)
}

/// Fraction of all CPU time that was busy between two samples (0..=1).
pub fn busy_fraction(before: CpuTimes, after: CpuTimes) -> f64 {
    let busy = after.busy.saturating_sub(before.busy);
    let idle = after.idle.saturating_sub(before.idle);
    if busy + idle == 0 {
        return 0.0;
    }
    busy as f64 / (busy + idle) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str =
        "cpu  100 5 50 1000 10 3 2 7 0 0\ncpu0 50 2 25 500 5 1 1 3 0 0\nintr 1 2 3\n";

    #[test]
    fn parses_aggregate_line_only() {
        let t = CpuTimes::parse(STAT).unwrap();
        assert_eq!(t.busy, 100 + 5 + 50 + 3 + 2, "steal must not count as busy");
        assert_eq!(t.idle, 1010);
    }

    #[test]
    fn rejects_short_or_garbled_lines() {
        assert!(CpuTimes::parse("cpu  1 2 3\n").is_err());
        assert!(CpuTimes::parse("cpu  1 2 x 4 5 6 7\n").is_err());
        assert!(CpuTimes::parse("cpu0 1 2 3 4 5 6 7\n").is_err());
    }

    #[test]
    fn microseconds_per_call() {
        let a = CpuTimes {
            busy: 1000,
            idle: 0,
        };
        let b = CpuTimes {
            busy: 1200,
            idle: 0,
        };
        // 200 ticks at 100 Hz = 2 s = 2e6 µs over 100_000 calls = 20 µs each.
        let us = us_per_call(a, b, 100, 100_000.0).unwrap();
        assert!((us - 20.0).abs() < 1e-9, "{us}");
        assert_eq!(us_per_call(a, b, 100, 0.0), None);
        // A counter that went backwards (never should) yields 0, not a huge number.
        assert_eq!(us_per_call(b, a, 100, 10.0), Some(0.0));
    }

    #[test]
    fn busy_fraction_of_interval() {
        let a = CpuTimes { busy: 0, idle: 0 };
        let b = CpuTimes {
            busy: 150,
            idle: 50,
        };
        assert!((busy_fraction(a, b) - 0.75).abs() < 1e-9);
        assert_eq!(busy_fraction(a, a), 0.0);
    }
}
