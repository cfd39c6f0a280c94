//! Asking a portmapper (rpcbind, port 111) where programs listen: the thin I/O around
//! [`crate::rpc::pmap`]. Used to find the upstream MOUNT port (`--upstream HOST` without a
//! port) and to check that our own registrations are still there.
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::mount::client::ReplyCheckError;
use crate::rpc::pmap::{
    decode_dump_reply, decode_getport_reply, encode_dump, encode_getport, Mapping, PMAP_PORT,
};

/// Largest portmapper reply read (a DUMP of a busy rpcbind).
const MAX_REPLY: usize = 65_536;

/// Why a portmapper call got no answer.
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
/// (rpcbind answers with another version's port when the asked one is missing.)
pub fn getport(
    host: IpAddr,
    prog: u32,
    vers: u32,
    prot: u32,
    timeout: Duration,
) -> Result<u16, GetportError> {
    call(
        host,
        timeout,
        |out, xid| encode_getport(out, xid, prog, vers, prot),
        decode_getport_reply,
    )
}

/// Every registration `host`'s portmapper lists (IPv4 udp and tcp ones, in version 2).
pub fn dump(host: IpAddr, timeout: Duration) -> Result<Vec<Mapping>, GetportError> {
    call(host, timeout, encode_dump, decode_dump_reply)
}

/// One call over UDP, sent twice at most, waiting at most `timeout` in all.
fn call<T>(
    host: IpAddr,
    timeout: Duration,
    encode: impl Fn(&mut [u8], u32) -> Result<usize, crate::xdr::XdrError>,
    decode: impl Fn(&[u8], u32) -> Result<T, ReplyCheckError>,
) -> Result<T, GetportError> {
    let server = SocketAddr::new(host, PMAP_PORT);
    let local: IpAddr = match host {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))?;
    let xid = crate::upstream::client::fresh_xid();
    let mut msg = [0u8; 128];
    let n = encode(&mut msg, xid).map_err(io::Error::other)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; MAX_REPLY];
    // Two sends: one lost datagram must not look like "no portmapper".
    for attempt in 0..2u32 {
        socket.send_to(&msg[..n], server)?;
        let until = if attempt == 1 {
            deadline
        } else {
            (Instant::now() + timeout / 2).min(deadline)
        };
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match socket.recv_from(&mut buf) {
                Ok((len, from)) if from.ip().to_canonical() == host.to_canonical() => {
                    match decode(&buf[..len], xid) {
                        Ok(v) => return Ok(v),
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
