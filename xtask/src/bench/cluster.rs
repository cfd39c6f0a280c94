//! The bench's `cluster` section (issue 12): MNT calls/s of one xdp-mountd node in cluster
//! mode (`serve --cluster`, a one-member etcd beside it on the server namespace's
//! loopback) against the same daemon standalone (`--exports`), in one run, interleaved
//! over rounds. Reported, never asserted.
//!
//! Both run native XDP on the bench's pair with the same exports (cluster mode gets them
//! through `xdp-mountd cluster publish`). What cluster mode adds per MNT is the mount-list
//! operation queued for etcd (written in batches, off the call path); the node's cluster
//! counters after each run (pending and dropped operations, etcd errors) say whether etcd
//! kept up or the bounded queue overflowed.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;

use super::report::{Run, Summary};
use super::server::{Launch, Server};
use super::storm::{self, Load, StormSpec};
use super::variants::{Ctx, Variant, Workload};
use super::PORT;
use std::net::{Ipv4Addr, Ipv6Addr};
use testbed::{End, Etcd, Pair, PairSpec};

/// The section's options.
pub struct Options<'a> {
    /// Rounds (each measures both modes, order alternating).
    pub rounds: u32,
    /// Measured seconds per run.
    pub duration: f64,
    /// Unmeasured start of each run.
    pub warmup: f64,
    /// Calls outstanding (closed loop).
    pub window: u32,
    /// Generator source ports.
    pub clients: u32,
    /// storm through AF_XDP on the client's veth end, else kernel sockets.
    pub afxdp: bool,
    /// Pin the generator to this CPU.
    pub generator_cpu: Option<&'a str>,
    /// Only start each mode once and check it answers.
    pub check_only: bool,
}

/// One mode's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeResult {
    /// `standalone` or `cluster`.
    pub mode: String,
    /// Medians over rounds of MNT at saturation.
    pub summary: Summary,
    /// Every round's run.
    pub runs: Vec<Run>,
    /// The node's cluster counters after its last run (cluster mode only), by name.
    pub counters: Vec<(String, u64)>,
}

/// The section in `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSection {
    /// Rounds.
    pub rounds: u32,
    /// Measured seconds per run.
    pub duration_s: f64,
    /// Standalone first, then cluster.
    pub modes: Vec<ModeResult>,
}

const MODES: [&str; 2] = ["standalone", "cluster"];

/// The section's own namespace pair (names and subnet apart from the servers section's,
/// like the hostile section's segment), so that no section removes another's.
fn cluster_net() -> PairSpec {
    let end = |ns: &str, ifname: &str, host: u8| End {
        ns: ns.into(),
        ifname: ifname.into(),
        v4: Ipv4Addr::new(10, 79, 9, host),
        v6: Ipv6Addr::new(0xfd79, 9, 0, 0, 0, 0, 0, host.into()),
    };
    PairSpec {
        server: end("xmd-bench-clus-srv", "xmd-clus0", 1),
        client: end("xmd-bench-clus-cli", "xmd-clus1", 2),
        queues: 1,
    }
}

/// Runs the section.
pub fn run(ctx: &Ctx<'_>, o: &Options<'_>) -> Result<ClusterSection> {
    let net = cluster_net();
    let ctx = &Ctx {
        bin: ctx.bin,
        net: &net,
        work: ctx.work,
        exports: ctx.exports,
        ganesha_conf: ctx.ganesha_conf,
        upstream_conf: ctx.upstream_conf,
        export_path: ctx.export_path.clone(),
        stop: ctx.stop,
    };
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut counters = Vec::new();
    let rounds = if o.check_only { 1 } else { o.rounds };
    for round in 1..=rounds {
        for k in 0..2 {
            let mi = (k + round as usize - 1) % 2;
            let mode = MODES[mi];
            ctx.stop.check()?;
            // A fresh pair and, for cluster mode, a fresh etcd: nothing carried over.
            let pair = Pair::create(ctx.net.clone())?;
            let etcd_dir = ctx.work.join(format!("cluster-etcd-{round}"));
            std::fs::create_dir_all(&etcd_dir)?;
            let etcd = if mode == "cluster" {
                let srv = &ctx.net.server.ns;
                let etcd = Etcd::single(Some(srv), [127, 0, 0, 1].into(), &etcd_dir)
                    .context("starting etcd beside the node")?;
                publish(ctx, &etcd.url())?;
                Some(etcd)
            } else {
                None
            };
            let stats_socket = ctx.work.join(format!("cluster-{mode}-{round}.sock"));
            let mut server = start(ctx, etcd.as_ref(), &stats_socket, round)?;
            ctx.verify(&mut server, Variant::XdpNative)?;
            if o.check_only {
                println!("cluster section: {mode} node answers rpcinfo -u/-t and showmount -e");
                server.stop()?;
                continue;
            }
            let spec = StormSpec {
                bin: ctx.bin,
                netns: &ctx.net.client.ns,
                target: format!("{}:{PORT}", ctx.net.server.v4),
                mix: Workload::Mnt.mix(),
                path: &ctx.export_path,
                clients: o.clients,
                afxdp_iface: o.afxdp.then_some(ctx.net.client.ifname.as_str()),
                cpu: o.generator_cpu,
                duration: o.duration,
                warmup: o.warmup,
                json: ctx.work.join(format!("storm-cluster-{mode}-{round}.json")),
                log: ctx.work.join(format!("storm-cluster-{mode}-{round}.log")),
                extra: vec![],
            };
            let run = storm::measure(&spec, Load::Closed { window: o.window }, round, ctx.stop)?;
            server.check_alive()?;
            println!(
                "cluster section round {round}/{rounds} {mode:<10} MNT {:>9.0} calls/s p99 {:>6.0} µs cpu {:>6.1} µs/call lost {} wrong {}",
                run.storm.calls_per_sec,
                run.storm.latency_us.p99,
                run.cpu_us_per_call.unwrap_or(f64::NAN),
                run.storm.lost,
                run.storm.wrong,
            );
            if mode == "cluster" {
                counters = cluster_counters(ctx.bin, &stats_socket).unwrap_or_else(|e| {
                    eprintln!("xtask bench: cluster counters: {e:#}");
                    Vec::new()
                });
            }
            runs[mi].push(run);
            server.stop()?;
            drop(etcd);
            drop(pair);
            let _ = std::fs::remove_dir_all(&etcd_dir);
        }
    }
    let [standalone, cluster] = runs;
    Ok(ClusterSection {
        rounds,
        duration_s: o.duration,
        modes: vec![
            ModeResult {
                mode: MODES[0].into(),
                summary: Summary::of(&standalone),
                runs: standalone,
                counters: Vec::new(),
            },
            ModeResult {
                mode: MODES[1].into(),
                summary: Summary::of(&cluster),
                runs: cluster,
                counters,
            },
        ],
    })
}

/// `xdp-mountd cluster publish` of the bench's exports, in the server namespace.
fn publish(ctx: &Ctx<'_>, url: &str) -> Result<()> {
    let out = testbed::netns::command(&ctx.net.server.ns)
        .args(["timeout", "-k", "2", "30"])
        .arg(ctx.bin)
        .args(["cluster", "publish", "--cluster", url, "--exports"])
        .arg(ctx.exports)
        .stdin(Stdio::null())
        .output()
        .context("running xdp-mountd cluster publish")?;
    if !out.status.success() {
        bail!(
            "cluster publish failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The node: native XDP, standalone on the exports file or in cluster mode on `etcd`.
fn start(ctx: &Ctx<'_>, etcd: Option<&Etcd>, stats: &Path, round: u32) -> Result<Server> {
    let mut argv = vec![
        ctx.bin.display().to_string(),
        "serve".into(),
        "--port".into(),
        PORT.to_string(),
        "--iface".into(),
        ctx.net.server.ifname.clone(),
        "--xdp".into(),
        "native".into(),
        "--trusted-networks".into(),
        format!("{}/24", ctx.net.client.v4),
        "--stats-socket".into(),
        stats.display().to_string(),
    ];
    let name = match etcd {
        Some(etcd) => {
            argv.extend([
                "--cluster".into(),
                etcd.url(),
                "--node".into(),
                "bench".into(),
                "--cluster-cache".into(),
                ctx.work.join("cluster-cache.exports").display().to_string(),
            ]);
            "cluster"
        }
        None => {
            argv.extend(["--exports".into(), ctx.exports.display().to_string()]);
            "standalone"
        }
    };
    Server::start(Launch {
        name,
        netns: &ctx.net.server.ns,
        rpcbind_addr: ctx.net.server.v4.into(),
        argv,
        log: ctx.work.join(format!("cluster-{name}-{round}.log")),
        share_stats_dir: false,
    })
}

/// The node's cluster counters (`stats --json`, its `cluster` object's numbers).
fn cluster_counters(bin: &Path, socket: &Path) -> Result<Vec<(String, u64)>> {
    let v = super::server::stats_json(bin, socket)?;
    let Some(obj) = v["cluster"].as_object() else {
        bail!("no cluster part in the node's stats");
    };
    Ok(obj
        .iter()
        .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
        .collect())
}

impl ClusterSection {
    /// The section's Markdown: one row per mode, the ratio, the node's counters.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n#### Cluster mode: one node, MNT v3 at saturation ({} rounds × {} s, medians)\n",
            self.rounds, self.duration_s
        );
        let _ = writeln!(
            s,
            "| node | MNT calls/s | p50 µs | p99 µs | CPU µs/call | lost/wrong |\n|---|--:|--:|--:|--:|--:|"
        );
        for m in &self.modes {
            let x = &m.summary;
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.1} | {:.0} | {} | {}/{} |",
                match m.mode.as_str() {
                    "cluster" => "cluster mode (etcd beside it)",
                    _ => "standalone",
                },
                x.calls_per_sec,
                x.p50_us,
                x.p99_us,
                x.cpu_us_per_call
                    .map_or_else(|| "–".to_string(), |c| format!("{c:.1}")),
                x.lost,
                x.wrong
            );
        }
        if let [a, b] = &self.modes[..] {
            if a.summary.calls_per_sec > 0.0 {
                let _ = writeln!(
                    s,
                    "\ncluster ÷ standalone MNT calls/s: {:.2}",
                    b.summary.calls_per_sec / a.summary.calls_per_sec
                );
            }
            if !b.counters.is_empty() {
                let list: Vec<String> =
                    b.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(s, "\ncluster node after its last run: {}", list.join(", "));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::fixtures;
    use super::*;

    fn mode(name: &str, rate: f64, counters: Vec<(String, u64)>) -> ModeResult {
        let runs = vec![fixtures::run(rate, 80.0, Some(3.0), 0)];
        ModeResult {
            mode: name.into(),
            summary: Summary::of(&runs),
            runs,
            counters,
        }
    }

    #[test]
    fn markdown_has_both_modes_the_ratio_and_the_counters() {
        let section = ClusterSection {
            rounds: 3,
            duration_s: 1.0,
            modes: vec![
                mode("standalone", 400_000.0, vec![]),
                mode("cluster", 300_000.0, vec![("dropped_ops".into(), 0)]),
            ],
        };
        let md = section.markdown();
        assert!(md.contains("| standalone | 400000 |"), "{md}");
        assert!(
            md.contains("| cluster mode (etcd beside it) | 300000 |"),
            "{md}"
        );
        assert!(
            md.contains("cluster ÷ standalone MNT calls/s: 0.75"),
            "{md}"
        );
        assert!(md.contains("dropped_ops 0"), "{md}");
    }
}
