//! Call rate limits per source prefix and in all: their command-line form, and the
//! limiter the kernel-stack paths (UDP socket, TCP) apply. The XDP program applies the
//! same limits to what it steers into AF_XDP, with the same arithmetic
//! ([`mount_ebpf::Gcra`]) and the same keys ([`mount_ebpf::SourceKey`]), so a source is
//! held to one rate whichever way its calls arrive.
//!
//! Why per prefix and not per address: forged sources are free, real networks are not.
//! Keyed by /24 (IPv4) or /56 (IPv6), a flood from random addresses lands in few cells
//! per network it forges, and the table (an LRU of a fixed size on both sides) cannot be
//! flushed cheaply by inventing addresses inside one network.
//!
//! Why a hand-written limiter rather than `governor`: governor's keyed limiter keeps one
//! state per key in an unbounded map, pruned only on request; a flood of forged sources
//! would grow it without bound. Here the table is an LRU of `--rate-limit-sources` cells
//! (the `lru` crate), sharded behind mutexes, as the XDP side's `BPF_MAP_TYPE_LRU_HASH`.
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;
use mount_ebpf::{Config, Gcra, GcraDecision, SourceKey};
use parking_lot::Mutex;

/// A rate as given on the command line: calls per second, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRate {
    /// Sustained calls per second (at least 1).
    pub per_second: u32,
    /// Calls admitted at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl CallRate {
    /// The GCRA parameters of this rate.
    pub fn gcra(&self) -> Gcra {
        Gcra::new(self.per_second, self.burst)
    }
}

impl FromStr for CallRate {
    type Err = String;

    /// `CALLS_PER_S` (the burst is then one second's worth) or `CALLS_PER_S/BURST`.
    fn from_str(s: &str) -> Result<Self, String> {
        let number = |what: &str, t: &str| -> Result<u32, String> {
            match t.trim().parse::<u32>() {
                Ok(0) => Err(format!(
                    "{what} must be at least 1 (leave the option out for no limit)"
                )),
                Ok(n) => Ok(n),
                Err(_) => Err(format!(
                    "{what} {t:?} is not a whole number; expected CALLS_PER_S[/BURST], \
                     e.g. 500 or 500/1000"
                )),
            }
        };
        let (rate, burst) = match s.split_once('/') {
            Some((rate, burst)) => (number("rate", rate)?, number("burst", burst)?),
            None => {
                let rate = number("rate", s)?;
                (rate, rate)
            }
        };
        Ok(CallRate {
            per_second: rate,
            burst,
        })
    }
}

impl fmt::Display for CallRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.per_second, self.burst)
    }
}

/// The configured limits, as `serve` was given them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Per source prefix (`--rate-limit`); None: no per-source limit.
    pub per_source: Option<CallRate>,
    /// In all, after the per-source limit (`--rate-limit-global`); None: no ceiling.
    pub global: Option<CallRate>,
    /// Prefix length that groups IPv4 sources (0..=32).
    pub v4_prefix: u8,
    /// Prefix length that groups IPv6 sources (0..=128).
    pub v6_prefix: u8,
    /// Source prefixes tracked at once (LRU): the XDP map's and the kernel paths' size.
    pub sources: u32,
}

impl RateLimits {
    /// Default IPv4 prefix: one cell per address.
    pub const V4_PREFIX: u8 = 32;
    /// Default IPv6 prefix: one cell per /64, the smallest network a site is given.
    pub const V6_PREFIX: u8 = 64;
    /// Default number of source cells (about 6 MiB of kernel memory in the XDP map).
    pub const SOURCES: u32 = 65_536;

    /// No limits.
    pub fn off() -> Self {
        Self {
            per_source: None,
            global: None,
            v4_prefix: Self::V4_PREFIX,
            v6_prefix: Self::V6_PREFIX,
            sources: Self::SOURCES,
        }
    }

    /// Whether any limit is on.
    pub fn is_on(&self) -> bool {
        self.per_source.is_some() || self.global.is_some()
    }

    /// `base` (the steering configuration) with these limits for the XDP program.
    pub fn xdp_config(&self, base: Config) -> Config {
        base.with_limits(
            self.per_source.map_or(Gcra::OFF, |r| r.gcra()),
            self.global.map_or(Gcra::OFF, |r| r.gcra()),
            self.v4_prefix,
            self.v6_prefix,
        )
    }

    /// The XDP map's size: the configured cells when a per-source limit is on.
    pub fn xdp_source_entries(&self) -> u32 {
        match self.per_source {
            Some(_) => self.sources,
            None => mount_xdp::ebpf::SOURCES_UNUSED_ENTRIES,
        }
    }

    /// The per-source limit in words, for logs: "500/1000 calls/s per /24 (IPv4), /56 (IPv6)".
    pub fn describe_per_source(&self) -> String {
        match self.per_source {
            Some(rate) => format!(
                "{rate} calls/s per /{} (IPv4), /{} (IPv6) source",
                self.v4_prefix, self.v6_prefix
            ),
            None => "off".to_owned(),
        }
    }

    /// The global ceiling in words, for logs.
    pub fn describe_global(&self) -> String {
        match self.global {
            Some(rate) => format!("{rate} calls/s in all"),
            None => "off".to_owned(),
        }
    }
}

/// Which limit a call was over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Its source prefix's limit (`--rate-limit`).
    Source,
    /// The global ceiling (`--rate-limit-global`).
    Global,
}

/// A call refused by the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The limit it was over.
    pub over: Over,
    /// When the same call would be admitted (TCP waits this long instead of dropping).
    pub retry_after: Duration,
}

/// Shards of the source table: enough that UDP workers rarely meet on one lock.
const SHARDS: usize = 16;

/// The limiter of the kernel-stack paths.
pub struct CallLimiter {
    limits: RateLimits,
    per_source: Gcra,
    global: Gcra,
    v4_mask: u32,
    v6_mask: [u32; 4],
    shards: Box<[Mutex<LruCache<SourceKey, u64>>]>,
    /// The global cell's theoretical arrival time, as the XDP program's `MOUNT_GLOBAL`.
    global_tat: AtomicU64,
    epoch: Instant,
}

impl CallLimiter {
    /// A limiter enforcing `limits` (which should have at least one limit on).
    pub fn new(limits: RateLimits) -> Self {
        let per_shard = (limits.sources as usize).div_ceil(SHARDS).max(1);
        let per_shard = NonZeroUsize::new(per_shard).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(LruCache::new(per_shard)))
            .collect();
        let config = limits.xdp_config(Config::for_port(0));
        Self {
            per_source: config.per_source,
            global: config.global,
            v4_mask: config.v4_mask,
            v6_mask: config.v6_mask,
            limits,
            shards,
            global_tat: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The limits this limiter enforces.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Admit or refuse a call from `peer` now.
    pub fn check(&self, peer: IpAddr) -> Result<(), Refused> {
        // Offset by one so that no call ever happens at time 0, the value of a new cell.
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        self.check_at(peer, now)
    }

    /// [`check`](Self::check) at `now_ns` on the limiter's clock (for tests).
    pub fn check_at(&self, peer: IpAddr, now_ns: u64) -> Result<(), Refused> {
        if self.per_source.is_on() {
            let key = self.key(peer);
            let shard = &self.shards[shard_of(&key)];
            let mut cells = shard.lock();
            let tat = cells.get(&key).copied().unwrap_or(0);
            match self.per_source.decide(tat, now_ns) {
                GcraDecision::Over { retry_after_ns } => {
                    return Err(refused(Over::Source, retry_after_ns))
                }
                GcraDecision::Advance => {
                    cells.put(key, tat + self.per_source.interval_ns);
                }
                GcraDecision::Restart(next) => {
                    cells.put(key, next);
                }
            }
        }
        if self.global.is_on() {
            // As in the XDP program: a racy check, then an atomic add while busy.
            let tat = self.global_tat.load(Ordering::Relaxed);
            match self.global.decide(tat, now_ns) {
                GcraDecision::Over { retry_after_ns } => {
                    return Err(refused(Over::Global, retry_after_ns))
                }
                GcraDecision::Advance => {
                    self.global_tat
                        .fetch_add(self.global.interval_ns, Ordering::Relaxed);
                }
                GcraDecision::Restart(next) => self.global_tat.store(next, Ordering::Relaxed),
            }
        }
        Ok(())
    }

    /// The prefix `peer` is counted under, for logs (e.g. 10.1.2.0/24).
    pub fn prefix_of(&self, peer: IpAddr) -> ipnet::IpNet {
        let peer = peer.to_canonical();
        let len = match peer {
            IpAddr::V4(_) => self.limits.v4_prefix,
            IpAddr::V6(_) => self.limits.v6_prefix,
        };
        ipnet::IpNet::new(peer, len)
            .map(|net| net.trunc())
            .unwrap_or_else(|_| ipnet::IpNet::from(peer))
    }

    /// The table key of `peer`: IPv4-mapped IPv6 peers (a dual-stack socket's IPv4
    /// clients) count as the IPv4 address they are.
    fn key(&self, peer: IpAddr) -> SourceKey {
        match peer.to_canonical() {
            IpAddr::V4(v4) => mount_ebpf::v4_key(u32::from_ne_bytes(v4.octets()), self.v4_mask),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                mount_ebpf::v6_key([word(0), word(4), word(8), word(12)], self.v6_mask)
            }
        }
    }
}

fn refused(over: Over, retry_after_ns: u64) -> Refused {
    Refused {
        over,
        retry_after: Duration::from_nanos(retry_after_ns),
    }
}

/// A shard for `key`: the words mixed (Fibonacci hashing), so that prefixes differing in
/// any word spread.
fn shard_of(key: &SourceKey) -> usize {
    let mixed = key.iter().fold(0u64, |h, &w| {
        (h ^ u64::from(w)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    (mixed >> 60) as usize % SHARDS
}

#[cfg(test)]
mod tests;
