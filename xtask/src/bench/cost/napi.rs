//! Threaded NAPI on both veth ends, each NAPI kthread pinned to its side's CPU, and the
//! CPU time of processes and kthreads from /proc.
//!
//! Why: a veth delivers to its peer's NAPI (XDP, GRO) in softirq on the CPU that sent the
//! frame, so without threads the server's XDP program, redirect and UDP receive run on the
//! generator's CPU (and the generator's receive on the server's), charged to whoever was
//! running. With `threaded` set, each end's NAPI poll runs in a kthread `napi/IF-ID`, and
//! pinned to its side's CPU its time is that side's, readable per thread.
//!
//! Veth has NAPI only with an XDP program attached or GRO on, and uses it only for frames
//! that could be aggregated: from a sender without TSO (or, from a socket, to a receiver
//! with UDP GRO forwarding). So both ends get `gro on tso off`: every path (kernel socket
//! included, and the AF_XDP generator's skbs) then goes through NAPI on the receiving
//! side. GRO costs a little per datagram on every path alike.
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

use testbed::End;

/// How long the kthread may take to appear after `threaded` is written.
const APPEAR_WITHIN: Duration = Duration::from_secs(2);

/// Threaded NAPI set up on some veth ends; undone (best effort) on drop.
pub struct ThreadedNapi {
    ends: Vec<End>,
}

impl ThreadedNapi {
    /// `gro on tso off` and `threaded` on each end, its NAPI kthread pinned to the CPU
    /// given with it. Returns the kthreads' pids in the order of `ends`.
    pub fn enable(ends: &[(&End, usize)]) -> Result<(ThreadedNapi, Vec<libc::pid_t>)> {
        let mut guard = ThreadedNapi { ends: Vec::new() };
        let mut pids = Vec::new();
        for (end, cpu) in ends {
            guard.ends.push((*end).clone());
            run(
                end,
                &["ethtool", "-K", &end.ifname, "gro", "on", "tso", "off"],
            )?;
            write_threaded(end, 1)?;
            let pid = find_kthread(&end.ifname)?;
            pin(pid, *cpu).with_context(|| format!("pinning napi/{} to CPU {cpu}", end.ifname))?;
            pids.push(pid);
        }
        Ok((guard, pids))
    }
}

impl Drop for ThreadedNapi {
    fn drop(&mut self) {
        for end in &self.ends {
            // The pair is usually deleted next; this matters when it is not.
            if let Err(e) = write_threaded(end, 0).and_then(|()| {
                run(
                    end,
                    &["ethtool", "-K", &end.ifname, "gro", "off", "tso", "on"],
                )
            }) {
                eprintln!(
                    "xtask bench: undoing threaded NAPI on {}: {e:#}",
                    end.ifname
                );
            }
        }
    }
}

/// Runs `argv` in `end`'s namespace; Err with its stderr when it fails.
fn run(end: &End, argv: &[&str]) -> Result<()> {
    let out = end.output(argv, 5)?;
    if out.code != Some(0) {
        bail!("{argv:?} in {}: {}", end.ns, out.stderr.trim());
    }
    Ok(())
}

/// `/sys/class/net/IF/threaded` as seen from the end's namespace (sysfs shows the devices
/// of the namespace that mounted it, which `ip netns exec` does).
fn write_threaded(end: &End, on: u8) -> Result<()> {
    let script = format!("echo {on} > /sys/class/net/{}/threaded", end.ifname);
    run(end, &["sh", "-c", &script])
}

/// The pid of the kthread `napi/IF-ID` (one RX queue: one NAPI instance).
fn find_kthread(ifname: &str) -> Result<libc::pid_t> {
    let prefix = format!("napi/{ifname}-");
    let start = Instant::now();
    loop {
        let dir = std::fs::read_dir("/proc").context("reading /proc")?;
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim_end().starts_with(&prefix) {
                return Ok(pid);
            }
        }
        if start.elapsed() > APPEAR_WITHIN {
            bail!("no kthread {prefix}* within {APPEAR_WITHIN:?} of setting threaded NAPI");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pins thread `pid` to `cpu`.
fn pin(pid: libc::pid_t, cpu: usize) -> Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        bail!("CPU {cpu} out of range");
    }
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE (checked above): the bit lies inside the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid cpu_set_t of the size given.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// CPU time of process (or kthread) `pid`, all its live threads, in nanoseconds: the
/// scheduler's own run-time accounting (`/proc/PID/task/TID/schedstat`, first field).
/// Not utime/stime of `/proc/PID/stat`: those are tick samples (250 Hz here), and a worker
/// woken 2000 times a second for a few microseconds is mostly missed by them. Threads
/// that exit between two samples take their time with them (the daemon's do not).
pub fn cpu_ns(pid: libc::pid_t) -> Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Ok(entry) = entry else { continue };
        // A thread that exited since the listing has no file any more: skip it.
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        total += parse_schedstat(&text)
            .with_context(|| format!("{}/schedstat: no run time field", entry.path().display()))?;
    }
    Ok(total)
}

/// The first field of a schedstat line: nanoseconds spent running.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_run_time_is_the_first_field() {
        assert_eq!(
            parse_schedstat("195181793 21598617 717\n"),
            Some(195_181_793)
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
        // Our own process (all its threads) has run for some time.
        // SAFETY: getpid has no preconditions.
        assert!(cpu_ns(unsafe { libc::getpid() }).is_ok_and(|ns| ns > 0));
    }
}
