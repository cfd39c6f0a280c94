//! Our registrations with the local rpcbind: made at start, removed at exit, and watched in
//! between. rpc.mountd removes every program 100005 registration when it starts and stops,
//! Ganesha re-registers 100005 at start, and a restarted rpcbind forgets everyone: the
//! watch asks rpcbind every interval where MOUNT is and registers again when it is not us.
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mount_proto::mount::{MOUNT_PROGRAM, VERSIONS as MOUNT_VERSIONS};
use mount_proto::rpc::pmap::{IPPROTO_TCP, IPPROTO_UDP};
use mount_user::portmap;
use mount_user::rpcbind::{self, Rpcbind, RpcbindError};

/// How long one check waits for rpcbind.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// The watch sleeps in steps this long, so stopping it is quick.
const STEP: Duration = Duration::from_millis(100);

/// Register with rpcbind; true when rpcbind was reached (so we unregister at exit).
pub fn register(ip: IpAddr, port: u16) -> bool {
    let endpoints = rpcbind::endpoints(ip, port);
    let mut rpcb = match Rpcbind::connect_default() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "rpcbind not reachable, not registering");
            return false;
        }
    };
    match rpcb.register(MOUNT_PROGRAM, &MOUNT_VERSIONS, &endpoints) {
        Ok(n) => {
            tracing::info!(
                port,
                registrations = n,
                via = rpcb.transport_name(),
                "registered with rpcbind"
            );
            true
        }
        Err(RpcbindError::Unreachable(e)) => {
            tracing::warn!(error = %e, "rpcbind not reachable, not registering");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "rpcbind registration failed; serving without it");
            true
        }
    }
}

/// Remove our registrations at exit.
pub fn unregister() {
    let result =
        Rpcbind::connect_default().and_then(|mut r| r.unregister(MOUNT_PROGRAM, &MOUNT_VERSIONS));
    match result {
        Ok(()) => tracing::info!("unregistered from rpcbind"),
        Err(e) => tracing::warn!(error = %e, "unregistering from rpcbind failed"),
    }
}

/// The running watch.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// Check every `interval` that rpcbind maps every MOUNT version, UDP and TCP, to `port`;
    /// count restorations into `restored`.
    pub fn start(
        ip: IpAddr,
        port: u16,
        interval: Duration,
        restored: Arc<AtomicU64>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r) = (stop.clone(), restored.clone());
        let thread = std::thread::Builder::new()
            .name("rpcbind-watch".into())
            .spawn(move || watch(ip, port, interval, &s, &r))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop watching (before unregistering, so the watch does not put us back).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(ip: IpAddr, port: u16, interval: Duration, stop: &AtomicBool, restored: &AtomicU64) {
    let steps = (interval.as_millis() / STEP.as_millis()).max(1);
    let mut unreachable_logged = false;
    'outer: loop {
        for _ in 0..steps {
            if stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            std::thread::sleep(STEP);
        }
        match missing(ip, port) {
            Ok(None) => unreachable_logged = false,
            Ok(Some(what)) => {
                tracing::warn!(
                    port,
                    missing = %what,
                    "our rpcbind registration is gone (rpc.mountd or Ganesha started or stopped, or rpcbind restarted): registering again"
                );
                if register(ip, port) {
                    restored.fetch_add(1, Ordering::Relaxed);
                }
                unreachable_logged = false;
            }
            Err(e) if !unreachable_logged => {
                tracing::warn!(error = %e, "cannot check our rpcbind registration (rpcbind down?); will keep trying");
                unreachable_logged = true;
            }
            Err(_) => {}
        }
    }
}

/// None when every version is registered on `port` over UDP and TCP; else what is missing.
/// Only the IPv4 netids are checked (portmapper v2 knows no others); a service bound to
/// an IPv6 address only has none, and is not checked.
fn missing(ip: IpAddr, port: u16) -> Result<Option<String>, portmap::GetportError> {
    let endpoints = rpcbind::endpoints(ip, port);
    let netids = [(IPPROTO_UDP, "udp"), (IPPROTO_TCP, "tcp")];
    let listed = portmap::dump(IpAddr::V4(Ipv4Addr::LOCALHOST), CHECK_TIMEOUT)?;
    for vers in MOUNT_VERSIONS {
        for (prot, name) in netids {
            if !endpoints.iter().any(|e| e.netid == name) {
                continue;
            }
            let there = listed.iter().any(|m| {
                (m.prog, m.vers, m.prot, m.port) == (MOUNT_PROGRAM, vers, prot, u32::from(port))
            });
            if !there {
                return Ok(Some(format!("no v{vers}/{name} on port {port}")));
            }
        }
    }
    Ok(None)
}
