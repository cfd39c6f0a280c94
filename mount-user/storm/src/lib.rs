//! `xdp-mountd storm`: a MOUNT load generator for any MOUNT server.
//!
//! Closed loop (a window of outstanding calls) or open loop (a fixed rate); always
//! bounded by `--count` and `--duration`, then a bounded drain. Every reply is checked
//! (xid, accept state, mount status, results) and wrong ones are counted apart from lost
//! ones. Transports: kernel sockets (UDP batched, TCP pipelined; no privileges) or, for
//! UDP, AF_XDP through its own XDP program (cheaper per call than the server measured).
//!
//! Modules: [`mix`] (procedure mixes, templates), [`validate`] (sans-IO reply checks),
//! [`engine`] (slots, pacing, matching), [`socket`] and [`afxdp`] (transports),
//! [`spoof`] (forged source addresses), [`report`] (JSON and human summary). The JSON field names are a contract with
//! `cargo xtask bench` (docs/storm-json.md).
//!
//! Its own crate (`mount-storm`) so that the daemon's library carries none of a load
//! generator's dependencies (progress bars, latency histograms) and storm none of the
//! daemon: it needs only the protocol core (`mount-proto`) and, for `--io afxdp`, the XDP
//! loader and AF_XDP sockets (`mount-xdp`). The daemon's binary depends on it for the
//! `storm` subcommand ([`run`]); its runs against the daemon's real servers are
//! mount-user's `tests/storm_loopback.rs`.
use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, ValueEnum};

pub mod afxdp;
pub mod engine;
pub mod mix;
pub mod report;
pub mod socket;
pub mod spoof;
#[cfg(test)]
mod tests;
pub mod validate;

use engine::{EngineConfig, Pace, Progress, Stats, Transport};
use mix::{Mix, Templates};
use report::{CpuReport, Report, RunInfo};

/// `--transport` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// UDP datagrams.
    Udp,
    /// TCP with RPC record marking.
    Tcp,
}

/// `--io` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoKind {
    /// Kernel sockets (no privileges needed).
    Socket,
    /// AF_XDP socket and XDP program on --iface (root; UDP only).
    Afxdp,
}

/// `--xdp` values of storm's AF_XDP mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// XDP in the driver.
    Native,
    /// XDP in the generic stack.
    Generic,
}

/// `--expect` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExpectArg {
    /// MNT must answer status OK.
    Ok,
    /// Any well-formed MNT status is right.
    Any,
}

/// Options of `storm`.
#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    /// The MOUNT server to load: HOST:PORT (e.g. 10.0.0.1:644, [fd00::1]:644).
    #[arg(long, value_name = "HOST:PORT")]
    pub target: String,

    /// UDP or TCP.
    #[arg(long, value_enum, default_value_t = TransportKind::Udp)]
    pub transport: TransportKind,

    /// Kernel sockets, or AF_XDP on --iface (UDP only, needs root).
    #[arg(long, value_enum, default_value_t = IoKind::Socket)]
    pub io: IoKind,

    /// The interface towards the target, for --io afxdp.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,

    /// Where storm's own XDP program runs (--io afxdp).
    #[arg(long, value_enum, default_value_t = XdpModeArg::Native)]
    pub xdp: XdpModeArg,

    /// --io socket: attach a pass-through XDP program (native mode; it steers nothing,
    /// every frame goes on to the kernel) to IF for storm's lifetime. A veth whose peer
    /// answers with XDP_TX in native mode (`serve --xdp-answers on`) drops those frames
    /// unless this end has an XDP program too; with it they reach storm's sockets. It
    /// changes this end's receive path (the program runs per frame in the veth's NAPI).
    /// Detached when storm exits (also on an error or Ctrl-C; if storm is killed, the
    /// kernel detaches it with storm's bpf_link). Needs root.
    #[arg(long, value_name = "IF")]
    pub pass_through_xdp: Option<String>,

    /// Procedure mix: NAME[=WEIGHT],... with NAME one of null, mnt, umnt, export, dump
    /// followed by an optional MOUNT version 1-3 (default 3); weight 0 disables.
    #[arg(long, value_name = "MIX", default_value = mix::DEFAULT_MIX)]
    pub mix: String,

    /// Export paths for MNT/UMNT, comma-separated; cycled through in order.
    #[arg(long, value_name = "PATHS", conflicts_with = "paths_file")]
    pub paths: Option<String>,

    /// File with one export path per line (# comments) for MNT/UMNT.
    #[arg(long, value_name = "FILE")]
    pub paths_file: Option<PathBuf>,

    /// Simulated clients: distinct source ports (UDP sockets or TCP connections).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub clients: u32,

    /// Source addresses to spread the clients over (they must be configured locally).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub source_addrs: Vec<IpAddr>,

    /// --io afxdp: send each call from the next address of this network in turn, forged
    /// (configured nowhere; at most 65536 addresses). The replies, addressed to the forged
    /// sources, are still caught on --iface and counted.
    #[arg(long, value_name = "CIDR", conflicts_with = "source_addrs")]
    pub spoof_sources: Option<ipnet::IpNet>,

    /// Outstanding calls: the closed-loop window, or the open-loop cap
    /// [default: 64; open loop: rate x timeout, at least 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub window: Option<u32>,

    /// Open loop: send this many calls per second whatever the replies do (measures
    /// latency below saturation). Without it: closed loop.
    #[arg(long, value_name = "CALLS_PER_SEC")]
    pub rate: Option<f64>,

    /// Measured calls to send at most.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub count: u64,

    /// Measured sending time at most, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,

    /// Send (and check) for this long before measuring, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub warmup: f64,

    /// A call unanswered this long is lost and its slot reused, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout: u64,

    /// Generator threads (socket mode; clients, window, count and rate are split).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,

    /// Which MNT statuses count as right.
    #[arg(long, value_enum, default_value_t = ExpectArg::Ok)]
    pub expect: ExpectArg,

    /// Write the JSON report to FILE, or to stdout with "-" (the summary then goes to
    /// stderr).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,

    /// No progress bar and no human summary.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `--target`: an IP address with port, or a host name with port.
pub fn parse_target(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    text.to_socket_addrs()
        .with_context(|| format!("--target {text:?}: expected HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow!("--target {text:?} resolves to no address"))
}

/// Splits `total` into `parts` shares that differ by at most one.
fn share(total: u64, parts: u32, i: u32) -> u64 {
    let parts = u64::from(parts.max(1));
    total / parts + u64::from(u64::from(i) < total % parts)
}

/// Everything `execute` resolved from the arguments.
struct Plan {
    target: SocketAddr,
    templates: Templates,
    window: u32,
    threads: u32,
    /// `--spoof-sources`, expanded.
    forged: Option<Vec<IpAddr>>,
}

fn plan(args: &StormArgs) -> anyhow::Result<Plan> {
    let target = parse_target(&args.target)?;
    let mix = Mix::parse(&args.mix).context("--mix")?;
    let paths = match (&args.paths, &args.paths_file) {
        (Some(list), _) => mix::parse_paths(list, false).context("--paths")?,
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading --paths-file {}", file.display()))?;
            mix::parse_paths(&text, true)
                .with_context(|| format!("--paths-file {}", file.display()))?
        }
        (None, None) => Vec::new(),
    };
    let templates = Templates::build(&mix, &paths, args.expect == ExpectArg::Ok)?;
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    if !(args.warmup.is_finite() && args.warmup >= 0.0) {
        bail!("--warmup must be zero or more seconds");
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of calls per second");
        }
    }
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    for a in &args.source_addrs {
        if a.is_ipv4() != target.is_ipv4() {
            bail!("--source-addrs {a} is not of the target's address family");
        }
    }
    let forged = match args.spoof_sources {
        None => None,
        Some(_) if args.io != IoKind::Afxdp => {
            bail!("--spoof-sources needs --io afxdp (kernel sockets send from configured addresses only)")
        }
        Some(net) if matches!(net, ipnet::IpNet::V4(_)) != target.is_ipv4() => {
            bail!("--spoof-sources {net} is not of the target's address family")
        }
        Some(net) => Some(spoof::forged_addresses(net)?),
    };
    let window = match (args.window, args.rate) {
        (Some(w), _) => w,
        (None, None) => 64,
        (None, Some(rate)) => {
            ((rate * args.timeout as f64 / 1000.0).ceil() as u64).clamp(64, 65_536) as u32
        }
    };
    let threads = match args.io {
        // One engine drives every AF_XDP queue.
        IoKind::Afxdp => 1,
        IoKind::Socket => args.threads.min(args.clients).min(window),
    };
    if args.io == IoKind::Afxdp && args.pass_through_xdp.is_some() {
        bail!("--pass-through-xdp is for --io socket (--io afxdp attaches storm's own XDP program to --iface)");
    }
    if args.pass_through_xdp.as_deref() == Some("") {
        bail!("--pass-through-xdp needs an interface name");
    }
    if args.io == IoKind::Afxdp && args.transport == TransportKind::Tcp {
        bail!("--io afxdp speaks UDP only; use --io socket for TCP");
    }
    Ok(Plan {
        target,
        templates,
        window,
        threads,
        forged,
    })
}

/// Runs the generator as described by `args` until done or `stop` is set; shows a
/// progress bar when `progress_bar` (and stderr is a terminal).
pub fn execute(
    args: &StormArgs,
    stop: Arc<AtomicBool>,
    progress_bar: bool,
) -> anyhow::Result<Report> {
    let plan = plan(args)?;
    let expects: Arc<Vec<(u16, mix::Expect)>> = Arc::new(
        plan.templates
            .templates
            .iter()
            .map(|t| (t.entry, t.expect))
            .collect(),
    );
    let messages: Vec<Vec<u8>> = plan
        .templates
        .templates
        .iter()
        .map(|t| t.message.clone())
        .collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(13))
        .unwrap_or(1)
        ^ std::process::id();

    // Held until execute returns, whichever way: dropping it detaches the program.
    let _pass_through = match &args.pass_through_xdp {
        Some(iface) => Some(attach_pass_through(iface, progress_bar)?),
        None => None,
    };
    // Transports are opened here, before the clock starts.
    let mut ios: Vec<Box<dyn Transport + Send>> = Vec::new();
    let mut afxdp_info = None;
    let mut source_addrs: Vec<String> = args.source_addrs.iter().map(|a| a.to_string()).collect();
    match (args.io, args.transport) {
        (IoKind::Socket, kind) => {
            let mut first_client = 0usize;
            for t in 0..plan.threads {
                let clients = share(u64::from(args.clients), plan.threads, t) as u32;
                let sources: Vec<IpAddr> = (0..clients as usize)
                    .map(|i| socket::source_for(first_client + i, &args.source_addrs, &plan.target))
                    .collect();
                first_client += clients as usize;
                let per_client_sources = if args.source_addrs.is_empty() {
                    Vec::new()
                } else {
                    sources
                };
                let io: Box<dyn Transport + Send> = match kind {
                    TransportKind::Udp => Box::new(socket::UdpIo::open(
                        plan.target,
                        clients,
                        &per_client_sources,
                        messages.clone(),
                    )?),
                    TransportKind::Tcp => Box::new(socket::TcpIo::open(
                        plan.target,
                        clients,
                        &per_client_sources,
                        messages.clone(),
                    )?),
                };
                ios.push(io);
            }
        }
        (IoKind::Afxdp, _) => {
            let iface = args
                .iface
                .as_deref()
                .ok_or_else(|| anyhow!("--io afxdp needs --iface"))?;
            let opened = afxdp::AfxdpIo::open(&afxdp::AfxdpConfig {
                iface: iface.to_owned(),
                mode: match args.xdp {
                    XdpModeArg::Native => mount_xdp::ebpf::XdpMode::Native,
                    XdpModeArg::Generic => mount_xdp::ebpf::XdpMode::Generic,
                },
                target: plan.target,
                clients: args.clients,
                sources: match &plan.forged {
                    Some(addrs) => afxdp::Sources::Forged(addrs.clone()),
                    None => afxdp::Sources::Local(args.source_addrs.clone()),
                },
                messages: messages.clone(),
            })?;
            source_addrs = opened.sources().iter().map(|a| a.to_string()).collect();
            ios.push(Box::new(opened));
        }
    }

    let threads = ios.len() as u32;
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let timeout = Duration::from_millis(args.timeout);
    let progress: Vec<Arc<Progress>> = (0..threads).map(|_| Arc::default()).collect();
    let cpu_before = report::process_cpu();
    let mut handles = Vec::new();
    let mut first_client = 0u32;
    for (t, mut io) in (0..threads).zip(ios) {
        let clients = match args.io {
            IoKind::Afxdp => args.clients,
            IoKind::Socket => share(u64::from(args.clients), threads, t) as u32,
        };
        first_client += clients;
        let cfg = EngineConfig {
            slots: share(u64::from(plan.window), threads, t).max(1) as u32,
            clients,
            pace: match args.rate {
                Some(rate) => Pace::Open {
                    rate: rate / f64::from(threads),
                },
                None => Pace::Closed,
            },
            count: share(args.count, threads, t),
            warmup,
            duration,
            timeout,
            drain_max: timeout.max(Duration::from_millis(500)),
            seed: seed.wrapping_add(t.wrapping_mul(0x9E37_79B9)),
        };
        let picker = plan.templates.picker().with_offset(t as usize * 7);
        let expects = expects.clone();
        let stop = stop.clone();
        let progress = progress[t as usize].clone();
        let handle = std::thread::Builder::new()
            .name(format!("storm-{t}"))
            .spawn(move || {
                let stats = engine::run(&mut *io, &expects, picker, &cfg, &stop, &progress);
                stats.map(|s| (s, io.report()))
            })
            .context("starting a generator thread")?;
        handles.push(handle);
    }
    debug_assert!(args.io == IoKind::Afxdp || first_client == args.clients);

    let bar = (progress_bar && std::io::stderr().is_terminal()).then(|| new_bar(args.count));
    let started = Instant::now();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if SIGINT.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
        if let Some(bar) = &bar {
            let sum = |f: fn(&Progress) -> u64| progress.iter().map(|p| f(p)).sum::<u64>();
            let sent = sum(|p| p.sent.load(Ordering::Relaxed));
            let answered = sum(|p| p.answered.load(Ordering::Relaxed));
            let wrong = sum(|p| p.wrong.load(Ordering::Relaxed));
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            bar.set_position(sent);
            bar.set_message(format!(
                "answered {answered} wrong {wrong} ~{:.0}/s",
                answered as f64 / secs
            ));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut total = Stats::new(plan.templates.labels.len());
    for h in handles {
        let (stats, transport) = h
            .join()
            .map_err(|_| anyhow!("a generator thread panicked"))??;
        total.merge(&stats);
        if transport.is_some() {
            afxdp_info = transport;
        }
    }
    let cpu_after = report::process_cpu();
    let info = RunInfo {
        target: plan.target.to_string(),
        transport: match args.transport {
            TransportKind::Udp => "udp",
            TransportKind::Tcp => "tcp",
        }
        .to_owned(),
        io: match args.io {
            IoKind::Socket => "socket",
            IoKind::Afxdp => "afxdp",
        }
        .to_owned(),
        rate: args.rate,
        window: plan.window,
        clients: args.clients,
        threads,
        source_addrs,
        warmup_s: args.warmup,
        labels: plan.templates.labels.clone(),
        cpu: CpuReport {
            cpu_s: cpu_after.0 - cpu_before.0,
            sys_s: cpu_after.1 - cpu_before.1,
            us_per_call: 0.0,
        },
        afxdp: afxdp_info,
    };
    Ok(Report::new(info, &total))
}

/// `--pass-through-xdp`: the XDP program of `mount-xdp` steering port 0 (nothing): every
/// frame passes to the kernel, but the veth end now has an XDP program, which a native-XDP
/// veth needs to keep the frames its peer sends back with XDP_TX.
fn attach_pass_through(iface: &str, say: bool) -> anyhow::Result<mount_xdp::ebpf::XdpAttachment> {
    let attached = mount_xdp::ebpf::XdpAttachment::pass_through(iface)
        .with_context(|| format!("--pass-through-xdp {iface}"))?;
    if say {
        eprintln!("storm: pass-through XDP program on {iface} (detached on exit)");
    }
    Ok(attached)
}

fn new_bar(count: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(count);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} sent  {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Set by the SIGINT handler; the main thread turns it into the engines' stop flag.
static SIGINT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGINT.store(true, Ordering::Relaxed);
}

/// Ctrl-C stops sending (the report is still printed); a second Ctrl-C kills.
fn install_sigint() {
    // SAFETY: installs a handler that only stores to an atomic; SA_RESETHAND makes the
    // second Ctrl-C take the default action.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// `xdp-mountd storm`: run, then print the summary and/or the JSON.
pub fn run(args: StormArgs) -> anyhow::Result<()> {
    install_sigint();
    let stop = Arc::new(AtomicBool::new(false));
    let report = execute(&args, stop, !args.quiet)?;
    let json_to_stdout = args.json.as_deref() == Some("-");
    if !args.quiet {
        let text = report.human();
        if json_to_stdout {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    match args.json.as_deref() {
        Some("-") => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", report.to_json()).context("writing the JSON report")?;
        }
        Some(path) => std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("writing the JSON report to {path}"))?,
        None => {}
    }
    Ok(())
}
