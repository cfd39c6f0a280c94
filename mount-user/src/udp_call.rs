//! One RPC call over UDP, the way every classic client makes it: send, wait, resend on
//! silence a bounded number of times, take the first datagram from the peer that the
//! decoder accepts as the reply to this call. Shared by the portmapper queries and the
//! upstream MOUNT client.
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mount_proto::mount::client::ReplyCheckError;

/// Why a call got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Socket trouble on our side.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// Nothing usable came back in time.
    #[error("no reply from {peer} after {tries} tries ({garbage} undecodable replies)")]
    Timeout {
        /// Where the calls went.
        peer: SocketAddr,
        /// How many times the call was sent.
        tries: u32,
        /// Datagrams from the peer that did not decode as an RPC reply.
        garbage: u32,
    },
    /// A reply that refuses the call or whose results do not decode.
    #[error("{peer}: {error}")]
    Reply {
        /// Who answered.
        peer: SocketAddr,
        /// What was wrong.
        error: ReplyCheckError,
    },
}

/// Send `msg` to `peer` from `socket` up to `tries` times, waiting `try_timeout` after each
/// send; return the first reply `decode` accepts. Replies to other xids are skipped, other
/// undecodable datagrams counted as garbage; a decodable refusal ends the call at once.
pub fn call<T>(
    socket: &UdpSocket,
    peer: SocketAddr,
    msg: &[u8],
    try_timeout: Duration,
    tries: u32,
    buf: &mut [u8],
    decode: impl Fn(&[u8]) -> Result<T, ReplyCheckError>,
) -> Result<T, CallError> {
    let tries = tries.max(1);
    let mut garbage = 0;
    for _ in 0..tries {
        socket.send_to(msg, peer)?;
        let until = Instant::now() + try_timeout;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let (len, from) = match socket.recv_from(buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            };
            if from.ip().to_canonical() != peer.ip().to_canonical() || from.port() != peer.port() {
                continue;
            }
            match decode(&buf[..len]) {
                Ok(v) => return Ok(v),
                // A late reply to an earlier call.
                Err(ReplyCheckError::OtherXid { .. }) => {}
                Err(ReplyCheckError::Malformed(_)) => garbage += 1,
                Err(error) => return Err(CallError::Reply { peer, error }),
            }
        }
    }
    Err(CallError::Timeout {
        peer,
        tries,
        garbage,
    })
}
