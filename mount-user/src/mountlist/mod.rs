//! The mount list (MNT adds, UMNT/UMNTALL remove, DUMP lists) and its rmtab persistence.
use parking_lot::RwLock;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

mod iptext;
mod present;
mod rmtab;

pub use iptext::{ip_key, IpText};
pub use rmtab::{Rmtab, RmtabPersister};

/// The in-memory mount list; thread-safe, no I/O.
///
/// Two views, changed together under the `entries` write lock:
/// - `entries`, host text -> dirs, ordered: what DUMP and rmtab list (host text exactly as
///   before: canonical IP text, or whatever a hand-edited rmtab held);
/// - `present`, `(address, dir)` for every host whose text is a canonical IP address
///   ([`ip_key`]): the MNT hot path asks it whether the client already has the entry
///   without formatting the address, comparing strings in a tree, or touching the shared
///   `entries` lock.
#[derive(Default)]
pub struct MountList {
    entries: RwLock<BTreeMap<String, BTreeSet<String>>>,
    present: present::Present,
    /// Bumped (under the write lock) on every change; the rmtab persister compares it.
    generation: AtomicU64,
}

impl MountList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
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
        let mut map = self.entries.write();
        // One tree walk via `entry`: the host key is allocated up front, which a known host
        // wastes (~150 instructions), but a new host (the usual first MNT) saves a second
        // walk of string compares (~600 at 20k hosts).
        let inserted = match map.entry(host.to_owned()) {
            Entry::Occupied(mut e) => {
                let dirs = e.get_mut();
                // `insert` would allocate the dir before finding it there.
                !dirs.contains(dir) && dirs.insert(dir.to_owned())
            }
            Entry::Vacant(e) => {
                e.insert(BTreeSet::from([dir.to_owned()]));
                true
            }
        };
        if inserted {
            if let Some(ip) = ip {
                self.present.insert(ip, dir);
            }
            self.generation.fetch_add(1, Ordering::Release);
        }
        inserted
    }
    /// Remove `(host, dir)`; returns true when it was there.
    pub fn remove(&self, host: &str, dir: &str) -> bool {
        let ip = ip_key(host);
        if ip.is_some_and(|ip| !self.present.contains(ip, dir)) {
            return false;
        }
        let mut map = self.entries.write();
        let Some(dirs) = map.get_mut(host) else {
            return false;
        };
        let removed = dirs.remove(dir);
        if dirs.is_empty() {
            map.remove(host);
        }
        if removed {
            if let Some(ip) = ip {
                self.present.remove(ip, dir);
            }
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
    /// Remove every entry of `host`; returns how many.
    pub fn remove_host(&self, host: &str) -> usize {
        if !self.entries.read().contains_key(host) {
            return 0;
        }
        let mut map = self.entries.write();
        let Some(dirs) = map.remove(host) else {
            return 0;
        };
        if let Some(ip) = ip_key(host) {
            for dir in &dirs {
                self.present.remove(ip, dir);
            }
        }
        if !dirs.is_empty() {
            self.generation.fetch_add(1, Ordering::Release);
        }
        dirs.len()
    }
    /// Visit entries in a stable order (host, then dir) until `f` breaks.
    ///
    /// `f` runs under the read lock: it must not call back into this list's mutators.
    pub fn for_each(&self, mut f: impl FnMut(&str, &str) -> ControlFlow<()>) {
        let map = self.entries.read();
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
        self.entries
            .read()
            .get(host)
            .is_some_and(|dirs| dirs.contains(dir))
    }
    /// Whether `(ip, dir)` is in the list (`ip` canonical).
    pub fn contains_ip(&self, ip: IpAddr, dir: &str) -> bool {
        self.present.contains(ip, dir)
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.read().values().map(BTreeSet::len).sum()
    }
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.read().is_empty()
    }
    /// Changes so far (monotonic); equal generations mean equal contents.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
    /// A copy of the entries in order, with the generation they correspond to.
    pub fn snapshot(&self) -> (u64, Vec<(String, String)>) {
        let map = self.entries.read();
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
}
