//! Decode + answer + encode per call, through `mount::answer`, on in-memory buffers.
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};

use criterion::{criterion_group, criterion_main, Criterion};
use mount_user::exports::ExportTable;
use mount_user::mount::{answer, Client, Context, Outcome, Policy, Transport};
use mount_user::mountlist::MountList;

/// A CALL with AUTH_NONE credentials: xid, CALL, rpcvers 2, prog, vers, proc, cred, verf, args.
fn call(vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for w in [0x1234_5678u32, 0, 2, 100_005, vers, proc_, 0, 0, 0, 0] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    m.extend_from_slice(args);
    m
}

fn dirpath(path: &str) -> Vec<u8> {
    let mut a = (path.len() as u32).to_be_bytes().to_vec();
    a.extend_from_slice(path.as_bytes());
    a.resize(a.len().div_ceil(4) * 4, 0);
    a
}

fn bench_answer(c: &mut Criterion) {
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("/srv/export{i} 10.0.0.0/8(rw,insecure) *(ro)\n"));
    }
    let exports = match ExportTable::parse_str(&text, "bench") {
        Ok(t) => t,
        Err(e) => panic!("bench exports: {e}"),
    };
    let mounts = MountList::new();
    let policy = Policy::default();
    let ctx = Context {
        exports: &exports,
        mounts: &mounts,
        policy: &policy,
    };
    let client = Client {
        addr: SocketAddr::from((Ipv4Addr::new(10, 1, 2, 3), 700)),
        name: None,
        transport: Transport::Udp,
    };
    let mut out = vec![0u8; 8800];
    let cases = [
        ("null", call(3, 0, &[])),
        ("mnt_v3", call(3, 1, &dirpath("/srv/export42"))),
        ("export_100", call(3, 5, &[])),
    ];
    for (name, request) in &cases {
        // Measure real answers: an accepted reply, and for MNT a granted mount (MNT3_OK),
        // not a cheap error path.
        let Outcome::Reply { len, .. } = answer(request, &client, &ctx, &mut out) else {
            panic!("{name}: no reply");
        };
        let word = |i: usize| {
            u32::from_be_bytes([out[4 * i], out[4 * i + 1], out[4 * i + 2], out[4 * i + 3]])
        };
        assert!(len >= 24, "{name}: short reply");
        assert_eq!(
            (word(1), word(2), word(5)),
            (1, 0, 0),
            "{name}: REPLY, MSG_ACCEPTED, SUCCESS"
        );
        if *name == "mnt_v3" {
            assert_eq!(word(6), 0, "MNT must succeed (MNT3_OK)");
        }
        c.bench_function(name, |b| {
            b.iter(
                || match answer(black_box(request), &client, &ctx, &mut out) {
                    Outcome::Reply { len, .. } => len,
                    _ => panic!("{name}: no reply"),
                },
            )
        });
    }
}

criterion_group!(benches, bench_answer);
criterion_main!(benches);
