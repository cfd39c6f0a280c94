//! Export table costs: path lookup with 10, 10k and 1M exports (should stay flat), client
//! checks against an export with 10k client rules, and a 100k-export reload (compile, and
//! compile + swap through `SharedExports::replace`).
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use mount_proto::exports::{ClientCheck, ExportTable};
use mount_user::exports::{parse_str, SharedExports};

/// `n` exports, one per line, each with two client rules (the common shape).
fn exports_text(n: usize) -> String {
    let mut text = String::with_capacity(n * 48);
    for i in 0..n {
        // Two directory levels, as a real tree of project exports would have.
        text.push_str(&format!(
            "/srv/p{}/export{i} 10.0.0.0/8(rw,insecure) *(ro)\n",
            i % 1000
        ));
    }
    text
}

fn compile(text: &str, what: &str) -> ExportTable {
    let start = Instant::now();
    let table = match parse_str(text, what) {
        Ok(t) => t,
        Err(e) => panic!("{what}: {e}"),
    };
    eprintln!("{what}: compiled in {:.2?}", start.elapsed());
    table
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10usize, 10_000, 1_000_000] {
        // Generated and compiled once per size; only the lookups are measured.
        let table = compile(&exports_text(n), &format!("{n} exports"));
        let mid = n / 2;
        let exact = format!("/srv/p{}/export{mid}", mid % 1000);
        let subdir = format!("{exact}/a/b/c");
        let cases = [
            ("exact", exact.as_str()),
            ("subdir", subdir.as_str()),
            ("miss", "/no/such/export/at/all"),
        ];
        for (name, path) in cases {
            if name != "miss" {
                assert!(table.lookup(path).is_some(), "{path} must be found");
            }
            group.bench_with_input(BenchmarkId::new(name, n), &path, |b, path| {
                b.iter(|| table.lookup(black_box(path)).is_some())
            });
        }
    }
    group.finish();
}

/// One export with 10k client rules: 5k single hosts (hashed) then 5k /24 networks
/// (scanned in file order); an address in none of them is denied after the full scan.
fn bench_client_rules(c: &mut Criterion) {
    let mut line = String::from("/srv/many");
    for i in 0..5_000u32 {
        line.push_str(&format!(" 10.1.{}.{}(rw,insecure)", i / 250, i % 250 + 1));
    }
    for i in 0..5_000u32 {
        line.push_str(&format!(" 10.{}.{}.0/24(ro)", 2 + i / 256, i % 256));
    }
    line.push('\n');
    let table = compile(&line, "10k client rules");
    let Some(m) = table.lookup("/srv/many") else {
        panic!("/srv/many not found")
    };
    let export = m.export;
    assert_eq!(export.rules().len(), 10_000);
    let cases = [
        ("first_host", Ipv4Addr::new(10, 1, 0, 1)),
        ("last_host", Ipv4Addr::new(10, 1, 19, 250)),
        ("first_net", Ipv4Addr::new(10, 2, 0, 9)),
        ("last_net", Ipv4Addr::new(10, 21, 135, 9)),
        ("denied", Ipv4Addr::new(192, 168, 1, 1)),
    ];
    let mut group = c.benchmark_group("client_rules_10k");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, addr) in cases {
        let addr = IpAddr::V4(addr);
        let allowed = matches!(export.check_client(addr, None), ClientCheck::Allowed(_));
        assert_eq!(allowed, name != "denied", "{name}: {addr}");
        group.bench_function(name, |b| {
            b.iter(|| {
                matches!(
                    export.check_client(black_box(addr), None),
                    ClientCheck::Allowed(_)
                )
            })
        });
    }
    group.finish();
}

fn bench_reload(c: &mut Criterion) {
    let text = exports_text(100_000);
    let shared = SharedExports::new(compile(&text, "100k exports"));
    let mut group = c.benchmark_group("reload_100k");
    // Each iteration takes a good fraction of a second: few, flat samples.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("compile", |b| {
        // The table's drop is not part of compiling.
        b.iter_with_large_drop(|| parse_str(black_box(&text), "bench"))
    });
    group.bench_function("compile_and_swap", |b| {
        // What SIGHUP costs the control plane: compile, publish, free the old table.
        b.iter(|| match parse_str(black_box(&text), "bench") {
            Ok(t) => shared.replace(t),
            Err(e) => panic!("reload: {e}"),
        })
    });
    group.finish();
    assert_eq!(shared.load().exports().len(), 100_000);
}

criterion_group!(benches, bench_lookup, bench_client_rules, bench_reload);
criterion_main!(benches);
