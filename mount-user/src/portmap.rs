//! Asking a portmapper (rpcbind, port 111) where programs listen: the thin I/O around
//! [`mount_proto::rpc::pmap`]. Used to find the upstream MOUNT port (`--upstream HOST` without a
//! port) and to check that our own registrations are still there.
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use mount_proto::mount::client::ReplyCheckError;
use mount_proto::rpc::pmap::{
    decode_dump_reply, decode_getport_reply, encode_dump, encode_getport, Mapping, PMAP_PORT,
};

use crate::udp_call;

/// Largest portmapper reply read (a DUMP of a busy rpcbind).
const MAX_REPLY: usize = 65_536;

/// Why a portmapper call got no answer.
pub type GetportError = crate::udp_call::CallError;

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

/// One call over UDP to `host`:111, sent twice at most, waiting at most `timeout` in all.
fn call<T>(
    host: IpAddr,
    timeout: Duration,
    encode: impl Fn(&mut [u8], u32) -> Result<usize, mount_proto::xdr::XdrError>,
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
    let mut buf = vec![0u8; MAX_REPLY];
    // Two sends: one lost datagram must not look like "no portmapper".
    udp_call::call(&socket, server, &msg[..n], timeout / 2, 2, &mut buf, |m| {
        decode(m, xid)
    })
}
