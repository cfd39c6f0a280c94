//! Fuzz the exports(5) parser and compiler on arbitrary text.
//!
//! Invariants: no panic; a rejected file names the origin and a line number within the
//! text for every error (diagnostics as values with file:line).
//!
//! Build/run: `cargo xtask fuzz exports` (or see answer.rs).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mount_proto::exports::{ExportTable, StaticResolver};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    // A fixed resolver: the system's would send a DNS query for every random host name
    // (traffic off this machine, and a few per second at most).
    let resolver = StaticResolver(HashMap::from([(
        "host.example".to_string(),
        vec!["192.0.2.7".parse().expect("literal address")],
    )]));
    if let Err(e) = ExportTable::parse_str_with(text, "fuzz", &resolver) {
        for line_error in e.line_errors() {
            assert_eq!(line_error.origin, "fuzz", "{line_error}");
            assert!(
                (1..=lines).contains(&line_error.line),
                "error outside the text's {lines} lines: {line_error}"
            );
        }
    }
});
