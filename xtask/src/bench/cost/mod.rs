//! Section `cost`: what one MNT costs the server, per server path, with the server's work
//! counted on the server's side: threaded NAPI on both veth ends ([`napi`]), the server,
//! its AF_XDP worker and its NAPI kthread on one CPU, the generator and its NAPI kthread
//! on another. Server µs per MNT = the CPU time of the server process and of the server
//! end's NAPI kthread (the scheduler's run time, /proc/PID/task/*/schedstat) over the measured window ÷ the MNTs answered in
//! it, so other work on the machine does not count; "machine − generator" (busy CPU of
//! the whole machine minus storm's getrusage and the client NAPI kthread) is printed
//! beside it as a cross-check.
//!
//! Paths: the kernel UDP socket (XDP off), AF_XDP (native XDP), `afxdp_busy` (AF_XDP with
//! the worker busy-polling, `--afxdp-busy-poll`), and `xdp_tx` (AF_XDP plus
//! `--xdp-answers on`: NULL/MNT answered in the XDP program with XDP_TX), the last only
//! when `xdp-mountd serve --help` lists `--xdp-answers`. Generators: storm over AF_XDP
//! and over kernel sockets (what real clients use); under the kernel-socket generator
//! each path is also run open loop at fixed rates, with the AF_XDP worker's syscalls per
//! call read from its counters (`xdp-mountd stats`). Figures are printed, never asserted.
//!
//! The XDP program's own cost per frame in this real data path comes from the kernel's
//! run accounting (`kernel.bpf_stats_enabled`, set to 1 for the section through
//! [`testbed::bpf_stats::BpfStats`] and put back after, also on an error): the daemon's
//! `stats --json` reports its program's run count and run time, read before and after
//! each run. Under the kernel-socket generator the xdp_tx path gets a pass-through XDP
//! program on the client's veth end (`storm --pass-through-xdp`), without which a
//! native-XDP veth drops every XDP_TX answer; only there, since elsewhere it would change
//! the client side of what is measured.
mod napi;
mod report;

use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use report::{CostRun, CostSection, ProgramRuns, WorkerCalls};

use super::server::{Launch, Server};
use super::storm::{self, Load, StormSpec};
use super::variants::{Ctx, GeneratorIo, Variant};
use super::PORT;
use testbed::bpf_stats::BpfStats;
use testbed::{End, Pair, PairSpec};

/// How long the section waits for another holder of kernel.bpf_stats_enabled (a test or
/// another bench measuring BPF run times) before going on without the program's figures.
const BPF_STATS_WAIT: Duration = Duration::from_secs(120);

/// The section's own namespace pair (not the servers section's: the kthread names and
/// the offload settings stay with this section's interfaces).
fn cost_net() -> PairSpec {
    PairSpec {
        server: End {
            ns: "xmd-cost-srv".into(),
            ifname: "xmd-cost0".into(),
            v4: Ipv4Addr::new(10, 74, 0, 1),
            v6: Ipv6Addr::new(0xfd74, 0, 0, 0, 0, 0, 0, 1),
        },
        client: End {
            ns: "xmd-cost-cli".into(),
            ifname: "xmd-cost1".into(),
            v4: Ipv4Addr::new(10, 74, 0, 2),
            v6: Ipv6Addr::new(0xfd74, 0, 0, 0, 0, 0, 0, 2),
        },
        queues: 1,
    }
}

/// A server path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPath {
    /// Kernel UDP socket, XDP off.
    Socket,
    /// Native XDP steering into the AF_XDP worker.
    Afxdp,
    /// AF_XDP with the worker busy-polling (`--afxdp-busy-poll`).
    AfxdpBusy,
    /// AF_XDP plus answers built in the XDP program (`--xdp-answers on`).
    XdpTx,
}

/// `--afxdp-busy-poll` of the afxdp_busy path, µs: a few inter-arrival gaps at 100k/s.
pub const BUSY_POLL_US: u32 = 50;

impl ServerPath {
    /// The name in the report.
    pub fn id(self) -> &'static str {
        match self {
            ServerPath::Socket => "socket",
            ServerPath::Afxdp => "afxdp",
            ServerPath::AfxdpBusy => "afxdp_busy",
            ServerPath::XdpTx => "xdp_tx",
        }
    }
}

/// What the section needs from the command line.
pub struct Options {
    /// Measured seconds per run.
    pub duration: f64,
    /// Warm-up seconds per run.
    pub warmup: f64,
    /// Closed-loop window.
    pub window: u32,
    /// Generator sockets.
    pub clients: u32,
    /// Open-loop rates (calls/s) under the kernel-socket generator.
    pub rates: Vec<f64>,
    /// Only start and check each server.
    pub check_only: bool,
}

/// Run the section.
pub fn run(bench_ctx: &Ctx<'_>, options: &Options) -> Result<CostSection> {
    let nproc = super::meta::machine().nproc;
    if nproc < 2 {
        bail!(
            "the cost section needs 2 CPUs (server and generator apart); this machine has {nproc}"
        );
    }
    let (server_cpu, generator_cpu) = (0usize, nproc - 1);
    let net = cost_net();
    let ctx = Ctx {
        net: &net,
        export_path: bench_ctx.export_path.clone(),
        ..*bench_ctx
    };
    let help = serve_help(ctx.bin)?;
    let xdp_answers = help.contains("--xdp-answers");
    let mut paths = vec![ServerPath::Socket, ServerPath::Afxdp];
    if help.contains("--afxdp-busy-poll") {
        paths.push(ServerPath::AfxdpBusy);
    }
    let xdp_tx_skipped = if xdp_answers {
        paths.push(ServerPath::XdpTx);
        None
    } else {
        let why = "`xdp-mountd serve --help` lists no --xdp-answers (issue 14's XDP_TX \
                   answers are not in this build)";
        println!("cost: xdp_tx skipped: {why}");
        Some(why.to_owned())
    };
    // Held until the section returns (dropped on every `?` too): the sysctl goes back.
    let (_bpf_stats, program_runs_skipped) = if options.check_only {
        (None, None)
    } else {
        match BpfStats::enable(BPF_STATS_WAIT) {
            Ok(held) => (Some(held), None),
            Err(e) => {
                let why = format!("kernel.bpf_stats_enabled could not be set: {e:#}");
                println!("cost: program ns/frame not measured: {why}");
                (None, Some(why))
            }
        }
    };
    let bench = Bench {
        ctx: &ctx,
        options,
        server_cpu,
        generator_cpu,
        generator_cpu_arg: generator_cpu.to_string(),
        xdp_answers,
        stats_socket: ctx.work.join("cost-stats.sock"),
    };
    let mut runs = Vec::new();
    for generator in [GeneratorIo::Afxdp, GeneratorIo::Socket] {
        for &path in &paths {
            runs.extend(bench.path(generator, path)?);
        }
    }
    Ok(CostSection {
        note: report::note(server_cpu, generator_cpu),
        server_cpu,
        generator_cpu,
        xdp_tx_skipped,
        program_runs_skipped,
        runs,
    })
}

/// `xdp-mountd serve --help`: which paths this build has (`--xdp-answers` from issue 14,
/// `--afxdp-busy-poll`).
fn serve_help(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .with_context(|| format!("running {} serve --help", bin.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The section's settings.
struct Bench<'a> {
    ctx: &'a Ctx<'a>,
    options: &'a Options,
    server_cpu: usize,
    generator_cpu: usize,
    /// `generator_cpu` as storm's taskset argument.
    generator_cpu_arg: String,
    xdp_answers: bool,
    stats_socket: PathBuf,
}

/// CPU time (ns) of the server process and both NAPI kthreads at one instant.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    server: u64,
    server_napi: u64,
    client_napi: u64,
}

impl Ticks {
    /// The CPU time spent from `before` to these, over `secs` seconds.
    fn since(&self, before: &Ticks, secs: f64) -> report::TickSpan {
        report::TickSpan {
            secs,
            server: self.server.saturating_sub(before.server),
            server_napi: self.server_napi.saturating_sub(before.server_napi),
            client_napi: self.client_napi.saturating_sub(before.client_napi),
            ticks_per_sec: 1_000_000_000,
        }
    }
}

impl Bench<'_> {
    /// One path under one generator: a fresh pair with threaded NAPI, the server pinned,
    /// a closed-loop run, then (kernel-socket generator) the open-loop rates.
    fn path(&self, generator: GeneratorIo, path: ServerPath) -> Result<Vec<CostRun>> {
        let ctx = self.ctx;
        // Guards, declared first and dropped last: the server stops before threaded NAPI
        // is undone and the pair goes.
        let _pair = Pair::create(ctx.net.clone())?;
        let (_napi, kthreads) = napi::ThreadedNapi::enable(&[
            (&ctx.net.server, self.server_cpu),
            (&ctx.net.client, self.generator_cpu),
        ])?;
        let (server_napi, client_napi) = (kthreads[0], kthreads[1]);
        let gen_id = generator_id(generator);
        let name = format!("{} (cost, {gen_id} generator)", path.id());
        let variant = match path {
            ServerPath::Socket => Variant::Socket,
            ServerPath::Afxdp | ServerPath::AfxdpBusy | ServerPath::XdpTx => Variant::XdpNative,
        };
        let mut server = Server::start(Launch {
            name: &name,
            netns: &ctx.net.server.ns,
            rpcbind_addr: ctx.net.server.v4.into(),
            argv: self.server_argv(path, variant),
            log: ctx.work.join(format!("cost-{}-{gen_id}.log", path.id())),
            share_stats_dir: false,
        })?;
        ctx.verify(&mut server, variant)?;
        let pid = server.pid();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "xdp-mountd" {
            bail!(
                "cost: pid {pid} is {:?}, not xdp-mountd: its CPU would be the wrong one's",
                comm.trim()
            );
        }
        let mut loads = vec![Load::Closed {
            window: self.options.window,
        }];
        if self.options.check_only {
            println!("cost: {name} answers rpcinfo -u/-t and showmount -e");
            loads.clear();
        } else if generator == GeneratorIo::Socket {
            loads.extend(self.options.rates.iter().map(|&rate| Load::Open {
                rate,
                window: self.options.window.saturating_mul(4),
            }));
        }
        let mut runs = Vec::new();
        for load in loads {
            let sample = || -> Result<Ticks> {
                Ok(Ticks {
                    server: napi::cpu_ns(pid)?,
                    server_napi: napi::cpu_ns(server_napi)?,
                    client_napi: napi::cpu_ns(client_napi)?,
                })
            };
            let before = self.daemon_counters(path)?;
            let spec = self.spec(generator, path, load);
            let (run, span) = storm::measure_sampled(&spec, load, 1, ctx.stop, sample)?;
            let after = self.daemon_counters(path)?;
            server.check_alive()?;
            let (worker, program) = match (before, after) {
                (Some(b), Some(a)) => (
                    Some(a.worker.since(&b.worker)),
                    a.program.zip(b.program).map(|(a, b)| a.since(&b)),
                ),
                _ => (None, None),
            };
            let mut cost = report::cost_run(
                gen_id,
                path.id(),
                load,
                &run,
                span.map(|(secs, a, b)| b.since(&a, secs)),
                worker,
                program,
            );
            cost.client_xdp_pass = client_xdp_pass(generator, path);
            println!("{}", cost.progress_line());
            runs.push(cost);
        }
        server.stop()?;
        Ok(runs)
    }

    /// `xdp-mountd serve` for `path`, pinned to the server CPU (taskset execs, so the pid
    /// stays the server's), with a stats socket for the worker's counters.
    fn server_argv(&self, path: ServerPath, variant: Variant) -> Vec<String> {
        let ctx = self.ctx;
        let mut a: Vec<String> = vec!["taskset".into(), "-c".into(), self.server_cpu.to_string()];
        a.extend(ctx.serve_argv(variant));
        a.extend([
            "--rmtab".into(),
            ctx.work.join("cost-rmtab").display().to_string(),
            "--trusted-networks".into(),
            format!("{}/24", ctx.net.client.v4),
            "--stats-socket".into(),
            self.stats_socket.display().to_string(),
        ]);
        if variant == Variant::XdpNative {
            a.extend(["--cores".into(), self.server_cpu.to_string()]);
        }
        if path == ServerPath::AfxdpBusy {
            a.extend(["--afxdp-busy-poll".into(), BUSY_POLL_US.to_string()]);
        }
        if self.xdp_answers && path != ServerPath::Socket {
            let on = if path == ServerPath::XdpTx {
                "on"
            } else {
                "off"
            };
            a.extend(["--xdp-answers".into(), on.into()]);
        }
        a
    }

    /// storm for one run: MNT only, pinned to the generator CPU.
    fn spec(&self, generator: GeneratorIo, path: ServerPath, load: Load) -> StormSpec<'_> {
        let ctx = self.ctx;
        let tag = format!(
            "cost-{}-{}-{}",
            path.id(),
            generator_id(generator),
            match load {
                Load::Closed { .. } => "closed".to_owned(),
                Load::Open { rate, .. } => format!("open{rate:.0}"),
            }
        );
        StormSpec {
            bin: ctx.bin,
            netns: &ctx.net.client.ns,
            target: format!("{}:{PORT}", ctx.net.server.v4),
            mix: "mnt3=1",
            path: &ctx.export_path,
            clients: self.options.clients,
            afxdp_iface: (generator == GeneratorIo::Afxdp)
                .then_some(ctx.net.client.ifname.as_str()),
            cpu: Some(&self.generator_cpu_arg),
            duration: self.options.duration,
            warmup: self.options.warmup,
            json: ctx.work.join(format!("{tag}.json")),
            log: ctx.work.join(format!("{tag}.log")),
            extra: if client_xdp_pass(generator, path) {
                vec!["--pass-through-xdp".into(), ctx.net.client.ifname.clone()]
            } else {
                vec![]
            },
        }
    }

    /// The AF_XDP worker's counters summed over the queues and the program's run
    /// accounting (None for the socket path, which has no XDP).
    fn daemon_counters(&self, path: ServerPath) -> Result<Option<RunCounters>> {
        if path == ServerPath::Socket {
            return Ok(None);
        }
        let stats = super::server::stats_json(self.ctx.bin, &self.stats_socket)?;
        Ok(Some(RunCounters {
            worker: WorkerCalls::from_stats(&stats),
            program: ProgramRuns::from_stats(&stats),
        }))
    }
}

/// What the section reads from `xdp-mountd stats --json` around each run.
#[derive(Debug, Clone, Copy)]
struct RunCounters {
    worker: WorkerCalls,
    /// None when the daemon reports no run accounting.
    program: Option<ProgramRuns>,
}

/// Whether storm gives the client's veth end a pass-through XDP program: only for the
/// xdp_tx path under the kernel-socket generator, where a native-XDP veth would drop every
/// XDP_TX answer without one (the AF_XDP generator has its own program there already).
/// Elsewhere it would add a program run to the client's receive path and change what is
/// measured.
fn client_xdp_pass(generator: GeneratorIo, path: ServerPath) -> bool {
    generator == GeneratorIo::Socket && path == ServerPath::XdpTx
}

/// The generator's name in the report.
fn generator_id(g: GeneratorIo) -> &'static str {
    match g {
        GeneratorIo::Afxdp => "afxdp",
        GeneratorIo::Socket => "socket",
    }
}
