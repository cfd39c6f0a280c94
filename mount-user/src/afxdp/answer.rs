//! Answering one AF_XDP frame in place: parse, ask the protocol core, write the reply
//! over the request (or hand it to the kernel socket or the lookup thread).
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use mount_proto::packet;

use crate::log_throttle::LogThrottle;
use crate::service::names::NameCache;
use crate::service::{answer_deferred, Answer, Responder};
use crate::socket::udp::UDP_MAX_MESSAGE;
use crate::stats::calls::{call_slot, Outcome};

use super::counters::{add, QueueCounters};

/// A call parked until its peer's host name is known.
pub struct Deferred {
    /// The RPC call message.
    pub request: Vec<u8>,
    /// Who sent it.
    pub peer: SocketAddr,
}

/// What a worker shares with the rest of the daemon.
pub struct Shared {
    /// The protocol core (as seen from UDP).
    pub responder: Arc<dyn Responder>,
    /// Host names for `*.domain` rules.
    pub names: Arc<NameCache>,
    /// Calls waiting for a name lookup.
    pub lookups: Sender<Deferred>,
    /// The kernel UDP socket on the MOUNT port, for replies larger than the MTU.
    pub kernel: Arc<UdpSocket>,
    /// The interface MTU (IP datagram bytes).
    pub mtu: usize,
    /// The kernel socket's local address: calls to other addresses are not ours
    /// (`::` serves every address, `0.0.0.0` every IPv4 one).
    pub local: std::net::IpAddr,
    /// Set to stop the workers.
    pub stop: Arc<AtomicBool>,
    /// Rate limit for error logs.
    pub errors: LogThrottle,
}

/// Answers the request in `frame[..len]` (a UMEM chunk from the request's address to the
/// chunk's end); returns the reply frame's length when the reply was written into `frame`
/// for the TX ring, None when the frame is free again. `scratch` holds the reply payload
/// first (it may overlap the request in the frame). Public for the allocation test.
pub fn handle(
    shared: &Shared,
    counters: &QueueCounters,
    frame: &mut [u8],
    len: usize,
    scratch: &mut [u8],
) -> Option<u32> {
    let parsed = frame.get(..len).map(packet::parse);
    let Some(Ok(parsed)) = parsed else {
        add(&counters.dropped, 1);
        return None;
    };
    if !serves(shared.local, parsed.addressing.ips.dst()) {
        add(&counters.dropped, 1);
        return None;
    }
    let peer = parsed.addressing.source();
    let request = parsed.payload(frame);
    // The reply payload may start before the request payload ends (the reply has no IP
    // options): answer into the scratch buffer, then copy into the frame.
    let answer = match shared.responder.respond(request, peer, None, scratch) {
        Answer::NeedName => match shared.names.cached(peer.ip()) {
            Some(name) => shared
                .responder
                .respond(request, peer, Some(&*name), scratch),
            None => Answer::NeedName,
        },
        other => other,
    };
    // A name lookup or an upstream handle: never waited for here.
    if matches!(answer, Answer::NeedName | Answer::NeedUpstream) {
        counters
            .calls
            .bump_owned(call_slot(request, Outcome::Deferred));
        defer(shared, counters, request, peer);
        return None;
    }
    let (reply_len, truncated) = match answer {
        Answer::Reply { len, truncated } if len <= scratch.len() => (len, truncated),
        _ => {
            counters
                .calls
                .bump_owned(call_slot(request, Outcome::NoReply));
            add(&counters.dropped, 1);
            return None;
        }
    };
    counters
        .calls
        .bump_owned(call_slot(request, Outcome::Reply(&scratch[..reply_len])));
    if truncated {
        add(&counters.truncated, 1);
    }
    let reply = &scratch[..reply_len];
    let offset = packet::payload_offset(&parsed.addressing.ips);
    // A call sent to a broadcast or multicast address must not be answered from that
    // address: the kernel socket picks a proper source.
    let unicast = !parsed.addressing.dst_mac.is_group() && is_unicast(parsed.addressing.ips.dst());
    let area = frame
        .get_mut(offset..offset + reply_len)
        .filter(|_| unicast);
    if let Some(area) = area {
        area.copy_from_slice(reply);
        if let Ok(frame_len) =
            packet::finish_reply(frame, &parsed.addressing, reply_len, shared.mtu)
        {
            add(&counters.tx, 1);
            return Some(frame_len as u32);
        }
    }
    // Larger than the MTU (or than a frame): the kernel socket fragments it.
    match send_via_kernel(&shared.kernel, reply, peer) {
        Ok(()) => add(&counters.via_kernel, 1),
        Err(e) => {
            add(&counters.dropped, 1);
            if let Some(suppressed) = shared.errors.allow() {
                tracing::warn!(%peer, error = %e, suppressed, "sending a large reply through the kernel failed");
            }
        }
    }
    None
}

/// Whether a socket bound to `local` receives datagrams sent to `dst` (what the kernel
/// would deliver to it).
fn serves(local: std::net::IpAddr, dst: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match (local, dst) {
        (IpAddr::V6(l), _) if l.is_unspecified() => true,
        (IpAddr::V4(l), IpAddr::V4(_)) if l.is_unspecified() => true,
        (l, d) => l.to_canonical() == d,
    }
}

/// Whether `ip` can be the source of our reply.
fn is_unicast(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            !(v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified())
        }
        std::net::IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

/// Parks a call for the lookup thread (which answers through the kernel socket).
fn defer(shared: &Shared, counters: &QueueCounters, request: &[u8], peer: SocketAddr) {
    add(&counters.name_lookups, 1);
    let job = Deferred {
        request: request.to_vec(),
        peer,
    };
    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = shared.lookups.try_send(job)
    {
        add(&counters.dropped, 1);
        if let Some(suppressed) = shared.errors.allow() {
            tracing::warn!(%peer, suppressed, "lookup queue (names, upstream) full, dropping an AF_XDP call");
        }
    }
}

/// Sends `reply` to `peer` from the kernel socket (an IPv4 peer is mapped when the
/// socket is the dual-stack IPv6 one).
pub fn send_via_kernel(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) -> io::Result<()> {
    let to = match (socket.local_addr()?, peer) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => peer,
    };
    socket.send_to(reply, to).map(|_| ())
}

/// The lookup thread: resolve the name and/or wait for upstream (bounded), answer again,
/// send through the kernel socket. Ends
/// when every sender (the workers' [`Shared`]) is gone.
pub fn resolver(
    queue: crossbeam_channel::Receiver<Deferred>,
    responder: &dyn Responder,
    names: &NameCache,
    kernel: &UdpSocket,
) {
    let mut out = vec![0u8; UDP_MAX_MESSAGE];
    while let Ok(job) = queue.recv() {
        if let Answer::Reply { len, .. } =
            answer_deferred(responder, names, &job.request, job.peer, &mut out)
        {
            if let Some(reply) = out.get(..len) {
                if let Err(e) = send_via_kernel(kernel, reply, job.peer) {
                    tracing::debug!(peer = %job.peer, error = %e, "UDP send failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use mount_proto::exports::HostFacts;

    use super::*;
    use mount_xdp::xsk::FRAME_SIZE;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    /// Replies "R" + the request, or a `big` reply of 3000 bytes, or nothing.
    struct Echo;

    impl Responder for Echo {
        fn respond(
            &self,
            req: &[u8],
            _: SocketAddr,
            _: Option<&HostFacts>,
            out: &mut [u8],
        ) -> Answer {
            match req {
                b"drop" => Answer::Drop,
                b"big" => {
                    out[..3000].fill(b'B');
                    Answer::Reply {
                        len: 3000,
                        truncated: false,
                    }
                }
                _ => {
                    out[0] = b'R';
                    out[1..=req.len()].copy_from_slice(req);
                    Answer::Reply {
                        len: req.len() + 1,
                        truncated: false,
                    }
                }
            }
        }
    }

    fn shared(kernel: UdpSocket) -> Shared {
        let kernel_local = std::net::Ipv6Addr::UNSPECIFIED.into();
        let (lookups, _) = crossbeam_channel::bounded(1);
        Shared {
            responder: Arc::new(Echo),
            names: Arc::new(NameCache::with_lookup(Box::new(|_| None))),
            lookups,
            kernel: Arc::new(kernel),
            mtu: 1500,
            local: kernel_local,
            stop: Arc::new(AtomicBool::new(false)),
            errors: LogThrottle::new(Duration::from_secs(10)),
        }
    }

    /// Ethernet + IPv4 with 4 bytes of options (so the reply payload, which has none,
    /// starts before the request payload: the overlap case) + UDP to port 644.
    /// A client socket on loopback that waits up to 5 s for an answer.
    fn loopback_client() -> UdpSocket {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
    }

    fn request(src: Ipv4Addr, src_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        let total = (24 + 8 + payload.len()) as u16;
        let mut ip = vec![0x46, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&[10, 0, 0, 1]);
        ip.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        let sum = mount_proto::packet::checksum::ipv4_header(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&src_port.to_be_bytes());
        f.extend_from_slice(&644u16.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // partial/absent checksum, as over veth
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn reply_is_written_in_place_with_full_checksums() {
        let s = shared(UdpSocket::bind("127.0.0.1:0").unwrap());
        let c = QueueCounters::default();
        let payload: Vec<u8> = (0..100u8).collect();
        let mut frame = request(Ipv4Addr::new(10, 0, 0, 2), 4000, &payload);
        let len = frame.len();
        frame.resize(FRAME_SIZE - 256, 0xEE); // a UMEM chunk after the copy-mode headroom
        let mut scratch = vec![0u8; UDP_MAX_MESSAGE];
        let out = handle(&s, &c, &mut frame, len, &mut scratch).unwrap() as usize;

        let (eth, rest) = etherparse::Ethernet2Header::from_slice(&frame[..out]).unwrap();
        assert_eq!(eth.destination, [2, 0, 0, 0, 0, 2]);
        assert_eq!(eth.source, [2, 0, 0, 0, 0, 1]);
        let (ip, rest) = etherparse::Ipv4Header::from_slice(rest).unwrap();
        assert_eq!(ip.source, [10, 0, 0, 1]);
        assert_eq!(ip.destination, [10, 0, 0, 2]);
        assert!(ip.options.is_empty());
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        let (udp, body) = etherparse::UdpHeader::from_slice(rest).unwrap();
        assert_eq!((udp.source_port, udp.destination_port), (644, 4000));
        let mut want = vec![b'R'];
        want.extend_from_slice(&payload);
        assert_eq!(
            body,
            &want[..],
            "request read before the reply overwrote it"
        );
        assert_eq!(
            udp.checksum,
            udp.calc_checksum_ipv4_raw(ip.source, ip.destination, body)
                .unwrap()
        );
        assert_eq!(c.tx.load(Ordering::Relaxed), 1);
        let per_proc = crate::stats::calls::proc_totals(&c.calls.snapshot());
        assert_eq!(per_proc[crate::stats::procs::PROC_SLOTS - 1], 1);
    }

    #[test]
    fn larger_than_mtu_goes_through_the_kernel_socket() {
        let client = loopback_client();
        let port = client.local_addr().unwrap().port();
        let s = shared(UdpSocket::bind("127.0.0.1:0").unwrap());
        let c = QueueCounters::default();
        let mut frame = request(Ipv4Addr::LOCALHOST, port, b"big");
        let len = frame.len();
        frame.resize(FRAME_SIZE, 0);
        let mut scratch = vec![0u8; UDP_MAX_MESSAGE];
        assert_eq!(handle(&s, &c, &mut frame, len, &mut scratch), None);
        let mut buf = [0u8; 4096];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(n, 3000, "whole, not truncated");
        assert!(buf[..n].iter().all(|&b| b == b'B'));
        assert_eq!(from, s.kernel.local_addr().unwrap());
        assert_eq!(c.via_kernel.load(Ordering::Relaxed), 1);
        assert_eq!(c.tx.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn calls_to_a_broadcast_address_are_answered_by_the_kernel_socket() {
        let client = loopback_client();
        let port = client.local_addr().unwrap().port();
        let s = shared(UdpSocket::bind("127.0.0.1:0").unwrap());
        let c = QueueCounters::default();
        let mut frame = request(Ipv4Addr::LOCALHOST, port, b"hello");
        frame[..6].fill(0xff); // to the broadcast MAC
        let len = frame.len();
        frame.resize(FRAME_SIZE, 0);
        let mut scratch = vec![0u8; UDP_MAX_MESSAGE];
        assert_eq!(handle(&s, &c, &mut frame, len, &mut scratch), None);
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"Rhello");
        assert_eq!(c.via_kernel.load(Ordering::Relaxed), 1);
        assert!(!is_unicast("255.255.255.255".parse().unwrap()));
        assert!(!is_unicast("ff02::1".parse().unwrap()));
        assert!(is_unicast("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn only_calls_to_the_bound_address_are_answered() {
        let any6: IpAddr = "::".parse().unwrap();
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(serves(any6, one) && serves(any6, v6));
        assert!(serves(any4, one) && !serves(any4, v6));
        assert!(serves(one, one) && !serves(one, other) && !serves(one, v6));
        let mut s = shared(UdpSocket::bind("127.0.0.1:0").unwrap());
        s.local = other;
        let c = QueueCounters::default();
        let mut frame = request(Ipv4Addr::new(10, 0, 0, 2), 4000, b"x");
        let len = frame.len();
        frame.resize(FRAME_SIZE, 0);
        let mut scratch = vec![0u8; UDP_MAX_MESSAGE];
        assert_eq!(handle(&s, &c, &mut frame, len, &mut scratch), None);
        assert_eq!(c.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn invalid_frames_and_drops_are_counted() {
        let s = shared(UdpSocket::bind("127.0.0.1:0").unwrap());
        let c = QueueCounters::default();
        let mut scratch = vec![0u8; UDP_MAX_MESSAGE];
        let mut frame = request(Ipv4Addr::new(10, 0, 0, 2), 4000, b"drop");
        let len = frame.len();
        assert_eq!(handle(&s, &c, &mut frame, len, &mut scratch), None);
        // A broadcast source cannot be answered; a runt is not a frame.
        let mut frame = request(Ipv4Addr::BROADCAST, 4000, b"x");
        let len = frame.len();
        assert_eq!(handle(&s, &c, &mut frame, len, &mut scratch), None);
        assert_eq!(handle(&s, &c, &mut [0u8; 10], 10, &mut scratch), None);
        // A length beyond the chunk is refused, not trusted.
        assert_eq!(handle(&s, &c, &mut [0u8; 10], 4000, &mut scratch), None);
        assert_eq!(c.dropped.load(Ordering::Relaxed), 4);
        assert_eq!(c.tx.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn kernel_send_maps_ipv4_peers_on_a_dual_stack_socket() {
        let Ok(dual) = UdpSocket::bind("[::]:0") else {
            return; // no IPv6 here
        };
        let client = loopback_client();
        send_via_kernel(&dual, b"hi", client.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
