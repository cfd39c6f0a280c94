//! Publication of the current [`ExportTable`]: readers load a snapshot without locking,
//! a reload swaps in a new table atomically and keeps the old one on error.
use arc_swap::{ArcSwap, Guard};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use mount_proto::exports::{ExportTable, ExportsError};

use super::{load_sources, ExportSources, SystemResolver};

/// What runs after every swap of the export table.
pub type SwapHook = Box<dyn Fn() + Send + Sync>;

/// The live export table, shared by every worker.
pub struct SharedExports {
    current: ArcSwap<ExportTable>,
    /// Tables published so far (for metrics; readers never look at it).
    generation: AtomicU64,
    /// Run after every swap (the XDP program's MNT answers move to the new table).
    swapped: OnceLock<SwapHook>,
}

impl SharedExports {
    /// Publish `table` as the first current table.
    pub fn new(table: ExportTable) -> Self {
        Self {
            current: ArcSwap::from_pointee(table),
            generation: AtomicU64::new(1),
            swapped: OnceLock::new(),
        }
    }
    /// Tables published so far: 1 for the first, +1 per [`replace`](Self::replace).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
    /// A cheap, lock-free snapshot for one request (do not hold it for long).
    pub fn load(&self) -> Guard<Arc<ExportTable>> {
        self.current.load()
    }
    /// A snapshot that may be kept (e.g. by a long-lived connection task).
    pub fn load_full(&self) -> Arc<ExportTable> {
        self.current.load_full()
    }
    /// Swap in `table`; requests already running keep their snapshot.
    pub fn replace(&self, table: ExportTable) {
        self.swap(table);
    }
    /// Swap in `table` and return the table it replaces.
    pub fn swap(&self, table: ExportTable) -> Arc<ExportTable> {
        let old = self.current.swap(Arc::new(table));
        self.generation.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = self.swapped.get() {
            f();
        }
        old
    }
    /// Run `f` after every swap, before the swap returns (once; a second is refused and
    /// returned, as the mount list's presence hook is: whoever installs one relies on it).
    pub fn on_swap(&self, f: SwapHook) -> Result<(), SwapHook> {
        self.swapped.set(f)
    }
    /// Load `path` and swap it in; on error the current table stays in force.
    pub fn reload(&self, path: &Path) -> Result<(), ExportsError> {
        self.reload_sources(&ExportSources::new(vec![path.to_owned()]))
            .map(drop)
    }
    /// Load `sources` and swap them in, returning the table replaced; on error the
    /// current table stays in force.
    pub fn reload_sources(
        &self,
        sources: &ExportSources,
    ) -> Result<Arc<ExportTable>, ExportsError> {
        let table = load_sources(sources, &SystemResolver)?;
        Ok(self.swap(table))
    }
}

impl Default for SharedExports {
    fn default() -> Self {
        Self::new(ExportTable::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_reload_keeps_old_table_on_error() {
        let dir = std::env::temp_dir().join(format!("xdp-mountd-exports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("exports");
        std::fs::write(&file, "/srv/a 10.0.0.1\n").unwrap();
        let shared = SharedExports::new(ExportTable::empty());
        shared.reload(&file).unwrap();
        assert!(shared.load().lookup("/srv/a").is_some());
        std::fs::write(&file, "/srv/b 10.0.0.1(bogus)\n").unwrap();
        let err = shared.reload(&file).unwrap_err().to_string();
        assert!(
            err.ends_with(":1: unknown option \"bogus\" in \"10.0.0.1(bogus)\""),
            "{err}"
        );
        assert!(shared.load().lookup("/srv/a").is_some(), "old table kept");
        std::fs::write(&file, b"/srv/\xff *\n").unwrap();
        assert!(shared
            .reload(&file)
            .unwrap_err()
            .to_string()
            .contains(":1: not valid UTF-8"));
        assert!(matches!(
            shared.reload(&dir.join("missing")),
            Err(ExportsError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
