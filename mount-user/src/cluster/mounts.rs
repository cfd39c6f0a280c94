//! The mount list across nodes (pure parts; the etcd task in [`super::task`] drives them).
//!
//! The protocol's MNT/UMNT/UMNTALL reach [`OpQueue`] (the list's observer) on the caller's
//! thread; it only `try_send`s into a bounded channel, counting what does not fit. The
//! cluster task turns ops into key writes ([`Pending::plan`]), coalesced per key, and writes
//! them in transactions every [`BATCH_INTERVAL`]. The cluster-wide list is [`Holders`]:
//! `(host, dir)` -> the nodes holding a key for it, fed by the watch; an entry is listed
//! while any node holds it. So a MNT via A and one via B need a UMNT each, and a UMNT via
//! a node that never saw the MNT deletes another holder's key.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mount_proto::mountlist::{IpText, MountObserver};

use super::keys::{Keys, MountKey};

/// How long a local op may wait before it is written (the contract's bound).
pub const BATCH_INTERVAL: Duration = Duration::from_millis(100);
/// How often queued ops are moved into pending writes (coalesced there, so a storm of
/// repeated MNTs does not fill the queue between two batches).
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// Ops queued between the service and the cluster task at most.
pub const QUEUE: usize = 16_384;
/// Key writes held while etcd is away at most; past it ops are dropped (counted) and a
/// resync restores the node's mounts when etcd returns.
pub const PENDING: usize = 65_536;
/// Operations per etcd transaction (etcd's default --max-txn-ops is 128).
pub const TXN_OPS: usize = 128;

/// One protocol op, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// MNT of `dir` by `host`.
    Mnt { host: String, dir: String },
    /// UMNT of `dir` by `host`.
    Umnt { host: String, dir: String },
    /// UMNTALL by `host`.
    Umntall { host: String },
}

/// The mount list's observer: queues ops without ever blocking the caller.
pub struct OpQueue {
    tx: Sender<MountOp>,
    dropped: Arc<AtomicU64>,
}

impl OpQueue {
    /// A queue of [`QUEUE`] ops; ops that do not fit count in `dropped`.
    pub fn new(dropped: Arc<AtomicU64>) -> (Self, Receiver<MountOp>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        (Self { tx, dropped }, rx)
    }

    fn push(&self, op: MountOp) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(op) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl MountObserver for OpQueue {
    fn mounted(&self, ip: IpAddr, dir: &str) {
        self.push(MountOp::Mnt {
            host: IpText::new(ip).as_str().to_owned(),
            dir: dir.to_owned(),
        });
    }
    fn unmounted(&self, ip: IpAddr, dir: &str) {
        self.push(MountOp::Umnt {
            host: IpText::new(ip).as_str().to_owned(),
            dir: dir.to_owned(),
        });
    }
    fn unmounted_all(&self, ip: IpAddr) {
        self.push(MountOp::Umntall {
            host: IpText::new(ip).as_str().to_owned(),
        });
    }
}

/// The cluster-wide mount list: which nodes hold each `(host, dir)`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Holders {
    map: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Holders {
    /// Records `key`; true when its entry was not listed before.
    pub fn insert(&mut self, key: MountKey) -> bool {
        let nodes = self.map.entry((key.host, key.dir)).or_default();
        let new = nodes.is_empty();
        nodes.insert(key.node);
        new
    }
    /// Forgets `key`; true when its entry is no longer listed.
    pub fn remove(&mut self, key: &MountKey) -> bool {
        let entry = (key.host.clone(), key.dir.clone());
        let Some(nodes) = self.map.get_mut(&entry) else {
            return false;
        };
        let gone = nodes.remove(&key.node) && nodes.is_empty();
        if nodes.is_empty() {
            self.map.remove(&entry);
        }
        gone
    }
    /// The nodes holding `(host, dir)`.
    pub fn of(&self, host: &str, dir: &str) -> Option<&BTreeSet<String>> {
        self.map.get(&(host.to_owned(), dir.to_owned()))
    }
    /// Whether `(host, dir)` is listed.
    pub fn contains(&self, host: &str, dir: &str) -> bool {
        self.of(host, dir).is_some()
    }
    /// The listed `(host, dir)` entries with their holders, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &BTreeSet<String>)> {
        self.map.iter()
    }
    /// The entries of `host` with their holders.
    pub fn of_host<'a>(
        &'a self,
        host: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a BTreeSet<String>)> + 'a {
        self.map
            .range((host.to_owned(), String::new())..)
            .take_while(move |((h, _), _)| h == host)
            .map(|((_, d), n)| (d.as_str(), n))
    }
    /// Listed entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One key write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Put the key (empty value).
    Put,
    /// Delete the key.
    Delete,
}

/// Key writes not yet in etcd, coalesced per key (the last op wins), bounded.
#[derive(Debug, Default)]
pub struct Pending {
    writes: BTreeMap<String, Write>,
    /// When the oldest write still pending was planned.
    oldest: Option<Instant>,
}

impl Pending {
    /// Turns `op` (by this `node`) into key writes, given the cluster list as known now;
    /// returns false when it was dropped for lack of room.
    pub fn plan(
        &mut self,
        op: &MountOp,
        keys: &Keys,
        node: &str,
        holders: &Holders,
        now: Instant,
    ) -> bool {
        let writes: Vec<(String, Write)> = match op {
            MountOp::Mnt { host, dir } => vec![(keys.mount(host, dir, node), Write::Put)],
            MountOp::Umnt { host, dir } => {
                let own = keys.mount(host, dir, node);
                let own_held = holders.of(host, dir).is_some_and(|n| n.contains(node))
                    || self.writes.get(&own) == Some(&Write::Put);
                // Another holder's key, one not already being deleted: one UMNT, one count.
                let other = holders.of(host, dir).into_iter().flatten().find_map(|n| {
                    let key = keys.mount(host, dir, n);
                    (n != node && self.writes.get(&key) != Some(&Write::Delete)).then_some(key)
                });
                match other {
                    Some(key) if !own_held => vec![(key, Write::Delete)],
                    _ => vec![(own, Write::Delete)],
                }
            }
            MountOp::Umntall { host } => {
                let mut all: Vec<(String, Write)> = holders
                    .of_host(host)
                    .flat_map(|(dir, nodes)| {
                        nodes
                            .iter()
                            .map(move |n| (keys.mount(host, dir, n), Write::Delete))
                    })
                    .collect();
                let ours = format!("{}{}/", keys.mounts(), super::keys::encode(host));
                all.extend(
                    self.writes
                        .range(ours.clone()..)
                        .take_while(|(k, _)| k.starts_with(&ours))
                        .map(|(k, _)| (k.clone(), Write::Delete)),
                );
                all
            }
        };
        let new_keys = writes
            .iter()
            .filter(|(k, _)| !self.writes.contains_key(k))
            .count();
        if self.writes.len() + new_keys > PENDING {
            return false;
        }
        for (key, write) in writes {
            self.writes.insert(key, write);
        }
        if !self.writes.is_empty() && self.oldest.is_none() {
            self.oldest = Some(now);
        }
        true
    }

    /// Whether `(host, dir)` is in the cluster's list once the pending writes land: some
    /// node holds a key that is not waiting to be deleted, or this node's MNT waits to be
    /// written. After a local UMNT the core has removed the entry; when this says it stays
    /// (another node holds it), the cluster task puts it back at once, since a MNT and UMNT
    /// coalesced into one pending write never reach etcd and so never bring a watch event.
    pub fn listed(
        &self,
        keys: &Keys,
        node: &str,
        holders: &Holders,
        host: &str,
        dir: &str,
    ) -> bool {
        self.puts(&keys.mount(host, dir, node))
            || holders
                .of(host, dir)
                .into_iter()
                .flatten()
                .any(|n| !self.deletes(&keys.mount(host, dir, n)))
    }

    /// Whether this node's MNT of `(host, dir)` waits to be written.
    pub fn puts(&self, key: &str) -> bool {
        self.writes.get(key) == Some(&Write::Put)
    }

    /// Whether `key` waits to be deleted.
    pub fn deletes(&self, key: &str) -> bool {
        self.writes.get(key) == Some(&Write::Delete)
    }

    /// The next transaction's writes (at most [`TXN_OPS`]).
    pub fn batch(&self) -> Vec<(String, Write)> {
        self.writes
            .iter()
            .take(TXN_OPS)
            .map(|(k, w)| (k.clone(), *w))
            .collect()
    }

    /// `batch` was written: forget those writes (unless replaced meanwhile).
    pub fn written(&mut self, batch: &[(String, Write)], now: Instant) {
        for (key, write) in batch {
            if self.writes.get(key) == Some(write) {
                self.writes.remove(key);
            }
        }
        self.oldest = (!self.writes.is_empty()).then_some(self.oldest.unwrap_or(now));
    }

    /// Writes pending.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Age of the oldest pending write.
    pub fn lag(&self, now: Instant) -> Duration {
        self.oldest
            .map_or(Duration::ZERO, |t| now.duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, dir: &str, node: &str) -> MountKey {
        MountKey {
            host: host.into(),
            dir: dir.into(),
            node: node.into(),
        }
    }

    fn mnt(host: &str, dir: &str) -> MountOp {
        MountOp::Mnt {
            host: host.into(),
            dir: dir.into(),
        }
    }

    fn umnt(host: &str, dir: &str) -> MountOp {
        MountOp::Umnt {
            host: host.into(),
            dir: dir.into(),
        }
    }

    #[test]
    fn an_entry_stays_until_every_holder_is_gone() {
        let mut h = Holders::default();
        assert!(h.insert(key("10.0.0.1", "/a", "a")));
        assert!(!h.insert(key("10.0.0.1", "/a", "b")), "already listed");
        assert!(!h.remove(&key("10.0.0.1", "/a", "a")));
        assert!(h.contains("10.0.0.1", "/a"));
        assert!(!h.remove(&key("10.0.0.1", "/a", "zzz")), "not a holder");
        assert!(h.remove(&key("10.0.0.1", "/a", "b")));
        assert!(h.is_empty());
    }

    #[test]
    fn umnt_deletes_one_key_own_first_else_another_holders() {
        let k = Keys::new("/p");
        let now = Instant::now();
        let mut h = Holders::default();
        h.insert(key("h", "/a", "a"));
        h.insert(key("h", "/a", "b"));
        // Via b, which holds it: b's key.
        let mut p = Pending::default();
        assert!(p.plan(&umnt("h", "/a"), &k, "b", &h, now));
        assert_eq!(p.batch(), [(k.mount("h", "/a", "b"), Write::Delete)]);
        // Via c, which never saw the MNT: one of the others', never both.
        let mut p = Pending::default();
        p.plan(&umnt("h", "/a"), &k, "c", &h, now);
        assert_eq!(p.batch(), [(k.mount("h", "/a", "a"), Write::Delete)]);
        // A second UMNT via c takes the next holder.
        p.plan(&umnt("h", "/a"), &k, "c", &h, now);
        assert_eq!(p.len(), 2);
        assert!(p.deletes(&k.mount("h", "/a", "b")));
        // MNT then UMNT via c before the write: c's own key, coalesced into a delete.
        let mut p = Pending::default();
        p.plan(&mnt("h", "/a"), &k, "c", &h, now);
        assert!(p.puts(&k.mount("h", "/a", "c")));
        p.plan(&umnt("h", "/a"), &k, "c", &h, now);
        assert_eq!(p.batch(), [(k.mount("h", "/a", "c"), Write::Delete)]);
    }

    #[test]
    fn a_coalesced_mnt_and_umnt_leaves_another_holders_entry_listed() {
        let k = Keys::new("/p");
        let now = Instant::now();
        let mut h = Holders::default();
        h.insert(key("h", "/a", "a"));
        // Via c: MNT and UMNT in one batch. c's own key is a pending delete that etcd never
        // sees; a still holds the entry, so c must keep listing it.
        let mut p = Pending::default();
        p.plan(&mnt("h", "/a"), &k, "c", &h, now);
        assert!(p.listed(&k, "c", &h, "h", "/a"));
        p.plan(&umnt("h", "/a"), &k, "c", &h, now);
        assert!(p.listed(&k, "c", &h, "h", "/a"), "a still holds it");
        // The last UMNT (via c again) deletes a's key: no longer listed.
        p.plan(&umnt("h", "/a"), &k, "c", &h, now);
        assert!(p.deletes(&k.mount("h", "/a", "a")));
        assert!(!p.listed(&k, "c", &h, "h", "/a"));
        // Nobody held it: a UMNT of an unknown entry leaves nothing listed.
        let p = Pending::default();
        assert!(!p.listed(&k, "c", &Holders::default(), "h", "/a"));
    }

    #[test]
    fn umntall_deletes_every_key_of_the_host() {
        let k = Keys::new("/p");
        let now = Instant::now();
        let mut h = Holders::default();
        h.insert(key("h", "/a", "a"));
        h.insert(key("h", "/b", "b"));
        h.insert(key("h2", "/a", "a"));
        let mut p = Pending::default();
        p.plan(&mnt("h", "/c"), &k, "c", &h, now);
        p.plan(&MountOp::Umntall { host: "h".into() }, &k, "c", &h, now);
        let batch = p.batch();
        assert_eq!(batch.len(), 3, "{batch:?}");
        assert!(batch
            .iter()
            .all(|(key, w)| *w == Write::Delete && !key.contains("h2")));
    }

    #[test]
    fn batches_are_bounded_and_written_ones_forgotten() {
        let k = Keys::new("/p");
        let t0 = Instant::now();
        let h = Holders::default();
        let mut p = Pending::default();
        for i in 0..300 {
            assert!(p.plan(&mnt("h", &format!("/d{i}")), &k, "a", &h, t0));
        }
        let batch = p.batch();
        assert_eq!(batch.len(), TXN_OPS);
        let later = t0 + Duration::from_millis(50);
        assert_eq!(p.lag(later), Duration::from_millis(50));
        // A write replaced while the batch was in flight stays pending.
        p.plan(&umnt("h", "/d0"), &k, "a", &h, later);
        p.written(&batch, later);
        assert_eq!(p.len(), 300 - TXN_OPS + 1);
        assert!(p.deletes(&k.mount("h", "/d0", "a")));
        while !p.is_empty() {
            let b = p.batch();
            p.written(&b, later);
        }
        assert_eq!(p.lag(later), Duration::ZERO);
    }

    #[test]
    fn pending_is_bounded() {
        let k = Keys::new("/p");
        let h = Holders::default();
        let mut p = Pending::default();
        let now = Instant::now();
        for i in 0..PENDING {
            assert!(p.plan(&mnt("h", &format!("/{i}")), &k, "a", &h, now));
        }
        assert!(!p.plan(&mnt("h", "/new"), &k, "a", &h, now), "full");
        assert!(p.plan(&mnt("h", "/0"), &k, "a", &h, now), "same key: room");
    }

    #[test]
    fn the_queue_never_blocks_and_counts_what_it_drops() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (q, rx) = OpQueue::new(dropped.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..QUEUE + 5 {
            q.mounted(ip, "/a");
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 5);
        assert_eq!(rx.try_recv().unwrap(), mnt("10.0.0.1", "/a"));
    }
}
