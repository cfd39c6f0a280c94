//! What the tests of the XDP program's in-kernel answers share: loading it as the daemon
//! does, test frames, the user-space reply for a frame, independent checksum checks.
#![allow(dead_code)]

use mount_ebpf::Config;
use mount_proto::exports::ExportTable;
use mount_proto::mount::{self, templates, Client, Context, Outcome, Policy};
use mount_proto::mountlist::MountList;
use mount_proto::packet::{self, Addressing, IpPair, MacAddr};
use mount_xdp::ebpf::XdpAttachment;

/// The MOUNT port of the test frames.
pub const PORT: u16 = 644;
/// XDP verdicts as BPF_PROG_TEST_RUN reports them.
pub const XDP_DROP: u32 = 1;
/// Passed on (here: steered, as there is no AF_XDP socket in the tests).
pub const XDP_PASS: u32 = 2;
/// Answered by the program itself.
pub const XDP_TX: u32 = 3;

/// The program answers `frame` with exactly `expected` (user space's reply), with valid
/// checksums.
pub fn assert_tx(xdp: &mut XdpAttachment, frame: &[u8], expected: Vec<u8>, what: &str) {
    let (action, out) = xdp.test_run(frame).unwrap();
    assert_eq!(action, XDP_TX, "{what}: action");
    assert_eq!(
        out, expected,
        "{what}: the program's frame differs from user space's"
    );
    verify_checksums(&out);
}

/// The program leaves `frame` alone (XDP_PASS: steered on as before).
pub fn assert_steered(xdp: &mut XdpAttachment, frame: &[u8], what: &str) {
    let (action, out) = xdp.test_run(frame).unwrap();
    assert_eq!(action, XDP_PASS, "{what}: action");
    assert_eq!(out, frame, "{what}: frame changed");
}

pub fn privileged() -> bool {
    testbed::can_run(&testbed::current_test())
}

/// Loads the program as the daemon does: on a thread whose effective capabilities lack
/// CAP_SYS_ADMIN and CAP_PERFMON (the daemon keeps CAP_BPF and CAP_NET_ADMIN), so the
/// verifier applies its unprivileged rules (no pointer subtraction, no packet-pointer
/// arithmetic with a register) and a program only root could load fails here.
pub fn load(config: Config) -> XdpAttachment {
    load_as(config, false)
}

/// [`load`], or with every capability this process has (`privileged`: as a daemon run as
/// root keeps them; the verifier then leaves out its Spectre mitigations).
pub fn load_as(config: Config, privileged: bool) -> XdpAttachment {
    let loaded = std::thread::scope(|s| {
        s.spawn(|| {
            if !privileged {
                drop_admin_and_perfmon();
            }
            XdpAttachment::load(config, 64)
        })
        .join()
        .expect("the loading thread")
    });
    let mut xdp = loaded.expect("loading the XDP program without CAP_SYS_ADMIN/CAP_PERFMON");
    xdp.set_answers(config.answers, &templates::null_reply())
        .expect("writing the templates");
    xdp
}

/// Clears CAP_SYS_ADMIN (21) and CAP_PERFMON (38) from this thread's effective set
/// (capset changes the calling thread only).
pub fn drop_admin_and_perfmon() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words, as capget(2) says.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << 21);
        data[1].effective &= !(1 << (38 - 32));
        assert_eq!(libc::syscall(libc::SYS_capset, &header, data.as_ptr()), 0);
    }
}

pub fn addressing(v6: bool, src_port: u16) -> Addressing {
    let ips = if v6 {
        IpPair::V6 {
            src: "fd00:14::2".parse().unwrap(),
            dst: "fd00:14::1".parse().unwrap(),
        }
    } else {
        IpPair::V4 {
            src: "10.14.0.2".parse().unwrap(),
            dst: "10.14.0.1".parse().unwrap(),
        }
    };
    Addressing {
        src_mac: MacAddr([0x02, 0, 0, 0, 0, 2]),
        dst_mac: MacAddr([0x02, 0, 0, 0, 0, 1]),
        ips,
        src_port,
        dst_port: PORT,
    }
}

/// A frame carrying `payload` as the load generator would send it.
pub fn frame(a: &Addressing, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let len = packet::build(&mut buf, a, 1500, |area| {
        area[..payload.len()].copy_from_slice(payload);
        payload.len()
    })
    .unwrap();
    buf.truncate(len);
    buf
}

/// What the AF_XDP worker sends for `frame`: parse, answer, reply in place.
pub fn user_space_reply(frame: &[u8]) -> Option<Vec<u8>> {
    user_space_reply_with(frame, &ExportTable::empty(), &MountList::new())
}

/// [`user_space_reply`] with these exports and mount list.
pub fn user_space_reply_with(
    frame: &[u8],
    table: &ExportTable,
    mounts: &MountList,
) -> Option<Vec<u8>> {
    let parsed = packet::parse(frame).ok()?;
    let policy = Policy::default();
    let ctx = Context {
        exports: table,
        mounts,
        policy: &policy,
        upstream: None,
    };
    let client = Client {
        addr: parsed.addressing.source(),
        host: None,
    };
    let mut reply = [0u8; 512];
    let Outcome::Reply { len, .. } =
        mount::answer(parsed.payload(frame), &client, &ctx, &mut reply)
    else {
        return None;
    };
    let mut out = frame.to_vec();
    out.resize(
        frame
            .len()
            .max(packet::payload_offset(&parsed.addressing.ips) + len),
        0,
    );
    let offset = packet::payload_offset(&parsed.addressing.ips);
    out[offset..offset + len].copy_from_slice(&reply[..len]);
    let n = packet::finish_reply(&mut out, &parsed.addressing, len, 1500).ok()?;
    out.truncate(n);
    Some(out)
}

/// Checks the IP and UDP checksums of `frame` with etherparse, not with our own code.
pub fn verify_checksums(frame: &[u8]) {
    let sliced = etherparse::SlicedPacket::from_ethernet(frame).expect("a valid frame");
    let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
        panic!("not UDP");
    };
    let header = udp.to_header();
    let expected = match sliced.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            assert_eq!(
                h.header_checksum,
                h.calc_header_checksum(),
                "IPv4 header checksum"
            );
            header.calc_checksum_ipv4(&h, udp.payload()).unwrap()
        }
        Some(etherparse::NetSlice::Ipv6(ip)) => header
            .calc_checksum_ipv6(&ip.header().to_header(), udp.payload())
            .unwrap(),
        _ => panic!("not IP"),
    };
    assert_eq!(header.checksum, expected, "UDP checksum");
}

/// The source address of [`addressing`]'s frames: the test client.
pub fn client_ip(v6: bool) -> std::net::IpAddr {
    match addressing(v6, 700).ips {
        IpPair::V4 { src, .. } => src.into(),
        IpPair::V6 { src, .. } => src.into(),
    }
}

/// What user space does once it has answered and recorded `ip`'s MNT of `path`: write the
/// pair's templates at `slot` and `slot + 1` and insert the pair for `generation`.
pub fn mark_seen(
    xdp: &mut XdpAttachment,
    table: &ExportTable,
    ip: std::net::IpAddr,
    path: &str,
    slot: u32,
    generation: u32,
) {
    let r = templates::mnt_replies(table, ip, path, false).expect("answerable in the program");
    xdp.set_template(slot, &r.v1).expect("template");
    xdp.set_template(slot + 1, &r.v3).expect("template");
    let key = mount_ebpf::answer::SeenKey::for_ip(ip, path.as_bytes()).expect("a path key");
    let entry =
        mount_ebpf::answer::SeenEntry::new(generation, r.secure, slot, slot + 1, path.as_bytes());
    xdp.seen_insert(&key, entry).expect("seen entry");
}
