//! Size limits and load: lists larger than a datagram, many concurrent clients.

use e2e::*;
use std::fmt::Write as _;

/// Decodes an `exports` list that may have been cut at an entry boundary: it must still be
/// a complete XDR list (ending in FALSE), with no trailing bytes.
fn strict_exports(results: &[u8]) -> Vec<(String, Vec<String>)> {
    parse_exports(results).unwrap_or_else(|e| panic!("EXPORT reply is not a valid list: {e:#}"))
}

#[test]
fn export_list_larger_than_a_datagram() {
    let Some(pair) = NetPair::new("export_list_larger_than_a_datagram") else {
        return;
    };
    // 1500 exports with 100-byte paths and two groups: ~250 KB of XDR.
    let mut text = String::new();
    let mut want = Vec::new();
    for i in 0..1500 {
        let dir = format!("/srv/big/{i:05}-{}", "p".repeat(84));
        writeln!(
            text,
            "{dir} 10.0.{}.0/24(ro,insecure) *(ro,insecure)",
            i % 250
        )
        .unwrap();
        want.push((dir, vec![format!("10.0.{}.0/24", i % 250), "*".to_string()]));
    }
    let exports = pair.write_file("exports", &text);
    let _d = pair.start_daemon(&DaemonOpts::new(exports));
    let srv4 = pair.srv_addr(false, PORT);
    let srv6 = pair.srv_addr(true, PORT);
    pair.in_client(move || {
        for server in [srv4, srv6] {
            // TCP: the whole list.
            let mut t = RpcClient::new(Proto::Tcp, server, SrcPort::High).unwrap();
            assert_eq!(t.exports(3, procs::EXPORT), want, "TCP EXPORT is complete");
            // UDP: one datagram, a valid list, a prefix of the whole cut at an entry.
            let u = UdpClient::new(server, SrcPort::High).unwrap();
            let call = Call::mount(3, procs::EXPORT);
            let r = u.call(&call).unwrap();
            assert!(r.raw.len() <= 65_507, "UDP reply of {} bytes", r.raw.len());
            let got = strict_exports(r.success());
            assert!(!got.is_empty(), "a truncated list still carries entries");
            assert!(got.len() < want.len(), "250 KB cannot fit one datagram");
            assert_eq!(
                got[..],
                want[..got.len()],
                "UDP list must be a prefix of the whole"
            );
            // A MNT of the last export works regardless.
            let mut uc = RpcClient::Udp(u);
            assert_eq!(uc.mnt3(&want[1499].0).0, status::OK);
        }
    });
}

#[test]
fn dump_list_larger_than_a_datagram() {
    let Some(pair) = NetPair::new("dump_list_larger_than_a_datagram") else {
        return;
    };
    let _d = pair.start_standard();
    let server = pair.srv_addr(false, PORT);
    let host = pair.cli_v4().to_string();
    pair.in_client(move || {
        let mut t = RpcClient::new(Proto::Tcp, server, SrcPort::High).unwrap();
        let mut want = Vec::new();
        for i in 0..800 {
            let dir = format!("/srv/a/{i:04}-{}", "q".repeat(90));
            let (st, _) = t.mnt3(&dir);
            assert_eq!(st, status::OK);
            want.push((host.clone(), dir));
        }
        want.sort();
        let mut got = t.dump(3);
        got.sort();
        assert_eq!(got, want, "TCP DUMP is complete");
        let u = UdpClient::new(server, SrcPort::High).unwrap();
        let r = u.call(&Call::mount(1, procs::DUMP)).unwrap();
        assert!(r.raw.len() <= 65_507);
        let got = parse_mountlist(r.success())
            .unwrap_or_else(|e| panic!("UDP DUMP is not a valid list: {e:#}"));
        assert!(!got.is_empty() && got.len() <= want.len());
        for e in &got {
            assert!(want.binary_search(e).is_ok(), "unknown DUMP entry {e:?}");
        }
    });
}

#[test]
fn concurrent_clients_get_their_own_answers() {
    let Some(pair) = NetPair::new("concurrent_clients") else {
        return;
    };
    let _d = pair.start_standard();
    let srv4 = pair.srv_addr(false, PORT);
    let srv6 = pair.srv_addr(true, PORT);
    let t0 = std::time::Instant::now();
    pair.in_client(move || {
        // Sockets are created on this (client-namespace) thread and moved to workers.
        let mut workers = Vec::new();
        for k in 0..8 {
            let server = if k % 2 == 0 { srv4 } else { srv6 };
            let proto = if k % 4 < 2 { Proto::Udp } else { Proto::Tcp };
            let mut c = RpcClient::new(proto, server, SrcPort::High).unwrap();
            workers.push(std::thread::spawn(move || {
                for i in 0..250 {
                    let path = format!("/srv/a/w{k}/{i}");
                    let (st, ok) = c.mnt3(&path);
                    assert_eq!(st, status::OK, "{proto:?} {path}");
                    assert_eq!(ok.unwrap().0, synthetic_handle(&path), "{path}");
                }
            }));
        }
        for w in workers {
            w.join().unwrap();
        }
    });
    assert!(
        t0.elapsed().as_secs() < 30,
        "2000 MNTs took {:?}",
        t0.elapsed()
    );
}

/// A burst of MNTs from many source addresses and paths stops at the mount list's caps:
/// every MNT is still answered OK, DUMP lists exactly the caps' worth, and stats counts
/// what was refused.
#[test]
fn mount_list_stops_at_its_caps() {
    let Some(pair) = NetPair::new("mount_list_stops_at_its_caps") else {
        return;
    };
    let n = pair.n;
    let exports = pair.write_file("exports", "/srv/burst *(rw,insecure)\n");
    let mut opts = DaemonOpts::new(exports);
    opts.extra
        .extend(["--max-mounts-per-host", "3", "--max-mounts", "10"].map(String::from));
    // Eight client hosts, each mounting five directories: 40 MNTs, of which 10 fit.
    let hosts: Vec<std::net::IpAddr> = (0..8u8)
        .map(|h| format!("10.77.{n}.{}", 100 + h).parse().unwrap())
        .collect();
    for h in &hosts {
        pair.add_cli_addr(&format!("{h}/24"));
    }
    let d = pair.start_daemon(&opts);
    let server = pair.srv_addr(false, PORT);
    let dump = pair.in_client(move || {
        for h in &hosts {
            let mut cl = RpcClient::Udp(
                UdpClient::bind_to(server, std::net::SocketAddr::new(*h, 0)).unwrap(),
            );
            for dir in 0..5 {
                let path = format!("/srv/burst/d{dir}");
                assert_eq!(
                    cl.mnt3(&path).0,
                    status::OK,
                    "MNT {path} from {h} is answered"
                );
            }
        }
        let mut tcp = RpcClient::new(Proto::Tcp, server, SrcPort::High).unwrap();
        tcp.dump(3)
    });
    assert_eq!(dump.len(), 10, "DUMP holds the total cap's worth: {dump:?}");
    let mut per_host = std::collections::BTreeMap::<String, usize>::new();
    for (host, _) in &dump {
        *per_host.entry(host.clone()).or_default() += 1;
    }
    assert!(
        per_host.values().all(|&k| k <= 3),
        "no host over its cap: {per_host:?}"
    );
    let report = d.stats_json();
    let counter = |name: &str| {
        report["mount_list"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r[0] == name))
            .and_then(|r| r[1].as_u64())
            .unwrap_or_else(|| panic!("no mount_list counter {name} in {report}"))
    };
    assert_eq!(report["mount_list_entries"].as_u64(), Some(10));
    // Hosts 0-2 fill their 3 and are refused 2 each by the per-host cap; host 3's first
    // MNT fills the total, and the 24 MNTs after it meet the full list.
    assert_eq!(counter("refused_host_cap"), 6);
    assert_eq!(counter("refused_total_cap"), 24);
    assert!(
        d.stderr().contains("mount list full"),
        "the cap is logged with how to raise it"
    );
}

/// UDP is no amplifier: with 300 exports, an EXPORT or DUMP over UDP from a source outside
/// --trusted-networks gets at most twice its call's bytes (a valid, shorter list); the
/// same over TCP, and showmount -e (TCP first), get the whole list; a trusted source gets
/// the whole list over UDP too (up to the datagram limit).
#[test]
fn udp_lists_are_no_amplifier() {
    let Some(pair) = NetPair::new("udp_lists_are_no_amplifier") else {
        return;
    };
    let n = pair.n;
    let mut text = String::new();
    let mut want = Vec::new();
    for i in 0..300 {
        let dir = format!("/srv/amp/{i:03}");
        writeln!(text, "{dir} *(ro,insecure)").unwrap();
        want.push((dir, vec!["*".to_string()]));
    }
    let exports = pair.write_file("exports", &text);
    let trusted: std::net::IpAddr = format!("10.77.{n}.50").parse().unwrap();
    pair.add_cli_addr(&format!("{trusted}/24"));
    let mut opts = DaemonOpts::new(exports);
    opts.untrusted = true;
    opts.rpcbind = true;
    opts.extra
        .extend(["--trusted-networks".to_string(), format!("{trusted}/32")]);
    let d = pair.start_daemon(&opts);
    let server = pair.srv_addr(false, PORT);
    let srv_ip = server.ip().to_string();
    let showmount = pair.run_client(&["showmount", "-e", &srv_ip]);
    assert_eq!(
        showmount
            .stdout
            .lines()
            .filter(|l| l.starts_with("/srv/amp/"))
            .count(),
        300,
        "showmount -e gets the whole list over TCP: {}",
        showmount.stdout
    );
    pair.in_client(move || {
        // A mount list worth listing: 100 entries, ~4 KB of DUMP.
        let mut tcp = RpcClient::new(Proto::Tcp, server, SrcPort::High).unwrap();
        for (dir, _) in &want[..100] {
            assert_eq!(tcp.mnt3(dir).0, status::OK);
        }
        for (proc_, name) in [(procs::EXPORT, "EXPORT"), (procs::DUMP, "DUMP")] {
            let call = Call::mount(3, proc_);
            let call_len = call.encode().len();
            let untrusted = UdpClient::new(server, SrcPort::High).unwrap();
            let r = untrusted.call(&call).unwrap();
            assert!(
                r.raw.len() <= 2 * call_len,
                "{name}: {} reply bytes for a {call_len}-byte call",
                r.raw.len()
            );
            let from_trusted =
                UdpClient::bind_to(server, std::net::SocketAddr::new(trusted, 0)).unwrap();
            let whole = from_trusted.call(&call).unwrap();
            if proc_ == procs::EXPORT {
                let cut = strict_exports(r.success());
                assert!(
                    cut.len() < 300 && cut[..] == want[..cut.len()],
                    "{name}: a prefix"
                );
                // 300 entries are ~10.8 KB: a trusted source gets what one datagram holds.
                let most = strict_exports(whole.success());
                assert!(
                    most.len() > cut.len() && most[..] == want[..most.len()],
                    "trusted: {} entries, a prefix longer than the untrusted {}",
                    most.len(),
                    cut.len()
                );
                assert!(whole.raw.len() > 8000 && whole.raw.len() <= 8800);
                let all = tcp.exports(3, procs::EXPORT);
                assert!(all == want, "TCP: the whole list ({} of 300)", all.len());
            } else {
                let cut = parse_mountlist(r.success()).unwrap();
                assert!(cut.len() < 100, "{name}: cut to the budget");
                let all = parse_mountlist(whole.success()).unwrap();
                assert_eq!(all.len(), 100, "trusted: the whole mount list");
            }
        }
    });
    let truncated = d.stats_json()["kernel"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r[0] == "udp_truncated"))
        .and_then(|r| r[1].as_u64())
        .unwrap_or(0);
    let afxdp_cut: u64 = d.stats_json()["xdp"]["queues"]
        .as_array()
        .map(|qs| qs.iter().filter_map(|q| q["truncated"].as_u64()).sum())
        .unwrap_or(0);
    assert!(truncated + afxdp_cut >= 1, "the cut is counted");
}
