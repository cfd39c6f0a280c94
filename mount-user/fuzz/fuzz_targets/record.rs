//! Fuzz TCP record reassembly (RFC 5531 record marking), which sees every byte a TCP
//! client sends.
//!
//! The first byte picks the record cap and how the stream is cut into reads; the rest is
//! the stream. Invariants: no panic; no record longer than the cap is ever handed out; once
//! the reader reports an oversized record the connection is closed (we stop feeding).
//!
//! Build/run: `cargo xtask fuzz record` (or see answer.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mount_proto::rpc::record::RecordReader;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let cap = [16usize, 64, 1024, 8192][usize::from(sel & 3)];
    // Read sizes 1..=32 bytes, or the whole stream at once.
    let chunk = match usize::from(sel >> 2) {
        0 => stream.len().max(1),
        n => n.min(32),
    };
    let mut reader = RecordReader::new(cap);
    for piece in stream.chunks(chunk) {
        reader.push(piece);
        loop {
            match reader.next_record() {
                Ok(Some(record)) => assert!(record.len() <= cap, "{} > {cap}", record.len()),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
