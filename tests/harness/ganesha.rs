//! NFS-Ganesha as the real NFS server behind a gateway: NFS on 2049, its MOUNT on a port and
//! a private program of its own, beside a private rpcbind that xdp-mountd shares (the test
//! bed's [`testbed::Rpcbind`]: its mount namespace is the anchor every process of the
//! "server host" enters).

use crate::netns::NetPair;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Ganesha's MOUNT port in the tests.
pub const GANESHA_MNT_PORT: u16 = 20048;
/// Ganesha's private MOUNT program (keeps it out of our way in rpcbind).
pub const GANESHA_MNT_PROG: u32 = 400_005;
/// Ganesha's NFS port.
pub const NFS_PORT: u16 = 2049;

/// The private rpcbind the servers of a gateway test share ([`NetPair::start_rpcbind`]).
pub use testbed::Rpcbind as SharedRpcbind;

/// A running ganesha.nfsd exporting `dir` with `export_id`. Stopped on drop.
pub struct Ganesha {
    child: Option<Child>,
    /// Its log file.
    pub log: PathBuf,
}

/// Ganesha's configuration for the tests.
pub fn config(addr: std::net::IpAddr, dir: &std::path::Path, export_id: u32) -> String {
    let dir = dir.display();
    format!(
        "NFS_CORE_PARAM {{\n  NFS_Port = {NFS_PORT};\n  MNT_Port = {GANESHA_MNT_PORT};\n  \
         MNT_Program = {GANESHA_MNT_PROG};\n  Bind_addr = {addr};\n  Protocols = 3;\n  \
         Enable_NLM = false;\n  Enable_RQUOTA = false;\n}}\n\
         NFSv4 {{\n  Graceless = true;\n}}\n\
         EXPORT {{\n  Export_Id = {export_id};\n  Path = {dir};\n  Pseudo = {dir};\n  \
         Access_Type = RW;\n  Squash = No_Root_Squash;\n  Protocols = 3;\n  \
         Transports = UDP, TCP;\n  FSAL {{\n    Name = VFS;\n  }}\n}}\n"
    )
}

impl Ganesha {
    /// Start Ganesha beside `rpcbind` with Export_Id `export_id`; wait (bounded) until its
    /// MOUNT answers rpcinfo.
    pub fn start(
        pair: &NetPair,
        rpcbind: &SharedRpcbind,
        dir: &std::path::Path,
        export_id: u32,
    ) -> Ganesha {
        Ganesha::start_at(
            &pair.dir,
            rpcbind,
            dir,
            export_id,
            pair.srv_v4(),
            pair.srv_v4(),
        )
    }

    /// Start Ganesha beside `rpcbind` (in whatever namespace that runs), bound to `bind`
    /// (0.0.0.0: every address), its configuration and log in `scratch`; wait (bounded)
    /// until its MOUNT answers rpcinfo at `probe`.
    pub fn start_at(
        scratch: &std::path::Path,
        rpcbind: &SharedRpcbind,
        dir: &std::path::Path,
        export_id: u32,
        bind: std::net::IpAddr,
        probe: std::net::IpAddr,
    ) -> Ganesha {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conf = scratch.join(format!("ganesha-{seq}.conf"));
        std::fs::write(&conf, config(bind, dir, export_id))
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        let log = scratch.join(format!("ganesha-{seq}.log"));
        let pidfile = scratch.join(format!("ganesha-{seq}.pid"));
        let child = rpcbind
            .command()
            .args(["ganesha.nfsd", "-F", "-f"])
            .arg(&conf)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ganesha.nfsd");
        let mut g = Ganesha {
            child: Some(child),
            log,
        };
        let port = GANESHA_MNT_PORT.to_string();
        let prog = GANESHA_MNT_PROG.to_string();
        let addr = probe.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = rpcbind
                .run(&["rpcinfo", "-n", &port, "-u", &addr, &prog, "3"])
                .expect("running rpcinfo beside rpcbind")
                .status
                .success();
            if up {
                return g;
            }
            if let Some(Ok(Some(st))) = g.child.as_mut().map(|c| c.try_wait()) {
                panic!("ganesha.nfsd exited ({st}); log:\n{}", g.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "ganesha MOUNT not answering after 30 s; log:\n{}",
                g.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The child is nsenter, which forks ganesha.nfsd: signal both.
        let pid = child.id() as i32;
        // SAFETY: signalling our own child; ESRCH when gone is fine.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        kill_children(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_children(pid, libc::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Signal every child of `pid` (from /proc/PID/task/*/children).
fn kill_children(pid: i32, sig: i32) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in text
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: a child of our own child.
            unsafe { libc::kill(c, sig) };
        }
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        self.stop();
    }
}
