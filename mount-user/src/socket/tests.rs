//! In-process tests of the UDP and TCP shells on loopback with ephemeral ports, driven by a
//! fake responder (the real protocol core is exercised in `service`'s tests).
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use mount_proto::exports::HostFacts;
use mount_proto::rpc::record::LAST_FRAGMENT;

use super::tcp::{self, TcpConfig};
use super::udp::UdpServer;
use super::{bind_tcp, bind_udp_group, Counters};
use crate::service::names::NameCache;
use crate::service::{Answer, Responder};

/// Replies "re:" + request; "peer" → the peer address; "name" → the host name (asking for
/// it first); "drop" → nothing.
struct Fake;

impl Responder for Fake {
    fn respond(
        &self,
        req: &[u8],
        peer: SocketAddr,
        host: Option<&HostFacts>,
        out: &mut [u8],
    ) -> Answer {
        let reply: Vec<u8> = match req {
            b"drop" => return Answer::Drop,
            b"peer" => peer.to_string().into_bytes(),
            b"name" => match host {
                None => return Answer::NeedName,
                Some(h) => h.name.as_bytes().to_vec(),
            },
            _ => [b"re:", req].concat(),
        };
        let len = reply.len().min(out.len());
        out[..len].copy_from_slice(&reply[..len]);
        Answer::Reply {
            len,
            truncated: len < reply.len(),
        }
    }
}

fn names() -> Arc<NameCache> {
    Arc::new(NameCache::with_lookup(Box::new(|_| {
        Some("client.example".into())
    })))
}

fn udp_call(server: SocketAddr, client: &UdpSocket, req: &[u8]) -> Option<Vec<u8>> {
    client.send_to(req, server).unwrap();
    let mut buf = [0u8; 9000];
    match client.recv_from(&mut buf) {
        Ok((n, from)) => {
            assert_eq!(from, server, "reply from the address called");
            Some(buf[..n].to_vec())
        }
        Err(_) => None,
    }
}

#[test]
fn udp_workers_answer_drop_and_resolve() {
    let sockets = bind_udp_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let addr = sockets[0].local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    assert_eq!(sockets[1].local_addr().unwrap(), addr);
    let counters = Arc::new(Counters::default());
    let server =
        UdpServer::start(sockets, Arc::new(Fake), names(), counters.clone(), None).unwrap();

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(udp_call(addr, &client, b"hello").unwrap(), b"re:hello");
    let me = client.local_addr().unwrap().to_string();
    assert_eq!(udp_call(addr, &client, b"peer").unwrap(), me.as_bytes());
    // Through the resolver thread, then from the cache.
    assert_eq!(udp_call(addr, &client, b"name").unwrap(), b"client.example");
    assert_eq!(udp_call(addr, &client, b"name").unwrap(), b"client.example");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(udp_call(addr, &client, b"drop"), None);

    // A burst larger than one batch is answered completely.
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for i in 0..100 {
        client.send_to(format!("{i}").as_bytes(), addr).unwrap();
    }
    let mut got = std::collections::BTreeSet::new();
    let mut buf = [0u8; 64];
    for _ in 0..100 {
        let (n, _) = client.recv_from(&mut buf).unwrap();
        got.insert(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    assert_eq!(got.len(), 100);
    assert!(got.contains("re:99"));

    server.stop();
    assert!(
        counters
            .udp_replies
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 104
    );
    assert_eq!(
        counters
            .name_lookups
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn udp_dual_stack_sees_ipv4_clients_as_mapped() {
    let Ok(sockets) = bind_udp_group("[::]:0".parse().unwrap(), 1) else {
        eprintln!("no IPv6 here; skipped");
        return;
    };
    let port = sockets[0].local_addr().unwrap().port();
    let server = UdpServer::start(sockets, Arc::new(Fake), names(), Arc::default(), None).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let reply = udp_call(target, &client, b"peer").unwrap();
    let expected = format!("[::ffff:127.0.0.1]:{}", client.local_addr().unwrap().port());
    assert_eq!(String::from_utf8(reply).unwrap(), expected);
    // A late reply from a resolver thread (sent with sendmsg and the call's pktinfo).
    assert_eq!(
        udp_call(target, &client, b"name").unwrap(),
        b"client.example"
    );
    // IPv6 on the same socket (replies carry IPV6_PKTINFO; IPv4 ones IP_PKTINFO).
    if let Ok(client6) = UdpSocket::bind("[::1]:0") {
        client6
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let target6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let reply = udp_call(target6, &client6, b"peer").unwrap();
        assert_eq!(reply, client6.local_addr().unwrap().to_string().as_bytes());
        assert_eq!(
            udp_call(target6, &client6, b"name").unwrap(),
            b"client.example"
        );
    }
    server.stop();
}

fn record(fragments: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, f) in fragments.iter().enumerate() {
        let mut word = f.len() as u32;
        if i + 1 == fragments.len() {
            word |= LAST_FRAGMENT;
        }
        v.extend(word.to_be_bytes());
        v.extend(*f);
    }
    v
}

fn read_record(s: &mut TcpStream) -> Vec<u8> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).unwrap();
    let word = u32::from_be_bytes(h);
    assert!(
        word & LAST_FRAGMENT != 0,
        "replies are single last fragments"
    );
    let mut body = vec![0u8; (word & !LAST_FRAGMENT) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

/// True when the server closed the connection (EOF or reset) within 2 s.
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Serves `responder` over TCP on loopback (4 connections, 5 s idle, 8 KiB records) while
/// `client` runs on its own thread with the address and the stop sender; returns what
/// `client` returned once the server has stopped.
fn against_tcp<T: Send + 'static>(
    responder: Arc<dyn Responder>,
    client: impl FnOnce(SocketAddr, tokio::sync::watch::Sender<bool>) -> T + Send + 'static,
) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = TcpConfig {
        max_connections: 4,
        max_per_host: 4,
        record_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        max_record: 8192,
        reply_capacity: tcp::TCP_REPLY_CAPACITY,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let client = std::thread::spawn(move || client(addr, stop));
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tcp::serve(
            listener,
            responder,
            names(),
            Arc::default(),
            config,
            None,
            stop_rx,
        )
        .await;
    });
    client.join().unwrap()
}

#[test]
fn tcp_shell_pipelines_frames_and_enforces_limits() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = TcpConfig {
        max_connections: 3,
        max_per_host: 2,
        record_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(1),
        max_record: 64,
        reply_capacity: 1024,
    };
    let counters = Arc::new(Counters::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let counters = counters.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tcp::serve(
                listener,
                Arc::new(Fake),
                names(),
                counters,
                config,
                None,
                stop_rx,
            )
            .await;
        })
    };

    let mut a = TcpStream::connect(addr).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Three pipelined calls in one write: a multi-fragment one, a dropped one, a name one.
    let mut bytes = record(&[b"he", b"", b"llo"]);
    bytes.extend(record(&[b"drop"]));
    bytes.extend(record(&[b"name"]));
    bytes.extend(record(&[b"x"]));
    a.write_all(&bytes).unwrap();
    assert_eq!(read_record(&mut a), b"re:hello");
    assert_eq!(read_record(&mut a), b"client.example");
    assert_eq!(read_record(&mut a), b"re:x");
    // A record trickled in byte by byte.
    for b in record(&[b"slow"]) {
        a.write_all(&[b]).unwrap();
    }
    assert_eq!(read_record(&mut a), b"re:slow");

    // Per-host cap (every client here is 127.0.0.1): a second fits, a third is closed at
    // once; the first still works. (Eviction at the total cap: admission.rs and e2e.)
    let mut b = TcpStream::connect(addr).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    b.write_all(&record(&[b"b"])).unwrap();
    assert_eq!(read_record(&mut b), b"re:b");
    let mut c = TcpStream::connect(addr).unwrap();
    assert!(closed(&mut c));
    a.write_all(&record(&[b"still"])).unwrap();
    assert_eq!(read_record(&mut a), b"re:still");

    // An oversized record closes only its connection.
    b.write_all(&record(&[&[0u8; 40], &[0u8; 40]])).unwrap();
    assert!(closed(&mut b));
    a.write_all(&record(&[b"ok"])).unwrap();
    assert_eq!(read_record(&mut a), b"re:ok");

    // A record dribbled a byte at a time is closed at its deadline, though every byte
    // comes well within the idle timeout.
    let mut d = TcpStream::connect(addr).unwrap();
    let started = std::time::Instant::now();
    let dribble = record(&[b"dribble-dribble"]);
    let mut cut_off = false;
    for b in &dribble {
        if d.write_all(&[*b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cut_off || closed(&mut d),
        "the dribbling connection is closed"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "closed by the record deadline, not at the end"
    );

    // Idle connections are closed after the timeout.
    std::thread::sleep(Duration::from_millis(1300));
    assert!(closed(&mut a));

    stop.send(true).unwrap();
    rt.block_on(server).unwrap();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&counters.tcp_refused_host), 1);
    assert_eq!(get(&counters.tcp_record_timeout), 1);
    assert_eq!(get(&counters.tcp_oversize), 1);
    assert_eq!(get(&counters.tcp_replies), 7);
}

mod with_core {
    //! The shells around the real protocol core: NULL and MNT over UDP and TCP.
    use mount_proto::mount::{Policy, MOUNT_PROGRAM};
    use mount_proto::mountlist::MountList;
    use mount_proto::rpc::{encode_call, AcceptStat, AuthSys, Credential, Reply, ReplyBody};

    use super::*;
    use crate::exports::{parse_str, SharedExports};
    use crate::service::mount::MountService;

    fn call(xid: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
        let sys = AuthSys::new(1, b"test", 0, 0, &[]).unwrap();
        let mut buf = [0u8; 512];
        let n = encode_call(
            &mut buf,
            xid,
            MOUNT_PROGRAM,
            3,
            proc_,
            &Credential::Sys(sys),
            args,
        )
        .unwrap();
        buf[..n].to_vec()
    }

    fn mnt_args(path: &str) -> Vec<u8> {
        let mut v = (path.len() as u32).to_be_bytes().to_vec();
        v.extend(path.as_bytes());
        v.resize(v.len().next_multiple_of(4), 0);
        v
    }

    /// The results of an accepted, successful reply to `xid`.
    fn results(xid: u32, reply: &[u8]) -> Vec<u8> {
        let reply = Reply::parse(reply).unwrap();
        assert_eq!(reply.xid, xid);
        match reply.body {
            ReplyBody::Accepted {
                stat: AcceptStat::Success,
                results,
                ..
            } => results.to_vec(),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// `/srv` for 127.0.0.1 by address; `/w` only for hosts named `*.example` (the fake
    /// name cache calls every peer client.example).
    const EXPORTS: &str = "/srv 127.0.0.1(rw,insecure)\n/w *.example(ro,insecure)\n";

    fn service() -> (Arc<MountService>, Arc<MountList>) {
        let table = parse_str(EXPORTS, "test").unwrap();
        let mounts = Arc::new(MountList::new());
        let svc = MountService::new(
            Arc::new(SharedExports::new(table)),
            mounts.clone(),
            Policy::default(),
        );
        (Arc::new(svc), mounts)
    }

    #[test]
    fn null_and_mnt_over_udp() {
        let (svc, mounts) = service();
        let sockets = bind_udp_group("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = sockets[0].local_addr().unwrap();
        let server = UdpServer::start(sockets, svc, names(), Arc::default(), None).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let reply = udp_call(addr, &client, &call(11, 0, &[])).unwrap();
        assert!(results(11, &reply).is_empty());
        let reply = udp_call(addr, &client, &call(12, 1, &mnt_args("/srv"))).unwrap();
        assert_eq!(results(12, &reply)[..4], [0, 0, 0, 0], "MNT3_OK");
        assert!(mounts.contains("127.0.0.1", "/srv"));
        // Needs the host name: answered by a resolver thread.
        let reply = udp_call(addr, &client, &call(13, 1, &mnt_args("/w"))).unwrap();
        assert_eq!(results(13, &reply)[..4], [0, 0, 0, 0], "MNT3_OK");
        assert!(mounts.contains("127.0.0.1", "/w"));
        server.stop();
    }

    #[test]
    fn null_and_mnt_over_tcp() {
        let (svc, mounts) = service();
        let (null, mnt, named) = against_tcp(svc, |addr, stop| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut bytes = record(&[&call(21, 0, &[])]);
            bytes.extend(record(&[&call(22, 1, &mnt_args("/srv/sub"))]));
            bytes.extend(record(&[&call(23, 1, &mnt_args("/w"))]));
            s.write_all(&bytes).unwrap();
            let null = read_record(&mut s);
            let mnt = read_record(&mut s);
            let named = read_record(&mut s);
            stop.send(true).unwrap();
            (null, mnt, named)
        });
        assert!(results(21, &null).is_empty());
        assert_eq!(results(22, &mnt)[..4], [0, 0, 0, 0], "MNT3_OK");
        assert!(mounts.contains("127.0.0.1", "/srv/sub"));
        assert_eq!(results(23, &named)[..4], [0, 0, 0, 0], "MNT3_OK");
    }
}

mod truncation {
    //! Long EXPORT lists: cut to a datagram over UDP (and counted), whole over TCP.
    use std::sync::atomic::Ordering;

    use mount_proto::mount::{Policy, MOUNT_PROGRAM};
    use mount_proto::mountlist::MountList;
    use mount_proto::rpc::{encode_call, Credential};

    use super::*;
    use crate::exports::{parse_str, SharedExports};
    use crate::service::mount::MountService;
    use crate::socket::udp::UDP_MAX_MESSAGE;

    fn service() -> Arc<MountService> {
        let text: String = (0..400)
            .map(|i| format!("/export/a/rather/long/path/number/{i:04} *(ro)\n"))
            .collect();
        let table = parse_str(&text, "test").unwrap();
        assert!(table.export_list_xdr().len() > 2 * UDP_MAX_MESSAGE);
        Arc::new(MountService::new(
            Arc::new(SharedExports::new(table)),
            Arc::new(MountList::new()),
            Policy::default(),
        ))
    }

    fn export_call(xid: u32) -> Vec<u8> {
        let mut buf = [0u8; 128];
        let n = encode_call(&mut buf, xid, MOUNT_PROGRAM, 3, 5, &Credential::None, &[]).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn export_list_is_cut_over_udp_and_whole_over_tcp() {
        let counters = Arc::new(Counters::default());
        let sockets = bind_udp_group("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = sockets[0].local_addr().unwrap();
        let server = UdpServer::start(sockets, service(), names(), counters.clone(), None).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let udp_reply = udp_call(addr, &client, &export_call(1)).unwrap();
        server.stop();
        assert!(udp_reply.len() <= UDP_MAX_MESSAGE && udp_reply.len() > UDP_MAX_MESSAGE / 2);
        assert_eq!(counters.udp_truncated.load(Ordering::Relaxed), 1);

        let tcp_reply = against_tcp(service(), |addr, stop| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(&record(&[&export_call(2)])).unwrap();
            let reply = read_record(&mut s);
            stop.send(true).unwrap();
            reply
        });
        assert!(tcp_reply.len() > 2 * UDP_MAX_MESSAGE);
        // The UDP list is a prefix of the TCP one (same header, entries cut at a boundary).
        assert_eq!(
            udp_reply[4..udp_reply.len() - 4],
            tcp_reply[4..udp_reply.len() - 4]
        );
    }
}
