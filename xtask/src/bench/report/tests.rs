use super::fixtures::{cell, report, run};
use super::*;

#[test]
fn median_odd_even_and_non_finite() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    assert_eq!(median(&[]), None);
}

#[test]
fn summary_takes_medians_and_totals() {
    let runs = vec![
        run(100.0, 10.0, Some(3.0), 1),
        run(300.0, 30.0, None, 2),
        run(200.0, 20.0, Some(5.0), 0),
    ];
    let s = Summary::of(&runs);
    assert_eq!(s.rounds, 3);
    assert_eq!(s.calls_per_sec, 200.0);
    assert_eq!(s.p99_us, 20.0);
    assert_eq!(s.p999_us, 40.0);
    assert_eq!(
        s.cpu_us_per_call,
        Some(4.0),
        "median of the runs that have CPU"
    );
    assert_eq!(s.lost, 3);
    assert_eq!(s.sent, 300);
}

#[test]
fn storm_json_parses_with_missing_fields() {
    let j = r#"{"target":"10.0.0.1:644","mode":"closed","sent":10,"answered":9,"lost":1,
        "wrong":0,"calls_per_sec":9000.5,"latency_us":{"p50":12.5,"p99":40,"p999":80},
        "per_proc":{"mnt3":{"sent":10,"answered":9}}}"#;
    let s: StormResult = serde_json::from_str(j).unwrap();
    assert_eq!(s.answered, 9);
    assert_eq!(s.calls_per_sec, 9000.5);
    assert_eq!(s.latency_us.p999, 80.0);
    assert_eq!(s.latency_us.max, 0.0);
}

#[test]
fn targets_are_ratios_of_the_right_cells() {
    let r = report(vec![
        cell("xdp-native", "null", 1_000_000.0, 1.0, 0),
        cell("xdp-native", "mnt", 950_000.0, 1.5, 0),
        cell("socket", "null", 300_000.0, 4.0, 0),
        cell("socket", "mnt", 250_000.0, 5.0, 2),
        cell("ganesha", "mnt", 20_000.0, 50.0, 0),
    ]);
    let get = |id: &str| r.targets.iter().find(|t| t.id == id).unwrap().clone();
    let t = get("afxdp_native_mnt_vs_ganesha");
    assert!((t.value.unwrap() - 47.5).abs() < 1e-9);
    assert_eq!(t.met, Some(true));
    let t = get("afxdp_native_cpu_vs_socket");
    assert!((t.value.unwrap() - 0.3).abs() < 1e-9);
    assert_eq!(t.met, Some(true));
    let t = get("mnt_vs_null_xdp-native");
    assert!((t.value.unwrap() - 0.95).abs() < 1e-9);
    let t = get("mnt_vs_null_socket");
    assert_eq!(t.met, Some(false), "0.83 < 0.9");
    let t = get("lost_wrong_at_half_socket");
    assert_eq!((t.value, t.met), (Some(2.0), Some(false)));
    let t = get("afxdp_generic_mnt_vs_ganesha");
    assert_eq!((t.value, t.met), (None, None), "no generic cells measured");
    let t = get("mnt_vs_null_xdp-generic");
    assert_eq!((t.value, t.met), (None, None), "no generic cells measured");
}

#[test]
fn goals_compare_both_ways() {
    assert!(meets(20.0, "≥ 20"));
    assert!(!meets(19.9, "≥ 20"));
    assert!(meets(0.5, "≤ 0.5"));
    assert!(!meets(0.51, "≤ 0.5"));
    assert!(meets(0.0, "= 0"));
    assert!(!meets(1.0, "= 0"));
    assert!(!meets(1.0, "about 1"));
}

#[test]
fn markdown_has_a_row_per_cell_and_the_targets() {
    let r = report(vec![
        cell("xdp-native", "mnt", 1_234_567.0, 1.25, 0),
        cell("ganesha", "mnt", 20_000.0, 123.4, 0),
    ]);
    let md = r.markdown();
    assert!(md.contains("| xdp-mountd, AF_XDP (native XDP) | MNT v3 | 1\u{202f}234\u{202f}567 | 5.0 | 10.0 | 20.0 | 1.2 | 0.4 | 2.5 | 5.0 | 10.0 | 100% | 0/0 | 0/0/0 |"), "{md}");
    assert!(
        md.contains("| NFS-Ganesha 4.3 | MNT v3 | 20\u{202f}000 |"),
        "{md}"
    );
    assert!(
        md.contains("commit `0123456789ab`, uncommitted changes"),
        "{md}"
    );
    assert!(
        md.contains("| AF_XDP (native) MNT calls/s ÷ Ganesha MNT calls/s | 61.73 | ≥ 20 | yes |"),
        "{md}"
    );
    assert!(md.contains("2 × AMD EPYC"), "{md}");
}

#[test]
fn readme_block_is_replaced_between_markers_only() {
    let readme = "# x\n## Performance\n<!-- bench:start -->\nold\n<!-- bench:end -->\ntail\n";
    let out = splice_readme(readme, "new table\n").unwrap();
    assert_eq!(
        out,
        "# x\n## Performance\n<!-- bench:start -->\nnew table\n<!-- bench:end -->\ntail\n"
    );
    assert_eq!(splice_readme("no markers", "t"), None);
    assert_eq!(
        splice_readme("<!-- bench:end --> <!-- bench:start -->", "t"),
        None
    );
}

#[test]
fn rates_and_microseconds_format() {
    assert_eq!(fmt_rate(999.4), "999");
    assert_eq!(fmt_rate(1000.0), "1\u{202f}000");
    assert_eq!(fmt_rate(20_500.0), "20\u{202f}500");
    assert_eq!(fmt_us(12.345), "12.3");
    assert_eq!(fmt_us(1234.4), "1234");
}
