//! `--spoof-sources`: the forged address list, the order calls take it in, and the
//! refusals made before any traffic.
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{args, Cli};
use crate::execute;
use crate::spoof::{forged_addresses, Cycle, MAX_FORGED};
use clap::Parser;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn forged_addresses_are_the_networks_hosts_in_order() {
    let v4 = forged_addresses("10.80.0.0/16".parse().unwrap()).unwrap();
    // Network and broadcast addresses are left out.
    assert_eq!(v4.len(), 65_534);
    assert_eq!(v4[0], ip("10.80.0.1"));
    assert_eq!(v4[255], ip("10.80.1.0"));
    assert_eq!(v4[v4.len() - 1], ip("10.80.255.254"));
    // A host bit set in the CIDR does not shift the range.
    assert_eq!(
        forged_addresses("10.80.7.9/30".parse().unwrap()).unwrap(),
        vec![ip("10.80.7.9"), ip("10.80.7.10")]
    );
    assert_eq!(
        forged_addresses("192.0.2.7/32".parse().unwrap()).unwrap(),
        vec![ip("192.0.2.7")]
    );
    // IPv6 has no broadcast address: a /112 is exactly the limit.
    let v6 = forged_addresses("fd80::/112".parse().unwrap()).unwrap();
    assert_eq!(v6.len(), MAX_FORGED);
    assert_eq!(v6[0], ip("fd80::"));
    assert_eq!(v6[MAX_FORGED - 1], ip("fd80::ffff"));
    for too_big in ["10.0.0.0/15", "fd80::/111", "0.0.0.0/0"] {
        let err = forged_addresses(too_big.parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("65536"), "{too_big}: {err}");
    }
}

#[test]
fn calls_take_the_forged_addresses_in_turn() {
    let mut cycle = Cycle::new(3);
    let taken: Vec<usize> = (0..7).map(|_| cycle.advance()).collect();
    assert_eq!(taken, vec![0, 1, 2, 0, 1, 2, 0]);
    let mut one = Cycle::new(1);
    assert_eq!((one.advance(), one.advance()), (0, 0));
    // An empty list is not a division by zero: it behaves as one address.
    let mut none = Cycle::new(0);
    assert_eq!(none.advance(), 0);
}

#[test]
fn spoof_sources_is_refused_where_it_cannot_work() {
    let a = args(&[
        "--target",
        "10.79.0.1:644",
        "--io",
        "afxdp",
        "--iface",
        "lo",
        "--spoof-sources",
        "10.80.0.0/16",
    ]);
    assert_eq!(a.spoof_sources, Some("10.80.0.0/16".parse().unwrap()));
    // Forged and configured source addresses exclude each other; a CIDR must parse.
    for bad in [
        &[
            "--target",
            "x:1",
            "--spoof-sources",
            "10.80.0.0/16",
            "--source-addrs",
            "10.79.0.2",
        ][..],
        &["--target", "x:1", "--spoof-sources", "10.80.0.0"],
        &["--target", "x:1", "--spoof-sources", "10.80.0.0/33"],
    ] {
        let argv = std::iter::once("storm").chain(bad.iter().copied());
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
    }
    // Refused before any socket is opened: kernel sockets, the wrong family, too many.
    let afxdp = ["--io", "afxdp", "--iface", "lo"];
    for (extra, why) in [
        (
            &["--io", "socket", "--spoof-sources", "127.1.0.0/24"][..],
            "--io afxdp",
        ),
        (
            &[afxdp.as_slice(), &["--spoof-sources", "fd80::/120"]].concat(),
            "family",
        ),
        (
            &[afxdp.as_slice(), &["--spoof-sources", "10.0.0.0/8"]].concat(),
            "65536",
        ),
    ] {
        let mut list = vec!["--target", "127.0.0.1:644", "--mix", "null"];
        list.extend_from_slice(extra);
        let err = execute(&args(&list), Arc::new(AtomicBool::new(false)), false).unwrap_err();
        assert!(format!("{err:#}").contains(why), "{extra:?}: {err:#}");
    }
}
