//! exports(5) drop-in tests: the man page's EXAMPLE, netgroups, character classes,
//! per-flavor options, several files with merged and duplicated paths.
use std::sync::Arc;

use super::*;

/// The EXAMPLE section of exports(5) (nfs-utils 2.6), verbatim.
const MAN_EXAMPLE: &str = "\
# sample /etc/exports file
/               master(rw) trusty(rw,no_root_squash)
/projects       proj*.local.domain(rw)
/usr            *.local.domain(ro) @trusted(rw)
/home/joe       pc001(rw,all_squash,anonuid=150,anongid=100)
/pub            *(ro,insecure,all_squash)
/srv/www        -sync,rw server @trusted @external(ro)
/foo            2001:db8:9:e54::/64(rw) 192.0.2.0/24(rw)
/build          buildhost[0-9].local.domain(rw)
";

fn facts(name: &str, groups: &[(&str, bool)]) -> HostFacts {
    let mut f = HostFacts::named(name);
    f.netgroups = groups.iter().map(|(g, m)| (Arc::from(*g), *m)).collect();
    f.netgroups.sort();
    f
}

fn grant<'e>(e: &'e Export, addr: &str, host: &HostFacts) -> Option<&'e ClientOptions> {
    match e.check_client(addr.parse().unwrap(), Some(host)) {
        ClientCheck::Allowed(o) => Some(o),
        ClientCheck::Denied => None,
        ClientCheck::NeedName => panic!("NeedName with facts for {addr}"),
    }
}

/// Compiles `text` (file "e") with no host name resolving.
fn table(text: &str) -> ExportTable {
    ExportTable::parse_str_with(text, "e", &StaticResolver::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn export<'t>(t: &'t ExportTable, path: &str) -> &'t Export {
    t.lookup_exact(path.as_bytes()).unwrap()
}

#[test]
fn man_page_example_loads_with_the_man_pages_meaning() {
    // Only the man page's own hosts resolve: master and trusty; pc001 and server do not.
    let mut hosts = std::collections::HashMap::new();
    hosts.insert("master".to_string(), vec!["192.0.2.1".parse().unwrap()]);
    hosts.insert("trusty".to_string(), vec!["192.0.2.2".parse().unwrap()]);
    let t = ExportTable::parse_str_with(MAN_EXAMPLE, "/etc/exports", &StaticResolver(hosts))
        .unwrap_or_else(|e| panic!("{e}"));
    let paths: Vec<&str> = t.exports().iter().map(Export::path).collect();
    assert_eq!(
        paths,
        [
            "/",
            "/projects",
            "/usr",
            "/home/joe",
            "/pub",
            "/srv/www",
            "/foo",
            "/build"
        ]
    );
    let nobody = facts(
        "elsewhere.example",
        &[("trusted", false), ("external", false)],
    );
    let trusted = facts("t1.example", &[("trusted", true), ("external", false)]);
    let external = facts("x1.example", &[("trusted", false), ("external", true)]);

    // "exports the entire filesystem to machines master and trusty ... all uid squashing
    // is turned off for host trusty".
    let root = export(&t, "/");
    assert!(!grant(root, "192.0.2.1", &nobody).unwrap().read_only);
    assert!(!grant(root, "192.0.2.2", &nobody).unwrap().read_only);
    assert_eq!(
        root.rules()[1]
            .options
            .kept
            .get("root_squash")
            .map(String::as_str),
        Some("no_root_squash")
    );
    assert!(grant(root, "192.0.2.3", &nobody).is_none());

    // Wildcard host names and netgroups.
    let projects = export(&t, "/projects");
    assert!(grant(projects, "10.0.0.1", &facts("proj7.local.domain", &[])).is_some());
    assert!(grant(projects, "10.0.0.1", &facts("web.local.domain", &[])).is_none());
    let usr = export(&t, "/usr");
    assert!(
        grant(
            usr,
            "10.0.0.1",
            &facts("a.local.domain", &[("trusted", false)])
        )
        .unwrap()
        .read_only
    );
    assert!(!grant(usr, "10.0.0.1", &trusted).unwrap().read_only);
    assert!(grant(usr, "10.0.0.1", &nobody).is_none());
    assert_eq!(
        t.netgroups().as_ref(),
        [Arc::from("external"), Arc::from("trusted")]
    );

    // The PC/NFS client: matched by name (it does not resolve), all squashed to 150/100.
    let joe = export(&t, "/home/joe");
    let pc = grant(joe, "10.0.0.9", &facts("pc001", &[])).unwrap();
    assert!(!pc.read_only);
    let kept = &joe.rules()[0].options.kept;
    assert_eq!(kept.get("anonuid").map(String::as_str), Some("anonuid=150"));
    assert_eq!(kept.get("anongid").map(String::as_str), Some("anongid=100"));
    assert!(joe.rules()[0].options.all_squash);

    // "the public FTP directory to every host in the world ... insecure".
    let public = grant(export(&t, "/pub"), "198.51.100.7", &nobody).unwrap();
    assert!(public.read_only && !public.secure);

    // "read-write to the machine 'server' as well as the @trusted netgroup, and read-only
    // to netgroup @external, all three with sync".
    let www = export(&t, "/srv/www");
    assert!(
        !grant(
            www,
            "10.0.0.1",
            &facts("server", &[("trusted", false), ("external", false)])
        )
        .unwrap()
        .read_only
    );
    assert!(!grant(www, "10.0.0.1", &trusted).unwrap().read_only);
    assert!(grant(www, "10.0.0.1", &external).unwrap().read_only);
    assert!(grant(www, "10.0.0.1", &nobody).is_none());
    for r in www.rules() {
        assert_eq!(r.options.kept.get("sync").map(String::as_str), Some("sync"));
    }

    // "to both an IPv6 and an IPv4 subnet".
    let foo = export(&t, "/foo");
    assert!(grant(foo, "2001:db8:9:e54::5", &nobody).is_some());
    assert!(grant(foo, "192.0.2.200", &nobody).is_some());
    assert!(grant(foo, "2001:db8:9:e55::5", &nobody).is_none());

    // "a character class wildcard match".
    let build = export(&t, "/build");
    assert!(grant(build, "10.0.0.1", &facts("buildhost7.local.domain", &[])).is_some());
    assert!(grant(build, "10.0.0.1", &facts("buildhostx.local.domain", &[])).is_none());

    // pc001 and server did not resolve: warnings with their lines, not errors.
    let warned: Vec<usize> = t.warnings().iter().map(|w| w.line).collect();
    assert_eq!(warned, [5, 7]);
}

#[test]
fn netgroup_rules_need_facts_and_follow_membership() {
    let t = table("/a 10.0.0.1(ro) @ops(rw) 10.0.0.0/8(ro,insecure)\n");
    let e = export(&t, "/a");
    // An exact address before the netgroup decides without facts.
    assert!(matches!(
        e.check_client("10.0.0.1".parse().unwrap(), None),
        ClientCheck::Allowed(_)
    ));
    assert_eq!(
        e.check_client("10.0.0.2".parse().unwrap(), None),
        ClientCheck::NeedName
    );
    // Facts from before the table named the group are not enough.
    assert_eq!(
        e.check_client("10.0.0.2".parse().unwrap(), Some(&facts("h", &[]))),
        ClientCheck::NeedName
    );
    assert!(
        !grant(e, "10.0.0.2", &facts("h", &[("ops", true)]))
            .unwrap()
            .read_only
    );
    let other = grant(e, "10.0.0.2", &facts("h", &[("ops", false)])).unwrap();
    assert!(
        other.read_only && !other.secure,
        "falls through to the network rule"
    );
}

#[test]
fn per_flavor_sections_give_the_mnt_flavor_list_and_their_own_ro_rw() {
    let t = table("/k *(sec=krb5:krb5i,rw,sec=sys,ro)\n/d -sec=krb5p,rw 10.0.0.0/8(sec=sys,ro)\n");
    let k = &export(&t, "/k").rules()[0];
    assert_eq!(k.client.flavors, [AUTH_KRB5, AUTH_KRB5I, AUTH_SYS]);
    let ro: Vec<(u32, bool)> = k
        .options
        .flavor_sections()
        .iter()
        .map(|(f, o)| (*f, o.read_only))
        .collect();
    assert_eq!(
        ro,
        [(AUTH_KRB5, false), (AUTH_KRB5I, false), (AUTH_SYS, true)]
    );
    // Defaults' flavors come first, the client's sec= adds its own, as nfs-utils.
    let d = &export(&t, "/d").rules()[0];
    assert_eq!(d.client.flavors, [AUTH_KRB5P, AUTH_SYS]);
    let ro: Vec<bool> = d
        .options
        .flavor_sections()
        .iter()
        .map(|(_, o)| o.read_only)
        .collect();
    assert_eq!(ro, [false, true]);
}

#[test]
fn files_merge_like_exportfs_and_duplicates_are_reported() {
    let t = ExportTable::compile_texts(
        &[
            ("/srv/a 10.0.0.1(rw)\n/srv/b *\n", "/etc/exports"),
            (
                "/srv/a 10.0.0.2(ro) 10.0.0.1(rw)\n/srv/c *\n",
                "/etc/exports.d/10-x.exports",
            ),
            ("\n/srv/a 10.0.0.2(rw)\n", "/etc/exports.d/20-y.exports"),
        ],
        &StaticResolver::default(),
    )
    .unwrap();
    let paths: Vec<&str> = t.exports().iter().map(Export::path).collect();
    assert_eq!(paths, ["/srv/a", "/srv/b", "/srv/c"]);
    let a = export(&t, "/srv/a");
    assert_eq!(a.groups(), ["10.0.0.1", "10.0.0.2"]);
    assert!(
        grant(a, "10.0.0.2", &facts("x", &[])).unwrap().read_only,
        "first entry kept"
    );
    let w: Vec<String> = t.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "/etc/exports.d/10-x.exports:1: duplicated export entries: 10.0.0.1:/srv/a \
             [IGNORED], 10.0.0.1:/srv/a (/etc/exports:1) kept",
            "/etc/exports.d/20-y.exports:2: incompatible duplicated export entries: \
             10.0.0.2:/srv/a [IGNORED], 10.0.0.2:/srv/a (/etc/exports:1) kept",
        ]
    );
    // Errors of several files are all reported, each with its own file:line.
    let err = ExportTable::compile_texts(
        &[("/a *(bogus)\n", "one"), ("/b *\n/c *(rx)\n", "two")],
        &StaticResolver::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "one:1: unknown option \"bogus\" in \"*(bogus)\"\ntwo:2: unknown option \"rx\" in \"*(rx)\""
    );
}

#[test]
fn obsolete_gss_client_loads_with_a_warning_and_matches_nothing() {
    let t = table("/a gss/krb5p(rw) 10.0.0.1\n");
    let w = t.warnings()[0].to_string();
    assert!(
        w.starts_with("e:1: obsolete client form \"gss/krb5p\""),
        "{w}"
    );
    assert!(w.contains("*(sec=krb5p)"), "{w}");
    let e = export(&t, "/a");
    assert_eq!(
        e.check_client("10.0.0.9".parse().unwrap(), None),
        ClientCheck::Denied
    );
    assert!(matches!(
        e.check_client("10.0.0.1".parse().unwrap(), None),
        ClientCheck::Allowed(_)
    ));
}

#[test]
fn wildcard_classes_and_question_marks_match_reverse_names() {
    let t = table("/w node?.lab(rw) rack[1-3]-[!x]*.lab(ro)\n");
    let e = export(&t, "/w");
    assert!(
        !grant(e, "10.0.0.1", &facts("node5.lab", &[]))
            .unwrap()
            .read_only
    );
    assert!(grant(e, "10.0.0.1", &facts("node55.lab", &[])).is_none());
    assert!(
        grant(e, "10.0.0.1", &facts("rack2-a7.lab", &[]))
            .unwrap()
            .read_only
    );
    assert!(grant(e, "10.0.0.1", &facts("rack4-a7.lab", &[])).is_none());
    assert!(grant(e, "10.0.0.1", &facts("rack2-x7.lab", &[])).is_none());
}
