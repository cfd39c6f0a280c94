//! Kernel-stack data paths: UDP (batched, SO_REUSEPORT, one thread per worker) and TCP
//! (tokio, RPC record marking), both thin shells around a [`Responder`].
//!
//! The shells know nothing of MOUNT: they hand each RPC message, the peer's address and,
//! when asked for it, the peer's host name to a [`Responder`] and send back what it wrote.
//! `crate::service::MountService` is the responder that calls the protocol core; tests plug
//! in fakes.
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

pub mod admission;
pub mod limit;
pub mod tcp;
pub mod udp;

/// Receive buffer requested for each UDP socket.
pub const UDP_RECV_BUFFER: usize = 4 << 20;

/// Event counters of the shells, logged at exit.
#[derive(Debug, Default)]
pub struct Counters {
    /// UDP replies sent.
    pub udp_replies: AtomicU64,
    /// UDP replies whose list was truncated to fit a datagram.
    pub udp_truncated: AtomicU64,
    /// UDP datagrams answered with nothing (not a call, runt, oversize, send error).
    pub udp_dropped: AtomicU64,
    /// Calls that waited for a host-name lookup.
    pub name_lookups: AtomicU64,
    /// Calls dropped because the name-lookup queue was full.
    pub name_queue_full: AtomicU64,
    /// Calls handed off the fast path to wait for a handle from upstream (gateway mode).
    pub upstream_waits: AtomicU64,
    /// TCP connections accepted and served.
    pub tcp_connections: AtomicU64,
    /// Of those, the connections that have ended (open = accepted - closed).
    pub tcp_closed: AtomicU64,
    /// TCP connections closed at once: the total cap was reached and none was idle.
    pub tcp_refused: AtomicU64,
    /// TCP connections closed at once: the host held its cap of connections.
    pub tcp_refused_host: AtomicU64,
    /// Idle TCP connections closed to admit a new one at the total cap.
    pub tcp_evicted: AtomicU64,
    /// TCP connections closed because one record took longer than the record timeout.
    pub tcp_record_timeout: AtomicU64,
    /// TCP connections closed because a record exceeded the cap.
    pub tcp_oversize: AtomicU64,
    /// TCP replies sent.
    pub tcp_replies: AtomicU64,
    /// UDP calls dropped: their source prefix was over `--rate-limit`.
    pub udp_rate_limited_source: AtomicU64,
    /// UDP calls dropped: over `--rate-limit-global`.
    pub udp_rate_limited_global: AtomicU64,
    /// TCP calls made to wait: their source prefix was over `--rate-limit`.
    pub tcp_rate_delayed_source: AtomicU64,
    /// TCP calls made to wait: over `--rate-limit-global`.
    pub tcp_rate_delayed_global: AtomicU64,
}

impl Counters {
    /// Increment a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Log every counter at info level.
    pub fn log(&self) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        tracing::info!(
            udp_replies = get(&self.udp_replies),
            udp_truncated = get(&self.udp_truncated),
            udp_dropped = get(&self.udp_dropped),
            name_lookups = get(&self.name_lookups),
            name_queue_full = get(&self.name_queue_full),
            upstream_waits = get(&self.upstream_waits),
            tcp_connections = get(&self.tcp_connections),
            tcp_closed = get(&self.tcp_closed),
            tcp_refused = get(&self.tcp_refused),
            tcp_refused_host = get(&self.tcp_refused_host),
            tcp_evicted = get(&self.tcp_evicted),
            tcp_record_timeout = get(&self.tcp_record_timeout),
            tcp_oversize = get(&self.tcp_oversize),
            tcp_replies = get(&self.tcp_replies),
            udp_rate_limited_source = get(&self.udp_rate_limited_source),
            udp_rate_limited_global = get(&self.udp_rate_limited_global),
            tcp_rate_delayed_source = get(&self.tcp_rate_delayed_source),
            tcp_rate_delayed_global = get(&self.tcp_rate_delayed_global),
            "kernel-stack listener counters"
        );
    }
}

/// A socket for `addr`: an unspecified IPv6 address gets a dual-stack socket
/// (IPV6_V6ONLY off) so IPv4 clients arrive as IPv4-mapped peers on the same socket.
fn new_socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if let IpAddr::V6(ip) = addr.ip() {
        if ip.is_unspecified() {
            sock.set_only_v6(false)?;
        }
    }
    Ok(sock)
}

/// Where to bind: `addr` itself, unless it is the IPv6 wildcard on a host without IPv6
/// (disabled in the kernel or the namespace), where we fall back to 0.0.0.0 and say so.
pub fn effective_bind(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(ip) if ip.is_unspecified() => {
            match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)) {
                Ok(_) => addr,
                Err(e) => {
                    tracing::warn!(error = %e, "IPv6 unavailable, listening on IPv4 only (0.0.0.0)");
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                }
            }
        }
        _ => addr,
    }
}

/// Bind `count` UDP sockets to the same address with SO_REUSEPORT, so the kernel spreads
/// datagrams over the workers by flow hash. Port 0 picks a free port for the first socket
/// and binds the others to it; the caller learns it from `local_addr()`.
pub fn bind_udp_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let mut sockets: Vec<std::net::UdpSocket> = Vec::with_capacity(count.max(1));
    let mut target = addr;
    for _ in 0..count.max(1) {
        let sock = new_socket(target, Type::DGRAM, Protocol::UDP)?;
        sock.set_reuse_port(true)?;
        // A mount storm arrives as a burst: a deeper queue than the default (~200 KiB)
        // rides it out instead of dropping. Best effort (capped by net.core.rmem_max).
        if let Err(e) = sock.set_recv_buffer_size(UDP_RECV_BUFFER) {
            tracing::debug!(error = %e, "could not enlarge the UDP receive buffer");
        }
        if addr.ip().is_unspecified() {
            enable_pktinfo(&sock, addr.ip())?;
        }
        sock.bind(&target.into())?;
        let sock: std::net::UdpSocket = sock.into();
        target = sock.local_addr()?;
        sockets.push(sock);
    }
    Ok(sockets)
}

/// Ask for each datagram's destination address (IP_PKTINFO / IPV6_PKTINFO control
/// messages) so that replies leave from the address the client called, not whatever
/// address routing would pick on a multi-homed host (clients drop replies from another
/// address). Only needed on wildcard sockets; a dual-stack socket needs both options.
fn enable_pktinfo(sock: &Socket, ip: IpAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let set = |level: libc::c_int, name: libc::c_int| -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: a valid fd and a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // IPv4 packets on a dual-stack socket report IP_PKTINFO, IPv6 ones IPV6_PKTINFO.
    set(libc::IPPROTO_IP, libc::IP_PKTINFO)?;
    if ip.is_ipv6() {
        set(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
    }
    Ok(())
}

/// Bind a TCP listener (SO_REUSEADDR, so a restart does not wait out TIME_WAIT), in
/// non-blocking mode for tokio.
pub fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let sock = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

#[cfg(test)]
mod tests;
