//! The MOUNT client that talks to upstream: one UDP socket on a reserved port (upstream
//! servers check that a MNT comes from one, as they do for the kernel's mount helper),
//! bounded retransmissions, replies matched by source and xid.
//!
//! Encoding and decoding are the sans-IO [`mount_proto::mount::client`]; this is only the I/O.
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mount_proto::mount::client::{
    accepted_results, decode_mnt_reply, encode_mnt, encode_path_call, MntAnswer, ReplyCheckError,
    MAX_CALL,
};
use mount_proto::mount::procs;
use mount_proto::rpc::pmap::IPPROTO_UDP;
use mount_proto::rpc::IPPORT_RESERVED;

use crate::portmap::{self, GetportError};
use crate::udp_call::{self, CallError};

/// Largest reply read (a `mountres3` is under 400 bytes).
const MAX_REPLY: usize = 2048;

/// Why upstream gave no answer to a call.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Finding the MOUNT port through upstream's portmapper failed.
    #[error("portmapper: {0}")]
    Portmap(GetportError),
    /// Upstream's portmapper does not know the program.
    #[error("program {program} version 3 is not registered with the portmapper on {host}")]
    NotRegistered {
        /// The upstream host.
        host: IpAddr,
        /// The program asked for.
        program: u32,
    },
    /// The MNT or UMNT call itself.
    #[error(transparent)]
    Call(#[from] CallError),
}

impl From<io::Error> for UpstreamError {
    fn from(e: io::Error) -> Self {
        UpstreamError::Call(CallError::Io(e))
    }
}

/// A transaction id not used recently by this process (clock-seeded, then counted).
pub fn fresh_xid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(1);
    // The first caller seeds; everyone after counts up from there.
    let _ = NEXT.compare_exchange(0, seed | 1, Ordering::Relaxed, Ordering::Relaxed);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Where upstream is and how patiently to ask it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Upstream's address.
    pub host: IpAddr,
    /// Its MOUNT port; None: ask its portmapper.
    pub port: Option<u16>,
    /// The MOUNT program number it serves (100005, or a private one).
    pub program: u32,
    /// Wait for a reply this long before sending again.
    pub try_timeout: Duration,
    /// Send a call at most this many times.
    pub tries: u32,
}

/// A conversation with upstream's MOUNT service.
pub struct MountClient {
    target: Target,
    socket: UdpSocket,
    /// The port found through the portmapper (forgotten when calls fail, so a restarted
    /// upstream on another port is found again).
    found_port: Option<u16>,
    machine: String,
}

impl MountClient {
    /// A client for `target`, its socket bound to a reserved port when we may.
    pub fn new(target: Target) -> io::Result<Self> {
        let local: IpAddr = match target.host {
            IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = crate::rpcbind::bind_reserved_udp(local)?;
        let port = socket.local_addr()?.port();
        if port >= IPPORT_RESERVED {
            tracing::warn!(
                port,
                "upstream calls leave from an unreserved port (not root?): a server that \
                 insists on reserved ports will refuse them"
            );
        }
        Ok(Self {
            target,
            socket,
            found_port: None,
            machine: hostname(),
        })
    }

    /// The target this client asks.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// MNT `path` with MOUNT version `vers` (3, or 1 for the 32-byte form).
    pub fn mnt(&mut self, path: &str, vers: u32) -> Result<MntAnswer, UpstreamError> {
        let (machine, program) = (self.machine.clone(), self.target.program);
        self.call(
            |out, xid| encode_mnt(out, xid, program, vers, path, &machine),
            |msg, xid| decode_mnt_reply(msg, xid, vers),
        )
    }

    /// UMNT `path` (version 3), so upstream's own mount list stays clean.
    pub fn umnt(&mut self, path: &str) -> Result<(), UpstreamError> {
        let (machine, program) = (self.machine.clone(), self.target.program);
        self.call(
            |out, xid| encode_path_call(out, xid, program, 3, procs::UMNT, path, &machine),
            |msg, xid| accepted_results(msg, xid).map(drop),
        )
    }

    /// Upstream's MOUNT address: the fixed port, or the one its portmapper gives.
    fn peer(&mut self) -> Result<SocketAddr, UpstreamError> {
        let port = match (self.target.port, self.found_port) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => {
                let t = &self.target;
                let timeout = t.try_timeout * t.tries.max(1);
                let p = portmap::getport(t.host, t.program, 3, IPPROTO_UDP, timeout)
                    .map_err(UpstreamError::Portmap)?;
                if p == 0 {
                    return Err(UpstreamError::NotRegistered {
                        host: t.host,
                        program: t.program,
                    });
                }
                tracing::info!(host = %t.host, program = t.program, port = p, "upstream MOUNT port found through its portmapper");
                self.found_port = Some(p);
                p
            }
        };
        Ok(SocketAddr::new(self.target.host, port))
    }

    /// Send a call, resend on silence, return the first reply `decode` accepts. A failed
    /// call forgets a port found through the portmapper.
    fn call<T>(
        &mut self,
        encode: impl Fn(&mut [u8], u32) -> Result<usize, mount_proto::xdr::XdrError>,
        decode: impl Fn(&[u8], u32) -> Result<T, ReplyCheckError>,
    ) -> Result<T, UpstreamError> {
        let peer = self.peer()?;
        let xid = fresh_xid();
        let mut msg = [0u8; MAX_CALL];
        let n = encode(&mut msg, xid).map_err(io::Error::other)?;
        let mut buf = [0u8; MAX_REPLY];
        let (timeout, tries) = (self.target.try_timeout, self.target.tries);
        let result = udp_call::call(
            &self.socket,
            peer,
            &msg[..n],
            timeout,
            tries,
            &mut buf,
            |m| decode(m, xid),
        );
        if result.is_err() {
            self.forget_port();
        }
        Ok(result?)
    }

    fn forget_port(&mut self) {
        self.found_port = None;
    }
}

/// This host's name for the AUTH_SYS credential (upstream logs it); "xdp-mountd" if unknown.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its full length, which is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "xdp-mountd".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use mount_proto::mount::wire::{Flavors, MountRes3};
    use mount_proto::mount::{MNTPATHLEN, MOUNT_PROGRAM};
    use mount_proto::rpc::{encode_success, Call};
    use mount_proto::xdr::Reader;

    use super::*;

    fn target(port: u16) -> Target {
        Target {
            host: "127.0.0.1".parse().unwrap(),
            port: Some(port),
            program: MOUNT_PROGRAM,
            try_timeout: Duration::from_millis(200),
            tries: 2,
        }
    }

    /// A fake upstream on loopback answering each call with `reply(call)`, at most `n` calls.
    fn fake(n: usize, reply: fn(&Call<'_>) -> Vec<Vec<u8>>) -> u16 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = sock.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            for _ in 0..n {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    return;
                };
                let Ok(call) = Call::parse(&buf[..len]) else {
                    continue;
                };
                for r in reply(&call) {
                    let _ = sock.send_to(&r, from);
                }
            }
        });
        port
    }

    fn ok_handle(call: &Call<'_>) -> Vec<Vec<u8>> {
        let path = Reader::new(call.args).string(MNTPATHLEN).unwrap().to_vec();
        let mut out = vec![0u8; 256];
        let res = MountRes3::Ok {
            handle: &path,
            flavors: Flavors::from_be_words(&[0, 0, 0, 1]).unwrap(),
        };
        let n = encode_success(&mut out, call.xid, |w| res.emit(w)).unwrap();
        out.truncate(n);
        // Garbage and a reply to another xid first: both must be skipped.
        vec![
            vec![1, 2, 3],
            {
                let mut o = out.clone();
                o[3] ^= 0xff;
                o
            },
            out,
        ]
    }

    #[test]
    fn mnt_skips_garbage_and_other_xids() {
        let port = fake(1, ok_handle);
        let mut c = MountClient::new(target(port)).unwrap();
        match c.mnt("/srv/x", 3).unwrap() {
            MntAnswer::Handle(h) => assert_eq!(h.as_bytes(), b"/srv/x"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn silence_and_garbage_only_end_in_a_bounded_timeout() {
        let port = fake(4, |_| vec![vec![0xde, 0xad]]);
        let mut c = MountClient::new(target(port)).unwrap();
        let t0 = std::time::Instant::now();
        match c.mnt("/srv/x", 3) {
            Err(UpstreamError::Call(CallError::Timeout {
                tries: 2,
                garbage: 2,
                ..
            })) => {}
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn refusals_are_reply_errors() {
        let port = fake(1, |call| {
            let mut out = vec![0u8; 64];
            let n = mount_proto::rpc::encode_accepted(
                &mut out,
                call.xid,
                &mount_proto::rpc::AcceptStat::ProgUnavail,
            )
            .unwrap();
            out.truncate(n);
            vec![out]
        });
        let mut c = MountClient::new(target(port)).unwrap();
        assert!(matches!(
            c.mnt("/srv/x", 3),
            Err(UpstreamError::Call(CallError::Reply {
                error: ReplyCheckError::NotAccepted(_),
                ..
            }))
        ));
    }
}
