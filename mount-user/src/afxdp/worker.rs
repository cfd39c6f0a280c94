//! One worker per queue: pinned to a core, owner of its socket's rings and UMEM.
//!
//! Frame life cycle (no copy of the request, no allocation): a free frame goes to the
//! fill ring, comes back on the RX ring with a request, becomes the reply in place and
//! goes out on the TX ring, then returns on the completion ring to the free stack.
//! Frames that get no AF_XDP reply (dropped, answered through the kernel socket,
//! deferred for a name lookup) go straight back to the free stack.
//!
//! Syscalls (copy mode transmits only inside one): a worker sleeps in poll(), and the
//! replies of its last batch ride on that poll() (the kernel transmits before it sleeps)
//! unless more calls already wait, when sendto() sends them at once; so a lone call costs
//! one syscall, and no reply waits for a batch to fill. Busy polling is opt-in
//! (`--afxdp-busy-poll`). docs/afxdp-worker.md has the choices, what was left out and
//! the figures.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::socket::udp::UDP_MAX_MESSAGE;
use mount_xdp::xsk::{BindMode, Xsk, FRAMES, FRAME_SIZE};

pub use super::answer::{handle, resolver, send_via_kernel, Deferred, Shared};
use super::counters::add;
pub use super::counters::QueueCounters;

/// Descriptors taken from the RX ring per round.
pub const BATCH: u32 = 64;
/// How long an idle worker sleeps in poll() before looking at the stop flag.
const IDLE_POLL_MS: i32 = 100;
/// How long a stopping worker keeps kicking TX so that queued replies leave.
const DRAIN: Duration = Duration::from_millis(300);

/// A worker, ready to run on its own thread.
pub struct Worker {
    /// The socket (moved to the worker thread).
    pub xsk: Xsk,
    /// Its queue, for logs.
    pub queue: u32,
    /// Where to pin the thread.
    pub core: Option<core_affinity::CoreId>,
    /// Its counters.
    pub counters: Arc<QueueCounters>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Told once the fill ring holds frames: steering before that would drop calls.
    pub ready: std::sync::mpsc::Sender<u32>,
    /// Whether TX rides on poll(); [`PollTx::new`] of the socket's bind mode.
    pub poll_tx: PollTx,
    /// Descriptors the kernel transmits per sendto() or poll() (copy mode).
    pub tx_budget: u32,
    /// Busy-poll this long before sleeping (the socket was set up for it); None: sleep.
    pub busy_poll: Option<Duration>,
}

impl Worker {
    /// The worker loop; returns when the stop flag is set and the TX ring is drained.
    pub fn run(mut self) {
        if let Some(core) = self.core {
            if !core_affinity::set_for_current(core) {
                tracing::warn!(
                    queue = self.queue,
                    core = core.id,
                    "pinning the worker failed"
                );
            }
        }
        // Everything the loop needs is allocated here, once.
        let mut free: Vec<u64> = (0..u64::from(FRAMES))
            .map(|i| i * FRAME_SIZE as u64)
            .collect();
        let mut scratch = vec![0u8; UDP_MAX_MESSAGE];
        let mut stopping: Option<Instant> = None;
        self.refill(&mut free);
        let _ = self.ready.send(self.queue);
        loop {
            self.reclaim(&mut free);
            self.refill(&mut free);
            let ready = self.xsk.rx.available(BATCH).min(BATCH);
            if ready == 0 {
                if self.shared.stop.load(Ordering::Relaxed) {
                    self.flush_tx(&mut free);
                    let since = *stopping.get_or_insert_with(Instant::now);
                    if self.xsk.tx.pending() == 0 || since.elapsed() > DRAIN {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                } else {
                    self.idle(&mut free);
                }
                continue;
            }
            self.make_tx_room(ready, &mut free);
            let batch_start = Instant::now();
            add(&self.counters.rx, u64::from(ready));
            add(&self.counters.batches, 1);
            for _ in 0..ready {
                let desc = self.xsk.rx.pop();
                let reply = match self.xsk.frame_mut(desc.addr) {
                    Some(frame) => handle(
                        &self.shared,
                        &self.counters,
                        frame,
                        desc.len as usize,
                        &mut scratch,
                    ),
                    None => None,
                };
                match reply {
                    Some(len) => self.xsk.tx.push(libc::xdp_desc {
                        addr: desc.addr,
                        len,
                        options: 0,
                    }),
                    None => free.push(desc.addr - desc.addr % FRAME_SIZE as u64),
                }
            }
            self.xsk.rx.release();
            self.xsk.tx.commit();
            // More calls waiting: kick now, or these replies would wait for the next batch.
            // None: the poll() that comes next transmits them (see `idle`), one syscall
            // for both.
            if !self.poll_tx.rides() || self.xsk.rx.available(1) > 0 {
                self.flush_tx(&mut free);
            }
            (self.counters.latency).record_owned(batch_start.elapsed(), u64::from(ready));
        }
        tracing::debug!(queue = self.queue, "AF_XDP worker stopped");
    }

    /// Nothing to receive: sleep in poll() until a call comes. In copy mode poll() also
    /// transmits (`xsk_poll` drives TX, up to the TX budget, before it sleeps), so the
    /// replies of the last batch leave with the same syscall; more than the budget are
    /// kicked out with sendto() first. While replies are pending the poll is short
    /// ([`PollTx::check_ms`]), so a kernel whose poll() does not transmit, or a device
    /// that refused them, is noticed (and sendto() used) instead of holding replies until
    /// the idle timeout.
    fn idle(&mut self, free: &mut Vec<u64>) {
        if let Some(spin) = self.busy_poll {
            if self.spin(spin, free) {
                return;
            }
        }
        let mut pending = self.xsk.tx.pending();
        if pending > 0 && !(self.poll_tx.rides() && pending <= self.tx_budget) {
            self.flush_tx(free);
            pending = self.xsk.tx.pending();
            if pending > self.tx_budget || (pending > 0 && !self.poll_tx.rides()) {
                // The kernel did not take them all: retry next round rather than sleep.
                return;
            }
        }
        add(&self.counters.polls, 1);
        let timeout = if pending > 0 {
            self.poll_tx.check_ms()
        } else {
            IDLE_POLL_MS
        };
        let woke = self.xsk.wait_rx(timeout);
        if pending > 0 && !woke {
            let sent = self.xsk.tx.pending() < pending;
            if self.poll_tx.observe(sent) {
                tracing::warn!(
                    queue = self.queue,
                    "poll() does not transmit on this AF_XDP socket; kicking TX with sendto()"
                );
            }
        }
    }

    /// Busy-polls the queue for up to `spin` (each recvfrom() runs the device's NAPI poll
    /// here, so frames arrive without a wakeup of the NAPI thread or of this one); true
    /// when calls arrived. Pending replies are kicked out first: a spin never holds them.
    fn spin(&mut self, spin: Duration, free: &mut Vec<u64>) -> bool {
        if self.xsk.tx.pending() > 0 {
            self.flush_tx(free);
        }
        let start = Instant::now();
        loop {
            add(&self.counters.busy_polls, 1);
            self.xsk.busy_poll();
            if self.xsk.rx.available(1) > 0 {
                return true;
            }
            if start.elapsed() >= spin || self.shared.stop.load(Ordering::Relaxed) {
                return false;
            }
        }
    }

    /// Completed TX frames back to the free stack.
    fn reclaim(&mut self, free: &mut Vec<u64>) {
        let n = self.xsk.completion.available(RING_BATCH);
        for _ in 0..n {
            let addr = self.xsk.completion.pop();
            free.push(addr - addr % FRAME_SIZE as u64);
        }
        if n > 0 {
            self.xsk.completion.release();
        }
    }

    /// Free frames to the fill ring.
    fn refill(&mut self, free: &mut Vec<u64>) {
        let room = self.xsk.fill.free(free.len() as u32).min(free.len() as u32);
        for _ in 0..room {
            if let Some(addr) = free.pop() {
                self.xsk.fill.push(addr);
            }
        }
        if room > 0 {
            self.xsk.fill.commit();
            if self.xsk.fill.needs_wakeup() {
                add(&self.counters.fill_kicks, 1);
                self.xsk.kick_fill();
            }
        }
    }

    /// Makes sure `n` TX entries are free before taking `n` requests off the RX ring, so
    /// no reply is ever dropped for want of ring space. The free count is refreshed
    /// (cached consumer index), then the kernel is kicked until it has consumed enough.
    fn make_tx_room(&mut self, n: u32, free: &mut Vec<u64>) {
        let start = Instant::now();
        while self.xsk.tx.free(n) < n {
            self.kick(free);
            if start.elapsed() > Duration::from_millis(50) {
                // The kernel is not consuming (link down?): don't spin a core flat out.
                std::thread::sleep(Duration::from_millis(1));
            }
            if self.shared.stop.load(Ordering::Relaxed) && start.elapsed() > DRAIN {
                return;
            }
        }
    }

    /// Gets queued replies out. Copy mode transmits only inside sendto(), at most 32
    /// descriptors per call, so kick while entries are pending; zero-copy only when the
    /// driver asks (need_wakeup).
    fn flush_tx(&mut self, free: &mut Vec<u64>) {
        match self.xsk.mode() {
            BindMode::Copy => {
                // Enough kicks for a full ring; what remains is retried next round.
                for _ in 0..(mount_xdp::xsk::RING_SIZE / 32 + 2) {
                    if self.xsk.tx.pending() == 0 {
                        break;
                    }
                    self.kick(free);
                }
            }
            BindMode::ZeroCopy => {
                if self.xsk.tx.pending() > 0 && self.xsk.tx.needs_wakeup() {
                    self.kick(free);
                }
            }
        }
    }

    fn kick(&mut self, free: &mut Vec<u64>) {
        add(&self.counters.tx_kicks, 1);
        if let Err(e) = self.xsk.kick_tx() {
            if let Some(suppressed) = self.shared.errors.allow() {
                tracing::warn!(queue = self.queue, error = %e, suppressed, "AF_XDP TX kick failed");
            }
        }
        // The kernel stops sending when the completion ring is full: empty it.
        self.reclaim(free);
    }
}

/// Completions taken per look (the whole ring if that many are ready).
const RING_BATCH: u32 = mount_xdp::xsk::RING_SIZE;

/// How long a poll() that is to transmit pending replies may sleep while riding is not yet
/// confirmed: if it did not send them, they have waited this long at most.
const POLL_TX_CHECK_MS: i32 = 1;
/// The same once [`POLL_TX_CONFIRM`] rides in a row were seen to transmit: the bound on
/// what a reply may wait should the device refuse it later (a full NIC queue). Longer,
/// so that calls under 1000/s do not pay a second poll() each.
const POLL_TX_TRUSTED_MS: i32 = 20;
/// Timed-out rides in a row that did transmit before the longer timeout is used.
const POLL_TX_CONFIRM: u8 = 8;
/// Timed-out polls in a row that left the replies pending before poll() is given up as a
/// way to transmit (one may be a transient EAGAIN).
const POLL_TX_STRIKES: u8 = 3;

/// Whether replies ride on the poll() that follows a batch instead of a sendto() of their
/// own: yes in copy mode until polls are seen not to transmit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollTx {
    /// Still trusted.
    on: bool,
    /// Timed-out polls in a row that sent nothing.
    strikes: u8,
    /// Timed-out polls in a row that sent (up to [`POLL_TX_CONFIRM`]).
    confirmed: u8,
}

impl PollTx {
    /// Trusted in copy mode (zero-copy kicks only when the driver asks anyway).
    pub fn new(mode: BindMode) -> Self {
        PollTx {
            on: mode == BindMode::Copy,
            strikes: 0,
            confirmed: 0,
        }
    }

    /// Whether the next poll() is to transmit.
    pub fn rides(self) -> bool {
        self.on
    }

    /// How long a poll() with replies riding on it may sleep.
    pub fn check_ms(self) -> i32 {
        if self.confirmed >= POLL_TX_CONFIRM {
            POLL_TX_TRUSTED_MS
        } else {
            POLL_TX_CHECK_MS
        }
    }

    /// After a poll() that timed out with replies pending: did they leave? Returns true
    /// when this turns riding off.
    pub fn observe(&mut self, sent: bool) -> bool {
        if !self.on {
            return false;
        }
        if sent {
            self.strikes = 0;
            self.confirmed = self.confirmed.saturating_add(1).min(POLL_TX_CONFIRM);
            return false;
        }
        // A miss: back to short checks until it has transmitted again a few times.
        self.confirmed = 0;
        self.strikes += 1;
        if self.strikes >= POLL_TX_STRIKES {
            self.on = false;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_tx_is_given_up_after_strikes_in_a_row() {
        assert!(!PollTx::new(BindMode::ZeroCopy).rides());
        let mut p = PollTx::new(BindMode::Copy);
        assert!(p.rides());
        // A miss between successes is forgiven.
        assert!(!p.observe(false));
        assert!(!p.observe(false));
        assert!(!p.observe(true));
        assert!(!p.observe(false) && !p.observe(false));
        assert!(p.rides());
        assert!(p.observe(false), "the third miss in a row turns it off");
        assert!(!p.rides());
        assert!(!p.observe(false), "reported once");
    }

    #[test]
    fn poll_tx_waits_longer_once_confirmed_and_shorter_after_a_miss() {
        let mut p = PollTx::new(BindMode::Copy);
        assert_eq!(p.check_ms(), POLL_TX_CHECK_MS);
        for _ in 0..POLL_TX_CONFIRM {
            assert!(!p.observe(true));
        }
        assert_eq!(p.check_ms(), POLL_TX_TRUSTED_MS);
        assert!(!p.observe(false));
        assert_eq!(p.check_ms(), POLL_TX_CHECK_MS, "a miss: short checks again");
        assert!(p.rides());
    }
}
