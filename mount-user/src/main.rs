//! The `xdp-mountd` binary: `serve`, `check` and `stats`.
use std::process::ExitCode;

use clap::Parser as _;
use mount_user::exports::ExportsError;
use tracing_subscriber::EnvFilter;

mod check;
mod cli;
mod fastpath;
mod gateway;
mod registration;
mod serve;
mod stats_cmd;

use cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => check::run(args),
        Command::Stats(args) => stats_cmd::run(args),
        Command::Storm(args) => mount_user::storm::run(args),
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
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
