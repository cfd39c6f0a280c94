//! The kernel-stack UDP path: N worker threads, each with its own socket bound to the
//! same port (SO_REUSEPORT spreads flows over them), receiving and sending in batches.
//!
//! Batching uses recvmmsg/sendmmsg directly through libc because neither std, socket2
//! nor tokio offers them; one system call per 32 datagrams instead of one per datagram
//! is most of the cost difference on a small-request service like MOUNT.
//!
//! Replies are capped at [`UDP_MAX_MESSAGE`] bytes, the UDPMSGSIZE of the classic Sun RPC
//! implementation that nfs-utils' mountd uses: clients are built to accept that much in a
//! datagram, and it stays well below the 65507-byte UDP limit so no reply relies on large
//! IP fragment trains. The core truncates EXPORT/DUMP lists at an entry boundary to fit;
//! TCP carries the full lists.
//!
//! Calls that need the client's host name (a `*.domain` rule) go to a small pool of
//! resolver threads over a bounded queue, so a slow DNS server never stalls a worker; so do
//! calls that wait for a handle from upstream (gateway mode).
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::limit::{Gate, Shell};
use super::Counters;
use crate::log_throttle::LogThrottle;
use crate::service::names::NameCache;
use crate::service::{answer_deferred, Answer, Responder};

/// Largest UDP reply (and request) we handle, in bytes (Sun RPC's UDPMSGSIZE).
pub const UDP_MAX_MESSAGE: usize = 8800;
/// Datagrams per recvmmsg/sendmmsg call.
pub const BATCH: usize = 32;
/// How often a blocked worker wakes up to look at the stop flag.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// Calls waiting for a host-name lookup, at most; more are dropped (clients retry).
pub const NAME_QUEUE: usize = 256;
/// Control buffer per datagram, in u64 words: an IPv4 datagram on a dual-stack socket
/// brings both IPV6_PKTINFO (mapped) and IP_PKTINFO (64 bytes together).
const CONTROL_WORDS: usize = 16;
/// Threads doing host-name lookups for the UDP path.
pub const RESOLVER_THREADS: usize = 2;

/// A call parked until the peer's host name is known.
struct NameJob {
    request: Vec<u8>,
    peer: SocketAddr,
    /// The pktinfo to send the reply with (see [`reply_source`]).
    source: Option<Control>,
}

/// A control-message buffer and its used length.
#[derive(Clone, Copy)]
struct Control {
    words: [u64; CONTROL_WORDS],
    len: usize,
}

/// Everything a worker or resolver thread shares.
#[derive(Clone)]
struct Shared {
    responder: Arc<dyn Responder>,
    names: Arc<NameCache>,
    counters: Arc<Counters>,
    queue_full_log: Arc<LogThrottle>,
    /// The rate limits, when configured.
    gate: Option<Arc<Gate>>,
}

/// Running UDP workers; [`stop`](Self::stop) ends them.
pub struct UdpServer {
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl UdpServer {
    /// Start one worker thread per socket (sockets from [`super::bind_udp_group`]); calls
    /// over the limits of `gate` are dropped.
    pub fn start(
        sockets: Vec<UdpSocket>,
        responder: Arc<dyn Responder>,
        names: Arc<NameCache>,
        counters: Arc<Counters>,
        gate: Option<Arc<Gate>>,
    ) -> io::Result<Self> {
        let shared = Shared {
            responder,
            names,
            counters,
            queue_full_log: Arc::new(LogThrottle::new(Duration::from_secs(10))),
            gate,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let first = sockets
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no UDP socket"))?;
        // Any socket of the group can send the late replies: they share the local address.
        let reply_socket = Arc::new(first.try_clone()?);
        let (jobs, queue) = crossbeam_channel::bounded(NAME_QUEUE);
        for i in 0..RESOLVER_THREADS {
            let (queue, socket, shared) = (queue.clone(), reply_socket.clone(), shared.clone());
            // Not joined at stop: a thread may sit in a DNS timeout; each exits once the
            // workers (the senders) are gone and the queue is drained.
            std::thread::Builder::new()
                .name(format!("udp-resolve-{i}"))
                .spawn(move || resolver(queue, &socket, &shared))?;
        }
        let mut workers = Vec::with_capacity(sockets.len());
        for (i, socket) in sockets.into_iter().enumerate() {
            socket.set_read_timeout(Some(RECV_TIMEOUT))?;
            let worker = Worker {
                socket,
                shared: shared.clone(),
                jobs: jobs.clone(),
                stop: stop.clone(),
            };
            workers.push(
                std::thread::Builder::new()
                    .name(format!("udp-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Self { workers, stop })
    }

    /// Ask the workers to stop and wait for them (at most about [`RECV_TIMEOUT`]).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            if w.join().is_err() {
                tracing::error!("a UDP worker panicked");
            }
        }
    }
}

struct Worker {
    socket: UdpSocket,
    shared: Shared,
    jobs: Sender<NameJob>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(self) {
        const M: usize = UDP_MAX_MESSAGE;
        let fd = self.socket.as_raw_fd();
        let mut rx = vec![0u8; BATCH * M];
        let mut tx = vec![0u8; BATCH * M];
        // The kernel and we both reach the buffers through these pointers only, taken once,
        // so no later `&mut` borrow of the vectors invalidates pointers handed out before.
        let rx_base = rx.as_mut_ptr();
        let tx_base = tx.as_mut_ptr();
        // SAFETY: a plain C struct; all-zero is a valid (empty) socket address.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        // SAFETY: a plain C struct; all-zero is a valid (null, empty) iovec.
        let mut rx_iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: a plain C struct; all-zero is a valid (empty) message header.
        let mut rx_hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        // SAFETY: as `rx_iov`.
        let mut tx_iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as `rx_hdr`.
        let mut tx_hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        // Control messages (destination address of each datagram, see `enable_pktinfo`);
        // u64 elements for cmsghdr alignment.
        let mut control: [[u64; CONTROL_WORDS]; BATCH] = [[0; CONTROL_WORDS]; BATCH];
        let error_log = LogThrottle::new(Duration::from_secs(10));

        while !self.stop.load(Ordering::Relaxed) {
            for i in 0..BATCH {
                rx_iov[i] = libc::iovec {
                    // SAFETY: slot i lies inside `rx` (BATCH * M bytes).
                    iov_base: unsafe { rx_base.add(i * M) }.cast(),
                    iov_len: M,
                };
                // SAFETY: all-zero is a valid msghdr.
                rx_hdr[i].msg_hdr = unsafe { zeroed() };
                rx_hdr[i].msg_hdr.msg_name = (&raw mut addrs[i]).cast();
                rx_hdr[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                rx_hdr[i].msg_hdr.msg_iov = &raw mut rx_iov[i];
                rx_hdr[i].msg_hdr.msg_iovlen = 1;
                rx_hdr[i].msg_hdr.msg_control = control[i].as_mut_ptr().cast();
                rx_hdr[i].msg_hdr.msg_controllen = size_of::<[u64; CONTROL_WORDS]>() as _;
                rx_hdr[i].msg_len = 0;
            }
            // MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first datagram, then take
            // whatever else is already queued without waiting.
            // SAFETY: every header points at live buffers of the sizes given above.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    rx_hdr.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    _ => {
                        if let Some(suppressed) = error_log.allow() {
                            tracing::warn!(error = %e, suppressed, "UDP receive failed");
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                continue;
            }
            let mut replies = 0;
            for i in 0..n as usize {
                let hdr = &rx_hdr[i];
                let len = hdr.msg_len as usize;
                let peer = sockaddr_to_std(&addrs[i]);
                let (Some(peer), false) = (peer, hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0)
                else {
                    // Unknown address family, or a datagram larger than any MOUNT call.
                    Counters::bump(&self.shared.counters.udp_dropped);
                    continue;
                };
                if let Some(gate) = &self.shared.gate {
                    // Counted and logged by the gate; a UDP client retransmits.
                    if gate
                        .check(peer.ip(), Shell::Udp, &self.shared.counters)
                        .is_err()
                    {
                        continue;
                    }
                }
                // SAFETY: slots i and `replies` lie inside `rx` and `tx`; the kernel wrote
                // `len` <= M bytes into slot i; nothing else references these slots now.
                let (request, out) = unsafe {
                    (
                        std::slice::from_raw_parts(rx_base.add(i * M), len),
                        std::slice::from_raw_parts_mut(tx_base.add(replies * M), M),
                    )
                };
                // Send from the address the call came to: reuse its pktinfo.
                let has_source = reply_source(&mut rx_hdr[i].msg_hdr);
                let source = has_source.then(|| Control {
                    words: control[i],
                    len: rx_hdr[i].msg_hdr.msg_controllen as usize,
                });
                let Some(len) = self.answer(request, peer, source.as_ref(), out) else {
                    continue;
                };
                tx_iov[replies] = libc::iovec {
                    iov_base: out.as_mut_ptr().cast(),
                    iov_len: len,
                };
                // SAFETY: all-zero is a valid msghdr.
                tx_hdr[replies].msg_hdr = unsafe { zeroed() };
                // The reply goes back to the address the call came from, as received.
                tx_hdr[replies].msg_hdr.msg_name = (&raw mut addrs[i]).cast();
                tx_hdr[replies].msg_hdr.msg_namelen = rx_hdr[i].msg_hdr.msg_namelen;
                tx_hdr[replies].msg_hdr.msg_iov = &raw mut tx_iov[replies];
                tx_hdr[replies].msg_hdr.msg_iovlen = 1;
                if has_source {
                    tx_hdr[replies].msg_hdr.msg_control = rx_hdr[i].msg_hdr.msg_control;
                    tx_hdr[replies].msg_hdr.msg_controllen = rx_hdr[i].msg_hdr.msg_controllen;
                }
                replies += 1;
            }
            send_batch(fd, &mut tx_hdr[..replies], &self.shared.counters);
        }
    }

    /// Answer one call into `out`; the reply length, or None when nothing is to be sent
    /// now (dropped, or parked for a name lookup).
    fn answer(
        &self,
        request: &[u8],
        peer: SocketAddr,
        source: Option<&Control>,
        out: &mut [u8],
    ) -> Option<usize> {
        let s = &self.shared;
        let answer = match s.responder.respond(request, peer, None, out) {
            Answer::NeedName => {
                Counters::bump(&s.counters.name_lookups);
                match s.names.cached(peer.ip()) {
                    Some(host) => s.responder.respond(request, peer, Some(&*host), out),
                    None => Answer::NeedName,
                }
            }
            other => other,
        };
        match answer {
            Answer::NeedName => {}
            Answer::NeedUpstream => Counters::bump(&s.counters.upstream_waits),
            other => return finish(other, peer, s),
        }
        let job = NameJob {
            request: request.to_vec(),
            peer,
            source: source.copied(),
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Counters::bump(&s.counters.name_queue_full);
                if let Some(suppressed) = s.queue_full_log.allow() {
                    tracing::warn!(%peer, suppressed, "lookup queue (names, upstream) full, dropping UDP call");
                }
            }
        }
        None
    }
}

/// The reply length of a final answer (one given with a name, or needing none).
fn finish(answer: Answer, peer: SocketAddr, s: &Shared) -> Option<usize> {
    match answer {
        Answer::Reply { len, truncated } => {
            if truncated {
                Counters::bump(&s.counters.udp_truncated);
                tracing::debug!(%peer, len, "list truncated to fit a UDP datagram");
            }
            Some(len)
        }
        Answer::Drop | Answer::NeedName | Answer::NeedUpstream => {
            Counters::bump(&s.counters.udp_dropped);
            None
        }
    }
}

/// Send every prepared reply; a datagram the kernel refuses is counted and skipped.
fn send_batch(fd: libc::c_int, hdrs: &mut [libc::mmsghdr], counters: &Counters) {
    let mut sent = 0;
    while sent < hdrs.len() {
        let rest = &mut hdrs[sent..];
        // SAFETY: the headers point at live reply buffers and peer addresses.
        let rc = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as u32, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // sendmmsg fails only when the first message fails: skip that one.
            tracing::debug!(error = %e, "UDP send failed");
            Counters::bump(&counters.udp_dropped);
            sent += 1;
        } else {
            counters.udp_replies.fetch_add(rc as u64, Ordering::Relaxed);
            sent += rc as usize;
        }
    }
}

/// Turn the received pktinfo control message of `hdr` into the one to send the reply
/// with, as libtirpc's svc_dg does: keep the destination address as source, clear the
/// interface index so routing picks the way out. False when there is none to use.
fn reply_source(hdr: &mut libc::msghdr) -> bool {
    if hdr.msg_controllen == 0 || hdr.msg_flags & libc::MSG_CTRUNC != 0 {
        return false;
    }
    let mut found = false;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed
    // control messages; the CMSG_* helpers stay within them.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = data.cast::<libc::in_pktinfo>();
                    let mut v = info.read_unaligned();
                    v.ipi_ifindex = 0;
                    v.ipi_spec_dst = v.ipi_addr;
                    info.write_unaligned(v);
                    found = true;
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = data.cast::<libc::in6_pktinfo>();
                    let mut v = info.read_unaligned();
                    // Keep the interface of a link-local destination: without it the
                    // source address is ambiguous.
                    if !is_link_local(&v.ipi6_addr.s6_addr) {
                        v.ipi6_ifindex = 0;
                    }
                    info.write_unaligned(v);
                    found = true;
                }
                // Nothing else was asked for; never echo anything unknown back.
                _ => return false,
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    found
}

fn is_link_local(addr: &[u8; 16]) -> bool {
    addr[0] == 0xfe && addr[1] & 0xc0 == 0x80
}

/// Resolver thread: look the name up, answer again, send from the shared socket.
fn resolver(queue: Receiver<NameJob>, socket: &UdpSocket, s: &Shared) {
    let mut out = vec![0u8; UDP_MAX_MESSAGE];
    while let Ok(job) = queue.recv() {
        let answer = answer_deferred(&*s.responder, &s.names, &job.request, job.peer, &mut out);
        if let Some(len) = finish(answer, job.peer, s) {
            match send_from(socket, &out[..len], job.peer, job.source) {
                Ok(_) => Counters::bump(&s.counters.udp_replies),
                Err(e) => {
                    tracing::debug!(peer = %job.peer, error = %e, "UDP send failed");
                    Counters::bump(&s.counters.udp_dropped);
                }
            }
        }
    }
}

/// Send one datagram to `peer`, from the address in `source` when there is one.
fn send_from(
    socket: &UdpSocket,
    buf: &[u8],
    peer: SocketAddr,
    source: Option<Control>,
) -> io::Result<()> {
    let Some(mut source) = source else {
        return socket.send_to(buf, peer).map(drop);
    };
    let addr = socket2::SockAddr::from(peer);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = addr.as_ptr().cast_mut().cast();
    msg.msg_namelen = addr.len();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = source.words.as_mut_ptr().cast();
    msg.msg_controllen = source.len as _;
    // SAFETY: msg points at live address, data and control buffers of the lengths given;
    // the kernel only reads them.
    let rc = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Convert a kernel-filled socket address; None for families other than IPv4/IPv6.
fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage,
            // which is large and aligned enough for any socket address.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6 (family AF_INET6).
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
