//! Per-procedure call counters, cheap enough for the hot path.
//!
//! The AF_XDP workers count into their own cache-line-padded slots (one writer each, no
//! read-modify-write). The kernel shells share one responder between threads, so their
//! counters are sharded by thread: each thread bumps the shard it was given on first use,
//! which keeps cache lines mostly private; readers sum the shards.
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::mount::{procs, MOUNT_PROGRAM};
use crate::socket::{Answer, Responder};

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

/// The slot of an RPC call message: its procedure number when it is a MOUNT call with a
/// known procedure, else the "other" slot. Reads only the fixed call header.
pub fn proc_slot(request: &[u8]) -> usize {
    let word = |at: usize| {
        request
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    // xid, msg_type (0 = CALL), rpcvers, prog, vers, proc
    match (word(4), word(12), word(20)) {
        (Some(0), Some(MOUNT_PROGRAM), Some(p)) if p <= procs::PATHCONF => p as usize,
        _ => PROC_SLOTS - 1,
    }
}

/// A counter array aligned to its own cache lines.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct PaddedCounts(pub [AtomicU64; PROC_SLOTS]);

impl PaddedCounts {
    /// Adds one in a slot written by this thread only (no locked instruction).
    pub fn bump_owned(&self, slot: usize) {
        if let Some(c) = self.0.get(slot) {
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// The current values.
    pub fn snapshot(&self) -> [u64; PROC_SLOTS] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Shards for the kernel shells (more than their usual thread count).
const SHARDS: usize = 16;

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

/// Per-procedure counts shared by several threads.
#[derive(Debug, Default)]
pub struct ShardedCounts {
    shards: [PaddedCounts; SHARDS],
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

    /// The sums over all shards.
    pub fn snapshot(&self) -> [u64; PROC_SLOTS] {
        let mut out = [0; PROC_SLOTS];
        for shard in &self.shards {
            for (o, v) in out.iter_mut().zip(shard.snapshot()) {
                *o += v;
            }
        }
        out
    }
}

/// A [`Responder`] that counts each call by procedure, then delegates.
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

impl<R: Responder> Responder for Counted<R> {
    fn respond(
        &self,
        request: &[u8],
        peer: SocketAddr,
        name: Option<&str>,
        out: &mut [u8],
    ) -> Answer {
        // A call asked again with the peer's name was counted the first time.
        if name.is_none() {
            self.counts.bump(proc_slot(request));
        }
        self.inner.respond(request, peer, name, out)
    }

    fn respond_waited(
        &self,
        request: &[u8],
        peer: SocketAddr,
        name: Option<&str>,
        out: &mut [u8],
    ) -> Answer {
        // Counted when first asked.
        self.inner.respond_waited(request, peer, name, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(prog: u32, procedure: u32) -> Vec<u8> {
        [7, 0, 2, prog, 3, procedure]
            .iter()
            .flat_map(|w: &u32| w.to_be_bytes())
            .collect()
    }

    #[test]
    fn slots_by_procedure() {
        assert_eq!(proc_slot(&call(MOUNT_PROGRAM, 0)), 0);
        assert_eq!(proc_slot(&call(MOUNT_PROGRAM, 1)), 1);
        assert_eq!(proc_slot(&call(MOUNT_PROGRAM, 7)), 7);
        assert_eq!(proc_slot(&call(MOUNT_PROGRAM, 8)), PROC_SLOTS - 1);
        assert_eq!(proc_slot(&call(100_003, 1)), PROC_SLOTS - 1);
        assert_eq!(proc_slot(&[0; 10]), PROC_SLOTS - 1);
        let mut reply = call(MOUNT_PROGRAM, 1);
        reply[7] = 1; // msg_type REPLY
        assert_eq!(proc_slot(&reply), PROC_SLOTS - 1);
    }

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
        assert_eq!(std::mem::align_of::<PaddedCounts>(), 128);
    }
}
