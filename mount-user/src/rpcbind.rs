//! Registration with the local rpcbind (portmapper), so that clients such as `showmount` and
//! the kernel's mount helper can find the MOUNT service's port.
//!
//! Preferred path: rpcbind protocol version 4 (RFC 1833) over rpcbind's local AF_UNIX stream
//! socket (record marked), where rpcbind learns our uid from the socket's peer credentials
//! and accepts every netid. Fallback when that socket is absent: portmapper version 2
//! (PMAPPROC_SET/UNSET) over UDP to 127.0.0.1:111 from a privileged source port, which
//! rpcbind requires before it maps a privileged port; version 2 knows only IPv4 udp/tcp.
//!
//! Calls are encoded and replies decoded with the protocol core's `rpc` and `xdr` codecs.
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mount_proto::rpc::pmap::{IPPROTO_TCP, IPPROTO_UDP, PMAP_PORT, PMAP_PROGRAM, PMAP_VERSION};
use mount_proto::rpc::record::{single_fragment_header, RecordReader};
use mount_proto::rpc::{self, AcceptStat, Credential, Reply, ReplyBody, IPPORT_RESERVED};
use mount_proto::xdr::{Reader, Writer, XdrError};

/// rpcbind's local socket (libtirpc's `_PATH_RPCBINDSOCK`).
pub const RPCBIND_SOCKET: &str = "/run/rpcbind.sock";
/// The portmapper's well-known address for the UDP fallback.
pub const PORTMAPPER_UDP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PMAP_PORT);
/// Every rpcbind call gives up after this long.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// rpcbind is the portmapper program, in its version 4.
const RPCB_PROGRAM: u32 = PMAP_PROGRAM;
const RPCBVERS4: u32 = 4;
const PROC_SET: u32 = 1;
const PROC_UNSET: u32 = 2;

/// Errors talking to rpcbind.
#[derive(Debug, thiserror::Error)]
pub enum RpcbindError {
    /// Neither the local socket nor the UDP portmapper answered.
    #[error("rpcbind not reachable: {0}")]
    Unreachable(io::Error),
    /// An I/O error in the middle of a conversation.
    #[error("rpcbind call failed: {0}")]
    Io(#[from] io::Error),
    /// The reply was not an accepted, successful RPC reply to our call.
    #[error("rpcbind rejected the call: {0}")]
    Rejected(&'static str),
    /// rpcbind answered `false` to SET.
    #[error("rpcbind refused to register {netid} version {version}")]
    Refused { netid: String, version: u32 },
}

/// One transport endpoint of the service, as rpcbind names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Network id: "udp", "tcp", "udp6" or "tcp6".
    pub netid: &'static str,
    /// Universal address: host followed by the port's two bytes, e.g. "0.0.0.0.2.132".
    pub uaddr: String,
    /// The port (for the version-2 fallback, which has no universal addresses).
    pub port: u16,
}

/// The endpoints to register for listeners bound to `bind:port`. The unspecified IPv6
/// address stands for a dual-stack socket, so it gets both the IPv4 and IPv6 netids.
pub fn endpoints(bind: IpAddr, port: u16) -> Vec<Endpoint> {
    let hi = port >> 8;
    let lo = port & 0xff;
    let v4 = |host: String| {
        ["udp", "tcp"].map(|netid| Endpoint {
            netid,
            uaddr: format!("{host}.{hi}.{lo}"),
            port,
        })
    };
    let v6 = |host: String| {
        ["udp6", "tcp6"].map(|netid| Endpoint {
            netid,
            uaddr: format!("{host}.{hi}.{lo}"),
            port,
        })
    };
    match bind {
        IpAddr::V6(a) if a.is_unspecified() => {
            let mut all = v4("0.0.0.0".into()).to_vec();
            all.extend(v6("::".into()));
            all
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4addr) => v4(v4addr.to_string()).to_vec(),
            None => v6(a.to_string()).to_vec(),
        },
        IpAddr::V4(a) => v4(a.to_string()).to_vec(),
    }
}

/// A conversation with rpcbind over whichever transport answered.
pub struct Rpcbind {
    transport: Transport,
    xid: u32,
}

enum Transport {
    Local(UnixStream),
    PmapUdp(UdpSocket),
}

impl Rpcbind {
    /// Reach rpcbind: its local socket at `socket_path` if that exists and accepts a
    /// connection, else the version-2 portmapper over UDP at `udp_fallback`. The UDP
    /// fallback is only known to be alive after the first call answers.
    pub fn connect(socket_path: &Path, udp_fallback: SocketAddr) -> Result<Self, RpcbindError> {
        // Seed transaction ids from the clock so a restarted daemon does not reuse them.
        let xid = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(1);
        let transport = match UnixStream::connect(socket_path) {
            Ok(stream) => {
                stream.set_read_timeout(Some(CALL_TIMEOUT))?;
                stream.set_write_timeout(Some(CALL_TIMEOUT))?;
                tracing::debug!(path = %socket_path.display(), "talking to rpcbind over its local socket");
                Transport::Local(stream)
            }
            Err(e) => {
                tracing::debug!(path = %socket_path.display(), error = %e,
                    "rpcbind local socket unusable, falling back to portmapper v2 over UDP");
                let sock = bind_privileged_udp(udp_fallback).map_err(RpcbindError::Unreachable)?;
                sock.connect(udp_fallback)
                    .map_err(RpcbindError::Unreachable)?;
                sock.set_read_timeout(Some(CALL_TIMEOUT))?;
                sock.set_write_timeout(Some(CALL_TIMEOUT))?;
                Transport::PmapUdp(sock)
            }
        };
        Ok(Self { transport, xid })
    }

    /// Connect to the standard places ([`RPCBIND_SOCKET`], then [`PORTMAPPER_UDP`]).
    pub fn connect_default() -> Result<Self, RpcbindError> {
        Self::connect(&PathBuf::from(RPCBIND_SOCKET), PORTMAPPER_UDP)
    }

    /// Which transport is in use, for logs.
    pub fn transport_name(&self) -> &'static str {
        match self.transport {
            Transport::Local(_) => "rpcbind v4 over local socket",
            Transport::PmapUdp(_) => "portmapper v2 over UDP",
        }
    }

    /// Remove any registration of `program` `versions` (stale ones from an earlier run
    /// included), then register every endpoint. Returns the number of registrations made.
    pub fn register(
        &mut self,
        program: u32,
        versions: &[u32],
        endpoints: &[Endpoint],
    ) -> Result<usize, RpcbindError> {
        self.unregister(program, versions)?;
        let usable = self.usable(endpoints);
        let mut made = 0;
        for &version in versions {
            for &ep in &usable {
                if !self.call_set(PROC_SET, program, version, ep)? {
                    return Err(RpcbindError::Refused {
                        netid: ep.netid.to_string(),
                        version,
                    });
                }
                made += 1;
            }
        }
        Ok(made)
    }

    /// Remove the registrations of `program` `versions`.
    pub fn unregister(&mut self, program: u32, versions: &[u32]) -> Result<(), RpcbindError> {
        for &version in versions {
            match self.transport {
                // An empty netid removes the version on every transport.
                Transport::Local(_) => {
                    let all = Endpoint {
                        netid: "",
                        uaddr: String::new(),
                        port: 0,
                    };
                    self.call_set(PROC_UNSET, program, version, &all)?;
                }
                // Version 2 UNSET ignores protocol and port: one call per version.
                Transport::PmapUdp(_) => {
                    let any = Endpoint {
                        netid: "udp",
                        uaddr: String::new(),
                        port: 0,
                    };
                    self.call_set(PROC_UNSET, program, version, &any)?;
                }
            }
        }
        Ok(())
    }

    /// The endpoints this transport can register (version 2 has no IPv6 netids).
    fn usable<'e>(&self, endpoints: &'e [Endpoint]) -> Vec<&'e Endpoint> {
        let v2 = matches!(self.transport, Transport::PmapUdp(_));
        endpoints
            .iter()
            .filter(|ep| !v2 || pmap_protocol(ep.netid).is_some())
            .collect()
    }

    /// One SET or UNSET call; returns rpcbind's boolean answer.
    fn call_set(
        &mut self,
        proc_: u32,
        program: u32,
        version: u32,
        ep: &Endpoint,
    ) -> Result<bool, RpcbindError> {
        self.xid = self.xid.wrapping_add(1);
        let xid = self.xid;
        match &mut self.transport {
            Transport::Local(stream) => {
                let owner = euid_string();
                let msg = encode_rpcb_call(xid, proc_, program, version, ep, &owner)
                    .map_err(io::Error::other)?;
                stream.write_all(&single_fragment_header(msg.len()).map_err(io::Error::other)?)?;
                stream.write_all(&msg)?;
                let reply = read_record(stream)?;
                parse_bool_reply(xid, &reply)
            }
            Transport::PmapUdp(sock) => {
                let prot = pmap_protocol(ep.netid).unwrap_or(IPPROTO_UDP);
                let msg = encode_pmap_call(xid, proc_, program, version, prot, ep.port)
                    .map_err(io::Error::other)?;
                sock.send(&msg).map_err(RpcbindError::Unreachable)?;
                let mut buf = [0u8; 512];
                loop {
                    let n = sock.recv(&mut buf).map_err(RpcbindError::Unreachable)?;
                    // A late reply to an earlier call carries an old xid: skip it.
                    match parse_bool_reply(xid, &buf[..n]) {
                        Err(RpcbindError::Rejected("reply xid mismatch")) => continue,
                        other => return other,
                    }
                }
            }
        }
    }
}

fn pmap_protocol(netid: &str) -> Option<u32> {
    match netid {
        "udp" => Some(IPPROTO_UDP),
        "tcp" => Some(IPPROTO_TCP),
        _ => None,
    }
}

fn euid_string() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }.to_string()
}

/// Bind a UDP socket on 127.0.0.1 to a reserved port (like libc's bindresvport), because
/// rpcbind refuses to map a privileged port for an unprivileged caller. Falls back to an
/// ephemeral port when we may not bind reserved ports.
fn bind_privileged_udp(peer: SocketAddr) -> io::Result<UdpSocket> {
    let local_ip = match peer {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    };
    bind_reserved_udp(local_ip)
}

/// Bind a UDP socket on `local_ip` to a free reserved port (1023 down to 600, like
/// bindresvport), or to an ephemeral port when reserved ports are not ours to bind.
pub fn bind_reserved_udp(local_ip: IpAddr) -> io::Result<UdpSocket> {
    for port in (600..IPPORT_RESERVED).rev() {
        match UdpSocket::bind(SocketAddr::new(local_ip, port)) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => break,
            Err(e) => return Err(e),
        }
    }
    UdpSocket::bind(SocketAddr::new(local_ip, 0))
}

fn read_record(stream: &mut UnixStream) -> Result<Vec<u8>, RpcbindError> {
    let mut reader = RecordReader::new(64 * 1024);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(rec) = reader.next_record().map_err(io::Error::other)? {
            return Ok(rec.to_vec());
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        reader.push(&buf[..n]);
    }
}

/// Largest call we send (a `struct rpcb` with short strings fits easily).
const MAX_CALL: usize = 512;
/// Longest netid, universal address or owner string we encode (RFC 1833 has no limit; ours
/// are short).
const MAX_STRING: usize = 128;

/// RPCBPROC_SET/UNSET (version 4) with `struct rpcb { prog, vers, netid, addr, owner }`.
fn encode_rpcb_call(
    xid: u32,
    proc_: u32,
    program: u32,
    version: u32,
    ep: &Endpoint,
    owner: &str,
) -> Result<Vec<u8>, XdrError> {
    encode_call(xid, RPCBVERS4, proc_, |w| {
        w.put_u32(program)?;
        w.put_u32(version)?;
        w.put_string(ep.netid.as_bytes(), MAX_STRING)?;
        w.put_string(ep.uaddr.as_bytes(), MAX_STRING)?;
        w.put_string(owner.as_bytes(), MAX_STRING)
    })
}

/// PMAPPROC_SET/UNSET (version 2) with `struct mapping { prog, vers, prot, port }`.
fn encode_pmap_call(
    xid: u32,
    proc_: u32,
    program: u32,
    version: u32,
    prot: u32,
    port: u16,
) -> Result<Vec<u8>, XdrError> {
    encode_call(xid, PMAP_VERSION, proc_, |w| {
        for v in [program, version, prot, u32::from(port)] {
            w.put_u32(v)?;
        }
        Ok(())
    })
}

/// An rpcbind call with AUTH_NONE credentials (rpcbind learns a local caller's uid from
/// the socket; over UDP it checks the source port instead).
fn encode_call(
    xid: u32,
    version: u32,
    proc_: u32,
    args: impl FnOnce(&mut Writer<'_>) -> Result<(), XdrError>,
) -> Result<Vec<u8>, XdrError> {
    let mut buf = [0u8; MAX_CALL];
    let mut w = Writer::new(&mut buf);
    rpc::emit_call(&mut w, xid, RPCB_PROGRAM, version, proc_, &Credential::None)?;
    args(&mut w)?;
    Ok(w.written().to_vec())
}

/// Parse an accepted, successful reply whose result is an XDR bool.
fn parse_bool_reply(xid: u32, msg: &[u8]) -> Result<bool, RpcbindError> {
    let reply = Reply::parse(msg).map_err(|_| RpcbindError::Rejected("malformed reply"))?;
    if reply.xid != xid {
        return Err(RpcbindError::Rejected("reply xid mismatch"));
    }
    let results = match reply.body {
        ReplyBody::Accepted {
            stat: AcceptStat::Success,
            results,
            ..
        } => results,
        ReplyBody::Accepted {
            stat: AcceptStat::ProgUnavail,
            ..
        } => return Err(RpcbindError::Rejected("program unavailable")),
        ReplyBody::Accepted {
            stat: AcceptStat::ProgMismatch { .. },
            ..
        } => return Err(RpcbindError::Rejected("program version mismatch")),
        ReplyBody::Accepted {
            stat: AcceptStat::ProcUnavail,
            ..
        } => return Err(RpcbindError::Rejected("procedure unavailable")),
        ReplyBody::Accepted {
            stat: AcceptStat::GarbageArgs,
            ..
        } => return Err(RpcbindError::Rejected("garbage arguments")),
        ReplyBody::Accepted {
            stat: AcceptStat::SystemErr,
            ..
        } => return Err(RpcbindError::Rejected("system error")),
        ReplyBody::Denied(_) => return Err(RpcbindError::Rejected("call denied")),
    };
    Reader::new(results)
        .bool()
        .map_err(|_| RpcbindError::Rejected("short reply"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mount_proto::mount::MOUNT_PROGRAM;

    #[test]
    fn endpoints_for_dual_stack_wildcard() {
        let eps = endpoints("::".parse().unwrap(), 644);
        let got: Vec<(&str, &str)> = eps.iter().map(|e| (e.netid, e.uaddr.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("udp", "0.0.0.0.2.132"),
                ("tcp", "0.0.0.0.2.132"),
                ("udp6", "::.2.132"),
                ("tcp6", "::.2.132"),
            ]
        );
    }

    #[test]
    fn endpoints_for_specific_addresses() {
        let v4 = endpoints("10.1.2.3".parse().unwrap(), 2049);
        assert_eq!(v4.len(), 2);
        assert_eq!(v4[0].uaddr, "10.1.2.3.8.1");
        let v6 = endpoints("fd00::1".parse().unwrap(), 20048);
        assert_eq!(
            v6.iter().map(|e| e.netid).collect::<Vec<_>>(),
            ["udp6", "tcp6"]
        );
        assert_eq!(v6[0].uaddr, "fd00::1.78.80");
        let mapped = endpoints("::ffff:127.0.0.1".parse().unwrap(), 1);
        assert_eq!(mapped[0].uaddr, "127.0.0.1.0.1");
    }

    /// Golden bytes of RPCBPROC_SET v4 {100005, 3, "udp", "0.0.0.0.2.132", "0"}, laid out
    /// field by field as tshark's portmap dissector shows them.
    #[test]
    fn rpcb_set_golden_bytes() {
        let ep = Endpoint {
            netid: "udp",
            uaddr: "0.0.0.0.2.132".into(),
            port: 644,
        };
        let msg = encode_rpcb_call(0x0102_0304, PROC_SET, MOUNT_PROGRAM, 3, &ep, "0").unwrap();
        let expected: Vec<u8> = [
            &[0x01, 0x02, 0x03, 0x04][..], // xid
            &[0, 0, 0, 0],                 // CALL
            &[0, 0, 0, 2],                 // RPC version 2
            &[0, 0x01, 0x86, 0xa0],        // program 100000
            &[0, 0, 0, 4],                 // rpcbind version 4
            &[0, 0, 0, 1],                 // RPCBPROC_SET
            &[0, 0, 0, 0, 0, 0, 0, 0],     // cred AUTH_NONE, empty
            &[0, 0, 0, 0, 0, 0, 0, 0],     // verf AUTH_NONE, empty
            &[0, 0x01, 0x86, 0xa5],        // program 100005
            &[0, 0, 0, 3],                 // version 3
            &[0, 0, 0, 3],
            b"udp\0", // netid, padded
            &[0, 0, 0, 13],
            b"0.0.0.0.2.132\0\0\0", // uaddr, padded
            &[0, 0, 0, 1],
            b"0\0\0\0", // owner, padded
        ]
        .concat();
        assert_eq!(msg, expected);
    }

    #[test]
    fn pmap_set_golden_bytes() {
        let msg = encode_pmap_call(7, PROC_SET, MOUNT_PROGRAM, 1, IPPROTO_TCP, 644).unwrap();
        let expected: Vec<u8> = [
            &[0, 0, 0, 7][..],
            &[0, 0, 0, 0],
            &[0, 0, 0, 2],
            &[0, 0x01, 0x86, 0xa0],
            &[0, 0, 0, 2], // portmapper version 2
            &[0, 0, 0, 1],
            &[0; 16],
            &[0, 0x01, 0x86, 0xa5],
            &[0, 0, 0, 1],
            &[0, 0, 0, 6],
            &[0, 0, 0x02, 0x84],
        ]
        .concat();
        assert_eq!(msg, expected);
    }

    fn reply(xid: u32, words: &[u32]) -> Vec<u8> {
        std::iter::once(xid)
            .chain(words.iter().copied())
            .flat_map(u32::to_be_bytes)
            .collect()
    }

    #[test]
    fn parses_accepted_bool_replies() {
        // REPLY, MSG_ACCEPTED, verf AUTH_NONE len 0, SUCCESS, result.
        assert!(parse_bool_reply(9, &reply(9, &[1, 0, 0, 0, 0, 1])).unwrap());
        assert!(!parse_bool_reply(9, &reply(9, &[1, 0, 0, 0, 0, 0])).unwrap());
        // A verifier with a 5-byte body is padded to 8.
        assert!(parse_bool_reply(9, &reply(9, &[1, 0, 1, 5, 0, 0, 0, 1])).unwrap());
    }

    #[test]
    fn rejects_bad_replies() {
        assert!(parse_bool_reply(9, &reply(8, &[1, 0, 0, 0, 0, 1])).is_err());
        assert!(parse_bool_reply(9, &reply(9, &[1, 1, 0, 0, 0, 1])).is_err());
        assert!(parse_bool_reply(9, &reply(9, &[1, 0, 0, 0, 1, 0])).is_err());
        assert!(parse_bool_reply(9, &reply(9, &[1, 0, 0, 0, 0])).is_err());
    }

    /// A fake rpcbind on a temporary AF_UNIX socket: checks the conversation (UNSET per
    /// version, then SET per version and netid) and answers true.
    #[test]
    fn registers_over_local_socket() {
        let dir = std::env::temp_dir().join(format!("xmd-rpcb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rpcbind.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut calls = Vec::new();
            let mut reader = RecordReader::new(4096);
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return calls;
                }
                reader.push(&buf[..n]);
                while let Some(rec) = reader.next_record().unwrap() {
                    let w =
                        |i: usize| u32::from_be_bytes(rec[i * 4..i * 4 + 4].try_into().unwrap());
                    let netid_len = w(12) as usize;
                    let netid = String::from_utf8(rec[52..52 + netid_len].to_vec()).unwrap();
                    calls.push((w(5), w(11), netid));
                    let out = reply(w(0), &[1, 0, 0, 0, 0, 1]);
                    s.write_all(&single_fragment_header(out.len()).unwrap())
                        .unwrap();
                    s.write_all(&out).unwrap();
                }
            }
        });
        let mut rpcb = Rpcbind::connect(&path, PORTMAPPER_UDP).unwrap();
        let eps = endpoints("::".parse().unwrap(), 644);
        assert_eq!(rpcb.register(MOUNT_PROGRAM, &[1, 3], &eps).unwrap(), 8);
        drop(rpcb);
        let calls = server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(calls.len(), 10);
        assert_eq!(calls[0], (PROC_UNSET, 1, String::new()));
        assert_eq!(calls[1], (PROC_UNSET, 3, String::new()));
        assert_eq!(calls[2], (PROC_SET, 1, "udp".to_string()));
        assert_eq!(calls[5], (PROC_SET, 1, "tcp6".to_string()));
        assert_eq!(calls[9], (PROC_SET, 3, "tcp6".to_string()));
    }
}
