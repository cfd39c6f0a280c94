//! Hand-made vectors: the RPC rows of docs/protocol.md, NULL, PROC_UNAVAIL, GARBAGE_ARGS,
//! PATHCONF, and NoRoom.
use super::*;
use crate::rpc::{AuthStat, RejectStat};

const EXPORTS: &str = "/srv/a 10.0.0.0/8(rw,insecure) *(ro)\n/srv/secure 10.0.0.0/8(rw)\n";
const CLIENT: &str = "10.1.2.3:700";

fn env() -> Env {
    Env::new(EXPORTS)
}

#[test]
fn runts_replies_and_broken_headers_are_dropped() {
    let env = env();
    for len in 0..8 {
        let (o, _) = env.ask(&vec![0u8; len], CLIENT);
        assert_eq!(o, Outcome::Drop(DropReason::Truncated), "len {len}");
    }
    let (o, _) = env.ask(&hex("00000001 00000001 00000000 00000000"), CLIENT);
    assert_eq!(o, Outcome::Drop(DropReason::NotCall));
    let (o, _) = env.ask(&hex("00000001 00000002"), CLIENT);
    assert_eq!(o, Outcome::Drop(DropReason::NotCall));
    let full = call(5, 3, 0, &[]);
    for len in 8..full.len() {
        let (o, _) = env.ask(&full[..len], CLIENT);
        assert_eq!(o, Outcome::Drop(DropReason::Truncated), "len {len}");
    }
}

#[test]
fn rpc_version_3_is_rpc_mismatch_2_2() {
    let mut req = call(0x55, 3, 0, &[]);
    req[8..12].copy_from_slice(&3u32.to_be_bytes());
    let (_, reply) = env().ask(&req, CLIENT);
    assert_eq!(
        reply,
        hex("00000055 00000001 00000001 00000000 00000002 00000002")
    );
}

#[test]
fn auth_errors() {
    let env = env();
    let header = "00000007 00000000 00000002 000186a5 00000003 00000000";
    let denied = |req: &[u8]| -> RejectStat {
        let (_, reply) = env.ask(req, CLIENT);
        match reply_body(&reply) {
            ReplyBody::Denied(s) => s,
            other => panic!("{other:?}"),
        }
    };
    // Credential body over 400 bytes.
    let mut req = hex(&format!("{header} 00000001 00000194"));
    req.extend_from_slice(&[0; 404]);
    req.extend_from_slice(&[0; 8]);
    assert_eq!(denied(&req), RejectStat::AuthError(AuthStat::BadCred));
    // AUTH_SYS with a 256-byte machine name.
    let mut body = hex("00000000 00000100");
    body.extend_from_slice(&[b'x'; 256]);
    body.extend_from_slice(&hex("00000000 00000000 00000000"));
    let mut req = hex(&format!("{header} 00000001"));
    req.extend_from_slice(&(body.len() as u32).to_be_bytes());
    req.extend_from_slice(&body);
    req.extend_from_slice(&[0; 8]);
    assert_eq!(denied(&req), RejectStat::AuthError(AuthStat::BadCred));
    // AUTH_SYS with 17 gids.
    let mut body = hex("00000000 00000000 00000000 00000000 00000011");
    body.extend_from_slice(&[0; 68]);
    let mut req = hex(&format!("{header} 00000001"));
    req.extend_from_slice(&(body.len() as u32).to_be_bytes());
    req.extend_from_slice(&body);
    req.extend_from_slice(&[0; 8]);
    assert_eq!(denied(&req), RejectStat::AuthError(AuthStat::BadCred));
    // Unknown flavors, AUTH_SHORT and RPCSEC_GSS.
    for flavor in ["00000002", "00000006", "00000009"] {
        let req = hex(&format!("{header} {flavor} 00000000 00000000 00000000"));
        assert_eq!(denied(&req), RejectStat::AuthError(AuthStat::RejectedCred));
        let (_, reply) = env.ask(&req, CLIENT);
        assert_eq!(
            reply,
            hex("00000007 00000001 00000001 00000001 00000002"),
            "{flavor}"
        );
    }
    // Verifier body over 400 bytes.
    let mut req = hex(&format!("{header} 00000000 00000000 00000000 000001f4"));
    req.extend_from_slice(&[0; 500]);
    assert_eq!(denied(&req), RejectStat::AuthError(AuthStat::BadVerf));
}

#[test]
fn auth_none_is_accepted() {
    let req = hex(
        "00000008 00000000 00000002 000186a5 00000003 00000000 00000000 00000000 00000000 00000000",
    );
    let (_, reply) = env().ask(&req, CLIENT);
    assert_eq!(
        reply,
        hex("00000008 00000001 00000000 00000000 00000000 00000000")
    );
}

#[test]
fn wrong_program_is_prog_unavail() {
    let (_, reply) = env().ask(&call_prog(9, 100_003, 3, 0, &[]), CLIENT);
    assert_eq!(
        reply,
        hex("00000009 00000001 00000000 00000000 00000000 00000001")
    );
}

#[test]
fn unserved_versions_are_prog_mismatch_1_3() {
    for vers in [0, 4, 100, u32::MAX] {
        for proc_ in [0, 1, 9] {
            let (_, reply) = env().ask(&call(10, vers, proc_, &[]), CLIENT);
            assert_eq!(
                reply,
                hex("0000000a 00000001 00000000 00000000 00000000 00000002 00000001 00000003"),
                "vers {vers} proc {proc_}"
            );
        }
    }
}

#[test]
fn null_on_every_version() {
    for vers in 1..=3 {
        let (o, reply) = env().ask(&call(11, vers, 0, &[]), CLIENT);
        assert_eq!(
            o,
            Outcome::Reply {
                len: 24,
                truncated: false
            }
        );
        assert_eq!(
            reply,
            hex("0000000b 00000001 00000000 00000000 00000000 00000000")
        );
    }
}

#[test]
fn proc_table_per_version() {
    let env = env();
    let unavail = hex("0000000c 00000001 00000000 00000000 00000000 00000003");
    let cases: &[(u32, u32)] = &[(1, 7), (3, 6), (3, 7), (1, 8), (2, 8), (3, 8), (2, 99)];
    for &(vers, proc_) in cases {
        let (_, reply) = env.ask(&call(12, vers, proc_, &path_arg(b"/srv/a")), CLIENT);
        assert_eq!(reply, unavail, "v{vers} proc {proc_}");
    }
    // Everything the table marks as served is not PROC_UNAVAIL.
    let served: &[(u32, &[u32])] = &[
        (1, &[0, 1, 2, 3, 4, 5, 6]),
        (2, &[0, 1, 2, 3, 4, 5, 6, 7]),
        (3, &[0, 1, 2, 3, 4, 5]),
    ];
    for &(vers, procs) in served {
        for &p in procs {
            // `results` asserts an accepted SUCCESS reply.
            env.results(&call(13, vers, p, &path_arg(b"/srv/a")), CLIENT);
        }
    }
}

#[test]
fn undecodable_arguments_are_garbage_args() {
    let env = env();
    let garbage = |req: &[u8]| {
        let (_, reply) = env.ask(req, CLIENT);
        assert!(
            matches!(
                reply_body(&reply),
                ReplyBody::Accepted {
                    stat: AcceptStat::GarbageArgs,
                    ..
                }
            ),
            "{reply:?}"
        );
    };
    let long = vec![b'a'; 1025];
    for (vers, proc_) in [(1, 1), (2, 1), (3, 1), (3, 3), (2, 7)] {
        garbage(&call(14, vers, proc_, &path_arg(&long)));
        garbage(&call(14, vers, proc_, &[]));
        garbage(&call(14, vers, proc_, &hex("00000008 2f737276")));
    }
    // 1024 bytes is the limit, not garbage.
    let mut max = vec![b'/'];
    max.extend(std::iter::repeat_n(b'a', 1023));
    let r = env.results(&call(15, 3, 1, &path_arg(&max)), CLIENT);
    assert_eq!(r, hex("00000002"));
}

#[test]
fn pathconf_v2_layout() {
    let env = env();
    let r = env.results(&call(16, 2, 7, &path_arg(b"/srv/a")), CLIENT);
    assert_eq!(
        r,
        hex("00007d00 000000ff 000000ff 000000ff 00000400 00000200 00000000 00000000 00000000 00000000")
    );
    assert_eq!(r.len(), 40);
    // Unknown path, refused client, insecure port on a secure export: all zeros.
    let zeros = vec![0u8; 40];
    assert_eq!(
        env.results(&call(17, 2, 7, &path_arg(b"/nope")), CLIENT),
        zeros
    );
    assert_eq!(
        env.results(
            &call(18, 2, 7, &path_arg(b"/srv/secure")),
            "192.168.0.1:700"
        ),
        zeros
    );
    assert_eq!(
        env.results(&call(19, 2, 7, &path_arg(b"/srv/secure")), "10.0.0.1:2000"),
        zeros
    );
    assert_eq!(
        env.results(&call(20, 2, 7, &path_arg(b"relative")), CLIENT),
        zeros
    );
}

#[test]
fn ppathcnf_sign_extends_shorts() {
    let pc = PathConf {
        link_max: -1,
        max_canon: -1,
        max_input: 1,
        name_max: 2,
        path_max: 3,
        pipe_buf: 4,
        vdisable: 0xff,
        xxx: -1,
        mask: [-2, 1],
    };
    let mut buf = [0u8; 40];
    let mut w = Writer::new(&mut buf);
    pc.emit(&mut w).unwrap();
    assert_eq!(
        buf.to_vec(),
        hex("ffffffff ffffffff 00000001 00000002 00000003 00000004 000000ff ffffffff fffffffe 00000001")
    );
}

#[test]
fn no_room_is_a_drop_and_never_writes_past_out() {
    let env = env();
    let req = call(21, 3, 0, &[]);
    for cap in 0..24 {
        let (o, _) = env.ask_with(&req, CLIENT, None, cap);
        assert_eq!(o, Outcome::Drop(DropReason::NoRoom), "cap {cap}");
    }
    let (o, _) = env.ask_with(&req, CLIENT, None, 24);
    assert!(matches!(o, Outcome::Reply { len: 24, .. }));
    // A MNT reply that does not fit is dropped and not recorded as a mount.
    let req = call(22, 3, 1, &path_arg(b"/srv/a"));
    let (o, _) = env.ask_with(&req, CLIENT, None, 40);
    assert_eq!(o, Outcome::Drop(DropReason::NoRoom));
    assert!(env.mount_list().is_empty());
}
