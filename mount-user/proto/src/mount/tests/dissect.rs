//! Our replies, written to a pcap next to their calls, must dissect cleanly in tshark
//! (docs/protocol.md: tshark marks no reply of ours malformed). Skipped when tshark is not
//! installed.
use std::process::Command;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};

use super::*;

const EXPORTS: &str = "\
/srv/a 10.0.0.0/8(rw,insecure,sec=krb5p:sys) *(ro)
/srv/fh 10.0.0.0/8(insecure,fh=0102030405)
";

fn udp(from_client: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sport, dport) = if from_client {
        ([10, 0, 0, 2], [10, 0, 0, 1], 700, 644)
    } else {
        ([10, 0, 0, 1], [10, 0, 0, 2], 644, 700)
    };
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut pkt = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut pkt, payload).unwrap();
    pkt
}

#[test]
fn tshark_dissects_every_reply_cleanly() {
    if Command::new("tshark").arg("--version").output().is_err() {
        // `cargo xtask setup` installs tshark; in CI a skip would hide a missing install.
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "tshark is not installed (CI=true: a skip is a failure)"
        );
        eprintln!("SKIPPED (tshark not installed): tshark_dissects_every_reply_cleanly");
        return;
    }
    let env = Env::new(EXPORTS);
    let mut calls: Vec<Vec<u8>> = Vec::new();
    let mut xid = 0x7000;
    let mut next = |vers: u32, proc_: u32, args: &[u8]| {
        xid += 1;
        calls.push(call(xid, vers, proc_, args));
    };
    for vers in 1..=3 {
        next(vers, 0, &[]);
        next(vers, 1, &path_arg(b"/srv/a"));
        next(vers, 1, &path_arg(b"/srv/a/sub"));
        next(vers, 1, &path_arg(b"/srv/fh"));
        next(vers, 1, &path_arg(b"/nope"));
        next(vers, 2, &[]);
        next(vers, 5, &[]);
        next(vers, 3, &path_arg(b"/srv/a/sub"));
        next(vers, 4, &[]);
        next(vers, 2, &[]);
    }
    next(1, 6, &[]);
    next(2, 6, &[]);
    next(2, 7, &path_arg(b"/srv/a"));
    next(2, 7, &path_arg(b"/nope"));
    next(3, 6, &[]); // PROC_UNAVAIL
    next(4, 0, &[]); // PROG_MISMATCH
    next(3, 1, &path_arg(&[b'a'; 1100])); // GARBAGE_ARGS
    let mut frames = Vec::new();
    for c in &calls {
        let (o, reply) = env.ask(c, "10.0.0.2:700");
        assert!(matches!(o, Outcome::Reply { .. }));
        frames.push(udp(true, c));
        frames.push(udp(false, &reply));
    }
    let dir = std::env::temp_dir().join(format!("xdp-mountd-dissect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("replies.pcap");
    {
        let mut w = PcapWriter::new(std::fs::File::create(&file).unwrap()).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ts = Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
    }
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-d", "udp.port==644,rpc", "-V"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Malformed"),
        "tshark: malformed packet\n{text}"
    );
    assert!(!text.contains("Expert Info (Error"), "tshark error\n{text}");
    let replies = text.matches("Message Type: Reply (1)").count();
    assert_eq!(replies, calls.len());
    assert!(text.contains("Mount Service"));
    assert!(text.contains("Flavor: RPCSEC_GSS_KRB5P (390005)"), "{text}");
}
