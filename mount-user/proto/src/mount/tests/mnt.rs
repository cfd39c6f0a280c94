//! MNT, UMNT, UMNTALL semantics.
use super::*;

const EXPORTS: &str = "\
/srv/a 10.0.0.0/8(rw,insecure) *(ro)
/srv/secure 10.0.0.0/8(rw) 127.0.0.1(rw)
/srv/krb 10.0.0.0/8(insecure,sec=krb5p:krb5i:sys)
/srv/nonefirst 10.0.0.0/8(insecure,sec=none:sys)
/srv/short 10.0.0.0/8(insecure,fh=0102030405)
/srv/long 10.0.0.0/8(insecure,fh=abababababababababababababababababababababababababababababababababababababababab)
/srv/only 192.168.7.0/24(insecure)
/srv/named *.example.com(insecure)
";
const CLIENT: &str = "10.1.2.3:700";

fn env() -> Env {
    Env::new(EXPORTS)
}

fn handle_of(env: &Env, path: &str) -> Vec<u8> {
    let m = env.table.lookup(path).unwrap();
    assert_eq!(m.export.path(), path);
    m.export.handle().as_bytes().to_vec()
}

fn mnt3(env: &Env, path: &[u8], addr: &str) -> Vec<u8> {
    env.results(&call(0x100, 3, 1, &path_arg(path)), addr)
}

/// The v3 MNT results for `path`, decoded: the handle and flavors, or the status.
fn mnt3_res(env: &Env, path: &[u8], addr: &str) -> Result<(Vec<u8>, Vec<u32>), u32> {
    decode_mountres3(&mnt3(env, path, addr))
}

#[test]
fn v3_mnt_returns_handle_and_default_flavor() {
    let env = env();
    let h = handle_of(&env, "/srv/a");
    assert_eq!(mnt3_res(&env, b"/srv/a", CLIENT), Ok((h.clone(), vec![1])));
    // The same export through a sloppy path.
    assert_eq!(mnt3_res(&env, b"//srv/./a/", CLIENT), Ok((h, vec![1])));
    assert_eq!(
        env.mount_list(),
        vec![("10.1.2.3".to_owned(), "/srv/a".to_owned())]
    );
}

#[test]
fn v3_flavors_keep_rule_order_with_auth_none_last() {
    let env = env();
    let h = handle_of(&env, "/srv/krb");
    assert_eq!(
        mnt3_res(&env, b"/srv/krb", CLIENT),
        Ok((h, vec![390_005, 390_004, 1]))
    );
    let h = handle_of(&env, "/srv/nonefirst");
    assert_eq!(
        mnt3_res(&env, b"/srv/nonefirst", CLIENT),
        Ok((h, vec![1, 0]))
    );
}

#[test]
fn v1_v2_fhstatus_is_a_fixed_32_byte_handle() {
    let env = env();
    for vers in [1, 2] {
        let r = env.results(&call(0x200, vers, 1, &path_arg(b"/srv/a")), CLIENT);
        let h = handle_of(&env, "/srv/a");
        assert_eq!(h.len(), 32);
        assert_eq!(r.len(), 36);
        assert_eq!(decode_fhstatus(&r), Ok(h));
        // A short explicit handle is zero-padded to 32 bytes, with no length word.
        let r = env.results(&call(0x201, vers, 1, &path_arg(b"/srv/short")), CLIENT);
        let mut want = hex("00000000 0102030405");
        want.resize(36, 0);
        assert_eq!(r, want);
        // A 40-byte handle cannot be expressed in v1/v2: EACCES.
        let r = env.results(&call(0x202, vers, 1, &path_arg(b"/srv/long")), CLIENT);
        assert_eq!(r, hex("0000000d"));
    }
    // ... but it can in v3.
    assert_eq!(
        mnt3_res(&env, b"/srv/long", CLIENT),
        Ok((vec![0xab; 40], vec![1]))
    );
}

#[test]
fn status_codes() {
    let env = env();
    let status = |path: &[u8], addr: &str| mnt3(&env, path, addr);
    // No export.
    assert_eq!(status(b"/nope", CLIENT), hex("00000002"));
    assert_eq!(status(b"/srv", CLIENT), hex("00000002"));
    // Relative path.
    assert_eq!(status(b"srv/a", CLIENT), hex("00000002"));
    // Refused client.
    assert_eq!(status(b"/srv/only", CLIENT), hex("0000000d"));
    // Insecure source port on a secure export, loopback not excepted.
    assert_eq!(status(b"/srv/secure", "10.0.0.1:1024"), hex("0000000d"));
    assert_eq!(status(b"/srv/secure", "127.0.0.1:40000"), hex("0000000d"));
    assert_eq!(status(b"/srv/secure", "127.0.0.1:1023")[..4], [0, 0, 0, 0]);
    // `insecure` lifts the rule.
    assert_eq!(status(b"/srv/a", "10.0.0.1:40000")[..4], [0, 0, 0, 0]);
    // `..` above / or above the export matched.
    assert_eq!(status(b"/..", CLIENT), hex("0000000d"));
    assert_eq!(status(b"/srv/a/../../..", CLIENT), hex("0000000d"));
    assert_eq!(status(b"/srv/a/../a/x", CLIENT), hex("0000000d"));
    assert_eq!(status(b"/srv/a/../secure", CLIENT), hex("0000000d"));
    // v1/v2 use the same errno numbers.
    for vers in [1, 2] {
        let r = env.results(&call(0x300, vers, 1, &path_arg(b"/nope")), CLIENT);
        assert_eq!(r, hex("00000002"));
        let r = env.results(&call(0x301, vers, 1, &path_arg(b"/srv/only")), CLIENT);
        assert_eq!(r, hex("0000000d"));
    }
    // Nothing refused was recorded.
    assert_eq!(
        env.mount_list(),
        vec![
            ("10.0.0.1".to_owned(), "/srv/a".to_owned()),
            ("127.0.0.1".to_owned(), "/srv/secure".to_owned()),
        ]
    );
}

#[test]
fn subdirectory_mounts() {
    let env = env();
    let m = env.table.lookup("/srv/a/sub/dir").unwrap();
    assert_eq!(m.subpath, "sub/dir");
    let h = m.export.subdir_handle("sub/dir").unwrap();
    assert_eq!(
        mnt3_res(&env, b"/srv/a/sub/dir/", CLIENT),
        Ok((h.as_bytes().to_vec(), vec![1]))
    );
    assert_ne!(h.as_bytes(), &handle_of(&env, "/srv/a")[..]);
    // `..` that stays inside the export is fine.
    assert_eq!(
        mnt3_res(&env, b"/srv/a/sub/x/../dir", CLIENT),
        Ok((h.as_bytes().to_vec(), vec![1]))
    );
    // An export with an explicit fh= cannot hand out subdirectory handles: NOENT.
    assert_eq!(mnt3(&env, b"/srv/short/sub", CLIENT), hex("00000002"));
    assert!(env
        .mount_list()
        .contains(&("10.1.2.3".to_owned(), "/srv/a/sub/dir".to_owned())));
}

#[test]
fn ipv4_mapped_clients_are_canonicalised() {
    let env = env();
    let h = handle_of(&env, "/srv/a");
    assert_eq!(
        mnt3_res(&env, b"/srv/a", "[::ffff:10.9.8.7]:700"),
        Ok((h, vec![1]))
    );
    assert_eq!(
        env.mount_list(),
        vec![("10.9.8.7".to_owned(), "/srv/a".to_owned())]
    );
}

#[test]
fn domain_rules_ask_for_the_name() {
    let env = env();
    let req = call(0x400, 3, 1, &path_arg(b"/srv/named"));
    let (o, _) = env.ask(&req, "192.0.2.1:700");
    assert_eq!(o, Outcome::NeedName);
    assert!(env.mount_list().is_empty());
    let (o, reply) = env.ask_with(&req, "192.0.2.1:700", Some("host.example.com"), 4096);
    assert!(matches!(o, Outcome::Reply { .. }));
    let h = handle_of(&env, "/srv/named");
    assert_eq!(
        decode_mountres3(&success_results(&reply, 0x400)),
        Ok((h, vec![1]))
    );
    let (_, reply) = env.ask_with(&req, "192.0.2.1:700", Some("host.example.org"), 4096);
    assert_eq!(success_results(&reply, 0x400), hex("0000000d"));
}

#[test]
fn umnt_and_umntall() {
    let env = env();
    for p in [&b"/srv/a"[..], b"/srv/a/x", b"/srv/krb"] {
        mnt3(&env, p, CLIENT);
    }
    mnt3(&env, b"/srv/a", "10.7.7.7:700");
    assert_eq!(env.mount_list().len(), 4);
    // UMNT normalises like MNT and answers void.
    let r = env.results(&call(0x500, 3, 3, &path_arg(b"/srv/a/x/")), CLIENT);
    assert!(r.is_empty());
    assert_eq!(env.mount_list().len(), 3);
    // Unknown entries and bad paths are still answered.
    assert!(env
        .results(&call(0x501, 1, 3, &path_arg(b"/nope")), CLIENT)
        .is_empty());
    assert!(env
        .results(&call(0x502, 2, 3, &path_arg(b"/../x")), CLIENT)
        .is_empty());
    let r = env.results(&call(0x503, 3, 4, &[]), CLIENT);
    assert!(r.is_empty());
    assert_eq!(
        env.mount_list(),
        vec![("10.7.7.7".to_owned(), "/srv/a".to_owned())]
    );
}
