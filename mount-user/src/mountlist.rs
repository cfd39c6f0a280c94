//! The mount list (MNT adds, UMNT/UMNTALL remove, DUMP lists) and its rmtab persistence.
//!
//! INTERFACE STUB written by the integrator; the exports helper replaces the bodies.
use std::ops::ControlFlow;

/// The in-memory mount list; thread-safe, no I/O.
#[derive(Default)]
pub struct MountList {}

impl MountList {
    /// An empty list.
    pub fn new() -> Self {
        Self {}
    }
    /// Add `(host, dir)`; returns true when it was not there.
    pub fn add(&self, _host: &str, _dir: &str) -> bool {
        unimplemented!()
    }
    /// Remove `(host, dir)`; returns true when it was there.
    pub fn remove(&self, _host: &str, _dir: &str) -> bool {
        unimplemented!()
    }
    /// Remove every entry of `host`; returns how many.
    pub fn remove_host(&self, _host: &str) -> usize {
        unimplemented!()
    }
    /// Visit entries in a stable order (host, then dir) until `f` breaks.
    pub fn for_each(&self, _f: impl FnMut(&str, &str) -> ControlFlow<()>) {
        unimplemented!()
    }
}
