//! Stamps the commit into the binary (`xdp-mountd --version`). The XDP program is built by
//! the `mount-xdp` crate's build script (`xdp/build.rs`), not here.
use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    // The workspace root: mount-user's parent (git finds the repository from any directory in it).
    let workspace = Path::new(&manifest_dir).parent().unwrap_or(Path::new("."));
    emit_commit(workspace);
}

/// `XDP_MOUNTD_COMMIT`: the commit this was built from (`unknown` outside a git checkout).
fn emit_commit(workspace: &Path) {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=XDP_MOUNTD_COMMIT={commit}");
    // A new commit moves the branch ref HEAD points at (or packed-refs after a gc).
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = Path::new(&git_dir);
        let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
        let watched = ["HEAD", "packed-refs"]
            .into_iter()
            .chain(head_ref.as_deref());
        // A watched file that does not exist would rerun this script on every build.
        for file in watched.map(|f| git_dir.join(f)).filter(|f| f.exists()) {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
}
