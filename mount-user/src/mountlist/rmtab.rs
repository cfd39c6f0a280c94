//! rmtab persistence of the mount list, in the nfs-utils format: one `host:dir:0x00000001`
//! line per entry. As nfs-utils does, ':' in the host (IPv6 addresses) is written as ';'.
//! nfs-utils writes dirs verbatim; we do too, and when reading we take the count from the
//! last ':' (nfs-utils takes the first), so a dir containing ':' round-trips here.
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{Limits, MountList};

/// rmtab load/store; see the module docs for the format.
pub struct Rmtab;

/// How often the persister looks for changes; writes are coalesced to at most one per tick.
const TICK: Duration = Duration::from_millis(100);

impl Rmtab {
    /// Read an rmtab file; a missing file is an empty list, a malformed line is logged
    /// (file:line) and skipped so a damaged file never prevents a restart.
    /// The list keeps `limits`: a huge or hostile file loads up to the caps.
    pub fn load(path: &Path, limits: Limits) -> io::Result<MountList> {
        match fs::read(path) {
            Ok(bytes) => Ok(Self::parse(
                &String::from_utf8_lossy(&bytes),
                &path.display().to_string(),
                limits,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(MountList::with_limits(limits)),
            Err(e) => Err(e),
        }
    }

    /// The mount list in rmtab `text` read from `origin`, within `limits`; a malformed line
    /// is logged (origin:line) and skipped.
    pub fn parse(text: &str, origin: &str, limits: Limits) -> MountList {
        let list = MountList::with_limits(limits);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(line) {
                Ok(Some((host, dir))) => {
                    list.add(&host, dir);
                }
                Ok(None) => {}
                Err(msg) => {
                    tracing::warn!("{origin}:{}: {msg}; line skipped", i + 1);
                }
            }
        }
        list
    }

    /// The file contents for `entries`.
    pub fn render(entries: &[(String, String)]) -> String {
        let mut out = String::new();
        for (host, dir) in entries {
            // A newline cannot be represented in this line format (nfs-utils has the same
            // limit); such an entry is left out rather than corrupting the file.
            if host.contains(['\n', '\r']) || dir.contains(['\n', '\r']) || host.is_empty() {
                tracing::warn!("mount list entry {host:?}:{dir:?} cannot be written to rmtab");
                continue;
            }
            out.push_str(&host.replace(':', ";"));
            out.push(':');
            out.push_str(dir);
            out.push_str(":0x00000001\n");
        }
        out
    }

    /// Write `list` to `path` atomically: temp file in the same directory, fsync, rename,
    /// fsync the directory. A crash leaves either the old or the new file, never a torn one.
    pub fn store(path: &Path, list: &MountList) -> io::Result<()> {
        let (_, entries) = list.snapshot();
        write_atomic(path, Self::render(&entries).as_bytes())
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
}

/// Parse one rmtab line into (host, dir); None for an entry whose count is 0 (unmounted).
fn parse_line(line: &str) -> Result<Option<(String, &str)>, String> {
    let (host, rest) = line
        .split_once(':')
        .ok_or_else(|| format!("malformed rmtab entry {line:?} (no ':')"))?;
    if host.is_empty() {
        return Err(format!("malformed rmtab entry {line:?} (empty host)"));
    }
    let (dir, count) = match rest.rsplit_once(':') {
        Some((dir, c)) => match parse_count(c) {
            Some(n) => (dir, n),
            // Not a count: the ':' belongs to the dir (nfs-utils writes dirs verbatim).
            None => (rest, 1),
        },
        None => (rest, 1),
    };
    if !dir.starts_with('/') {
        return Err(format!(
            "malformed rmtab entry {line:?} (dir is not absolute)"
        ));
    }
    // `render` cannot write a carriage return back; an entry loaded with one would be
    // served, then silently lost at the next write. (Found by the rmtab fuzz target.)
    if line.contains('\r') {
        return Err(format!(
            "malformed rmtab entry {line:?} (carriage return inside the line)"
        ));
    }
    if count == 0 {
        return Ok(None);
    }
    Ok(Some((host.replace(';', ":"), dir)))
}

/// strtol(.., 0)-style count: `0x` hex, leading-0 octal, or decimal.
fn parse_count(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
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

    #[test]
    fn what_loads_is_what_render_writes_back() {
        // The rmtab fuzz target's first find: a carriage return inside a line loaded, but
        // could not be written back.
        let text = "10.0.0.1:/s\r\rv:0x00000001\n10.0.0.2:/ok:0x00000001\nfd00;;1:/v6\n";
        let (_, entries) = Rmtab::parse(text, "t", Limits::default()).snapshot();
        assert_eq!(
            entries,
            vec![
                ("10.0.0.2".to_string(), "/ok".to_string()),
                ("fd00::1".to_string(), "/v6".to_string())
            ]
        );
        let (_, again) = Rmtab::parse(&Rmtab::render(&entries), "t", Limits::default()).snapshot();
        assert_eq!(again, entries);
    }

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
        Rmtab::store(&p, &l).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "10.0.0.1:/srv/a:0x00000001\n10.0.0.2:/srv/with:colon:0x00000001\nfd00;;1:/srv/b:0x00000001\n"
        );
        let back = Rmtab::load(&p, Limits::default()).unwrap();
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
        assert!(Rmtab::load(&p, Limits::default()).unwrap().is_empty());
        fs::write(
            &p,
            "garbage\n10.0.0.1:/ok:0x00000001\n:/nohost:0x1\nh:relative:0x1\n\nh2:/zero:0x00000000\nh3:/nocount\n",
        )
        .unwrap();
        let l = Rmtab::load(&p, Limits::default()).unwrap();
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
    fn unwritable_entries_are_left_out() {
        let text = Rmtab::render(&[("h".into(), "/a\nb".into()), ("h".into(), "/ok".into())]);
        assert_eq!(text, "h:/ok:0x00000001\n");
    }

    #[test]
    fn persister_writes_changes_and_final_state() {
        let d = tmpdir("persist");
        let p = d.join("rmtab");
        let l = Arc::new(MountList::new());
        let persister = Rmtab::spawn(l.clone(), p.clone()).unwrap();
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
        let persister = Rmtab::spawn(l.clone(), d.join("missing/rmtab")).unwrap();
        l.add("h", "/a");
        assert!(persister.flush_and_stop().is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn persister_without_changes_does_not_write() {
        let d = tmpdir("idle");
        let p = d.join("rmtab");
        let persister = Rmtab::spawn(Arc::new(MountList::new()), p.clone()).unwrap();
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
        assert!(Rmtab::store(&p, &MountList::new()).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
