//! The published exports: the file set `cluster publish` validated, as one JSON value
//! (`P/exports`), compiled by every node exactly as its files would be; and the node's
//! cache file of the last set it compiled, served from when etcd is unreachable at start.
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use mount_proto::exports::{ExportTable, ExportsError, Resolver};

use crate::exports::ExportSources;

/// One exports file of the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportsFile {
    /// Where it was read from on the publishing host (names it in file:line messages).
    pub origin: String,
    /// Its text.
    pub text: String,
}

/// The value of `P/exports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportsSet {
    /// The files, in the order they are read.
    pub files: Vec<ExportsFile>,
}

/// What the cache file holds: the set and the generation (etcd revision) it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedSet {
    /// The etcd revision of the set.
    pub generation: u64,
    /// The set.
    pub set: ExportsSet,
}

impl ExportsSet {
    /// Reads `sources` (the files `check` reads) and compiles them to validate; returns the
    /// set and its table, or exactly `check`'s errors.
    pub fn read(
        sources: &ExportSources,
        resolver: &dyn Resolver,
    ) -> Result<(Self, ExportTable), ExportsError> {
        let table = crate::exports::load_sources(sources, resolver)?;
        let (texts, _) = sources.read()?;
        let files = texts
            .into_iter()
            .map(|t| ExportsFile {
                origin: t.origin,
                text: t.text,
            })
            .collect();
        Ok((Self { files }, table))
    }

    /// Compiles the set.
    pub fn compile(&self, resolver: &dyn Resolver) -> Result<ExportTable, ExportsError> {
        let texts: Vec<(&str, &str)> = self
            .files
            .iter()
            .map(|f| (f.text.as_str(), f.origin.as_str()))
            .collect();
        ExportTable::compile_texts(&texts, resolver)
    }

    /// The files as (origin, text) pairs, as the reloader takes them.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .map(|f| (f.origin.clone(), f.text.clone()))
            .collect()
    }

    /// The JSON value.
    pub fn to_value(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses the value of `P/exports`; `what` names it in the error.
    pub fn from_value(value: &[u8], what: &str) -> anyhow::Result<Self> {
        serde_json::from_slice(value).with_context(|| format!("{what}: not an exports set"))
    }
}

/// Writes the cache file atomically (a temporary file renamed over it).
pub fn write_cache(path: &Path, cached: &CachedSet) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: creating the directory", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec_pretty(cached).context("encoding the cache")?;
    std::fs::write(&tmp, body).with_context(|| format!("{}: writing", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: renaming to {}", tmp.display(), path.display()))
}

/// Reads the cache file; errors name it.
pub fn read_cache(path: &Path) -> anyhow::Result<CachedSet> {
    let body = std::fs::read(path).with_context(|| format!("{}: reading", path.display()))?;
    serde_json::from_slice(&body)
        .with_context(|| format!("{}: not an xdp-mountd cluster cache", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exports::SystemResolver;

    fn set() -> ExportsSet {
        ExportsSet {
            files: vec![ExportsFile {
                origin: "/etc/exports".into(),
                text: "/srv/a 10.0.0.0/8(rw)\n".into(),
            }],
        }
    }

    #[test]
    fn value_round_trips_and_compiles() {
        let s = set();
        let back = ExportsSet::from_value(&s.to_value(), "P/exports").unwrap();
        assert_eq!(back, s);
        assert!(back
            .compile(&SystemResolver)
            .unwrap()
            .lookup("/srv/a")
            .is_some());
        let err = ExportsSet::from_value(b"{", "P/exports").unwrap_err();
        assert!(format!("{err:#}").starts_with("P/exports: not an exports set"));
        let bad = ExportsSet {
            files: vec![ExportsFile {
                origin: "/etc/exports".into(),
                text: "/a *(bogus)\n".into(),
            }],
        };
        let err = bad.compile(&SystemResolver).unwrap_err().to_string();
        assert!(err.starts_with("/etc/exports:1: unknown option"), "{err}");
    }

    #[test]
    fn cache_file_round_trips_and_errors_name_it() {
        let dir = std::env::temp_dir().join(format!("xmd-cluster-cache-{}", std::process::id()));
        let path = dir.join("sub/cluster-a.exports");
        let cached = CachedSet {
            generation: 7,
            set: set(),
        };
        write_cache(&path, &cached).unwrap();
        assert_eq!(read_cache(&path).unwrap(), cached);
        std::fs::write(&path, "garbage").unwrap();
        let err = format!("{:#}", read_cache(&path).unwrap_err());
        assert!(
            err.contains("cluster-a.exports: not an xdp-mountd cluster cache"),
            "{err}"
        );
        let err = format!("{:#}", read_cache(&dir.join("missing")).unwrap_err());
        assert!(err.contains("missing: reading"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_validates_like_check() {
        let dir = std::env::temp_dir().join(format!("xmd-cluster-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("exports");
        std::fs::write(&file, "/a *\n/b *(bogus)\n").unwrap();
        let sources = ExportSources::new(vec![file.clone()]);
        let err = ExportsSet::read(&sources, &SystemResolver)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("exports:2: unknown option \"bogus\" in \"*(bogus)\""),
            "{err}"
        );
        std::fs::write(&file, "/a *\n").unwrap();
        let (set, table) = ExportsSet::read(&sources, &SystemResolver).unwrap();
        assert_eq!(set.files.len(), 1);
        assert_eq!(table.exports().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
