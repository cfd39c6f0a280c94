//! Privileged smoke test of the XDP program and its loader on a veth pair between two
//! network namespaces created (and removed) here. Needs root; prints SKIPPED otherwise
//! (and fails under CI=true, where root is expected).

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use mount_ebpf::Counter;
use mount_proto::packet;
use mount_xdp::ebpf::{Counters, XdpAttachment, XdpMode};

#[path = "support/afxdp_bed.rs"]
mod bed;
#[path = "support/inject.rs"]
mod inject;
#[path = "support/raw_xsk.rs"]
mod raw_xsk;

use bed::{ip, privileged, xdp_attached_in, Bed};

const PORT: u16 = 644;
const OTHER_PORT: u16 = 2049;
const SRV_V4: &str = "10.231.0.1";
const CLI_V4: &str = "10.231.0.2";
const SRV_V6: &str = "fd00:231::1";
const CLI_V6: &str = "fd00:231::2";
const SRV_IF: &str = "xsm-srv";
const CLI_IF: &str = "xsm-cli";

/// Two namespaces joined by a veth pair; removed on drop, also when a test panics.
struct Testbed {
    srv: String,
    cli: String,
    _pair: testbed::Pair,
}

impl Testbed {
    fn new() -> Testbed {
        let pair = bed::pair(
            [SRV_IF, CLI_IF],
            1,
            [SRV_V4, CLI_V4].map(|a| a.parse().unwrap()),
            [SRV_V6, CLI_V6].map(|a| a.parse().unwrap()),
        );
        Testbed {
            srv: pair.server().ns.clone(),
            cli: pair.client().ns.clone(),
            _pair: pair,
        }
    }

    fn attach(&self, mode: XdpMode, port: u16) -> anyhow::Result<XdpAttachment> {
        Bed::run_in(&self.srv, || XdpAttachment::attach(SRV_IF, mode, port))
    }

    /// Sends `count` datagrams from the client namespace to the server's `port`.
    fn send(&self, server_ip: &str, client_ip: &str, port: u16, count: usize) {
        let to = SocketAddr::new(server_ip.parse().unwrap(), port);
        let from = SocketAddr::new(client_ip.parse().unwrap(), 0);
        Bed::run_in(&self.cli, || {
            let sock = UdpSocket::bind(from).unwrap();
            for i in 0..count {
                sock.send_to(&[i as u8; 40], to).unwrap();
            }
        });
    }

    /// From the client namespace, sends `payload` to the server's `port` and waits
    /// (up to 5 s) for one answer; returns it and who sent it.
    fn spawn_client(
        &self,
        server_ip: &str,
        client_ip: &str,
        port: u16,
        payload: &'static [u8],
    ) -> thread::JoinHandle<(Vec<u8>, SocketAddr)> {
        let to = SocketAddr::new(server_ip.parse().unwrap(), port);
        let from = SocketAddr::new(client_ip.parse().unwrap(), 0);
        let cli = self.cli.clone();
        thread::spawn(move || {
            Bed::run_in(&cli, || {
                let sock = UdpSocket::bind(from).unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                sock.send_to(payload, to).unwrap();
                let mut buf = [0u8; 2048];
                let (n, peer) = sock.recv_from(&mut buf).unwrap();
                (buf[..n].to_vec(), peer)
            })
        })
    }

    fn xdp_attached(&self) -> bool {
        xdp_attached_in(&self.srv, SRV_IF)
    }
}

/// Waits until the counters stop moving (veth delivery is asynchronous).
fn settled(att: &XdpAttachment) -> Counters {
    let mut last = att.counters().unwrap();
    for _ in 0..50 {
        thread::sleep(Duration::from_millis(50));
        let now = att.counters().unwrap();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

fn check_mode(mode: XdpMode) {
    let bed = Testbed::new();
    let att = bed.attach(mode, PORT).unwrap();
    assert!(bed.xdp_attached());
    bed.send(SRV_V4, CLI_V4, PORT, 20);
    bed.send(SRV_V6, CLI_V6, PORT, 20);
    bed.send(SRV_V4, CLI_V4, OTHER_PORT, 10);
    let c = settled(&att);
    println!("{mode:?}: {:?}", c.iter().collect::<Vec<_>>());
    // No socket in the XSKMAP: the redirect falls back to XDP_PASS and is counted so.
    assert_eq!(c.get(Counter::Redirected), 0);
    assert_eq!(c.get(Counter::PassedNoSocket), 40);
    assert!(c.get(Counter::PassedOtherPort) >= 10);
    // ARP requests from the client.
    assert!(c.get(Counter::PassedNotIp) >= 1);
    let others: u64 = c
        .iter()
        .filter(|(k, _)| *k != Counter::Seen)
        .map(|(_, v)| v)
        .sum();
    assert_eq!(c.get(Counter::Seen), others, "one outcome per frame");

    // Port 0 steers nothing.
    let mut att = att;
    att.set_port(0).unwrap();
    bed.send(SRV_V4, CLI_V4, PORT, 5);
    let after = settled(&att);
    assert_eq!(after.get(Counter::PassedNoSocket), 40);
    assert!(after.get(Counter::PassedOtherPort) >= c.get(Counter::PassedOtherPort) + 5);

    drop(att);
    assert!(
        !bed.xdp_attached(),
        "program left on the interface after drop"
    );
}

#[test]
fn generic_mode_counts() {
    if privileged() {
        check_mode(XdpMode::Generic);
    }
}

#[test]
fn native_mode_counts() {
    if privileged() {
        check_mode(XdpMode::Native);
    }
}

/// Hand-made frames reach each classification branch exactly as often as sent.
fn check_branches(mode: XdpMode) {
    use inject::{eth, ipv4, ipv6};
    let bed = Testbed::new();
    let att = bed.attach(mode, PORT).unwrap();
    let before = settled(&att);
    let mut truncated_udp = ipv4(15, 0, 17, PORT);
    truncated_udp.truncate(14 + 60 + 4);
    let mut wrong_version = ipv4(5, 0, 17, PORT);
    wrong_version[14] = 0x65;
    let frames = vec![
        eth(0x0806, &[0; 28]),
        eth(0x8100, &ipv4(5, 0, 17, PORT)[12..]),
        eth(0x88A8, &ipv4(5, 0, 17, PORT)[12..]),
        ipv4(5, 0x2000, 17, PORT), // MF
        ipv4(5, 0x0001, 17, PORT), // offset 8
        ipv6(0, PORT),             // hop-by-hop
        ipv6(44, PORT),            // fragment header
        ipv4(5, 0, 17, OTHER_PORT),
        ipv6(17, OTHER_PORT),
        ipv4(5, 0, 6, PORT),
        ipv6(6, PORT),
        ipv4(4, 0, 17, PORT), // IHL 4
        eth(0x0800, &[0x45, 0, 0]),
        eth(0x0800, &ipv4(5, 0, 17, PORT)[14..14 + 19]), // 19-byte IPv4 header
        eth(0x86DD, &[0x60; 10]),                        // next header 0x60 inside
        eth(0x86DD, &ipv6(17, PORT)[14..14 + 39]),
        wrong_version,
        truncated_udp,
        ipv4(5, 0x4000, 17, PORT), // DF is not a fragment
        ipv4(6, 0, 17, PORT),      // options
        ipv4(15, 0, 17, PORT),     // maximal options
        ipv6(17, PORT),
    ];
    Bed::run_in(&bed.cli, || inject::send_frames(CLI_IF, &frames));
    let after = settled(&att);
    let delta = |c: Counter| after.get(c) - before.get(c);
    println!("{mode:?} branches: {:?}", after.iter().collect::<Vec<_>>());
    assert_eq!(delta(Counter::PassedVlan), 2);
    assert_eq!(delta(Counter::PassedFragment), 2);
    assert_eq!(delta(Counter::PassedOtherPort), 2);
    assert_eq!(delta(Counter::Malformed), 7);
    assert_eq!(delta(Counter::PassedNoSocket), 4);
    assert_eq!(delta(Counter::Redirected), 0);
    // The kernel's own IPv6 chatter (MLD, router solicitations) may add to these.
    assert!(delta(Counter::PassedNotIp) >= 1);
    assert!(delta(Counter::PassedIpv6Ext) >= 2);
    assert!(delta(Counter::PassedNotUdp) >= 2);
}

#[test]
fn generic_mode_branches() {
    if privileged() {
        check_branches(XdpMode::Generic);
    }
}

#[test]
fn native_mode_branches() {
    if privileged() {
        check_branches(XdpMode::Native);
    }
}

/// A datagram to the port reaches an AF_XDP socket; the reply built in place in its
/// UMEM frame by `packet::build_reply` reaches the client's kernel UDP socket.
fn check_round_trip(mode: XdpMode) {
    let bed = Testbed::new();
    let mut att = bed.attach(mode, PORT).unwrap();
    let mut xsk = Bed::run_in(&bed.srv, || raw_xsk::RawXsk::bind(SRV_IF, 0));
    att.register_socket(0, &xsk).unwrap();
    for (srv, cli) in [(SRV_V4, CLI_V4), (SRV_V6, CLI_V6)] {
        let client = bed.spawn_client(srv, cli, PORT, b"ping");
        let (addr, len) = xsk
            .recv(Duration::from_secs(5))
            .expect("no frame reached the AF_XDP socket");
        let frame = xsk.frame_mut(addr);
        let req = packet::parse(&frame[..len]).unwrap();
        assert_eq!(req.addressing.destination().port(), PORT);
        let mut answer = b"pong:".to_vec();
        answer.extend_from_slice(req.payload(&frame[..len]));
        let reply_len = packet::build_reply(frame, &req.addressing, 1500, |out| {
            out[..answer.len()].copy_from_slice(&answer);
            answer.len()
        })
        .unwrap();
        xsk.send(addr, reply_len);
        let (data, from) = client.join().unwrap();
        assert_eq!(data, b"pong:ping");
        assert_eq!(from, SocketAddr::new(srv.parse().unwrap(), PORT));
    }
    let c = settled(&att);
    println!("{mode:?} with socket: {:?}", c.iter().collect::<Vec<_>>());
    assert_eq!(c.get(Counter::Redirected), 2);
    assert_eq!(c.get(Counter::PassedNoSocket), 0);
    att.unregister_socket(0).unwrap();
    drop(xsk);
}

#[test]
fn generic_mode_round_trip_through_af_xdp() {
    if privileged() {
        check_round_trip(XdpMode::Generic);
    }
}

#[test]
fn native_mode_round_trip_through_af_xdp() {
    if privileged() {
        check_round_trip(XdpMode::Native);
    }
}

#[test]
fn second_instance_is_refused_and_does_not_steal() {
    if !privileged() {
        return;
    }
    let bed = Testbed::new();
    let first = bed.attach(XdpMode::Native, PORT).unwrap();
    for mode in [XdpMode::Native, XdpMode::Generic] {
        let err = bed.attach(mode, PORT).unwrap_err();
        let msg = format!("{err:#}");
        println!("second attach ({mode:?}): {msg}");
        assert!(msg.contains("already has an XDP program"), "{msg}");
    }
    // The first instance still steers.
    bed.send(SRV_V4, CLI_V4, PORT, 3);
    assert_eq!(settled(&first).get(Counter::PassedNoSocket), 3);
    drop(first);
    // And once it is gone the interface is free again.
    let again = bed.attach(XdpMode::Generic, PORT).unwrap();
    drop(again);
}

#[test]
fn unknown_interface_is_a_clear_error() {
    if !privileged() {
        return;
    }
    let err = XdpAttachment::attach("xsm-nonexistent", XdpMode::Generic, PORT).unwrap_err();
    assert!(format!("{err:#}").contains("no interface named"), "{err:#}");
}

#[test]
fn native_mode_refused_by_driver_is_a_clear_error() {
    if !privileged() {
        return;
    }
    // ifb has no native XDP support (and dummy is not built into this kernel).
    let bed = Testbed::new();
    ip(&["-n", &bed.srv, "link", "add", "xsm-ifb", "type", "ifb"]);
    ip(&["-n", &bed.srv, "link", "set", "xsm-ifb", "up"]);
    let err = Bed::run_in(&bed.srv, || {
        XdpAttachment::attach("xsm-ifb", XdpMode::Native, PORT)
    })
    .unwrap_err();
    let msg = format!("{err:#}");
    println!("native on ifb: {msg}");
    assert!(msg.contains("does not support native XDP"), "{msg}");
    // Generic mode works everywhere.
    let att = Bed::run_in(&bed.srv, || {
        XdpAttachment::attach("xsm-ifb", XdpMode::Generic, PORT)
    })
    .unwrap();
    drop(att);
}

/// Child half of `program_goes_away_when_the_process_dies`: attaches, reports, waits
/// to be killed. Does nothing unless the parent set the variable.
#[test]
fn child_attach_and_wait() {
    let Ok(ns) = std::env::var("XSM_CHILD_NETNS") else {
        return;
    };
    let _att = Bed::run_in(&ns, || XdpAttachment::attach(SRV_IF, XdpMode::Native, PORT)).unwrap();
    println!("ATTACHED");
    thread::sleep(Duration::from_secs(60));
}

#[test]
fn program_goes_away_when_the_process_dies() {
    if !privileged() {
        return;
    }
    let bed = Testbed::new();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_attach_and_wait", "--nocapture"])
        .env("XSM_CHILD_NETNS", &bed.srv)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut attached = false;
    for _ in 0..100 {
        if bed.xdp_attached() {
            attached = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert!(attached, "child never attached");
    let mut gone = false;
    for _ in 0..100 {
        if !bed.xdp_attached() {
            gone = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(gone, "XDP program survived its process (not a bpf_link?)");
}
