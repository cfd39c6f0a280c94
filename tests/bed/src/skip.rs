//! Whether a privileged test can run here: root and a working `ip netns add`. Otherwise
//! the test prints a loud SKIPPED line and passes, so `cargo test` works for anyone;
//! with CI=true a skip is a failure instead, so CI cannot go green by skipping.
//!
//! The probe creates and deletes a namespace once per process rather than trusting the
//! euid alone: root in a container without CAP_SYS_ADMIN cannot make namespaces, and
//! that should read as a skip with its reason, not as a setup failure in every test.

use std::sync::OnceLock;

use crate::netns::ip;
use crate::pair::NS_PREFIX;

/// True when `test` can run; else prints `*** SKIPPED (needs root): TEST — WHY ***` and
/// returns false, or panics under CI=true.
pub fn can_run(test: &str) -> bool {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    match PROBE.get_or_init(probe) {
        None => true,
        Some(why) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: cannot run in CI ({why}); privileged tests need root");
            }
            eprintln!("\n*** SKIPPED (needs root): {test} — {why} ***\n");
            false
        }
    }
}

/// The name of the running test: libtest names each test's thread after it.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

/// None when we can create namespaces, else the reason we cannot.
fn probe() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".to_string());
    }
    let probe = format!("{NS_PREFIX}{}-probe", std::process::id());
    match ip(&["netns", "add", &probe]) {
        Ok(()) => {
            let _ = ip(&["netns", "del", &probe]);
            None
        }
        Err(e) => Some(format!("ip netns add failed: {e}")),
    }
}
