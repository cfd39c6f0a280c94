//! One measured interval: `xdp-mountd storm` in the client namespace, with /proc/stat
//! sampled inside its measured window.
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cpu::{self, CpuTimes};
use super::report::{Run, StormResult};
use super::server::{tail, wait_timeout};
use super::Interrupt;

/// Closed loop at saturation, or open loop at a fixed rate.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `--window N`: N calls outstanding.
    Closed { window: u32 },
    /// `--rate R` calls/s, at most `window` outstanding.
    Open { rate: f64, window: u32 },
}

/// Everything one storm run needs.
pub struct StormSpec<'a> {
    /// The xdp-mountd binary (storm is one of its subcommands).
    pub bin: &'a Path,
    /// The client namespace.
    pub netns: &'a str,
    /// HOST:PORT of the server.
    pub target: String,
    /// `--mix` value.
    pub mix: &'a str,
    /// The exported path MNT asks for.
    pub path: &'a str,
    /// Generator sockets.
    pub clients: u32,
    /// Send and receive through AF_XDP on this interface (native XDP); None: sockets.
    pub afxdp_iface: Option<&'a str>,
    /// Pin the generator to this CPU (taskset -c).
    pub cpu: Option<&'a str>,
    /// Measured seconds.
    pub duration: f64,
    /// Warm-up seconds (not measured).
    pub warmup: f64,
    /// Where the JSON goes.
    pub json: PathBuf,
    /// Where storm's own output goes.
    pub log: PathBuf,
}

/// The storm command line for `spec` at `load` (without the namespace wrapper).
pub fn storm_args(spec: &StormSpec<'_>, load: Load) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "storm".into(),
        "--target".into(),
        spec.target.clone(),
        "--transport".into(),
        "udp".into(),
        "--mix".into(),
        spec.mix.into(),
        "--paths".into(),
        spec.path.into(),
        "--clients".into(),
        spec.clients.to_string(),
    ];
    match spec.afxdp_iface {
        Some(iface) => {
            a.extend(["--io", "afxdp", "--iface", iface, "--xdp", "native"].map(String::from))
        }
        None => a.extend(["--io".into(), "socket".into()]),
    }
    match load {
        Load::Closed { window } => a.extend(["--window".into(), window.to_string()]),
        Load::Open { rate, window } => a.extend([
            "--rate".into(),
            format!("{:.0}", rate.max(1.0)),
            "--window".into(),
            window.to_string(),
        ]),
    }
    // The duration bounds the run; the count only guards against a runaway generator
    // (no server here answers 5M calls/s on a 2-CPU machine).
    let count = (5e6 * (spec.duration + spec.warmup)).ceil() as u64;
    a.extend([
        "--duration".into(),
        format!("{}", spec.duration),
        "--warmup".into(),
        format!("{}", spec.warmup),
        "--count".into(),
        count.to_string(),
        "--json".into(),
        spec.json.display().to_string(),
        "--quiet".into(),
    ]);
    a
}

/// Run storm once; CPU is sampled from just after the warm-up to just before the end, and
/// divided by the calls answered in that window (storm's steady rate × window length).
pub fn measure(spec: &StormSpec<'_>, load: Load, round: u32, stop: &Interrupt) -> Result<Run> {
    let _ = std::fs::remove_file(&spec.json);
    let out =
        File::create(&spec.log).with_context(|| format!("creating {}", spec.log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", spec.netns]);
    if let Some(cpu) = spec.cpu {
        cmd.args(["taskset", "-c", cpu]);
    }
    let mut child = cmd
        .arg(spec.bin)
        .args(storm_args(spec, load))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .context("starting xdp-mountd storm")?;
    let margin = (spec.duration * 0.1).min(0.2);
    let result = (|| -> Result<(CpuTimes, CpuTimes, f64)> {
        stop.sleep(Duration::from_secs_f64(spec.warmup + margin))?;
        let before = CpuTimes::sample()?;
        let t = Instant::now();
        stop.sleep(Duration::from_secs_f64(
            (spec.duration - 2.0 * margin).max(0.1),
        ))?;
        let after = CpuTimes::sample()?;
        Ok((before, after, t.elapsed().as_secs_f64()))
    })();
    let limit = Duration::from_secs_f64(spec.duration + spec.warmup + 20.0);
    let finished = match &result {
        Ok(_) => wait_timeout(&mut child, limit),
        Err(_) => false,
    };
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (before, after, window) = result?;
    if !finished {
        bail!("storm did not finish within {limit:?}; killed");
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "storm failed ({status}); {}:\n{}",
            spec.log.display(),
            tail(&spec.log, 15)
        );
    }
    let text = std::fs::read_to_string(&spec.json)
        .with_context(|| format!("reading storm's {}", spec.json.display()))?;
    let storm: StormResult = serde_json::from_str(&text)
        .with_context(|| format!("parsing storm's {}", spec.json.display()))?;
    let answered_in_window = storm.calls_per_sec * window;
    Ok(Run {
        round,
        target_rate: match load {
            Load::Open { rate, .. } => Some(rate),
            Load::Closed { .. } => None,
        },
        cpu_us_per_call: cpu::us_per_call(before, after, cpu::ticks_per_sec(), answered_in_window),
        cpu_busy_fraction: cpu::busy_fraction(before, after),
        storm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StormSpec<'static> {
        StormSpec {
            bin: Path::new("/bin/xdp-mountd"),
            netns: "ns",
            target: "10.0.0.1:644".into(),
            mix: "mnt3=1",
            path: "/srv/x",
            clients: 4,
            afxdp_iface: None,
            cpu: None,
            duration: 2.0,
            warmup: 0.5,
            json: PathBuf::from("/tmp/s.json"),
            log: PathBuf::from("/tmp/s.log"),
        }
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).map(String::as_str)
    }

    #[test]
    fn closed_and_open_loads_map_to_window_and_rate() {
        let a = storm_args(&spec(), Load::Closed { window: 64 });
        assert_eq!(a[0], "storm");
        assert_eq!(after(&a, "--window"), Some("64"));
        assert_eq!(after(&a, "--rate"), None);
        assert_eq!(after(&a, "--mix"), Some("mnt3=1"));
        assert_eq!(after(&a, "--json"), Some("/tmp/s.json"));
        let open = Load::Open {
            rate: 12_345.6,
            window: 256,
        };
        let a = storm_args(&spec(), open);
        assert_eq!(after(&a, "--rate"), Some("12346"));
        assert_eq!(after(&a, "--window"), Some("256"));
        assert_eq!(after(&a, "--duration"), Some("2"));
        assert_eq!(after(&a, "--warmup"), Some("0.5"));
        assert_eq!(after(&a, "--io"), Some("socket"));
        let mut s = spec();
        s.afxdp_iface = Some("veth1");
        let a = storm_args(&s, Load::Closed { window: 8 });
        assert_eq!(after(&a, "--io"), Some("afxdp"));
        assert_eq!(after(&a, "--iface"), Some("veth1"));
    }
}
