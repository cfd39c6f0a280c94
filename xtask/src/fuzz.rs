//! `cargo xtask fuzz`: the cargo-fuzz targets of `mount-user/fuzz`, each for a bounded time,
//! with the fuzz crate's pinned nightly and the pinned cargo-fuzz from `.tools/`.
//!
//! Each target starts from its committed seeds (`fuzz/seeds/TARGET`) and the corpus
//! earlier runs grew (`fuzz/corpus/TARGET`, not committed). `cargo xtask test` runs every
//! target for a few seconds as a smoke test; long runs are made by hand (`--secs 900`).
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::setup::{self, ebpf_toolchain};
use crate::workspace_root;

/// Every target in `mount-user/fuzz/fuzz_targets`, the untrusted-input parsers.
pub const TARGETS: &[&str] = &["answer", "frame", "record", "exports", "rmtab"];

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub secs: u64,
    /// Targets to run [default: all].
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
}

/// What one target's run found.
pub struct FuzzRun {
    /// The target.
    pub target: String,
    /// Inputs executed (libFuzzer's `number_of_executed_units`).
    pub execs: u64,
    /// Whether libFuzzer stopped on a crash, leak, timeout or failed assertion.
    pub crashed: bool,
}

/// Run the targets one after the other and print a line per target; Err if any crashed.
pub fn run(args: FuzzArgs) -> Result<()> {
    let runs = run_targets(&args)?;
    let crashed: Vec<&str> = runs
        .iter()
        .filter(|r| r.crashed)
        .map(|r| r.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!(
            "fuzz targets crashed: {} (inputs in mount-user/fuzz/artifacts/)",
            crashed.join(", ")
        );
    }
    Ok(())
}

/// Run each target for `args.secs`; a crash is reported in its [`FuzzRun`], not as Err.
pub fn run_targets(args: &FuzzArgs) -> Result<Vec<FuzzRun>> {
    let root = workspace_root();
    let nightly = ebpf_toolchain::read_channel(&root.join(ebpf_toolchain::FUZZ_TOOLCHAIN_FILE))?;
    let path = ebpf_toolchain::path_with(&setup::cargo_fuzz_bin(&root))?;
    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        args.targets.clone()
    };
    let mut runs = Vec::new();
    for target in targets {
        let run = run_one(&root, &nightly, &path, &target, args.secs)?;
        println!(
            "fuzz {target}: {} inputs in {} s, {}",
            run.execs,
            args.secs,
            if run.crashed { "CRASHED" } else { "no crash" }
        );
        runs.push(run);
    }
    Ok(runs)
}

fn run_one(
    root: &Path,
    nightly: &str,
    path: &std::ffi::OsStr,
    target: &str,
    secs: u64,
) -> Result<FuzzRun> {
    let fuzz_dir = root.join("mount-user/fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let seeds = fuzz_dir.join("seeds").join(target);
    println!("xtask: fuzzing {target} for {secs} s");
    let out = Command::new("rustup")
        .args(["run", nightly, "cargo", "fuzz", "run", target])
        .arg(&corpus)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={secs}"),
            "-print_final_stats=1",
        ])
        .current_dir(root.join("mount-user"))
        .env("PATH", path)
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .context("running cargo fuzz")?;
    let log = String::from_utf8_lossy(&out.stderr);
    let execs = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok());
    let crashed = !out.status.success();
    if crashed || execs.is_none() {
        // Show what libFuzzer (or the build) said: the report from its first line (a panic,
        // a sanitizer error) and the closing lines naming the input and how to reproduce.
        let lines: Vec<&str> = log.lines().collect();
        let first = lines
            .iter()
            .position(|l| l.contains("panicked at") || l.contains("ERROR:"))
            .unwrap_or(lines.len().saturating_sub(40));
        let report_end = (first + 30).min(lines.len());
        let closing = lines.len().saturating_sub(15).max(report_end);
        for line in lines[first..report_end].iter().chain(&lines[closing..]) {
            eprintln!("{line}");
        }
    }
    match execs {
        Some(execs) => Ok(FuzzRun {
            target: target.to_string(),
            execs,
            crashed,
        }),
        None if crashed && (log.contains("==ERROR") || log.contains("panicked")) => Ok(FuzzRun {
            target: target.to_string(),
            execs: 0,
            crashed: true,
        }),
        None => bail!("cargo fuzz run {target} did not run ({})", out.status),
    }
}
