//! Which files make up the exports: `/etc/exports` plus `/etc/exports.d/*.exports` by
//! default, as exportfs reads them, or the files and directories given with `--exports`.
use std::path::{Path, PathBuf};

use mount_proto::exports::{ExportsError, LineError};

/// The default exports file.
pub const DEFAULT_FILE: &str = "/etc/exports";
/// The default drop-in directory.
pub const DEFAULT_DIR: &str = "/etc/exports.d";
/// The suffix exportfs requires of files in a drop-in directory.
pub const DROP_IN_SUFFIX: &str = ".exports";

/// The exports files and directories to read, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSources {
    paths: Vec<PathBuf>,
    /// The default set: a missing file or directory is a warning, not an error (exportfs
    /// logs and goes on).
    defaults: bool,
}

impl Default for ExportSources {
    fn default() -> Self {
        Self {
            paths: vec![PathBuf::from(DEFAULT_FILE), PathBuf::from(DEFAULT_DIR)],
            defaults: true,
        }
    }
}

/// One exports text read from disk.
#[derive(Debug)]
pub struct SourceText {
    /// The file name, for file:line.
    pub origin: String,
    /// Its content.
    pub text: String,
}

impl ExportSources {
    /// Exactly these files or directories (each must exist); none given means the default.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        if paths.is_empty() {
            Self::default()
        } else {
            Self {
                paths,
                defaults: false,
            }
        }
    }

    /// The paths as given.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Reads every file: a directory contributes its `*.exports` files in name order,
    /// skipping hidden ones, as exportfs does. Returns the texts and the warnings.
    pub fn read(&self) -> Result<(Vec<SourceText>, Vec<LineError>), ExportsError> {
        let mut texts = Vec::new();
        let mut warnings = Vec::new();
        for path in &self.paths {
            let missing = |source: std::io::Error| ExportsError::Io {
                path: path.display().to_string(),
                source,
            };
            let meta = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) if self.defaults && e.kind() == std::io::ErrorKind::NotFound => {
                    warnings.push(LineError {
                        origin: path.display().to_string(),
                        line: 0,
                        message: "not found; skipped".into(),
                    });
                    continue;
                }
                Err(e) => return Err(missing(e)),
            };
            if meta.is_dir() {
                for file in drop_in_files(path).map_err(missing)? {
                    texts.push(read_text(&file)?);
                }
            } else {
                texts.push(read_text(path)?);
            }
        }
        Ok((texts, warnings))
    }
}

/// The `*.exports` files of `dir` (not hidden, regular files), sorted by name.
fn drop_in_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(DROP_IN_SUFFIX) {
            continue;
        }
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Reads one file as UTF-8; an invalid byte is an error naming its line.
fn read_text(path: &Path) -> Result<SourceText, ExportsError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ExportsError::Io {
        path: origin.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        ExportsError::Parse(vec![LineError {
            origin: origin.clone(),
            line,
            message: "not valid UTF-8 (write other bytes as \\ooo octal escapes)".into(),
        }])
    })?;
    Ok(SourceText { origin, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_give_their_exports_files_in_order() {
        let dir = std::env::temp_dir().join(format!("xmd-sources-{}", std::process::id()));
        let d = dir.join("exports.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(dir.join("exports"), "/a *\n").unwrap();
        std::fs::write(d.join("20-b.exports"), "/b *\n").unwrap();
        std::fs::write(d.join("10-c.exports"), "/c *\n").unwrap();
        std::fs::write(d.join(".hidden.exports"), "/h *\n").unwrap();
        std::fs::write(d.join("notes.txt"), "/n *\n").unwrap();
        std::fs::create_dir_all(d.join("sub.exports")).unwrap();
        let s = ExportSources::new(vec![dir.join("exports"), d.clone()]);
        let (texts, warnings) = s.read().unwrap();
        let names: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(names, ["/a *\n", "/c *\n", "/b *\n"]);
        assert!(warnings.is_empty());
        // A named path must exist; the default set only warns.
        let missing = ExportSources::new(vec![dir.join("nope")]);
        assert!(matches!(missing.read(), Err(ExportsError::Io { .. })));
        let defaults = ExportSources {
            paths: vec![dir.join("nope"), d],
            defaults: true,
        };
        let (texts, warnings) = defaults.read().unwrap();
        assert_eq!(texts.len(), 2);
        assert!(warnings[0]
            .to_string()
            .ends_with("nope:0: not found; skipped"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
