//! The stats socket: a Unix stream socket; each connection gets one JSON [`Report`] and
//! is closed. A thread of its own, far from the data paths.
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use super::Report;

/// Builds the report when someone asks.
pub type ReportFn = dyn Fn() -> Report + Send + Sync;

/// The running stats socket; [`stop`](Self::stop) removes it.
pub struct StatsServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatsServer {
    /// Listens on `path` (creating its directory; replacing a stale socket file) and
    /// answers with `report()`. A live socket of another daemon is not taken over.
    pub fn start(path: &Path, report: Arc<ReportFn>) -> anyhow::Result<StatsServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "{} is in use by another running daemon (same port?)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("stats".into())
                .spawn(move || serve(&listener, &stop, &*report))
                .context("starting the stats thread")?
        };
        tracing::info!(socket = %path.display(), "stats socket listening");
        Ok(StatsServer {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops answering and removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if thread.join().is_err() {
            tracing::error!("the stats thread panicked");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(listener: &UnixListener, stop: &AtomicBool, report: &ReportFn) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "stats accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
        let body = match serde_json::to_vec(&report()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "encoding stats failed");
                continue;
            }
        };
        if let Err(e) = conn.write_all(&body).and_then(|()| conn.write_all(b"\n")) {
            tracing::debug!(error = %e, "writing stats failed");
        }
    }
}

/// Asks the daemon behind `path` for its report.
pub fn fetch(path: &Path) -> anyhow::Result<Report> {
    let mut conn = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is xdp-mountd serve running, on this port?)",
            path.display()
        )
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut body = Vec::new();
    conn.read_to_end(&mut body)
        .or_else(|e| match e.kind() {
            io::ErrorKind::ConnectionReset => Ok(0),
            _ => Err(e),
        })
        .with_context(|| format!("reading from {}", path.display()))?;
    serde_json::from_slice(&body)
        .with_context(|| format!("decoding the report from {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_reports_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("xmd-stats-{}", std::process::id()));
        let path = dir.join("sub/644.sock");
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = n.clone();
        let server = StatsServer::start(
            &path,
            Arc::new(move || Report {
                port: 644 + counter.fetch_add(1, Ordering::Relaxed) as u16,
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(fetch(&path).unwrap().port, 644);
        assert_eq!(fetch(&path).unwrap().port, 645);
        // A second daemon on the same socket is refused while the first lives.
        let err = StatsServer::start(&path, Arc::new(Report::default))
            .err()
            .unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
        server.stop();
        assert!(!path.exists());
        assert!(fetch(&path).is_err());
        // A stale file (no listener) is replaced.
        std::fs::write(&path, b"").unwrap();
        let server = StatsServer::start(&path, Arc::new(Report::default)).unwrap();
        assert_eq!(fetch(&path).unwrap().port, 0);
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
