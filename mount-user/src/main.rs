//! The `xdp-mountd` binary: `serve`, `check`, `reload`, `stats` and `storm`.
use std::process::ExitCode;

use clap::Parser as _;
use mount_proto::exports::ExportsError;
use tracing_subscriber::EnvFilter;

mod check;
mod cli;
mod cluster_cmd;
mod gateway;
mod manpage;
mod reload_cmd;
mod serve;
mod stats_cmd;

use cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Check(args) => check::run(args),
        Command::Stats(args) => stats_cmd::run(args),
        Command::Storm(args) => mount_storm::run(*args),
        Command::Reload(args) => match reload_cmd::run(&args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Manpage(args) => manpage::run(args),
        Command::Cluster(args) => cluster_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Exports errors are already `FILE:LINE: message` lines: print them as they are.
            if e.downcast_ref::<ExportsError>().is_some() {
                eprintln!("{e}");
            } else {
                eprintln!("xdp-mountd: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (stdout carries only the READY line and `check` output), filtered by
/// RUST_LOG, default `info`.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into journald or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The journal stamps every line itself: under systemd our own timestamps are noise.
    match (format, stderr_is_journal()) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Json, false) => builder.json().init(),
        (LogFormat::Json, true) => builder.json().without_time().init(),
    }
}

/// Whether stderr is the journal stream systemd connected (JOURNAL_STREAM names its
/// `device:inode`, per systemd.exec(5); a redirected stderr no longer matches).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let stderr = std::io::stderr();
    let Ok(fd) = stderr.as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
