//! The bench's `hostile` section (issue 10): how a well-behaved client fares while
//! another floods the server, reported and never asserted.
//!
//! For each server setting (no rate limiting, then each set of rate limits asked for) a fresh
//! segment ([`lan`]) and a fresh xdp-mountd (native XDP, ~300 exports, no trusted network,
//! so the UDP list cap applies to everyone) run three scenarios in turn:
//!
//! - `calm`: the victim alone, MNT at a steady open-loop rate (the reference);
//! - `flood`: the same while one source floods MNT from its own address;
//! - `spoofed-export`: the same while EXPORT calls arrive from every address of a network
//!   configured nowhere (`storm --spoof-sources`), the reflection attack the list cap is
//!   for.
//!
//! Around each, the server veth's and the flooder's bridge port's byte counters and the
//! daemon's counters are read; the growth goes into the report.
mod counters;
mod lan;
mod link;
mod report;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cpu::{busy_fraction, CpuTimes};
use super::server::{Launch, Server};
use super::storm::{self, Load, Running, StormSpec};
use super::variants::{Ctx, Variant};
use super::PORT;
use counters::DaemonCounters;
use lan::{Lan, FLOODER, FLOOD_PORT_FRAMING, SERVER_FRAMING, SPOOFED_NET, VICTIM};
use link::{framing_mismatch, Link};
pub use report::HostileSection;
use report::{HostileConfig, ScenarioRun};

/// The victim's MNT calls per second (open loop): a busy client, at the sustained rate
/// of the per-source limit the bench asks for by default, so the limit alone costs it
/// nothing.
const VICTIM_RATE: f64 = 1000.0;
/// The flood's rate asked for: more than the generator can send on this machine, so it
/// sends as fast as it can whatever the replies do.
const FLOOD_RATE: f64 = 1_000_000.0;
/// A flood call unanswered this long is lost and its slot reused: short, so calls the
/// server drops do not hold the flood back.
const FLOOD_TIMEOUT_MS: u64 = 100;
/// Flood calls outstanding at most: with the timeout, ~330k calls/s even when every call
/// is dropped, more than the generator sends.
const FLOOD_WINDOW: u32 = 32_768;
/// The flood's source ports.
const FLOOD_CLIENTS: u32 = 8;
/// The flood's unmeasured start.
const FLOOD_WARMUP: f64 = 0.5;
/// The flood counts as under way (and the victim starts) once the flooder's bridge port
/// has carried this many frames.
const FLOOD_UNDER_WAY: u64 = 10_000;
/// The victim's unmeasured start.
const VICTIM_WARMUP: f64 = 0.5;
/// The flood sends this much longer than the victim's warm-up and measurement: the victim
/// starts only once the flood is under way, and needs a moment to set up.
const FLOOD_OVERLAP: f64 = 1.0;
/// Paths in the exports file: a whole EXPORT reply is then several kilobytes.
const EXPORTS: usize = 300;

/// What the section needs from the bench's options.
pub struct Options<'a> {
    /// The victim's measured seconds per scenario.
    pub duration: f64,
    /// Server settings: `off` or rate limits (see [`parse_setting`]).
    pub rate_limits: Vec<String>,
    /// Pin the flood generator to this CPU.
    pub generator_cpu: Option<&'a str>,
    /// Only start and check each server.
    pub check_only: bool,
}

/// Accept a `--hostile-limits` setting: `off`, or `+`-joined parts, each a `serve`
/// rate-limit option: `RATE[/BURST]` (`--rate-limit`), `v4prefix=LEN`
/// (`--rate-limit-v4-prefix`) or `global=RATE[/BURST]` (`--rate-limit-global`), e.g.
/// `1000/2000+v4prefix=16`. The daemon checks the values again when it starts.
pub fn parse_setting(text: &str) -> Result<String, String> {
    let text = text.trim();
    match setting_args(text) {
        Ok(_) => Ok(text.into()),
        Err(e) => Err(format!(
            "{text:?}: {e}; expected `off` or parts joined by `+`: RATE[/BURST], \
             v4prefix=LEN, global=RATE[/BURST] (e.g. 1000/2000+v4prefix=16)"
        )),
    }
}

/// The `serve` arguments of a setting (none for `off`).
fn setting_args(setting: &str) -> Result<Vec<String>, String> {
    if setting == "off" {
        return Ok(Vec::new());
    }
    let positive = |s: &str| s.parse::<u32>().is_ok_and(|n| n > 0);
    let rate = |s: &str| match s.split_once('/') {
        Some((rate, burst)) => positive(rate) && positive(burst),
        None => positive(s),
    };
    let mut args = Vec::new();
    for part in setting.split('+') {
        let (option, value) = match part.split_once('=') {
            Some(("v4prefix", len)) if len.parse::<u8>().is_ok_and(|l| l <= 32) => {
                ("--rate-limit-v4-prefix", len)
            }
            Some(("global", value)) if rate(value) => ("--rate-limit-global", value),
            None if rate(part) => ("--rate-limit", part),
            _ => return Err(format!("bad part {part:?}")),
        };
        args.extend([option.to_owned(), value.to_owned()]);
    }
    Ok(args)
}

/// A scenario: what floods while the victim calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Nothing: the victim alone.
    Calm,
    /// MNT from the flooder's own address.
    Flood,
    /// EXPORT from forged addresses, each in turn.
    SpoofedExport,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Calm, Scenario::Flood, Scenario::SpoofedExport];

    fn id(self) -> &'static str {
        match self {
            Scenario::Calm => "calm",
            Scenario::Flood => "flood",
            Scenario::SpoofedExport => "spoofed-export",
        }
    }

    /// The flood's storm mix and further options, if it has a flood.
    fn flood(self) -> Option<(&'static str, Vec<String>)> {
        match self {
            Scenario::Calm => None,
            Scenario::Flood => Some(("mnt3=1", vec![])),
            Scenario::SpoofedExport => Some((
                "export3=1",
                vec!["--spoof-sources".into(), SPOOFED_NET.into()],
            )),
        }
    }
}

/// Counters read before and after a scenario.
struct Snapshot {
    server: Link,
    flood_port: Link,
    daemon: DaemonCounters,
    cpu: CpuTimes,
}

/// One server setting's run: the daemon's stats socket and the bench's context.
struct Bench<'a> {
    ctx: &'a Ctx<'a>,
    options: &'a Options<'a>,
    stats_socket: PathBuf,
}

/// Run the section.
pub fn run(bench_ctx: &Ctx<'_>, options: &Options<'_>) -> Result<HostileSection> {
    let exports = write_exports(bench_ctx.work, &bench_ctx.export_path)?;
    // The same server as the comparison's xdp-native, but with its own exports file.
    let ctx = Ctx {
        exports: &exports,
        export_path: bench_ctx.export_path.clone(),
        ..*bench_ctx
    };
    let bench = Bench {
        ctx: &ctx,
        options,
        stats_socket: ctx.work.join("hostile-stats.sock"),
    };
    let mut runs = Vec::new();
    for limit in &options.rate_limits {
        runs.extend(bench.setting(limit)?);
    }
    Ok(HostileSection {
        config: HostileConfig {
            duration_s: options.duration,
            victim_rate: VICTIM_RATE,
            flood_rate: FLOOD_RATE,
            flood_timeout_ms: FLOOD_TIMEOUT_MS,
            exports: EXPORTS,
            spoofed_net: SPOOFED_NET.into(),
            rate_limits: options.rate_limits.clone(),
        },
        note: note(options),
        runs,
    })
}

/// How to read the section's figures.
fn note(options: &Options<'_>) -> String {
    format!(
        "Reported, not asserted. Three hosts on one bridged Ethernet segment (network \
         namespaces): the server (xdp-mountd, native XDP, {EXPORTS} exports, no trusted \
         network, so UDP list replies are cut to `--udp-list-factor` 2× the call), a victim \
         ({victim}) calling MNT at {VICTIM_RATE:.0}/s open loop through kernel sockets, and \
         a flooder ({flooder}) sending open loop as fast as its AF_XDP generator can (asked \
         {FLOOD_RATE:.0}/s{pin}; a call unanswered after {FLOOD_TIMEOUT_MS} ms is lost): MNT \
         from its own address, or EXPORT from each address of {SPOOFED_NET} in turn (forged; \
         the server routes that network via the flooder, and its XDP path answers to the \
         frame's MAC). Each scenario measures the victim for {secs} s while the flood runs. \
         Victim latency counts from when each call was due. Flood, victim and server share \
         the machine's CPUs, so the flood also takes CPU from the server: figures are noisy. \
         Out ÷ in: sent ÷ received IP bytes over the scenario at the server's veth (all \
         traffic) and at the flooder's bridge port from the server's side (the flood alone), \
         from the interface counters (Ethernet headers taken off where they count them); \
         UDP payload: 28 bytes of IPv4 and UDP headers taken off each packet as well; \
         reply ÷ call: the mean UDP payload of a datagram to the flooder ÷ that of one from \
         it, the amplification an answered call gives whatever share is answered. \
         Counters: their growth over the scenario, warm-up included.",
        victim = VICTIM.v4,
        flooder = FLOODER.v4,
        pin = options
            .generator_cpu
            .map(|c| format!(", pinned to CPU {c}"))
            .unwrap_or_default(),
        secs = options.duration,
    )
}

/// The exports file: the bench's exported directory first (the victim mounts it), then
/// directories that make a whole EXPORT list ~{EXPORTS} entries long.
fn write_exports(work: &Path, export_path: &str) -> Result<PathBuf> {
    let dir = work.join("hostile-exports");
    // insecure: the generators' source ports are not privileged.
    let mut text = format!("{export_path} *(rw,insecure)\n");
    for i in 1..EXPORTS {
        let path = dir.join(format!("export-{i:03}"));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        text.push_str(&format!("{} *(rw,insecure)\n", path.display()));
    }
    let file = work.join("hostile-exports.conf");
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// `1000/2000` → `1000-2000`: for file names.
fn file_tag(limit: &str) -> String {
    limit.replace(['/', '=', '+'], "-")
}

impl Bench<'_> {
    /// One server setting: a fresh segment and daemon, then every scenario.
    fn setting(&self, limit: &str) -> Result<Vec<ScenarioRun>> {
        let ctx = self.ctx;
        // Declared first, dropped last: the server stops before its namespaces go.
        let lan = Lan::create(ctx.net)?;
        let mut argv = ctx.serve_argv(Variant::XdpNative);
        argv.extend([
            "--stats-socket".into(),
            self.stats_socket.display().to_string(),
        ]);
        argv.extend(setting_args(limit).map_err(anyhow::Error::msg)?);
        let name = format!("xdp-native (hostile, rate limit {limit})");
        let mut server = Server::start(Launch {
            name: &name,
            netns: &ctx.net.server.ns,
            rpcbind_addr: ctx.net.server.v4.into(),
            argv,
            log: ctx.work.join(format!("hostile-{}.log", file_tag(limit))),
            share_stats_dir: false,
        })?;
        ctx.verify(&mut server, Variant::XdpNative)?;
        let mut runs = Vec::new();
        if self.options.check_only {
            println!("hostile: {name} answers rpcinfo -u/-t and showmount -e");
        } else {
            for scenario in Scenario::ALL {
                let run = self.scenario(scenario, limit)?;
                server.check_alive()?;
                println!("{}", run.progress_line());
                runs.push(run);
            }
        }
        server.stop()?;
        drop(lan);
        Ok(runs)
    }

    /// The daemon's and the links' counters now.
    fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            server: Link::read(
                &self.ctx.net.server.ns,
                &self.ctx.net.server.ifname,
                SERVER_FRAMING,
            )?,
            flood_port: Link::read(&self.ctx.net.client.ns, FLOODER.port, FLOOD_PORT_FRAMING)?,
            daemon: DaemonCounters::read(self.ctx.bin, &self.stats_socket)?,
            cpu: CpuTimes::sample()?,
        })
    }

    /// A storm run of this section: `mix` from `ns`, named after `who` and `tag`.
    fn spec(&self, who: &str, tag: &str, mix: &'static str, ns: &'static str) -> StormSpec<'_> {
        StormSpec {
            bin: self.ctx.bin,
            netns: ns,
            target: format!("{}:{PORT}", self.ctx.net.server.v4),
            mix,
            path: &self.ctx.export_path,
            clients: 1,
            afxdp_iface: None,
            cpu: None,
            duration: self.options.duration,
            warmup: VICTIM_WARMUP,
            json: self.ctx.work.join(format!("hostile-{who}-{tag}.json")),
            log: self.ctx.work.join(format!("hostile-{who}-{tag}.log")),
            extra: vec![],
        }
    }

    /// Run one scenario: start the flood (if any), wait until it is under way, measure
    /// the victim, let the flood finish; counters around it all.
    fn scenario(&self, scenario: Scenario, limit: &str) -> Result<ScenarioRun> {
        let tag = format!("{}-{}", file_tag(limit), scenario.id());
        let victim_spec = self.spec("victim", &tag, "mnt3=1", VICTIM.ns);
        let flood_spec = scenario.flood().map(|(mix, mut extra)| {
            extra.extend(["--timeout".into(), FLOOD_TIMEOUT_MS.to_string()]);
            StormSpec {
                clients: FLOOD_CLIENTS,
                afxdp_iface: Some(FLOODER.iface),
                cpu: self.options.generator_cpu,
                duration: self.options.duration + VICTIM_WARMUP + FLOOD_OVERLAP,
                warmup: FLOOD_WARMUP,
                extra,
                ..self.spec("flood", &tag, mix, FLOODER.ns)
            }
        });
        let before = self.snapshot()?;
        let flood = match &flood_spec {
            Some(spec) => {
                let load = Load::Open {
                    rate: FLOOD_RATE,
                    window: FLOOD_WINDOW,
                };
                let mut running = storm::spawn(spec, load)?;
                self.wait_under_way(&mut running, before.flood_port)?;
                Some(running)
            }
            None => None,
        };
        let victim_load = Load::Open {
            rate: VICTIM_RATE,
            // One second's calls: the victim's own 1 s timeout bounds what is outstanding.
            window: VICTIM_RATE as u32,
        };
        let (victim, _) =
            storm::spawn(&victim_spec, victim_load)?.wait(self.ctx.stop, |_| Ok(()))?;
        let flood = match flood {
            Some(running) => Some(running.wait(self.ctx.stop, |_| Ok(()))?.0),
            None => None,
        };
        let after = self.snapshot()?;
        let server_link = after.server.since(before.server);
        let flood_link = after.flood_port.since(before.flood_port);
        let warning = framing_mismatch(&server_link, &flood_link);
        if let Some(w) = &warning {
            eprintln!("xtask bench: WARNING: {w}");
        }
        Ok(ScenarioRun {
            rate_limit: limit.into(),
            scenario: scenario.id().into(),
            victim,
            flood,
            server_link,
            flood_link,
            warning,
            counters: after.daemon.grown_since(&before.daemon),
            cpu_busy: busy_fraction(before.cpu, after.cpu),
        })
    }

    /// Wait (at most 10 s) until the flooder's bridge port has carried
    /// [`FLOOD_UNDER_WAY`] frames since `before`.
    fn wait_under_way(&self, flood: &mut Running<'_>, before: Link) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sent = Link::read(&self.ctx.net.client.ns, FLOODER.port, FLOOD_PORT_FRAMING)?
                .since(before)
                .rx_packets;
            if sent >= FLOOD_UNDER_WAY {
                return Ok(());
            }
            if flood.has_exited()? || Instant::now() > deadline {
                bail!(
                    "the flood did not get under way ({sent} frames in {:.1} s); see {}",
                    flood.elapsed(),
                    flood.log().display()
                );
            }
            self.ctx.stop.sleep(Duration::from_millis(20))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_settings_parse() {
        for good in [
            "off",
            "1000/2000",
            " 1/1 ",
            "500",
            "1000/2000+v4prefix=16",
            "global=50000/50000",
            "1000+global=2000/10",
        ] {
            assert_eq!(parse_setting(good).as_deref(), Ok(good.trim()));
        }
        for bad in [
            "",
            "on",
            "0",
            "1000/",
            "/2000",
            "0/10",
            "10/0",
            "-1/2",
            "1/2/3",
            "1000+v4prefix=33",
            "global=0",
            "1000+",
            "v6prefix=64",
        ] {
            assert!(parse_setting(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            setting_args("1000/2000+v4prefix=16+global=9/9").unwrap(),
            [
                "--rate-limit",
                "1000/2000",
                "--rate-limit-v4-prefix",
                "16",
                "--rate-limit-global",
                "9/9"
            ]
        );
        assert!(setting_args("off").unwrap().is_empty());
    }

    #[test]
    fn only_the_flood_scenarios_flood_and_only_one_forges() {
        assert_eq!(Scenario::Calm.flood(), None);
        let (mix, extra) = Scenario::Flood.flood().unwrap();
        assert_eq!((mix, extra.len()), ("mnt3=1", 0));
        let (mix, extra) = Scenario::SpoofedExport.flood().unwrap();
        assert_eq!(mix, "export3=1");
        assert_eq!(extra, ["--spoof-sources", SPOOFED_NET]);
    }

    #[test]
    fn exports_file_lists_the_benchs_export_first() {
        let work = std::env::temp_dir().join(format!("xmd-hostile-test-{}", std::process::id()));
        let file = write_exports(&work, "/tmp/xmd-bench/export").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), EXPORTS);
        assert_eq!(lines[0], "/tmp/xmd-bench/export *(rw,insecure)");
        assert!(lines[299].ends_with("hostile-exports/export-299 *(rw,insecure)"));
        assert!(work.join("hostile-exports/export-299").is_dir());
        std::fs::remove_dir_all(&work).unwrap();
    }
}
