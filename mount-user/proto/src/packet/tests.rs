//! Frame parsing and reply building against captured frames and independent checksums.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// Captured by tshark on the server end of a veth: `rpcinfo -u 10.77.0.1 100005`.
static RPCINFO_PCAP: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/vectors/rpcinfo-u-probe.pcapng"
));

/// The packets of a little-endian pcapng file (Enhanced Packet Blocks only).
fn pcapng_frames(file: &[u8]) -> Vec<Vec<u8>> {
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(u32_at(8), 0x1A2B_3C4D, "little-endian pcapng expected");
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 12 <= file.len() {
        let (kind, len) = (u32_at(at), u32_at(at + 4));
        if kind == 6 {
            let cap = u32_at(at + 20);
            frames.push(file[at + 28..at + 28 + cap].to_vec());
        }
        at += len;
    }
    frames
}

/// RFC 1071 done the slow, obvious way: 16-bit words, u32 accumulator, fold at the end.
fn reference_sum(chunks: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = chunks.concat();
    let mut acc: u32 = 0;
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).copied().map_or(0, u32::from);
        acc += hi | lo;
    }
    while acc > 0xffff {
        acc = (acc >> 16) + (acc & 0xffff);
    }
    acc as u16
}

/// Verifies the IPv4 header checksum and the UDP checksum of a frame independently of
/// the code under test.
fn assert_checksums_valid(frame: &[u8]) {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (pseudo, udp): (Vec<u8>, &[u8]) = match ethertype {
        0x0800 => {
            let ihl = usize::from(frame[14] & 0xf) * 4;
            let ip = &frame[14..14 + ihl];
            assert_eq!(reference_sum(&[ip]), 0xffff, "IPv4 header checksum");
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let udp = &frame[14 + ihl..14 + total];
            let mut p = ip[12..20].to_vec();
            p.extend_from_slice(&[0, 17]);
            p.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            (p, udp)
        }
        0x86DD => {
            let ip = &frame[14..54];
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let udp = &frame[54..54 + plen];
            let mut p = ip[8..40].to_vec();
            p.extend_from_slice(&(udp.len() as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
            (p, udp)
        }
        other => panic!("not IP: {other:#x}"),
    };
    assert_ne!(
        u16::from_be_bytes([udp[6], udp[7]]),
        0,
        "UDP checksum must be set"
    );
    assert_eq!(reference_sum(&[&pseudo, udp]), 0xffff, "UDP checksum");
}

fn ipv4_request(options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = 20 + options.len();
    let total = ihl + 8 + payload.len();
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // dst MAC (us)
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // src MAC (client)
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x40 | (ihl / 4) as u8, 0]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 63, 17, 0, 0]);
    f.extend_from_slice(&[192, 0, 2, 7, 192, 0, 2, 1]);
    f.extend_from_slice(options);
    let sum = !reference_sum(&[&f[14..14 + ihl]]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&[0x03, 0x20, 0x02, 0x84]); // 800 -> 644
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0xde, 0xad]); // partial checksum, as over veth
    f.extend_from_slice(payload);
    f
}

fn ipv6_request(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[next_header, 64]);
    f.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&[0x03, 0x20, 0x02, 0x84]);
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0xbe, 0xef]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn rfc1071_known_answer() {
    // The classic worked example: 192.168.0.1 -> 192.168.0.199, checksum 0xb861.
    let mut hdr = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(checksum::ipv4_header(&hdr), 0xb861);
    hdr[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
    assert!(checksum::ipv4_header_valid(&hdr));
    // Odd lengths pad with a zero byte.
    assert_eq!(checksum::fold(checksum::sum(&[1, 2, 3], 0)), 0x0402);
    assert_eq!(checksum::fold(checksum::sum(&[1, 2, 3, 4, 5], 0)), 0x0906);
}

#[test]
fn captured_rpcinfo_requests_parse() {
    let frames = pcapng_frames(RPCINFO_PCAP);
    assert_eq!(frames.len(), 10);
    let mut calls = 0;
    for f in frames.iter().filter(|f| f[36..38] == [0x02, 0x84]) {
        let udp = parse(f).unwrap();
        let a = udp.addressing;
        assert_eq!(a.source(), "10.77.0.2:670".parse().unwrap());
        assert_eq!(a.destination(), "10.77.0.1:644".parse().unwrap());
        assert_eq!(a.src_mac, MacAddr([0x86, 0x47, 0xd1, 0x99, 0x11, 0x0b]));
        assert_eq!(a.dst_mac, MacAddr([0x86, 0x35, 0xd4, 0x52, 0x12, 0x45]));
        assert_eq!(udp.payload, 42..82);
        // RPC CALL of program 100005.
        let p = udp.payload(f);
        assert_eq!(&p[4..8], &[0, 0, 0, 0]);
        assert_eq!(&p[12..16], &100005u32.to_be_bytes());
        calls += 1;
    }
    assert_eq!(calls, 4);
}

#[test]
fn reply_matches_captured_kernel_reply() {
    // Frame 5 is the MOUNT v1 NULL call, frame 6 the kernel-stack server's reply. Ours
    // must equal it except IP id (we send 0), so the IP checksum, and the UDP checksum
    // (the captured one is partial, veth offload).
    let frames = pcapng_frames(RPCINFO_PCAP);
    let (request, expected) = (&frames[4], &frames[5]);
    let req = parse(request).unwrap();
    let expected_payload = parse(expected).unwrap().payload(expected).to_vec();
    let mut buf = request.clone();
    buf.resize(2048, 0xAA);
    let len = build_reply(&mut buf, &req.addressing, 1500, |out| {
        out[..expected_payload.len()].copy_from_slice(&expected_payload);
        expected_payload.len()
    })
    .unwrap();
    let reply = &buf[..len];
    assert_eq!(len, expected.len());
    let mut masked_ours = reply.to_vec();
    let mut masked_theirs = expected.clone();
    for m in [&mut masked_ours, &mut masked_theirs] {
        m[18..20].fill(0);
        m[24..26].fill(0);
        m[40..42].fill(0);
    }
    assert_eq!(masked_ours, masked_theirs);
    assert_eq!(&reply[18..20], &[0, 0], "IP id");
    assert_checksums_valid(reply);
    let back = parse(reply).unwrap();
    assert_eq!(back.addressing, req.addressing.reversed());
}

#[test]
fn ipv4_options_are_skipped_and_not_echoed() {
    // Router Alert (RFC 2113), 4 bytes: IHL 6.
    let payload: Vec<u8> = (0..40).collect();
    let req_frame = ipv4_request(&[0x94, 0x04, 0x00, 0x00], &payload);
    let req = parse(&req_frame).unwrap();
    assert_eq!(req.payload, 46..86);
    assert_eq!(req.payload(&req_frame), &payload[..]);
    let mut buf = req_frame.clone();
    buf.resize(256, 0);
    let len = build_reply(&mut buf, &req.addressing, 1500, |out| {
        out[..5].copy_from_slice(b"hello");
        5
    })
    .unwrap();
    assert_eq!(len, 14 + 20 + 8 + 5);
    assert_eq!(buf[14], 0x45);
    assert_eq!(buf[22], 64, "TTL");
    assert_eq!(&buf[20..22], &[0x40, 0], "DF, offset 0");
    assert_eq!(&buf[42..47], b"hello");
    assert_checksums_valid(&buf[..len]);
    let back = parse(&buf[..len]).unwrap();
    assert_eq!(back.addressing.source(), "192.0.2.1:644".parse().unwrap());
    assert_eq!(
        back.addressing.destination(),
        "192.0.2.7:800".parse().unwrap()
    );
}

#[test]
fn ipv6_request_and_reply() {
    let req_frame = ipv6_request(17, b"call");
    let req = parse(&req_frame).unwrap();
    assert_eq!(req.payload(&req_frame), b"call");
    assert_eq!(
        req.addressing.source(),
        "[2001:db8::7]:800".parse().unwrap()
    );
    let mut buf = req_frame.clone();
    buf.resize(512, 0);
    let len = build_reply(&mut buf, &req.addressing, 1500, |out| {
        out[..7].copy_from_slice(b"replied");
        7
    })
    .unwrap();
    assert_eq!(len, 14 + 40 + 8 + 7);
    assert_eq!(&buf[12..14], &[0x86, 0xdd]);
    assert_eq!(buf[21], 64, "hop limit");
    assert_checksums_valid(&buf[..len]);
    let back = parse(&buf[..len]).unwrap();
    assert_eq!(back.addressing, req.addressing.reversed());
    assert_eq!(back.payload(&buf[..len]), b"replied");
}

#[test]
fn computed_zero_udp_checksum_is_sent_as_ffff() {
    for frame in [ipv4_request(&[], b"x"), ipv6_request(17, b"x")] {
        let req = parse(&frame).unwrap().addressing;
        // First pass with a zero word gives checksum C; putting C in that word makes the
        // sum all ones, i.e. a computed checksum of 0.
        let mut buf = vec![0u8; 256];
        let len = build_reply(&mut buf, &req, 1500, |out| {
            out[..4].fill(0);
            4
        })
        .unwrap();
        let off = payload_offset(&req.ips);
        let c = [buf[off - 2], buf[off - 1]];
        let len2 = build_reply(&mut buf, &req, 1500, |out| {
            out[..2].copy_from_slice(&c);
            out[2..4].fill(0);
            4
        })
        .unwrap();
        assert_eq!(len, len2);
        assert_eq!(&buf[off - 2..off], &[0xff, 0xff]);
        assert_checksums_valid(&buf[..len]);
    }
}

#[test]
fn reply_refused_beyond_mtu_with_payload_intact() {
    let req = parse(&ipv4_request(&[], b"q")).unwrap().addressing;
    let mut buf = vec![0u8; 4096];
    let fits = 1500 - 28;
    assert_eq!(build_reply(&mut buf, &req, 1500, |_| fits), Ok(14 + 1500));
    let err = build_reply(&mut buf, &req, 1500, |out| {
        out[..fits + 1].fill(7);
        fits + 1
    })
    .unwrap_err();
    assert_eq!(
        err,
        EmitError::ExceedsMtu {
            ip_len: 1501,
            mtu: 1500,
            payload: 42..42 + fits + 1
        }
    );
    assert!(buf[42..42 + fits + 1].iter().all(|&b| b == 7));
    let req6 = parse(&ipv6_request(17, b"q")).unwrap().addressing;
    assert!(matches!(
        build_reply(&mut buf, &req6, 1280, |_| 1280 - 48 + 1),
        Err(EmitError::ExceedsMtu { ip_len: 1281, .. })
    ));
    // Above 65535 even with a huge MTU.
    let mut big = vec![0u8; 70_000];
    assert!(matches!(
        build_reply(&mut big, &req, usize::MAX, |_| 65_535),
        Err(EmitError::ExceedsMtu { .. })
    ));
}

#[test]
fn reply_refused_when_buffer_too_small() {
    let req = parse(&ipv4_request(&[], b"q")).unwrap().addressing;
    let mut tiny = vec![0u8; 30];
    assert!(matches!(
        build_reply(&mut tiny, &req, 1500, |_| 0),
        Err(EmitError::BufferTooSmall { .. })
    ));
    let mut buf = vec![0u8; 100];
    assert!(matches!(
        build_reply(&mut buf, &req, 1500, |_| 59),
        Err(EmitError::BufferTooSmall { .. })
    ));
    assert_eq!(finish_reply(&mut buf, &req, 58, 1500), Ok(100));
}

#[test]
fn malformed_frames_are_rejected() {
    let good = ipv4_request(&[], b"0123");
    assert!(parse(&good).is_ok());
    // Every truncation fails (the IP total length no longer fits).
    for cut in 0..good.len() {
        assert!(
            parse(&good[..cut]).is_err(),
            "accepted a frame cut at {cut}"
        );
    }
    // Ethernet padding after the datagram is fine.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 10]);
    assert_eq!(parse(&padded).unwrap().payload, 42..46);

    let fix_ip_sum = |f: &mut Vec<u8>| {
        f[24..26].fill(0);
        let ihl = usize::from(f[14] & 0xf) * 4;
        let s = !reference_sum(&[&f[14..14 + ihl]]);
        f[24..26].copy_from_slice(&s.to_be_bytes());
    };
    let mutate = |edit: &dyn Fn(&mut Vec<u8>), fix: bool| {
        let mut f = good.clone();
        edit(&mut f);
        if fix {
            fix_ip_sum(&mut f);
        }
        parse(&f)
    };
    use ParseError as E;
    assert_eq!(mutate(&|f| f[14] = 0x44, true), Err(E::BadIhl(4)));
    assert_eq!(mutate(&|f| f[14] = 0x65, true), Err(E::BadIpVersion(6)));
    assert_eq!(mutate(&|f| f[17] = 19, true), Err(E::IpLength)); // total < IHL
    assert_eq!(mutate(&|f| f[17] += 1, true), Err(E::IpLength)); // beyond frame
    assert_eq!(mutate(&|f| f[17] = 27, true), Err(E::UdpLength)); // no room for UDP
    assert_eq!(mutate(&|f| f[22] = 1, false), Err(E::BadIpChecksum));
    assert_eq!(mutate(&|f| f[20] = 0x20, true), Err(E::Fragment)); // MF
    assert_eq!(mutate(&|f| f[21] = 0x01, true), Err(E::Fragment)); // offset 8
    assert_eq!(mutate(&|f| f[23] = 6, true), Err(E::NotUdp(6)));
    assert_eq!(mutate(&|f| f[39] = 13, false), Err(E::UdpLength)); // > IP payload
    assert_eq!(mutate(&|f| f[39] = 7, false), Err(E::UdpLength)); // < 8
    assert_eq!(mutate(&|f| f[26] = 224, true), Err(E::BadSource));
    assert_eq!(mutate(&|f| f[6] = 0x01, false), Err(E::BadSource));
    assert_eq!(mutate(&|f| f[34..36].fill(0), false), Err(E::BadSource));
    assert_eq!(mutate(&|f| f[12] = 0x81, false), Err(E::Vlan));
    assert_eq!(
        mutate(&|f| f[12..14].copy_from_slice(&[8, 6]), false),
        Err(E::NotIp(0x0806))
    );
    // A UDP length shorter than the IP payload trims, as in the kernel.
    assert_eq!(mutate(&|f| f[39] = 10, false).unwrap().payload, 42..44);

    assert_eq!(
        parse(&ipv6_request(0, b"x")),
        Err(E::Ipv6ExtensionHeader(0))
    );
    assert_eq!(
        parse(&ipv6_request(44, b"x")),
        Err(E::Ipv6ExtensionHeader(44))
    );
    assert_eq!(parse(&ipv6_request(6, b"x")), Err(E::NotUdp(6)));
    let mut v6 = ipv6_request(17, b"x");
    v6[60..62].fill(0);
    assert_eq!(parse(&v6), Err(E::MissingUdpChecksum));
    let v6 = ipv6_request(17, b"x");
    assert_eq!(parse(&v6[..v6.len() - 1]), Err(E::IpLength));
    assert_eq!(parse(&v6[..50]), Err(E::Truncated("IPv6")));
}

#[test]
fn ipv4_pair_helpers() {
    let ips = IpPair::V4 {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(10, 0, 0, 2),
    };
    assert_eq!(ips.reversed().src(), ips.dst());
    assert_eq!(payload_offset(&ips), 42);
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_mutated_valid_frames(
        v6 in any::<bool>(),
        edits in proptest::collection::vec((0usize..80, any::<u8>()), 1..6),
        cut in 0usize..90,
    ) {
        let mut f = if v6 { ipv6_request(17, b"abcd") } else { ipv4_request(&[], b"abcd") };
        for (at, byte) in edits {
            if at < f.len() { f[at] = byte; }
        }
        f.truncate(cut.max(14));
        if let Ok(udp) = parse(&f) {
            prop_assert!(udp.payload.end <= f.len());
            prop_assert!(udp.payload.start <= udp.payload.end);
        }
    }

    #[test]
    fn reply_round_trips(
        v6 in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1600),
        capacity in 0usize..2048,
    ) {
        let frame = if v6 { ipv6_request(17, b"req") } else { ipv4_request(&[], b"req") };
        let req = parse(&frame).unwrap().addressing;
        let mut buf = vec![0u8; capacity];
        let result = build_reply(&mut buf, &req, 1500, |out| {
            let n = payload.len().min(out.len());
            out[..n].copy_from_slice(&payload[..n]);
            n
        });
        if let Ok(len) = result {
            assert_checksums_valid(&buf[..len]);
            let back = parse(&buf[..len]).unwrap();
            prop_assert_eq!(back.addressing, req.reversed());
            let n = back.payload.len();
            prop_assert_eq!(back.payload(&buf[..len]), &payload[..n]);
        }
    }

    /// Parse beside emit: whatever addressing and payload a frame is emitted with, parsing
    /// it gives back (the load generator's request frames are built this way).
    #[test]
    fn emitted_frames_parse_back(
        addressing in answerable_addressing(),
        payload in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        let offset = payload_offset(&addressing.ips);
        let mut buf = vec![0u8; offset + payload.len()];
        buf[offset..].copy_from_slice(&payload);
        let len = emit(&mut buf, &addressing, payload.len(), 9000).unwrap();
        prop_assert_eq!(len, buf.len());
        assert_checksums_valid(&buf);
        let back = parse(&buf).unwrap();
        prop_assert_eq!(back.addressing, addressing);
        prop_assert_eq!(back.payload(&buf), &payload[..]);
        // `build` writes the payload itself and gives the same frame.
        let mut again = vec![0u8; buf.len()];
        let built = build(&mut again, &addressing, 9000, |out| {
            out[..payload.len()].copy_from_slice(&payload);
            payload.len()
        });
        prop_assert_eq!(built, Ok(len));
        prop_assert_eq!(again, buf);
    }
}

/// Addressing `parse` accepts: unicast source MAC and IP, a source port.
fn answerable_addressing() -> impl Strategy<Value = Addressing> {
    let mac = any::<[u8; 6]>().prop_map(MacAddr);
    let v4 = (any::<[u8; 4]>(), any::<[u8; 4]>())
        .prop_filter("unicast source", |(s, _)| {
            let s = Ipv4Addr::from(*s);
            !(s.is_multicast() || s.is_broadcast() || s.is_unspecified())
        })
        .prop_map(|(s, d)| IpPair::V4 {
            src: s.into(),
            dst: d.into(),
        });
    let v6 = (any::<[u8; 16]>(), any::<[u8; 16]>())
        .prop_filter("unicast source", |(s, _)| {
            let s = Ipv6Addr::from(*s);
            !(s.is_multicast() || s.is_unspecified())
        })
        .prop_map(|(s, d)| IpPair::V6 {
            src: s.into(),
            dst: d.into(),
        });
    (mac.clone(), mac, prop_oneof![v4, v6], 1u16.., any::<u16>())
        .prop_filter("unicast source MAC", |(src_mac, ..)| !src_mac.is_group())
        .prop_map(|(src_mac, dst_mac, ips, src_port, dst_port)| Addressing {
            src_mac,
            dst_mac,
            ips,
            src_port,
            dst_port,
        })
}
