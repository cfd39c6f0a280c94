//! The "already mounted?" set of the MNT hot path: `(client address, dir)` pairs keyed
//! by the binary address, split into lock shards.
//!
//! Why shards of `RwLock<HashTable>` and not one lock, `dashmap` or `papaya`: every MNT
//! probes this set from many threads (AF_XDP and UDP workers, TCP tasks). Under one
//! `RwLock` every probe does an atomic read-modify-write on the same cache line, which
//! bounces between cores. A mount storm comes from many clients, so spreading them over 64
//! cache-padded locks (by hash) leaves each line to the few cores serving that shard's
//! clients; a client's own repeats are serialised by its RPC window anyway. That is what
//! `dashmap` does; doing it here keeps control of the probe (hashbrown's `HashTable`
//! compares a borrowed `(IpAddr, &str)` against stored keys, hashed once with foldhash,
//! with no allocation and no string formatting) and adds no dependency. A lock-free map
//! (`papaya`) would also drop the reader RMW, at the price of epoch reclamation and a
//! new dependency; the shards already take the contention off the hot line.
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::RwLock;

use super::{read, write};

const SHARDS: usize = 64;

/// One shard on its own cache lines (128: adjacent-line prefetch pairs 64-byte lines).
#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<HashTable<(IpAddr, Box<str>)>>);

/// A concurrent set of `(address, dir)`.
pub(super) struct Present {
    /// Per-list random seed: dirs are chosen by clients (subdirectories of an export), a
    /// fixed hash would let them pile entries into one bucket chain.
    hasher: DefaultHashBuilder,
    shards: Box<[Shard]>,
}

impl Default for Present {
    fn default() -> Self {
        Self {
            hasher: DefaultHashBuilder::default(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl Present {
    fn hash(&self, ip: IpAddr, dir: &str) -> u64 {
        // By hand rather than `hash_one((ip, dir))`: the derived `Hash` feeds the enum tag,
        // a length prefix and a terminator too. Equality decides anyway, so an IPv4 and an
        // IPv6 key hashing alike is harmless.
        let mut h = self.hasher.build_hasher();
        match ip {
            IpAddr::V4(a) => h.write_u32(a.to_bits()),
            IpAddr::V6(a) => h.write_u128(a.to_bits()),
        }
        h.write(dir.as_bytes());
        h.finish()
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<(IpAddr, Box<str>)>> {
        // Bits the table itself does not use: hashbrown takes the low bits for the bucket
        // and the top 7 for the tag, so shard-mates still differ there.
        let i = (hash >> 40) as usize % SHARDS;
        &self.shards[i].0
    }

    /// Whether `(ip, dir)` is in the set (read lock of one shard).
    pub(super) fn contains(&self, ip: IpAddr, dir: &str) -> bool {
        let h = self.hash(ip, dir);
        read(self.shard(h))
            .find(h, |(i, d)| *i == ip && **d == *dir)
            .is_some()
    }

    /// Insert `(ip, dir)`; returns true when it was not there.
    pub(super) fn insert(&self, ip: IpAddr, dir: &str) -> bool {
        let h = self.hash(ip, dir);
        let mut table = write(self.shard(h));
        if table.find(h, |(i, d)| *i == ip && **d == *dir).is_some() {
            return false;
        }
        let hasher = |(i, d): &(IpAddr, Box<str>)| self.hash(*i, d);
        table.insert_unique(h, (ip, Box::from(dir)), hasher);
        true
    }

    /// Remove `(ip, dir)`; returns true when it was there.
    pub(super) fn remove(&self, ip: IpAddr, dir: &str) -> bool {
        let h = self.hash(ip, dir);
        let mut table = write(self.shard(h));
        match table.find_entry(h, |(i, d)| *i == ip && **d == *dir) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_remove() {
        let p = Present::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "fd00::1".parse().unwrap();
        assert!(!p.contains(a, "/srv"));
        assert!(p.insert(a, "/srv"));
        assert!(!p.insert(a, "/srv"));
        assert!(p.insert(b, "/srv"));
        assert!(p.contains(a, "/srv") && p.contains(b, "/srv"));
        assert!(!p.contains(a, "/srv/x"));
        assert!(p.remove(a, "/srv"));
        assert!(!p.remove(a, "/srv"));
        assert!(!p.contains(a, "/srv") && p.contains(b, "/srv"));
    }

    #[test]
    fn many_entries_spread_and_stay_findable() {
        let p = Present::default();
        for i in 0..5000u32 {
            assert!(p.insert(IpAddr::from(i.to_be_bytes()), "/d"));
        }
        for i in 0..5000u32 {
            assert!(p.contains(IpAddr::from(i.to_be_bytes()), "/d"));
        }
        let used = p.shards.iter().filter(|s| !read(&s.0).is_empty()).count();
        assert!(used > SHARDS / 2, "only {used} shards used");
    }
}
