//! `xdp-mountd stats`: read a running daemon's counters from its stats socket.
use std::path::PathBuf;

use clap::Args;
use mount_user::stats::{self, server};

/// Which daemon to talk to: its control (stats) socket.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// The MOUNT port of the daemon to ask (finds /run/xdp-mountd/PORT.sock).
    #[arg(long, value_name = "PORT", default_value_t = 644)]
    pub port: u16,

    /// The daemon's stats socket (overrides --port); also spelled --stats-socket, as
    /// `serve` names it.
    #[arg(long, alias = "stats-socket", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

impl ControlArgs {
    /// The socket path: --socket, else the default for --port.
    pub fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| stats::default_socket_path(self.port))
    }
}

/// Options of `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Which daemon.
    #[command(flatten)]
    pub control: ControlArgs,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Fetch and print.
pub fn run(args: StatsArgs) -> anyhow::Result<()> {
    let report = server::fetch(&args.control.path())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
