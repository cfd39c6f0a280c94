//! Golden tests on real client requests captured against NFS-Ganesha (testdata/vectors,
//! copied from the project's shared vectors): client 10.77.0.2, server 10.77.0.1, MOUNT on
//! port 644, one export `/tmp/peer/export`. Requests are decoded and their fields asserted;
//! our answers are compared with Ganesha's where both follow the spec (Ganesha's replies are
//! one implementation's answers, not the spec: it serves no MOUNT v2, we do).
use std::net::SocketAddr;
use std::path::PathBuf;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcapng::{Block, PcapNgReader};

use super::*;
use crate::rpc::{authenticate, Call, Credential, AUTH_NONE, AUTH_SYS};

const MOUNT_PORT: u16 = 644;
const EXPORTS: &str = "/tmp/peer/export 10.77.0.0/24(rw,insecure)\n";

/// One RPC message to or from the MOUNT port.
struct Message {
    tcp: bool,
    to_server: bool,
    client: SocketAddr,
    rpc: Vec<u8>,
}

fn vector(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/vectors")
        .join(name)
}

/// The RPC messages on the MOUNT port, in capture order; TCP record marks are checked and
/// stripped (every record in these captures is one last fragment in one segment).
fn messages(name: &str) -> Vec<Message> {
    let file = std::fs::File::open(vector(name)).unwrap();
    let mut reader = PcapNgReader::new(file).unwrap();
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        let Block::EnhancedPacket(epb) = block.unwrap() else {
            continue;
        };
        let pkt = SlicedPacket::from_ethernet(&epb.data).unwrap();
        let Some(NetSlice::Ipv4(ip)) = pkt.net else {
            continue;
        };
        let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
        let (tcp, sport, dport, payload) = match pkt.transport {
            Some(TransportSlice::Udp(u)) => {
                (false, u.source_port(), u.destination_port(), u.payload())
            }
            Some(TransportSlice::Tcp(t)) => {
                (true, t.source_port(), t.destination_port(), t.payload())
            }
            _ => continue,
        };
        if payload.is_empty() || (sport != MOUNT_PORT && dport != MOUNT_PORT) {
            continue;
        }
        let to_server = dport == MOUNT_PORT;
        let client = if to_server {
            SocketAddr::new(src.into(), sport)
        } else {
            SocketAddr::new(dst.into(), dport)
        };
        let rpc = if tcp {
            let mark = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            assert_ne!(mark & 0x8000_0000, 0, "{name}: not a last fragment");
            assert_eq!((mark & 0x7fff_ffff) as usize, payload.len() - 4, "{name}");
            payload[4..].to_vec()
        } else {
            payload.to_vec()
        };
        out.push(Message {
            tcp,
            to_server,
            client,
            rpc,
        });
    }
    out
}

/// Pairs of (request, Ganesha's reply), matched by xid.
fn exchanges(name: &str) -> Vec<(Message, Vec<u8>)> {
    let msgs = messages(name);
    let (calls, replies): (Vec<_>, Vec<_>) = msgs.into_iter().partition(|m| m.to_server);
    calls
        .into_iter()
        .map(|c| {
            let xid = &c.rpc[..4];
            let reply = replies
                .iter()
                .find(|r| &r.rpc[..4] == xid)
                .unwrap_or_else(|| panic!("{name}: no reply"))
                .rpc
                .clone();
            (c, reply)
        })
        .collect()
}

/// Our answer to a captured request, from the captured client address.
fn ours(env: &Env, m: &Message) -> Vec<u8> {
    let (o, reply) = env.ask(&m.rpc, &m.client.to_string());
    assert!(matches!(o, Outcome::Reply { .. }), "{o:?}");
    reply
}

#[test]
fn rpcinfo_probes_over_udp_and_tcp() {
    for (file, tcp) in [
        ("rpcinfo-u-probe.pcapng", false),
        ("rpcinfo-t-probe.pcapng", true),
    ] {
        let env = Env::new(EXPORTS);
        let ex = exchanges(file);
        assert_eq!(ex.len(), 4, "{file}");
        for (i, (m, ganesha)) in ex.iter().enumerate() {
            assert_eq!(m.tcp, tcp);
            assert_eq!(m.client.ip().to_string(), "10.77.0.2");
            let call = Call::parse(&m.rpc).unwrap();
            // Version 0 first (expects PROG_MISMATCH), then each version's NULL.
            assert_eq!(
                (call.prog, call.vers, call.proc_),
                (100_005, i as u32, 0),
                "{file}"
            );
            assert_eq!(call.cred.flavor, AUTH_NONE);
            assert_eq!(call.verf.flavor, AUTH_NONE);
            assert!(call.args.is_empty());
            let reply = ours(&env, m);
            if call.vers == 2 {
                // Ganesha does not serve MOUNT v2 and says PROG_MISMATCH; we do serve it.
                assert!(matches!(
                    reply_body(ganesha),
                    ReplyBody::Accepted {
                        stat: AcceptStat::ProgMismatch { low: 1, high: 3 },
                        ..
                    }
                ));
                assert!(success_results(&reply, call.xid).is_empty());
            } else {
                assert_eq!(&reply, ganesha, "{file} v{}", call.vers);
            }
        }
    }
}

#[test]
fn showmount_e_export_call() {
    let env = Env::new(EXPORTS);
    let ex = exchanges("showmount-e.pcapng");
    assert_eq!(ex.len(), 1);
    let (m, ganesha) = &ex[0];
    assert!(m.tcp);
    assert!(m.client.port() < 1024);
    let call = Call::parse(&m.rpc).unwrap();
    assert_eq!((call.prog, call.vers, call.proc_), (100_005, 3, 5));
    let Ok(Credential::Sys(sys)) = authenticate(&call.cred) else {
        panic!("not AUTH_SYS")
    };
    assert_eq!(sys.machine_name, b"vm");
    assert_eq!((sys.uid, sys.gid, sys.gids()), (0, 0, &[0][..]));
    assert_eq!(call.verf.flavor, AUTH_NONE);
    let theirs = decode_exports(&success_results(ganesha, call.xid));
    let mine = decode_exports(&success_results(&ours(&env, m), call.xid));
    assert_eq!(theirs.len(), 1);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].0, theirs[0].0);
    assert_eq!(mine[0].0, "/tmp/peer/export");
}

#[test]
fn showmount_a_dump_call() {
    let env = Env::new(EXPORTS);
    let ex = exchanges("showmount-a.pcapng");
    assert_eq!(ex.len(), 1);
    let (m, ganesha) = &ex[0];
    let call = Call::parse(&m.rpc).unwrap();
    assert_eq!((call.prog, call.vers, call.proc_), (100_005, 3, 2));
    assert_eq!(call.cred.flavor, AUTH_SYS);
    assert!(call.args.is_empty());
    // Both mount lists are empty: byte-identical replies.
    assert_eq!(&ours(&env, m), ganesha);
}

#[test]
fn nfs_ls_null_mnt_export() {
    let env = Env::new(EXPORTS);
    let ex = exchanges("nfs-ls-v3.pcapng");
    let procs: Vec<u32> = ex
        .iter()
        .map(|(m, _)| Call::parse(&m.rpc).unwrap().proc_)
        .collect();
    assert_eq!(procs, vec![0, 1, 5]);
    for (m, ganesha) in &ex {
        assert!(m.tcp);
        let call = Call::parse(&m.rpc).unwrap();
        assert_eq!((call.prog, call.vers), (100_005, 3));
        let Ok(Credential::Sys(sys)) = authenticate(&call.cred) else {
            panic!("not AUTH_SYS")
        };
        assert_eq!(sys.machine_name, b"libnfs");
        let reply = ours(&env, m);
        match call.proc_ {
            0 => assert_eq!(&reply, ganesha),
            1 => {
                let mut r = Reader::new(call.args);
                assert_eq!(r.string(1024).unwrap(), b"/tmp/peer/export/");
                assert!(r.is_empty());
                // Both: MNT3_OK, a handle, flavors [AUTH_SYS].
                for results in [
                    success_results(&reply, call.xid),
                    success_results(ganesha, call.xid),
                ] {
                    let (handle, flavors) = decode_mountres3(&results).unwrap();
                    assert!(!handle.is_empty());
                    assert_eq!(flavors, [AUTH_SYS]);
                }
                let h = env
                    .table
                    .lookup("/tmp/peer/export")
                    .unwrap()
                    .export
                    .handle();
                let (handle, _) = decode_mountres3(&success_results(&reply, call.xid)).unwrap();
                assert_eq!(handle, h.as_bytes());
            }
            _ => {
                let dirs: Vec<String> = decode_exports(&success_results(&reply, call.xid))
                    .into_iter()
                    .map(|e| e.0)
                    .collect();
                assert_eq!(dirs, vec!["/tmp/peer/export"]);
            }
        }
    }
    // The MNT (with its trailing '/') was recorded under the normalised path.
    assert_eq!(
        env.mount_list(),
        vec![("10.77.0.2".to_owned(), "/tmp/peer/export".to_owned())]
    );
}
