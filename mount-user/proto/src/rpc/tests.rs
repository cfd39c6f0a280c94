//! Unit tests of the RPC codec, on hand-made vectors and real bytes from the captures.
use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

/// rpcinfo -u's version-0 probe (rpcinfo-u-probe.pcapng frame 3): AUTH_NONE.
const RPCINFO_V0: &str = "6b03e5f7 00000000 00000002 000186a5 00000000 00000000
                          00000000 00000000 00000000 00000000";
/// showmount -e's EXPORT call (showmount-e.pcapng frame 12, record mark stripped): AUTH_SYS.
const SHOWMOUNT_E: &str = "2e26fd17 00000000 00000002 000186a5 00000003 00000005
    00000001 0000001c 6b07ae5f 00000002 766d0000 00000000 00000000 00000001 00000000
    00000000 00000000";

#[test]
fn parses_auth_none_probe() {
    let buf = hex(RPCINFO_V0);
    let call = Call::parse(&buf).unwrap();
    assert_eq!(call.xid, 0x6b03_e5f7);
    assert_eq!((call.prog, call.vers, call.proc_), (100_005, 0, 0));
    assert_eq!(call.cred, OpaqueAuth::NONE);
    assert_eq!(call.verf, OpaqueAuth::NONE);
    assert!(call.args.is_empty());
    assert_eq!(authenticate(&call.cred), Ok(Credential::None));
}

#[test]
fn parses_auth_sys_call() {
    let buf = hex(SHOWMOUNT_E);
    let call = Call::parse(&buf).unwrap();
    assert_eq!((call.prog, call.vers, call.proc_), (100_005, 3, 5));
    assert_eq!(call.cred.flavor, AUTH_SYS);
    assert_eq!(call.cred.body.len(), 28);
    let Ok(Credential::Sys(sys)) = authenticate(&call.cred) else {
        panic!("not AUTH_SYS")
    };
    assert_eq!(sys.stamp, 0x6b07_ae5f);
    assert_eq!(sys.machine_name, b"vm");
    assert_eq!((sys.uid, sys.gid), (0, 0));
    assert_eq!(sys.gids(), &[0]);
}

#[test]
fn call_round_trips_through_emit() {
    let buf = hex(SHOWMOUNT_E);
    let call = Call::parse(&buf).unwrap();
    let mut out = [0u8; 128];
    let mut w = Writer::new(&mut out);
    call.emit(&mut w).unwrap();
    assert_eq!(w.written(), &buf[..]);
}

#[test]
fn encode_call_matches_capture() {
    let sys = AuthSys::new(0x6b07_ae5f, b"vm", 0, 0, &[0]).unwrap();
    let mut out = [0u8; 128];
    let n = encode_call(
        &mut out,
        0x2e26_fd17,
        100_005,
        3,
        5,
        &Credential::Sys(sys),
        &[],
    )
    .unwrap();
    assert_eq!(&out[..n], &hex(SHOWMOUNT_E)[..]);
    let n = encode_call(&mut out, 0x6b03_e5f7, 100_005, 0, 0, &Credential::None, &[]).unwrap();
    assert_eq!(&out[..n], &hex(RPCINFO_V0)[..]);
}

#[test]
fn encode_call_overflow_is_an_error() {
    let mut out = [0u8; 30];
    assert_eq!(
        encode_call(&mut out, 1, 2, 3, 4, &Credential::None, &[]),
        Err(XdrError::Overflow)
    );
}

#[test]
fn runts_and_non_calls_get_no_reply() {
    for len in 0..8 {
        let buf = vec![0u8; len];
        let err = Call::parse(&buf).unwrap_err();
        assert_eq!(err, CallError::Truncated, "len {len}");
        assert_eq!(err.reply(), None);
    }
    let reply = hex("00000001 00000001 00000000");
    let err = Call::parse(&reply).unwrap_err();
    assert_eq!(err, CallError::NotCall { msg_type: 1 });
    assert_eq!(err.reply(), None);
    assert_eq!(
        Call::parse(&hex("00000001 00000007")).unwrap_err(),
        CallError::NotCall { msg_type: 7 }
    );
}

#[test]
fn every_truncation_of_a_header_is_dropped() {
    let buf = hex(SHOWMOUNT_E);
    for len in 8..buf.len() {
        assert_eq!(
            Call::parse(&buf[..len]),
            Err(CallError::Truncated),
            "len {len}"
        );
    }
}

#[test]
fn rpc_version_mismatch_is_denied_even_without_the_rest() {
    let buf = hex("00000009 00000000 00000003");
    let err = Call::parse(&buf).unwrap_err();
    assert_eq!(err, CallError::RpcMismatch { xid: 9, rpcvers: 3 });
    let (xid, stat) = err.reply().unwrap();
    let mut out = [0u8; 64];
    let n = encode_denied(&mut out, xid, &stat).unwrap();
    assert_eq!(
        &out[..n],
        &hex("00000009 00000001 00000001 00000000 00000002 00000002")[..]
    );
}

#[test]
fn oversized_cred_is_badcred_and_oversized_verf_is_badverf() {
    let cred = hex("00000005 00000000 00000002 000186a5 00000003 00000000 00000001 00000191");
    let err = Call::parse(&cred).unwrap_err();
    assert_eq!(err, CallError::CredTooLong { xid: 5, len: 401 });
    assert_eq!(
        err.reply(),
        Some((5, RejectStat::AuthError(AuthStat::BadCred)))
    );
    let verf = hex(
        "00000006 00000000 00000002 000186a5 00000003 00000000 00000000 00000000
         00000000 00000191",
    );
    let err = Call::parse(&verf).unwrap_err();
    assert_eq!(err, CallError::VerfTooLong { xid: 6, len: 401 });
    assert_eq!(
        err.reply(),
        Some((6, RejectStat::AuthError(AuthStat::BadVerf)))
    );
    let mut out = [0u8; 64];
    let n = encode_denied(&mut out, 6, &RejectStat::AuthError(AuthStat::BadVerf)).unwrap();
    assert_eq!(
        &out[..n],
        &hex("00000006 00000001 00000001 00000001 00000003")[..]
    );
}

#[test]
fn cred_of_exactly_400_bytes_is_accepted_by_the_header() {
    let mut buf = hex("00000005 00000000 00000002 000186a5 00000003 00000000 00000009 00000190");
    buf.extend_from_slice(&[0; 400]);
    buf.extend_from_slice(&hex("00000000 00000000 deadbeef"));
    let call = Call::parse(&buf).unwrap();
    assert_eq!(call.cred.body.len(), 400);
    assert_eq!(call.args, &hex("deadbeef")[..]);
    // Flavor 9 is unknown: rejected, not bad.
    assert_eq!(authenticate(&call.cred), Err(AuthStat::RejectedCred));
}

#[test]
fn flavor_policy() {
    for flavor in [AUTH_SHORT, AUTH_DH, RPCSEC_GSS, 390_003, u32::MAX] {
        let cred = OpaqueAuth { flavor, body: &[] };
        assert_eq!(authenticate(&cred), Err(AuthStat::RejectedCred), "{flavor}");
    }
    let cred = OpaqueAuth {
        flavor: AUTH_NONE,
        body: &[1, 2, 3, 4],
    };
    assert_eq!(authenticate(&cred), Ok(Credential::None));
}

fn sys_body(name_len: usize, ngids: u32, declared_ngids: u32) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 1];
    body.extend_from_slice(&(name_len as u32).to_be_bytes());
    body.extend(std::iter::repeat_n(b'h', crate::xdr::padded(name_len)));
    body.extend_from_slice(&[0, 0, 3, 232, 0, 0, 0, 100]);
    body.extend_from_slice(&declared_ngids.to_be_bytes());
    for g in 0..ngids {
        body.extend_from_slice(&g.to_be_bytes());
    }
    body
}

#[test]
fn auth_sys_limits() {
    let ok = sys_body(255, 16, 16);
    let sys = AuthSys::parse(&ok).unwrap();
    assert_eq!(sys.machine_name.len(), 255);
    assert_eq!(sys.gids().len(), 16);
    assert_eq!((sys.uid, sys.gid), (1000, 100));
    assert_eq!(AuthSys::parse(&sys_body(256, 0, 0)), Err(AuthStat::BadCred));
    assert_eq!(AuthSys::parse(&sys_body(4, 17, 17)), Err(AuthStat::BadCred));
    // Declares 3 gids, carries 2.
    assert_eq!(AuthSys::parse(&sys_body(4, 2, 3)), Err(AuthStat::BadCred));
    // Trailing bytes inside the body are tolerated.
    let mut trailing = sys_body(4, 1, 1);
    trailing.extend_from_slice(&[0; 8]);
    assert_eq!(AuthSys::parse(&trailing).unwrap().gids(), &[0]);
    assert!(AuthSys::new(0, &[0; 256], 0, 0, &[]).is_none());
    assert!(AuthSys::new(0, b"x", 0, 0, &[0; 17]).is_none());
}

#[test]
fn accepted_reply_encodings() {
    let mut out = [0u8; 64];
    let cases: [(AcceptStat, &str); 6] = [
        (AcceptStat::Success, "00000000"),
        (AcceptStat::ProgUnavail, "00000001"),
        (
            AcceptStat::ProgMismatch { low: 1, high: 3 },
            "00000002 00000001 00000003",
        ),
        (AcceptStat::ProcUnavail, "00000003"),
        (AcceptStat::GarbageArgs, "00000004"),
        (AcceptStat::SystemErr, "00000005"),
    ];
    for (stat, tail) in cases {
        let n = encode_accepted(&mut out, 0x1234, &stat).unwrap();
        let want = hex(&format!(
            "00001234 00000001 00000000 00000000 00000000 {tail}"
        ));
        assert_eq!(&out[..n], &want[..], "{stat:?}");
        let reply = Reply::parse(&out[..n]).unwrap();
        assert_eq!(reply.xid, 0x1234);
        let ReplyBody::Accepted {
            stat: got, verf, ..
        } = reply.body
        else {
            panic!("denied")
        };
        assert_eq!(got, stat);
        assert_eq!(verf, OpaqueAuth::NONE);
    }
}

#[test]
fn ganesha_prog_mismatch_decodes() {
    // rpcinfo-u-probe.pcapng frame 4.
    let buf = hex("6b03e5f7 00000001 00000000 00000000 00000000 00000002 00000001 00000003");
    let reply = Reply::parse(&buf).unwrap();
    assert_eq!(reply.xid, 0x6b03_e5f7);
    assert!(matches!(
        reply.body,
        ReplyBody::Accepted {
            stat: AcceptStat::ProgMismatch { low: 1, high: 3 },
            ..
        }
    ));
}

#[test]
fn success_body_and_denied_decoding() {
    let mut out = [0u8; 64];
    let n = encode_success(&mut out, 7, |w| w.put_u32(0xabcd)).unwrap();
    let reply = Reply::parse(&out[..n]).unwrap();
    let ReplyBody::Accepted { results, .. } = reply.body else {
        panic!("denied")
    };
    assert_eq!(results, &[0, 0, 0xab, 0xcd]);
    for stat in [
        RejectStat::RpcMismatch { low: 2, high: 2 },
        RejectStat::AuthError(AuthStat::BadCred),
        RejectStat::AuthError(AuthStat::RejectedCred),
        RejectStat::AuthError(AuthStat::TooWeak),
    ] {
        let n = encode_denied(&mut out, 8, &stat).unwrap();
        assert_eq!(
            Reply::parse(&out[..n]).unwrap().body,
            ReplyBody::Denied(stat)
        );
    }
    assert_eq!(
        Reply::parse(&hex("00000001 00000000")),
        Err(ReplyError::NotReply(0))
    );
    assert!(Reply::parse(&hex("00000001 00000001 00000002")).is_err());
}

#[test]
fn encoders_fail_cleanly_when_out_is_small() {
    for cap in 0..24 {
        let mut out = vec![0u8; cap];
        assert_eq!(
            encode_accepted(&mut out, 1, &AcceptStat::ProcUnavail),
            Err(XdrError::Overflow)
        );
    }
    let mut out = [0u8; 24];
    assert_eq!(
        encode_success(&mut out, 1, |w| w.put_u32(1)),
        Err(XdrError::Overflow)
    );
    let mut out = [0u8; 23];
    assert_eq!(
        encode_denied(&mut out, 1, &RejectStat::RpcMismatch { low: 2, high: 2 }),
        Err(XdrError::Overflow)
    );
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(call) = Call::parse(&bytes) {
            let _ = authenticate(&call.cred);
            prop_assert!(call.args.len() <= bytes.len());
        }
        let _ = Reply::parse(&bytes);
    }

    #[test]
    fn auth_sys_round_trips(stamp in any::<u32>(), name in proptest::collection::vec(any::<u8>(), 0..=255),
                            uid in any::<u32>(), gid in any::<u32>(),
                            gids in proptest::collection::vec(any::<u32>(), 0..=16)) {
        let sys = AuthSys::new(stamp, &name, uid, gid, &gids).unwrap();
        let mut out = [0u8; 600];
        let n = encode_call(&mut out, 1, 100_005, 3, 1, &Credential::Sys(sys), b"args").unwrap();
        let call = Call::parse(&out[..n]).unwrap();
        prop_assert_eq!(authenticate(&call.cred), Ok(Credential::Sys(sys)));
        prop_assert_eq!(call.args, b"args");
    }

    #[test]
    fn replies_round_trip(reply in any_reply(), slack in 0usize..8) {
        let Owned { xid, body } = &reply;
        let verf;
        let reply = Reply {
            xid: *xid,
            body: match body {
                OwnedBody::Accepted { flavor, verf: v, stat, results } => {
                    verf = v.clone();
                    ReplyBody::Accepted {
                        verf: OpaqueAuth { flavor: *flavor, body: &verf },
                        stat: *stat,
                        results,
                    }
                }
                OwnedBody::Denied(stat) => ReplyBody::Denied(*stat),
            },
        };
        let mut out = vec![0u8; 1024];
        let mut w = Writer::new(&mut out);
        reply.emit(&mut w).unwrap();
        let n = w.position();
        prop_assert_eq!(Reply::parse(&out[..n]), Ok(reply));
        prop_assert_eq!(xid_of(&out[..n]), Some(*xid));
        // Too small a buffer: an error, and nothing written.
        if n > slack {
            let mut small = vec![0u8; n - 1 - slack.min(n - 1)];
            let mut w = Writer::new(&mut small);
            prop_assert_eq!(reply.emit(&mut w), Err(XdrError::Overflow));
            prop_assert_eq!(w.position(), 0);
        }
    }

    #[test]
    fn server_shorthands_match_the_reply_they_parse_as(xid in any::<u32>(), stat in accept_stat(),
                                                       reject in reject_stat()) {
        let mut out = [0u8; 64];
        let n = encode_accepted(&mut out, xid, &stat).unwrap();
        let want = Reply {
            xid,
            body: ReplyBody::Accepted { verf: OpaqueAuth::NONE, stat, results: &[] },
        };
        prop_assert_eq!(Reply::parse(&out[..n]), Ok(want));
        let n = encode_denied(&mut out, xid, &reject).unwrap();
        prop_assert_eq!(
            Reply::parse(&out[..n]),
            Ok(Reply { xid, body: ReplyBody::Denied(reject) })
        );
    }
}

use super::xid as xid_of;

/// A reply with owned parts, for the property tests.
#[derive(Debug, Clone)]
struct Owned {
    xid: u32,
    body: OwnedBody,
}

#[derive(Debug, Clone)]
enum OwnedBody {
    Accepted {
        flavor: u32,
        verf: Vec<u8>,
        stat: AcceptStat,
        results: Vec<u8>,
    },
    Denied(RejectStat),
}

fn accept_stat() -> impl Strategy<Value = AcceptStat> {
    prop_oneof![
        Just(AcceptStat::Success),
        Just(AcceptStat::ProgUnavail),
        (any::<u32>(), any::<u32>()).prop_map(|(low, high)| AcceptStat::ProgMismatch { low, high }),
        Just(AcceptStat::ProcUnavail),
        Just(AcceptStat::GarbageArgs),
        Just(AcceptStat::SystemErr),
    ]
}

fn reject_stat() -> impl Strategy<Value = RejectStat> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(low, high)| RejectStat::RpcMismatch { low, high }),
        (0u32..8).prop_map(|c| RejectStat::AuthError(AuthStat::from_code(c).unwrap())),
    ]
}

fn any_reply() -> impl Strategy<Value = Owned> {
    let accepted = (
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..=MAX_AUTH_BYTES),
        accept_stat(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(flavor, verf, stat, results)| OwnedBody::Accepted {
            flavor,
            verf,
            stat,
            results,
        });
    let body = prop_oneof![accepted, reject_stat().prop_map(OwnedBody::Denied)];
    (any::<u32>(), body).prop_map(|(xid, body)| Owned { xid, body })
}
