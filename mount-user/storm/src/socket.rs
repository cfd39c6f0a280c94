//! Kernel-socket transports (no privileges needed): UDP with one connected socket per
//! client, batched with sendmmsg/recvmmsg; TCP with one connection per client, record
//! marking, calls pipelined up to the window.
//!
//! UDP sends each call as two iovecs, the slot's xid and the template after its xid, so
//! nothing is copied per call. Every socket is non-blocking; one `ppoll` waits on all.
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};

use mount_proto::rpc::record::{RecordReader, HEADER_LEN, LAST_FRAGMENT};

use super::engine::Transport;

/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 32;
/// Receive buffer per datagram; a longer reply is reported truncated.
pub const RX_BUF: usize = 16 * 1024;
/// Kernel socket buffers asked for (best effort, capped by rmem_max/wmem_max).
const SOCK_BUFFER: usize = 4 << 20;
/// Largest reply record accepted over TCP.
const MAX_RECORD: usize = 8 << 20;
/// Bytes read from a TCP connection at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Waits until one of `fds` is ready or `wait` passes; returns how many are ready.
pub(crate) fn ppoll(fds: &mut [libc::pollfd], wait: Duration) -> io::Result<usize> {
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a valid array of its length; `ts` lives across the call.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(rc as usize)
}

/// The wildcard address of `target`'s family (where the kernel picks the source).
fn any_of(target: &SocketAddr) -> IpAddr {
    match target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Source address of client `i`: the given addresses round robin, else the wildcard.
pub fn source_for(i: usize, sources: &[IpAddr], target: &SocketAddr) -> IpAddr {
    if sources.is_empty() {
        any_of(target)
    } else {
        sources[i % sources.len()]
    }
}

/// UDP: one connected socket per client.
pub struct UdpIo {
    socks: Vec<UdpSocket>,
    pfds: Vec<libc::pollfd>,
    /// Template messages (xid 0); the part after the xid is sent as is.
    templates: Vec<Vec<u8>>,
    /// Per client, queued (template, xid).
    pending: Vec<Vec<(u16, u32)>>,
    rx: Vec<u8>,
    send_errors: u64,
    error_logged: bool,
}

impl UdpIo {
    /// Opens `clients` sockets connected to `target`, bound to `sources` round robin.
    pub fn open(
        target: SocketAddr,
        clients: u32,
        sources: &[IpAddr],
        templates: Vec<Vec<u8>>,
    ) -> anyhow::Result<UdpIo> {
        let mut socks = Vec::with_capacity(clients as usize);
        for i in 0..clients as usize {
            let src = SocketAddr::new(source_for(i, sources, &target), 0);
            let sock = Socket::new(
                Domain::for_address(target),
                Type::DGRAM,
                Some(Protocol::UDP),
            )
            .context("creating a UDP socket")?;
            // Bursts of replies to a large window: a deep queue instead of drops.
            let _ = sock.set_recv_buffer_size(SOCK_BUFFER);
            let _ = sock.set_send_buffer_size(SOCK_BUFFER);
            sock.bind(&src.into())
                .with_context(|| format!("binding a UDP socket to {src}"))?;
            sock.connect(&target.into())
                .with_context(|| format!("connecting a UDP socket to {target}"))?;
            sock.set_nonblocking(true)?;
            socks.push(UdpSocket::from(sock));
        }
        let pfds = socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Ok(UdpIo {
            pfds,
            pending: vec![Vec::with_capacity(1024); socks.len()],
            socks,
            templates,
            rx: vec![0u8; BATCH * RX_BUF],
            send_errors: 0,
            error_logged: false,
        })
    }

    /// The local addresses of the sockets (the clients).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.socks
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Sends client `c`'s queue; stops at a full socket buffer.
    fn flush_client(&mut self, c: usize) {
        while !self.pending[c].is_empty() {
            let n = self.pending[c].len().min(BATCH);
            let mut xids = [[0u8; 4]; BATCH];
            // SAFETY: all-zero iovec/mmsghdr values are valid (null pointers, zero lengths).
            let mut iovs: [[libc::iovec; 2]; BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (i, &(t, xid)) in self.pending[c][..n].iter().enumerate() {
                xids[i] = xid.to_be_bytes();
                let body = self.templates[usize::from(t)].get(4..).unwrap_or(&[]);
                iovs[i] = [
                    libc::iovec {
                        iov_base: xids[i].as_mut_ptr().cast(),
                        iov_len: 4,
                    },
                    libc::iovec {
                        // sendmsg only reads through the pointer.
                        iov_base: body.as_ptr() as *mut libc::c_void,
                        iov_len: body.len(),
                    },
                ];
            }
            for i in 0..n {
                hdrs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
                hdrs[i].msg_hdr.msg_iovlen = 2;
            }
            // SAFETY: `hdrs[..n]` point at iovecs and buffers alive across the call.
            let rc = unsafe {
                libc::sendmmsg(
                    self.socks[c].as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                self.pending[c].drain(..rc as usize);
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => return,
                Some(libc::EINTR) => continue,
                _ => {
                    // E.g. ECONNREFUSED from an earlier ICMP port unreachable: this call
                    // is lost; the next ones may go.
                    if !self.error_logged {
                        self.error_logged = true;
                        tracing::warn!(error = %e, "UDP send failed (further errors only counted)");
                    }
                    self.send_errors += 1;
                    self.pending[c].remove(0);
                }
            }
        }
    }

    /// Reads every ready datagram of client `c`.
    fn recv_client(
        &mut self,
        c: usize,
        sink: &mut dyn FnMut(u32, &[u8], bool),
    ) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            // SAFETY: all-zero values are valid; pointers are filled in below.
            let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (i, chunk) in self.rx.chunks_exact_mut(RX_BUF).enumerate().take(BATCH) {
                iovs[i] = libc::iovec {
                    iov_base: chunk.as_mut_ptr().cast(),
                    iov_len: RX_BUF,
                };
            }
            for i in 0..BATCH {
                hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: each header points at its own RX_BUF chunk of `self.rx`.
            let rc = unsafe {
                libc::recvmmsg(
                    self.socks[c].as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(total),
                    // ICMP errors of earlier sends surface here on a connected socket.
                    Some(libc::ECONNREFUSED)
                    | Some(libc::EHOSTUNREACH)
                    | Some(libc::ENETUNREACH) => Ok(total),
                    _ => Err(anyhow::Error::new(e).context("receiving UDP replies")),
                };
            }
            let n = rc as usize;
            for (i, h) in hdrs.iter().enumerate().take(n) {
                let len = (h.msg_len as usize).min(RX_BUF);
                let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                let start = i * RX_BUF;
                sink(c as u32, &self.rx[start..start + len], truncated);
            }
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }
}

impl Transport for UdpIo {
    fn queue(&mut self, client: u32, template: u16, xid: u32) {
        if let Some(q) = self.pending.get_mut(client as usize) {
            q.push((template, xid));
        }
    }

    fn flush(&mut self) {
        for c in 0..self.socks.len() {
            self.flush_client(c);
        }
    }

    fn recv(
        &mut self,
        wait: Duration,
        sink: &mut dyn FnMut(u32, &[u8], bool),
    ) -> anyhow::Result<()> {
        for p in &mut self.pfds {
            p.revents = 0;
        }
        if ppoll(&mut self.pfds, wait)? == 0 {
            return Ok(());
        }
        for c in 0..self.socks.len() {
            if self.pfds[c].revents != 0 {
                self.recv_client(c, sink)?;
            }
        }
        Ok(())
    }

    fn send_errors(&self) -> u64 {
        self.send_errors
    }
}

/// One TCP connection of the generator.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    out_pos: usize,
    reader: RecordReader,
    dead: bool,
}

/// TCP: one connection per client, calls pipelined.
pub struct TcpIo {
    conns: Vec<Conn>,
    pfds: Vec<libc::pollfd>,
    /// Record mark + message (xid 0 at bytes 4..8).
    templates: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    send_errors: u64,
}

impl TcpIo {
    /// Opens `clients` connections to `target`, from `sources` round robin.
    pub fn open(
        target: SocketAddr,
        clients: u32,
        sources: &[IpAddr],
        templates: Vec<Vec<u8>>,
    ) -> anyhow::Result<TcpIo> {
        let mut conns = Vec::with_capacity(clients as usize);
        for i in 0..clients as usize {
            let sock = Socket::new(
                Domain::for_address(target),
                Type::STREAM,
                Some(Protocol::TCP),
            )
            .context("creating a TCP socket")?;
            if !sources.is_empty() {
                let src = SocketAddr::new(source_for(i, sources, &target), 0);
                sock.bind(&src.into())
                    .with_context(|| format!("binding a TCP socket to {src}"))?;
            }
            sock.connect_timeout(&target.into(), Duration::from_secs(3))
                .with_context(|| format!("connecting to {target} over TCP"))?;
            sock.set_tcp_nodelay(true)?;
            sock.set_nonblocking(true)?;
            conns.push(Conn {
                stream: TcpStream::from(sock),
                out: Vec::with_capacity(64 * 1024),
                out_pos: 0,
                reader: RecordReader::new(MAX_RECORD),
                dead: false,
            });
        }
        let templates = templates
            .into_iter()
            .map(|m| {
                let mut rec = ((m.len() as u32) | LAST_FRAGMENT).to_be_bytes().to_vec();
                rec.extend_from_slice(&m);
                rec
            })
            .collect();
        let pfds = conns
            .iter()
            .map(|c| libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Ok(TcpIo {
            conns,
            pfds,
            templates,
            scratch: vec![0u8; READ_CHUNK],
            send_errors: 0,
        })
    }

    fn kill(conn: &mut Conn, why: &dyn std::fmt::Display) {
        if !conn.dead {
            tracing::warn!(peer = ?conn.stream.peer_addr().ok(), "TCP connection lost: {why}");
        }
        conn.dead = true;
        conn.out.clear();
        conn.out_pos = 0;
    }

    fn flush_conn(conn: &mut Conn) {
        while conn.out_pos < conn.out.len() && !conn.dead {
            match conn.stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => Self::kill(conn, &"write returned 0"),
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => Self::kill(conn, &e),
            }
        }
        if conn.out_pos == conn.out.len() {
            conn.out.clear();
            conn.out_pos = 0;
        } else if conn.out_pos > 64 * 1024 {
            conn.out.drain(..conn.out_pos);
            conn.out_pos = 0;
        }
    }
}

impl Transport for TcpIo {
    fn queue(&mut self, client: u32, template: u16, xid: u32) {
        let Some(conn) = self.conns.get_mut(client as usize) else {
            return;
        };
        if conn.dead {
            self.send_errors += 1;
            return;
        }
        let at = conn.out.len() + HEADER_LEN;
        conn.out
            .extend_from_slice(&self.templates[usize::from(template)]);
        conn.out[at..at + 4].copy_from_slice(&xid.to_be_bytes());
    }

    fn flush(&mut self) {
        for conn in &mut self.conns {
            Self::flush_conn(conn);
        }
    }

    fn recv(
        &mut self,
        wait: Duration,
        sink: &mut dyn FnMut(u32, &[u8], bool),
    ) -> anyhow::Result<()> {
        for (p, c) in self.pfds.iter_mut().zip(&self.conns) {
            p.revents = 0;
            // A dead connection is not polled (negative fds are ignored).
            p.fd = if c.dead { -1 } else { c.stream.as_raw_fd() };
            p.events = if c.out_pos < c.out.len() {
                libc::POLLIN | libc::POLLOUT
            } else {
                libc::POLLIN
            };
        }
        if ppoll(&mut self.pfds, wait)? == 0 {
            return Ok(());
        }
        for (i, conn) in self.conns.iter_mut().enumerate() {
            let revents = self.pfds[i].revents;
            if revents & libc::POLLOUT != 0 {
                Self::flush_conn(conn);
            }
            if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
                continue;
            }
            loop {
                match conn.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        Self::kill(conn, &"closed by the server");
                        break;
                    }
                    Ok(n) => conn.reader.push(&self.scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        Self::kill(conn, &e);
                        break;
                    }
                }
            }
            loop {
                match conn.reader.next_record() {
                    Ok(Some(record)) => sink(i as u32, record, false),
                    Ok(None) => break,
                    Err(e) => {
                        Self::kill(conn, &e);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn send_errors(&self) -> u64 {
        self.send_errors
    }
}
