//! `xdp-mountd cluster publish` and `xdp-mountd cluster status`.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mount_user::cluster::{self, membership, ExportsSet, Keys};
use mount_user::exports::{ExportSources, SystemResolver};

/// `cluster`'s subcommands.
#[derive(Debug, Args)]
pub struct ClusterCmd {
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// What `cluster` does.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Validate the exports (as `check` does) and publish them to every node; prints
    /// `published generation N (K exports)`.
    Publish(PublishArgs),
    /// The published generation and each live node's state.
    Status(StatusArgs),
}

/// Where the cluster is.
#[derive(Debug, Args)]
pub struct Where {
    /// etcd endpoints: etcd://HOST:PORT[,HOST:PORT...].
    #[arg(long, value_name = "etcd://HOST:PORT[,HOST:PORT...]")]
    pub cluster: String,
    /// The etcd key prefix of the cluster.
    #[arg(long, value_name = "PREFIX", default_value = cluster::DEFAULT_PREFIX)]
    pub cluster_prefix: String,
}

/// Options of `cluster publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The cluster.
    #[command(flatten)]
    pub at: Where,
    /// An exports(5) file or a directory of *.exports files; repeat for more.
    #[arg(long, value_name = "PATH", required = true)]
    pub exports: Vec<PathBuf>,
}

/// Options of `cluster status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The cluster.
    #[command(flatten)]
    pub at: Where,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs one `cluster` subcommand.
pub fn run(cmd: ClusterCmd) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cmd.command {
        ClusterCommand::Publish(args) => {
            // Validated before anything is written; errors are exactly `check`'s.
            let (set, table) =
                ExportsSet::read(&ExportSources::new(args.exports), &SystemResolver)?;
            for w in table.warnings() {
                eprintln!("warning: {w}");
            }
            let endpoints = cluster::parse_url(&args.at.cluster)?;
            let keys = Keys::new(&args.at.cluster_prefix);
            let generation = runtime.block_on(async {
                let mut client = cluster::connect_first(&endpoints).await?;
                membership::publish(&mut client, &keys, &set).await
            })?;
            println!(
                "published generation {generation} ({} exports)",
                table.exports().len()
            );
        }
        ClusterCommand::Status(args) => {
            let endpoints = cluster::parse_url(&args.at.cluster)?;
            let keys = Keys::new(&args.at.cluster_prefix);
            let report = runtime.block_on(async {
                let mut client = cluster::connect_first(&endpoints).await?;
                membership::read_status(&mut client, &keys).await
            })?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.to_table(membership::unix_ms()));
            }
        }
    }
    Ok(())
}
