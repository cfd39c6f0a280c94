//! Privileged end-to-end tests of `xdp-mountd storm` with the real binary: a daemon in one
//! network namespace, storm in the other (veth pair), storm's AF_XDP mode (native and
//! generic, IPv4 and IPv6) and its socket mode. Needs root; prints SKIPPED otherwise (and
//! fails under CI=true, where root is expected). Everything is removed on drop, also when
//! a test panics.

use std::process::Command;

#[path = "support/afxdp_bed.rs"]
mod bed;

use bed::{privileged, Bed, CLI_IF, PORT};

const EXPORTS: &str = "/srv/a *(rw,insecure)\n/srv/b *(ro,insecure)\n";

/// Runs storm in the client namespace and returns its JSON report.
fn storm(bed: &Bed, args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.cli,
            env!("CARGO_BIN_EXE_xdp-mountd"),
            "storm",
        ])
        .args(args)
        .args(["--json", "-", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "storm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "storm printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `storm` through its own AF_XDP socket on the client interface, at the server's v4 or
/// v6 address.
fn storm_afxdp(bed: &Bed, v6: bool, args: &[&str]) -> serde_json::Value {
    let target = bed.srv_addr(v6).to_string();
    let mut list = vec!["--target", &target, "--io", "afxdp", "--iface", CLI_IF];
    list.extend_from_slice(args);
    storm(bed, &list)
}

fn assert_clean(r: &serde_json::Value, n: u64) {
    assert_eq!(r["sent"], n, "{r}");
    assert_eq!(r["answered"], n, "{r}");
    assert_eq!(r["wrong"], 0, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
}

const MIX: &str = "null=1,mnt3=6,umnt3=1,export3=1,dump3=1,mnt1=1";

#[test]
fn afxdp_mode_against_a_kernel_socket_daemon() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("storm", 91, 1);
    let exports = bed.write("exports", EXPORTS);
    let _daemon = bed.daemon(&["--exports", exports.to_str().unwrap(), "--xdp", "off"]);
    for (mode, v6) in [("native", false), ("generic", false), ("native", true)] {
        let r = storm_afxdp(
            &bed,
            v6,
            &[
                "--xdp",
                mode,
                "--mix",
                MIX,
                "--paths",
                "/srv/a,/srv/b",
                "--count",
                "5000",
                "--clients",
                "8",
                "--window",
                "64",
                "--duration",
                "30",
            ],
        );
        assert_clean(&r, 5000);
        assert_eq!(r["io"], "afxdp");
        assert_eq!(r["afxdp"]["xdp_mode"], mode, "{r}");
        assert_eq!(r["afxdp"]["iface"], CLI_IF);
        // The program left with the process.
        assert!(
            !bed.client_xdp_attached(),
            "storm's XDP program outlived it"
        );
    }
    // The daemon saw 8 distinct clients per run only through ports: one address.
    assert_eq!(
        bed.srv_addr(false).port(),
        PORT,
        "the bed serves on the default port"
    );
}

#[test]
fn afxdp_mode_against_an_afxdp_daemon_and_socket_mode() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("stormx", 92, 1);
    let _daemon = bed.xdp_daemon(EXPORTS, "native");
    let target = bed.srv_addr(false).to_string();
    let r = storm_afxdp(
        &bed,
        false,
        &[
            "--mix",
            MIX,
            "--paths",
            "/srv/a",
            "--count",
            "5000",
            "--clients",
            "4",
        ],
    );
    assert_clean(&r, 5000);
    // Socket mode (UDP and TCP) in the same namespace.
    for transport in ["udp", "tcp"] {
        let r = storm(
            &bed,
            &[
                "--target",
                &target,
                "--transport",
                transport,
                "--mix",
                MIX,
                "--paths",
                "/srv/a",
                "--count",
                "3000",
                "--clients",
                "4",
            ],
        );
        assert_clean(&r, 3000);
        assert_eq!(r["transport"], transport);
    }
    // Open loop through AF_XDP: paced, all answered.
    let r = storm_afxdp(
        &bed,
        false,
        &["--mix", "null", "--rate", "5000", "--duration", "1"],
    );
    assert_eq!(r["mode"], "open");
    let sent = r["sent"].as_u64().unwrap();
    assert!((4500..=5500).contains(&sent), "{r}");
    assert_eq!(r["answered"], sent, "{r}");
    assert!(!bed.client_xdp_attached());
}

#[test]
fn afxdp_mode_receives_on_every_queue_of_a_multi_queue_veth() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("stormq", 93, 2);
    let _daemon = bed.xdp_daemon(EXPORTS, "native");
    // Many clients (source ports) so that replies hash onto both rx queues.
    let r = storm_afxdp(
        &bed,
        false,
        &[
            "--mix",
            MIX,
            "--paths",
            "/srv/a",
            "--count",
            "8000",
            "--clients",
            "32",
            "--window",
            "128",
        ],
    );
    assert_clean(&r, 8000);
    assert_eq!(r["afxdp"]["queues"], 2, "{r}");
    let per_queue: Vec<u64> = r["afxdp"]["xsk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["rx_dropped"].as_u64().unwrap())
        .collect();
    assert_eq!(per_queue, vec![0, 0], "{r}");
    assert_eq!(r["afxdp"]["foreign_frames"], 0, "{r}");
    let rx: Vec<u64> = r["afxdp"]["rx_per_queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    eprintln!("replies per rx queue: {rx:?}");
    assert_eq!(rx.iter().sum::<u64>(), 8000, "{r}");
    // Client c sends on queue c % 2 and the daemon answers on the queue a call came in.
    assert!(rx.iter().all(|&n| n > 0), "a queue got no replies: {r}");
    assert!(
        r["afxdp"]["xdp_program"]["redirected"].as_u64().unwrap() >= 8000,
        "{r}"
    );
}

#[test]
fn afxdp_mode_forges_source_addresses() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("stormf", 94, 1);
    let daemon = bed.xdp_daemon(EXPORTS, "native");
    // MNT from the 254 hosts of a network configured nowhere, each in turn. The daemon
    // answers in place (to the frame's own MAC), so every reply comes back to storm.
    let r = storm_afxdp(
        &bed,
        false,
        &[
            "--mix",
            "mnt3",
            "--paths",
            "/srv/a",
            "--spoof-sources",
            "10.234.94.0/24",
            "--count",
            "2540",
            "--clients",
            "4",
        ],
    );
    assert_clean(&r, 2540);
    assert_eq!(r["afxdp"]["forged_sources"], 254, "{r}");
    assert_eq!(r["source_addrs"], serde_json::json!([]), "{r}");
    // The daemon saw each forged address as a client host of its own.
    assert_eq!(daemon.stats()["mount_list_entries"], 254);
    // IPv6 forges alike.
    let r = storm_afxdp(
        &bed,
        true,
        &[
            "--mix",
            "null",
            "--spoof-sources",
            "fd00:234:94::/120",
            "--count",
            "1000",
        ],
    );
    assert_clean(&r, 1000);
    assert_eq!(r["afxdp"]["forged_sources"], 256, "{r}");
    assert!(!bed.client_xdp_attached());
}
