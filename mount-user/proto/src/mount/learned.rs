//! Root file handles learned from an upstream MOUNT server (gateway mode), as the protocol
//! core reads them: an immutable map from normalised path to what upstream answered.
//!
//! The map is built and replaced (copy on write) by `upstream`, off the fast path; the core
//! only probes it. A path that is absent has not been learned yet: the core asks its shell
//! to learn it off the fast path ([`super::Outcome::NeedUpstream`]).
use std::collections::HashMap;

use super::client::MntAnswer;

/// What upstream answered for one path, per MOUNT version family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    /// The MNT v3 answer (served to v3 clients).
    pub v3: MntAnswer,
    /// The MNT v1 answer (served to v1 and v2 clients); None when upstream does not serve
    /// version 1, in which case v1/v2 clients get EACCES (no handle we could know).
    pub v1: Option<MntAnswer>,
}

/// Learned answers by normalised absolute path (export roots and subdirectories).
#[derive(Debug, Clone, Default)]
pub struct LearnedHandles {
    // foldhash: probed on every MNT of an export without `fh=` in gateway mode.
    by_path: HashMap<Box<str>, Learned, hashbrown::DefaultHashBuilder>,
}

impl LearnedHandles {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
    /// What upstream answered for `path`, if it has been learned.
    pub fn get(&self, path: &str) -> Option<&Learned> {
        self.by_path.get(path)
    }
    /// Record (or replace) the answers for `path`; returns the previous ones.
    pub fn insert(&mut self, path: &str, learned: Learned) -> Option<Learned> {
        self.by_path.insert(path.into(), learned)
    }
    /// Forget `path`.
    pub fn remove(&mut self, path: &str) -> Option<Learned> {
        self.by_path.remove(path)
    }
    /// Keep only the paths for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.by_path.retain(|p, _| keep(p));
    }
    /// Number of paths learned.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }
    /// Whether nothing is learned.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
    /// Every learned path with its answers.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Learned)> {
        self.by_path.iter().map(|(p, l)| (&**p, l))
    }
}
