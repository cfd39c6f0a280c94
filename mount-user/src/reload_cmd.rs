//! `xdp-mountd reload`: ask the running daemon to reload its exports and print the outcome,
//! as `exportfs -ra` would on the administrator's terminal.
use std::process::ExitCode;

use mount_user::exports::ReloadReport;
use mount_user::stats::server;

use crate::stats_cmd::ControlArgs;

/// Ask, wait, print: success 0; errors (the old exports keep serving) 1.
pub fn run(args: &ControlArgs) -> anyhow::Result<ExitCode> {
    let report = server::reload(&args.path())?;
    print!("{}", render(&report));
    if report.ok {
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &report.errors {
            eprintln!("{e}");
        }
        eprintln!(
            "xdp-mountd: reload failed; the daemon keeps serving its previous {} export(s)",
            report.exports
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The report as lines for a terminal (errors excepted: they go to stderr).
fn render(report: &ReloadReport) -> String {
    let mut out = String::new();
    for w in &report.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if !report.ok {
        return out;
    }
    let d = &report.diff;
    for (what, paths) in [
        ("added", &d.added),
        ("removed", &d.removed),
        ("changed", &d.changed),
    ] {
        for p in paths {
            out.push_str(&format!("{what} {p}\n"));
        }
    }
    out.push_str(&format!(
        "reloaded: {} export(s) in force; {} added, {} removed, {} changed\n",
        report.exports,
        d.added.len(),
        d.removed.len(),
        d.changed.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mount_user::exports::TableDiff;

    #[test]
    fn renders_changes_and_warnings() {
        let report = ReloadReport {
            ok: true,
            exports: 2,
            diff: TableDiff {
                added: vec!["/a".into()],
                removed: vec![],
                changed: vec!["/b".into()],
            },
            errors: vec![],
            warnings: vec!["e:3: cannot resolve host \"x\"".into()],
        };
        assert_eq!(
            render(&report),
            "warning: e:3: cannot resolve host \"x\"\nadded /a\nchanged /b\n\
             reloaded: 2 export(s) in force; 1 added, 0 removed, 1 changed\n"
        );
        let failed = ReloadReport {
            errors: vec!["e:1: bad".into()],
            ..Default::default()
        };
        assert_eq!(render(&failed), "");
    }
}
