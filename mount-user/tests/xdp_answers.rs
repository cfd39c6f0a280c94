//! The XDP program's in-kernel answers, byte for byte: the loaded program runs on real
//! frames through BPF_PROG_TEST_RUN, and every XDP_TX frame it produces must equal what the
//! user-space AF_XDP path builds for the same frame (mount-proto's parse, `mount::answer`,
//! `finish_reply`), with its checksums verified independently (etherparse). Calls the
//! program must not answer go on (XDP_PASS here: no AF_XDP socket in the test) untouched.
//! Needs root (loading BPF); prints SKIPPED otherwise, fails under CI=true.

use std::net::{IpAddr, SocketAddr};

use mount_ebpf::answer::{ANSWER_NULL_V4, ANSWER_NULL_V6};
use mount_ebpf::{Config, Counter, Gcra};
use mount_proto::mount::{self, procs};
use mount_proto::packet::{self, IpPair};
use mount_proto::rpc::{encode_call, AuthSys, Call, Credential, OpaqueAuth};
use mount_proto::xdr::Writer;
use mount_xdp::ebpf::XdpAttachment;

#[path = "support/xdp_answer.rs"]
mod xdp_answer;
use xdp_answer::*;

fn answers_on() -> Config {
    Config::for_port(PORT).with_answers(ANSWER_NULL_V4 | ANSWER_NULL_V6)
}

fn call(vers: u32, proc_: u32, cred: &Credential<'_>, xid: u32) -> Vec<u8> {
    let mut out = vec![0u8; 1024];
    let len = encode_call(&mut out, xid, mount::MOUNT_PROGRAM, vers, proc_, cred, &[]).unwrap();
    out.truncate(len);
    out
}

/// A call with a raw credential `(flavor, body)` and verifier, for the odd cases.
fn raw_call(vers: u32, cred: (u32, &[u8]), verf: (u32, &[u8]), args: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    let mut w = Writer::new(&mut out);
    Call {
        xid: 0x1234_5678,
        prog: mount::MOUNT_PROGRAM,
        vers,
        proc_: procs::NULL,
        cred: OpaqueAuth {
            flavor: cred.0,
            body: cred.1,
        },
        verf: OpaqueAuth {
            flavor: verf.0,
            body: verf.1,
        },
        args,
    }
    .emit(&mut w)
    .unwrap();
    let len = w.position();
    out.truncate(len);
    out
}

/// The program answers `frame` with exactly the user-space reply.
fn assert_answered(xdp: &mut XdpAttachment, frame: &[u8], what: &str) {
    let expected = user_space_reply(frame).expect("user space answers it");
    assert_tx(xdp, frame, expected, what);
}

fn auth_sys(name: &[u8], gids: &[u32]) -> AuthSys<'static> {
    let name: &'static [u8] = Box::leak(name.to_vec().into_boxed_slice());
    AuthSys::new(7, name, 0, 0, gids).unwrap()
}

#[test]
fn null_is_answered_byte_exact_for_every_version_family_and_flavor() {
    if !privileged() {
        return;
    }
    let mut xdp = load(answers_on());
    let creds = [
        Credential::None,
        Credential::Sys(auth_sys(b"client1", &[1, 2, 3])),
        Credential::Sys(auth_sys(b"", &[])),
        Credential::Sys(auth_sys(&[b'x'; 255], &[9; 16])),
    ];
    let mut answered = 0;
    for v6 in [false, true] {
        for vers in 1..=3 {
            for (i, cred) in creds.iter().enumerate() {
                let xid = 0xa000_0000 + vers * 16 + i as u32;
                let f = frame(
                    &addressing(v6, 700 + i as u16),
                    &call(vers, procs::NULL, cred, xid),
                );
                assert_answered(&mut xdp, &f, &format!("NULL v{vers} v6={v6} cred #{i}"));
                answered += 1;
            }
        }
    }
    // Bytes after the verifier are ignored by user space too.
    let mut with_args = call(3, procs::NULL, &Credential::None, 1);
    with_args.extend_from_slice(&[0, 0, 0, 4, 1, 2, 3, 4]);
    assert_answered(
        &mut xdp,
        &frame(&addressing(false, 800), &with_args),
        "NULL with args",
    );
    answered += 1;
    // A verifier the program does not inspect (libtirpc does not either).
    let f = frame(
        &addressing(true, 801),
        &raw_call(2, (0, &[]), (6, &[1; 8]), &[]),
    );
    assert_answered(&mut xdp, &f, "NULL with a non-AUTH_NONE verifier");
    answered += 1;
    let counters = xdp.counters().unwrap();
    assert_eq!(counters.get(Counter::AnsweredNull), answered);
    assert_eq!(counters.get(Counter::Redirected), 0);
}

#[test]
fn unusual_calls_are_left_to_user_space() {
    if !privileged() {
        return;
    }
    let mut xdp = load(answers_on());
    let v4 = addressing(false, 900);
    let v6 = addressing(true, 900);
    let none = Credential::None;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("MNT", frame(&v4, &call(3, procs::MNT, &none, 1))),
        ("DUMP", frame(&v6, &call(1, procs::DUMP, &none, 1))),
        ("version 4", frame(&v4, &call(4, procs::NULL, &none, 1))),
        (
            "AUTH_DH",
            frame(&v4, &raw_call(3, (3, &[0; 8]), (0, &[]), &[])),
        ),
        (
            "RPCSEC_GSS",
            frame(&v6, &raw_call(3, (6, &[0; 8]), (0, &[]), &[])),
        ),
        (
            "odd cred length",
            frame(&v4, &raw_call(3, (0, &[0; 5]), (0, &[]), &[])),
        ),
        ("AUTH_SYS 17 gids", {
            let mut body = vec![0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17];
            body.extend_from_slice(&[0; 68]);
            frame(&v4, &raw_call(3, (1, &body), (0, &[]), &[]))
        }),
        ("AUTH_SYS name past its body", {
            let body = [0, 0, 0, 7, 0, 0, 0, 200, 0, 0, 0, 0];
            frame(&v4, &raw_call(3, (1, &body), (0, &[]), &[]))
        }),
        (
            "odd payload length",
            frame(&v4, &{
                let mut c = call(3, procs::NULL, &none, 1);
                c.push(0);
                c
            }),
        ),
        (
            "verifier past the end",
            frame(&v4, &{
                let mut c = call(3, procs::NULL, &none, 1);
                c[36..40].copy_from_slice(&8u32.to_be_bytes());
                c
            }),
        ),
        (
            "a reply",
            frame(&v4, &{
                let mut c = call(3, procs::NULL, &none, 1);
                c[4..8].copy_from_slice(&1u32.to_be_bytes());
                c
            }),
        ),
        (
            "other program",
            frame(&v4, &{
                let mut c = call(3, procs::NULL, &none, 1);
                c[12..16].copy_from_slice(&100_003u32.to_be_bytes());
                c
            }),
        ),
    ];
    for (what, f) in &cases {
        assert_steered(&mut xdp, f, what);
    }
    // Header oddities: a group destination, a multicast or broadcast address, source
    // port 0, a bad IPv4 header checksum, IPv4 options, no IPv6 UDP checksum.
    let null = call(3, procs::NULL, &none, 1);
    let mut f = frame(&v4, &null);
    f[0] |= 1;
    assert_steered(&mut xdp, &f, "group destination MAC");
    let mut to_bcast = v4;
    to_bcast.ips = IpPair::V4 {
        src: "10.14.0.2".parse().unwrap(),
        dst: "255.255.255.255".parse().unwrap(),
    };
    assert_steered(&mut xdp, &frame(&to_bcast, &null), "broadcast destination");
    let mut to_mcast = v6;
    to_mcast.ips = IpPair::V6 {
        src: "fd00:14::2".parse().unwrap(),
        dst: "ff02::1".parse().unwrap(),
    };
    assert_steered(&mut xdp, &frame(&to_mcast, &null), "multicast destination");
    assert_steered(
        &mut xdp,
        &frame(&addressing(false, 0), &null),
        "source port 0",
    );
    let mut f = frame(&v4, &null);
    f[14 + 10] ^= 0xff;
    assert_steered(&mut xdp, &f, "bad IPv4 header checksum");
    assert_steered(
        &mut xdp,
        &with_ipv4_option(&frame(&v4, &null)),
        "IPv4 options",
    );
    let mut f = frame(&v6, &null);
    f[14 + 40 + 6..14 + 40 + 8].copy_from_slice(&[0, 0]);
    assert_steered(&mut xdp, &f, "IPv6 without UDP checksum");
    assert_eq!(xdp.counters().unwrap().get(Counter::AnsweredNull), 0);

    // Answers off: the same NULL call is steered.
    let mut off = load(Config::for_port(PORT));
    assert_steered(&mut off, &frame(&v4, &null), "answers off");
    // Only IPv4 on: IPv6 is steered.
    let mut v4_only = load(Config::for_port(PORT).with_answers(ANSWER_NULL_V4));
    assert_steered(
        &mut v4_only,
        &frame(&v6, &null),
        "IPv6 with v4 answers only",
    );
    assert_answered(
        &mut v4_only,
        &frame(&v4, &null),
        "IPv4 with v4 answers only",
    );
}

#[test]
fn rate_limits_run_before_answers() {
    if !privileged() {
        return;
    }
    // One call per second per source, burst 1: the second call is dropped, not answered.
    let config = answers_on().with_limits(Gcra::new(1, 1), Gcra::OFF, 32, 64);
    let mut xdp = load(config);
    let f = frame(
        &addressing(false, 901),
        &call(3, procs::NULL, &Credential::None, 5),
    );
    assert_answered(&mut xdp, &f, "first call");
    let (action, _) = xdp.test_run(&f).unwrap();
    assert_eq!(action, XDP_DROP, "second call within the second");
    let c = xdp.counters().unwrap();
    assert_eq!(
        (
            c.get(Counter::AnsweredNull),
            c.get(Counter::DroppedRateSource)
        ),
        (1, 1)
    );
}

/// `frame` (IPv4, 20-byte header) with a 4-byte NOP option inserted and lengths and
/// header checksum fixed.
fn with_ipv4_option(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..34].to_vec();
    out.extend_from_slice(&[1, 1, 1, 1]);
    out.extend_from_slice(&frame[34..]);
    out[14] = 0x46;
    let total = u16::from_be_bytes([out[16], out[17]]) + 4;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[24..26].copy_from_slice(&[0, 0]);
    let sum = packet::checksum::ipv4_header(&out[14..38]);
    out[24..26].copy_from_slice(&sum.to_be_bytes());
    assert!(
        packet::parse(&out).is_ok(),
        "user space parses the optioned frame"
    );
    out
}

#[test]
fn user_space_answers_what_the_program_answers() {
    // No privileges needed: the reference side of the comparison is sane.
    let f = frame(
        &addressing(false, 700),
        &call(1, procs::NULL, &Credential::None, 3),
    );
    let reply = user_space_reply(&f).unwrap();
    assert_eq!(reply.len(), 14 + 20 + 8 + 24);
    verify_checksums(&reply);
    let peer: SocketAddr = (IpAddr::from([10, 14, 0, 2]), 700).into();
    assert_eq!(
        packet::parse(&reply).unwrap().addressing.destination(),
        peer
    );
}

/// The program's own cost per frame, printed (a figure, never an assertion):
/// `cargo test -p mount-user --test xdp_answers -- --ignored --nocapture` (root).
///
/// BPF_PROG_TEST_RUN's `repeat` runs the program again on the frame the previous run left,
/// so for an answered call every run after the first sees the reply (another port) and
/// measures the cheap "not ours" path. The answered forms are therefore timed one run per
/// call, many calls, averaging the kernel's own per-call duration; the steered forms both
/// ways, so the two methods can be compared.
#[test]
#[ignore = "a benchmark: prints figures"]
fn program_cost_per_frame() {
    if !privileged() {
        return;
    }
    let sys = Credential::Sys(auth_sys(b"client1", &[1, 2, 3]));
    let null_v4 = frame(
        &addressing(false, 700),
        &call(3, procs::NULL, &Credential::None, 1),
    );
    let null_v6 = frame(
        &addressing(true, 700),
        &call(3, procs::NULL, &Credential::None, 1),
    );
    let null_sys = frame(&addressing(false, 700), &call(3, procs::NULL, &sys, 1));
    let mnt = frame(&addressing(false, 700), &call(3, procs::MNT, &sys, 1));
    for privileged in [false, true] {
        println!(
            "loaded {}",
            if privileged {
                "with all capabilities (a daemon run as root)"
            } else {
                "without CAP_SYS_ADMIN/CAP_PERFMON (the package's daemon): Spectre mitigations on"
            }
        );
        cost_table(privileged, [&null_v4, &null_v6, &null_sys, &mnt]);
    }
}

fn cost_table(privileged: bool, frames: [&Vec<u8>; 4]) {
    const RUNS: u32 = 5_000_000;
    const CALLS: u32 = 200_000;
    let [null_v4, null_v6, null_sys, mnt] = frames;
    let mut xdp = [
        load_as(answers_on(), privileged),
        load_as(Config::for_port(PORT), privileged),
    ];
    for (what, which, f) in [
        ("NULL v3 IPv4 AUTH_NONE, answered (XDP_TX)", 0, &null_v4),
        ("NULL v3 IPv6 AUTH_NONE, answered (XDP_TX)", 0, &null_v6),
        ("NULL v3 IPv4 AUTH_SYS, answered (XDP_TX)", 0, &null_sys),
        ("MNT v3 IPv4 AUTH_SYS, answers on, steered", 0, &mnt),
        ("NULL v3 IPv4 AUTH_NONE, answers off, steered", 1, &null_v4),
    ] {
        let mut total = 0u64;
        let mut action = 0;
        for _ in 0..CALLS {
            let (a, _, ns) = xdp[which].test_run_repeat(f, 1).unwrap();
            (action, total) = (a, total + u64::from(ns));
        }
        let one = total / u64::from(CALLS);
        let (repeat_action, _, repeated) = xdp[which].test_run_repeat(f, RUNS).unwrap();
        println!(
            "{what}: {one} ns/frame one run per call (action {action}, {CALLS} calls); \
             {repeated} ns/frame with repeat {RUNS} (last action {repeat_action})"
        );
    }
}
