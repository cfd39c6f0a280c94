//! exports(5): parsing, host resolution and the compiled, immutable [`ExportTable`].
//!
//! Pipeline: `parse` (syntax -> raw entries, `FILE:LINE:` errors) -> `merge` (one export per
//! path across files) -> `table` (resolve host names, compile matchers, handles and the
//! precomputed EXPORT reply list). Everything here starts from text: reading the files
//! (`/etc/exports` plus `/etc/exports.d/*.exports`, or what `--exports` names), the system
//! resolver and the atomic publication of a new table are the daemon's (mount-user's
//! `exports` module), which hands [`ExportTable::compile_texts`] the texts and a
//! [`Resolver`]. Lines exporting one path are merged across texts as exportfs merges them.
//!
//! Syntax decisions where exports(5) leaves room:
//! - `path` alone exports to `*` with a warning (as nfs-utils does);
//! - `client (opts)` with a blank before `(` is an error (nfs-utils would export to the world);
//! - the obsolete `gss/krb5` client form loads with a warning and matches nothing;
//! - a host name that does not resolve is a warning: the rule matches by the client's
//!   reverse-resolved name meanwhile (the daemon retries the lookup in the background);
//! - `@netgroup` membership is looked up by the shells (NSS innetgr), never by the core;
//! - `sec=` lists flavors in preference order; options after a `sec=` apply to its flavors
//!   (exports(5) "Security flavors"), as nfs-utils' parseopts does.
use std::net::IpAddr;
use std::sync::Arc;

use crate::mount::FHSIZE3;

mod facts;
mod glob;
mod handle;
mod hosts;
mod merge;
mod options;
mod parse;
mod table;

pub use facts::HostFacts;
pub use glob::HostPattern;
pub use handle::{HandleSource, SYNTHETIC_LEN};
pub use hosts::{HostSpec, Matcher, Resolver, StaticResolver};
pub use options::{flavor_from_name, flavor_name, FlavorFlags, Options};
pub use parse::{normalise_export_path, LineError};
pub use table::Rule;

/// A file handle held inline (no allocation): `len` bytes of `bytes` are meaningful.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle {
    /// Number of meaningful bytes (1..=64).
    pub len: u8,
    /// The handle, zero-padded.
    pub bytes: [u8; FHSIZE3],
}

impl FileHandle {
    /// The handle's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(FHSIZE3)]
    }
}

/// What a matched client rule grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// `ro` (the default) or `rw`.
    pub read_only: bool,
    /// `secure`: MNT must come from a source port below 1024.
    pub secure: bool,
    /// Security flavors in preference order (`sec=`), as RPC auth flavor numbers.
    pub flavors: Vec<u32>,
}

/// The result of matching a client against an export's client list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCheck<'a> {
    /// The first matching rule's grant.
    Allowed(&'a ClientOptions),
    /// No rule matches.
    Denied,
    /// A name or netgroup rule could match but the caller gave no (or too old) host facts:
    /// look them up and ask again.
    NeedName,
}

/// One export, compiled.
#[derive(Debug)]
pub struct Export {
    pub(crate) path: String,
    pub(crate) line: usize,
    pub(crate) handle: FileHandle,
    pub(crate) source: HandleSource,
    pub(crate) groups: Vec<String>,
    pub(crate) rules: Vec<Rule>,
    /// Exact addresses (single-address specs and resolved names) -> first rule index.
    /// foldhash, not SipHash: probed on every MNT; the keys are fixed by the exports file.
    pub(crate) exact: std::collections::HashMap<IpAddr, usize, hashbrown::DefaultHashBuilder>,
    /// Rules that must be scanned in order (`*`, networks, wildcards), by index.
    pub(crate) scan: Vec<usize>,
}

/// A longest-prefix lookup result.
#[derive(Debug, Clone, Copy)]
pub struct ExportMatch<'t> {
    /// The matched export.
    pub export: &'t Export,
    /// The part of the path below the export, without leading '/'; "" for the export itself.
    pub subpath: &'t str,
}

/// Errors of loading an exports file; Display names file:line.
#[derive(Debug, thiserror::Error)]
pub enum ExportsError {
    /// Syntax or semantic errors, every one found (Display: one `FILE:LINE: message` per line).
    #[error("{}", join_errors(.0))]
    Parse(Vec<LineError>),
    /// A file could not be read (produced by the daemon, which reads the texts this crate
    /// compiles).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ExportsError {
    /// The line errors (empty for I/O errors).
    pub fn line_errors(&self) -> &[LineError] {
        match self {
            ExportsError::Parse(v) => v,
            ExportsError::Io { .. } => &[],
        }
    }
}

fn join_errors(errors: &[LineError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// The compiled, immutable export table, swapped atomically on reload.
#[derive(Debug)]
pub struct ExportTable {
    pub(crate) exports: Vec<Export>,
    /// Normalised export path -> index in `exports`.
    /// Keyed by bytes so a MNT's raw `dirpath` can be probed before any normalisation
    /// ([`ExportTable::lookup_exact`]). foldhash, not SipHash: probed once per path depth on
    /// every MNT (SipHash was ~40% of a lookup).
    pub(crate) by_path: hashbrown::HashMap<Box<[u8]>, usize>,
    pub(crate) xdr: Vec<u8>,
    pub(crate) ends: Vec<usize>,
    /// What loaded with a warning (file:line), logged at load and shown by `check`/`reload`.
    pub(crate) warnings: Vec<LineError>,
    /// The netgroups the rules name, sorted: what the shells look up per client.
    pub(crate) netgroups: Arc<[Arc<str>]>,
    /// Host names that did not resolve at load (to retry in the background).
    pub(crate) unresolved: Vec<String>,
}

impl ExportTable {
    /// An empty table.
    pub fn empty() -> Self {
        Self {
            exports: Vec::new(),
            by_path: Default::default(),
            // The empty `exports` list: just the terminating FALSE.
            xdr: vec![0, 0, 0, 0],
            ends: Vec::new(),
            warnings: Vec::new(),
            netgroups: Arc::from(Vec::new()),
            unresolved: Vec::new(),
        }
    }
    /// Parse and compile one exports text; `origin` names it in errors (the file name),
    /// host names are resolved through `resolver`.
    pub fn parse_str_with(
        text: &str,
        origin: &str,
        resolver: &dyn Resolver,
    ) -> Result<Self, ExportsError> {
        Self::compile_texts(&[(text, origin)], resolver)
    }
    /// Parse several texts (text, origin) in order, merge and compile them. Every error
    /// of every text is reported, sorted by origin order and line.
    pub fn compile_texts(
        texts: &[(&str, &str)],
        resolver: &dyn Resolver,
    ) -> Result<Self, ExportsError> {
        let mut raw = Vec::new();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for (text, origin) in texts {
            let mut parsed = parse::parse(text, origin);
            raw.append(&mut parsed.exports);
            errors.append(&mut parsed.errors);
            warnings.append(&mut parsed.warnings);
        }
        let (merged, mut merge_errors, mut merge_warnings) = merge::merge(raw);
        errors.append(&mut merge_errors);
        warnings.append(&mut merge_warnings);
        let compiled = table::compile(merged, resolver, &mut warnings);
        let order = |e: &LineError| {
            let file = texts.iter().position(|(_, o)| *o == e.origin);
            (file, e.line)
        };
        match compiled {
            Ok(mut t) if errors.is_empty() => {
                warnings.sort_by_key(order);
                t.warnings = warnings;
                Ok(t)
            }
            Ok(_) => {
                errors.sort_by_key(order);
                Err(ExportsError::Parse(errors))
            }
            Err(more) => {
                errors.extend(more);
                errors.sort_by_key(order);
                Err(ExportsError::Parse(errors))
            }
        }
    }
    /// Put `earlier` (warnings found before compiling, e.g. a default exports file that is
    /// missing) ahead of the table's own warnings.
    pub fn prepend_warnings(&mut self, mut earlier: Vec<LineError>) {
        earlier.append(&mut self.warnings);
        self.warnings = earlier;
    }
    /// What loaded with a warning, each naming its file:line.
    pub fn warnings(&self) -> &[LineError] {
        &self.warnings
    }
    /// The netgroups the rules name (sorted): what the shells look up per client.
    pub fn netgroups(&self) -> &Arc<[Arc<str>]> {
        &self.netgroups
    }
    /// Host names that did not resolve when the table was built.
    pub fn unresolved_names(&self) -> &[String] {
        &self.unresolved
    }
    /// Longest-prefix match of a normalised absolute path (no "//", no trailing '/', no
    /// "." or ".." components).
    pub fn lookup<'t>(&'t self, path: &'t str) -> Option<ExportMatch<'t>> {
        table::lookup(self, path)
    }
    /// The export whose path is exactly `raw` (bytes as received). Export paths are
    /// normalised, UTF-8 and NUL-free, so a hit means `raw` is already normal: the MNT of an
    /// export itself, the common case, skips normalisation and UTF-8 validation.
    pub fn lookup_exact(&self, raw: &[u8]) -> Option<&Export> {
        self.by_path.get(raw).and_then(|&i| self.exports.get(i))
    }
    /// All exports in file order.
    pub fn exports(&self) -> &[Export] {
        &self.exports
    }
    /// The XDR `exports` list of all exports (each entry preceded by 1, ends with 0),
    /// precomputed at compile time.
    pub fn export_list_xdr(&self) -> &[u8] {
        &self.xdr
    }
    /// End offsets in `export_list_xdr()` of each entry (for truncating at an entry boundary).
    pub fn export_entry_ends(&self) -> &[usize] {
        &self.ends
    }
    /// The XDR bytes of entry `i` alone (its leading 1 included, no list terminator), for
    /// building a per-client filtered list.
    pub fn export_entry_xdr(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.xdr.get(start..end)
    }
    /// Human-readable dump of the compiled table (`xdp-mountd check`).
    pub fn describe(&self) -> String {
        table::describe(self)
    }
}

impl Export {
    /// The exported path, normalised.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// Root handle of the export.
    pub fn handle(&self) -> &FileHandle {
        &self.handle
    }
    /// Where the root handle comes from.
    pub fn handle_source(&self) -> &HandleSource {
        &self.source
    }
    /// Line of the exports file that defined this export.
    pub fn line(&self) -> usize {
        self.line
    }
    /// Handle for `subpath` below the export (relative, no leading '/', normalised, never
    /// empty); None when this export cannot hand out subdirectory handles.
    pub fn subdir_handle(&self, subpath: &str) -> Option<FileHandle> {
        let subpath = subpath.trim_start_matches('/');
        if subpath.is_empty() {
            return match self.source {
                HandleSource::Explicit => Some(self.handle),
                _ => self
                    .source
                    .identity(&self.path, "")
                    .map(|id| FileHandle::synthetic(&id)),
            };
        }
        self.source
            .identity(&self.path, subpath)
            .map(|id| FileHandle::synthetic(&id))
    }
    /// Match a client; `host` is what the caller looked up about it (name, netgroups).
    pub fn check_client(&self, addr: IpAddr, host: Option<&HostFacts>) -> ClientCheck<'_> {
        table::check_client(self, addr.to_canonical(), host)
    }
    /// The client specs as written in the exports file, for the EXPORT `groups` list.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }
    /// The compiled client rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

#[cfg(test)]
mod tests;
