//! `cargo xtask bench`: xdp-mountd (native XDP, generic XDP, XDP off) and NFS-Ganesha side
//! by side on a namespace pair, driven by `xdp-mountd storm`, interleaved over rounds.
//!
//! Per round, each server is started in turn (its own rpcbind in a private mount
//! namespace), checked with rpcinfo and showmount, and measured for each call type:
//! closed loop at saturation, then open loop at half the rate just measured. The figures
//! (medians over rounds) go to target/bench/latest.{json,md,png}.
mod chart;
mod cluster;
mod cost;
mod cpu;
mod ganesha;
mod hostile;
mod meta;
mod report;
pub(crate) mod server;
mod storm;
mod variants;

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::workspace_root;
use report::{Cell, Config, Report, Run, Summary};
use storm::{Load, StormSpec};
use testbed::{End, Pair, PairSpec};
use variants::{Ctx, GeneratorIo, Variant, Workload};

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Short run (under 5 minutes): fewer rounds, shorter measurements.
    #[arg(long)]
    quick: bool,
    /// Rounds over all servers [default: 3 with --quick, else 5].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: Option<u32>,
    /// Measured seconds per figure [default: 1 with --quick, else 5].
    #[arg(long)]
    duration: Option<f64>,
    /// Servers to measure, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "xdp-native,xdp-generic,socket,ganesha,gateway"
    )]
    variants: Vec<Variant>,
    /// Call types, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "null,mnt,export")]
    calls: Vec<Workload>,
    /// Outstanding calls in the closed loop (saturation).
    #[arg(long, default_value_t = 64)]
    window: u32,
    /// Generator sockets (distinct source ports).
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// How storm sends and receives: AF_XDP (native XDP on the client veth end, so the
    /// generator costs less per call than the servers it measures) or kernel sockets.
    #[arg(long, value_enum, default_value_t = GeneratorIo::Afxdp)]
    generator: GeneratorIo,
    /// Let the generator float over all CPUs instead of pinning it to the last one.
    /// Pinned, it never shares a CPU with xdp-mountd's AF_XDP worker (pinned to CPU 0 by
    /// the daemon itself); floating, the figures flip between two modes run to run.
    #[arg(long)]
    no_pin: bool,
    /// Only start each server, check it answers rpcinfo and showmount, and stop it.
    #[arg(long)]
    check_only: bool,
    /// Also replace the README's Performance block with the new table.
    #[arg(long)]
    update_readme: bool,
    /// Sections to run, comma-separated: `servers` (the side-by-side comparison),
    /// `hostile` (other clients' service while a flood runs), `cost` (server CPU per MNT by
    /// path with threaded NAPI, and the AF_XDP worker's syscalls per call) and `cluster`
    /// (one node in cluster mode against standalone; not in the default run: it needs etcd).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = DEFAULT_SECTIONS
    )]
    sections: Vec<Section>,
    /// Cost section: open-loop rates (MNT/s) of the kernel-socket generator.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2000,20000,100000,300000"
    )]
    cost_rates: Vec<f64>,
    /// Hostile section: the victim's measured seconds per scenario [default: 3 with
    /// --quick, else 5].
    #[arg(long, value_name = "SECS")]
    hostile_secs: Option<f64>,
    /// Hostile section: the server settings, each run through every scenario: `off` (no
    /// rate limiting) or rate limits joined by `+`: RATE[/BURST] (`serve --rate-limit`, per
    /// source), v4prefix=LEN (`--rate-limit-v4-prefix`), global=RATE[/BURST]
    /// (`--rate-limit-global`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "off,1000/2000,1000/2000+v4prefix=16",
        value_parser = hostile::parse_setting
    )]
    hostile_limits: Vec<String>,
}

/// The sections a plain `cargo xtask bench` runs.
pub const DEFAULT_SECTIONS: &str = "servers,hostile,cost";

/// A part of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// The servers side by side (the README's table).
    Servers,
    /// One source flooding, then a spoofed-source EXPORT flood, against a steady victim.
    Hostile,
    /// Server CPU per MNT by path, with threaded NAPI.
    Cost,
    /// MNT/s of one node in cluster mode (etcd beside it) against standalone.
    Cluster,
}

impl Section {
    /// The name on the command line and in the report.
    pub fn id(self) -> &'static str {
        match self {
            Section::Servers => "servers",
            Section::Hostile => "hostile",
            Section::Cost => "cost",
            Section::Cluster => "cluster",
        }
    }
}

/// The MOUNT port every server listens on.
pub(crate) const PORT: u16 = 644;
/// The bench's namespace pair (its own names and subnet: it may run beside the demo).
fn bench_net() -> PairSpec {
    PairSpec {
        server: End {
            ns: "xmd-bench-srv".into(),
            ifname: "xmd-bench0".into(),
            v4: Ipv4Addr::new(10, 79, 0, 1),
            v6: Ipv6Addr::new(0xfd79, 0, 0, 0, 0, 0, 0, 1),
        },
        client: End {
            ns: "xmd-bench-cli".into(),
            ifname: "xmd-bench1".into(),
            v4: Ipv4Addr::new(10, 79, 0, 2),
            v6: Ipv6Addr::new(0xfd79, 0, 0, 0, 0, 0, 0, 2),
        },
        queues: 1,
    }
}
/// Scratch space: exports file, Ganesha's config and export directory, logs, storm JSON.
/// A short fixed path, so the MNT path (and reply size) is the same on every machine.
const WORKDIR: &str = "/tmp/xmd-bench";

/// Ctrl-C / SIGTERM seen: every wait checks it, and the guards clean up on the way out.
#[derive(Clone)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Catch Ctrl-C and SIGTERM from now on.
    pub(crate) fn install() -> Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        ctrlc::set_handler(move || f.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
        Ok(Self(flag))
    }
    /// Err once interrupted.
    pub fn check(&self) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        Ok(())
    }
    /// Sleep `d`, waking early (with Err) when interrupted.
    pub fn sleep(&self, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}

/// Run the bench.
pub fn run(args: BenchArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cargo xtask bench needs root (namespaces, veth, XDP)");
    }
    if args.update_readme && !args.sections.contains(&Section::Servers) {
        // The README block is the servers table; a hostile-only report would replace it.
        bail!("--update-readme needs the servers section");
    }
    let started = Instant::now();
    let root = workspace_root();
    let bin = crate::build_release_daemon()?;
    let stop = Interrupt::install()?;

    let net = bench_net();
    let server_v4 = net.server.v4.to_string();
    let work = Path::new(WORKDIR);
    let _ = std::fs::remove_dir_all(work);
    let export_dir = work.join("export");
    std::fs::create_dir_all(&export_dir).with_context(|| format!("creating {WORKDIR}"))?;
    let exports = work.join("exports");
    // insecure: the generator's source ports are not privileged.
    std::fs::write(
        &exports,
        format!("{} *(rw,insecure)\n", export_dir.display()),
    )?;
    let ganesha_conf = work.join("ganesha.conf");
    std::fs::write(
        &ganesha_conf,
        ganesha::config(&server_v4, PORT, &export_dir),
    )?;
    let upstream_conf = work.join("upstream-ganesha.conf");
    std::fs::write(
        &upstream_conf,
        ganesha::config_with_program(
            &server_v4,
            ganesha::UPSTREAM_MNT_PORT,
            Some(ganesha::UPSTREAM_MNT_PROGRAM),
            &export_dir,
        ),
    )?;

    // Other work on the machine skews every figure: measure it once, before starting.
    let idle_before = cpu::CpuTimes::sample()?;
    stop.sleep(Duration::from_secs(1))?;
    let background_busy = cpu::busy_fraction(idle_before, cpu::CpuTimes::sample()?);
    if background_busy > 0.1 {
        eprintln!(
            "xtask bench: WARNING: the machine was {:.0}% busy before the bench started; \
             figures will be low and noisy",
            background_busy * 100.0
        );
    }
    let quick = args.quick;
    let rounds = args.rounds.unwrap_or(if quick { 3 } else { 5 });
    let duration = args
        .duration
        .unwrap_or(if quick { 1.0 } else { 5.0 })
        .max(0.5);
    let warmup = if quick { 0.5 } else { 1.0 };
    let nproc = meta::machine().nproc;
    // The last CPU: xdp-mountd puts its first AF_XDP worker on CPU 0.
    let generator_cpu = (!args.no_pin && nproc >= 2).then(|| (nproc - 1).to_string());
    let ctx = Ctx {
        bin: &bin,
        net: &net,
        work,
        exports: &exports,
        ganesha_conf: &ganesha_conf,
        upstream_conf: &upstream_conf,
        export_path: export_dir.display().to_string(),
        stop: &stop,
    };
    let measured = Measured {
        rounds,
        duration,
        warmup,
        generator_cpu: generator_cpu.as_deref(),
    };
    let cells = if args.sections.contains(&Section::Servers) {
        compare_servers(&args, &ctx, &measured)?
    } else {
        Vec::new()
    };
    let hostile = if args.sections.contains(&Section::Hostile) {
        let options = hostile::Options {
            duration: args
                .hostile_secs
                .unwrap_or(if quick { 3.0 } else { 5.0 })
                .max(1.0),
            rate_limits: args.hostile_limits.clone(),
            generator_cpu: generator_cpu.as_deref(),
            check_only: args.check_only,
        };
        Some(hostile::run(&ctx, &options)?)
    } else {
        None
    };
    let cost = if args.sections.contains(&Section::Cost) {
        let options = cost::Options {
            duration,
            warmup,
            window: args.window,
            clients: args.clients,
            rates: args.cost_rates.clone(),
            check_only: args.check_only,
        };
        Some(cost::run(&ctx, &options)?)
    } else {
        None
    };
    let cluster = if args.sections.contains(&Section::Cluster) {
        let options = cluster::Options {
            rounds,
            duration,
            warmup,
            window: args.window,
            clients: args.clients,
            afxdp: args.generator == GeneratorIo::Afxdp,
            generator_cpu: generator_cpu.as_deref(),
            check_only: args.check_only,
        };
        Some(cluster::run(&ctx, &options)?)
    } else {
        None
    };
    if args.check_only {
        return Ok(());
    }

    let mut report = Report {
        date: meta::utc_now(),
        machine: meta::machine(),
        commit: meta::commit(&root),
        config: Config {
            quick,
            rounds,
            duration_s: duration,
            warmup_s: warmup,
            window: args.window,
            clients: args.clients,
            generator: format!("{:?}", args.generator).to_lowercase(),
            generator_cpu: generator_cpu.clone(),
            variants: args.variants.iter().map(|v| v.id().into()).collect(),
            workloads: args.calls.iter().map(|w| w.id().into()).collect(),
            elapsed_s: started.elapsed().as_secs_f64(),
            background_busy,
            sections: args.sections.iter().map(|s| s.id().into()).collect(),
        },
        note: format!(
            "Generator (`xdp-mountd storm`, UDP over {}, {} client ports, {} calls \
             outstanding at saturation) and server share this machine's {} CPUs{}. CPU µs/call is \
             machine-wide busy time (user+nice+system+irq+softirq from /proc/stat) over the \
             measured interval divided by the calls answered in it, generator included; \
             \"of which generator\" is storm's own CPU (getrusage). \"at 50%\" is an open loop \
             at half the saturation rate measured just before; latency there counts from when \
             each call was due, so where \"CPU busy\" nears 100% the shared CPUs, not the \
             server, set it: the open-loop generator costs several times more per call than \
             the closed loop. At most 4× the saturation window may be outstanding there; \
             calls due beyond that are \"skipped\" (the generator fell behind), not lost.",
            match args.generator {
                GeneratorIo::Afxdp => "AF_XDP",
                GeneratorIo::Socket => "kernel sockets",
            },
            args.clients,
            args.window,
            meta::machine().nproc,
            match &generator_cpu {
                Some(c) => format!(
                    " (generator pinned to CPU {c}; servers placed by the scheduler, \
                     xdp-mountd's AF_XDP worker on CPU 0; softirq work lands on both)"
                ),
                None => String::new(),
            }
        ),
        cells,
        targets: vec![],
        hostile,
        cost,
        cluster,
    };
    report.compute_targets();
    write_outputs(&root, &report, args.update_readme)
}

/// Round and timing parameters of the server comparison.
struct Measured<'a> {
    rounds: u32,
    duration: f64,
    warmup: f64,
    generator_cpu: Option<&'a str>,
}

/// The side-by-side comparison (section `servers`): every server, every call type, at
/// saturation and at half of it, interleaved over rounds; medians per cell.
fn compare_servers(args: &BenchArgs, ctx: &Ctx<'_>, m: &Measured<'_>) -> Result<Vec<Cell>> {
    let mut runs: BTreeMap<(usize, usize), (Vec<Run>, Vec<Run>)> = BTreeMap::new();
    for round in 1..=m.rounds {
        // Rotate the order each round so slow drift (thermal, noisy neighbours) spreads
        // over all servers instead of favouring one.
        let n = args.variants.len();
        for k in 0..n {
            let vi = (k + round as usize - 1) % n;
            let variant = args.variants[vi];
            // A fresh pair per server: no TIME_WAIT sockets on the port, neighbour entries
            // or XDP state left by the one before (Ganesha refuses a port in TIME_WAIT).
            let pair = Pair::create(ctx.net.clone())?;
            let mut server = ctx.start(variant, round)?;
            ctx.verify(&mut server, variant)?;
            if args.check_only {
                println!(
                    "round {round}: {} answers rpcinfo -u/-t and showmount -e",
                    variant.id()
                );
                server.stop()?;
                drop(pair);
                continue;
            }
            for (wi, workload) in args.calls.iter().enumerate() {
                let spec = |mode: &str| StormSpec {
                    bin: ctx.bin,
                    netns: &ctx.net.client.ns,
                    target: format!("{}:{PORT}", ctx.net.server.v4),
                    mix: workload.mix(),
                    path: &ctx.export_path,
                    clients: args.clients,
                    afxdp_iface: (args.generator == GeneratorIo::Afxdp)
                        .then_some(ctx.net.client.ifname.as_str()),
                    cpu: m.generator_cpu,
                    duration: m.duration,
                    warmup: m.warmup,
                    json: ctx.work.join(format!(
                        "storm-{}-{}-{mode}-{round}.json",
                        variant.id(),
                        workload.id()
                    )),
                    log: ctx.work.join(format!(
                        "storm-{}-{}-{mode}-{round}.log",
                        variant.id(),
                        workload.id()
                    )),
                    extra: vec![],
                };
                let sat = storm::measure(
                    &spec("sat"),
                    Load::Closed {
                        window: args.window,
                    },
                    round,
                    ctx.stop,
                )?;
                server.check_alive()?;
                let rate = sat.storm.calls_per_sec / 2.0;
                // Cap what may be outstanding: a generator that fell behind (shared CPUs)
                // must not catch up in one burst bigger than any ring; calls due while
                // the cap is reached are counted as skipped, not sent.
                let open = Load::Open {
                    rate,
                    window: args.window.saturating_mul(4),
                };
                let half = storm::measure(&spec("half"), open, round, ctx.stop)?;
                server.check_alive()?;
                println!(
                    "round {round}/{} {:<11} {:<6} {:>9.0} calls/s p99 {:>6.0} µs cpu {:>6.1} µs/call lost {} wrong {} | @50% p99 {:>6.0} µs lost {} wrong {}",
                    m.rounds,
                    variant.id(),
                    workload.id(),
                    sat.storm.calls_per_sec,
                    sat.storm.latency_us.p99,
                    sat.cpu_us_per_call.unwrap_or(f64::NAN),
                    sat.storm.lost,
                    sat.storm.wrong,
                    half.storm.latency_us.p99,
                    half.storm.lost,
                    half.storm.wrong,
                );
                let entry = runs.entry((vi, wi)).or_default();
                entry.0.push(sat);
                entry.1.push(half);
            }
            server.stop()?;
            drop(pair);
        }
    }
    if args.check_only {
        return Ok(Vec::new());
    }
    let cells = runs
        .into_iter()
        .map(|((vi, wi), (sat, half))| Cell {
            variant: args.variants[vi].id().into(),
            workload: args.calls[wi].id().into(),
            saturation: Summary::of(&sat),
            half: Summary::of(&half),
            saturation_runs: sat,
            half_runs: half,
        })
        .collect();
    Ok(cells)
}

/// latest.json, latest.md, latest.png (and the README block when asked); prints the table.
fn write_outputs(root: &Path, report: &Report, update_readme: bool) -> Result<()> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("latest.json"), json + "\n")?;
    let md = report.markdown();
    std::fs::write(dir.join("latest.md"), &md)?;
    println!("\n{md}");
    let png = dir.join("latest.png");
    if report.cells.is_empty() {
        // The chart draws the servers section only; an older one would not match.
        let _ = std::fs::remove_file(&png);
    } else {
        match chart::draw(report, &png) {
            Ok(()) => println!("wrote {}", png.display()),
            // The figures matter more than the picture: report and go on.
            Err(e) => eprintln!("xtask bench: no chart: {e:#}"),
        }
    }
    println!(
        "wrote {} and {}",
        dir.join("latest.json").display(),
        dir.join("latest.md").display()
    );
    if update_readme {
        let path = root.join("README.md");
        let text = std::fs::read_to_string(&path)?;
        let Some(new) = report::splice_readme(&text, &md) else {
            bail!("README.md has no <!-- bench:start --> … <!-- bench:end --> block");
        };
        std::fs::write(&path, new)?;
        println!("updated the Performance block of {}", path.display());
    }
    Ok(())
}
