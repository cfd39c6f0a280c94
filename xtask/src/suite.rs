//! `cargo xtask test`: lint, unit, property and end-to-end tests in one command.
use anyhow::{bail, Result};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::fuzz::{self, FuzzArgs};
use crate::{run_checked, workspace_root};

/// Seconds each fuzz target runs in the suite: a smoke test that the targets build and
/// run from their seeds, not a search.
const FUZZ_SMOKE_SECS: u64 = 10;

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and `cargo clippy -D warnings`.
    #[arg(long)]
    no_lint: bool,
    /// Skip the end-to-end suite's extra runs over AF_XDP (--xdp native and generic, each
    /// also with --xdp-answers on).
    #[arg(long)]
    no_xdp_suite: bool,
    /// Skip the fuzz smoke run (every cargo-fuzz target for a few seconds).
    #[arg(long)]
    no_fuzz: bool,
    /// Skip the demo check (`cargo xtask run --check`: release build, AF_XDP, the printed
    /// client commands, clean stop).
    #[arg(long)]
    no_demo: bool,
    /// Extra arguments for `cargo test` (e.g. a test name filter), after `--`.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

/// Run the suite from the workspace root.
pub fn run(args: TestArgs) -> Result<()> {
    let root = workspace_root();
    let cargo = || {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&root);
        cmd
    };
    if !args.no_lint {
        run_checked(cargo().args(["fmt", "--all", "--check"]))?;
        run_checked(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
        // Not a default member (see below); its host-side part is linted all the same.
        run_checked(cargo().args([
            "clippy",
            "-p",
            "mount-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // The end-to-end tests run the real binary: build it first.
    run_checked(cargo().args(["build", "-p", "mount-user", "--bin", "xdp-mountd"]))?;
    let bin = root.join("target/debug/xdp-mountd");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    if std::env::var("CI").as_deref() != Ok("true") && !root_user {
        eprintln!(
            "xtask: WARNING: not root — the end-to-end tests (namespaces, veth, rpcbind) will SKIP"
        );
    }
    // The Debian package (release build, man pages, cargo-deb, lintian), one check of its
    // own; the deploy tests install it (into a scratch root) with this very xtask.
    let package = crate::package::build(&crate::package::PackageArgs { no_lintian: false });
    let mut test = cargo();
    test.arg("test")
        .args(&args.cargo_test_args)
        .env("XDP_MOUNTD_BIN", &bin)
        .env("XMD_XTASK_BIN", std::env::current_exe()?);
    if let Ok(deb) = &package {
        test.env("XMD_DEB", deb);
    }
    let mut totals = run_counting(&mut test)?;
    // The eBPF crate is not a default member (its binary builds only for BPF); its shared
    // layouts and helpers have host-side unit tests all the same.
    if args.cargo_test_args.is_empty() {
        totals += run_counting(cargo().args(["test", "-p", "mount-ebpf", "--lib"]))?;
    }
    match package {
        Ok(_) => totals.passed += 1,
        Err(e) => {
            eprintln!("xtask: package check FAILED: {e:#}");
            totals.failed += 1;
        }
    }
    // The whole end-to-end suite again over the AF_XDP data path, native and generic XDP
    // (the harness proves from the daemon's stats that UDP calls went through AF_XDP), and
    // with the XDP program answering NULL and MNT itself, native and generic
    // (docs/xdp-answers.md).
    if args.cargo_test_args.is_empty() && !args.no_xdp_suite {
        for daemon_args in [
            "--iface veth0 --xdp native",
            "--iface veth0 --xdp generic",
            "--iface veth0 --xdp native --xdp-answers on",
            "--iface veth0 --xdp generic --xdp-answers on",
        ] {
            println!("xtask: end-to-end suite with {daemon_args}");
            let mut e2e = cargo();
            e2e.args(["test", "-p", "e2e", "--no-fail-fast"])
                .env("XDP_MOUNTD_BIN", &bin)
                .env("XMD_XTASK_BIN", std::env::current_exe()?)
                .env("XMD_E2E_DAEMON_ARGS", daemon_args);
            totals += run_counting(&mut e2e)?;
        }
    }
    // Every parser of untrusted bytes, fuzzed briefly (long runs: `cargo xtask fuzz --secs N`).
    if args.cargo_test_args.is_empty() && !args.no_fuzz {
        let smoke = FuzzArgs {
            secs: FUZZ_SMOKE_SECS,
            targets: Vec::new(),
        };
        for run in fuzz::run_targets(&smoke)? {
            if run.crashed {
                eprintln!("xtask: fuzz target {} CRASHED", run.target);
                totals.failed += 1;
            } else {
                totals.passed += 1;
            }
        }
    }
    // The newcomer's first command, end to end: what `cargo xtask run` prints must work.
    if args.cargo_test_args.is_empty() && !args.no_demo {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            println!("xtask: demo check (cargo xtask run --check)");
            let demo = run_checked(cargo().args(["xtask", "run", "--check", "--storm-secs", "2"]));
            match demo {
                Ok(()) => totals.passed += 1,
                Err(e) => {
                    eprintln!("xtask: demo check FAILED: {e:#}");
                    totals.failed += 1;
                }
            }
        } else if std::env::var("CI").as_deref() == Ok("true") {
            eprintln!("xtask: demo check needs root, and CI=true allows no skip");
            totals.failed += 1;
        } else {
            eprintln!("xtask: demo check SKIPPED (needs root)");
            totals.ignored += 1;
        }
    }
    // One closing line over every test binary: cargo prints one `test result:` per binary,
    // the last of which is often an empty doc-test run.
    println!(
        "summary: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if totals.failed > 0 {
        bail!("{} tests failed", totals.failed);
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, t: Totals) {
        self.passed += t.passed;
        self.failed += t.failed;
        self.ignored += t.ignored;
    }
}

/// Run `cargo test`, echoing its output, and add up its `test result:` lines.
fn run_counting(cmd: &mut Command) -> Result<Totals> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {cmd:?}: {e}"))?;
    let mut totals = Totals::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split([';', '.']) {
                    let mut words = part.split_whitespace();
                    if let (Some(n), Some(what)) = (words.next(), words.next()) {
                        let n: u64 = n.parse().unwrap_or(0);
                        match what {
                            "passed" => totals.passed += n,
                            "failed" => totals.failed += n,
                            "ignored" => totals.ignored += n,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(totals)
}
