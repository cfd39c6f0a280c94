//! Robustness: a burst of random and half-valid datagrams (and TCP garbage), after which the
//! daemon is alive and answers correctly.

use e2e::xdr::XdrWriter;
use e2e::*;
use std::io::Write;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One fuzz datagram of a few kinds: pure noise, a valid header prefix followed by noise,
/// a full valid call with noise arguments, or a valid call with one word flipped.
fn fuzz_datagram(rng: &mut Rng) -> Vec<u8> {
    let kind = rng.below(4);
    let vers = rng.below(5) as u32;
    let proc_ = rng.below(9) as u32;
    match kind {
        0 => {
            let n = rng.below(1400) as usize;
            rng.bytes(n)
        }
        1 => {
            let mut w = XdrWriter::new();
            w.u32(rng.next() as u32)
                .u32(0)
                .u32(2)
                .u32(MOUNT_PROG)
                .u32(vers)
                .u32(proc_);
            let full = w.into_bytes();
            let cut = rng.below(full.len() as u64 + 1) as usize;
            let mut v = full[..cut].to_vec();
            let n = rng.below(600) as usize;
            v.extend(rng.bytes(n));
            v
        }
        2 => {
            let n = rng.below(1100) as usize;
            let mut args = rng.bytes(n);
            if rng.below(2) == 0 && args.len() >= 4 {
                // A plausible length word that still lies.
                let l = (rng.below(2000) as u32).to_be_bytes();
                args[..4].copy_from_slice(&l);
            }
            Call::mount(vers, proc_).with_args(args).encode()
        }
        _ => {
            let mut v = Call::mount_path(vers, proc_, "/srv/a").encode();
            let i = rng.below(v.len() as u64 / 4) as usize * 4;
            let w = rng.next() as u32;
            v[i..i + 4].copy_from_slice(&w.to_be_bytes());
            v
        }
    }
}

#[test]
fn random_datagram_burst_then_correct_mnt() {
    let Some(pair) = NetPair::new("random_datagram_burst") else {
        return;
    };
    let mut d = pair.start_standard();
    let v4 = pair.srv_addr(false, PORT);
    let v6 = pair.srv_addr(true, PORT);
    let sent = pair.in_client(move || {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let u4 = UdpClient::new(v4, SrcPort::High).unwrap();
        let u6 = UdpClient::new(v6, SrcPort::Privileged).unwrap();
        let start = Instant::now();
        let mut sent = 0;
        for i in 0..2000 {
            if start.elapsed() > Duration::from_secs(20) {
                break;
            }
            let dg = fuzz_datagram(&mut rng);
            let s = if i % 3 == 0 { &u6 } else { &u4 };
            // ENOBUFS etc. are fine under a burst; the count is what was handed to the kernel.
            if s.send(&dg).is_ok() {
                sent += 1;
            }
            if i % 200 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // TCP garbage too: random bytes on a few connections.
        for _ in 0..8 {
            if let Ok(mut t) = TcpClient::connect(v4, SrcPort::High) {
                let n = rng.below(3000) as usize;
                let _ = t.stream.write_all(&rng.bytes(n));
            }
        }
        sent
    });
    assert!(sent >= 1900, "only {sent} of 2000 datagrams could be sent");
    assert!(d.alive(), "daemon died during the burst:\n{}", d.stderr());
    pair.in_client(move || {
        for (server, v6) in [(v4, false), (v6, true)] {
            for proto in [Proto::Udp, Proto::Tcp] {
                let mut c = RpcClient::new(proto, server, SrcPort::Privileged).unwrap();
                let (st, ok) = c.mnt3("/srv/a");
                assert_eq!(st, status::OK, "MNT after burst {proto:?} v6={v6}");
                assert_eq!(ok.unwrap(), (synthetic_handle("/srv/a"), vec![1]));
                assert_eq!(c.mnt12(1, "/srv/secure").0, status::OK);
                assert_eq!(
                    c.exports(3, procs::EXPORT),
                    e2e::fixtures::standard_export_list(server_n(server))
                );
            }
        }
    });
    assert!(d.alive(), "daemon died:\n{}", d.stderr());
    let st = d.stop();
    assert_eq!(
        st.code(),
        Some(0),
        "exit 0 after SIGTERM following the burst"
    );
}

/// N from 10.77.N.1 or fd77:N::1.
fn server_n(a: std::net::SocketAddr) -> u8 {
    match a.ip() {
        std::net::IpAddr::V4(v) => v.octets()[2],
        std::net::IpAddr::V6(v) => v.segments()[1] as u8,
    }
}

#[test]
fn slow_and_idle_tcp_clients_do_not_block_others() {
    let Some(pair) = NetPair::new("slow_tcp_clients") else {
        return;
    };
    let _d = pair.start_standard();
    let server = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        // Connections that send half a record mark and then stall.
        let mut stalled = Vec::new();
        for _ in 0..16 {
            let mut t = TcpClient::connect(server, SrcPort::High).unwrap();
            t.stream.write_all(&[0x80, 0]).unwrap();
            stalled.push(t);
        }
        // Others are served promptly, over both transports.
        let t0 = Instant::now();
        for proto in [Proto::Udp, Proto::Tcp] {
            let mut c = RpcClient::new(proto, server, SrcPort::High).unwrap();
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
        }
        // A liveness bound: stalled peers must not block others until their idle timeout
        // (120 s); not a latency target.
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "stalled connections slowed others down: {:?}",
            t0.elapsed()
        );
        drop(stalled);
    });
}

/// Maximal datagrams (64 KiB of junk after a valid header, and after a valid MNT) are
/// handled without harm.
#[test]
fn maximal_datagrams() {
    let Some(pair) = NetPair::new("maximal_datagrams") else {
        return;
    };
    let mut d = pair.start_standard();
    let v4 = pair.srv_addr(false, PORT);
    let v6 = pair.srv_addr(true, PORT);
    pair.in_client(move || {
        for server in [v4, v6] {
            let u = UdpClient::new(server, SrcPort::High).unwrap();
            let max = if server.is_ipv4() { 65_507 } else { 65_487 };
            let mut rng = Rng(42);
            for base in [
                Call::mount(3, procs::NULL).encode(),
                Call::mount_path(3, procs::MNT, "/srv/a").encode(),
                Call::mount(3, procs::EXPORT).encode(),
            ] {
                let mut dg = base.clone();
                dg.extend(rng.bytes(max - base.len()));
                u.send(&dg).unwrap();
                // Whatever the verdict (an answer or silence), it must be well-formed.
                if let Some(r) = u.recv(Duration::from_millis(500)).unwrap() {
                    Reply::parse(&r).unwrap();
                }
            }
            let mut c = RpcClient::Udp(u);
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
        }
    });
    assert!(d.alive());
}
