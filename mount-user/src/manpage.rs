//! `xdp-mountd manpage --out DIR` (hidden): the man pages of section 8, generated from the
//! clap definitions so that they never drift from `--help`. Used by `cargo xtask package`.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};

use crate::cli::Cli;

/// Options of `manpage`.
#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Directory to write xdp-mountd.8 and xdp-mountd-SUBCOMMAND.8 into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Writes one page for the program and one per visible subcommand.
pub fn run(args: ManpageArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let cli = Cli::command();
    let mut pages = vec![("xdp-mountd".to_owned(), cli.clone())];
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("xdp-mountd-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("xdp-mountd {}", sub.get_name()));
        pages.push((name, page));
    }
    for (name, command) in pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(command)
            .section("8")
            .render(&mut roff)
            .with_context(|| format!("rendering {name}.8"))?;
        let path = args.out.join(format!("{name}.8"));
        std::fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
