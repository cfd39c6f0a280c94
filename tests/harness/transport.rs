//! UDP and TCP (record-marking) clients for the hand-written RPC messages.
//!
//! Sockets belong to the network namespace of the thread that creates them, so these must be
//! constructed inside [`crate::NetPair::in_client`].

use crate::rpc::{Call, Reply};
use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Which source port a client socket binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrcPort {
    /// An ephemeral (≥ 1024) port chosen by the kernel.
    High,
    /// Some free port below 1024 (root only).
    Privileged,
    /// Exactly this port.
    Fixed(u16),
}

/// The transport a test runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// UDP datagrams.
    Udp,
    /// TCP with record marking.
    Tcp,
}

fn bind_socket(server: SocketAddr, ty: Type, proto: Protocol, src: SrcPort) -> Result<Socket> {
    let domain = if server.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let any = |port: u16| -> SocketAddr {
        if server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], port))
        } else {
            SocketAddr::from(([0u16; 8], port))
        }
    };
    let ports: Vec<u16> = match src {
        SrcPort::High => vec![0],
        SrcPort::Fixed(p) => vec![p],
        // Walk down from 1023 like bindresvport(3); tests in one namespace may hold some.
        SrcPort::Privileged => (600..1024).rev().collect(),
    };
    let mut last = None;
    for p in ports {
        let s = Socket::new(domain, ty, Some(proto))?;
        if ty == Type::STREAM {
            s.set_reuse_address(true)?;
        }
        match s.bind(&SockAddr::from(any(p))) {
            Ok(()) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    bail!("cannot bind a {src:?} source port: {last:?}")
}

/// A connected-in-spirit UDP client for one server address.
pub struct UdpClient {
    /// The socket (public so tests can send odd datagrams).
    pub sock: UdpSocket,
    /// Server address.
    pub server: SocketAddr,
}

impl UdpClient {
    /// Binds a socket with the requested source port kind.
    pub fn new(server: SocketAddr, src: SrcPort) -> Result<Self> {
        let s = bind_socket(server, Type::DGRAM, Protocol::UDP, src)?;
        let sock: UdpSocket = s.into();
        Ok(Self { sock, server })
    }

    /// Binds exactly `local` (address and port; port 0 = ephemeral).
    pub fn bind_to(server: SocketAddr, local: SocketAddr) -> Result<Self> {
        let sock = UdpSocket::bind(local).with_context(|| format!("bind {local}"))?;
        Ok(Self { sock, server })
    }

    /// Receives one datagram from anyone within `timeout`, with its source address.
    pub fn recv_any(&self, timeout: Duration) -> Result<Option<(Vec<u8>, SocketAddr)>> {
        let mut buf = vec![0u8; 70_000];
        self.sock.set_read_timeout(Some(timeout))?;
        match self.sock.recv_from(&mut buf) {
            Ok((n, from)) => Ok(Some((buf[..n].to_vec(), from))),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The local (source) port.
    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Sends raw bytes as one datagram.
    pub fn send(&self, data: &[u8]) -> Result<()> {
        self.sock.send_to(data, self.server)?;
        Ok(())
    }

    /// Receives one datagram from the server within `timeout`, or `None`.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 70_000];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.sock.set_read_timeout(Some(left))?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if from.port() == self.server.port() {
                        return Ok(Some(buf[..n].to_vec()));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends raw bytes and waits for the reply whose xid matches the first 4 bytes sent,
    /// retransmitting like a real client (3 tries, 2 s each).
    pub fn call_raw(&self, data: &[u8]) -> Result<Reply> {
        let xid = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        for _ in 0..3 {
            self.send(data)?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match self.recv(left)? {
                    Some(r) if r.len() >= 4 && r[..4] == xid.to_be_bytes() => {
                        return Reply::parse(&r)
                            .with_context(|| format!("parsing UDP reply {r:02x?}"));
                    }
                    Some(_) => continue,
                    None => break,
                }
            }
        }
        bail!("no UDP reply for xid {xid:#x} from {}", self.server)
    }

    /// Sends a call and returns the parsed reply.
    pub fn call(&self, call: &Call) -> Result<Reply> {
        self.call_raw(&call.encode())
    }
}

/// A TCP client speaking RPC record marking (RFC 5531 §11).
pub struct TcpClient {
    /// The stream (public so tests can write odd bytes).
    pub stream: TcpStream,
}

impl TcpClient {
    /// Connects from the requested source port kind.
    pub fn connect(server: SocketAddr, src: SrcPort) -> Result<Self> {
        let s = bind_socket(server, Type::STREAM, Protocol::TCP, src)?;
        s.connect_timeout(&SockAddr::from(server), Duration::from_secs(5))
            .with_context(|| format!("TCP connect to {server}"))?;
        let stream: TcpStream = s.into();
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self { stream })
    }

    /// Connects from `local` (an address of the client namespace, any port).
    pub fn connect_from(server: SocketAddr, local: std::net::IpAddr) -> Result<Self> {
        let domain = if server.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        s.bind(&SockAddr::from(SocketAddr::new(local, 0)))
            .with_context(|| format!("bind {local}"))?;
        s.connect_timeout(&SockAddr::from(server), Duration::from_secs(5))
            .with_context(|| format!("TCP connect to {server} from {local}"))?;
        let stream: TcpStream = s.into();
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self { stream })
    }

    /// Writes one record as a single last fragment.
    pub fn send_record(&mut self, msg: &[u8]) -> Result<()> {
        let mut buf = (0x8000_0000u32 | msg.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(msg);
        self.stream.write_all(&buf)?;
        Ok(())
    }

    /// Writes one record split into fragments of the given sizes (the last takes the rest),
    /// each fragment in its own write with a short pause, so the server sees them apart.
    pub fn send_fragments(&mut self, msg: &[u8], sizes: &[usize]) -> Result<()> {
        let mut pos = 0;
        for (i, &sz) in sizes.iter().enumerate() {
            let last = i + 1 == sizes.len();
            let end = if last {
                msg.len()
            } else {
                (pos + sz).min(msg.len())
            };
            let mut frag = ((end - pos) as u32 | if last { 0x8000_0000 } else { 0 })
                .to_be_bytes()
                .to_vec();
            frag.extend_from_slice(&msg[pos..end]);
            // Split the write itself mid-header too, to exercise partial reads.
            let (a, b) = frag.split_at(2.min(frag.len()));
            self.stream.write_all(a)?;
            self.stream.flush()?;
            std::thread::sleep(Duration::from_millis(20));
            self.stream.write_all(b)?;
            self.stream.flush()?;
            std::thread::sleep(Duration::from_millis(20));
            pos = end;
        }
        Ok(())
    }

    /// Reads one whole record (reassembling fragments), or `None` on a clean EOF.
    pub fn recv_record(&mut self) -> Result<Option<Vec<u8>>> {
        let mut msg = Vec::new();
        loop {
            let mut hdr = [0u8; 4];
            match self.stream.read_exact(&mut hdr) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof && msg.is_empty() => {
                    return Ok(None)
                }
                Err(e) => return Err(e).context("reading record mark"),
            }
            let h = u32::from_be_bytes(hdr);
            let len = (h & 0x7fff_ffff) as usize;
            if len > 16 << 20 {
                bail!("absurd reply fragment length {len}");
            }
            let start = msg.len();
            msg.resize(start + len, 0);
            self.stream
                .read_exact(&mut msg[start..])
                .context("reading fragment body")?;
            if h & 0x8000_0000 != 0 {
                return Ok(Some(msg));
            }
        }
    }

    /// Reads and parses one reply.
    pub fn recv_reply(&mut self) -> Result<Reply> {
        match self.recv_record()? {
            Some(r) => Reply::parse(&r).with_context(|| format!("parsing TCP reply {r:02x?}")),
            None => bail!("server closed the TCP connection instead of replying"),
        }
    }

    /// Sends a call as one record and returns the parsed reply (checking the xid).
    pub fn call(&mut self, call: &Call) -> Result<Reply> {
        self.send_record(&call.encode())?;
        let r = self.recv_reply()?;
        if r.xid != call.xid {
            bail!("reply xid {:#x} != call xid {:#x}", r.xid, call.xid);
        }
        Ok(r)
    }

    /// Whether the server closed (EOF or reset) the connection within `timeout`
    /// without sending anything; data received instead is an error.
    pub fn closed_within(&mut self, timeout: Duration) -> Result<bool> {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut b = [0u8; 64];
        let r = match self.stream.read(&mut b) {
            Ok(0) => Ok(true),
            Ok(n) => bail!(
                "expected the connection to close, got {n} bytes {:02x?}",
                &b[..n]
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(true),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(e.into()),
        };
        self.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        r
    }
}

/// One client over either transport, so checks can be written once.
pub enum RpcClient {
    /// UDP
    Udp(UdpClient),
    /// TCP
    Tcp(TcpClient),
}

impl RpcClient {
    /// A client for `server` over `proto` from a `src` port.
    pub fn new(proto: Proto, server: SocketAddr, src: SrcPort) -> Result<Self> {
        Ok(match proto {
            Proto::Udp => RpcClient::Udp(UdpClient::new(server, src)?),
            Proto::Tcp => RpcClient::Tcp(TcpClient::connect(server, src)?),
        })
    }

    /// Sends a call and returns its reply (xid checked).
    pub fn call(&mut self, call: &Call) -> Result<Reply> {
        match self {
            RpcClient::Udp(u) => u.call(call),
            RpcClient::Tcp(t) => t.call(call),
        }
    }

    /// Sends raw message bytes (one datagram / one record) expecting no reply; returns
    /// whatever arrives within `wait` (None = silence, the expected outcome).
    pub fn send_expect_silence(&mut self, msg: &[u8], wait: Duration) -> Result<Option<Vec<u8>>> {
        match self {
            RpcClient::Udp(u) => {
                u.send(msg)?;
                u.recv(wait)
            }
            RpcClient::Tcp(t) => {
                t.send_record(msg)?;
                t.stream.set_read_timeout(Some(wait))?;
                let mut b = [0u8; 4];
                let r = match t.stream.read(&mut b) {
                    Ok(0) => bail!("server closed the TCP connection"),
                    Ok(n) => Ok(Some(b[..n].to_vec())),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                };
                t.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                r
            }
        }
    }
}
