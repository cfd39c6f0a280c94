//! A latency histogram cheap enough for an AF_XDP worker: the worker times each RX batch
//! (two clock reads per batch, not per call) and adds the batch's calls to one bucket of
//! its own, with a plain load and store (it is the only writer).
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in nanoseconds: 1 µs doubling to about 8 ms; one more
/// bucket (+Inf) takes the rest.
pub const BOUNDS_NANOS: [u64; 14] = [
    1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000, 1_024_000,
    2_048_000, 4_096_000, 8_192_000,
];
const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// Buckets written by one thread, read by the stats thread.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct OwnedHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

fn add_owned(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl OwnedHistogram {
    /// Records `calls` calls that each took (at most) `elapsed`. Only the owning thread
    /// may call this.
    pub fn record_owned(&self, elapsed: Duration, calls: u64) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BUCKETS - 1);
        add_owned(&self.buckets[bucket], calls);
        add_owned(&self.sum_nanos, nanos.saturating_mul(calls));
    }

    /// Adds this histogram's current values to `report`.
    pub fn add_to(&self, report: &mut LatencyReport) {
        if report.buckets.len() != BUCKETS {
            report.buckets = vec![0; BUCKETS];
        }
        for (sum, b) in report.buckets.iter_mut().zip(&self.buckets) {
            *sum += b.load(Ordering::Relaxed);
        }
        report.sum_seconds += self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    }
}

/// A histogram as reported: counts per bucket (not cumulative; the last is +Inf).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyReport {
    /// Calls per bucket of [`BOUNDS_NANOS`], then the +Inf bucket.
    pub buckets: Vec<u64>,
    /// The sum of the recorded durations, in seconds.
    pub sum_seconds: f64,
}

impl LatencyReport {
    /// (upper bound in seconds, cumulative count) per bucket, without +Inf.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        BOUNDS_NANOS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, &n)| {
                total += n;
                (bound as f64 / 1e9, total)
            })
            .collect()
    }

    /// Every recorded call.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_upper_bound() {
        let h = OwnedHistogram::default();
        h.record_owned(Duration::from_nanos(1_000), 3); // on the bound: first bucket
        h.record_owned(Duration::from_micros(3), 2);
        h.record_owned(Duration::from_secs(1), 1); // +Inf
        let mut r = LatencyReport::default();
        h.add_to(&mut r);
        h.add_to(&mut r); // a second worker with the same values
        assert_eq!(r.count(), 12);
        let c = r.cumulative();
        assert_eq!(c[0], (1e-6, 6));
        assert_eq!(c[2].1, 10);
        assert_eq!(c.last().map(|x| x.1), Some(10));
        assert!((r.sum_seconds - 2.0 * (3e-6 + 6e-6 + 1.0)).abs() < 1e-9);
    }
}
