//! Command-line interface (clap derive).
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--version`: the release, the commit and the toolchain that built the embedded XDP program
/// (known to `mount-xdp`, whose build script builds it; so not a `concat!` of literals).
pub static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (commit {})\neBPF toolchain: {}",
        env!("CARGO_PKG_VERSION"),
        env!("XDP_MOUNTD_COMMIT"),
        mount_xdp::EBPF_TOOLCHAIN
    )
});

/// xdp-mountd: an NFS MOUNT service (ONC RPC program 100005, versions 1-3).
#[derive(Debug, Parser)]
#[command(
    name = "xdp-mountd",
    version,
    long_version = LONG_VERSION.as_str(),
    about = "NFS MOUNT service (ONC RPC program 100005, versions 1-3)",
    long_about = "xdp-mountd answers NFS MOUNT calls (RPC program 100005, versions 1, 2 and 3: \
                  MNT, UMNT, UMNTALL, DUMP, EXPORT, PATHCONF) for the exports described in an \
                  exports(5) file, over UDP and TCP, IPv4 and IPv6.\n\n\
                  Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug or \
                  RUST_LOG=mount_user::socket=trace) to change what is logged (default: info).",
    after_help = "Examples:\n  \
                  xdp-mountd check --exports /etc/exports\n  \
                  xdp-mountd serve --exports /etc/exports --rmtab /var/lib/nfs/rmtab\n  \
                  RUST_LOG=debug xdp-mountd serve --exports ./exports --port 20048 --no-rpcbind"
)]
pub struct Cli {
    /// Format of the log lines on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MOUNT over UDP and TCP until SIGINT or SIGTERM.
    #[command(
        long_about = "Serve MOUNT over UDP and TCP until SIGINT or SIGTERM.\n\n\
                      Loads the exports (default: /etc/exports and /etc/exports.d/*.exports; \
                      a malformed file is refused with FILE:LINE: message and exit status 1), \
                      loads the mount list from --rmtab, binds UDP and TCP on --bind:--port, \
                      registers with rpcbind, then prints one line containing READY to \
                      stdout.\n\n\
                      Reload: `xdp-mountd reload` or SIGHUP reads the exports again (on error \
                      the current exports stay in force and the errors are reported); \
                      SIGINT/SIGTERM stop the listeners, unregister from rpcbind, write the \
                      rmtab and exit 0.",
        after_help = "Examples:\n  \
                      xdp-mountd serve --exports /etc/exports\n  \
                      xdp-mountd serve --exports /etc/exports --rmtab /var/lib/nfs/rmtab --udp-workers 4\n  \
                      xdp-mountd serve --exports /etc/exports --iface eth0 --xdp native --cores 2-3\n  \
                      xdp-mountd serve --exports ./exports --bind 127.0.0.1 --port 0 --no-rpcbind\n  \
                      xdp-mountd serve --exports /etc/exports --upstream 127.0.0.1:20048 --upstream-program 400005"
    )]
    Serve(Box<ServeArgs>),
    /// Validate the exports and print what they compile to.
    #[command(
        long_about = "Validate the exports and print what they compile to: each export with \
                      its root file handle (and where the handle comes from) and each client \
                      rule with its match kind (address, network, host name, wildcard, \
                      netgroup, ...), its effective options and its per-flavor options. \
                      Warnings (an unresolvable host, a duplicated client) go to stderr with \
                      FILE:LINE. Exit status 0 when the exports are valid; otherwise 1, with \
                      one FILE:LINE: message per error on stderr.\n\n\
                      With --upstream, also asks that MOUNT server for every export without \
                      fh= (MNT v3 and v1) and prints its handle or its error; exit status 1 \
                      when an export gets no handle.",
        after_help = "Examples:\n  xdp-mountd check --exports /etc/exports\n  \
                      xdp-mountd check --exports /etc/exports --upstream 127.0.0.1:20048 --upstream-program 400005"
    )]
    Check(CheckArgs),
    /// Show a running daemon's counters: per queue, XDP program, AF_XDP sockets, procedures.
    Stats(crate::stats_cmd::StatsArgs),
    /// Ask the running daemon to reload its exports, and print what changed.
    #[command(
        long_about = "Ask the running daemon to reload its exports (as SIGHUP does) over its \
                      control socket, wait for the outcome and print it: the exports added, \
                      removed and changed, and any warnings. When the new exports have \
                      errors, prints them (FILE:LINE: message) and exits 1; the daemon keeps \
                      serving the previous exports.",
        after_help = "Examples:\n  xdp-mountd reload\n  xdp-mountd reload --socket /run/xdp-mountd/644.sock"
    )]
    Reload(crate::stats_cmd::ControlArgs),
    /// Load a MOUNT server (any implementation) with calls and measure it.
    #[command(
        long_about = "Load a MOUNT server (any implementation) with calls and measure it.\n\n\
                      Closed loop (--window outstanding calls) or open loop (--rate calls/s), \
                      bounded by --count and --duration (whichever comes first), then a short \
                      bounded drain. Every reply is checked (xid, accept state, mount status, \
                      results); wrong replies are counted apart from lost ones. Prints a \
                      summary and, with --json, one JSON object. Ctrl-C stops early and still \
                      reports.",
        after_help = "Examples:\n  \
                      xdp-mountd storm --target 10.0.0.1:644 --paths /srv --count 200000\n  \
                      xdp-mountd storm --target 10.0.0.1:644 --transport tcp --clients 8 --window 256 --mix null=1,export3=1\n  \
                      xdp-mountd storm --target 10.0.0.1:644 --rate 20000 --duration 5 --paths-file paths --json -\n  \
                      xdp-mountd storm --target 10.0.0.1:644 --io afxdp --iface eth1 --clients 64 --paths /srv\n  \
                      xdp-mountd storm --target 10.0.0.1:644 --mix null --pass-through-xdp veth1"
    )]
    // Boxed: storm's options are several times the size of any other command's.
    Storm(Box<mount_storm::StormArgs>),
    /// Cluster mode: publish the exports to etcd, or show the nodes' state.
    #[command(
        long_about = "Cluster mode (serve --cluster): several nodes share the exports, the \
                      handles learned from --upstream and the mount list through etcd.\n\n\
                      `publish` validates the exports exactly as `check` does (FILE:LINE: \
                      message, exit 1, nothing written) and writes the file set as one key; \
                      every node compiles and serves it. `status` shows the published \
                      generation and, per live node, the generation it serves, its \
                      mount-list lag and its last contact with etcd.",
        after_help = "Examples:\n  \
                      xdp-mountd cluster publish --cluster etcd://10.0.0.1:2379 --exports /etc/exports\n  \
                      xdp-mountd cluster status --cluster etcd://10.0.0.1:2379,10.0.0.2:2379 --json"
    )]
    Cluster(crate::cluster_cmd::ClusterCmd),
    /// Write the man pages (for packaging).
    #[command(hide = true)]
    Manpage(crate::manpage::ManpageArgs),
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// An exports(5) file, or a directory whose *.exports files are read; repeat for more
    /// (re-read on SIGHUP and `xdp-mountd reload`) [default: /etc/exports and
    /// /etc/exports.d].
    #[arg(long, value_name = "PATH")]
    pub exports: Vec<PathBuf>,

    /// Seconds a client's reverse-resolved name and netgroup memberships stay cached
    /// (name, wildcard and @netgroup rules); a reload forgets them all.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub name_ttl: u64,

    /// Seconds between background lookups of exported host names that did not resolve
    /// (a name that resolves at last triggers a reload).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub resolve_retry: u64,

    /// Seconds a failed reverse lookup stays cached (at most --name-ttl).
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub negative_ttl: u64,

    /// UDP and TCP port of the MOUNT service. 0 picks a free port (logged, and printed on
    /// the READY line).
    #[arg(long, value_name = "PORT", default_value_t = 644)]
    pub port: u16,

    /// Keep the mount list (what DUMP reports) in this file, in the nfs-utils rmtab format:
    /// read at start, rewritten after changes and at exit. Without it the mount list lives
    /// in memory only and starts empty.
    #[arg(long, value_name = "FILE")]
    pub rmtab: Option<PathBuf>,

    /// Do not register with rpcbind/portmapper (clients must then be told the port).
    /// Without this flag, registration is attempted and skipped with a log line if rpcbind
    /// is not running.
    #[arg(long)]
    pub no_rpcbind: bool,

    /// UDP worker threads, each with its own SO_REUSEPORT socket [default: number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub udp_workers: Option<u16>,

    /// TCP connections served at once (see --max-connections-per-host for what happens
    /// when they are all taken).
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// TCP connections served at once from one client host; more from it are closed at
    /// once. At --max-connections, the connection idle longest is closed to admit a new
    /// one, so neither one host nor many can lock others out with idle connections.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_host: u32,

    /// Close a TCP connection whose call record takes longer than this many seconds from
    /// its first byte to its last (a client dribbling bytes to hold a connection).
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub record_timeout: u64,

    /// Close a TCP connection after this many seconds without traffic.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,

    /// Largest RPC call record accepted over TCP, in bytes; a bigger one closes that
    /// connection (a maximal MOUNT call is under 2 KiB).
    #[arg(long, value_name = "BYTES", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(64..=16 * 1024 * 1024))]
    pub max_record: u32,

    /// Directories the mount list (showmount -a, rmtab) records per client host; a MNT past
    /// it is answered but not recorded, counted and logged.
    #[arg(long, value_name = "N", default_value_t = mount_proto::mountlist::Limits::PER_HOST)]
    pub max_mounts_per_host: usize,

    /// Entries the mount list records in all (bounds memory, rmtab and DUMP replies against
    /// MNT floods from spoofed sources); a MNT past it is answered but not recorded.
    #[arg(long, value_name = "N", default_value_t = mount_proto::mountlist::Limits::TOTAL)]
    pub max_mounts: usize,

    /// Over UDP, an EXPORT, EXPORTALL or DUMP reply to a source outside
    /// --trusted-networks is cut (at an entry boundary, still a valid list) to this many
    /// times the call's size, so the service cannot be used to amplify floods at forged
    /// addresses; 0 turns the cap off. TCP and trusted networks get whole lists.
    #[arg(long, value_name = "FACTOR", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub udp_list_factor: u32,

    /// Networks whose UDP list replies are not capped (e.g. 10.0.0.0/8,fd00::/8),
    /// comma-separated.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub trusted_networks: Vec<ipnet::IpNet>,

    /// Limit the calls each source prefix (see --rate-limit-v4-prefix) may make over UDP
    /// and TCP: CALLS_PER_S sustained, BURST at once after a quiet spell (default: one
    /// second's worth). Over the limit, UDP calls are dropped (in the XDP program, before
    /// they reach a worker) and TCP calls wait. Off by default. A mounting client makes 1-3
    /// calls per mount; 200/400 leaves a host room for a few dozen mounts a second.
    #[arg(long, value_name = "CALLS_PER_S[/BURST]")]
    pub rate_limit: Option<mount_user::ratelimit::CallRate>,

    /// IPv4 sources are limited together by this prefix length (24: one limit per /24).
    #[arg(long, value_name = "LEN", default_value_t = mount_user::ratelimit::RateLimits::V4_PREFIX,
          value_parser = clap::value_parser!(u8).range(0..=32))]
    pub rate_limit_v4_prefix: u8,

    /// IPv6 sources are limited together by this prefix length (56: one limit per /56).
    #[arg(long, value_name = "LEN", default_value_t = mount_user::ratelimit::RateLimits::V6_PREFIX,
          value_parser = clap::value_parser!(u8).range(0..=128))]
    pub rate_limit_v6_prefix: u8,

    /// Limit the calls of all sources together, after each source's own limit (the
    /// service's ceiling): CALLS_PER_S[/BURST]. Off by default.
    #[arg(long, value_name = "CALLS_PER_S[/BURST]")]
    pub rate_limit_global: Option<mount_user::ratelimit::CallRate>,

    /// Source prefixes tracked at once for --rate-limit (the least recently seen is
    /// forgotten first); 88 bytes of kernel memory each in the XDP program's map.
    #[arg(long, value_name = "N", default_value_t = mount_user::ratelimit::RateLimits::SOURCES,
          value_parser = clap::value_parser!(u32).range(64..=16_777_216))]
    pub rate_limit_sources: u32,

    /// EXPORT lists only the exports the calling client may mount (default: all exports,
    /// as nfs-utils' mountd does).
    #[arg(long)]
    pub filter_exports: bool,

    /// Address to listen on. The default, ::, is a dual-stack socket that serves IPv4 and
    /// IPv6 (falls back to 0.0.0.0 when IPv6 is unavailable).
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V6(Ipv6Addr::UNSPECIFIED))]
    pub bind: IpAddr,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9644; port 0 picks
    /// one, printed on the READY line). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Check our rpcbind registrations every SECS seconds and restore them when they are
    /// gone (rpc.mountd and Ganesha remove program 100005 when they start or stop); 0: never.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub rpcbind_check: u64,

    /// Gateway mode.
    #[command(flatten)]
    pub upstream: crate::gateway::UpstreamArgs,

    /// Unix socket that `xdp-mountd stats` and `xdp-mountd reload` talk to [default:
    /// /run/xdp-mountd/PORT.sock].
    #[arg(long, value_name = "PATH")]
    pub stats_socket: Option<std::path::PathBuf>,

    /// AF_XDP fast path.
    #[command(flatten)]
    pub xdp: crate::serve::xdp::XdpArgs,

    /// Cluster mode.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Cluster mode's options of `serve`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Cluster mode: share the exports, the handles learned from --upstream and the mount
    /// list with the other nodes through etcd at these endpoints. The exports then come
    /// from etcd (`xdp-mountd cluster publish`), so --exports is refused.
    #[arg(
        long,
        value_name = "etcd://HOST:PORT[,HOST:PORT...]",
        requires = "node",
        conflicts_with = "exports"
    )]
    pub cluster: Option<String>,

    /// This node's name in the cluster (letters, digits, '.', '_', '-'; unique per node).
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub node: Option<String>,

    /// The etcd key prefix of the cluster.
    #[arg(long, value_name = "PREFIX", default_value = mount_user::cluster::DEFAULT_PREFIX)]
    pub cluster_prefix: String,

    /// Where the node keeps the last exports set it compiled, served from when etcd is
    /// unreachable at start [default: /var/lib/xdp-mountd/cluster-NODE.exports].
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_cache: Option<PathBuf>,
}

impl ClusterArgs {
    /// The cluster configuration; None when standalone.
    pub fn config(&self) -> anyhow::Result<Option<mount_user::cluster::Config>> {
        use mount_user::cluster;
        let (Some(url), Some(node)) = (&self.cluster, &self.node) else {
            return Ok(None);
        };
        anyhow::ensure!(
            cluster::keys::valid_node(node),
            "--node {node:?}: use 1-64 letters, digits, '.', '_' or '-'"
        );
        Ok(Some(cluster::Config {
            endpoints: cluster::parse_url(url)?,
            node: node.clone(),
            keys: cluster::Keys::new(&self.cluster_prefix),
            cache: self
                .cluster_cache
                .clone()
                .unwrap_or_else(|| cluster::default_cache(node)),
        }))
    }
}

impl ServeArgs {
    /// The rate limits the options ask for.
    pub fn rate_limits(&self) -> mount_user::ratelimit::RateLimits {
        mount_user::ratelimit::RateLimits {
            per_source: self.rate_limit,
            global: self.rate_limit_global,
            v4_prefix: self.rate_limit_v4_prefix,
            v6_prefix: self.rate_limit_v6_prefix,
            sources: self.rate_limit_sources,
        }
    }

    /// The number of UDP workers, resolving the default.
    pub fn udp_workers(&self) -> usize {
        self.udp_workers.map(usize::from).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
        })
    }
}

/// Options of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// An exports(5) file or a directory of *.exports files; repeat for more [default:
    /// /etc/exports and /etc/exports.d].
    #[arg(long, value_name = "PATH")]
    pub exports: Vec<PathBuf>,

    /// Also ask this upstream MOUNT server for every export's handle and print its answers.
    #[command(flatten)]
    pub upstream: crate::gateway::UpstreamArgs,
}

#[cfg(test)]
mod tests;
