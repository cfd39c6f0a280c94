//! The XDP program's run accounting in `xdp-mountd stats --json` (`xdp.program_runs`: the
//! kernel's run_cnt and run_time_ns, moving while kernel.bpf_stats_enabled=1), and storm's
//! `--pass-through-xdp`, which lets XDP_TX answers reach a kernel-socket generator on a
//! veth: both end to end on a real veth pair with the program in native mode.
//!
//! The first test sets kernel.bpf_stats_enabled through testbed's `BpfStats` (a lock file
//! shared with the bench's cost section serializes every holder, across processes; the
//! previous value goes back on drop, also when the test fails).

use e2e::unit::rerun_of_the_suite;
use e2e::*;
use std::time::Duration;

/// NULL/MNT calls per kind sent through the program.
const CALLS: u64 = 100;

fn exports(n: u8) -> String {
    format!("/srv/a 10.77.{n}.0/24(rw) fd77:{n:x}::/64(rw)\n")
}

fn start<'p>(pair: &'p NetPair, client_xdp_free: bool) -> Daemon<'p> {
    let file = pair.write_file("exports", &exports(pair.n));
    let mut opts = DaemonOpts::native_xdp_answers(file);
    opts.client_xdp_free = client_xdp_free;
    pair.start_daemon(&opts)
}

/// (runs, run_time_ns, bpf_stats_enabled) of the daemon's program.
fn program_runs(d: &Daemon<'_>) -> (u64, u64, Option<bool>) {
    let stats = d.stats_json();
    let r = &stats["xdp"]["program_runs"];
    match (r["runs"].as_u64(), r["run_time_ns"].as_u64()) {
        (Some(runs), Some(ns)) => (runs, ns, r["bpf_stats_enabled"].as_bool()),
        _ => panic!("no xdp.program_runs in {stats}"),
    }
}

#[test]
fn program_runs_grow_with_every_call_through_the_program() {
    if rerun_of_the_suite("program_runs_grow_with_every_call_through_the_program") {
        return;
    }
    let Some(pair) = NetPair::new("xdp_program_runs") else {
        return;
    };
    let _accounting = testbed::bpf_stats::BpfStats::enable(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("kernel.bpf_stats_enabled: {e:#}"));
    let d = start(&pair, false);
    let (runs0, ns0, enabled) = program_runs(&d);
    assert_eq!(enabled, Some(true), "the daemon reads the sysctl we set");
    let null0 = d.answered_in_program("null");
    let srv = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let mut c = RpcClient::new(Proto::Udp, srv, SrcPort::Privileged).unwrap();
        for _ in 0..CALLS {
            c.null(3);
        }
        // The first MNT goes to user space (redirected into AF_XDP), the repeats are
        // answered in the program: both verdicts run it once per call.
        for _ in 0..CALLS {
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
        }
    });
    let (runs1, ns1, _) = program_runs(&d);
    assert_eq!(
        d.answered_in_program("null") - null0,
        CALLS,
        "every NULL was answered with XDP_TX"
    );
    assert!(
        runs1 - runs0 >= 2 * CALLS,
        "{} program runs for {} calls through the program",
        runs1 - runs0,
        2 * CALLS
    );
    assert!(ns1 > ns0, "run time did not grow: {ns0} -> {ns1}");
    println!(
        "{} runs, {:.0} ns/run (kernel accounting, sched_clock included)",
        runs1 - runs0,
        (ns1 - ns0) as f64 / (runs1 - runs0) as f64
    );
}

/// `xdp-mountd storm` in the client's namespace over kernel sockets; its JSON report.
fn storm(pair: &NetPair, extra: &[&str], count: u64) -> serde_json::Value {
    let bin = daemon_bin();
    let target = pair.srv_addr(false, PORT).to_string();
    let count = count.to_string();
    let mut argv = vec![
        bin.to_str().unwrap_or("xdp-mountd"),
        "storm",
        "--target",
        &target,
        "--mix",
        "null",
        "--count",
        &count,
        "--duration",
        "10",
        "--timeout",
        "200",
        "--json",
        "-",
        "--quiet",
    ];
    argv.extend_from_slice(extra);
    let out = testbed::netns::output(&pair.cli, &argv, 30).unwrap();
    assert_eq!(out.code, Some(0), "storm {argv:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("storm JSON: {e}: {}", out.stdout))
}

fn client_has_xdp(pair: &NetPair) -> bool {
    let ifname = pair.bed().client().ifname.clone();
    let out = testbed::netns::output(&pair.cli, &["ip", "-d", "link", "show", "dev", &ifname], 10)
        .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout.contains("prog/xdp")
}

#[test]
fn storm_pass_through_xdp_lets_xdp_tx_answers_reach_its_sockets() {
    if rerun_of_the_suite("storm_pass_through_xdp_lets_xdp_tx_answers_reach_its_sockets") {
        return;
    }
    let Some(pair) = NetPair::new("storm_pass_through_xdp") else {
        return;
    };
    let d = start(&pair, true);
    assert!(!client_has_xdp(&pair), "the client's end starts bare");
    // Without a program on the client's end (a veth in native mode drops XDP_TX frames
    // then, as measured on 6.18): printed, not asserted, since that is the kernel's call.
    let bare = storm(&pair, &[], 20);
    println!(
        "without --pass-through-xdp: {} of {} answered",
        bare["answered"], bare["sent"]
    );
    let ifname = pair.bed().client().ifname.clone();
    let null0 = d.answered_in_program("null");
    let count = 2000;
    let passed = storm(&pair, &["--pass-through-xdp", &ifname], count);
    assert_eq!(
        (passed["sent"].as_u64(), passed["answered"].as_u64()),
        (Some(count), Some(count)),
        "{passed}"
    );
    assert_eq!(passed["wrong"].as_u64(), Some(0), "{passed}");
    assert!(
        d.answered_in_program("null") - null0 >= count,
        "the answers came from the XDP program"
    );
    assert!(
        !client_has_xdp(&pair),
        "storm left its pass-through program on {ifname}"
    );
}
