//! Run one `answer` case N times, for instruction counting under callgrind:
//! `valgrind --tool=callgrind target/release/examples/percall CASE N`; the per-call cost is
//! the difference of two runs (N and 0) divided by N, which cancels setup and start-up.
//! CASE: null | mnt3 (repeat: already on the mount list) | mnt3_first (a new client each
//! call) | export100 | mnt3_gateway (mnt3 in gateway mode: every export's handle learned).
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};

use benches::{call, dirpath, hundred_exports};
use mount_proto::exports::FileHandle;
use mount_proto::mount::client::MntAnswer;
use mount_proto::mount::learned::{Learned, LearnedHandles};
use mount_proto::mount::{answer, Client, Context, Gateway, Outcome, Policy};
use mount_proto::mountlist::MountList;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "null".into());
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let exports = hundred_exports();
    let mounts = MountList::new();
    let policy = Policy::default();
    // Gateway mode: a learned 24-byte (Ganesha-sized) handle for every export.
    let mut learned = LearnedHandles::new();
    for e in exports.exports() {
        let v3 = MntAnswer::Handle(FileHandle::from_bytes(&[7; 24]).expect("24 bytes"));
        learned.insert(e.path(), Learned { v3, v1: None });
    }
    let ctx = Context {
        exports: &exports,
        mounts: &mounts,
        policy: &policy,
        upstream: (case == "mnt3_gateway").then_some(Gateway {
            handles: &learned,
            waited: false,
        }),
    };
    let client_at = |i: u32| Client {
        addr: SocketAddr::from((Ipv4Addr::from(0x0a01_0000 + i), 700)),
        host: None,
    };
    let request = match case.as_str() {
        "null" => call(3, 0, &[]),
        "mnt3" | "mnt3_first" | "mnt3_gateway" => call(3, 1, &dirpath("/srv/export42")),
        "export100" => call(3, 5, &[]),
        other => panic!("unknown case {other}"),
    };
    let mut out = vec![0u8; 8800];
    // One call before the loop (for mnt3 it puts the entry on the list); the N=0 run
    // counts it too, so the difference is the loop alone.
    let first = case == "mnt3_first";
    let warm = client_at(if first { u32::MAX - 0x0a01_0000 } else { 0 });
    let _ = answer(&request, &warm, &ctx, &mut out);
    for i in 0..n {
        let client = if first { client_at(i) } else { client_at(0) };
        match answer(black_box(&request), &client, &ctx, &mut out) {
            Outcome::Reply { len, .. } => {
                black_box(len);
            }
            other => panic!("{case}: {other:?}"),
        }
    }
    // Freeing N entries is not part of a call.
    std::mem::forget(mounts);
}
