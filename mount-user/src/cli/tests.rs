//! The command line's definition and parsing of each subcommand's options.
use super::*;
use clap::CommandFactory;

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

fn serve(args: &[&str]) -> ServeArgs {
    let argv = ["xdp-mountd", "serve"].iter().chain(args);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Serve(a) => *a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn serve_defaults() {
    let a = serve(&[]);
    assert!(a.exports.is_empty(), "the default set");
    assert_eq!((a.name_ttl, a.negative_ttl, a.resolve_retry), (300, 30, 30));
    let a = serve(&["--exports", "/etc/exports", "--exports", "/srv/exports.d"]);
    assert_eq!(
        a.exports,
        [
            PathBuf::from("/etc/exports"),
            PathBuf::from("/srv/exports.d")
        ]
    );
    assert_eq!(a.port, 644);
    assert_eq!(a.rmtab, None);
    assert!(!a.no_rpcbind && !a.filter_exports);
    assert_eq!(a.max_connections, 1024);
    assert_eq!(a.idle_timeout, 120);
    assert_eq!(a.max_record, 8192);
    assert_eq!(a.bind, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert!(a.udp_workers() >= 1);
    assert_eq!(a.metrics, None);
}

#[test]
fn serve_all_flags() {
    let a = serve(&[
        "--exports",
        "e",
        "--port",
        "0",
        "--rmtab",
        "r",
        "--no-rpcbind",
        "--udp-workers",
        "3",
        "--max-connections",
        "5",
        "--idle-timeout",
        "7",
        "--max-record",
        "4096",
        "--filter-exports",
        "--bind",
        "127.0.0.1",
        "--metrics",
        "127.0.0.1:9644",
    ]);
    assert_eq!(a.metrics, Some("127.0.0.1:9644".parse().unwrap()));
    assert_eq!(a.port, 0);
    assert_eq!(a.rmtab, Some(PathBuf::from("r")));
    assert!(a.no_rpcbind && a.filter_exports);
    assert_eq!(a.udp_workers(), 3);
    assert_eq!(
        (a.max_connections, a.idle_timeout, a.max_record),
        (5, 7, 4096)
    );
    assert_eq!(a.bind, "127.0.0.1".parse::<IpAddr>().unwrap());
}

#[test]
fn gateway_flags() {
    let a = serve(&["--exports", "e"]);
    assert_eq!(a.upstream.upstream, None);
    assert_eq!(a.rpcbind_check, 10);
    let a = serve(&[
        "--exports",
        "e",
        "--upstream",
        "10.0.0.1:20048",
        "--upstream-program",
        "400005",
        "--upstream-ttl",
        "60",
        "--upstream-wait-ms",
        "250",
        "--upstream-umnt",
        "--rpcbind-check",
        "0",
    ]);
    let u = &a.upstream;
    assert_eq!(u.upstream.as_deref(), Some("10.0.0.1:20048"));
    assert_eq!(
        (u.upstream_program, u.upstream_ttl, u.upstream_wait_ms),
        (400_005, 60, 250)
    );
    assert!(u.upstream_umnt);
    assert_eq!(a.rpcbind_check, 0);
    for bad in [
        &["serve", "--exports", "e", "--upstream-program", "5"][..],
        &[
            "serve",
            "--exports",
            "e",
            "--upstream",
            "h",
            "--upstream-ttl",
            "1",
        ],
        &[
            "serve",
            "--exports",
            "e",
            "--upstream",
            "h",
            "--upstream-wait-ms",
            "0",
        ],
    ] {
        let argv = std::iter::once(&"xdp-mountd").chain(bad);
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn rejects_bad_values() {
    for bad in [
        &["serve", "--exports", "e", "--udp-workers", "0"][..],
        &["serve", "--name-ttl", "0"],
        &["serve", "--exports", "e", "--port", "70000"],
        &["serve", "--exports", "e", "--max-record", "10"],
        &["serve", "--exports", "e", "--bind", "not-an-ip"],
        &[
            "serve",
            "--exports",
            "e",
            "--iface",
            "eth0",
            "--xdp",
            "turbo",
        ],
        &["serve", "--exports", "e", "--queues", "0"],
        &["serve", "--exports", "e", "--cores", "x"],
        &["reload", "--port", "x"],
        &["serve", "--exports", "e", "--metrics", "9644"],
        &["--log-format", "xml", "check", "--exports", "e"],
    ] {
        let argv = std::iter::once(&"xdp-mountd").chain(bad);
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn cluster_flags() {
    assert!(serve(&[]).cluster.config().unwrap().is_none(), "standalone");
    let a = serve(&[
        "--cluster",
        "etcd://127.0.0.1:2379,127.0.0.2:2379",
        "--node",
        "a",
        "--cluster-cache",
        "/tmp/c",
    ]);
    let c = a.cluster.config().unwrap().unwrap();
    assert_eq!(c.endpoints.len(), 2);
    assert_eq!(c.keys.exports(), "/xdp-mountd/exports");
    assert_eq!(c.cache, PathBuf::from("/tmp/c"));
    let c = serve(&["--cluster", "etcd://h:1", "--node", "b"])
        .cluster
        .config()
        .unwrap()
        .unwrap();
    assert_eq!(
        c.cache,
        PathBuf::from("/var/lib/xdp-mountd/cluster-b.exports")
    );
    let err = Cli::try_parse_from([
        "xdp-mountd",
        "serve",
        "--cluster",
        "etcd://h:1",
        "--node",
        "a",
        "--exports",
        "e",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--exports") && err.contains("cannot be used"),
        "{err}"
    );
    for bad in [
        &["serve", "--cluster", "etcd://h:1"][..],
        &["serve", "--node", "a"],
        &["cluster", "publish", "--cluster", "etcd://h:1"],
    ] {
        let argv = std::iter::once(&"xdp-mountd").chain(bad);
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
    }
    let bad_node = serve(&["--cluster", "etcd://h:1", "--node", "a/b"]);
    assert!(bad_node.cluster.config().is_err());
}

#[test]
fn check_and_global_log_format() {
    let cli = Cli::try_parse_from([
        "xdp-mountd",
        "check",
        "--exports",
        "x",
        "--log-format",
        "json",
    ])
    .unwrap();
    assert_eq!(cli.log_format, LogFormat::Json);
    assert!(
        matches!(cli.command, Command::Check(CheckArgs { exports, .. }) if exports == [PathBuf::from("x")])
    );
}
