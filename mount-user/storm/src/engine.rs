//! The generator loop, independent of how datagrams travel: slots of outstanding calls,
//! xids that name their slot, closed-loop refill or open-loop pacing, reply matching,
//! timeouts, and the bounded drain at the end.
//!
//! xid = `generation << bits | slot`, with `bits` just enough for the slot count: a reply
//! finds its call in O(1), and a reply to a call that already timed out (same slot, the
//! previous generation) is recognised as late rather than wrong. Nothing is allocated
//! inside the loop: slots, the free list and the statistics are sized up front.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::mix::{Expect, Picker};
use super::validate::{self, Wrong};

/// How a transport moves calls and replies.
pub trait Transport {
    /// Queues a call of template `template`, with `xid` patched in, from client `client`.
    fn queue(&mut self, client: u32, template: u16, xid: u32);
    /// Sends what is queued (as much as the socket/ring takes; the rest stays queued).
    fn flush(&mut self);
    /// Hands every reply that is ready to `sink(client, payload, truncated)`, waiting up
    /// to `wait` for the first one. Errors end the run.
    fn recv(
        &mut self,
        wait: Duration,
        sink: &mut dyn FnMut(u32, &[u8], bool),
    ) -> anyhow::Result<()>;
    /// Calls that could not be sent (they end up lost).
    fn send_errors(&self) -> u64;
    /// Transport details for the report, read once at the end of the run.
    fn report(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Closed loop (a window of outstanding calls) or open loop (a fixed rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Every slot is refilled as soon as its reply arrives.
    Closed,
    /// Calls leave at `rate` per second whatever the replies do; a call due while every
    /// slot is busy is skipped (and counted).
    Open {
        /// Calls per second (of this engine).
        rate: f64,
    },
}

/// What one engine (one thread) does.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Outstanding calls at most.
    pub slots: u32,
    /// Clients the transport has (used round robin, call by call).
    pub clients: u32,
    /// Closed or open loop.
    pub pace: Pace,
    /// Measured calls to send at most.
    pub count: u64,
    /// Calls sent and answered before measuring starts (not counted).
    pub warmup: Duration,
    /// Measured sending time at most.
    pub duration: Duration,
    /// A call unanswered for this long is lost; its slot is reused.
    pub timeout: Duration,
    /// Longest wait for replies after sending stops.
    pub drain_max: Duration,
    /// Seed for the first xid generation (keeps runs and threads apart).
    pub seed: u32,
}

/// Live counters for the progress bar (written by the engine, read by the main thread).
#[derive(Debug, Default)]
pub struct Progress {
    /// Measured calls sent.
    pub sent: AtomicU64,
    /// Measured calls answered.
    pub answered: AtomicU64,
    /// Wrong replies.
    pub wrong: AtomicU64,
}

/// Per mix entry counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryStats {
    /// Calls sent.
    pub sent: u64,
    /// Right replies.
    pub answered: u64,
    /// Wrong replies attributed to this entry's calls.
    pub wrong: u64,
}

/// Why sending stopped (ordered: a later variant is the stronger reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum StopReason {
    /// `--count` calls were sent.
    #[default]
    Count,
    /// `--duration` elapsed.
    Duration,
    /// Ctrl-C (or the caller's stop flag).
    Signal,
}

impl StopReason {
    /// Name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Count => "count",
            StopReason::Duration => "duration",
            StopReason::Signal => "signal",
        }
    }
}

/// What one engine measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Measured calls sent.
    pub sent: u64,
    /// Right replies to measured calls.
    pub answered: u64,
    /// Wrong replies (all reasons).
    pub wrong: u64,
    /// Wrong replies by reason ([`Wrong::index`]).
    pub wrong_by_reason: [u64; Wrong::COUNT],
    /// Replies that came after their call had timed out.
    pub late: u64,
    /// Calls given up after the timeout or at the end of the drain.
    pub timeouts: u64,
    /// Open loop: calls due while every slot was busy (not sent).
    pub skipped: u64,
    /// Calls the transport failed to send.
    pub send_errors: u64,
    /// Per mix entry.
    pub per_entry: Vec<EntryStats>,
    /// Latency of right replies, nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Measured sending time (warmup end to the last send).
    pub measured: Duration,
    /// Time spent draining.
    pub drained: Duration,
    /// Why sending stopped.
    pub stopped_by: StopReason,
}

impl Stats {
    /// Empty statistics for `entries` mix entries.
    pub fn new(entries: usize) -> Stats {
        Stats {
            sent: 0,
            answered: 0,
            wrong: 0,
            wrong_by_reason: [0; Wrong::COUNT],
            late: 0,
            timeouts: 0,
            skipped: 0,
            send_errors: 0,
            per_entry: vec![EntryStats::default(); entries],
            // 1 ns to 1 hour at 3 significant digits; these bounds are valid constants.
            latency_ns: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .unwrap_or_else(|_| unreachable_histogram()),
            measured: Duration::ZERO,
            drained: Duration::ZERO,
            stopped_by: StopReason::default(),
        }
    }

    /// Adds another engine's statistics (threads run side by side: the longest measured
    /// time stands for the run).
    pub fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.wrong += other.wrong;
        for (a, b) in self.wrong_by_reason.iter_mut().zip(other.wrong_by_reason) {
            *a += b;
        }
        self.late += other.late;
        self.timeouts += other.timeouts;
        self.skipped += other.skipped;
        self.send_errors += other.send_errors;
        for (a, b) in self.per_entry.iter_mut().zip(&other.per_entry) {
            a.sent += b.sent;
            a.answered += b.answered;
            a.wrong += b.wrong;
        }
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        self.measured = self.measured.max(other.measured);
        self.drained = self.drained.max(other.drained);
        // The strongest reason wins: a signal over the clock over the count.
        self.stopped_by = self.stopped_by.max(other.stopped_by);
    }

    /// Calls neither answered nor answered wrongly: `sent - answered - wrong`.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.answered + self.wrong)
    }

    fn wrong(&mut self, why: Wrong, entry: Option<u16>) {
        self.wrong += 1;
        self.wrong_by_reason[why.index()] += 1;
        if let Some(e) = entry.and_then(|e| self.per_entry.get_mut(usize::from(e))) {
            e.wrong += 1;
        }
    }
}

/// `Histogram::new_with_bounds(1, 3.6e12, 3)` cannot fail; this keeps the constructor
/// free of `expect` while still stopping loudly if the crate ever disagrees.
fn unreachable_histogram() -> Histogram<u64> {
    Histogram::new(3).unwrap_or_else(|e| panic!("hdrhistogram refused 3 digits: {e}"))
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// xid of the call in flight.
    xid: u32,
    /// xid of the last call given up on this slot (to recognise its late reply).
    stale: Option<u32>,
    template: u16,
    /// The client that sent the call in flight.
    client: u32,
    busy: bool,
    measured: bool,
    /// When the call left (or, open loop, was due), ns since the engine's epoch.
    sent_ns: u64,
}

/// The engine's state apart from the transport (so a reply callback can borrow it while
/// the transport is borrowed too).
struct State<'a> {
    cfg: &'a EngineConfig,
    expects: &'a [(u16, Expect)],
    slots: Vec<Slot>,
    free: Vec<u32>,
    bits: u32,
    mask: u32,
    busy: u32,
    stats: Stats,
    /// Measuring starts at this many ns since the epoch.
    measure_from: u64,
    /// Replies for which a slot was freed in a closed loop, to be refilled.
    refill: bool,
    /// The client of the next call: calls go round robin over every client, so all of
    /// them stay active even with fewer slots than clients.
    next_client: u32,
}

impl State<'_> {
    fn issue<T: Transport + ?Sized>(
        &mut self,
        io: &mut T,
        picker: &mut Picker,
        slot: u32,
        stamp: u64,
        now: u64,
    ) {
        let template = picker.next_template();
        let s = &mut self.slots[slot as usize];
        let generation = (s.xid >> self.bits).wrapping_add(1);
        s.xid = generation.checked_shl(self.bits).unwrap_or(0) | slot;
        s.template = template;
        s.client = self.next_client;
        self.next_client += 1;
        if self.next_client == self.cfg.clients {
            self.next_client = 0;
        }
        s.busy = true;
        s.measured = now >= self.measure_from;
        s.sent_ns = stamp;
        self.busy += 1;
        if s.measured {
            self.stats.sent += 1;
            let entry = self.expects[usize::from(template)].0;
            if let Some(e) = self.stats.per_entry.get_mut(usize::from(entry)) {
                e.sent += 1;
            }
        }
        io.queue(s.client, template, s.xid);
    }

    fn release(&mut self, slot: u32) {
        self.slots[slot as usize].busy = false;
        self.busy -= 1;
        self.free.push(slot);
    }

    fn on_reply(&mut self, client: u32, reply: &[u8], truncated: bool, now: u64) {
        let measuring = now >= self.measure_from;
        let Some(xid) = validate::reply_xid(reply) else {
            if measuring {
                self.stats.wrong(Wrong::Garbage, None);
            }
            return;
        };
        let index = xid & self.mask;
        let Some(slot) = self.slots.get(index as usize).copied() else {
            if measuring {
                self.stats.wrong(Wrong::UnknownXid, None);
            }
            return;
        };
        if !slot.busy || slot.xid != xid {
            if slot.stale == Some(xid) {
                self.slots[index as usize].stale = None;
                self.stats.late += 1;
            } else if measuring {
                self.stats.wrong(Wrong::UnknownXid, None);
            }
            return;
        }
        let (entry, expect) = self.expects[usize::from(slot.template)];
        let verdict = if truncated {
            Err(Wrong::Truncated)
        } else if client != slot.client {
            Err(Wrong::WrongClient)
        } else {
            validate::check(reply, &expect)
        };
        if slot.measured {
            match verdict {
                Ok(()) => {
                    self.stats.answered += 1;
                    if let Some(e) = self.stats.per_entry.get_mut(usize::from(entry)) {
                        e.answered += 1;
                    }
                    self.stats
                        .latency_ns
                        .saturating_record(now.saturating_sub(slot.sent_ns).max(1));
                }
                Err(why) => self.stats.wrong(why, Some(entry)),
            }
        }
        self.release(index);
        self.refill = true;
    }

    /// Gives up on calls older than the timeout; returns how many.
    fn expire(&mut self, now: u64, older_than: u64) -> u32 {
        let mut expired = 0;
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s.busy && now.saturating_sub(s.sent_ns) >= older_than {
                self.slots[i].stale = Some(s.xid);
                if s.measured {
                    self.stats.timeouts += 1;
                }
                self.release(i as u32);
                expired += 1;
            }
        }
        expired
    }
}

/// Nanoseconds in a duration, saturating.
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Longest sleep in one receive wait, so the stop flag and timeouts are looked at often.
const MAX_WAIT: Duration = Duration::from_millis(5);
/// Open loop: calls due this soon are sent together.
const OPEN_TICK: Duration = Duration::from_micros(200);
/// Calls issued per loop round at most (then replies are read again).
const ISSUE_BATCH: usize = 256;
/// How often timeouts are scanned.
const EXPIRE_EVERY: Duration = Duration::from_millis(10);

/// Runs one engine to completion: sends until `count`, `duration` or `stop`, then drains.
/// `expects[t]` = (mix entry, expectation) of template `t`.
pub fn run<T: Transport + ?Sized>(
    io: &mut T,
    expects: &[(u16, Expect)],
    mut picker: Picker,
    cfg: &EngineConfig,
    stop: &AtomicBool,
    progress: &Progress,
) -> anyhow::Result<Stats> {
    let entries = expects
        .iter()
        .map(|e| usize::from(e.0) + 1)
        .max()
        .unwrap_or(0);
    let slots = cfg.slots.clamp(1, 1 << 16);
    let clients = cfg.clients.max(1);
    let cfg = &EngineConfig {
        slots,
        clients,
        ..cfg.clone()
    };
    let bits = 32 - (slots - 1).leading_zeros();
    let mask = if bits == 0 { 0 } else { (1u32 << bits) - 1 };
    let mut state = State {
        cfg,
        expects,
        slots: (0..slots)
            .map(|i| Slot {
                // Generation `seed`: different runs use different xids.
                xid: cfg.seed.checked_shl(bits).unwrap_or(0) | i,
                ..Slot::default()
            })
            .collect(),
        free: (0..slots).rev().collect(),
        bits,
        mask,
        busy: 0,
        stats: Stats::new(entries),
        measure_from: ns(cfg.warmup),
        refill: false,
        next_client: 0,
    };
    let epoch = Instant::now();
    let now_ns = || ns(epoch.elapsed());
    let send_until = cfg.warmup.saturating_add(cfg.duration);
    let timeout = ns(cfg.timeout).max(1);
    let mut issued_total: u64 = 0;
    let mut last_expire = 0u64;
    let mut last_send = 0u64;
    let stopped_by = loop {
        let now = now_ns();
        if stop.load(Ordering::Relaxed) {
            break StopReason::Signal;
        }
        if now >= ns(send_until) {
            break StopReason::Duration;
        }
        let measuring = now >= state.measure_from;
        if measuring && state.stats.sent >= cfg.count {
            break StopReason::Count;
        }
        // Issue.
        let budget = |st: &State<'_>| {
            if now >= st.measure_from {
                cfg.count.saturating_sub(st.stats.sent)
            } else {
                u64::MAX
            }
        };
        let mut wait = MAX_WAIT;
        match cfg.pace {
            Pace::Closed => {
                let mut n = 0;
                while n < ISSUE_BATCH && budget(&state) > 0 {
                    let Some(slot) = state.free.pop() else { break };
                    state.issue(io, &mut picker, slot, now, now);
                    n += 1;
                }
            }
            Pace::Open { rate } => {
                // Calls due within the next tick leave now, together: waking up for
                // every single call costs more than the call on a small VM (timer
                // interrupts are VM exits). One sent early is timed from when it left.
                let tick = ns(OPEN_TICK);
                // Call i is due at i / rate: calls 0..=floor(t * rate) are due by t.
                let due = ((now + tick) as f64 * rate / 1e9) as u64 + 1;
                let mut n = 0;
                while issued_total < due && n < ISSUE_BATCH && budget(&state) > 0 {
                    let scheduled = (issued_total as f64 * 1e9 / rate) as u64;
                    match state.free.pop() {
                        // A call sent late is timed from when it was due, not when it
                        // left: a generator falling behind must not hide the server's
                        // delay (coordinated omission).
                        Some(slot) => {
                            let stamp = scheduled.min(now);
                            state.issue(io, &mut picker, slot, stamp, now);
                        }
                        None if scheduled >= state.measure_from => state.stats.skipped += 1,
                        None => {}
                    }
                    issued_total += 1;
                    n += 1;
                }
                let next = ((issued_total as f64) * 1e9 / rate) as u64;
                wait = Duration::from_nanos(next.saturating_sub(now_ns() + tick))
                    .max(OPEN_TICK)
                    .min(MAX_WAIT);
            }
        }
        io.flush();
        last_send = now;
        if state.refill && cfg.pace == Pace::Closed {
            // Replies freed slots last round: do not sleep before refilling them.
            wait = Duration::ZERO;
        }
        state.refill = false;
        {
            let st = &mut state;
            io.recv(wait, &mut |client, reply, truncated| {
                let t = now_ns();
                st.on_reply(client, reply, truncated, t);
            })?;
        }
        let now = now_ns();
        if now.saturating_sub(last_expire) >= ns(EXPIRE_EVERY) {
            last_expire = now;
            state.expire(now, timeout);
        }
        progress.sent.store(state.stats.sent, Ordering::Relaxed);
        progress
            .answered
            .store(state.stats.answered, Ordering::Relaxed);
        progress.wrong.store(state.stats.wrong, Ordering::Relaxed);
    };
    state.stats.measured = Duration::from_nanos(last_send.saturating_sub(state.measure_from));
    state.stats.stopped_by = stopped_by;

    // Drain: ten times the p99 seen so far, at least 500 ms, at most the drain limit.
    let p99 = state.stats.latency_ns.value_at_quantile(0.99);
    let drain = Duration::from_nanos(p99.saturating_mul(10))
        .max(Duration::from_millis(500))
        .min(cfg.drain_max);
    let drain_start = Instant::now();
    io.flush();
    while state.busy > 0 && drain_start.elapsed() < drain {
        if stop.load(Ordering::Relaxed) && stopped_by != StopReason::Signal {
            break;
        }
        let st = &mut state;
        io.recv(MAX_WAIT, &mut |client, reply, truncated| {
            let t = now_ns();
            st.on_reply(client, reply, truncated, t);
        })?;
        io.flush();
    }
    state.stats.drained = drain_start.elapsed();
    // Whatever is still out is lost.
    state.expire(u64::MAX, 0);
    state.stats.send_errors = io.send_errors();
    progress.sent.store(state.stats.sent, Ordering::Relaxed);
    progress
        .answered
        .store(state.stats.answered, Ordering::Relaxed);
    progress.wrong.store(state.stats.wrong, Ordering::Relaxed);
    Ok(state.stats)
}
