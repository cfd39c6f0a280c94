//! `kernel.bpf_stats_enabled` set to 1 for a while and put back: the kernel adds to a BPF
//! program's run count and run time (`bpf_prog_info.run_cnt`, `run_time_ns`) only while
//! it is 1. The bench's cost section and the e2e test of the daemon's program-run stats
//! hold a [`BpfStats`] while they read those counters. A lock file serializes the holders
//! across processes: without it, one holder's restore (to 0) could switch the counting off
//! under another, or a restore could leave it on for good.
use anyhow::{bail, Context as _, Result};
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

/// The sysctl.
pub const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// The lock file every holder takes (host /run: root only, like the sysctl).
pub const LOCK_FILE: &str = "/run/xdp-mountd-bpf-stats.lock";

/// The sysctl at 1 while held; its previous value written back on drop (also when the
/// holder fails or panics). Only a SIGKILL of the holder leaves it at 1.
#[derive(Debug)]
pub struct BpfStats {
    previous: String,
    /// flock()ed; closing it (drop) releases the lock, after the restore.
    _lock: File,
}

impl BpfStats {
    /// Takes the lock (waiting at most `wait` for another holder), remembers the sysctl's
    /// value and sets it to 1.
    pub fn enable(wait: Duration) -> Result<BpfStats> {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .with_context(|| format!("opening {LOCK_FILE}"))?;
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("flock {LOCK_FILE}"));
            }
            if Instant::now() >= deadline {
                bail!(
                    "{LOCK_FILE} still held after {wait:?}: another bench or test is \
                     measuring BPF program run times"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let previous = std::fs::read_to_string(SYSCTL)
            .with_context(|| format!("reading {SYSCTL} (kernel without BPF run stats?)"))?
            .trim()
            .to_owned();
        std::fs::write(SYSCTL, "1").with_context(|| format!("writing 1 to {SYSCTL}"))?;
        Ok(BpfStats {
            previous,
            _lock: lock,
        })
    }

    /// The value found before (and written back on drop).
    pub fn previous(&self) -> &str {
        &self.previous
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(SYSCTL, &self.previous) {
            eprintln!(
                "restoring {SYSCTL} to {:?} failed: {e}; it stays 1",
                self.previous
            );
        }
        // `_lock` is closed after this body (fields drop last), so after the restore.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (the sysctl and /run); elsewhere it says so and passes, like every
    /// privileged test here outside CI.
    #[test]
    fn enables_and_restores() {
        if !crate::skip::can_run("bpf_stats::enables_and_restores") {
            return;
        }
        let read = || std::fs::read_to_string(SYSCTL).unwrap().trim().to_owned();
        let before = read();
        {
            let held = BpfStats::enable(Duration::from_secs(300)).unwrap();
            assert_eq!(read(), "1");
            assert_eq!(held.previous(), before);
            // A second holder waits for the first: here it gives up at once.
            let err = BpfStats::enable(Duration::ZERO).unwrap_err();
            assert!(format!("{err:#}").contains("still held"), "{err:#}");
        }
        assert_eq!(read(), before);
    }
}
