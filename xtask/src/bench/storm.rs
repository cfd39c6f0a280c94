//! One measured interval: `xdp-mountd storm` in the client namespace, with /proc/stat
//! sampled inside its measured window.
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::cpu::{self, CpuTimes};
use super::report::{Run, StormResult};
use super::Interrupt;
use testbed::process::tail;

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
    /// Further storm options (e.g. `--spoof-sources`, `--timeout`), appended last.
    pub extra: Vec<String>,
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
    a.extend(spec.extra.iter().cloned());
    a
}

/// A storm run started and not yet waited for; killed if dropped unwaited (an error
/// elsewhere must not leave a generator running).
pub struct Running<'s> {
    spec: &'s StormSpec<'s>,
    child: Child,
    spawned: Instant,
    waited: bool,
}

/// Start storm in its namespace (pinned if asked), its output to `spec.log`.
pub fn spawn<'s>(spec: &'s StormSpec<'s>, load: Load) -> Result<Running<'s>> {
    let _ = std::fs::remove_file(&spec.json);
    let out =
        File::create(&spec.log).with_context(|| format!("creating {}", spec.log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = testbed::netns::command(spec.netns);
    if let Some(cpu) = spec.cpu {
        cmd.args(["taskset", "-c", cpu]);
    }
    let child = cmd
        .arg(spec.bin)
        .args(storm_args(spec, load))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .context("starting xdp-mountd storm")?;
    Ok(Running {
        spec,
        child,
        spawned: Instant::now(),
        waited: false,
    })
}

impl Running<'_> {
    /// Seconds since it was started.
    pub fn elapsed(&self) -> f64 {
        self.spawned.elapsed().as_secs_f64()
    }

    /// Whether storm has exited already (its report is still read by `wait`).
    pub fn has_exited(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }

    /// Where its output goes.
    pub fn log(&self) -> &Path {
        &self.spec.log
    }

    /// Wait for storm to exit (bounded: its duration and warm-up plus 20 s), calling
    /// `tick` about every 50 ms meanwhile; then read its JSON. Also returns the seconds
    /// from the start to the exit.
    pub fn wait(
        mut self,
        stop: &Interrupt,
        mut tick: impl FnMut(&Self) -> Result<()>,
    ) -> Result<(StormResult, f64)> {
        self.waited = true;
        let spec = self.spec;
        let limit = Duration::from_secs_f64(spec.duration + spec.warmup + 20.0);
        let watched = (|| -> Result<Option<f64>> {
            loop {
                tick(&self)?;
                if self.child.try_wait()?.is_some() {
                    return Ok(Some(self.elapsed()));
                }
                if self.spawned.elapsed() > limit {
                    return Ok(None);
                }
                stop.sleep(Duration::from_millis(50))?;
            }
        })();
        let exited_at = match watched {
            Ok(Some(t)) => t,
            other => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                other?;
                bail!("storm did not finish within {limit:?}; killed");
            }
        };
        let status = self.child.wait()?;
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
        Ok((storm, exited_at))
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run storm once. /proc/stat is sampled every 50 ms while it runs; afterwards the samples
/// inside storm's measured interval (located from its exit time, drain and duration, so its
/// set-up time does not matter) give the busy CPU per answered call.
pub fn measure(spec: &StormSpec<'_>, load: Load, round: u32, stop: &Interrupt) -> Result<Run> {
    measure_sampled(spec, load, round, stop, || Ok(())).map(|(run, _)| run)
}

/// An extra sample at the two ends of the measured window, with the seconds between.
pub type Span<T> = (f64, T, T);

/// [`measure`], also sampling `extra` (e.g. per-process CPU) beside /proc/stat; returns it
/// at the two ends of the measured window with the seconds between them.
pub fn measure_sampled<T: Copy>(
    spec: &StormSpec<'_>,
    load: Load,
    round: u32,
    stop: &Interrupt,
    mut extra: impl FnMut() -> Result<T>,
) -> Result<(Run, Option<Span<T>>)> {
    let mut samples: Vec<(f64, (CpuTimes, T))> = Vec::new();
    let (storm, exited_at) = spawn(spec, load)?.wait(stop, |running| {
        samples.push((running.elapsed(), (CpuTimes::sample()?, extra()?)));
        Ok(())
    })?;
    // Sending stopped `drain_s` before the exit (writing the report takes next to nothing).
    let end = exited_at - storm.drain_s;
    let begin = end - storm.duration_s;
    let margin = (storm.duration_s * 0.1).min(0.2);
    let span = window(&samples, begin + margin, end - margin);
    let (cpu_us_per_call, cpu_busy_fraction) = match span {
        Some(((t0, (a, _)), (t1, (b, _)))) => (
            cpu::us_per_call(a, b, cpu::ticks_per_sec(), storm.calls_per_sec * (t1 - t0)),
            cpu::busy_fraction(a, b),
        ),
        None => (None, 0.0),
    };
    let run = Run {
        round,
        target_rate: match load {
            Load::Open { rate, .. } => Some(rate),
            Load::Closed { .. } => None,
        },
        cpu_us_per_call,
        cpu_busy_fraction,
        storm,
    };
    let extra = span.map(|((t0, (_, a)), (t1, (_, b)))| (t1 - t0, a, b));
    Ok((run, extra))
}

/// The first sample at or after `from` and the last at or before `to`, if they span a
/// positive interval.
fn window<S: Copy>(samples: &[(f64, S)], from: f64, to: f64) -> Option<((f64, S), (f64, S))> {
    let first = samples.iter().find(|(t, _)| *t >= from)?;
    let last = samples.iter().rev().find(|(t, _)| *t <= to)?;
    (last.0 > first.0).then_some((*first, *last))
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
            extra: vec![],
        }
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).map(String::as_str)
    }

    #[test]
    fn cpu_window_lies_inside_the_measured_interval() {
        let c = |busy| CpuTimes { busy, idle: 0 };
        let samples: Vec<(f64, CpuTimes)> = (0..20)
            .map(|i| (f64::from(i) * 0.1, c(u64::try_from(i).unwrap())))
            .collect();
        let ((t0, a), (t1, b)) = window(&samples, 0.55, 1.25).unwrap();
        assert!(
            (t0 - 0.6).abs() < 1e-9 && (t1 - 1.2).abs() < 1e-9,
            "{t0} {t1}"
        );
        assert_eq!((a.busy, b.busy), (6, 12));
        // Too short, or outside what was sampled: no figure rather than a wrong one.
        assert!(window(&samples, 0.55, 0.58).is_none());
        assert!(window(&samples, 2.5, 3.0).is_none());
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
        // Extra options come last, as given.
        s.extra = vec!["--timeout".into(), "100".into()];
        let a = storm_args(&s, Load::Closed { window: 8 });
        assert_eq!(a[a.len() - 2..], ["--timeout", "100"]);
    }
}
