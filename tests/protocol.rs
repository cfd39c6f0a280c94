//! RPC- and MOUNT-level conformance over UDP and TCP, IPv4 and IPv6.
//!
//! Every check runs as four tests (`<check>::udp4|tcp4|udp6|tcp6`), each against its own
//! daemon with the standard exports (see `e2e::fixtures::standard_exports`).

use e2e::rpc::{unhex, XDR_MAX_PATH};
use e2e::xdr::{XdrReader, XdrWriter};
use e2e::*;
use std::time::Duration;

const ALL: [u32; 3] = [1, 2, 3];

fn null_all_versions(c: &Ctx) {
    let mut cl = c.client();
    for v in ALL {
        cl.null(v);
        // AUTH_NONE credentials are fine for NULL.
        let r = cl.must(&Call::mount(v, procs::NULL).with_cred(Auth::None));
        assert!(r.success().is_empty());
    }
}
matrix!(null_all_versions);

fn version_mismatch(c: &Ctx) {
    let mut cl = c.client();
    for v in [0u32, 4, 0xffff_ffff] {
        for p in [procs::NULL, procs::MNT] {
            let r = cl.must(&Call::mount_path(v, p, "/srv/a"));
            assert_eq!(
                r.accept_stat(),
                &AcceptStat::ProgMismatch { low: 1, high: 3 },
                "vers {v} proc {p}"
            );
        }
    }
}
matrix!(version_mismatch);

fn prog_unavail(c: &Ctx) {
    let mut cl = c.client();
    for prog in [100003u32, 100000, 100004, 0] {
        let mut call = Call::mount(3, procs::NULL);
        call.prog = prog;
        let r = cl.must(&call);
        assert_eq!(r.accept_stat(), &AcceptStat::ProgUnavail, "prog {prog}");
    }
}
matrix!(prog_unavail);

fn proc_unavail(c: &Ctx) {
    let mut cl = c.client();
    for (v, p) in [(3, 6), (3, 7), (1, 7), (2, 8), (1, 99), (3, 0xffff_ffff)] {
        let r = cl.must(&Call::mount(v, p));
        assert_eq!(r.accept_stat(), &AcceptStat::ProcUnavail, "v{v} proc {p}");
    }
}
matrix!(proc_unavail);

fn rpc_mismatch(c: &Ctx) {
    let mut cl = c.client();
    for rv in [3u32, 1, 0] {
        let mut call = Call::mount(3, procs::NULL);
        call.rpcvers = rv;
        let r = cl.must(&call);
        assert_eq!(
            r.denied(),
            &Denied::RpcMismatch { low: 2, high: 2 },
            "rpcvers {rv}"
        );
        // Exact bytes: xid, REPLY, MSG_DENIED, RPC_MISMATCH, 2, 2.
        let mut w = XdrWriter::new();
        w.u32(call.xid).u32(1).u32(1).u32(0).u32(2).u32(2);
        assert_eq!(r.raw, w.into_bytes());
    }
}
matrix!(rpc_mismatch);

fn sys_cred(machine_len: usize, ngids: usize) -> Auth {
    Auth::Sys {
        stamp: 7,
        machine: vec![b'm'; machine_len],
        uid: 1000,
        gid: 1000,
        gids: (0..ngids as u32).collect(),
    }
}

fn auth_errors(c: &Ctx) {
    let mut cl = c.client();
    let badcred = Denied::AuthError(auth_stat::BADCRED);
    // Credential body over 400 bytes, flavor AUTH_SYS and AUTH_NONE.
    for flavor in [e2e::rpc::AUTH_SYS, 0] {
        let call = Call::mount(3, procs::NULL).with_cred(Auth::Raw {
            flavor,
            body: vec![0u8; 404],
        });
        let r = cl.must(&call);
        assert_eq!(r.denied(), &badcred, "cred body 404 bytes flavor {flavor}");
        let mut w = XdrWriter::new();
        w.u32(call.xid).u32(1).u32(1).u32(1).u32(1);
        assert_eq!(r.raw, w.into_bytes(), "exact AUTH_BADCRED bytes");
    }
    // machinename 256 bytes; 17 gids.
    let r = cl.must(&Call::mount(3, procs::NULL).with_cred(sys_cred(256, 0)));
    assert_eq!(r.denied(), &badcred, "machinename 256");
    let r = cl.must(&Call::mount(3, procs::NULL).with_cred(sys_cred(8, 17)));
    assert_eq!(r.denied(), &badcred, "17 gids");
    // The maxima are fine: 255-byte name and 16 gids (a 340-byte body), on MNT too.
    let r = cl.must(&Call::mount(3, procs::NULL).with_cred(sys_cred(255, 16)));
    assert!(
        r.success().is_empty(),
        "255-byte machinename + 16 gids must be accepted"
    );
    let r = cl.must(&Call::mount_path(3, procs::MNT, "/srv/a").with_cred(sys_cred(255, 16)));
    let (st, _) = parse_mountres3(r.success()).unwrap();
    assert_eq!(st, status::OK);
    // AUTH_SYS body that lies about its inner lengths (name length past the body).
    let mut b = XdrWriter::new();
    b.u32(1).u32(200).raw(b"short");
    let r = cl.must(&Call::mount(3, procs::NULL).with_cred(Auth::Raw {
        flavor: e2e::rpc::AUTH_SYS,
        body: b.into_bytes(),
    }));
    assert_eq!(
        r.denied(),
        &badcred,
        "AUTH_SYS body with a truncated machinename"
    );
    // Unknown flavor 7.
    let r = cl.must(&Call::mount(3, procs::NULL).with_cred(Auth::Raw {
        flavor: 7,
        body: vec![1, 2, 3, 4],
    }));
    assert_eq!(
        r.denied(),
        &Denied::AuthError(auth_stat::REJECTEDCRED),
        "flavor 7"
    );
}
matrix!(auth_errors);

fn garbage_args(c: &Ctx) {
    let mut cl = c.client();
    // dirpath of 1025 bytes: GARBAGE_ARGS, for MNT and UMNT, all versions.
    let long = format!("/{}", "x".repeat(XDR_MAX_PATH));
    assert_eq!(long.len(), 1025);
    for v in ALL {
        for p in [procs::MNT, procs::UMNT] {
            let r = cl.must(&Call::mount_path(v, p, &long));
            assert_eq!(
                r.accept_stat(),
                &AcceptStat::GarbageArgs,
                "v{v} proc {p} 1025-byte path"
            );
        }
    }
    // PATHCONF v2 too.
    let r = cl.must(&Call::mount_path(2, procs::PATHCONF, &long));
    assert_eq!(
        r.accept_stat(),
        &AcceptStat::GarbageArgs,
        "PATHCONF 1025-byte path"
    );
    // Exactly 1024 bytes decodes: an answer, not GARBAGE_ARGS (and not OK: not exported).
    let max = format!("/{}", "y".repeat(XDR_MAX_PATH - 1));
    let (st, ok) = cl.mnt3(&max);
    assert!(
        ok.is_none() && st != status::OK,
        "1024-byte path status {st}"
    );
    // Truncated arguments: length word says 10, 4 bytes follow; no arguments at all;
    // a length word cut in half.
    let mut w = XdrWriter::new();
    w.u32(10).raw(b"/srv");
    for (what, args) in [
        ("truncated string", w.into_bytes()),
        ("no args", Vec::new()),
        ("half a length word", vec![0, 0]),
    ] {
        for v in ALL {
            let r = cl.must(&Call::mount(v, procs::MNT).with_args(args.clone()));
            assert_eq!(
                r.accept_stat(),
                &AcceptStat::GarbageArgs,
                "MNT v{v}: {what}"
            );
        }
        let r = cl.must(&Call::mount(1, procs::UMNT).with_args(args.clone()));
        assert_eq!(r.accept_stat(), &AcceptStat::GarbageArgs, "UMNT: {what}");
    }
    // Exact bytes of GARBAGE_ARGS: xid, REPLY, ACCEPTED, AUTH_NONE verf, 4.
    let call = Call::mount(3, procs::MNT);
    let r = cl.must(&call);
    let mut w = XdrWriter::new();
    w.u32(call.xid).u32(1).u32(0).u32(0).u32(0).u32(4);
    assert_eq!(r.raw, w.into_bytes());
}
matrix!(garbage_args);

fn silent_drops(c: &Ctx) {
    let mut cl = c.client();
    // A well-formed REPLY-typed message (msg_type 1): no answer.
    let mut call = Call::mount(3, procs::NULL);
    call.msg_type = 1;
    let got = cl.send_expect_silence(&call.encode(), Duration::from_millis(700));
    assert_eq!(got.unwrap(), None, "a msg_type=1 message must get no reply");
    // Unknown msg_type 7.
    call.msg_type = 7;
    let got = cl.send_expect_silence(&call.encode(), Duration::from_millis(300));
    assert_eq!(got.unwrap(), None, "msg_type=7 must get no reply");
    if c.proto == Proto::Udp {
        // Runts: 3 bytes, 0 bytes, 8 bytes (xid + msg_type only).
        for runt in [vec![1u8, 2, 3], vec![], vec![0, 0, 0, 1, 0, 0, 0, 0]] {
            let got = cl.send_expect_silence(&runt, Duration::from_millis(500));
            assert_eq!(got.unwrap(), None, "runt {runt:02x?} must get no reply");
        }
    }
    // The service (and, on TCP, this very connection) still answers.
    cl.null(3);
}
matrix!(silent_drops);

fn exportall_v1_v2(c: &Ctx) {
    let mut cl = c.client();
    let want = e2e::fixtures::standard_export_list(c.n);
    for v in [1, 2] {
        assert_eq!(cl.exports(v, procs::EXPORTALL), want, "EXPORTALL v{v}");
    }
}
matrix!(exportall_v1_v2);

fn export_list(c: &Ctx) {
    let mut cl = c.client();
    let want = e2e::fixtures::standard_export_list(c.n);
    for v in ALL {
        assert_eq!(cl.exports(v, procs::EXPORT), want, "EXPORT v{v}");
    }
}
matrix!(export_list);

fn pathconf_v2(c: &Ctx) {
    let mut cl = c.client();
    let r = cl.must(&Call::mount_path(2, procs::PATHCONF, "/srv/a"));
    let res = r.success();
    assert_eq!(res.len(), 40, "ppathcnf is 10 XDR words: {res:02x?}");
    let mut x = XdrReader::new(res);
    let _link_max = x.i32().unwrap();
    // 5 shorts, a u_char, a char, short[2]: each word must hold a value of that type
    // (sign-extended), or XDR decoders on the client reject it.
    for f in ["max_canon", "max_input", "name_max", "path_max", "pipe_buf"] {
        let w = x.i32().unwrap();
        assert!(i16::try_from(w).is_ok(), "pc_{f} = {w:#x} is not a short");
    }
    let vdisable = x.u32().unwrap();
    assert!(
        vdisable <= 0xff,
        "pc_vdisable {vdisable:#x} is not a u_char"
    );
    let xxx = x.i32().unwrap();
    assert!(
        i8::try_from(xxx).is_ok() || (0..=0xff).contains(&xxx),
        "pc_xxx {xxx:#x}"
    );
    for i in 0..2 {
        let w = x.i32().unwrap();
        assert!(
            i16::try_from(w).is_ok(),
            "pc_mask[{i}] = {w:#x} is not a short"
        );
    }
    x.finish().unwrap();
}
matrix!(pathconf_v2);

fn mnt_v3_synthetic(c: &Ctx) {
    let mut cl = c.client();
    let want = synthetic_handle("/srv/a");
    assert_eq!(want.len(), 32);
    // Spelling variants normalise to the export itself.
    for p in ["/srv/a", "/srv/a/", "//srv//a", "/srv/a//"] {
        let (st, ok) = cl.mnt3(p);
        assert_eq!(st, status::OK, "MNT3 {p}");
        let (fh, flavors) = ok.unwrap();
        assert_eq!(
            fh, want,
            "handle of {p} must be the synthetic handle of /srv/a"
        );
        assert_eq!(flavors, vec![1], "default flavors of {p}");
    }
    // ro export mounts too; sec= order is kept.
    let (st, ok) = cl.mnt3("/srv/ro");
    assert_eq!(st, status::OK);
    assert_eq!(ok.unwrap(), (synthetic_handle("/srv/ro"), vec![1]));
    let (st, ok) = cl.mnt3("/srv/krb");
    assert_eq!(st, status::OK);
    assert_eq!(ok.unwrap().1, vec![390005, 1], "sec=krb5p:sys order");
}
matrix!(mnt_v3_synthetic);

fn mnt_explicit_fh(c: &Ctx) {
    let mut cl = c.client();
    let (st, ok) = cl.mnt3("/srv/fh");
    assert_eq!(st, status::OK);
    let (fh, flavors) = ok.unwrap();
    assert_eq!(fh, unhex(FH_HEX), "fh= bytes exactly (20 bytes)");
    assert_eq!(flavors, vec![1]);
    // The exact reply body: status, len 20, 20 bytes, flavors<1> = [1].
    let r = cl.must(&Call::mount_path(3, procs::MNT, "/srv/fh"));
    let mut w = XdrWriter::new();
    w.u32(0).opaque(&unhex(FH_HEX)).u32(1).u32(1);
    assert_eq!(r.success(), w.into_bytes().as_slice());
    // A subdirectory of an fh= export has no known handle: never the root's.
    let (st, ok) = cl.mnt3("/srv/fh/sub");
    assert!(
        ok.is_none() && st != status::OK,
        "MNT3 /srv/fh/sub status {st}"
    );
}
matrix!(mnt_explicit_fh);

fn mnt_v1_v2(c: &Ctx) {
    let mut cl = c.client();
    for v in [1, 2] {
        let r = cl.must(&Call::mount_path(v, procs::MNT, "/srv/a"));
        let res = r.success();
        assert_eq!(
            res.len(),
            36,
            "fhstatus = status + fixed 32-byte handle, no length"
        );
        let (st, fh) = parse_fhstatus(res).unwrap();
        assert_eq!(st, 0);
        assert_eq!(fh.unwrap(), synthetic_handle("/srv/a"), "v{v} handle");
        let (st, fh) = cl.mnt12(v, "/srv/a/sub/dir");
        assert_eq!(st, 0, "v{v} subdir");
        assert_eq!(fh.unwrap(), synthetic_handle("/srv/a/sub/dir"));
    }
}
matrix!(mnt_v1_v2);

fn mnt_subdir(c: &Ctx) {
    let mut cl = c.client();
    for (p, norm) in [
        ("/srv/a/sub", "/srv/a/sub"),
        ("/srv/a/sub/dir", "/srv/a/sub/dir"),
        ("/srv/a/sub//dir/", "/srv/a/sub/dir"),
    ] {
        let (st, ok) = cl.mnt3(p);
        assert_eq!(st, status::OK, "MNT3 {p}");
        let (fh, flavors) = ok.unwrap();
        assert_eq!(fh, synthetic_handle(norm), "handle of {p}");
        assert_eq!(flavors, vec![1]);
    }
    // A path that merely shares a prefix string is not inside the export.
    let (st, _) = cl.mnt3("/srv/ab");
    assert_eq!(st, status::NOENT, "/srv/ab is not under /srv/a");
}
matrix!(mnt_subdir);

fn mnt_noent(c: &Ctx) {
    let mut cl = c.client();
    for p in ["/srv/nope", "/", "/srv", ""] {
        let (st, ok) = cl.mnt3(p);
        assert!(ok.is_none());
        assert_eq!(st, status::NOENT, "MNT3 {p:?}");
        for v in [1, 2] {
            let (st, fh) = cl.mnt12(v, p);
            assert!(fh.is_none());
            assert_eq!(st, status::NOENT, "MNT v{v} {p:?}");
        }
    }
    // A relative path is never OK (NOENT or INVAL are both reasonable).
    let (st, ok) = cl.mnt3("srv/a");
    assert!(ok.is_none() && st != status::OK, "MNT3 relative path: {st}");
}
matrix!(mnt_noent);

fn mnt_access(c: &Ctx) {
    // Client not in the export's list.
    let mut cl = c.client_from(SrcPort::Privileged);
    let r = cl.must(&Call::mount_path(3, procs::MNT, "/srv/denied"));
    assert_eq!(
        r.success(),
        &[0, 0, 0, 13],
        "MNT3 /srv/denied: exactly MNT3ERR_ACCES"
    );
    for v in [1, 2] {
        assert_eq!(cl.mnt12(v, "/srv/denied"), (status::ACCES, None));
    }
    // `secure` (default) export: privileged source port OK...
    let (st, ok) = cl.mnt3("/srv/secure");
    assert_eq!(st, status::OK, "secure export from a port < 1024");
    assert_eq!(ok.unwrap().0, synthetic_handle("/srv/secure"));
    assert_eq!(cl.mnt12(1, "/srv/secure").0, status::OK);
    // ...an unprivileged one is refused.
    let mut hi = c.client_from(SrcPort::High);
    let (st, ok) = hi.mnt3("/srv/secure");
    assert_eq!(
        (st, ok),
        (status::ACCES, None),
        "secure export from a port >= 1024"
    );
    assert_eq!(hi.mnt12(2, "/srv/secure"), (status::ACCES, None));
    // `insecure` export from a high port is fine.
    let (st, _) = hi.mnt3("/srv/a");
    assert_eq!(st, status::OK, "insecure export from a port >= 1024");
}
matrix!(mnt_access);

fn mnt_dotdot(c: &Ctx) {
    let mut cl = c.client_from(SrcPort::Privileged);
    for p in [
        "/srv/a/../b",
        "/srv/a/../denied",
        "/srv/a/../../etc",
        "/srv/a/..",
        "/srv/a/sub/../../b",
        "/srv/a/../../../../..",
    ] {
        let (st, ok) = cl.mnt3(p);
        assert!(
            ok.is_none() && (st == status::ACCES || st == status::NOENT),
            "MNT3 {p}: must be ACCES or NOENT, got {st} {ok:02x?}"
        );
        let (st, fh) = cl.mnt12(1, p);
        assert!(
            fh.is_none() && (st == status::ACCES || st == status::NOENT),
            "MNT1 {p}: got {st}"
        );
    }
}
matrix!(mnt_dotdot);

fn mnt_handle_sizes_and_flavors(c: &Ctx) {
    let mut cl = c.client();
    // fhandle3 at its maximum, 64 bytes, exactly.
    let (st, ok) = cl.mnt3("/srv/fh64");
    assert_eq!(st, status::OK);
    let (fh, _) = ok.unwrap();
    assert_eq!(fh.len(), 64);
    assert_eq!(fh, unhex(FH64_HEX));
    // v1/v2 cannot carry 64 bytes: never OK with a cut handle.
    for v in [1, 2] {
        let (st, fh) = cl.mnt12(v, "/srv/fh64");
        assert!(
            st != status::OK && fh.is_none(),
            "v{v} MNT of a 64-byte handle: {st}"
        );
    }
    // A 32-byte fh= is what v1/v2 return verbatim, and v3 too.
    for v in [1, 2] {
        assert_eq!(
            cl.mnt12(v, "/srv/fh32"),
            (status::OK, Some(unhex(FH32_HEX)))
        );
    }
    assert_eq!(cl.mnt3("/srv/fh32").1.unwrap().0, unhex(FH32_HEX));
    // sec=none:sys: both flavors, AUTH_NONE not first (docs/protocol.md).
    let (st, ok) = cl.mnt3("/srv/none");
    assert_eq!(st, status::OK);
    let flavors = ok.unwrap().1;
    let mut sorted = flavors.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 1], "sec=none:sys flavors {flavors:?}");
    assert_ne!(
        flavors[0], 0,
        "AUTH_NONE must not be listed first: {flavors:?}"
    );
}
matrix!(mnt_handle_sizes_and_flavors);
