//! `xdp-mountd check`: validate the exports and print the compiled table: each export with
//! its handle, each client rule with its match kind (netgroup, wildcard, network, address,
//! ...) and its per-flavor options. Warnings go to stderr with their file:line. With
//! `--upstream`, also what upstream answers for each export.
use std::io::Write as _;

use mount_proto::mount::client::MntAnswer;
use mount_user::exports::{load_sources, ExportSources, SystemResolver};
use mount_user::upstream::client::MountClient;
use mount_user::upstream::status_name;

use crate::cli::CheckArgs;
use crate::gateway;

/// Load the sources; print `describe()` on success, return the `FILE:LINE: message` errors.
/// With `--upstream`, print each export's learned handle (v3 and v1) or upstream's error;
/// the exit status is 1 when any export has no handle from upstream.
pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let table = load_sources(&ExportSources::new(args.exports), &SystemResolver)?;
    for w in table.warnings() {
        eprintln!("warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(table.describe().as_bytes())?;
    let Some(config) = gateway::config(&args.upstream)? else {
        out.flush()?;
        return Ok(());
    };
    let mut client = MountClient::new(config.target)?;
    writeln!(
        out,
        "\nupstream {}:",
        args.upstream.upstream.as_deref().unwrap_or("?")
    )?;
    let mut missing = 0;
    for root in gateway::roots(&table) {
        let v3 = client.mnt(&root, 3);
        if !matches!(v3, Ok(MntAnswer::Handle(_))) {
            missing += 1;
        }
        let v1 = match &v3 {
            Ok(_) => describe(&client.mnt(&root, 1)),
            Err(_) => "-".to_string(),
        };
        writeln!(out, "  {root}\n    v3: {}\n    v1: {v1}", describe(&v3))?;
    }
    out.flush()?;
    if missing > 0 {
        anyhow::bail!("{missing} export(s) got no handle from upstream");
    }
    Ok(())
}

fn describe(answer: &Result<MntAnswer, mount_user::upstream::client::UpstreamError>) -> String {
    match answer {
        Ok(MntAnswer::Handle(h)) => format!("handle {} ({} bytes)", h.to_hex(), h.len),
        Ok(MntAnswer::Status(s)) => format!("refused: status {s} ({})", status_name(*s)),
        Err(e) => format!("error: {e}"),
    }
}
