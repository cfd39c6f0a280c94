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

/// User + system clock ticks of process (or thread) `pid`, all its threads included.
pub fn cpu_ticks(pid: libc::pid_t) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_ticks(&text).with_context(|| format!("{path}: no utime/stime fields"))
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line; the command name may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_fields_14_and_15() {
        let line = "4242 (napi/x (y)-1) S 2 0 0 0 -1 2129984 0 0 0 0 17 25 0 0 20 0 1 0 9 0 0";
        assert_eq!(parse_ticks(line), Some(42));
        assert_eq!(parse_ticks("4242 (x) S 2"), None);
        assert_eq!(parse_ticks("garbage"), None);
        // Our own process has a readable line.
        // SAFETY: getpid has no preconditions.
        assert!(cpu_ticks(unsafe { libc::getpid() }).is_ok());
    }
}
