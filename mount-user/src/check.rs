//! `xdp-mountd check`: validate the exports and print the compiled table: each export with
//! its handle, each client rule with its match kind (netgroup, wildcard, network, address,
//! ...) and its per-flavor options. Warnings go to stderr with their file:line.
use std::io::Write as _;

use mount_user::exports::{ExportSources, ExportTable, SystemResolver};

use crate::cli::CheckArgs;

/// Load the sources; print `describe()` on success, return the `FILE:LINE: message` errors.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let table = ExportTable::load_sources(&ExportSources::new(args.exports), &SystemResolver)?;
    for w in table.warnings() {
        eprintln!("warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(table.describe().as_bytes())?;
    out.flush()?;
    Ok(())
}
