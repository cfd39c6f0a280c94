//! Tests of `answer`: shared helpers here, hand-made vectors per docs/protocol.md row in
//! `vectors.rs`, real client captures in `golden.rs`, property tests in `props.rs`. That the
//! hot path does not allocate is an integration test (`tests/alloc.rs`): its counting
//! allocator needs `unsafe`, which this crate forbids.
use super::*;
use crate::exports::StaticResolver;
use crate::rpc::{encode_call, AuthSys, Credential, Reply, ReplyBody};
use crate::xdr::Reader;
use wire::{ExportList, MountBodies, MountRes3};

mod dissect;
mod gateway;
mod golden;
mod lists;
mod mnt;
mod props;
mod vectors;

/// An export table, a mount list and a policy.
pub(super) struct Env {
    pub table: ExportTable,
    pub mounts: MountList,
    pub policy: Policy,
}

impl Env {
    pub fn new(exports: &str) -> Self {
        Env {
            // No name resolves: the tests never ask DNS.
            table: ExportTable::parse_str_with(exports, "test", &StaticResolver::default())
                .unwrap(),
            mounts: MountList::new(),
            policy: Policy::default(),
        }
    }

    /// Answer `req` from `addr` (e.g. "10.1.2.3:700") into a 64 KiB buffer.
    pub fn ask(&self, req: &[u8], addr: &str) -> (Outcome, Vec<u8>) {
        self.ask_with(req, addr, None, 65536)
    }

    pub fn ask_with(
        &self,
        req: &[u8],
        addr: &str,
        name: Option<&str>,
        cap: usize,
    ) -> (Outcome, Vec<u8>) {
        let facts = name.map(HostFacts::named);
        let client = Client {
            addr: addr.parse().unwrap(),
            host: facts.as_ref(),
        };
        let ctx = Context {
            exports: &self.table,
            mounts: &self.mounts,
            policy: &self.policy,
            upstream: None,
        };
        let mut out = vec![0u8; cap];
        let outcome = answer(req, &client, &ctx, &mut out);
        let len = match outcome {
            Outcome::Reply { len, .. } => len,
            _ => 0,
        };
        out.truncate(len);
        (outcome, out)
    }

    /// Ask and expect an accepted SUCCESS reply; returns the results.
    pub fn results(&self, req: &[u8], addr: &str) -> Vec<u8> {
        let (outcome, reply) = self.ask(req, addr);
        assert!(
            matches!(
                outcome,
                Outcome::Reply {
                    truncated: false,
                    ..
                }
            ),
            "{outcome:?}"
        );
        success_results(&reply, xid_of(req))
    }

    /// The mount list as (host, dir) pairs.
    pub fn mount_list(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        self.mounts.for_each(|h, d| {
            v.push((h.to_owned(), d.to_owned()));
            std::ops::ControlFlow::Continue(())
        });
        v
    }
}

fn xid_of(req: &[u8]) -> u32 {
    crate::rpc::xid(req).unwrap()
}

/// Check an accepted SUCCESS reply with a matching xid and return its results.
pub(super) fn success_results(reply: &[u8], xid: u32) -> Vec<u8> {
    let r = Reply::parse(reply).unwrap();
    assert_eq!(r.xid, xid);
    match r.body {
        ReplyBody::Accepted {
            stat: AcceptStat::Success,
            verf,
            results,
        } => {
            assert_eq!(verf, crate::rpc::OpaqueAuth::NONE);
            results.to_vec()
        }
        other => panic!("not SUCCESS: {other:?}"),
    }
}

/// A call with an AUTH_SYS credential like the Linux client's.
pub(super) fn call(xid: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    call_prog(xid, MOUNT_PROGRAM, vers, proc_, args)
}

pub(super) fn call_prog(xid: u32, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let sys = AuthSys::new(1, b"client", 0, 0, &[0]).unwrap();
    let mut out = vec![0u8; 2048];
    let n = encode_call(
        &mut out,
        xid,
        prog,
        vers,
        proc_,
        &Credential::Sys(sys),
        args,
    )
    .unwrap();
    out.truncate(n);
    out
}

/// XDR `dirpath` argument.
pub(super) fn path_arg(p: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; p.len() + 8];
    let mut w = Writer::new(&mut out);
    w.put_opaque(p, usize::MAX).unwrap();
    let n = w.position();
    out.truncate(n);
    out
}

pub(super) fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Decode an `exports` list into (dir, groups).
pub(super) fn decode_exports(results: &[u8]) -> Vec<(String, Vec<String>)> {
    let mut r = Reader::new(results);
    let list = ExportList::parse(&mut r).unwrap();
    assert!(r.is_empty(), "trailing bytes after exports list");
    list.iter()
        .map(|e| (text(e.dir), e.groups.iter().map(text).collect()))
        .collect()
}

/// Decode a `mountlist` into (host, dir).
pub(super) fn decode_mountlist(results: &[u8]) -> Vec<(String, String)> {
    let mut r = Reader::new(results);
    let list = MountBodies::parse(&mut r).unwrap();
    assert!(r.is_empty(), "trailing bytes after mountlist");
    list.iter()
        .map(|b| (text(b.hostname), text(b.directory)))
        .collect()
}

/// Decode MNT v3 results, all of them: the status, or the handle and flavors.
pub(super) fn decode_mountres3(results: &[u8]) -> Result<(Vec<u8>, Vec<u32>), u32> {
    let mut r = Reader::new(results);
    let res = MountRes3::parse(&mut r).unwrap();
    assert!(r.is_empty(), "trailing bytes after mountres3");
    match res {
        MountRes3::Ok { handle, flavors } => Ok((handle.to_vec(), flavors.iter().collect())),
        MountRes3::Err(stat) => Err(stat),
    }
}

/// Decode MNT v1/v2 results, all of them: the status, or the 32-byte handle.
pub(super) fn decode_fhstatus(results: &[u8]) -> Result<Vec<u8>, u32> {
    let mut r = Reader::new(results);
    let res = FhStatus::parse(&mut r).unwrap();
    assert!(r.is_empty(), "trailing bytes after fhstatus");
    match res {
        FhStatus::Ok(handle) => Ok(handle.to_vec()),
        FhStatus::Err(stat) => Err(stat),
    }
}

/// Decode an accepted non-SUCCESS or denied reply's status for assertions.
pub(super) fn reply_body(reply: &[u8]) -> ReplyBody<'_> {
    Reply::parse(reply).unwrap().body
}

#[test]
fn ip_text_formats_v4_and_v6() {
    let v4: IpAddr = "10.1.2.3".parse().unwrap();
    assert_eq!(IpText::new(v4).as_str(), "10.1.2.3");
    let v6: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
    assert_eq!(
        IpText::new(v6).as_str(),
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    );
    let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
    assert_eq!(IpText::new(mapped.to_canonical()).as_str(), "10.1.2.3");
}
