//! The daemon's side of the exports: which files make them up ([`ExportSources`], read
//! here), the system resolver, the atomic publication of the compiled table
//! ([`SharedExports`]; readers never lock) and reloading ([`Reloader`], with a report of
//! what changed).
//!
//! Parsing and compiling are the protocol core's ([`mount_proto::exports`]), which starts
//! from text and a [`Resolver`]: this module hands it the files' contents and the system
//! resolver, so the core never reads a file nor asks DNS.
use std::io;
use std::net::{IpAddr, ToSocketAddrs};

use mount_proto::exports::{ExportTable, ExportsError, Resolver};

mod diff;
mod reload;
mod shared;
mod sources;

pub use diff::TableDiff;
pub use reload::{ReloadReport, Reloader};
pub use shared::SharedExports;
pub use sources::{ExportSources, DEFAULT_DIR, DEFAULT_FILE};

/// The system resolver (getaddrinfo through std).
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        let mut out: Vec<IpAddr> = (name, 0u16)
            .to_socket_addrs()?
            .map(|sa| sa.ip().to_canonical())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Read every source, merge, resolve host names and compile; warnings (a missing default
/// file first, then the table's own) are kept in [`ExportTable::warnings`] for the caller
/// to show (the daemon logs each once).
pub fn load_sources(
    sources: &ExportSources,
    resolver: &dyn Resolver,
) -> Result<ExportTable, ExportsError> {
    let (texts, warnings) = sources.read()?;
    let texts: Vec<(&str, &str)> = texts
        .iter()
        .map(|t| (t.text.as_str(), t.origin.as_str()))
        .collect();
    let mut table = ExportTable::compile_texts(&texts, resolver)?;
    table.prepend_warnings(warnings);
    Ok(table)
}

/// Parse and compile exports text with the system resolver; `origin` names it in errors.
pub fn parse_str(text: &str, origin: &str) -> Result<ExportTable, ExportsError> {
    ExportTable::parse_str_with(text, origin, &SystemResolver)
}
