//! Packet capture with tshark inside one of the pair's namespaces.

use crate::netns::NetPair;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A running tshark capture; [`Capture::stop`] (or Drop) ends it and flushes the file.
pub struct Capture {
    child: Child,
    /// The pcapng file being written.
    pub path: PathBuf,
}

impl NetPair {
    /// Starts `tshark -i IFACE -f FILTER -w FILE` in namespace `ns` (self.srv or self.cli)
    /// and waits until dumpcap really captures ("Capture started"; "Capturing on" comes
    /// earlier, before packets are seen).
    pub fn capture(&self, ns: &str, iface: &str, filter: &str, file: &str) -> Capture {
        let path = self.dir.join(file);
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "tshark", "-q", "-i", iface, "-w"])
            .arg(&path)
            .args(["-f", filter])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tshark");
        let err = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                log2.lock().unwrap().push_str(&format!("{l}\n"));
                if l.contains("Capture started") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(15)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tshark did not start capturing within 15 s:\n{}",
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        Capture { child, path }
    }
}

impl Capture {
    /// Stops the capture (SIGINT lets tshark flush) and returns the file.
    pub fn stop(mut self) -> PathBuf {
        self.finish();
        self.path.clone()
    }

    fn finish(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.finish();
        }
    }
}

/// `tshark -r FILE -d udp.port==PORT,rpc -d tcp.port==PORT,rpc [OPTS] -Y FILTER [-T fields
/// -e F...]`: the matching frames (one line each).
pub fn tshark_read(file: &Path, port: u16, opts: &[&str], filter: &str, fields: &[&str]) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args([
        "-d",
        &format!("udp.port=={port},rpc"),
        "-d",
        &format!("tcp.port=={port},rpc"),
    ]);
    cmd.args(opts).args(["-Y", filter]);
    if !fields.is_empty() {
        cmd.args(["-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
    }
    let out = cmd.output().expect("tshark -r");
    assert!(
        out.status.success(),
        "tshark -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
