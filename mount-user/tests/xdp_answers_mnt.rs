//! MNT of an export root answered by the XDP program, byte for byte: the loaded program
//! runs on real frames through BPF_PROG_TEST_RUN with `MOUNT_SEEN` filled as user space
//! fills it (`templates::mnt_replies` for the pair), and every XDP_TX frame must equal
//! what the user-space AF_XDP path builds for the same frame with the same exports. Calls
//! the program must not answer (pair not seen, another generation, insecure port on a
//! `secure` export, same length but other bytes, a subdirectory) go on untouched.
//! Needs root (loading BPF); prints SKIPPED otherwise, fails under CI=true.

use mount_ebpf::answer::{
    SeenKey, ANSWER_MNT_V4, ANSWER_MNT_V6, ANSWER_NULL_V4, ANSWER_NULL_V6, MNT_PATH_MAX, PATH_HEAD,
    TEMPLATE_MNT_FIRST,
};
use mount_ebpf::{Config, Counter};
use mount_proto::exports::{ExportTable, StaticResolver};
use mount_proto::mount::{self, procs, templates};
use mount_proto::mountlist::MountList;
use mount_proto::packet;
use mount_proto::rpc::{encode_call, AuthSys, Call, Credential, OpaqueAuth};
use mount_proto::xdr::Writer;
use mount_xdp::ebpf::XdpAttachment;

#[path = "support/xdp_answer.rs"]
mod xdp_answer;
use xdp_answer::*;

const GENERATION: u32 = 7;

const EXPORTS: &str = "/srv/a 10.14.0.0/16(rw,sec=sys:krb5) fd00:14::/64(rw)\n\
                       /srv/b 10.14.0.2(rw,insecure) fd00:14::2(rw,insecure)\n\
                       /srv/c 10.99.0.0/16(rw)\n";

/// An export root of exactly `len` bytes (`len` >= 6) ending in `last`: the lengths
/// around the key's path head (`PATH_HEAD` bytes in the key, the rest in the entry).
fn root_of_len(len: usize, last: char) -> String {
    format!("/srv/{}{last}", "p".repeat(len - 6))
}

/// The roots exported beside `EXPORTS`: around word boundaries of the key's path head
/// (the program cuts the last word at the path's end), just inside the key, one byte into
/// the entry's tail, in the middle, and the longest the program matches.
fn long_roots() -> Vec<String> {
    [7, 8, 9, 12, 31, PATH_HEAD, PATH_HEAD + 1, 100, MNT_PATH_MAX]
        .iter()
        .map(|&n| root_of_len(n, 'z'))
        .collect()
}

fn table() -> ExportTable {
    let mut text = EXPORTS.to_owned();
    for root in long_roots() {
        text.push_str(&format!("{root} 10.14.0.0/16(rw) fd00:14::/64(rw)\n"));
    }
    ExportTable::parse_str_with(&text, "test exports", &StaticResolver::default()).unwrap()
}

fn all_answers() -> Config {
    Config::for_port(PORT)
        .with_answers(ANSWER_NULL_V4 | ANSWER_NULL_V6 | ANSWER_MNT_V4 | ANSWER_MNT_V6)
        .with_mnt_generation(GENERATION)
}

fn mnt_call(vers: u32, cred: &Credential<'_>, xid: u32, path: &[u8]) -> Vec<u8> {
    let mut args = vec![0u8; 1100];
    let mut w = Writer::new(&mut args);
    w.put_string(path, mount::MNTPATHLEN).unwrap();
    let n = w.position();
    let mut out = vec![0u8; 2048];
    let len = encode_call(
        &mut out,
        xid,
        mount::MOUNT_PROGRAM,
        vers,
        procs::MNT,
        cred,
        &args[..n],
    )
    .unwrap();
    out.truncate(len);
    out
}

/// An AUTH_SYS body: stamp, machine name (`name_len` bytes), uid, gid, `gids` gids.
fn auth_sys_body(name_len: usize, gids: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&7u32.to_be_bytes());
    b.extend_from_slice(&(name_len as u32).to_be_bytes());
    b.extend(std::iter::repeat_n(b'm', name_len));
    b.resize(b.len().next_multiple_of(4), 0);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&gids.to_be_bytes());
    for g in 0..gids {
        b.extend_from_slice(&g.to_be_bytes());
    }
    b
}

/// A MNT v3 call of `path` with an AUTH_SYS credential `cred` and a verifier of
/// `verf_len` bytes (flavor 6, which the program and user space do not inspect).
fn mnt_call_with(cred: &[u8], verf_len: usize, path: &[u8]) -> Vec<u8> {
    let mut args = vec![0u8; 256];
    let mut w = Writer::new(&mut args);
    w.put_string(path, mount::MNTPATHLEN).unwrap();
    let n = w.position();
    let verf = vec![9u8; verf_len];
    let mut out = vec![0u8; 2048];
    let mut w = Writer::new(&mut out);
    Call {
        xid: 0x5151_0001,
        prog: mount::MOUNT_PROGRAM,
        vers: 3,
        proc_: procs::MNT,
        cred: OpaqueAuth {
            flavor: 1,
            body: cred,
        },
        verf: OpaqueAuth {
            flavor: 6,
            body: &verf,
        },
        args: &args[..n],
    }
    .emit(&mut w)
    .unwrap();
    let len = w.position();
    out.truncate(len);
    out
}

fn auth_sys() -> Credential<'static> {
    Credential::Sys(AuthSys::new(7, b"client1", 0, 0, &[1, 2, 3]).unwrap())
}

fn assert_answered(xdp: &mut XdpAttachment, table: &ExportTable, frame: &[u8], what: &str) {
    let expected = user_space_reply_with(frame, table, &MountList::new()).expect("a reply");
    assert_tx(xdp, frame, expected, what);
}

#[test]
fn mnt_of_a_seen_root_is_answered_byte_exact_for_every_form() {
    if !privileged() {
        return;
    }
    let table = table();
    let mut xdp = load(all_answers());
    let mut slot = TEMPLATE_MNT_FIRST;
    for v6 in [false, true] {
        for path in ["/srv/a", "/srv/b"] {
            mark_seen(&mut xdp, &table, client_ip(v6), path, slot, GENERATION);
            slot += 2;
        }
    }
    let mut answered = 0;
    for v6 in [false, true] {
        for path in ["/srv/a", "/srv/b"] {
            for vers in 1..=3 {
                for (i, cred) in [Credential::None, auth_sys()].iter().enumerate() {
                    let xid = 0xb000_0000 + vers * 16 + i as u32;
                    let f = frame(
                        &addressing(v6, 800 + i as u16),
                        &mnt_call(vers, cred, xid, path.as_bytes()),
                    );
                    let what = format!("MNT v{vers} {path} ipv6={v6} cred {i}");
                    assert_answered(&mut xdp, &table, &f, &what);
                    answered += 1;
                }
            }
        }
    }
    // Roots around and past the key's path head, every byte compared.
    for (i, root) in long_roots().iter().enumerate() {
        for v6 in [false, true] {
            mark_seen(&mut xdp, &table, client_ip(v6), root, slot, GENERATION);
            slot += 2;
            for vers in [1, 3] {
                let f = frame(
                    &addressing(v6, 800),
                    &mnt_call(vers, &auth_sys(), 0xc000 + i as u32, root.as_bytes()),
                );
                let what = format!("MNT v{vers} of a {}-byte root ipv6={v6}", root.len());
                assert_answered(&mut xdp, &table, &f, &what);
                answered += 1;
            }
        }
    }
    // Pad bytes after the path are not zero: user space ignores them, so does the program.
    let mut odd_pad = mnt_call(3, &auth_sys(), 0xd00d, b"/srv/a");
    let n = odd_pad.len();
    odd_pad[n - 2..].copy_from_slice(&[0xaa, 0x55]);
    let f = frame(&addressing(false, 800), &odd_pad);
    assert_answered(&mut xdp, &table, &f, "non-zero pad bytes after the path");
    answered += 1;
    // Arguments after a long verifier, and the longest AUTH_SYS credential, still inside
    // what the program copies: answered.
    for (cred, verf_len, what) in [
        (auth_sys_body(7, 3), 200, "200-byte verifier"),
        (
            auth_sys_body(255, 16),
            100,
            "255-byte machine name, 16 gids, 100-byte verifier",
        ),
    ] {
        let f = frame(
            &addressing(false, 800),
            &mnt_call_with(&cred, verf_len, b"/srv/a"),
        );
        assert_answered(&mut xdp, &table, &f, what);
        answered += 1;
    }
    // `/srv/b` is `insecure`: a high port is answered too.
    let f = frame(
        &addressing(false, 40000),
        &mnt_call(3, &auth_sys(), 9, b"/srv/b"),
    );
    assert_answered(&mut xdp, &table, &f, "insecure export, high port");
    answered += 1;
    assert_eq!(
        xdp.counters().unwrap().get(Counter::AnsweredMnt),
        answered,
        "answered_mnt counter"
    );
    // v3 carries the client's flavors: /srv/a lists sys and krb5 for IPv4 clients.
    let f = frame(
        &addressing(false, 800),
        &mnt_call(3, &Credential::None, 1, b"/srv/a"),
    );
    let (_, out) = xdp.test_run(&f).unwrap();
    let payload = packet::parse(&out).unwrap().payload(&out).to_vec();
    let tail = [0, 0, 0, 2, 0, 0, 0, 1, 0x00, 0x05, 0xf3, 0x73]; // 2 flavors: 1, 390003
    assert_eq!(payload[payload.len() - 12..], tail);
}

#[test]
fn mnt_the_program_must_not_answer_goes_on_untouched() {
    if !privileged() {
        return;
    }
    let table = table();
    let mut xdp = load(all_answers());
    mark_seen(
        &mut xdp,
        &table,
        client_ip(false),
        "/srv/a",
        TEMPLATE_MNT_FIRST,
        GENERATION,
    );
    let v4 = addressing(false, 800);
    let cred = auth_sys();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "not seen (never answered by user space)",
            frame(&addressing(true, 800), &mnt_call(3, &cred, 1, b"/srv/a")),
        ),
        (
            "secure export, port 1024",
            frame(&addressing(false, 1024), &mnt_call(3, &cred, 1, b"/srv/a")),
        ),
        (
            "secure export, port 40000",
            frame(&addressing(false, 40000), &mnt_call(1, &cred, 1, b"/srv/a")),
        ),
        (
            "same length, other bytes",
            frame(&v4, &mnt_call(3, &cred, 1, b"/srv/A")),
        ),
        (
            "trailing slash",
            frame(&v4, &mnt_call(3, &cred, 1, b"/srv/a/")),
        ),
        (
            "subdirectory",
            frame(&v4, &mnt_call(3, &cred, 1, b"/srv/a/x")),
        ),
        (
            "unknown path",
            frame(&v4, &mnt_call(3, &cred, 1, b"/srv/z")),
        ),
        ("empty path", frame(&v4, &mnt_call(3, &cred, 1, b""))),
        (
            "path longer than the map's keys",
            frame(&v4, &mnt_call(3, &cred, 1, &[b'/'; 129])),
        ),
        (
            "denied client's export (never seen)",
            frame(&v4, &mnt_call(3, &cred, 1, b"/srv/c")),
        ),
    ];
    for (what, f) in &cases {
        assert_steered(&mut xdp, f, what);
    }
    // Long roots: a path differing from a seen one only in the entry's tail (its last
    // byte, or the first byte past the head), only in the key's last head byte, or a
    // prefix of it, is never answered.
    for &len in &[PATH_HEAD + 1, 100, MNT_PATH_MAX] {
        let root = root_of_len(len, 'z');
        mark_seen(
            &mut xdp,
            &table,
            client_ip(false),
            &root,
            TEMPLATE_MNT_FIRST,
            GENERATION,
        );
        let ok = frame(&v4, &mnt_call(3, &cred, 1, root.as_bytes()));
        assert_eq!(
            xdp.test_run(&ok).unwrap().0,
            XDP_TX,
            "{len}-byte root, control"
        );
        let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
        let mut last = root.clone().into_bytes();
        *last.last_mut().unwrap() = b'y';
        variants.push((format!("{len}-byte root, last byte differs"), last));
        let mut first_tail = root.clone().into_bytes();
        first_tail[PATH_HEAD] ^= 1;
        variants.push((
            format!("{len}-byte root, byte {PATH_HEAD} differs"),
            first_tail,
        ));
        let mut head_end = root.clone().into_bytes();
        head_end[PATH_HEAD - 1] ^= 1;
        variants.push((
            format!("{len}-byte root, byte {} differs", PATH_HEAD - 1),
            head_end,
        ));
        let prefix = root.as_bytes()[..len - 1].to_vec();
        variants.push((format!("{len}-byte root, one byte short"), prefix));
        for (what, path) in &variants {
            assert_steered(&mut xdp, &frame(&v4, &mnt_call(3, &cred, 1, path)), what);
        }
    }
    // The path past what the program copies (a 340-byte credential and a 400-byte
    // verifier): user space answers it.
    let far = mnt_call_with(&auth_sys_body(255, 16), 400, b"/srv/a");
    assert_steered(
        &mut xdp,
        &frame(&v4, &far),
        "arguments past the program's copy",
    );
    assert!(user_space_reply_with(&frame(&v4, &far), &table, &MountList::new()).is_some());
    // An AUTH_SYS body that claims more gids than it holds.
    let mut short_gids = auth_sys_body(7, 2);
    let at = short_gids.len() - 12;
    short_gids[at..at + 4].copy_from_slice(&3u32.to_be_bytes());
    assert_steered(
        &mut xdp,
        &frame(&v4, &mnt_call_with(&short_gids, 0, b"/srv/a")),
        "gid count past the credential",
    );
    // The path's padding cut off: a string whose bytes pass the end of the datagram.
    let mut short = mnt_call(3, &cred, 1, b"/srv/a");
    short.truncate(short.len() - 4);
    assert_steered(&mut xdp, &frame(&v4, &short), "path past the end");
    // Denied: mnt_replies refuses to produce templates for it at all.
    assert!(templates::mnt_replies(&table, client_ip(false), "/srv/c", false).is_none());
    // Another generation (a reload happened): nothing of the old one is answered.
    let ok = frame(&v4, &mnt_call(3, &cred, 1, b"/srv/a"));
    assert_eq!(xdp.test_run(&ok).unwrap().0, XDP_TX, "the control case");
    xdp.set_mnt_generation(GENERATION + 1).unwrap();
    assert_steered(&mut xdp, &ok, "stale generation");
    xdp.set_mnt_generation(0).unwrap();
    assert_steered(&mut xdp, &ok, "generation 0");
    // MNT answers off (NULL on): steered.
    let mut null_only = load(
        Config::for_port(PORT)
            .with_answers(ANSWER_NULL_V4)
            .with_mnt_generation(GENERATION),
    );
    mark_seen(
        &mut null_only,
        &table,
        client_ip(false),
        "/srv/a",
        TEMPLATE_MNT_FIRST,
        GENERATION,
    );
    assert_steered(&mut null_only, &ok, "MNT answers off");
    // Removed from the map (UMNT): steered again.
    xdp.set_mnt_generation(GENERATION).unwrap();
    xdp.seen_remove(&SeenKey::for_ip(client_ip(false), b"/srv/a").unwrap())
        .unwrap();
    assert_steered(&mut xdp, &ok, "removed pair");
}

/// The program's own cost per answered MNT, printed (a figure, never an assertion):
/// `cargo test -p mount-user --test xdp_answers_mnt -- --ignored --nocapture` (root).
/// One run per call, as `xdp_answers`' cost table explains (`repeat` would re-run the
/// program on its own reply).
#[test]
#[ignore = "a benchmark: prints figures"]
fn mnt_cost_per_frame() {
    if !privileged() {
        return;
    }
    const CALLS: u32 = 200_000;
    let table = table();
    let sys = auth_sys();
    let frames = [
        (
            "MNT v3 IPv4 AUTH_SYS /srv/a, answered",
            frame(&addressing(false, 800), &mnt_call(3, &sys, 1, b"/srv/a")),
        ),
        (
            "MNT v1 IPv4 AUTH_SYS /srv/a, answered",
            frame(&addressing(false, 800), &mnt_call(1, &sys, 1, b"/srv/a")),
        ),
        (
            "MNT v3 IPv6 AUTH_NONE /srv/a, answered",
            frame(
                &addressing(true, 800),
                &mnt_call(3, &Credential::None, 1, b"/srv/a"),
            ),
        ),
        (
            "MNT v3 IPv4 AUTH_SYS 100-byte root, answered",
            frame(
                &addressing(false, 800),
                &mnt_call(3, &sys, 1, root_of_len(100, 'z').as_bytes()),
            ),
        ),
        (
            "MNT v3 IPv4 AUTH_SYS /srv/z, not seen: steered",
            frame(&addressing(false, 800), &mnt_call(3, &sys, 1, b"/srv/z")),
        ),
    ];
    for privileged in [false, true] {
        let mut xdp = load_as(all_answers(), privileged);
        for (i, v6) in [false, true].into_iter().enumerate() {
            mark_seen(
                &mut xdp,
                &table,
                client_ip(v6),
                "/srv/a",
                TEMPLATE_MNT_FIRST + 2 * i as u32,
                GENERATION,
            );
        }
        mark_seen(
            &mut xdp,
            &table,
            client_ip(false),
            &root_of_len(100, 'z'),
            TEMPLATE_MNT_FIRST + 4,
            GENERATION,
        );
        let who = if privileged {
            "root"
        } else {
            "unprivileged (no CAP_SYS_ADMIN/CAP_PERFMON)"
        };
        for (what, f) in &frames {
            let (mut total, mut action) = (0u64, 0);
            for _ in 0..CALLS {
                let (a, _, ns) = xdp.test_run_repeat(f, 1).unwrap();
                (action, total) = (a, total + u64::from(ns));
            }
            println!(
                "{who}: {what}: {} ns/frame one run per call (action {action}, {CALLS} calls)",
                total / u64::from(CALLS)
            );
        }
    }
}
