//! The AF_XDP worker's path from RX descriptor to TX descriptor does not touch the heap:
//! frame parse, the protocol core (NULL, MNT of a listed export, EXPORT), the in-place
//! reply with checksums. Counted with a per-thread counting global allocator.

use std::net::UdpSocket;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use mount_proto::mount::Policy;
use mount_proto::mountlist::MountList;
use mount_user::afxdp::worker::{handle, QueueCounters, Shared};
use mount_user::exports::{parse_str, SharedExports};
use mount_user::log_throttle::LogThrottle;
use mount_user::service::mount::MountService;
use mount_user::service::names::NameCache;
use mount_user::socket::udp::UDP_MAX_MESSAGE;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

fn rpc(xid: u32, vers: u32, procedure: u32, args: &[u8]) -> Vec<u8> {
    let mut m: Vec<u8> = [xid, 0, 2, 100_005, vers, procedure, 0, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    m.extend_from_slice(args);
    m
}

fn path(p: &str) -> Vec<u8> {
    let mut v = (p.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(p.as_bytes());
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

/// Ethernet + IPv4 + UDP from 10.1.2.3:700 to 10.0.0.1:644, in a 4 KiB chunk.
fn frame_v4(payload: &[u8]) -> (Vec<u8>, usize) {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 2, 3, 10, 0, 0, 1,
    ];
    ip[2..4].copy_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
    let sum = mount_proto::packet::checksum::ipv4_header(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&700u16.to_be_bytes());
    f.extend_from_slice(&644u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let len = f.len();
    f.resize(4096 - 256, 0);
    (f, len)
}

/// The same over IPv6 from fd00::3 to fd00::1.
fn frame_v6(payload: &[u8]) -> (Vec<u8>, usize) {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xDD];
    let mut ip = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
    ip[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    let src: std::net::Ipv6Addr = "fd00::3".parse().unwrap();
    let dst: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&700u16.to_be_bytes());
    f.extend_from_slice(&644u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34]);
    f.extend_from_slice(payload);
    let len = f.len();
    f.resize(4096 - 256, 0);
    (f, len)
}

#[test]
fn rx_to_tx_does_not_allocate() {
    let table = parse_str(
        "/srv/a 10.0.0.0/8(rw,insecure) fd00::/8(rw,insecure)\n/srv/b *(ro,insecure)\n",
        "test",
    )
    .unwrap();
    let exports = Arc::new(SharedExports::new(table));
    let service = MountService::new(exports, Arc::new(MountList::new()), Policy::default());
    let (lookups, _rx) = crossbeam_channel::bounded(1);
    let shared = Shared {
        responder: Arc::new(service),
        names: Arc::new(NameCache::new()),
        lookups,
        kernel: Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap()),
        mtu: 1500,
        local: "::".parse().unwrap(),
        stop: Arc::new(AtomicBool::new(false)),
        errors: LogThrottle::new(Duration::from_secs(10)),
    };
    let counters = QueueCounters::default();
    let mut scratch = vec![0u8; UDP_MAX_MESSAGE];
    let calls = [
        ("NULL", rpc(1, 3, 0, &[])),
        ("MNT v3", rpc(2, 3, 1, &path("/srv/a"))),
        ("MNT v1", rpc(3, 1, 1, &path("/srv/a"))),
        ("EXPORT", rpc(4, 3, 5, &[])),
    ];
    for (name, call) in &calls {
        for (family, (mut frame, len)) in [("v4", frame_v4(call)), ("v6", frame_v6(call))] {
            // Once unmeasured: the first MNT adds the mount list entry, the first load of
            // the export table registers this thread with arc-swap.
            let mut warm = frame.clone();
            assert!(handle(&shared, &counters, &mut warm, len, &mut scratch).is_some());
            let mut out = None;
            let n = allocations(|| {
                out = handle(&shared, &counters, &mut frame, len, &mut scratch);
            });
            assert!(out.is_some(), "{name} {family}: no in-place reply");
            assert_eq!(n, 0, "{name} {family}: {n} allocation(s) from RX to TX");
        }
    }
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 8]))) >= 1);
}
