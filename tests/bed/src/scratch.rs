//! A scratch directory for one test (exports files, logs, sockets, captures): removed on
//! drop, but kept, and its path printed, when the test panics, so what the daemon wrote
//! can be read after a failure.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// A scratch directory; see the module documentation.
pub struct Scratch {
    path: PathBuf,
    label: String,
}

impl Scratch {
    /// Creates `std::env::temp_dir()/NAME` (and parents); `label` names the test in the
    /// message printed when it is kept.
    pub fn create(name: &str, label: &str) -> Result<Scratch> {
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch {
            path,
            label: label.to_string(),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[{}] keeping scratch dir {} for inspection",
                self.label,
                self.path.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
