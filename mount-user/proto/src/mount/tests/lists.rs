//! DUMP, EXPORT, EXPORTALL: contents, empty lists, truncation, filtering.
use super::*;

const EXPORTS: &str = "\
/srv/a 10.0.0.0/8(rw,insecure) *(ro)
/srv/b 192.168.0.0/16(insecure)
/srv/c 10.1.2.3(insecure) host.example.com(ro)
";
const CLIENT: &str = "10.1.2.3:700";

#[test]
fn export_lists_every_export_with_groups() {
    let env = Env::new(EXPORTS);
    let want = vec![
        (
            "/srv/a".to_owned(),
            vec!["10.0.0.0/8".to_owned(), "*".to_owned()],
        ),
        ("/srv/b".to_owned(), vec!["192.168.0.0/16".to_owned()]),
        (
            "/srv/c".to_owned(),
            vec!["10.1.2.3".to_owned(), "host.example.com".to_owned()],
        ),
    ];
    for (vers, proc_) in [(1, 5), (2, 5), (3, 5), (1, 6), (2, 6)] {
        let r = env.results(&call(1, vers, proc_, &[]), CLIENT);
        assert_eq!(r, env.table.export_list_xdr(), "v{vers} proc {proc_}");
        assert_eq!(decode_exports(&r), want);
    }
}

#[test]
fn empty_lists_are_a_single_zero() {
    let env = Env::new("");
    for vers in 1..=3 {
        assert_eq!(env.results(&call(2, vers, 5, &[]), CLIENT), hex("00000000"));
        assert_eq!(env.results(&call(3, vers, 2, &[]), CLIENT), hex("00000000"));
    }
    let mut filtered = Env::new("");
    filtered.policy.filter_exports_by_client = true;
    assert_eq!(
        filtered.results(&call(4, 3, 5, &[]), CLIENT),
        hex("00000000")
    );
}

#[test]
fn export_truncates_at_entry_boundaries() {
    let env = Env::new(EXPORTS);
    let full = env.table.export_list_xdr().len();
    let header = 24;
    let mut seen_partial = false;
    for cap in header + 4..header + full {
        let (o, reply) = env.ask_with(&call(5, 3, 5, &[]), CLIENT, None, cap);
        let Outcome::Reply { len, truncated } = o else {
            panic!("cap {cap}: {o:?}")
        };
        assert!(truncated, "cap {cap}");
        assert!(len <= cap);
        let entries = decode_exports(&success_results(&reply, 5));
        assert!(entries.len() < 3);
        seen_partial |= !entries.is_empty();
    }
    assert!(seen_partial);
    let (o, _) = env.ask_with(&call(5, 3, 5, &[]), CLIENT, None, header + full);
    assert_eq!(
        o,
        Outcome::Reply {
            len: header + full,
            truncated: false
        }
    );
    let (o, _) = env.ask_with(&call(5, 3, 5, &[]), CLIENT, None, header + 3);
    assert_eq!(o, Outcome::Drop(DropReason::NoRoom));
}

#[test]
fn filtered_export_shows_only_mountable_exports() {
    let mut env = Env::new(EXPORTS);
    env.policy.filter_exports_by_client = true;
    // host.example.com does not resolve here: its rule matches by reverse name, so a
    // client the other rules do not decide is asked for its name.
    let (o, _) = env.ask(&call(6, 3, 5, &[]), "192.168.1.1:700");
    assert_eq!(o, Outcome::NeedName);
    let dirs = |name: &str| -> Vec<String> {
        let (_, reply) = env.ask_with(&call(6, 3, 5, &[]), "192.168.1.1:700", Some(name), 4096);
        decode_exports(&success_results(&reply, 6))
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    assert_eq!(dirs("other.example"), vec!["/srv/a", "/srv/b"]);
    assert_eq!(dirs("host.example.com"), vec!["/srv/a", "/srv/b", "/srv/c"]);
    // 10.1.2.3 matches /srv/c's first rule before the name rule is needed.
    let r = env.results(&call(7, 2, 6, &[]), CLIENT);
    let entries = decode_exports(&r);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].0, "/srv/c");
    assert_eq!(entries[1].1, vec!["10.1.2.3", "host.example.com"]);
}

#[test]
fn filtered_export_asks_for_a_name_when_a_rule_needs_it() {
    let mut env = Env::new("/srv/n *.example.com(ro)\n/srv/a 10.0.0.0/8(ro)\n");
    env.policy.filter_exports_by_client = true;
    let (o, _) = env.ask(&call(8, 3, 5, &[]), "172.16.0.1:700");
    assert_eq!(o, Outcome::NeedName);
    let (o, reply) = env.ask_with(
        &call(8, 3, 5, &[]),
        "172.16.0.1:700",
        Some("x.example.com"),
        4096,
    );
    assert!(matches!(o, Outcome::Reply { .. }));
    let dirs: Vec<String> = decode_exports(&success_results(&reply, 8))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(dirs, vec!["/srv/n"]);
}

#[test]
fn dump_lists_mounts_and_truncates() {
    let env = Env::new(EXPORTS);
    let mnt = |addr: &str| env.results(&call(9, 3, 1, &path_arg(b"/srv/a")), addr);
    for i in 0..20 {
        mnt(&format!("10.0.0.{i}:700"));
    }
    let r = env.results(&call(10, 1, 2, &[]), CLIENT);
    let list = decode_mountlist(&r);
    assert_eq!(list, env.mount_list());
    assert_eq!(list.len(), 20);
    // Each entry: 4 + (4+8 or 4+12 for the host) + (4+8) bytes; a 200-byte buffer cuts.
    let (o, reply) = env.ask_with(&call(11, 3, 2, &[]), CLIENT, None, 200);
    let Outcome::Reply { len, truncated } = o else {
        panic!("{o:?}")
    };
    assert!(truncated);
    assert!(len <= 200);
    let cut = decode_mountlist(&success_results(&reply, 11));
    assert!(!cut.is_empty() && cut.len() < 20);
    assert_eq!(cut[..], list[..cut.len()]);
}

#[test]
fn udp_list_budget_caps_untrusted_replies_at_twice_the_call() {
    // 300 exports: a 40-byte call would otherwise get a reply of several KiB.
    let text: String = (0..300)
        .map(|i| format!("/srv/export-{i:04} 10.0.0.0/8(ro) *(ro)\n"))
        .collect();
    let mut env = Env::new(&text);
    env.mounts.add("10.9.9.9", "/srv/export-0001");
    for i in 0..200 {
        env.mounts
            .add(&format!("10.8.{}.{}", i / 250, i % 250), "/srv/export-0002");
    }
    env.policy.list_budget = Some(ListBudget {
        factor: 2,
        trusted: vec!["192.0.2.0/24".parse().unwrap(), "fd00::/8".parse().unwrap()],
    });
    for (vers, proc_) in [(3, 5), (1, 6), (3, 2)] {
        let req = call(7, vers, proc_, &[]);
        // An untrusted source: at most 2x the call, still a valid (shorter) list.
        let (o, reply) = env.ask(&req, "198.51.100.7:700");
        assert!(
            matches!(
                o,
                Outcome::Reply {
                    truncated: true,
                    ..
                }
            ),
            "v{vers} proc {proc_}: {o:?}"
        );
        assert!(
            reply.len() <= 2 * req.len(),
            "{} > 2 x {}",
            reply.len(),
            req.len()
        );
        let results = success_results(&reply, 7);
        if proc_ == 2 {
            assert!(decode_mountlist(&results).len() < 201);
        } else {
            assert!(decode_exports(&results).len() < 300);
        }
        // A trusted network (an IPv4-mapped address counts as IPv4) gets the whole list.
        for trusted in ["192.0.2.1:700", "[::ffff:192.0.2.1]:700", "[fd00::1]:700"] {
            let (o, reply) = env.ask(&req, trusted);
            assert!(
                matches!(
                    o,
                    Outcome::Reply {
                        truncated: false,
                        ..
                    }
                ),
                "{trusted}: {o:?}"
            );
            assert!(reply.len() > 2000, "{trusted}: whole list");
        }
    }
    // Other replies are not capped: a MNT answered as usual.
    let mnt = call(8, 3, 1, &path_arg(b"/srv/export-0003"));
    let (o, _) = env.ask(&mnt, "198.51.100.7:700");
    assert!(matches!(
        o,
        Outcome::Reply {
            truncated: false,
            ..
        }
    ));
}
