//! Asking a portmapper (rpcbind, port 111) where a program listens: the thin I/O around
//! [`crate::rpc::pmap`]. Used to find the upstream MOUNT port (`--upstream HOST` without a
//! port) and to check that our own registrations are still there.
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::mount::client::ReplyCheckError;
use crate::rpc::pmap::{decode_getport_reply, encode_getport, PMAP_PORT};

/// Why a GETPORT got no port.
#[derive(Debug, thiserror::Error)]
pub enum GetportError {
    /// Socket trouble.
    #[error("portmapper call failed: {0}")]
    Io(#[from] io::Error),
    /// Nothing (decodable) came back in time.
    #[error("no answer from the portmapper at {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The portmapper refused the call.
    #[error("portmapper at {0}: {1}")]
    Reply(SocketAddr, ReplyCheckError),
}

/// The port `host`'s portmapper maps (`prog`, `vers`, `prot`) to; 0 when not registered.
/// One datagram, resent once, waiting at most `timeout` in all.
pub fn getport(
    host: IpAddr,
    prog: u32,
    vers: u32,
    prot: u32,
    timeout: Duration,
) -> Result<u16, GetportError> {
    let server = SocketAddr::new(host, PMAP_PORT);
    let local: IpAddr = match host {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))?;
    let xid = crate::upstream::client::fresh_xid();
    let mut call = [0u8; 128];
    let n = encode_getport(&mut call, xid, prog, vers, prot).map_err(io::Error::other)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 512];
    // Two sends: one lost datagram must not look like "no portmapper".
    for attempt in 0..2u32 {
        socket.send_to(&call[..n], server)?;
        let until = Instant::now() + timeout / 2;
        let until = if attempt == 1 {
            deadline
        } else {
            until.min(deadline)
        };
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match socket.recv_from(&mut buf) {
                Ok((len, from)) if from.ip().to_canonical() == host.to_canonical() => {
                    match decode_getport_reply(&buf[..len], xid) {
                        Ok(port) => return Ok(port),
                        Err(ReplyCheckError::OtherXid { .. }) => continue,
                        Err(e) => return Err(GetportError::Reply(server, e)),
                    }
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(GetportError::Timeout(server, timeout))
}
