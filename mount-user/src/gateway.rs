//! Gateway mode on the command line: `--upstream HOST[:PORT]` and friends, and the steps
//! `serve` and `check` take with it (start the learner, learn the export roots).
use std::net::{IpAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use mount_proto::exports::{ExportTable, HandleSource};
use mount_proto::mount::client::DEFAULT_PROGRAM;
use mount_user::upstream::client::Target;
use mount_user::upstream::{Upstream, UpstreamConfig};

/// How long each upstream call waits for a reply before it is sent again.
const TRY_TIMEOUT: Duration = Duration::from_millis(500);
/// Sends per upstream call.
const TRIES: u32 = 3;
/// How long `serve` waits at start and reload for the export roots' handles. Bounded: when
/// upstream is down, the first call's timeout (1.5 s) marks it down and the rest return.
pub const LEARN_DEADLINE: Duration = Duration::from_secs(10);

/// Gateway-mode options of `serve` and `check`.
#[derive(Debug, Args, Clone)]
pub struct UpstreamArgs {
    /// Gateway mode: learn each export's root file handle from this MOUNT server
    /// (HOST, HOST:PORT, [V6]:PORT). Without PORT, HOST's portmapper is asked. Exports with
    /// fh= keep their handle; the exports file still decides who may mount what.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub upstream: Option<String>,

    /// The RPC program number upstream's MOUNT service uses (a private one keeps it apart
    /// from ours in rpcbind).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PROGRAM, requires = "upstream")]
    pub upstream_program: u32,

    /// Learned handles are refreshed after half of this many seconds; known handles keep
    /// being served while upstream is unreachable.
    #[arg(long, value_name = "SECS", default_value_t = 1800, requires = "upstream",
          value_parser = clap::value_parser!(u64).range(2..=604_800))]
    pub upstream_ttl: u64,

    /// How long a MNT of a path not learned yet waits for upstream (off the fast path)
    /// before it is answered SERVERFAULT (v3) / EIO (v1, v2).
    #[arg(long, value_name = "MS", default_value_t = 2000, requires = "upstream",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub upstream_wait_ms: u64,

    /// UMNT upstream right after each learning MNT, so upstream's mount list stays clean.
    #[arg(long, requires = "upstream")]
    pub upstream_umnt: bool,
}

/// Split `HOST[:PORT]` (`[V6]:PORT` and bare IPv6 literals too) and resolve HOST.
pub fn parse_target(spec: &str) -> anyhow::Result<(IpAddr, Option<u16>)> {
    let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .with_context(|| format!("--upstream {spec}: missing ']'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => anyhow::bail!("--upstream {spec}: expected :PORT after ']'"),
        };
        (host, port)
    } else if spec.matches(':').count() == 1 {
        let (h, p) = spec.split_once(':').context("unreachable")?;
        (h, Some(p))
    } else {
        (spec, None)
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .with_context(|| format!("--upstream {spec}: bad port {p:?}"))
        })
        .transpose()?;
    if host.is_empty() {
        anyhow::bail!("--upstream {spec}: no host");
    }
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => (host, 0)
            .to_socket_addrs()
            .with_context(|| format!("--upstream: resolving {host}"))?
            .next()
            .with_context(|| format!("--upstream: {host} has no address"))?
            .ip(),
    };
    Ok((ip, port))
}

/// The gateway configuration when `--upstream` is given.
pub fn config(args: &UpstreamArgs) -> anyhow::Result<Option<UpstreamConfig>> {
    let Some(spec) = &args.upstream else {
        return Ok(None);
    };
    let (host, port) = parse_target(spec)?;
    let config = UpstreamConfig {
        target: Target {
            host,
            port,
            program: args.upstream_program,
            try_timeout: TRY_TIMEOUT,
            tries: TRIES,
        },
        ttl: Duration::from_secs(args.upstream_ttl),
        wait: Duration::from_millis(args.upstream_wait_ms),
        umnt: args.upstream_umnt,
    };
    Ok(Some(config))
}

/// Start the learner when `--upstream` is given.
pub fn start(args: &UpstreamArgs) -> anyhow::Result<Option<Arc<Upstream>>> {
    let Some(config) = config(args)? else {
        return Ok(None);
    };
    let (host, port) = (config.target.host, config.target.port);
    tracing::info!(
        %host,
        port = port.map_or("from its portmapper".to_string(), |p| p.to_string()),
        program = args.upstream_program,
        ttl_s = args.upstream_ttl,
        "gateway mode: root handles come from upstream"
    );
    Upstream::start(config)
        .context("starting the upstream client")
        .map(Some)
}

/// The export roots whose handles upstream supplies (every export without `fh=`).
pub fn roots(table: &ExportTable) -> Vec<String> {
    table
        .exports()
        .iter()
        .filter(|e| *e.handle_source() != HandleSource::Explicit)
        .map(|e| e.path().to_string())
        .collect()
}

/// Learn `table`'s roots (blocking, bounded by [`LEARN_DEADLINE`]) and log the outcome.
pub fn learn(upstream: &Upstream, table: &ExportTable) {
    let roots = roots(table);
    let missing = upstream.learn_paths(&roots, Instant::now() + LEARN_DEADLINE);
    if missing.is_empty() {
        tracing::info!(exports = roots.len(), "every export's handle is known");
    } else {
        tracing::warn!(
            missing = ?missing,
            "serving without these exports' handles until upstream answers (retrying with backoff)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse_target("10.0.0.1").unwrap(), (ip("10.0.0.1"), None));
        assert_eq!(
            parse_target("10.0.0.1:20048").unwrap(),
            (ip("10.0.0.1"), Some(20048))
        );
        assert_eq!(
            parse_target("[fd00::1]:644").unwrap(),
            (ip("fd00::1"), Some(644))
        );
        assert_eq!(parse_target("[fd00::1]").unwrap(), (ip("fd00::1"), None));
        assert_eq!(parse_target("fd00::1").unwrap(), (ip("fd00::1"), None));
        assert_eq!(parse_target("localhost:5").unwrap().1, Some(5));
        for bad in [
            "",
            ":5",
            "10.0.0.1:0",
            "10.0.0.1:x",
            "[fd00::1",
            "[fd00::1]x",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
    }
}
