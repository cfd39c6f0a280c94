//! Gateway counters (atomics, bumped by the learner) and what `stats` shows of them.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::Target;

/// Counters of the learner.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    /// Paths whose handle was learned for the first time.
    pub learned: AtomicU64,
    /// Answers that confirmed a known handle.
    pub refreshed: AtomicU64,
    /// Answers with a handle different from the one served until then.
    pub changed: AtomicU64,
    /// MNT answers with a non-zero status (upstream refuses the path).
    pub refused: AtomicU64,
    /// Calls that got no usable answer (timeout, garbage, refused call, queue full).
    pub failed: AtomicU64,
    calls: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
    latency_last_us: AtomicU64,
}

impl UpstreamCounters {
    /// Add one to `counter`.
    pub fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Record how long one upstream MNT took (answered or not).
    pub fn record_latency(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
        self.latency_max_us.fetch_max(us, Relaxed);
        self.latency_last_us.store(us, Relaxed);
    }

    /// The report for `stats`.
    pub fn report(&self, target: &Target, up: bool, cached: usize) -> UpstreamReport {
        let calls = self.calls.load(Relaxed);
        UpstreamReport {
            upstream: match target.port {
                Some(p) => std::net::SocketAddr::new(target.host, p).to_string(),
                None => format!("{} (port from its portmapper)", target.host),
            },
            program: target.program,
            up,
            cached: cached as u64,
            learned: self.learned.load(Relaxed),
            refreshed: self.refreshed.load(Relaxed),
            changed: self.changed.load(Relaxed),
            refused: self.refused.load(Relaxed),
            failed: self.failed.load(Relaxed),
            calls,
            latency_avg_us: self
                .latency_sum_us
                .load(Relaxed)
                .checked_div(calls)
                .unwrap_or(0),
            latency_max_us: self.latency_max_us.load(Relaxed),
            latency_last_us: self.latency_last_us.load(Relaxed),
        }
    }
}

/// Gateway mode as `xdp-mountd stats` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpstreamReport {
    /// Upstream's MOUNT address.
    pub upstream: String,
    /// The program number asked for.
    pub program: u32,
    /// Whether the last call was answered.
    pub up: bool,
    /// Paths with a learned answer.
    pub cached: u64,
    /// Handles learned for the first time.
    pub learned: u64,
    /// Refreshes that confirmed the handle.
    pub refreshed: u64,
    /// Refreshes that found a different handle.
    pub changed: u64,
    /// MNT answers with a non-zero status.
    pub refused: u64,
    /// Calls without a usable answer.
    pub failed: u64,
    /// MNT calls made (v3; answered or not).
    pub calls: u64,
    /// Mean time per call, µs.
    pub latency_avg_us: u64,
    /// Longest call, µs.
    pub latency_max_us: u64,
    /// Last call, µs.
    pub latency_last_us: u64,
}

impl UpstreamReport {
    /// Lines for the `stats` table.
    pub fn to_lines(&self) -> String {
        format!(
            "upstream {} (program {}): {}\n  cached {}  learned {}  refreshed {}  changed {}  refused {}  failed {}\n  calls {}  latency avg {} µs  max {} µs  last {} µs\n",
            self.upstream,
            self.program,
            if self.up { "up" } else { "DOWN" },
            self.cached,
            self.learned,
            self.refreshed,
            self.changed,
            self.refused,
            self.failed,
            self.calls,
            self.latency_avg_us,
            self.latency_max_us,
            self.latency_last_us
        )
    }
}
