//! Call counters, cheap enough for the hot path: one slot per procedure, version and
//! outcome ([`super::calls`]).
//!
//! The AF_XDP workers count into their own cache-line-padded slots (one writer each, no
//! read-modify-write). The kernel shells share one responder between threads, so their
//! counters are sharded by thread: each thread bumps the shard it was given on first use,
//! which keeps cache lines mostly private; readers sum the shards.
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use mount_proto::exports::HostFacts;

use super::calls::{call_slot, Outcome, CALL_SLOTS};
use crate::service::{Answer, Responder};

/// Procedure slots: NULL..PATHCONF (0..=7), then one for everything else.
pub const PROC_SLOTS: usize = 9;
/// Names of the slots, in order.
pub const PROC_NAMES: [&str; PROC_SLOTS] = [
    "null",
    "mnt",
    "dump",
    "umnt",
    "umntall",
    "export",
    "exportall",
    "pathconf",
    "other",
];

/// A counter array aligned to its own cache lines.
#[repr(align(128))]
#[derive(Debug)]
pub struct PaddedCounts(pub [AtomicU64; CALL_SLOTS]);

impl Default for PaddedCounts {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl PaddedCounts {
    /// Adds one in a slot written by this thread only (no locked instruction).
    pub fn bump_owned(&self, slot: usize) {
        if let Some(c) = self.0.get(slot) {
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Adds the current values to `sums` (one entry per slot).
    pub fn add_to(&self, sums: &mut [u64]) {
        for (sum, c) in sums.iter_mut().zip(&self.0) {
            *sum += c.load(Ordering::Relaxed);
        }
    }

    /// The current values, one per slot.
    pub fn snapshot(&self) -> Vec<u64> {
        let mut out = vec![0; CALL_SLOTS];
        self.add_to(&mut out);
        out
    }
}

/// Shards for the kernel shells (more than their usual thread count).
const SHARDS: usize = 16;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// Call counts shared by several threads.
#[derive(Debug)]
pub struct ShardedCounts {
    shards: Box<[PaddedCounts; SHARDS]>,
}

impl Default for ShardedCounts {
    fn default() -> Self {
        Self {
            shards: Box::new(std::array::from_fn(|_| PaddedCounts::default())),
        }
    }
}

impl ShardedCounts {
    /// Adds one to `slot` in this thread's shard.
    pub fn bump(&self, slot: usize) {
        let shard = SHARD.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS);
            }
            s.get()
        });
        if let Some(c) = self.shards[shard].0.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sums over all shards, one per slot.
    pub fn snapshot(&self) -> Vec<u64> {
        let mut out = vec![0; CALL_SLOTS];
        for shard in self.shards.iter() {
            shard.add_to(&mut out);
        }
        out
    }
}

/// A [`Responder`] that delegates, then counts the call by procedure, version and
/// outcome.
pub struct Counted<R> {
    inner: R,
    counts: Arc<ShardedCounts>,
}

impl<R> Counted<R> {
    /// Counts the calls answered by `inner` into `counts`.
    pub fn new(inner: R, counts: Arc<ShardedCounts>) -> Self {
        Self { inner, counts }
    }
}

impl<R: Responder> Counted<R> {
    /// Counts a final answer; one that needs a name or an upstream handle is counted when
    /// it is asked again.
    fn count(&self, request: &[u8], out: &[u8], answer: Answer) -> Answer {
        let outcome = match answer {
            Answer::NeedName | Answer::NeedUpstream => return answer,
            Answer::Reply { len, .. } => Outcome::Reply(out.get(..len).unwrap_or_default()),
            Answer::Drop => Outcome::NoReply,
        };
        self.counts.bump(call_slot(request, outcome));
        answer
    }
}

impl<R: Responder> Responder for Counted<R> {
    fn respond(
        &self,
        request: &[u8],
        peer: SocketAddr,
        host: Option<&HostFacts>,
        out: &mut [u8],
    ) -> Answer {
        let answer = self.inner.respond(request, peer, host, out);
        self.count(request, out, answer)
    }

    fn respond_waited(
        &self,
        request: &[u8],
        peer: SocketAddr,
        host: Option<&HostFacts>,
        out: &mut [u8],
    ) -> Answer {
        let answer = self.inner.respond_waited(request, peer, host, out);
        self.count(request, out, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_counts_sum_over_threads() {
        let counts = Arc::new(ShardedCounts::default());
        std::thread::scope(|s| {
            for _ in 0..4 {
                let counts = &counts;
                s.spawn(move || {
                    for _ in 0..1000 {
                        counts.bump(1);
                    }
                    counts.bump(5);
                });
            }
        });
        let snap = counts.snapshot();
        assert_eq!(snap[1], 4000);
        assert_eq!(snap[5], 4);
        assert_eq!(snap[0], 0);
    }

    #[test]
    fn owned_counts() {
        let c = PaddedCounts::default();
        c.bump_owned(2);
        c.bump_owned(2);
        c.bump_owned(99); // out of range: ignored
        assert_eq!(c.snapshot()[2], 2);
        assert_eq!(c.snapshot().len(), CALL_SLOTS);
        assert_eq!(std::mem::align_of::<PaddedCounts>(), 128);
    }
}
