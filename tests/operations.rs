//! Operations: the daemon as the packaged unit runs it (user nobody, exactly the unit's
//! capabilities) still answers through AF_XDP and names a missing capability at start;
//! a real Prometheus scrapes `/metrics` and sees every MNT sent.
//!
//! These tests choose their own data path, so the suite's reruns with
//! XMD_E2E_DAEMON_ARGS (over AF_XDP) skip them: the plain run covers them.

use e2e::unit::{
    calls_on, reported_capabilities, rerun_of_the_suite, set_mode, stats_json, unit_capabilities,
    unprivileged_launcher, KillOnDrop,
};
use e2e::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn unprivileged_with_the_units_capabilities_serves_afxdp() {
    let test = "unprivileged";
    if rerun_of_the_suite(test) {
        return;
    }
    let Some(pair) = NetPair::new(test) else {
        return;
    };
    let caps = unit_capabilities();
    assert!(
        caps.len() == 5 && !caps.iter().any(|c| c == "perfmon" || c == "sys_admin"),
        "the unit grants {caps:?}"
    );
    // The test port (4002) becomes privileged in the server namespace, as 644 is on a
    // host, so that CAP_NET_BIND_SERVICE is needed here too.
    let sysctl = pair.run_server(
        &["sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=5000"],
        5,
    );
    assert_eq!(sysctl.code, Some(0), "{sysctl:?}");
    // A directory user nobody may create its stats socket in.
    let run = pair.dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    set_mode(&run, 0o777);
    let socket = run.join("stats.sock");
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.extra = ["--iface", "veth0", "--xdp", "native", "--stats-socket"]
        .iter()
        .map(|s| s.to_string())
        .chain([socket.display().to_string()])
        .collect();

    // Registration with rpcbind works for an unprivileged user (its Unix socket).
    opts.rpcbind = true;
    let bin = daemon_bin();
    opts.bin = Some(unprivileged_launcher(&pair.dir, "as-unit", &bin, &caps));
    let mut daemon = pair.start_daemon(&opts);
    let registered = pair.run_client(&["rpcinfo", "-p", &pair.srv_v4().to_string()]);
    assert!(
        registered
            .stdout
            .contains(&format!("100005    3   udp   {PORT}")),
        "rpcinfo -p: {registered:?}\n{}",
        daemon.stderr()
    );
    let server = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let mut c = RpcClient::new(Proto::Udp, server, SrcPort::Privileged).unwrap();
        c.null(3);
        assert_eq!(c.mnt3("/srv/a").0, status::OK);
    });
    let stats = stats_json(&bin, &socket);
    let mut want = caps.clone();
    want.sort();
    assert_eq!(reported_capabilities(&stats), want, "stats: {stats}");
    assert_eq!(calls_on(&stats, "afxdp"), 2, "stats: {stats}");
    assert_eq!(calls_on(&stats, "udp"), 0, "stats: {stats}");
    assert!(daemon.stop().success(), "{}", daemon.stderr());

    // One capability fewer, each in turn: refused at start, naming it.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let name = format!("without-{missing}");
        opts.bin = Some(unprivileged_launcher(&pair.dir, &name, &bin, &fewer));
        opts.rpcbind = false;
        match pair.try_start_daemon(&opts) {
            Ok(_) => panic!("started without CAP_{}", missing.to_uppercase()),
            Err(e) => assert!(
                e.contains(&format!(
                    "missing capability: CAP_{}",
                    missing.to_uppercase()
                )),
                "without {missing}: {e}"
            ),
        }
    }
}

/// A Prometheus server in the server namespace; killed on drop.
struct Prometheus {
    _child: KillOnDrop,
}

const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";
const METRICS_ADDR: &str = "127.0.0.1:9644";

impl Prometheus {
    /// Starts Prometheus scraping `METRICS_ADDR` every second.
    fn start(pair: &NetPair) -> Prometheus {
        let config = pair.write_file(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: xdp-mountd\n    static_configs:\n      \
                 - targets: ['{METRICS_ADDR}']\n"
            ),
        );
        let log = std::fs::File::create(pair.dir.join("prometheus.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &pair.srv, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                pair.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS_ADDR}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus (cargo xtask setup installs it)");
        Prometheus {
            _child: KillOnDrop(child),
        }
    }

    /// The value of the instant query `promql`, None while it has no result.
    fn query(pair: &NetPair, promql: &str) -> Option<f64> {
        let url = format!("http://{PROMETHEUS_ADDR}/api/v1/query");
        let out = pair.run_server(
            &[
                "curl",
                "-sf",
                &url,
                "--data-urlencode",
                &format!("query={promql}"),
            ],
            10,
        );
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `promql` until `accept` holds (bounded); returns the last value.
    fn wait_for(pair: &NetPair, promql: &str, accept: impl Fn(Option<f64>) -> bool) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = Self::query(pair, promql);
            if accept(v) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Scrapes `/metrics` once and checks it with `promtool check metrics`; returns the body.
fn promtool_clean(pair: &NetPair) -> String {
    use std::io::Write as _;
    let body = pair.run_server(
        &["curl", "-sf", &format!("http://{METRICS_ADDR}/metrics")],
        10,
    );
    assert_eq!(body.code, Some(0), "{body:?}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (cargo xtask setup installs prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.stdout.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}\n{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
        body.stdout
    );
    body.stdout
}

#[test]
fn prometheus_sees_every_mnt() {
    let test = "prometheus";
    if rerun_of_the_suite(test) {
        return;
    }
    let Some(pair) = NetPair::new(test) else {
        return;
    };
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    opts.extra = [
        "--iface",
        "veth0",
        "--xdp",
        "native",
        "--metrics",
        METRICS_ADDR,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let daemon = pair.start_daemon(&opts);
    assert!(
        daemon.stdout().contains(&format!("metrics={METRICS_ADDR}")),
        "READY line: {}",
        daemon.stdout()
    );
    promtool_clean(&pair);

    let _prometheus = Prometheus::start(&pair);
    let up = Prometheus::wait_for(&pair, r#"up{job="xdp-mountd"}"#, |v| v == Some(1.0));
    assert_eq!(up, Some(1.0), "Prometheus never scraped the daemon");
    let mnt = r#"sum(xdp_mountd_calls_total{proc="mnt"})"#;
    // No MNT yet: the series does not exist (or is 0).
    let before = Prometheus::query(&pair, mnt).unwrap_or(0.0);

    const MNTS: u32 = 25;
    let server = pair.srv_addr(false, PORT);
    pair.in_client(move || {
        let mut c = RpcClient::new(Proto::Udp, server, SrcPort::Privileged).unwrap();
        for _ in 0..MNTS {
            assert_eq!(c.mnt3("/srv/a").0, status::OK);
        }
    });
    let want = before + f64::from(MNTS);
    let after = Prometheus::wait_for(&pair, mnt, |v| v == Some(want));
    assert_eq!(
        after,
        Some(want),
        "Prometheus saw {after:?} MNT calls, sent {MNTS} after {before}"
    );
    // All of them answered through AF_XDP, successfully, as MOUNT v3.
    let ok = Prometheus::query(
        &pair,
        r#"sum(xdp_mountd_calls_total{proc="mnt",version="3",path="afxdp",status="ok"})"#,
    );
    assert_eq!(ok, Some(want));
    // With calls counted, every family is present; promtool still finds nothing.
    let body = promtool_clean(&pair);
    for family in [
        "xdp_mountd_calls_total{",
        "xdp_mountd_afxdp_answer_duration_seconds_count ",
        "xdp_mountd_xdp_frames_total{verdict=\"redirected\"}",
        "xdp_mountd_afxdp_rx_frames_total{queue=\"0\"}",
        "xdp_mountd_xsk_rx_ring_full_total{queue=\"0\"}",
        "xdp_mountd_exports_generation 1",
        "xdp_mountd_tcp_connections_open 0",
    ] {
        assert!(body.contains(family), "no {family} in\n{body}");
    }
}
