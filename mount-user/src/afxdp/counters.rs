//! One AF_XDP queue's counters: written by its worker only (plain loads and stores, no
//! locked instructions), read by the stats thread.
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::latency::OwnedHistogram;
use crate::stats::procs::PaddedCounts;

/// One queue's counters: written by its worker only, read by the stats thread.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Frames received.
    pub rx: AtomicU64,
    /// Replies put on the TX ring.
    pub tx: AtomicU64,
    /// Frames answered with nothing.
    pub dropped: AtomicU64,
    /// Replies sent through the kernel UDP socket (larger than the MTU, or calls to a
    /// broadcast/multicast address).
    pub via_kernel: AtomicU64,
    /// Calls deferred to the name-lookup thread.
    pub name_lookups: AtomicU64,
    /// Replies with a truncated list.
    pub truncated: AtomicU64,
    /// Rounds that took calls off the RX ring (calls per batch = rx / batches).
    pub batches: AtomicU64,
    /// poll() calls: the worker went to sleep waiting for RX.
    pub polls: AtomicU64,
    /// sendto() calls: TX kicks.
    pub tx_kicks: AtomicU64,
    /// recvfrom() calls: fill-ring wakeups the driver asked for.
    pub fill_kicks: AtomicU64,
    /// recvfrom() calls that busy-polled the queue (`--afxdp-busy-poll`).
    pub busy_polls: AtomicU64,
    /// Calls by procedure, version and outcome.
    pub calls: PaddedCounts,
    /// Time from taking a batch off the RX ring to kicking its replies out, per call.
    pub latency: OwnedHistogram,
}

/// Adds `n` to a counter that only the calling thread writes: a plain load and store,
/// no locked read-modify-write on the hot path.
pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}
