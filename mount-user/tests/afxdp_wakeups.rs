//! Privileged tests of what an AF_XDP worker spends per wakeup, with the real
//! `xdp-mountd` binary on namespaces + veth (copy mode): a lone call's reply leaves in the
//! poll() that follows, and `--afxdp-busy-poll` still answers through AF_XDP. Needs root;
//! prints SKIPPED otherwise (and fails under CI=true, where root is expected).

#[path = "support/afxdp_bed.rs"]
mod bed;

use bed::{privileged, udp_call, udp_socket, xdr_string, Bed, SRV_IF};

const EXPORTS: &str = "/srv/a *(ro,insecure)\n/srv/b *(rw,insecure)\n";

/// NULL and MNT over UDP from IPv4 and IPv6, one at a time (each waits for its reply);
/// returns how many calls were made.
fn udp_round(bed: &Bed) -> u64 {
    let mut calls = 0;
    for v6 in [false, true] {
        let to = bed.srv_addr(v6);
        bed.in_client(|| {
            let s = udp_socket(to);
            for _ in 0..3 {
                assert!(udp_call(&s, to, 3, 0, &[]).is_empty(), "NULL");
                let mnt = udp_call(&s, to, 3, 1, &xdr_string("/srv/a"));
                assert_eq!(&mnt[..4], &[0, 0, 0, 0], "MNT3_OK");
            }
        });
        calls += 6;
    }
    calls
}

/// The worker's counters grown since `before` (queue 0).
fn queue_growth(before: &serde_json::Value, after: &serde_json::Value, field: &str) -> u64 {
    let get = |s: &serde_json::Value| s["xdp"]["queues"][0][field].as_u64().unwrap_or(0);
    get(after).saturating_sub(get(before))
}

/// A lone call (the client waits for each reply) wakes the worker once, and its reply
/// leaves in the poll() that follows instead of a sendto() of its own.
#[test]
fn a_lone_call_costs_the_worker_no_sendto() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("one", 12, 1);
    let daemon = bed.xdp_daemon(EXPORTS, "native");
    let before = daemon.stats();
    let calls = udp_round(&bed);
    let after = daemon.stats();
    let grown = |f: &str| queue_growth(&before, &after, f);
    let q = &after["xdp"]["queues"][0];
    println!(
        "{calls} lone calls: {} polls, {} sendto, {} batches",
        grown("polls"),
        grown("tx_kicks"),
        grown("batches")
    );
    assert!(grown("rx") >= calls && grown("tx") >= calls, "{q}");
    assert!(
        grown("tx_kicks") * 4 <= grown("rx"),
        "lone replies were kicked with sendto(): {q}"
    );
    assert!(grown("polls") >= calls, "each lone call is a wakeup: {q}");
    assert_eq!(grown("busy_polls"), 0, "busy polling is opt-in: {q}");
}

/// `--afxdp-busy-poll`: the worker spins in recvfrom() after a call and still answers
/// everything through AF_XDP.
#[test]
fn busy_polling_worker_answers_through_afxdp() {
    if !privileged() {
        return;
    }
    let bed = Bed::new("bsy", 13, 1);
    let exports = bed.write("exports", EXPORTS);
    let daemon = bed.daemon(&[
        "--exports",
        exports.to_str().unwrap(),
        "--iface",
        SRV_IF,
        "--afxdp-busy-poll",
        "200",
    ]);
    assert!(bed.xdp_attached());
    let before = bed.srv_udp_counters();
    let calls = udp_round(&bed);
    assert_eq!(
        before,
        bed.srv_udp_counters(),
        "the server's kernel UDP counters moved: calls were not answered through AF_XDP"
    );
    let stats = daemon.stats();
    let q = &stats["xdp"]["queues"][0];
    assert!(q["tx"].as_u64().unwrap() >= calls, "{q}");
    assert!(q["busy_polls"].as_u64().unwrap() > 0, "{q}");
}
