//! `cargo xtask test`: lint, unit, property and end-to-end tests in one command.
use anyhow::Result;
use std::process::Command;

use crate::{run_checked, workspace_root};

/// Options of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and `cargo clippy -D warnings`.
    #[arg(long)]
    no_lint: bool,
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
    }
    // The end-to-end tests run the real binary: build it first.
    run_checked(cargo().args(["build", "-p", "mount-user", "--bin", "xdp-mountd"]))?;
    let bin = root.join("target/debug/xdp-mountd");
    let fuzz = root.join("mount-user/fuzz/Cargo.toml");
    if fuzz.exists() {
        // The fuzz target must keep compiling against the library it exercises.
        // Through rustup: the fuzz crate needs nightly (cargo-fuzz's sanitizer flags).
        run_checked(
            Command::new("rustup")
                .args(["run", "nightly", "cargo", "check", "--manifest-path"])
                .arg(&fuzz)
                // The fuzz target exercises the protocol core, not the XDP object.
                .env("AYA_BUILD_SKIP", "1")
                .current_dir(&root),
        )?;
    }
    if std::env::var("CI").as_deref() != Ok("true") && unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "xtask: WARNING: not root — the end-to-end tests (namespaces, veth, rpcbind) will SKIP"
        );
    }
    run_checked(
        cargo()
            .arg("test")
            .args(&args.cargo_test_args)
            .env("XDP_MOUNTD_BIN", &bin),
    )
}
