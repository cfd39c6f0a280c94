//! The rmtab file of the mount list: read at start, written atomically by a background
//! thread whenever the list changed. The text format (nfs-utils' `host:dir:0x00000001`
//! lines) is the protocol core's [`Rmtab`].
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mount_proto::mountlist::{Limits, MountList, Rmtab};

/// How often the persister looks for changes; writes are coalesced to at most one per tick.
const TICK: Duration = Duration::from_millis(100);

/// Read an rmtab file; a missing file is an empty list, a malformed line is logged
/// (file:line) and skipped so a damaged file never prevents a restart.
/// The list keeps `limits`: a huge or hostile file loads up to the caps.
pub fn load(path: &Path, limits: Limits) -> io::Result<MountList> {
    match fs::read(path) {
        Ok(bytes) => Ok(Rmtab::parse(
            &String::from_utf8_lossy(&bytes),
            &path.display().to_string(),
            limits,
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(MountList::with_limits(limits)),
        Err(e) => Err(e),
    }
}

/// Write `list` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync the directory. A crash leaves either the old or the new file, never a torn one.
pub fn store(path: &Path, list: &MountList) -> io::Result<()> {
    let (_, entries) = list.snapshot();
    write_atomic(path, Rmtab::render(&entries).as_bytes())
}

/// Start a background thread that writes `list` to `path` whenever it changed,
/// coalescing changes (checked every 100 ms).
pub fn spawn(list: Arc<MountList>, path: PathBuf) -> io::Result<RmtabPersister> {
    let (tx, rx) = mpsc::channel::<()>();
    // Taken here, not in the thread: a change made right after spawn() must be written.
    let written = list.generation();
    let thread = thread::Builder::new()
        .name("rmtab".into())
        .spawn(move || persist_loop(&list, &path, written, &rx))?;
    Ok(RmtabPersister {
        stop: Some(tx),
        thread: Some(thread),
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "rmtab path has no file name")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    // pid + counter: a store() racing the persister in the same process gets its own file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".tmp.{}.{seq}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `written`: the generation the file already reflects (the list was loaded from it).
fn persist_loop(
    list: &MountList,
    path: &Path,
    mut written: u64,
    stop: &mpsc::Receiver<()>,
) -> io::Result<()> {
    // Warn once per failure streak: a missing directory must not log ten lines a second.
    let mut failing = false;
    loop {
        let stopping = match stop.recv_timeout(TICK) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        if list.generation() != written {
            let (generation, entries) = list.snapshot();
            match write_atomic(path, Rmtab::render(&entries).as_bytes()) {
                Ok(()) => {
                    written = generation;
                    if failing {
                        tracing::info!("writing {} works again", path.display());
                        failing = false;
                    }
                }
                Err(e) if stopping => return Err(e),
                // Retried on the next tick; the in-memory list stays authoritative.
                Err(e) => {
                    if !failing {
                        tracing::warn!("writing {}: {e}; retrying every 100 ms", path.display());
                        failing = true;
                    }
                }
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// The running rmtab writer; dropping it also stops it (after a final write).
pub struct RmtabPersister {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl RmtabPersister {
    /// Write the final state and stop the thread (call at shutdown).
    pub fn flush_and_stop(mut self) -> io::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("rmtab thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RmtabPersister {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!("final rmtab write failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "xdp-mountd-rmtab-{tag}-{}-{:?}",
            std::process::id(),
            thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(list: &MountList) -> Vec<(String, String)> {
        list.snapshot().1
    }

    #[test]
    fn round_trip_with_ipv6_and_colon_dir() {
        let d = tmpdir("rt");
        let p = d.join("rmtab");
        let l = MountList::new();
        l.add("10.0.0.1", "/srv/a");
        l.add("fd00::1", "/srv/b");
        l.add("10.0.0.2", "/srv/with:colon");
        store(&p, &l).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "10.0.0.1:/srv/a:0x00000001\n10.0.0.2:/srv/with:colon:0x00000001\nfd00;;1:/srv/b:0x00000001\n"
        );
        let back = load(&p, Limits::default()).unwrap();
        assert_eq!(entries(&back), entries(&l));
        let leftovers: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("rmtab")],
            "no temp file left"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_file_is_empty_and_malformed_lines_are_skipped() {
        let d = tmpdir("bad");
        let p = d.join("rmtab");
        assert!(load(&p, Limits::default()).unwrap().is_empty());
        fs::write(
            &p,
            "garbage\n10.0.0.1:/ok:0x00000001\n:/nohost:0x1\nh:relative:0x1\n\nh2:/zero:0x00000000\nh3:/nocount\n",
        )
        .unwrap();
        let l = load(&p, Limits::default()).unwrap();
        assert_eq!(
            entries(&l),
            vec![
                ("10.0.0.1".into(), "/ok".into()),
                ("h3".into(), "/nocount".into())
            ]
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn persister_writes_changes_and_final_state() {
        let d = tmpdir("persist");
        let p = d.join("rmtab");
        let l = Arc::new(MountList::new());
        let persister = spawn(l.clone(), p.clone()).unwrap();
        l.add("10.0.0.1", "/a");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !p.exists() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(fs::read_to_string(&p).unwrap(), "10.0.0.1:/a:0x00000001\n");
        l.add("10.0.0.2", "/b");
        l.remove("10.0.0.1", "/a");
        persister.flush_and_stop().unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "10.0.0.2:/b:0x00000001\n");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn persister_reports_a_failing_final_write() {
        let d = tmpdir("pfail");
        let l = Arc::new(MountList::new());
        let persister = spawn(l.clone(), d.join("missing/rmtab")).unwrap();
        l.add("h", "/a");
        assert!(persister.flush_and_stop().is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn persister_without_changes_does_not_write() {
        let d = tmpdir("idle");
        let p = d.join("rmtab");
        let persister = spawn(Arc::new(MountList::new()), p.clone()).unwrap();
        thread::sleep(Duration::from_millis(250));
        persister.flush_and_stop().unwrap();
        assert!(
            !p.exists(),
            "nothing changed since load: the file is left alone"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn store_into_missing_directory_fails_cleanly() {
        let d = tmpdir("missing");
        let p = d.join("no/such/dir/rmtab");
        assert!(store(&p, &MountList::new()).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
