//! Who may hold a TCP connection: a cap per client host and one in total, and, when the
//! total is reached, the eviction of the connection that has been idle longest.
//!
//! A plain global cap lets anyone who opens enough idle connections lock every other
//! client out (measured: 3000 idle connections from one host, then 0 of 5 NULL calls from
//! another host answered; NFS-Ganesha's issue #270 and CVE-2021-46828 are the same
//! attack). The per-host cap stops one host; eviction stops many: a new connection is
//! admitted by closing the one idle the longest, and a connection counts as idle only
//! between records, so a client in the middle of a call is never cut off for a newcomer.
//! A connection that takes too long over one record is closed by its own deadline (see
//! `tcp.rs`), so dribbling bytes does not make a connection busy forever.
//!
//! One mutex guards the registry: it is taken on accept, at the start and end of each
//! record, and on close — TCP is the slow path here (showmount, libnfs), and a lock-free
//! registry would buy nothing measurable.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The host already holds `max_per_host` connections.
    HostCap,
    /// The total is reached and no connection is idle to make room.
    AllBusy,
}

/// The registry of live TCP connections.
pub struct Admission {
    max_total: usize,
    max_per_host: usize,
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    per_host: HashMap<IpAddr, usize>,
    live: HashMap<u64, Live>,
}

struct Live {
    host: IpAddr,
    /// Since when the connection has waited between records; None while it is busy.
    idle_since: Option<Instant>,
    evict: Arc<Notify>,
}

/// What `admit` did to make room, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Host of the connection evicted to make room, if one was.
    pub evicted: Option<IpAddr>,
}

impl Admission {
    /// A registry admitting `max_total` connections, `max_per_host` of them per host.
    pub fn new(max_total: usize, max_per_host: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_host,
            inner: Mutex::new(Registry::default()),
        })
    }

    /// Admit a connection from `host`, evicting the connection idle longest when the total
    /// is reached. The ticket marks the connection busy until told otherwise.
    pub fn admit(self: &Arc<Self>, host: IpAddr) -> Result<(Ticket, Admitted), Refusal> {
        let mut reg = self.inner.lock();
        if reg.per_host.get(&host).copied().unwrap_or(0) >= self.max_per_host {
            return Err(Refusal::HostCap);
        }
        let mut evicted = None;
        if reg.live.len() >= self.max_total {
            let oldest = reg
                .live
                .iter()
                .filter_map(|(id, l)| l.idle_since.map(|since| (since, *id)))
                .min()
                .map(|(_, id)| id);
            let Some(id) = oldest else {
                return Err(Refusal::AllBusy);
            };
            // Out of the registry now, so the newcomer's slot is free at once; the task
            // sees the notification and closes its socket.
            if let Some(gone) = reg.remove(id) {
                gone.evict.notify_one();
                evicted = Some(gone.host);
            }
        }
        let id = reg.next_id;
        reg.next_id += 1;
        *reg.per_host.entry(host).or_default() += 1;
        let evict = Arc::new(Notify::new());
        reg.live.insert(
            id,
            Live {
                host,
                idle_since: None,
                evict: evict.clone(),
            },
        );
        let ticket = Ticket {
            id,
            admission: self.clone(),
            evict,
        };
        Ok((ticket, Admitted { evicted }))
    }

    /// Connections held now.
    pub fn len(&self) -> usize {
        self.inner.lock().live.len()
    }

    /// Whether no connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registry {
    fn remove(&mut self, id: u64) -> Option<Live> {
        let gone = self.live.remove(&id)?;
        if let Some(n) = self.per_host.get_mut(&gone.host) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(&gone.host);
            }
        }
        Some(gone)
    }
}

/// One admitted connection; dropping it frees its place.
pub struct Ticket {
    id: u64,
    admission: Arc<Admission>,
    evict: Arc<Notify>,
}

impl Ticket {
    /// The connection waits for its next record: it may be evicted from now on.
    pub fn idle(&self) {
        if let Some(l) = self.admission.inner.lock().live.get_mut(&self.id) {
            l.idle_since.get_or_insert_with(Instant::now);
        }
    }

    /// The connection is receiving or answering a record: it is not evicted.
    pub fn busy(&self) {
        if let Some(l) = self.admission.inner.lock().live.get_mut(&self.id) {
            l.idle_since = None;
        }
    }

    /// Resolves when the connection was evicted to admit another.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.inner.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn per_host_cap_then_room_again_after_close() {
        let a = Admission::new(10, 2);
        let (t1, _) = a.admit(ip(1)).unwrap();
        let (_t2, _) = a.admit(ip(1)).unwrap();
        assert_eq!(a.admit(ip(1)).err(), Some(Refusal::HostCap));
        assert!(a.admit(ip(2)).is_ok(), "another host is not affected");
        drop(t1);
        assert!(
            a.admit(ip(1)).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn full_evicts_the_longest_idle_and_never_a_busy_one() {
        let a = Admission::new(3, 3);
        let (t1, _) = a.admit(ip(1)).unwrap();
        let (t2, _) = a.admit(ip(2)).unwrap();
        let (t3, _) = a.admit(ip(3)).unwrap();
        assert_eq!(a.admit(ip(4)).err(), Some(Refusal::AllBusy), "all busy");
        t2.idle();
        std::thread::sleep(std::time::Duration::from_millis(2));
        t3.idle();
        let (t4, made_room) = a.admit(ip(4)).unwrap();
        assert_eq!(made_room.evicted, Some(ip(2)), "idle longest goes first");
        assert_eq!(a.len(), 3);
        // The evicted ticket's drop must not free a second place.
        drop(t2);
        assert_eq!(a.len(), 3);
        t1.idle();
        t1.busy();
        let (_t5, made_room) = a.admit(ip(5)).unwrap();
        assert_eq!(
            made_room.evicted,
            Some(ip(3)),
            "t1 is busy again, t3 is idle"
        );
        drop((t3, t4));
        assert_eq!(a.len(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn eviction_wakes_the_connection() {
        let a = Admission::new(1, 1);
        let (t1, _) = a.admit(ip(1)).unwrap();
        t1.idle();
        let (_t2, _) = a.admit(ip(2)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), t1.evicted())
            .await
            .expect("the evicted connection is told");
    }
}
