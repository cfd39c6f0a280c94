//! exports(5): parsing, host resolution and the compiled, immutable [`ExportTable`].
//!
//! INTERFACE STUB written by the integrator; the exports helper replaces the bodies.
use std::net::IpAddr;
use std::path::Path;

/// Maximum length of a file handle (NFSv3 `fhandle3`).
pub const FHSIZE3: usize = 64;

/// A file handle held inline (no allocation): `len` bytes of `bytes` are meaningful.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileHandle {
    pub len: u8,
    pub bytes: [u8; FHSIZE3],
}

impl FileHandle {
    /// The handle's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What a matched client rule grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub read_only: bool,
    /// `secure`: MNT must come from a source port below 1024.
    pub secure: bool,
    /// Security flavors in preference order (`sec=`), as RPC auth flavor numbers.
    pub flavors: Vec<u32>,
}

/// The result of matching a client against an export's client list.
pub enum ClientCheck<'a> {
    Allowed(&'a ClientOptions),
    Denied,
    /// A `*.domain` rule could match but the caller gave no host name: resolve and ask again.
    NeedName,
}

/// One export, compiled.
pub struct Export {}

impl Export {
    /// The exported path, normalised.
    pub fn path(&self) -> &str {
        unimplemented!()
    }
    /// Root handle of the export.
    pub fn handle(&self) -> &FileHandle {
        unimplemented!()
    }
    /// Handle for `subpath` below the export (relative, no leading '/', normalised, never
    /// empty); None when this export cannot hand out subdirectory handles.
    pub fn subdir_handle(&self, _subpath: &str) -> Option<FileHandle> {
        unimplemented!()
    }
    /// Match a client; `name` is its reverse-resolved host name when the caller has one.
    pub fn check_client(&self, _addr: IpAddr, _name: Option<&str>) -> ClientCheck<'_> {
        unimplemented!()
    }
    /// The client specs as written in the exports file, for the EXPORT `groups` list.
    pub fn groups(&self) -> &[String] {
        unimplemented!()
    }
}

/// A longest-prefix lookup result.
pub struct ExportMatch<'t> {
    pub export: &'t Export,
    /// The part of the path below the export, without leading '/'; "" for the export itself.
    pub subpath: &'t str,
}

/// Errors of loading an exports file; Display names file:line.
#[derive(Debug, thiserror::Error)]
pub enum ExportsError {
    #[error("{0}")]
    Stub(String),
}

/// The compiled, immutable export table, swapped atomically on reload.
pub struct ExportTable {}

impl ExportTable {
    /// An empty table.
    pub fn empty() -> Self {
        unimplemented!()
    }
    /// Read, parse, resolve host names and compile an exports file.
    pub fn load(_path: &Path) -> Result<Self, ExportsError> {
        unimplemented!()
    }
    /// Parse and compile exports text; `origin` names it in errors (file name).
    pub fn parse_str(_text: &str, _origin: &str) -> Result<Self, ExportsError> {
        unimplemented!()
    }
    /// Longest-prefix match of a normalised absolute path (no "//", no trailing '/', no
    /// "." or ".." components).
    pub fn lookup<'t>(&'t self, _path: &'t str) -> Option<ExportMatch<'t>> {
        unimplemented!()
    }
    /// All exports in file order.
    pub fn exports(&self) -> &[Export] {
        unimplemented!()
    }
    /// The XDR `exports` list of all exports (each entry preceded by 1, ends with 0),
    /// precomputed at compile time.
    pub fn export_list_xdr(&self) -> &[u8] {
        unimplemented!()
    }
    /// End offsets in `export_list_xdr()` of each entry (for truncating at an entry boundary).
    pub fn export_entry_ends(&self) -> &[usize] {
        unimplemented!()
    }
}
