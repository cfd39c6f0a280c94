//! The control socket (named for its first use, stats): a Unix stream socket. A client
//! sends one request line, `stats` or `reload`, and gets one JSON answer ([`Report`] or
//! [`ReloadReport`]) before the connection is closed; a client that sends nothing within
//! [`REQUEST_WAIT`] gets the stats. A thread of its own, far from the data paths.
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use super::Report;
use crate::exports::ReloadReport;

/// Builds the report when someone asks.
pub type ReportFn = dyn Fn() -> Report + Send + Sync;
/// Reloads the exports when someone asks (blocking until done).
pub type ReloadFn = dyn Fn() -> ReloadReport + Send + Sync;

/// How long the server waits for a request line before answering with the stats.
pub const REQUEST_WAIT: Duration = Duration::from_secs(1);
/// How long `reload` waits for the daemon's answer (a reload resolves host names).
pub const RELOAD_WAIT: Duration = Duration::from_secs(120);

/// The running stats socket; [`stop`](Self::stop) removes it.
pub struct StatsServer {
    path: PathBuf,
    /// The socket file's inode: only that file is removed at stop (another daemon may
    /// have replaced it in the meantime).
    inode: Option<u64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatsServer {
    /// Listens on `path` (creating its directory; replacing a stale socket file) and
    /// answers with `report()`, or runs `reload()` when asked. A live socket of another
    /// daemon is not taken over.
    pub fn start(
        path: &Path,
        report: Arc<ReportFn>,
        reload: Option<Arc<ReloadFn>>,
    ) -> anyhow::Result<StatsServer> {
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
        listener
            .set_nonblocking(true)
            .context("stats socket non-blocking")?;
        let inode = inode(path);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("stats".into())
                .spawn(move || serve(&listener, &stop, &*report, reload.as_deref()))
                .context("starting the stats thread")?
        };
        tracing::info!(socket = %path.display(), "stats socket listening");
        Ok(StatsServer {
            path: path.to_owned(),
            inode,
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
        if thread.join().is_err() {
            tracing::error!("the stats thread panicked");
        }
        if self.inode.is_some() && inode(&self.path) == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

/// How often the stats thread looks at the stop flag while nobody connects.
const STOP_POLL_MS: i32 = 100;

fn serve(listener: &UnixListener, stop: &AtomicBool, report: &ReportFn, reload: Option<&ReloadFn>) {
    use std::os::fd::AsRawFd as _;
    // Polled rather than woken by a connection to our own path: the file may have been
    // replaced or removed by then.
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, STOP_POLL_MS) } <= 0 {
            continue;
        }
        let mut conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                tracing::debug!(error = %e, "stats accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
        let body = match (read_request(&mut conn).as_str(), reload) {
            ("reload", Some(reload)) => serde_json::to_vec(&reload()),
            ("reload", None) => serde_json::to_vec(&ReloadReport {
                errors: vec!["this daemon cannot reload over its control socket".into()],
                ..Default::default()
            }),
            _ => serde_json::to_vec(&report()),
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "encoding a control answer failed");
                continue;
            }
        };
        if let Err(e) = conn.write_all(&body).and_then(|()| conn.write_all(b"\n")) {
            tracing::debug!(error = %e, "writing a control answer failed");
        }
    }
}

/// The request line (at most 64 bytes), or "" when the client sent none in time.
fn read_request(conn: &mut UnixStream) -> String {
    let _ = conn.set_read_timeout(Some(REQUEST_WAIT));
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        match conn.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let line = buf[..len].split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line).trim().to_string()
}

/// Sends `request` to the daemon behind `path` and returns its answer.
fn ask(path: &Path, request: &str, wait: Duration) -> anyhow::Result<Vec<u8>> {
    let mut conn = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is xdp-mountd serve running, on this port?)",
            path.display()
        )
    })?;
    conn.set_read_timeout(Some(wait))?;
    conn.write_all(format!("{request}\n").as_bytes())
        .with_context(|| format!("writing to {}", path.display()))?;
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut body = Vec::new();
    conn.read_to_end(&mut body)
        .or_else(|e| match e.kind() {
            io::ErrorKind::ConnectionReset => Ok(0),
            _ => Err(e),
        })
        .with_context(|| format!("reading from {}", path.display()))?;
    Ok(body)
}

/// Asks the daemon behind `path` for its report.
pub fn fetch(path: &Path) -> anyhow::Result<Report> {
    let body = ask(path, "stats", Duration::from_secs(5))?;
    serde_json::from_slice(&body)
        .with_context(|| format!("decoding the report from {}", path.display()))
}

/// Asks the daemon behind `path` to reload its exports and waits for the outcome.
pub fn reload(path: &Path) -> anyhow::Result<ReloadReport> {
    let body = ask(path, "reload", RELOAD_WAIT)?;
    serde_json::from_slice(&body)
        .with_context(|| format!("decoding the reload answer from {}", path.display()))
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
        let reloads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = reloads.clone();
        let server = StatsServer::start(
            &path,
            Arc::new(move || Report {
                port: 644 + counter.fetch_add(1, Ordering::Relaxed) as u16,
                ..Default::default()
            }),
            Some(Arc::new(move || ReloadReport {
                ok: true,
                exports: r.fetch_add(1, Ordering::Relaxed) as usize + 7,
                ..Default::default()
            })),
        )
        .unwrap();
        assert_eq!(fetch(&path).unwrap().port, 644);
        assert_eq!(fetch(&path).unwrap().port, 645);
        assert_eq!(reload(&path).unwrap().exports, 7);
        assert_eq!(
            fetch(&path).unwrap().port,
            646,
            "a reload is not a stats read"
        );
        // A client that sends no request line gets the stats.
        let mut raw = UnixStream::connect(&path).unwrap();
        let mut body = String::new();
        raw.read_to_string(&mut body).unwrap();
        assert!(body.contains("\"port\":647"), "{body}");
        // A second daemon on the same socket is refused while the first lives.
        let err = StatsServer::start(&path, Arc::new(Report::default), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
        server.stop();
        assert!(!path.exists());
        assert!(fetch(&path).is_err());
        // A stale file (no listener) is replaced.
        std::fs::write(&path, b"").unwrap();
        let server = StatsServer::start(&path, Arc::new(Report::default), None).unwrap();
        assert_eq!(fetch(&path).unwrap().port, 0);
        assert!(
            !reload(&path).unwrap().ok,
            "no reloader: refused, not a crash"
        );
        // A file that replaced ours is not ours to remove.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"someone else's").unwrap();
        drop(server);
        assert!(path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
