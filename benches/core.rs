//! Decode + answer + encode per call, through `mount::answer`, on in-memory buffers.
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use benches::{call, dirpath, hundred_exports};
use criterion::{criterion_group, criterion_main, Criterion};
use mount_proto::mount::{answer, Client, Context, Outcome, Policy};
use mount_proto::mountlist::MountList;

fn bench_answer(c: &mut Criterion) {
    let exports = hundred_exports();
    let mounts = MountList::new();
    let policy = Policy::default();
    let ctx = Context {
        exports: &exports,
        mounts: &mounts,
        policy: &policy,
        upstream: None,
    };
    let client = Client {
        addr: SocketAddr::from((Ipv4Addr::new(10, 1, 2, 3), 700)),
        host: None,
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
    // The first MNT of a new (client, dir): a fresh mount list per batch, a new client
    // address per call; dropping the list is not timed.
    let request = call(3, 1, &dirpath("/srv/export42"));
    c.bench_function("mnt_v3_first", |b| {
        b.iter_custom(|iters| {
            let mounts = MountList::new();
            let ctx = Context {
                exports: &exports,
                mounts: &mounts,
                policy: &policy,
                upstream: None,
            };
            let mut total = Duration::ZERO;
            let start = Instant::now();
            for i in 0..iters {
                let client = Client {
                    addr: SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + (i as u32)), 700)),
                    host: None,
                };
                if !matches!(
                    answer(black_box(&request), &client, &ctx, &mut out),
                    Outcome::Reply { .. }
                ) {
                    panic!("mnt_v3_first: no reply");
                }
            }
            total += start.elapsed();
            total
        })
    });
}

criterion_group!(benches, bench_answer);
criterion_main!(benches);
