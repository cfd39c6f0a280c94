//! Reloading the exports (SIGHUP, `xdp-mountd reload`, a host name that resolves at last):
//! one at a time, the old table serving until the new one is complete, and a report of what
//! changed or why nothing did.
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use mount_proto::exports::ExportTable;

use super::{load_sources, ExportSources, SharedExports, SystemResolver, TableDiff};

/// What a reload did, as the control socket sends it to `xdp-mountd reload`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The new table is in force.
    pub ok: bool,
    /// Exports in force after the reload (the old count when it failed).
    pub exports: usize,
    /// What changed (empty when it failed).
    pub diff: TableDiff,
    /// Why it failed: one `FILE:LINE: message` (or `FILE: error`) per entry.
    pub errors: Vec<String>,
    /// What loaded with a warning, `FILE:LINE: message` each.
    pub warnings: Vec<String>,
}

/// Called after a table was swapped in (e.g. to forget cached host facts).
type OnReload = dyn Fn() + Send + Sync;
type Prepare = dyn Fn(&ExportTable) + Send + Sync;

/// Reloads `sources` into `shared`, one reload at a time.
pub struct Reloader {
    sources: ExportSources,
    shared: Arc<SharedExports>,
    on_reload: Box<OnReload>,
    /// Runs on a loaded table before it is published (gateway mode learns its handles).
    prepare: Option<Box<Prepare>>,
    serial: Mutex<()>,
    /// Warnings already logged: a reload logs only new ones (an unresolvable host is
    /// logged once, not at every reload and background retry).
    logged: Mutex<HashSet<String>>,
    /// Reloads that swapped a new table in, and reloads that failed (for the metrics).
    done: AtomicU64,
    failed: AtomicU64,
    /// Cluster mode: the exports are this published text set (origin, text), not the files.
    texts: Mutex<Option<Vec<(String, String)>>>,
}

impl Reloader {
    /// A reloader of `sources` into `shared`; `on_reload` runs after each successful swap.
    pub fn new(
        sources: ExportSources,
        shared: Arc<SharedExports>,
        on_reload: Box<OnReload>,
    ) -> Self {
        Self {
            sources,
            shared,
            on_reload,
            prepare: None,
            serial: Mutex::new(()),
            logged: Mutex::new(HashSet::new()),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            texts: Mutex::new(None),
        }
    }

    /// Runs `prepare` on every loaded table before it is published.
    pub fn with_prepare(mut self, prepare: Box<Prepare>) -> Self {
        self.prepare = Some(prepare);
        self
    }

    /// Reloads that swapped a new table in so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Reloads that failed so far (the table before them kept serving).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Logs the warnings of `table` not logged before.
    pub fn log_new_warnings(&self, table: &ExportTable) {
        let mut logged = self.logged.lock();
        for w in table.warnings() {
            if logged.insert(w.to_string()) {
                tracing::warn!("{w}");
            }
        }
    }

    /// The sources reloaded.
    pub fn sources(&self) -> &ExportSources {
        &self.sources
    }

    /// Cluster mode: from now on the exports are `texts` ((origin, text) pairs, as
    /// published); compiles and swaps them in as [`reload`](Self::reload) does.
    /// On error the texts before stay the ones a later reload compiles.
    pub fn reload_texts(&self, why: &str, texts: Vec<(String, String)>) -> ReloadReport {
        let before = self.texts.lock().replace(texts);
        let report = self.reload(why);
        if !report.ok {
            *self.texts.lock() = before;
        }
        report
    }

    /// Cluster mode: the exports are `texts` ((origin, text) pairs), not the files; the
    /// table in force is not touched.
    pub fn set_texts(&self, texts: Vec<(String, String)>) {
        *self.texts.lock() = Some(texts);
    }

    /// Loads the sources again (blocking: reads files, resolves names) and swaps the new
    /// table in; on error the current table keeps serving. Logs the outcome. In cluster
    /// mode the published texts are compiled again instead of the files.
    pub fn reload(&self, why: &str) -> ReloadReport {
        let _one_at_a_time = self.serial.lock();
        let texts = self.texts.lock().clone();
        let loaded = match texts {
            Some(texts) => {
                let pairs: Vec<(&str, &str)> = texts
                    .iter()
                    .map(|(origin, text)| (text.as_str(), origin.as_str()))
                    .collect();
                ExportTable::compile_texts(&pairs, &SystemResolver)
            }
            None => load_sources(&self.sources, &SystemResolver),
        };
        let loaded = loaded.map(|table| {
            if let Some(prepare) = &self.prepare {
                prepare(&table);
            }
            self.shared.swap(table)
        });
        match loaded {
            Ok(old) => {
                self.done.fetch_add(1, Ordering::Relaxed);
                (self.on_reload)();
                let new = self.shared.load();
                self.log_new_warnings(&new);
                let diff = TableDiff::between(&old, &new);
                tracing::info!(
                    exports = new.exports().len(),
                    added = diff.added.len(),
                    removed = diff.removed.len(),
                    changed = diff.changed.len(),
                    "{why}: exports reloaded"
                );
                ReloadReport {
                    ok: true,
                    exports: new.exports().len(),
                    diff,
                    errors: Vec::new(),
                    warnings: new.warnings().iter().map(ToString::to_string).collect(),
                }
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let errors: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
                for line in &errors {
                    tracing::error!("{why}: reload failed, keeping the current exports: {line}");
                }
                ReloadReport {
                    ok: false,
                    exports: self.shared.load().exports().len(),
                    diff: TableDiff::default(),
                    errors,
                    warnings: Vec::new(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reports_changes_or_errors_and_keeps_the_old_table() {
        let dir = std::env::temp_dir().join(format!("xmd-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("exports");
        std::fs::write(&file, "/a 10.0.0.1\n/b *\n").unwrap();
        let sources = ExportSources::new(vec![file.clone()]);
        let shared = Arc::new(SharedExports::new(ExportTable::empty()));
        let hooks = Arc::new(AtomicUsize::new(0));
        let h = hooks.clone();
        let r = Reloader::new(
            sources,
            shared.clone(),
            Box::new(move || {
                h.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let first = r.reload("test");
        assert!(first.ok, "{first:?}");
        assert_eq!(first.diff.added, ["/a", "/b"]);
        std::fs::write(&file, "/a 10.0.0.2\n/c *\n").unwrap();
        let second = r.reload("test");
        assert_eq!(
            (
                second.diff.added.clone(),
                second.diff.removed.clone(),
                second.diff.changed.clone()
            ),
            (
                vec!["/c".to_string()],
                vec!["/b".to_string()],
                vec!["/a".to_string()]
            )
        );
        std::fs::write(&file, "/a *\n/d *(bogus)\n").unwrap();
        let failed = r.reload("test");
        assert!(!failed.ok);
        assert_eq!(failed.exports, 2);
        assert!(failed.errors[0].ends_with("exports:2: unknown option \"bogus\" in \"*(bogus)\""));
        assert!(shared.load().lookup("/c").is_some(), "old table kept");
        assert_eq!(hooks.load(Ordering::SeqCst), 2);
        // Warnings are reported at every reload, logged only the first time.
        std::fs::write(&file, "/a\n").unwrap();
        let warned = r.reload("test");
        assert_eq!(warned.warnings.len(), 1, "{warned:?}");
        assert_eq!(r.logged.lock().len(), 1);
        assert_eq!(r.reload("test").warnings, warned.warnings);
        assert_eq!(r.logged.lock().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
