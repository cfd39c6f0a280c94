//! The hot path does not touch the heap: NULL, MNT of a known export already on the mount
//! list (also when the entry came from rmtab, by host text), UMNT, EXPORT of the
//! precomputed list. Counted with a per-thread counting allocator
//! (the test binary's global allocator; it only counts while a test switches it on).
//!
//! An integration test, not a unit test beside `mount`: the allocator needs `unsafe`, which
//! the crate forbids. The allocator is mount-user's test support, shared with its AF_XDP
//! allocation test.
use mount_proto::exports::{ExportTable, StaticResolver};
use mount_proto::mount::{answer, Client, Context, Outcome, Policy};
use mount_proto::mountlist::MountList;
use mount_proto::rpc::{encode_call, AuthSys, Credential};
use mount_proto::xdr::Writer;

#[path = "../../tests/support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

/// An export table and a mount list.
struct Env {
    table: ExportTable,
    mounts: MountList,
}

impl Env {
    fn new(exports: &str) -> Self {
        Env {
            table: ExportTable::parse_str_with(exports, "test", &StaticResolver::default())
                .unwrap(),
            mounts: MountList::new(),
        }
    }
}

/// A MOUNT v`vers` call of `proc_` with an AUTH_SYS credential like the Linux client's.
fn call(xid: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let sys = AuthSys::new(1, b"client", 0, 0, &[0]).unwrap();
    let mut out = vec![0u8; 2048];
    let n = encode_call(
        &mut out,
        xid,
        mount_proto::mount::MOUNT_PROGRAM,
        vers,
        proc_,
        &Credential::Sys(sys),
        args,
    )
    .unwrap();
    out.truncate(n);
    out
}

/// XDR `dirpath` argument.
fn path_arg(p: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; p.len() + 8];
    let mut w = Writer::new(&mut out);
    w.put_opaque(p, usize::MAX).unwrap();
    let n = w.position();
    out.truncate(n);
    out
}

#[test]
fn counter_counts() {
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

#[test]
fn hot_path_does_not_allocate() {
    let env = Env::new("/srv/a 10.0.0.0/8(rw,insecure) *(ro)\n/srv/b *(ro,insecure)\n");
    let policy = Policy::default();
    let ctx = Context {
        exports: &env.table,
        mounts: &env.mounts,
        policy: &policy,
        upstream: None,
    };
    let client = Client {
        addr: "10.1.2.3:700".parse().unwrap(),
        host: None,
    };
    let mapped = Client {
        addr: "[::ffff:10.1.2.3]:700".parse().unwrap(),
        ..client
    };
    let mut out = vec![0u8; 65536];
    let null = call(1, 3, 0, &[]);
    let mnt = call(2, 3, 1, &path_arg(b"/srv/a/"));
    let mnt1 = call(3, 1, 1, &path_arg(b"/srv/a"));
    let umnt = call(4, 3, 3, &path_arg(b"/srv/b"));
    let export = call(5, 3, 5, &[]);
    // The first MNT may allocate its mount list entry.
    assert!(matches!(
        answer(&mnt, &client, &ctx, &mut out),
        Outcome::Reply { .. }
    ));
    for (what, req, who) in [
        ("NULL", &null, &client),
        ("MNT v3", &mnt, &client),
        ("MNT v1", &mnt1, &client),
        ("MNT mapped", &mnt, &mapped),
        ("UMNT", &umnt, &client),
        ("EXPORT", &export, &client),
    ] {
        let mut outcome = Outcome::NeedName;
        let n = allocations(|| outcome = answer(req, who, &ctx, &mut out));
        assert!(matches!(outcome, Outcome::Reply { .. }), "{what}");
        assert_eq!(n, 0, "{what} allocated");
    }
}

#[test]
fn first_mnt_of_an_entry_from_rmtab_does_not_allocate() {
    let env = Env::new("/srv/a 10.0.0.0/8(rw,insecure) fd00::/16(rw,insecure)\n");
    // As the daemon's rmtab loader (`Rmtab::parse`) adds them: by host text.
    env.mounts.add("10.1.2.3", "/srv/a");
    env.mounts.add("fd00::7", "/srv/a");
    let policy = Policy::default();
    let ctx = Context {
        exports: &env.table,
        mounts: &env.mounts,
        policy: &policy,
        upstream: None,
    };
    let mut out = vec![0u8; 65536];
    let generation = env.mounts.generation();
    for (what, addr, path) in [
        ("v4", "10.1.2.3:700", &b"/srv/a"[..]),
        ("mapped v4", "[::ffff:10.1.2.3]:700", b"/srv//a/"),
        ("v6", "[fd00::7]:700", b"/srv/a"),
    ] {
        let client = Client {
            addr: addr.parse().unwrap(),
            host: None,
        };
        let mnt = call(2, 3, 1, &path_arg(path));
        let mut outcome = Outcome::NeedName;
        let n = allocations(|| outcome = answer(&mnt, &client, &ctx, &mut out));
        assert!(matches!(outcome, Outcome::Reply { .. }), "{what}");
        assert_eq!(n, 0, "{what} allocated");
    }
    assert_eq!(env.mounts.generation(), generation, "nothing was added");
    assert_eq!(env.mounts.len(), 2);
}
