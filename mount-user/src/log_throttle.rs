//! A throttle for warnings that floods could repeat (full queues, refused connections,
//! rate limits): one line per interval, with the number suppressed since the last.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Lets a warning through at most once per interval, so that a flood (full queue,
/// connection storm) cannot flood the log too; reports how many were suppressed.
#[derive(Debug)]
pub struct LogThrottle {
    start: Instant,
    interval_ms: u64,
    /// Milliseconds since `start` of the last message let through, plus one (0 = never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// At most one message per `interval`.
    pub fn new(interval: std::time::Duration) -> Self {
        Self {
            start: Instant::now(),
            interval_ms: interval.as_millis().max(1) as u64,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last one)` when this message may be logged.
    pub fn allow(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Only the thread that wins the exchange logs.
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| self.suppressed.swap(0, Ordering::Relaxed))
    }
}
