//! Fuzz the AF_XDP data path's view of a frame: `packet::parse` sees every frame the XDP
//! program steers (it re-validates what the kernel program checked), then the reply is
//! answered and framed the way the worker does it.
//!
//! Invariants: parse never panics; an accepted frame's payload lies inside it; building
//! the reply never writes past the frame buffer (UMEM frames are 4096 bytes) nor claims a
//! frame longer than it.
//!
//! Build/run: `cargo xtask fuzz frame` (or see answer.rs).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mount_proto::exports::{ExportTable, StaticResolver};
use mount_proto::mount::{answer, Client, Context, Outcome, Policy};
use mount_proto::mountlist::MountList;
use mount_proto::packet::{build_reply, parse};

/// The AF_XDP UMEM frame size the worker uses.
const FRAME_SIZE: usize = 4096;
const MTU: usize = 1500;

fn table() -> &'static ExportTable {
    static TABLE: OnceLock<ExportTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        ExportTable::parse_str_with(
            "/srv/a *(rw,insecure)\n/srv/b 10.0.0.0/8(ro)\n",
            "fuzz",
            &StaticResolver::default(),
        )
        .expect("fuzz exports parse")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = parse(data) else {
        return;
    };
    assert!(frame.payload.start <= frame.payload.end && frame.payload.end <= data.len());
    let payload = frame.payload(data);
    let mounts = MountList::new();
    let policy = Policy::default();
    let ctx = Context {
        exports: table(),
        mounts: &mounts,
        policy: &policy,
        upstream: None,
    };
    let client = Client {
        addr: frame.addressing.source(),
        host: None,
    };
    let mut out = [0u8; FRAME_SIZE];
    let mut reply_len = None;
    let built = build_reply(&mut out, &frame.addressing, MTU, |area| {
        match answer(payload, &client, &ctx, area) {
            Outcome::Reply { len, .. } => {
                reply_len = Some(len);
                len
            }
            _ => 0,
        }
    });
    if let Ok(len) = built {
        assert!(len <= FRAME_SIZE);
    }
});
