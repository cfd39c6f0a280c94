//! Fuzz the rmtab loader: the mount list file nfs-utils and we write, read back at start.
//! A damaged file (truncated write by another tool, a disk error) must never keep the
//! daemon from starting.
//!
//! Invariants: no panic; every entry loaded renders back to a line that loads again to
//! the same entry.
//!
//! Build/run: `cargo xtask fuzz rmtab` (or see answer.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mount_proto::mountlist::{Limits, Rmtab};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let list = Rmtab::parse(&text, "fuzz", Limits::default());
    let (_, entries) = list.snapshot();
    let again = Rmtab::parse(&Rmtab::render(&entries), "fuzz-render", Limits::default());
    assert_eq!(again.snapshot().1, entries);
});
