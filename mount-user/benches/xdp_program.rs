//! The XDP program alone, ns per frame, through BPF_PROG_TEST_RUN: each frame form the
//! program answers (XDP_TX) or steers, loaded as root (no Spectre mitigations) and as the
//! packaged daemon loads it (without CAP_SYS_ADMIN and CAP_PERFMON).
//!
//! `cargo bench -p mount-user --bench xdp_program` (root; prints SKIPPED otherwise).
//!
//! Each sample is the kernel's own duration of single runs (`repeat` 1), summed: `repeat`
//! above 1 would run the program again on its own reply, which it does not answer. The
//! kernel's figure includes its timer reads around the run (tens of ns here), the same
//! for every row; the syscall around it is not counted.
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mount_ebpf::answer::{
    ANSWER_MNT_V4, ANSWER_MNT_V6, ANSWER_NULL_V4, ANSWER_NULL_V6, TEMPLATE_MNT_FIRST,
};
use mount_ebpf::Config;
use mount_proto::exports::{ExportTable, StaticResolver};
use mount_proto::mount::{self, procs};
use mount_proto::rpc::{encode_call, AuthSys, Credential};
use mount_proto::xdr::Writer;
use mount_xdp::ebpf::XdpAttachment;

#[path = "../tests/support/xdp_answer.rs"]
mod xdp_answer;
use xdp_answer::{addressing, client_ip, frame, load_as, mark_seen, PORT, XDP_PASS, XDP_TX};

const GENERATION: u32 = 3;
const EXPORTS: &str = "/srv/a 10.14.0.0/16(rw) fd00:14::/64(rw)\n";

/// A MOUNT call of `vers`/`proc_` with `cred` and `args`.
fn call(vers: u32, proc_: u32, cred: &Credential<'_>, args: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    let len = encode_call(&mut out, 7, mount::MOUNT_PROGRAM, vers, proc_, cred, args)
        .expect("encoding the call");
    out.truncate(len);
    out
}

fn mnt_args(path: &[u8]) -> Vec<u8> {
    let mut args = vec![0u8; 256];
    let mut w = Writer::new(&mut args);
    w.put_string(path, mount::MNTPATHLEN).expect("a short path");
    let n = w.position();
    args.truncate(n);
    args
}

/// The program with NULL and MNT answers on and `/srv/a` seen from both test clients, as
/// the daemon leaves it after their first MNT.
fn loaded(privileged: bool, table: &ExportTable) -> XdpAttachment {
    let config = Config::for_port(PORT)
        .with_answers(ANSWER_NULL_V4 | ANSWER_NULL_V6 | ANSWER_MNT_V4 | ANSWER_MNT_V6)
        .with_mnt_generation(GENERATION);
    let mut xdp = load_as(config, privileged);
    for (i, v6) in [false, true].into_iter().enumerate() {
        let slot = TEMPLATE_MNT_FIRST + 2 * i as u32;
        mark_seen(&mut xdp, table, client_ip(v6), "/srv/a", slot, GENERATION);
    }
    xdp
}

fn program(c: &mut Criterion) {
    if !testbed::can_run("xdp_program bench") {
        return;
    }
    let table = ExportTable::parse_str_with(EXPORTS, "bench exports", &StaticResolver::default())
        .expect("the bench's exports");
    let sys = Credential::Sys(AuthSys::new(7, b"client1", 0, 0, &[1, 2, 3]).expect("AUTH_SYS"));
    let srv_a = mnt_args(b"/srv/a");
    let frames = [
        (
            "null_v3_ipv4_answered",
            frame(
                &addressing(false, 800),
                &call(3, procs::NULL, &Credential::None, &[]),
            ),
            XDP_TX,
        ),
        (
            "mnt_v3_ipv4_sys_answered",
            frame(&addressing(false, 800), &call(3, procs::MNT, &sys, &srv_a)),
            XDP_TX,
        ),
        (
            "mnt_v3_ipv6_none_answered",
            frame(
                &addressing(true, 800),
                &call(3, procs::MNT, &Credential::None, &srv_a),
            ),
            XDP_TX,
        ),
        (
            "mnt_v3_ipv4_sys_not_seen_steered",
            frame(
                &addressing(false, 800),
                &call(3, procs::MNT, &sys, &mnt_args(b"/srv/z")),
            ),
            XDP_PASS,
        ),
        (
            "export_v3_ipv4_steered",
            frame(&addressing(false, 800), &call(3, procs::EXPORT, &sys, &[])),
            XDP_PASS,
        ),
    ];
    for (who, privileged) in [("root", true), ("unprivileged", false)] {
        let mut xdp = loaded(privileged, &table);
        let mut group = c.benchmark_group(format!("xdp_program_{who}"));
        for (name, f, expected) in &frames {
            let (action, _) = xdp.test_run(f).expect("test run");
            assert_eq!(action, *expected, "{name}: the program's verdict");
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    let mut ns = 0u64;
                    for _ in 0..iters {
                        let (_, _, run_ns) = xdp.test_run_repeat(f, 1).expect("test run");
                        ns += u64::from(run_ns);
                    }
                    Duration::from_nanos(ns)
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = program
}
criterion_main!(benches);
