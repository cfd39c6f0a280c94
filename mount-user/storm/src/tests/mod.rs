//! The generator's own tests without a MOUNT server: command-line defaults and refusals
//! here, the engine against an in-memory transport (`engine`), forged sources (`spoof`).
//! Runs against the daemon's real UDP and TCP shells are mount-user's
//! `tests/storm_loopback.rs` (mount-user depends on this crate, so this crate cannot
//! depend on it).
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

use super::{execute, StormArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    storm: StormArgs,
}

fn args(list: &[&str]) -> StormArgs {
    let argv = std::iter::once("storm").chain(list.iter().copied());
    Cli::try_parse_from(argv).unwrap().storm
}

#[test]
fn cli_defaults_and_refusals() {
    let a = args(&["--target", "127.0.0.1:644"]);
    assert_eq!(a.count, 100_000);
    assert_eq!(a.duration, 10.0);
    assert_eq!(a.mix, super::mix::DEFAULT_MIX);
    assert_eq!(a.clients, 1);
    assert!(a.window.is_none() && a.rate.is_none() && a.json.is_none());
    let a = args(&[
        "--target",
        "127.0.0.1:644",
        "--source-addrs",
        "127.0.0.1,127.0.0.2",
    ]);
    assert_eq!(a.source_addrs.len(), 2);
    for bad in [
        &["--target", "x:1", "--paths", "/a", "--paths-file", "f"][..],
        &["--target", "x:1", "--clients", "0"],
        &["--target", "x:1", "--transport", "sctp"],
        &["--window", "3"],
    ] {
        let argv = std::iter::once("storm").chain(bad.iter().copied());
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
    }
    // Refused before any traffic.
    let stop = || Arc::new(AtomicBool::new(false));
    for bad in [
        &["--target", "127.0.0.1:644", "--mix", "mnt3"][..],
        &["--target", "127.0.0.1:644", "--mix", "bogus"],
        &[
            "--target",
            "127.0.0.1:644",
            "--mix",
            "null",
            "--duration",
            "0",
        ],
        &["--target", "127.0.0.1:644", "--mix", "null", "--rate=-5"],
        &[
            "--target",
            "127.0.0.1:644",
            "--mix",
            "null",
            "--io",
            "afxdp",
        ],
        &[
            "--target",
            "127.0.0.1:644",
            "--mix",
            "null",
            "--io",
            "afxdp",
            "--iface",
            "lo",
            "--transport",
            "tcp",
        ],
        &[
            "--target",
            "127.0.0.1:644",
            "--mix",
            "null",
            "--source-addrs",
            "::1",
        ],
        &["--target", "nonsense", "--mix", "null"],
        // No such interface: refused before any traffic (also as root).
        &[
            "--target",
            "127.0.0.1:644",
            "--mix",
            "null",
            "--pass-through-xdp",
            "xmd-nosuch0",
        ],
    ] {
        assert!(
            execute(&args(bad), stop(), false).is_err(),
            "{bad:?} accepted"
        );
    }
    // `--pass-through-xdp` where it has no place: refused by the plan, with the reason
    // (an AF_XDP run on `lo` or an empty name would fail later anyway, for another one).
    let base = ["--target", "127.0.0.1:644", "--mix", "null"];
    for (extra, why) in [
        (
            &["--io", "afxdp", "--iface", "lo", "--pass-through-xdp", "lo"][..],
            "is for --io socket",
        ),
        (&["--pass-through-xdp", ""][..], "needs an interface name"),
    ] {
        let list: Vec<&str> = base.iter().chain(extra).copied().collect();
        let err = execute(&args(&list), stop(), false).expect_err("accepted");
        assert!(format!("{err:#}").contains(why), "{list:?}: {err:#}");
    }
}

mod engine;
mod spoof;
