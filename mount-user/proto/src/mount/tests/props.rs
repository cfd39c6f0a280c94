//! Property tests: `answer` never panics and never writes past `out`.
use super::*;
use proptest::prelude::*;

const EXPORTS: &str = "\
/ 10.0.0.0/8(ro)
/srv/a 10.0.0.0/8(rw,insecure) *(ro)
/srv/n *.example.com(insecure,sec=krb5:sys:none)
/srv/fh 10.0.0.0/8(insecure,fh=0102)
";

fn env() -> Env {
    let env = Env::new(EXPORTS);
    env.mounts.add("10.0.0.1", "/srv/a");
    env
}

/// Answer into a buffer with a guard zone and check the guard and the reply length.
fn check(env: &Env, req: &[u8], addr: &str, name: Option<&str>, cap: usize, filter: bool) {
    let policy = Policy {
        filter_exports_by_client: filter,
        // Odd-length requests also meet the UDP list budget.
        list_budget: (req.len() % 2 == 1).then(|| ListBudget {
            factor: 2,
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
        }),
    };
    let facts = name.map(HostFacts::named);
    let client = Client {
        addr: addr.parse().unwrap(),
        host: facts.as_ref(),
    };
    let ctx = Context {
        exports: &env.table,
        mounts: &env.mounts,
        policy: &policy,
        upstream: None,
    };
    let mut backing = vec![0xa5u8; cap + 32];
    let (out, guard) = backing.split_at_mut(cap);
    let outcome = answer(req, &client, &ctx, out);
    assert!(guard.iter().all(|&b| b == 0xa5), "wrote past out");
    if let Outcome::Reply { len, .. } = outcome {
        assert!(len <= cap);
        assert!(len >= 20);
        // Whatever we send parses as a reply to the same xid.
        let reply = Reply::parse(&out[..len]).unwrap();
        assert_eq!(reply.xid, xid_of(req));
    }
}

fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("10.1.2.3:700".to_owned()),
        Just("10.1.2.3:4000".to_owned()),
        Just("192.0.2.1:700".to_owned()),
        Just("[::ffff:10.0.0.1]:700".to_owned()),
        Just("[2001:db8::1]:700".to_owned()),
    ]
}

fn dirpath() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "(/|/srv|/srv/a|/srv/n|/srv/fh|\\.\\.|\\.|a|//)*".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                   cap in 0usize..200) {
        let env = env();
        if bytes.len() >= 4 {
            check(&env, &bytes, "10.1.2.3:700", None, cap, false);
        } else {
            // Too short for an xid: always dropped.
            let client = Client { addr: "10.1.2.3:700".parse().unwrap(), host: None };
            let policy = Policy::default();
            let ctx = Context { exports: &env.table, mounts: &env.mounts, policy: &policy, upstream: None };
            let mut out = [0u8; 64];
            prop_assert_eq!(answer(&bytes, &client, &ctx, &mut out), Outcome::Drop(DropReason::Truncated));
        }
    }

    #[test]
    fn well_formed_calls_never_panic(vers in 0u32..5, proc_ in 0u32..9, path in dirpath(),
                                     trailing in proptest::collection::vec(any::<u8>(), 0..8),
                                     addr in addr(), named in any::<bool>(), filter in any::<bool>(),
                                     cap in prop_oneof![0usize..64, 64usize..400, Just(65536usize)]) {
        let env = env();
        let mut args = path_arg(&path);
        args.extend_from_slice(&trailing);
        let req = call(0xfeed, vers, proc_, &args);
        let name = if named { Some("h.example.com") } else { None };
        check(&env, &req, &addr, name, cap, filter);
    }

    #[test]
    fn mutated_calls_never_panic(proc_ in 0u32..8, at in 0usize..80, byte in any::<u8>(),
                                 cut in 0usize..100) {
        let env = env();
        let mut req = call(0xbeef, 3, proc_, &path_arg(b"/srv/a/x"));
        if at < req.len() {
            req[at] = byte;
        }
        req.truncate(req.len().saturating_sub(cut % 8));
        if req.len() >= 4 {
            check(&env, &req, "10.1.2.3:700", None, 512, false);
        }
    }
}
