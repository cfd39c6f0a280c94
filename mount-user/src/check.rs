//! `xdp-mountd check`: validate an exports file and print the compiled table.
use std::io::Write as _;

use mount_user::exports::ExportTable;

use crate::cli::CheckArgs;

/// Load the file; print `describe()` on success, return the `FILE:LINE: message` errors.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let table = ExportTable::load(&args.exports)?;
    let mut out = std::io::stdout().lock();
    out.write_all(table.describe().as_bytes())?;
    out.flush()?;
    Ok(())
}
