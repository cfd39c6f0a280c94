//! The mount list (MNT adds, UMNT/UMNTALL remove, DUMP lists) and its rmtab text format.
//! Writing the rmtab file (atomically, from a background thread) is the daemon's.
//!
//! Locks are `std::sync::RwLock` (futex-based on Linux), not parking_lot's, whose
//! `parking_lot_core` brings libc into this crate. Lock poisoning is ignored, as
//! parking_lot has none: every change updates both views before anything that could panic.
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

mod iptext;
mod present;
mod rmtab;

pub use iptext::{ip_key, IpText};
pub use rmtab::Rmtab;

/// Read access, whether or not a thread panicked while holding the lock.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write access, whether or not a thread panicked while holding the lock.
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The in-memory mount list; thread-safe, no I/O.
///
/// Two views, changed together under the `entries` write lock:
/// - `entries`, host text -> dirs, ordered: what DUMP and rmtab list (host text exactly as
///   before: canonical IP text, or whatever a hand-edited rmtab held);
/// - `present`, `(address, dir)` for every host whose text is a canonical IP address
///   ([`ip_key`]): the MNT hot path asks it whether the client already has the entry
///   without formatting the address, comparing strings in a tree, or touching the shared
///   `entries` lock.
///
/// Bounded by [`Limits`]: MNT over UDP needs no handshake, so spoofed sources could
/// otherwise grow the list, the rmtab file and the next DUMP reply without end. A MNT past a
/// cap is still answered (the list only informs `showmount -a`; refusing the mount would
/// let a flood lock real clients out) but not recorded, and counted in [`Refused`].
#[derive(Default)]
pub struct MountList {
    entries: RwLock<BTreeMap<String, BTreeSet<String>>>,
    present: present::Present,
    /// Bumped (under the write lock) on every change; the rmtab persister compares it.
    generation: AtomicU64,
    limits: Limits,
    /// Entries in `entries`, changed under its write lock (read without it).
    len: AtomicUsize,
    refused: Refused,
    /// Told of the protocol's MNT/UMNT/UMNTALL (cluster mode); unset when standalone.
    observer: OnceLock<Box<dyn MountObserver>>,
    /// Told which address entries are recorded (the XDP program's MNT answers); unset
    /// unless those are on.
    presence: OnceLock<Box<dyn PresenceHook>>,
}

/// Keeps a cache of recorded `(address, dir)` entries exact (the XDP program's `MOUNT_SEEN`
/// map, docs/xdp-answers.md): `recorded` runs under the list's read lock after a protocol
/// MNT found the entry recorded, `removed` under its write lock when the entry goes, so a
/// removal can never come between the check and `recorded`. Both run on the hot path.
pub trait PresenceHook: Send + Sync {
    /// A protocol MNT of `dir` by `ip` was answered and the entry is in the list.
    fn recorded(&self, ip: IpAddr, dir: &str);
    /// The entry `(ip, dir)` left the list.
    fn removed(&self, ip: IpAddr, dir: &str);
}

/// Told of every MNT, UMNT and UMNTALL the protocol core applies, after the local change,
/// whether or not it changed the list (cluster mode counts mounts per node). Runs on the
/// caller's hot path: it must not block (queue the op and return).
pub trait MountObserver: Send + Sync {
    /// A MNT of `dir` by `ip` was answered.
    fn mounted(&self, ip: IpAddr, dir: &str);
    /// A UMNT of `dir` by `ip` was answered.
    fn unmounted(&self, ip: IpAddr, dir: &str);
    /// A UMNTALL by `ip` was answered.
    fn unmounted_all(&self, ip: IpAddr);
}

/// Caps on the mount list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Directories recorded per host.
    pub per_host: usize,
    /// Entries recorded in all.
    pub total: usize,
}

impl Limits {
    /// Default per-host cap: far above what one NFS client mounts (autofs included).
    pub const PER_HOST: usize = 1024;
    /// Default total cap: 100k entries, some 20 MB at the most, and a DUMP reply of a few MB.
    pub const TOTAL: usize = 100_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_host: Self::PER_HOST,
            total: Self::TOTAL,
        }
    }
}

/// Entries not recorded because a cap was full, per cap.
#[derive(Debug, Default)]
pub struct Refused {
    /// The host already had `per_host` directories.
    pub per_host: AtomicU64,
    /// The list already held `total` entries.
    pub total: AtomicU64,
}

impl MountList {
    /// An empty list with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }
    /// An empty list with these caps.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }
    /// The caps in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// What the caps refused so far.
    pub fn refused(&self) -> &Refused {
        &self.refused
    }
    /// Install the observer of protocol ops (once; a second one is refused and returned).
    pub fn set_observer(
        &self,
        observer: Box<dyn MountObserver>,
    ) -> Result<(), Box<dyn MountObserver>> {
        self.observer.set(observer)
    }
    /// The protocol's MNT: [`add_ip`](Self::add_ip), then the observer is told.
    pub fn mnt(&self, ip: IpAddr, dir: &str) -> bool {
        let added = self.add_ip(ip, dir);
        if let Some(o) = self.observer.get() {
            o.mounted(ip, dir);
        } else if let Some(hook) = self.presence.get() {
            // Not in cluster mode: there every MNT must reach the observer, which a MNT
            // answered by the XDP program would not.
            let _no_removal = read(&self.entries);
            if self.present.contains(ip, dir) {
                hook.recorded(ip, dir);
            }
        }
        added
    }
    /// Install the presence hook (once; a second one is refused and returned).
    pub fn set_presence_hook(
        &self,
        hook: Box<dyn PresenceHook>,
    ) -> Result<(), Box<dyn PresenceHook>> {
        self.presence.set(hook)
    }
    /// The protocol's UMNT: [`remove_ip`](Self::remove_ip), then the observer is told.
    pub fn umnt(&self, ip: IpAddr, dir: &str) -> bool {
        let removed = self.remove_ip(ip, dir);
        if let Some(o) = self.observer.get() {
            o.unmounted(ip, dir);
        }
        removed
    }
    /// The protocol's UMNTALL: [`remove_host`](Self::remove_host) of the address's text,
    /// then the observer is told.
    pub fn umntall(&self, ip: IpAddr) -> usize {
        let removed = self.remove_host(IpText::new(ip).as_str());
        if let Some(o) = self.observer.get() {
            o.unmounted_all(ip);
        }
        removed
    }
    /// Add `(host, dir)`; returns true when it was not there.
    pub fn add(&self, host: &str, dir: &str) -> bool {
        match ip_key(host) {
            Some(ip) => self.add_ip(ip, dir),
            None => self.insert(host, None, dir),
        }
    }
    /// Add `(ip, dir)` (`ip` canonical, as the core passes it); returns true when it was not
    /// there. A repeat takes one shard's read lock and allocates nothing.
    pub fn add_ip(&self, ip: IpAddr, dir: &str) -> bool {
        if self.present.contains(ip, dir) {
            return false;
        }
        self.insert(IpText::new(ip).as_str(), Some(ip), dir)
    }
    /// Insert into both views under the write lock; `ip` is `ip_key(host)`.
    fn insert(&self, host: &str, ip: Option<IpAddr>, dir: &str) -> bool {
        let mut map = write(&self.entries);
        // One tree walk via `entry`: the host key is allocated up front, which a known host
        // wastes (~150 instructions), but a new host (the usual first MNT) saves a second
        // walk of string compares (~600 at 20k hosts).
        let full = self.len.load(Ordering::Relaxed) >= self.limits.total;
        let inserted = match map.entry(host.to_owned()) {
            // `insert` would allocate the dir before finding it there.
            Entry::Occupied(mut e) => {
                let dirs = e.get_mut();
                !dirs.contains(dir)
                    && self.room_for(dirs.len(), full, host, dir)
                    && dirs.insert(dir.to_owned())
            }
            Entry::Vacant(e) => {
                let room = self.room_for(0, full, host, dir);
                if room {
                    e.insert(BTreeSet::from([dir.to_owned()]));
                }
                room
            }
        };
        if inserted {
            if let Some(ip) = ip {
                self.present.insert(ip, dir);
            }
            self.len.fetch_add(1, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        }
        inserted
    }
    /// Whether a host that holds `held` dirs may record one more while the list is `full`
    /// or not; a refusal is counted and logged.
    fn room_for(&self, held: usize, full: bool, host: &str, dir: &str) -> bool {
        if held >= self.limits.per_host {
            let option = "--max-mounts-per-host";
            self.refuse(&self.refused.per_host, host, dir, "per host", option);
            false
        } else if full {
            self.refuse(&self.refused.total, host, dir, "in total", "--max-mounts");
            false
        } else {
            true
        }
    }
    /// Count an entry a cap refused; log the first and then every power of two, so a flood
    /// is visible without a log line per packet.
    fn refuse(&self, counter: &AtomicU64, host: &str, dir: &str, which: &str, option: &str) {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                host,
                dir,
                refused = n,
                per_host = self.limits.per_host,
                total = self.limits.total,
                "mount list full {which}: MNT answered but not recorded (shown by showmount -a \
                 and kept in rmtab only when recorded); raise {option} if these are real clients"
            );
        }
    }
    /// Remove `(host, dir)`; returns true when it was there.
    pub fn remove(&self, host: &str, dir: &str) -> bool {
        let ip = ip_key(host);
        if ip.is_some_and(|ip| !self.present.contains(ip, dir)) {
            return false;
        }
        let mut map = write(&self.entries);
        let Some(dirs) = map.get_mut(host) else {
            return false;
        };
        let removed = dirs.remove(dir);
        if dirs.is_empty() {
            map.remove(host);
        }
        if removed {
            if let Some(ip) = ip {
                self.forget_present(ip, dir);
            }
            self.len.fetch_sub(1, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        }
        removed
    }
    /// [`MountList::remove`] by address (`ip` canonical); an absent entry costs one shard
    /// read lock and no formatting.
    pub fn remove_ip(&self, ip: IpAddr, dir: &str) -> bool {
        if !self.present.contains(ip, dir) {
            return false;
        }
        self.remove(IpText::new(ip).as_str(), dir)
    }
    /// An entry of `ip` is gone: out of the presence index, and the hook told (under the
    /// caller's write lock, before any reply, so the hook's cache never outlives it).
    fn forget_present(&self, ip: IpAddr, dir: &str) {
        self.present.remove(ip, dir);
        if let Some(hook) = self.presence.get() {
            hook.removed(ip, dir);
        }
    }
    /// Remove every entry of `host`; returns how many.
    pub fn remove_host(&self, host: &str) -> usize {
        if !read(&self.entries).contains_key(host) {
            return 0;
        }
        let mut map = write(&self.entries);
        let Some(dirs) = map.remove(host) else {
            return 0;
        };
        if let Some(ip) = ip_key(host) {
            for dir in &dirs {
                self.forget_present(ip, dir);
            }
        }
        if !dirs.is_empty() {
            self.len.fetch_sub(dirs.len(), Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        }
        dirs.len()
    }
    /// Visit entries in a stable order (host, then dir) until `f` breaks.
    ///
    /// `f` runs under the read lock: it must not call back into this list's mutators.
    pub fn for_each(&self, mut f: impl FnMut(&str, &str) -> ControlFlow<()>) {
        let map = read(&self.entries);
        for (host, dirs) in map.iter() {
            for dir in dirs {
                if f(host, dir).is_break() {
                    return;
                }
            }
        }
    }
    /// Whether `(host, dir)` is in the list.
    pub fn contains(&self, host: &str, dir: &str) -> bool {
        read(&self.entries)
            .get(host)
            .is_some_and(|dirs| dirs.contains(dir))
    }
    /// Whether `(ip, dir)` is in the list (`ip` canonical).
    pub fn contains_ip(&self, ip: IpAddr, dir: &str) -> bool {
        self.present.contains(ip, dir)
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        read(&self.entries).is_empty()
    }
    /// Changes so far (monotonic); equal generations mean equal contents.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
    /// A copy of the entries in order, with the generation they correspond to.
    pub fn snapshot(&self) -> (u64, Vec<(String, String)>) {
        let map = read(&self.entries);
        // Read under the lock: writers bump it while holding the write lock.
        let generation = self.generation.load(Ordering::Acquire);
        let entries = map
            .iter()
            .flat_map(|(h, dirs)| dirs.iter().map(move |d| (h.clone(), d.clone())))
            .collect();
        (generation, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(list: &MountList) -> Vec<(String, String)> {
        list.snapshot().1
    }

    #[test]
    fn the_observer_hears_protocol_ops_only() {
        use std::sync::{Arc, Mutex};
        struct Log(Arc<Mutex<Vec<String>>>);
        impl MountObserver for Log {
            fn mounted(&self, ip: IpAddr, dir: &str) {
                self.0.lock().unwrap().push(format!("mnt {ip} {dir}"));
            }
            fn unmounted(&self, ip: IpAddr, dir: &str) {
                self.0.lock().unwrap().push(format!("umnt {ip} {dir}"));
            }
            fn unmounted_all(&self, ip: IpAddr) {
                self.0.lock().unwrap().push(format!("umntall {ip}"));
            }
        }
        let heard = Arc::new(Mutex::new(Vec::new()));
        let l = MountList::new();
        assert!(l.set_observer(Box::new(Log(heard.clone()))).is_ok());
        assert!(
            l.set_observer(Box::new(Log(heard.clone()))).is_err(),
            "once"
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.mnt(ip, "/a"));
        assert!(!l.mnt(ip, "/a"), "a repeat is heard too (counts per node)");
        assert!(l.umnt(ip, "/a"));
        assert!(!l.umnt(ip, "/never"), "heard although absent here");
        l.mnt(ip, "/b");
        assert_eq!(l.umntall(ip), 1);
        // Applying another node's changes is not a protocol op.
        l.add("10.0.0.2", "/c");
        l.remove("10.0.0.2", "/c");
        assert_eq!(
            *heard.lock().unwrap(),
            [
                "mnt 10.0.0.1 /a",
                "mnt 10.0.0.1 /a",
                "umnt 10.0.0.1 /a",
                "umnt 10.0.0.1 /never",
                "mnt 10.0.0.1 /b",
                "umntall 10.0.0.1"
            ]
        );
    }

    #[test]
    fn add_remove_and_generation() {
        let l = MountList::new();
        assert!(l.is_empty());
        assert!(l.add("10.0.0.2", "/srv/b"));
        assert!(l.add("10.0.0.1", "/srv/a"));
        assert!(l.add("10.0.0.1", "/srv/b"));
        let g = l.generation();
        assert!(!l.add("10.0.0.1", "/srv/a"), "duplicate add");
        assert_eq!(l.generation(), g, "a duplicate add is not a change");
        assert_eq!(l.len(), 3);
        assert_eq!(
            dump(&l),
            vec![
                ("10.0.0.1".into(), "/srv/a".into()),
                ("10.0.0.1".into(), "/srv/b".into()),
                ("10.0.0.2".into(), "/srv/b".into()),
            ]
        );
        assert!(l.remove("10.0.0.1", "/srv/a"));
        assert!(!l.remove("10.0.0.1", "/srv/a"));
        assert!(l.generation() > g);
        assert_eq!(l.remove_host("10.0.0.1"), 1);
        assert_eq!(l.remove_host("10.0.0.1"), 0);
        assert_eq!(dump(&l), vec![("10.0.0.2".into(), "/srv/b".into())]);
    }

    #[test]
    fn ip_and_text_views_agree() {
        let l = MountList::new();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(l.add("10.0.0.1", "/a"), "text add of an IP host");
        assert!(!l.add_ip(ip, "/a"), "seen by the address view");
        assert!(l.contains_ip(ip, "/a"));
        assert!(l.add_ip(v6, "/b"));
        assert!(
            l.contains("fd00::1", "/b"),
            "stored under the canonical text"
        );
        assert!(!l.add("fd00::1", "/b"));
        // Non-canonical text stays its own key, as before.
        assert!(l.add("FD00::1", "/b"));
        assert!(l.add("::ffff:10.0.0.1", "/a"));
        assert!(!l.remove_ip(ip, "/nope"));
        assert!(l.remove_ip(ip, "/a"));
        assert!(!l.contains("10.0.0.1", "/a") && !l.contains_ip(ip, "/a"));
        assert!(l.contains("::ffff:10.0.0.1", "/a"));
        l.add_ip(v6, "/c");
        assert_eq!(l.remove_host("fd00::1"), 2);
        assert!(!l.contains_ip(v6, "/b") && !l.contains_ip(v6, "/c"));
        assert!(l.add_ip(v6, "/b"), "re-added after remove_host");
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn caps_refuse_and_count_but_keep_what_is_there() {
        let l = MountList::with_limits(Limits {
            per_host: 2,
            total: 3,
        });
        assert!(l.add("10.0.0.1", "/a"));
        assert!(l.add_ip("10.0.0.1".parse().unwrap(), "/b"));
        assert!(!l.add("10.0.0.1", "/c"), "third dir of one host");
        assert_eq!(l.refused().per_host.load(Ordering::Relaxed), 1);
        assert!(l.add("10.0.0.2", "/a"));
        assert!(!l.add("10.0.0.3", "/a"), "fourth entry");
        assert!(!l.add("10.0.0.2", "/b"), "fourth entry, known host");
        assert_eq!(l.refused().total.load(Ordering::Relaxed), 2);
        assert_eq!(l.len(), 3);
        assert!(!l.contains_ip("10.0.0.3".parse().unwrap(), "/a"));
        // Room again after a UMNT/UMNTALL.
        assert!(l.remove("10.0.0.1", "/a"));
        assert!(l.add("10.0.0.3", "/a"));
        assert_eq!(l.remove_host("10.0.0.1"), 1);
        assert_eq!(l.len(), 2);
        assert_eq!(l.snapshot().1.len(), 2);
    }

    #[test]
    fn for_each_stops_on_break() {
        let l = MountList::new();
        for i in 0..5 {
            l.add(&format!("h{i}"), "/x");
        }
        let mut seen = Vec::new();
        l.for_each(|h, _| {
            seen.push(h.to_string());
            if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen, vec!["h0", "h1"]);
    }

    #[test]
    fn concurrent_adds_are_all_kept() {
        let l = std::sync::Arc::new(MountList::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..100u8 {
                        l.add(&format!("10.0.{t}.{i}"), "/srv");
                        l.add_ip(IpAddr::from([10, 0, t, i]), "/srv");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(l.len(), 400);
        assert_eq!(l.generation(), 400);
    }

    #[derive(Default)]
    struct Log(std::sync::Mutex<Vec<String>>);

    impl PresenceHook for std::sync::Arc<Log> {
        fn recorded(&self, ip: IpAddr, dir: &str) {
            self.0.lock().unwrap().push(format!("+{ip} {dir}"));
        }
        fn removed(&self, ip: IpAddr, dir: &str) {
            self.0.lock().unwrap().push(format!("-{ip} {dir}"));
        }
    }

    #[test]
    fn presence_hook_sees_every_recorded_mnt_and_every_removal() {
        let log = std::sync::Arc::new(Log::default());
        let list = MountList::with_limits(Limits {
            per_host: 2,
            total: 10,
        });
        assert!(list.set_presence_hook(Box::new(log.clone())).is_ok());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        list.mnt(ip, "/a");
        list.mnt(ip, "/a"); // a repeat is told again (the cache may have lost it)
        list.mnt(ip, "/b");
        list.mnt(ip, "/c"); // over the per-host cap: not recorded, not told
        list.umnt(ip, "/a");
        list.umnt(ip, "/a"); // absent: nothing
        list.mnt(ip, "/a");
        list.umntall(ip);
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                "+10.0.0.1 /a",
                "+10.0.0.1 /a",
                "+10.0.0.1 /b",
                "-10.0.0.1 /a",
                "+10.0.0.1 /a",
                "-10.0.0.1 /a",
                "-10.0.0.1 /b",
            ]
        );
    }
}
