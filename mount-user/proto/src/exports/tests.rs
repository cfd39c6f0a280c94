//! Tests of the whole pipeline: text -> compiled table -> lookup / client checks / XDR.
use std::collections::HashMap;
use std::net::IpAddr;

use super::*;
use crate::mount::MNTPATHLEN;
use crate::rpc::{AUTH_KRB5, AUTH_KRB5I, AUTH_KRB5P, AUTH_NONE, AUTH_SYS};

fn resolver() -> StaticResolver {
    let mut m: HashMap<String, Vec<IpAddr>> = HashMap::new();
    m.insert(
        "host.example".into(),
        vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
    );
    m.insert("other.example".into(), vec!["192.0.2.20".parse().unwrap()]);
    StaticResolver(m)
}

fn table(text: &str) -> ExportTable {
    match ExportTable::parse_str_with(text, "/etc/exports", &resolver()) {
        Ok(t) => t,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

fn error(text: &str) -> String {
    match ExportTable::parse_str_with(text, "/etc/exports", &resolver()) {
        Ok(_) => panic!("expected an error for {text:?}"),
        Err(e) => e.to_string(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn allowed(e: &Export, addr: &str, name: Option<&str>) -> Option<ClientOptions> {
    let facts = name.map(HostFacts::named);
    match e.check_client(ip(addr), facts.as_ref()) {
        ClientCheck::Allowed(o) => Some(o.clone()),
        ClientCheck::Denied => None,
        ClientCheck::NeedName => panic!("unexpected NeedName for {addr}"),
    }
}

// ---- syntax ----

#[test]
fn every_syntax_form() {
    let t = table(
        "# comment line\n\
         \n\
         /srv/a  10.0.0.0/8(rw,sec=sys) host.example(ro,insecure) *(ro)   # trailing comment\n\
         /srv/b -rw,sec=krb5p:sys 192.0.2.0/255.255.255.0 fd00::/8(ro)\n\
         /srv/c\n\
         \"/srv/my dir\" *\n\
         /srv/esc\\040aped \\\n\
         \t10.1.0.0/16(rw) \\\n\
         \t10.2.0.0/16\n\
         /srv/d//e/ 10.0.0.1\r\n",
    );
    let paths: Vec<&str> = t.exports().iter().map(Export::path).collect();
    assert_eq!(
        paths,
        vec![
            "/srv/a",
            "/srv/b",
            "/srv/c",
            "/srv/my dir",
            "/srv/esc aped",
            "/srv/d/e"
        ]
    );
    let a = &t.exports()[0];
    assert_eq!(a.groups(), ["10.0.0.0/8", "host.example", "*"]);
    assert_eq!(a.line(), 3);
    let b = &t.exports()[1];
    assert_eq!(b.groups(), ["192.0.2.0/255.255.255.0", "fd00::/8"]);
    let rb = b.rules();
    assert!(!rb[0].client.read_only, "-rw default applies");
    assert_eq!(rb[0].client.flavors, vec![AUTH_KRB5P, AUTH_SYS]);
    assert!(rb[1].client.read_only, "(ro) overrides -rw");
    assert_eq!(
        rb[1].client.flavors,
        vec![AUTH_KRB5P, AUTH_SYS],
        "sec default kept"
    );
    assert_eq!(t.exports()[2].groups(), ["*"], "no client means the world");
    let esc = &t.exports()[4];
    assert_eq!(
        esc.line(),
        7,
        "a continued line is numbered by its first line"
    );
    assert_eq!(esc.groups(), ["10.1.0.0/16", "10.2.0.0/16"]);
}

#[test]
fn error_messages_name_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "/a *\n\n/b 10.0.0.0/8(rx)\n",
            "/etc/exports:3: unknown option \"rx\" in \"10.0.0.0/8(rx)\"",
        ),
        ("srv/a *\n", "/etc/exports:1: export path \"srv/a\" is not absolute"),
        ("/a 10.0.0.0/33\n", "/etc/exports:1: prefix length 33 too long in \"10.0.0.0/33\" in \"10.0.0.0/33\""),
        ("/a 10.0.0/8\n", "/etc/exports:1: bad network \"10.0.0/8\" in \"10.0.0/8\""),
        (
            "/a *(fsid=1)\n/a/ 10.0.0.1(fsid=2)\n",
            "/etc/exports:2: conflicting fsid= for \"/a\": fsid=2 here, fsid=1 on line 1",
        ),
        ("/a @(rw)\n", "/etc/exports:1: bad netgroup name \"@\" in \"@(rw)\""),
        ("/a gss/krb9(rw)\n", "/etc/exports:1: unknown security flavor in obsolete client \"gss/krb9\" in \"gss/krb9(rw)\""),
        ("/a h[0-9(rw)\n", "/etc/exports:1: unterminated or empty [...] class in \"h[0-9\" in \"h[0-9(rw)\""),
        ("/a host (rw)\n", "/etc/exports:1: options \"(rw)\" are separated from their client by a blank"),
        ("/a *(rw\n", "/etc/exports:1: missing ')' in \"*(rw\""),
        ("\"/a *\n", "/etc/exports:1: unterminated quote"),
        ("/a *(rw)x\n", "/etc/exports:1: malformed client \"*(rw)x\""),
        ("/a -zz *\n", "/etc/exports:1: unknown option \"zz\" in \"-zz\""),
        ("/a * -rw\n", "/etc/exports:1: default options \"-rw\" must directly follow the export path"),
        ("/a *(sec=krb6)\n", "/etc/exports:1: unknown security flavor \"krb6\" in \"sec=krb6\""),
        ("/a *(fh=abc)\n", "/etc/exports:1: fh= needs an even number of hex digits"),
        ("/a/../b *\n", "/etc/exports:1: export path \"/a/../b\" contains a \"..\" component"),
        (
            "/a 10.0.0.1(fh=aa) 10.0.0.2(fh=bb)\n",
            "/etc/exports:1: conflicting fh= for one export: fh=aa for 10.0.0.1, fh=bb for 10.0.0.2",
        ),
        (
            "/a *(fh=aa)\n/b *(fh=aa)\n",
            "/etc/exports:2: export \"/b\" has the same file handle as \"/a\" (line 1)",
        ),
        (
            "/a *(fsid=31)\n/b *(fsid=0x1f)\n",
            "/etc/exports:2: export \"/b\" has the same file handle as \"/a\" (line 1)",
        ),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(
            got.starts_with(want),
            "for {text:?}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn all_errors_of_a_file_are_reported() {
    let err = ExportTable::parse_str_with("/a *(rx)\n/ok *\nrel *\n", "ex", &resolver())
        .err()
        .unwrap();
    let lines: Vec<usize> = err.line_errors().iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![1, 3]);
    assert_eq!(err.to_string().lines().count(), 2);
}

#[test]
fn long_path_is_refused() {
    let long = format!("/{} *\n", "a".repeat(MNTPATHLEN));
    assert!(error(&long).contains("at most 1024"));
    let long_spec = format!("/a {}.example\n", "h".repeat(250));
    assert!(error(&long_spec).starts_with("/etc/exports:1: client spec is 258 bytes long"));
}

#[test]
fn many_exports_lookup_and_list() {
    let text: String = (0..5000)
        .map(|i| format!("/srv/d{i}/x 10.0.0.{}\n", i % 250))
        .collect();
    let t = table(&text);
    assert_eq!(t.exports().len(), 5000);
    assert_eq!(t.export_entry_ends().len(), 5000);
    assert_eq!(
        t.export_entry_ends().last().map(|e| e + 4),
        Some(t.export_list_xdr().len())
    );
    let m = t.lookup("/srv/d4321/x/y/z").unwrap();
    assert_eq!((m.export.path(), m.subpath), ("/srv/d4321/x", "y/z"));
    assert!(t.lookup("/srv/d4321").is_none());
}

#[test]
fn unresolvable_name_is_a_warning_and_matches_by_reverse_name() {
    let t = table("/a nosuch.invalid(rw) 10.0.0.1\n");
    let e = &t.exports()[0];
    assert!(matches!(e.rules()[0].matcher, Matcher::Unresolved(ref n) if n == "nosuch.invalid"));
    assert_eq!(t.unresolved_names(), ["nosuch.invalid"]);
    let w: Vec<String> = t.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with("/etc/exports:1: cannot resolve host \"nosuch.invalid\""),
        "{w:?}"
    );
    // The exact address rule comes later but needs no name.
    assert!(allowed(e, "10.0.0.1", Some("x")).is_some());
    assert_eq!(e.check_client(ip("10.0.0.2"), None), ClientCheck::NeedName);
    assert!(allowed(e, "10.0.0.2", Some("nosuch.invalid")).is_some_and(|o| !o.read_only));
    assert!(allowed(e, "10.0.0.2", Some("other.invalid")).is_none());
}

// ---- matching ----

#[test]
fn ipv4_ipv6_cidr_netmask_and_names() {
    let t = table(
        "/a 10.0.0.0/8(rw) 192.168.1.0/255.255.255.0 fd00::/8(insecure) 2001:db8::1 \
         host.example(sec=krb5) 172.16.0.5\n",
    );
    let e = &t.exports()[0];
    assert_eq!(
        allowed(e, "10.200.1.1", None).map(|o| o.read_only),
        Some(false)
    );
    assert!(allowed(e, "11.0.0.1", None).is_none());
    assert!(allowed(e, "192.168.1.77", None).is_some());
    assert!(allowed(e, "192.168.2.1", None).is_none());
    assert_eq!(allowed(e, "fd12::3", None).map(|o| o.secure), Some(false));
    assert!(allowed(e, "fe80::1", None).is_none());
    assert!(allowed(e, "2001:db8::1", None).is_some());
    assert!(allowed(e, "2001:db8::2", None).is_none());
    assert_eq!(
        allowed(e, "192.0.2.10", None).map(|o| o.flavors),
        Some(vec![AUTH_KRB5])
    );
    assert!(
        allowed(e, "2001:db8::10", None).is_some(),
        "every resolved address"
    );
    assert!(allowed(e, "172.16.0.5", None).is_some());
    assert!(
        allowed(e, "::ffff:172.16.0.5", None).is_some(),
        "mapped addresses"
    );
}

#[test]
fn first_match_wins_across_exact_and_scanned_rules() {
    let t =
        table("/a 10.0.0.0/8(rw) 10.0.0.1(ro) *(ro,insecure)\n/b 10.0.0.1(ro) 10.0.0.0/8(rw)\n");
    let a = &t.exports()[0];
    assert_eq!(
        allowed(a, "10.0.0.1", None).map(|o| o.read_only),
        Some(false)
    );
    assert_eq!(allowed(a, "8.8.8.8", None).map(|o| o.secure), Some(false));
    let b = &t.exports()[1];
    assert_eq!(
        allowed(b, "10.0.0.1", None).map(|o| o.read_only),
        Some(true)
    );
    assert_eq!(
        allowed(b, "10.0.0.2", None).map(|o| o.read_only),
        Some(false)
    );
}

#[test]
fn wildcards_need_a_name_only_when_they_could_decide() {
    let t = table("/a 10.0.0.0/8(rw) *.example.com(ro) 192.0.2.0/24(rw)\n");
    let e = &t.exports()[0];
    // An earlier rule decides: no name needed.
    assert!(matches!(
        e.check_client(ip("10.1.1.1"), None),
        ClientCheck::Allowed(_)
    ));
    // The wildcard comes first for this client: the name is needed.
    assert_eq!(e.check_client(ip("192.0.2.1"), None), ClientCheck::NeedName);
    assert_eq!(e.check_client(ip("8.8.8.8"), None), ClientCheck::NeedName);
    assert_eq!(
        allowed(e, "192.0.2.1", Some("pc.example.com")).map(|o| o.read_only),
        Some(true)
    );
    assert_eq!(
        allowed(e, "192.0.2.1", Some("pc.example.org")).map(|o| o.read_only),
        Some(false)
    );
    assert!(allowed(e, "8.8.8.8", Some("dns.google")).is_none());
    assert!(allowed(e, "8.8.8.8", Some("A.B.EXAMPLE.COM.")).is_some());
    // An exact address before the wildcard decides without a name.
    let t = table("/b 192.0.2.7(rw) *.example.com(ro)\n");
    assert_eq!(
        allowed(&t.exports()[0], "192.0.2.7", None).map(|o| o.read_only),
        Some(false)
    );
}

#[test]
fn secure_is_default_and_sec_keeps_order() {
    let t = table("/a *(sec=krb5p:krb5i:sys:none)\n/b *(insecure)\n");
    let a = allowed(&t.exports()[0], "1.2.3.4", None).unwrap();
    assert!(a.secure && a.read_only);
    assert_eq!(a.flavors, vec![AUTH_KRB5P, AUTH_KRB5I, AUTH_SYS, AUTH_NONE]);
    let b = allowed(&t.exports()[1], "1.2.3.4", None).unwrap();
    assert!(!b.secure);
    assert_eq!(b.flavors, vec![AUTH_SYS]);
}

// ---- lookup ----

#[test]
fn longest_prefix_lookup() {
    let t = table("/ *\n/srv *\n/srv/a *\n/srv/a/b/c *\n");
    let m = |p: &'static str| {
        let m = t.lookup(p).unwrap();
        (m.export.path().to_string(), m.subpath.to_string())
    };
    assert_eq!(m("/srv/a"), ("/srv/a".into(), "".into()));
    assert_eq!(m("/srv/a/b"), ("/srv/a".into(), "b".into()));
    assert_eq!(m("/srv/a/b/c/d/e"), ("/srv/a/b/c".into(), "d/e".into()));
    assert_eq!(
        m("/srv/ab"),
        ("/srv".into(), "ab".into()),
        "sibling is not a child"
    );
    assert_eq!(m("/srv"), ("/srv".into(), "".into()));
    assert_eq!(m("/etc/passwd"), ("/".into(), "etc/passwd".into()));
    assert_eq!(m("/"), ("/".into(), "".into()));
    assert!(t.lookup("relative").is_none());
}

#[test]
fn lookup_without_root_export() {
    let t = table("/srv/a *\n");
    assert!(t.lookup("/srv/ab").is_none());
    assert!(t.lookup("/srv").is_none());
    assert!(t.lookup("/").is_none());
    assert_eq!(t.lookup("/srv/a/x").map(|m| m.subpath), Some("x"));
    assert!(ExportTable::empty().lookup("/srv/a").is_none());
}

// ---- handles ----

#[test]
fn handles_explicit_synthetic_and_fsid() {
    let t = table("/srv/a *\n/srv/b *(fh=0102030405)\n/srv/c *(fsid=7)\n/ *\n");
    let [a, b, c, root] = t.exports() else {
        panic!("4 exports")
    };
    assert_eq!(*a.handle(), FileHandle::synthetic("/srv/a"));
    assert_eq!(a.handle_source(), &HandleSource::SyntheticPath);
    assert_eq!(
        a.subdir_handle("x/y"),
        Some(FileHandle::synthetic("/srv/a/x/y"))
    );
    assert_eq!(b.handle().as_bytes(), [1, 2, 3, 4, 5]);
    assert_eq!(b.subdir_handle("x"), None);
    assert_eq!(*c.handle(), FileHandle::synthetic("fsid=7"));
    assert_eq!(
        c.subdir_handle("x"),
        Some(FileHandle::synthetic("fsid=7/x"))
    );
    assert_eq!(
        root.subdir_handle("etc"),
        Some(FileHandle::synthetic("/etc"))
    );
}

// ---- EXPORT list ----

#[test]
fn export_list_xdr_golden() {
    let t = table("/srv/a 10.0.0.0/8(rw) *\n/x\n");
    #[rustfmt::skip]
    let want: Vec<u8> = vec![
        0, 0, 0, 1,                                 // entry follows
        0, 0, 0, 6, b'/', b's', b'r', b'v', b'/', b'a', 0, 0,
        0, 0, 0, 1,                                 // group follows
        0, 0, 0, 10, b'1', b'0', b'.', b'0', b'.', b'0', b'.', b'0', b'/', b'8', 0, 0,
        0, 0, 0, 1,
        0, 0, 0, 1, b'*', 0, 0, 0,
        0, 0, 0, 0,                                 // end of groups
        0, 0, 0, 1,                                 // entry follows
        0, 0, 0, 2, b'/', b'x', 0, 0,
        0, 0, 0, 1,
        0, 0, 0, 1, b'*', 0, 0, 0,
        0, 0, 0, 0,                                 // end of groups
        0, 0, 0, 0,                                 // end of list
    ];
    assert_eq!(t.export_list_xdr(), want.as_slice());
    assert_eq!(t.export_entry_ends(), [52, 80]);
    assert_eq!(t.export_entry_xdr(1), Some(&want[52..80]));
    assert_eq!(ExportTable::empty().export_list_xdr(), [0, 0, 0, 0]);
    assert!(ExportTable::empty().export_entry_ends().is_empty());
}

// ---- describe / publication ----

#[test]
fn describe_shows_handles_and_rules() {
    let t = table(
        "/srv/a 10.0.0.0/8(rw,async) host.example nosuch.invalid *.x.org(fh=00ff) \
         10.1.1.1 @trusted(sec=krb5,rw,sec=sys) gss/krb5p\n",
    );
    let d = t.describe();
    assert!(d.contains("/srv/a  (line 1)"), "{d}");
    assert!(d.contains("handle 00ff (fh=)"), "{d}");
    assert!(
        d.contains("10.0.0.0/8(rw,secure,sec=sys,async)  [network 10.0.0.0/8]"),
        "{d}"
    );
    assert!(d.contains("[host name -> 192.0.2.10, 2001:db8::10]"), "{d}");
    assert!(
        d.contains("[unresolved host name: reverse name equals nosuch.invalid]"),
        "{d}"
    );
    assert!(
        d.contains("[wildcard: reverse name matches *.x.org]"),
        "{d}"
    );
    assert!(d.contains("[address 10.1.1.1]"), "{d}");
    assert!(d.contains("[netgroup trusted (NSS innetgr)]"), "{d}");
    assert!(d.contains("[obsolete form: matches no client]"), "{d}");
    assert!(
        d.contains(
            "sec=krb5(rw,secure,root_squash,no_all_squash) \
             sec=sys(rw,secure,root_squash,no_all_squash)"
        ),
        "{d}"
    );
}

proptest::proptest! {
    #[test]
    fn parser_never_panics(text in "\\PC*") {
        let _ = ExportTable::parse_str_with(&text, "p", &StaticResolver::default());
    }

    /// Every rejected line names the file and a line that exists.
    #[test]
    fn every_error_names_its_file_and_line(
        lines in proptest::collection::vec(
            "(/[a-z]{1,3}|rel|\"/q q\")( ([a-z*?@\\[\\]0-9./-]{1,12}|gss/krb5)(\\([a-z_=:,0-9/-]{0,20}\\))?){0,3}( \\\\)?",
            1..8,
        )
    ) {
        let text = lines.join("\n");
        let total = text.lines().count().max(1);
        if let Err(e) = ExportTable::parse_str_with(&text, "/etc/exports.d/p.exports", &StaticResolver::default()) {
            proptest::prop_assert!(!e.line_errors().is_empty());
            for err in e.line_errors() {
                proptest::prop_assert_eq!(err.origin.as_str(), "/etc/exports.d/p.exports");
                proptest::prop_assert!((1..=total).contains(&err.line), "{err} of {total} lines");
                let prefix = format!("/etc/exports.d/p.exports:{}: ", err.line);
                proptest::prop_assert!(err.to_string().starts_with(&prefix), "{}", err);
            }
        }
    }

    #[test]
    fn lookup_never_panics(path in "\\PC*") {
        let t = table("/ *\n/srv/a *\n");
        if let Some(m) = t.lookup(&path) {
            proptest::prop_assert!(path.starts_with(m.export.path()));
            proptest::prop_assert!(path.ends_with(m.subpath));
        }
    }

    #[test]
    fn parser_never_panics_on_export_like_text(
        text in "([/a-z\"\\\\#*()@?,=:. \t\n0-9-]|rw|ro|sec=|fh=|/8|\\\\040){0,80}"
    ) {
        let _ = ExportTable::parse_str_with(&text, "p", &StaticResolver::default());
    }
}

#[test]
fn lookup_exact_only_for_byte_exact_export_paths() {
    let t = table("/srv/a *(ro)\n/ *(ro)\n/srv/\\303\\251t\\303\\251 *(ro)\n");
    assert_eq!(t.lookup_exact(b"/srv/a").map(Export::path), Some("/srv/a"));
    assert_eq!(t.lookup_exact(b"/").map(Export::path), Some("/"));
    assert_eq!(
        t.lookup_exact("/srv/été".as_bytes()).map(Export::path),
        Some("/srv/été")
    );
    // Not normal, or below an export: the general lookup's business.
    for raw in [
        &b"/srv/a/"[..],
        b"//srv/a",
        b"/srv/./a",
        b"/srv/a/x",
        b"",
        b"/srv",
    ] {
        assert!(t.lookup_exact(raw).is_none(), "{raw:?}");
    }
}

#[path = "tests_dropin.rs"]
mod dropin;
