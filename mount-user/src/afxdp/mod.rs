//! The AF_XDP data path: UDP MOUNT calls steered by the XDP program into one AF_XDP
//! socket per rx queue, answered by one pinned worker per socket, in place.
//!
//! Threads: one worker per queue (pinned with `core_affinity`, `--cores` or core
//! `queue % CPUs`), each owning its socket, UMEM and four rings outright, so the path
//! from RX descriptor to TX descriptor takes no lock and allocates nothing; one
//! name-lookup thread for calls that need the client's host name (`*.domain` rules).
//!
//! UMEM: per socket (not shared), [`xsk::FRAMES`] chunks of [`xsk::FRAME_SIZE`] bytes;
//! rings of [`xsk::RING_SIZE`]; the reply is written into the request's own chunk and
//! transmitted from there. Replies larger than the MTU leave through the kernel UDP
//! socket bound on the same port (it fragments), never truncated, never dropped.
//!
//! Ring layer: hand-written over libc ([`xsk`] says why neither `xdpilone` nor `xdp`).
//!
//! Lifecycle: sockets are bound first, then the program is attached steering nothing,
//! the sockets are registered in the XSKMAP, the workers start, and only then is the
//! port steered. [`Datapath::shutdown`] reverses it: stop steering (set_port(0)), let the
//! workers drain, unregister, detach.
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use parking_lot::Mutex;

use mount_ebpf::Config;

use crate::log_throttle::LogThrottle;
use crate::ratelimit::RateLimits;
use crate::service::names::NameCache;
use crate::service::Responder;
use crate::stats::calls::CALL_SLOTS;
use crate::stats::{QueueReport, XdpReport};
use mount_xdp::ebpf::{XdpAttachment, XdpMode};
use mount_xdp::rx_queue_count;
use mount_xdp::xsk::{self, BindMode, Xsk};

mod answer;
mod counters;
pub mod mnt_answers;
mod program_answers;
pub mod worker;

use worker::{QueueCounters, Shared, Worker};

/// Calls waiting for a host-name lookup, at most (more are dropped; clients retry).
const LOOKUP_QUEUE: usize = 256;
/// How long a worker may take to start (pin, fill its ring).
const WORKER_START: Duration = Duration::from_secs(10);
/// Time for frames already redirected when steering stops to reach the workers.
const STEER_OFF_GRACE: Duration = Duration::from_millis(50);

/// What to start.
#[derive(Debug, Clone)]
pub struct DatapathConfig {
    /// The interface to attach to.
    pub iface: String,
    /// Native or generic XDP.
    pub mode: XdpMode,
    /// The UDP port to steer (the MOUNT port the kernel socket is bound to).
    pub port: u16,
    /// Queues to serve (0..queues); None: the interface's RX queue count.
    pub queues: Option<u32>,
    /// Cores to pin the workers to, by queue; None: core `queue % CPUs`.
    pub cores: Option<Vec<usize>>,
    /// Rate limits the XDP program applies before steering.
    pub limits: RateLimits,
    /// Busy-poll the queue for up to this many µs after a batch before sleeping; 0: off.
    pub busy_poll_us: u32,
    /// Let the XDP program answer MOUNT NULL itself (docs/xdp-answers.md).
    pub answers: bool,
}

/// One queue as seen from outside its worker.
struct QueueHandle {
    queue: u32,
    core: Option<usize>,
    mode: BindMode,
    fd: Arc<OwnedFd>,
    counters: Arc<QueueCounters>,
}

/// The running data path. Dropping it shuts it down.
pub struct Datapath {
    attachment: Arc<Mutex<Option<XdpAttachment>>>,
    /// `--xdp-answers on` and the program may answer some family.
    answers: bool,
    queues: Vec<QueueHandle>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    iface: String,
    mode: XdpMode,
}

impl Datapath {
    /// Binds the sockets, attaches the program, starts the workers, steers `config.port`.
    /// `kernel` is (a clone of) the kernel UDP socket on that port.
    pub fn start(
        config: &DatapathConfig,
        responder: Arc<dyn Responder>,
        names: Arc<NameCache>,
        kernel: UdpSocket,
    ) -> anyhow::Result<Datapath> {
        let iface = config.iface.as_str();
        let ifindex = if_index(iface)?;
        let queue_count = match config.queues {
            Some(n) => n,
            None => rx_queue_count(iface)?,
        };
        if queue_count == 0 {
            bail!("--queues must be at least 1");
        }
        let mtu = read_sys(iface, "mtu")?;
        let cores = core_plan(queue_count, config.cores.as_deref())?;

        // The program first: attaching is what refuses a second instance clearly. It
        // steers nothing until every socket is registered and its worker runs.
        // The answer bits already at load (port 0 steers, so answers, nothing yet): the
        // loader sizes the MNT map from them.
        let local = kernel
            .local_addr()
            .context("the kernel UDP socket's address")?
            .ip();
        let bits = if config.answers {
            program_answers::families(local)
        } else {
            0
        };
        let mut attachment = XdpAttachment::attach_with(
            iface,
            config.mode,
            config
                .limits
                .xdp_config(Config::for_port(0).with_answers(bits)),
            config.limits.xdp_source_entries(),
        )?;
        let mut sockets = Vec::with_capacity(queue_count as usize);
        for queue in 0..queue_count {
            // Zero-copy needs a driver-mode program; generic XDP always copies.
            let xsk = Xsk::open(ifindex, queue, config.mode == XdpMode::Native)
                .map_err(|e| explain_bind_error(e, iface, queue))?;
            // One sendto() or poll() for a whole batch of replies, where the kernel lets us.
            let tx_budget = match xsk.set_tx_budget(xsk::RING_SIZE) {
                Ok(()) => xsk::RING_SIZE,
                Err(e) => {
                    tracing::debug!(queue, error = %e, "TX budget stays at the kernel's default");
                    xsk::DEFAULT_TX_BUDGET
                }
            };
            if config.busy_poll_us > 0 {
                xsk.set_busy_poll(config.busy_poll_us, worker::BATCH as u16)
                    .with_context(|| format!("busy polling on {iface} queue {queue}"))?;
            }
            tracing::info!(
                iface,
                queue,
                bind = xsk.mode().as_str(),
                "AF_XDP socket bound"
            );
            sockets.push((xsk, tx_budget));
        }
        for (queue, (xsk, _)) in (0..).zip(&sockets) {
            attachment.register_socket(queue, &*xsk.fd())?;
        }

        let (lookups, lookup_queue) = crossbeam_channel::bounded(LOOKUP_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        if config.answers {
            program_answers::enable(&mut attachment, local, bits)?;
        }
        let kernel = Arc::new(kernel);
        {
            let (responder, names, kernel) = (responder.clone(), names.clone(), kernel.clone());
            // Not joined: it may sit in a DNS timeout; it ends when the workers (holding
            // the only senders) are gone.
            std::thread::Builder::new()
                .name("xdp-resolve".into())
                .spawn(move || worker::resolver(lookup_queue, &*responder, &names, &kernel))
                .context("starting the name-lookup thread")?;
        }
        let shared = Arc::new(Shared {
            responder,
            names,
            lookups,
            kernel,
            mtu,
            local,
            stop: stop.clone(),
            errors: LogThrottle::new(Duration::from_secs(10)),
        });
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let mut queues = Vec::with_capacity(sockets.len());
        let mut workers = Vec::with_capacity(sockets.len());
        for ((queue, (xsk, tx_budget)), core) in (0..).zip(sockets).zip(cores) {
            let counters = Arc::new(QueueCounters::default());
            queues.push(QueueHandle {
                queue,
                core: core.map(|c| c.id),
                mode: xsk.mode(),
                fd: xsk.fd(),
                counters: counters.clone(),
            });
            let worker = Worker {
                poll_tx: worker::PollTx::new(xsk.mode()),
                tx_budget,
                busy_poll: (config.busy_poll_us > 0)
                    .then(|| Duration::from_micros(u64::from(config.busy_poll_us))),
                xsk,
                queue,
                core,
                counters,
                shared: shared.clone(),
                ready: ready_tx.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("xsk-{queue}"))
                .spawn(move || worker.run());
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(anyhow!(e).context("starting an AF_XDP worker"));
                }
            }
        }
        // Steer only once every worker has frames in its fill ring: a call redirected to
        // a socket with an empty fill ring is dropped by the kernel.
        for _ in 0..queue_count {
            if ready.recv_timeout(WORKER_START).is_err() {
                stop.store(true, Ordering::Relaxed);
                bail!("an AF_XDP worker did not start within {WORKER_START:?}");
            }
        }
        if let Err(e) = attachment.set_port(config.port) {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        tracing::info!(
            iface,
            mode = config.mode.as_str(),
            queues = queue_count,
            port = config.port,
            mtu,
            "AF_XDP data path running"
        );
        Ok(Datapath {
            attachment: Arc::new(Mutex::new(Some(attachment))),
            answers: bits != 0,
            queues,
            workers: Mutex::new(workers),
            stop,
            iface: iface.to_owned(),
            mode: config.mode,
        })
    }

    /// With answers on: lets the program answer MNT of export roots the mount list holds
    /// (see [`mnt_answers`]); a no-op otherwise.
    pub fn answer_mnt(
        &self,
        exports: Arc<crate::exports::SharedExports>,
        mounts: &mount_proto::mountlist::MountList,
        gateway: bool,
    ) -> anyhow::Result<()> {
        if !self.answers {
            return Ok(());
        }
        let hook =
            mnt_answers::MntAnswers::start(self.attachment.clone(), exports.clone(), gateway)?;
        if mounts
            .set_presence_hook(Box::new(mnt_answers::Hook(hook.clone())))
            .is_err()
        {
            bail!("the mount list already has a presence hook");
        }
        if exports.on_swap(Box::new(move || hook.reloaded())).is_err() {
            bail!("the exports already have a swap hook");
        }
        tracing::info!("the XDP program answers MNT of export roots it has seen recorded");
        Ok(())
    }

    /// Stops steering, drains the workers, unregisters the sockets and detaches the
    /// program. Idempotent.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        let Some(mut attachment) = self.attachment.lock().take() else {
            return Ok(());
        };
        // From here on new calls go to the kernel UDP socket.
        let steer_off = attachment.set_port(0);
        std::thread::sleep(STEER_OFF_GRACE);
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.lock().drain(..) {
            if worker.join().is_err() {
                tracing::error!("an AF_XDP worker panicked");
            }
        }
        for q in &self.queues {
            if let Err(e) = attachment.unregister_socket(q.queue) {
                tracing::warn!("{e:#}");
            }
        }
        let detached = attachment.detach();
        steer_off.and(detached)
    }

    /// The XDP program's counters, summed over the CPUs (None once detached).
    pub fn program_counters(&self) -> Option<mount_xdp::ebpf::Counters> {
        match self.attachment.lock().as_ref().map(|a| a.counters()) {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                tracing::debug!("{e:#}");
                None
            }
            None => None,
        }
    }

    /// The kernel's run accounting of the program (None once detached or unreadable:
    /// a stats request never fails for it, the field is only absent).
    pub fn program_runs(&self) -> Option<crate::stats::ProgramRunsReport> {
        let runs = match self.attachment.lock().as_ref().map(|a| a.program_runs()) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tracing::debug!("{e:#}");
                return None;
            }
            None => return None,
        };
        Some(crate::stats::ProgramRunsReport {
            runs: runs.count,
            run_time_ns: runs.time_ns,
            bpf_stats_enabled: mount_xdp::ebpf::bpf_stats_enabled(),
        })
    }

    /// The per-queue, socket and program counters.
    pub fn report(&self) -> XdpReport {
        let program = self.program_counters().map_or_else(Vec::new, |c| {
            c.iter().map(|(k, v)| (k.name().to_owned(), v)).collect()
        });
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let queues = self
            .queues
            .iter()
            .map(|q| QueueReport {
                queue: q.queue,
                core: q.core,
                bind_mode: q.mode.as_str().to_owned(),
                rx: get(&q.counters.rx),
                tx: get(&q.counters.tx),
                dropped: get(&q.counters.dropped),
                via_kernel: get(&q.counters.via_kernel),
                name_lookups: get(&q.counters.name_lookups),
                truncated: get(&q.counters.truncated),
                xsk: xsk::statistics(q.fd.as_raw_fd()).ok(),
                batches: get(&q.counters.batches),
                polls: get(&q.counters.polls),
                tx_kicks: get(&q.counters.tx_kicks),
                fill_kicks: get(&q.counters.fill_kicks),
                busy_polls: get(&q.counters.busy_polls),
            })
            .collect();
        let mut latency = crate::stats::latency::LatencyReport::default();
        for q in &self.queues {
            q.counters.latency.add_to(&mut latency);
        }
        XdpReport {
            iface: self.iface.clone(),
            mode: self.mode.as_str().to_owned(),
            program,
            queues,
            latency,
            program_runs: self.program_runs(),
        }
    }

    /// Calls answered on this path by [`crate::stats::calls`] slot, summed over the
    /// workers.
    pub fn call_counts(&self) -> Vec<u64> {
        let mut out = vec![0; CALL_SLOTS];
        for q in &self.queues {
            q.counters.calls.add_to(&mut out);
        }
        out
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("{e:#}");
        }
    }
}

fn explain_bind_error(e: std::io::Error, iface: &str, queue: u32) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EBUSY) => {
            " (another AF_XDP socket already owns this queue: another xdp-mountd or XDP user?)"
        }
        Some(libc::EINVAL) => " (no such queue? see --queues)",
        _ => "",
    };
    anyhow!("opening the AF_XDP socket of {iface} queue {queue}: {e}{hint}")
}

fn if_index(iface: &str) -> anyhow::Result<u32> {
    let name =
        std::ffi::CString::new(iface).map_err(|_| anyhow!("bad interface name {iface:?}"))?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no interface named {iface}");
    }
    Ok(index)
}

fn read_sys(iface: &str, file: &str) -> anyhow::Result<usize> {
    let path = format!("/sys/class/net/{iface}/{file}");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path}: not a number: {:?}", text.trim()))
}

/// Which core each queue's worker is pinned to.
fn core_plan(
    queues: u32,
    cores: Option<&[usize]>,
) -> anyhow::Result<Vec<Option<core_affinity::CoreId>>> {
    let available = core_affinity::get_core_ids().unwrap_or_default();
    match cores {
        Some(list) => {
            if list.len() < queues as usize {
                bail!(
                    "--cores lists {} cores for {queues} queues; give one per queue",
                    list.len()
                );
            }
            list.iter()
                .take(queues as usize)
                .map(|&id| {
                    if available.iter().any(|c| c.id == id) {
                        Ok(Some(core_affinity::CoreId { id }))
                    } else {
                        Err(anyhow!(
                            "--cores: core {id} is not available to this process"
                        ))
                    }
                })
                .collect()
        }
        None if available.is_empty() => Ok(vec![None; queues as usize]),
        None => Ok((0..queues as usize)
            .map(|q| Some(available[q % available.len()]))
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_plan_by_queue() {
        let avail = core_affinity::get_core_ids().unwrap_or_default();
        if avail.is_empty() {
            return;
        }
        let plan = core_plan(3, None).unwrap();
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0].map(|c| c.id), Some(avail[0].id));
        assert_eq!(plan[2].map(|c| c.id), Some(avail[2 % avail.len()].id));
        let first = avail[0].id;
        assert_eq!(
            core_plan(1, Some(&[first, 99_999])).unwrap()[0].map(|c| c.id),
            Some(first)
        );
        assert!(core_plan(2, Some(&[first])).is_err());
        assert!(core_plan(1, Some(&[99_999])).is_err());
    }

    #[test]
    fn unknown_interface_has_no_index() {
        assert!(if_index("no-such-if0").is_err());
    }
}
