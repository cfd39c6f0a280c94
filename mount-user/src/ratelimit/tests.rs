use std::net::{IpAddr, Ipv6Addr};

use super::*;

const SECOND: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limiter(per_source: Option<&str>, global: Option<&str>, v4: u8, v6: u8) -> CallLimiter {
    CallLimiter::new(RateLimits {
        per_source: per_source.map(|s| s.parse().unwrap()),
        global: global.map(|s| s.parse().unwrap()),
        v4_prefix: v4,
        v6_prefix: v6,
        sources: 1024,
    })
}

/// Calls from `peer` admitted when offered at `offered` per second for `secs` seconds.
fn admitted_at_rate(l: &CallLimiter, peer: IpAddr, offered: u64, secs: u64, start: u64) -> u64 {
    let gap = SECOND / offered;
    (0..offered * secs)
        .filter(|i| l.check_at(peer, start + i * gap).is_ok())
        .count() as u64
}

#[test]
fn rate_parses_with_and_without_burst_and_names_bad_parts() {
    assert_eq!(
        "500".parse::<CallRate>(),
        Ok(CallRate {
            per_second: 500,
            burst: 500
        })
    );
    assert_eq!(
        " 500/1000".parse::<CallRate>(),
        Ok(CallRate {
            per_second: 500,
            burst: 1000
        })
    );
    assert_eq!(
        "500/1000".parse::<CallRate>().unwrap().to_string(),
        "500/1000"
    );
    let zero = "0".parse::<CallRate>().unwrap_err();
    assert!(zero.contains("at least 1"), "{zero}");
    let burst = "10/x".parse::<CallRate>().unwrap_err();
    assert!(burst.contains("burst \"x\""), "{burst}");
    assert!("".parse::<CallRate>().is_err());
    assert!("1/2/3".parse::<CallRate>().is_err());
    assert!("-5".parse::<CallRate>().is_err());
}

#[test]
fn a_burst_is_admitted_at_once_then_the_rate_holds() {
    let l = limiter(Some("100/10"), None, 32, 64);
    let peer = ip("192.0.2.1");
    let now = SECOND;
    let burst = (0..50).filter(|_| l.check_at(peer, now).is_ok()).count();
    assert_eq!(burst, 10, "the burst, no more, at one instant");
    let refused = l.check_at(peer, now).unwrap_err();
    assert_eq!(refused.over, Over::Source);
    // The cell is 10 calls ahead: one more fits after one interval (10 ms).
    assert_eq!(refused.retry_after, Duration::from_millis(10));
    assert!(l.check_at(peer, now + 10_000_000).is_ok());
}

#[test]
fn a_flooding_source_is_held_to_its_rate_and_a_steady_one_loses_nothing() {
    let l = limiter(Some("1000/100"), None, 32, 64);
    // 10x over the limit for 5 s: the limit plus the burst gets through.
    let flood = admitted_at_rate(&l, ip("192.0.2.1"), 10_000, 5, SECOND);
    assert!((5_000..=5_100).contains(&flood), "flood admitted {flood}");
    let steady = admitted_at_rate(&l, ip("192.0.2.2"), 500, 5, SECOND);
    assert_eq!(steady, 2_500, "a source under its limit loses nothing");
}

#[test]
fn sources_in_one_prefix_share_a_cell_and_other_prefixes_do_not() {
    let l = limiter(Some("10/10"), None, 24, 56);
    let now = SECOND;
    for last in 1..=10 {
        assert!(l.check_at(ip(&format!("198.51.100.{last}")), now).is_ok());
    }
    assert!(l.check_at(ip("198.51.100.200"), now).is_err(), "same /24");
    assert!(l.check_at(ip("198.51.101.1"), now).is_ok(), "next /24");
    for i in 0..10 {
        assert!(l
            .check_at(ip(&format!("2001:db8:0:ff{i:02x}::1")), now)
            .is_ok());
    }
    assert!(
        l.check_at(ip("2001:db8:0:ffaa::9"), now).is_err(),
        "same /56"
    );
    assert!(
        l.check_at(ip("2001:db8:0:100::1"), now).is_ok(),
        "another /56"
    );
    assert_eq!(
        l.prefix_of(ip("2001:db8:0:ffaa::9")).to_string(),
        "2001:db8:0:ff00::/56"
    );
    assert_eq!(
        l.prefix_of(ip("198.51.100.7")).to_string(),
        "198.51.100.0/24"
    );
}

#[test]
fn ipv4_mapped_peers_count_as_their_ipv4_address() {
    let l = limiter(Some("1/1"), None, 32, 128);
    let now = SECOND;
    assert!(l.check_at(ip("192.0.2.9"), now).is_ok());
    let mapped = IpAddr::V6(
        "192.0.2.9"
            .parse::<std::net::Ipv4Addr>()
            .unwrap()
            .to_ipv6_mapped(),
    );
    assert!(l.check_at(mapped, now).is_err(), "one cell for both forms");
    assert_eq!(l.prefix_of(mapped).to_string(), "192.0.2.9/32");
}

#[test]
fn the_global_ceiling_counts_only_calls_within_their_source_limit() {
    let l = limiter(Some("100/1"), Some("150/20"), 32, 64);
    // Source A floods at 10x its limit, B asks 100/s: together they are held to the
    // ceiling, and A's refused excess does not use up the global budget (were the
    // ceiling checked first, A's 9,900 refused calls would take nearly all of it).
    let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let (mut got_a, mut got_b, mut over_global) = (0, 0, 0);
    for i in 0..10_000u64 {
        let now = SECOND + i * 100_000; // 10,000 calls/s for 1 s
        match l.check_at(a, now) {
            Ok(()) => got_a += 1,
            Err(r) if r.over == Over::Global => over_global += 1,
            Err(_) => {}
        }
        if i % 100 == 0 {
            match l.check_at(b, now + 50_000) {
                Ok(()) => got_b += 1,
                Err(r) if r.over == Over::Global => over_global += 1,
                Err(_) => {}
            }
        }
    }
    assert!(got_a <= 101, "A admitted {got_a}");
    let total = got_a + got_b;
    assert!(
        (140..=172).contains(&total),
        "ceiling 150/s + 20: {got_a} + {got_b}"
    );
    assert!(got_b >= 40, "B admitted {got_b}");
    assert!(over_global > 0, "the ceiling was reached");
}

#[test]
fn the_source_table_is_bounded_and_forgets_the_quietest_prefix() {
    let l = CallLimiter::new(RateLimits {
        per_source: Some("1/1".parse().unwrap()),
        sources: 32,
        ..RateLimits::off()
    });
    let now = SECOND;
    for i in 0..10_000u32 {
        let peer = IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64));
        assert!(l.check_at(peer, now).is_ok(), "a new prefix gets its burst");
    }
    let cells: usize = l.shards.iter().map(|s| s.lock().len()).sum();
    assert!(
        cells <= 32 + SHARDS,
        "{cells} cells kept for 10,000 prefixes"
    );
}

#[test]
fn xdp_config_carries_the_limits_and_masks() {
    let limits = RateLimits {
        per_source: Some("1000/2000".parse().unwrap()),
        global: None,
        v4_prefix: 24,
        v6_prefix: 48,
        sources: 4096,
    };
    let c = limits.xdp_config(Config::for_port(644));
    assert_eq!(c.port_host(), 644);
    assert_eq!(c.per_source.interval_ns, 1_000_000);
    assert_eq!(c.per_source.burst_ns, 2_000_000_000);
    assert!(!c.global.is_on());
    assert_eq!(c.v4_mask.to_ne_bytes(), [255, 255, 255, 0]);
    let v6: Vec<u8> = c.v6_mask.iter().flat_map(|w| w.to_ne_bytes()).collect();
    assert_eq!(&v6[..8], &[255, 255, 255, 255, 255, 255, 0, 0]);
    assert!(v6[8..].iter().all(|&b| b == 0));
    assert_eq!(limits.xdp_source_entries(), 4096);
    assert_eq!(
        RateLimits::off().xdp_source_entries(),
        mount_xdp::ebpf::SOURCES_UNUSED_ENTRIES
    );
    assert_eq!(
        limits.describe_per_source(),
        "1000/2000 calls/s per /24 (IPv4), /48 (IPv6) source"
    );
}
