//! Gateway mode (`serve --upstream`): root file handles learned from the real MOUNT server,
//! cached and refreshed off the fast path.
//!
//! One learner thread owns the upstream conversation ([`client::MountClient`]); everything
//! else asks it through a bounded queue and waits, bounded, on a condition variable:
//! - `serve` learns every export root at start and at each reload ([`Upstream::learn_paths`]);
//! - the shells' lookup threads learn a subdirectory on demand ([`Upstream::wait_for`]),
//!   concurrent calls for one path coalescing into one upstream call.
//!
//! The protocol core reads the published [`LearnedHandles`] snapshot (lock-free) and never
//! waits. Known handles keep being served while a refresh runs or upstream is down; when
//! upstream fails, calls stop for a backoff (1 s doubling to 30 s) and a MNT for a path not
//! learned is answered at once with the documented status instead of waiting.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use mount_proto::mount::client::{MntAnswer, ReplyCheckError};
use mount_proto::mount::learned::{Learned, LearnedHandles};
use mount_proto::mount::MountStat;
use mount_proto::rpc::AcceptStat;

use crate::udp_call::CallError;

pub mod client;
mod report;

use client::{MountClient, Target, UpstreamError};
pub use report::{UpstreamCounters, UpstreamReport};

/// First pause after upstream failed; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between attempts while upstream is down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Learned paths kept at most; past that, subdirectory entries are dropped (relearned on
/// demand), export roots stay.
pub const MAX_LEARNED: usize = 16_384;
/// Paths waiting for the learner at most (a subdirectory storm beyond this is answered
/// with the not-learned status).
const QUEUE: usize = 1024;
/// How often the learner looks for due refreshes and retries.
const TICK: Duration = Duration::from_millis(200);
/// Refreshes per tick at most, so queued on-demand paths are not starved.
const REFRESH_BATCH: usize = 32;

/// How gateway mode behaves.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Where upstream is.
    pub target: Target,
    /// Handles are refreshed after half of this.
    pub ttl: Duration,
    /// How long a MNT for a path not yet learned waits (off the fast path) for upstream.
    pub wait: Duration,
    /// UMNT upstream right after each MNT, so its mount list stays clean.
    pub umnt: bool,
}

/// Upstream's health as the learner last saw it.
#[derive(Debug, Clone)]
enum Health {
    Up,
    Down {
        retry_at: Instant,
        backoff: Duration,
    },
}

struct State {
    /// Paths a learner call is pending for (waiters sleep until their path leaves).
    in_flight: HashSet<String>,
    /// Export roots (always kept learned).
    roots: Vec<String>,
    /// When each learned path was last answered by upstream.
    learned_at: HashMap<String, Instant>,
    health: Health,
    /// Whether upstream serves MOUNT v1 (None: not known yet).
    serves_v1: Option<bool>,
}

/// The gateway: learned handles, the learner thread's queue, counters.
pub struct Upstream {
    config: UpstreamConfig,
    handles: ArcSwap<LearnedHandles>,
    state: Mutex<State>,
    settled: Condvar,
    jobs: Sender<String>,
    counters: UpstreamCounters,
    /// Told of every answer learned from upstream (cluster mode shares it).
    on_learned: std::sync::OnceLock<Box<OnLearned>>,
    /// Cluster mode: each answer's refresh is put off by a random part of this, so nodes
    /// that learned together do not all ask upstream together (0: standalone, no jitter).
    refresh_jitter_ms: std::sync::atomic::AtomicU64,
}

/// Told of an answer learned from upstream, on the learner thread (must not block).
pub type OnLearned = dyn Fn(&str, &Learned) + Send + Sync;

impl Upstream {
    /// Start the learner thread; it holds only a weak reference and ends once the
    /// `Upstream` is dropped.
    pub fn start(config: UpstreamConfig) -> std::io::Result<Arc<Self>> {
        let client = MountClient::new(config.target.clone())?;
        let (jobs, queue) = crossbeam_channel::bounded(QUEUE);
        let upstream = Arc::new(Self {
            config,
            handles: ArcSwap::from_pointee(LearnedHandles::new()),
            state: Mutex::new(State {
                in_flight: HashSet::new(),
                roots: Vec::new(),
                learned_at: HashMap::new(),
                health: Health::Up,
                serves_v1: None,
            }),
            settled: Condvar::new(),
            jobs,
            counters: UpstreamCounters::default(),
            on_learned: std::sync::OnceLock::new(),
            refresh_jitter_ms: std::sync::atomic::AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&upstream);
        std::thread::Builder::new()
            .name("upstream".into())
            .spawn(move || learner(weak, client, queue))?;
        Ok(upstream)
    }

    /// The learned handles, for one call of the core.
    pub fn handles(&self) -> Guard<Arc<LearnedHandles>> {
        self.handles.load()
    }

    /// Installs the hook told of every answer learned from upstream (once).
    pub fn set_on_learned(&self, hook: Box<OnLearned>) {
        if self.on_learned.set(hook).is_err() {
            tracing::error!("upstream: a learned-answer hook is already installed");
        }
    }

    /// Cluster mode: put each refresh off by a random part of `max`, so that of nodes
    /// that learned a path together one asks upstream first and the others adopt its answer.
    pub fn set_refresh_jitter(&self, max: Duration) {
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        self.refresh_jitter_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// When an answer learned now counts as learned: now, plus the jitter in cluster mode.
    fn learned_now(&self) -> Instant {
        let max = self
            .refresh_jitter_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if max == 0 {
            return Instant::now();
        }
        // Not cryptographic: spreads refreshes (clock nanos, mixed).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
        let mixed = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        Instant::now() + Duration::from_millis(mixed % max)
    }

    /// Takes `learned` for `path` from a cluster peer, as if upstream had answered now (so
    /// this node's own refresh of it waits); returns true when it changed the answer.
    pub fn adopt(&self, path: &str, learned: Learned) -> bool {
        let mut st = self.state.lock();
        let current = self.handles.load();
        // Full: a subdirectory is relearned here on demand rather than taken.
        if current.get(path).is_none() && current.len() >= MAX_LEARNED {
            return false;
        }
        st.learned_at.insert(path.to_string(), self.learned_now());
        if current.get(path) == Some(&learned) {
            return false;
        }
        let mut map = (**current).clone();
        let old = map.insert(path, learned);
        self.handles.store(Arc::new(map));
        drop(st);
        self.settled.notify_all();
        match (old.map(|o| o.v3), learned.v3) {
            (Some(MntAnswer::Handle(a)), MntAnswer::Handle(b)) if a != b => tracing::warn!(
                path,
                old = %a.to_hex(),
                new = %b.to_hex(),
                "handle changed upstream (learned by a cluster peer)"
            ),
            _ => tracing::debug!(path, "handle adopted from a cluster peer"),
        }
        true
    }

    /// The configuration.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Counters for `stats`.
    pub fn report(&self) -> UpstreamReport {
        let (up, learned) = {
            let st = self.state.lock();
            (matches!(st.health, Health::Up), st.learned_at.len())
        };
        self.counters.report(&self.config.target, up, learned)
    }

    /// Make `roots` the export roots (dropping what is learned outside them), learn every
    /// one not yet known, and wait until each is answered or `deadline` passes. Returns the
    /// roots still not learned.
    pub fn learn_paths(&self, roots: &[String], deadline: Instant) -> Vec<String> {
        {
            let mut st = self.state.lock();
            st.roots = roots.to_vec();
            let under_a_root = |p: &str| roots.iter().any(|r| is_under(p, r));
            st.learned_at.retain(|p, _| under_a_root(p));
            let mut map = (**self.handles.load()).clone();
            map.retain(under_a_root);
            self.handles.store(Arc::new(map));
        }
        // A reload asks again even for known roots: upstream may have changed its exports.
        for root in roots {
            self.enqueue(root);
        }
        let mut st = self.state.lock();
        while roots.iter().any(|r| st.in_flight.contains(r)) {
            if self.settled.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let map = self.handles.load();
        roots
            .iter()
            .filter(|r| map.get(r).is_none())
            .cloned()
            .collect()
    }

    /// Off the fast path: wait (at most the configured wait) until `path` is learned or
    /// upstream has answered for it. Returns at once when upstream is known to be down.
    pub fn wait_for(&self, path: &str) {
        if self.handles.load().get(path).is_some() {
            return;
        }
        let deadline = Instant::now() + self.config.wait;
        let mut st = self.state.lock();
        if let Health::Down { retry_at, .. } = st.health {
            if Instant::now() < retry_at {
                return;
            }
        }
        drop(st);
        self.enqueue(path);
        st = self.state.lock();
        while st.in_flight.contains(path) {
            if self.settled.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
    }

    /// Queue `path` for the learner unless a call for it is already pending (coalescing).
    fn enqueue(&self, path: &str) {
        let mut st = self.state.lock();
        if !st.in_flight.insert(path.to_string()) {
            return;
        }
        if self.jobs.try_send(path.to_string()).is_err() {
            st.in_flight.remove(path);
            self.counters.bump(&self.counters.failed);
        }
    }

    /// Ask upstream for `path` (v3, v1 where served, UMNT if configured) and publish.
    fn learn(&self, client: &mut MountClient, path: &str) {
        let skip = match self.state.lock().health {
            Health::Down { retry_at, .. } => Instant::now() < retry_at,
            Health::Up => false,
        };
        if !skip {
            let started = Instant::now();
            let v3 = client.mnt(path, 3);
            self.counters.record_latency(started.elapsed());
            match v3 {
                Ok(v3) => {
                    self.mark_up();
                    let v1 = self.learn_v1(client, path);
                    if self.config.umnt && matches!(v3, MntAnswer::Handle(_)) {
                        if let Err(e) = client.umnt(path) {
                            tracing::debug!(path, error = %e, "upstream UMNT failed");
                        }
                    }
                    self.publish(path, Learned { v3, v1 });
                }
                Err(e) => self.failed(path, &e),
            }
        }
        let mut st = self.state.lock();
        st.in_flight.remove(path);
        self.settled.notify_all();
    }

    /// The v1 answer, unless upstream has shown it does not serve v1.
    fn learn_v1(&self, client: &mut MountClient, path: &str) -> Option<MntAnswer> {
        if self.state.lock().serves_v1 == Some(false) {
            return None;
        }
        match client.mnt(path, 1) {
            Ok(answer) => {
                self.state.lock().serves_v1 = Some(true);
                Some(answer)
            }
            // Not served: the version (PROG_MISMATCH), or MNT in it (Ganesha: PROC_UNAVAIL).
            Err(UpstreamError::Call(CallError::Reply {
                error:
                    ReplyCheckError::NotAccepted(
                        AcceptStat::ProgMismatch { .. } | AcceptStat::ProcUnavail,
                    ),
                ..
            })) => {
                tracing::info!(
                    "upstream does not serve MOUNT v1: v1/v2 MNT will be answered EACCES"
                );
                self.state.lock().serves_v1 = Some(false);
                None
            }
            Err(e) => {
                tracing::debug!(path, error = %e, "upstream MNT v1 failed; keeping the previous v1 answer");
                self.handles.load().get(path).and_then(|l| l.v1)
            }
        }
    }

    /// Store upstream's answer for `path`; log and count what changed.
    fn publish(&self, path: &str, learned: Learned) {
        let mut st = self.state.lock();
        let mut map = (**self.handles.load()).clone();
        if map.get(path).is_none() && map.len() >= MAX_LEARNED {
            let roots = st.roots.clone();
            map.retain(|p| roots.iter().any(|r| r == p));
            st.learned_at.retain(|p, _| roots.iter().any(|r| r == p));
            tracing::info!(
                kept = map.len(),
                "learned-handle cache full: subdirectory handles dropped (relearned on demand)"
            );
        }
        let old = map.insert(path, learned);
        st.learned_at.insert(path.to_string(), self.learned_now());
        self.handles.store(Arc::new(map));
        drop(st);
        if let Some(hook) = self.on_learned.get() {
            hook(path, &learned);
        }
        match (old.map(|o| o.v3), learned.v3) {
            (None, MntAnswer::Handle(h)) => {
                self.counters.bump(&self.counters.learned);
                tracing::info!(path, handle = %h.to_hex(), "handle learned from upstream");
            }
            (Some(MntAnswer::Handle(a)), MntAnswer::Handle(b)) if a != b => {
                self.counters.bump(&self.counters.changed);
                tracing::warn!(
                    path,
                    old = %a.to_hex(),
                    new = %b.to_hex(),
                    "upstream handle changed: clients holding the old one will see STALE until they remount"
                );
            }
            (Some(_), MntAnswer::Handle(_)) => self.counters.bump(&self.counters.refreshed),
            (old, MntAnswer::Status(stat)) => {
                self.counters.bump(&self.counters.refused);
                if old != Some(MntAnswer::Status(stat)) {
                    tracing::warn!(
                        path,
                        status = stat,
                        meaning = status_name(stat),
                        "upstream refuses MNT of this path; clients get the same status"
                    );
                }
            }
        }
    }

    /// A failed call: count, log, and back off.
    fn failed(&self, path: &str, error: &UpstreamError) {
        self.counters.bump(&self.counters.failed);
        let mut st = self.state.lock();
        let backoff = match st.health {
            Health::Up => MIN_BACKOFF,
            Health::Down { backoff, .. } => (backoff * 2).min(MAX_BACKOFF),
        };
        let known = self.handles.load().get(path).is_some();
        st.health = Health::Down {
            retry_at: Instant::now() + backoff,
            backoff,
        };
        drop(st);
        tracing::warn!(
            path,
            error = %error,
            retry_in = ?backoff,
            serving = if known { "the known handle" } else { "no handle (MNT gets SERVERFAULT/EIO)" },
            "upstream MOUNT call failed"
        );
    }

    fn mark_up(&self) {
        let mut st = self.state.lock();
        if matches!(st.health, Health::Down { .. }) {
            tracing::info!("upstream answers again");
        }
        st.health = Health::Up;
    }

    /// Paths due for a call now: roots not learned, and answers older than half the TTL.
    /// While upstream is down, only one path, when the backoff has passed.
    fn due(&self, now: Instant) -> Vec<String> {
        let st = self.state.lock();
        let map = self.handles.load();
        let refresh_after = self.config.ttl / 2;
        let mut due: Vec<String> = st
            .roots
            .iter()
            .filter(|r| map.get(r).is_none())
            .chain(
                st.learned_at
                    .iter()
                    .filter(|(_, at)| now.duration_since(**at) >= refresh_after)
                    .map(|(p, _)| p),
            )
            .filter(|p| !st.in_flight.contains(*p))
            .take(REFRESH_BATCH)
            .cloned()
            .collect();
        if let Health::Down { retry_at, .. } = st.health {
            due.truncate(usize::from(now >= retry_at));
        }
        due
    }
}

/// The learner thread: on-demand paths first, then due refreshes and retries.
fn learner(upstream: std::sync::Weak<Upstream>, mut client: MountClient, queue: Receiver<String>) {
    loop {
        let job = queue.recv_timeout(TICK);
        let Some(up) = upstream.upgrade() else {
            return;
        };
        match job {
            Ok(path) => up.learn(&mut client, &path),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for path in up.due(Instant::now()) {
            {
                let mut st = up.state.lock();
                if !st.in_flight.insert(path.clone()) {
                    continue;
                }
            }
            up.learn(&mut client, &path);
        }
    }
}

/// Whether `path` is `root` or below it.
fn is_under(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// A MOUNT status's name, for logs.
pub fn status_name(stat: u32) -> &'static str {
    const ALL: [MountStat; 10] = [
        MountStat::Ok,
        MountStat::Perm,
        MountStat::NoEnt,
        MountStat::Io,
        MountStat::Acces,
        MountStat::NotDir,
        MountStat::Inval,
        MountStat::NameTooLong,
        MountStat::NotSupp,
        MountStat::ServerFault,
    ];
    let names = [
        "OK",
        "PERM",
        "NOENT",
        "IO",
        "ACCES",
        "NOTDIR",
        "INVAL",
        "NAMETOOLONG",
        "NOTSUPP",
        "SERVERFAULT",
    ];
    ALL.iter()
        .position(|s| *s as u32 == stat)
        .map_or("unknown", |i| names[i])
}

#[cfg(test)]
mod tests;
