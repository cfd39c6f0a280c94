//! Fuzz `mount::answer`: decode + answer arbitrary bytes as an RPC message.
//!
//! The first input byte picks the client (address, source port, host name), the reply
//! buffer size, the export filter policy and gateway mode (learned handles, waited or
//! not); the rest is the message. `answer` must never
//! panic, and must never report a reply longer than the buffer.
//!
//! Build/run: `cargo xtask fuzz answer`, or `cargo +nightly-2026-05-19 fuzz run answer` in
//! mount-user/ (the nightly pinned in fuzz/rust-toolchain.toml). The targets depend on the
//! protocol core (`mount-proto`) only, so nothing builds the XDP program.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mount_proto::exports::{ExportTable, FileHandle, HostFacts, StaticResolver};
use mount_proto::mount::client::MntAnswer;
use mount_proto::mount::learned::{Learned, LearnedHandles};
use mount_proto::mount::{answer, Client, Context, Gateway, ListBudget, Outcome, Policy};
use mount_proto::mountlist::MountList;

const EXPORTS: &str = "\
/ 10.0.0.0/8(ro)
/srv/a 10.0.0.0/8(rw,insecure) *(ro)
/srv/n *.example.com(insecure,sec=krb5p:sys:none)
/srv/fh 10.0.0.0/8(insecure,fh=0102030405)
/srv/long 10.0.0.0/8(insecure,fh=abababababababababababababababababababababababababababababababababababababababab)
";

fn table() -> &'static ExportTable {
    static TABLE: OnceLock<ExportTable> = OnceLock::new();
    // No name resolves (the system resolver would send DNS queries while fuzzing).
    TABLE.get_or_init(|| {
        ExportTable::parse_str_with(EXPORTS, "fuzz", &StaticResolver::default())
            .expect("fuzz exports parse")
    })
}

/// Gateway mode: a handle for /srv/a, a refusal for /, a 64-byte v1-less handle below /srv/a.
fn learned() -> &'static LearnedHandles {
    static LEARNED: OnceLock<LearnedHandles> = OnceLock::new();
    LEARNED.get_or_init(|| {
        let fh = |b: &[u8]| MntAnswer::Handle(FileHandle::from_bytes(b).expect("1..=64 bytes"));
        let mut l = LearnedHandles::new();
        l.insert(
            "/srv/a",
            Learned {
                v3: fh(&[1; 24]),
                v1: Some(fh(&[2; 32])),
            },
        );
        l.insert(
            "/",
            Learned {
                v3: MntAnswer::Status(13),
                v1: None,
            },
        );
        l.insert(
            "/srv/a/b",
            Learned {
                v3: fh(&[3; 64]),
                v1: None,
            },
        );
        l
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let addrs = [
        "10.1.2.3:700",
        "10.1.2.3:4000",
        "192.0.2.1:700",
        "[::ffff:10.0.0.1]:700",
    ];
    let addr: SocketAddr = addrs[usize::from(sel & 3)]
        .parse()
        .expect("literal address");
    let facts = (sel & 4 != 0).then(|| HostFacts::named("h.example.com"));
    let cap = [24usize, 64, 512, 65536][usize::from(sel >> 3 & 3)];
    let policy = Policy {
        filter_exports_by_client: sel & 0x20 != 0,
        // Odd-length messages also meet the UDP list budget.
        list_budget: (msg.len() % 2 == 1).then(|| ListBudget {
            factor: 2,
            trusted: vec!["10.0.0.0/8".parse().expect("literal network")],
        }),
    };
    let mounts = MountList::new();
    let ctx = Context {
        exports: table(),
        mounts: &mounts,
        policy: &policy,
        upstream: (sel & 0x40 != 0).then(|| Gateway {
            handles: learned(),
            waited: sel & 0x80 != 0,
        }),
    };
    let client = Client {
        addr,
        host: facts.as_ref(),
    };
    let mut out = vec![0u8; cap];
    if let Outcome::Reply { len, .. } = answer(msg, &client, &ctx, &mut out) {
        assert!(len <= cap);
    }
});
