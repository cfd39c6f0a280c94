//! A bounded side-by-side load measurement: MNT calls/s answered through AF_XDP (native
//! and generic XDP) against the kernel UDP path (`--xdp off`), printed, not asserted.
//!
//! Ignored by default (it takes a while and measures the machine, not correctness):
//!   cargo test --release -p mount-user --test afxdp_load -- --ignored --nocapture
//! Knobs (env): XMD_LOAD_SECS (per run, default 3), XMD_LOAD_ROUNDS (default 3),
//! XMD_LOAD_SOCKETS (client sockets = calls in flight, default 32).
//!
//! One server worker (pinned to core 1 when there are two), one generator thread
//! (pinned to core 0): on 2 shared vCPUs that keeps them from fighting. Variants are
//! interleaved over the rounds and medians are quoted (docs/platform.md).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[path = "support/afxdp_bed.rs"]
mod bed;

use bed::{call, privileged, xdr_string, Bed, SRV_IF};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Busy and total jiffies over all CPUs, from /proc/stat.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let total: u64 = cpu.iter().take(8).sum();
    let idle = cpu[3] + cpu[4];
    (total - idle, total)
}

/// utime + stime of process `pid` (all threads), in clock ticks.
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

struct Run {
    calls: u64,
    lost: u64,
    secs: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_call: f64,
    server_us_per_call: f64,
}

/// Closed loop: `sockets` connected UDP sockets, one MNT call in flight on each, for
/// `secs` seconds (and at most 10 M calls). Runs in the calling thread's namespace.
fn blast(to: SocketAddr, sockets: usize, secs: f64, server_pid: u32) -> Run {
    let any: SocketAddr = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .unwrap();
    let socks: Vec<UdpSocket> = (0..sockets)
        .map(|_| {
            let s = UdpSocket::bind(any).unwrap();
            s.connect(to).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let args = xdr_string("/srv/a");
    let mut msgs: Vec<Vec<u8>> = (0..sockets).map(|_| call(0, 3, 1, &args)).collect();
    let mut sent_at = vec![Instant::now(); sockets];
    let mut xid = vec![0u32; sockets];
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut pfds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut next_xid = 1u32;
    let mut lost = 0u64;
    let mut send = |i: usize, xid: &mut [u32], sent_at: &mut [Instant]| {
        next_xid = next_xid.wrapping_add(1);
        xid[i] = next_xid;
        msgs[i][..4].copy_from_slice(&next_xid.to_be_bytes());
        sent_at[i] = Instant::now();
        let _ = socks[i].send(&msgs[i]);
    };
    let (busy0, _) = cpu_jiffies();
    let server0 = process_ticks(server_pid);
    let start = Instant::now();
    for i in 0..sockets {
        send(i, &mut xid, &mut sent_at);
    }
    let mut buf = [0u8; 2048];
    while start.elapsed().as_secs_f64() < secs && lat.len() < 10_000_000 {
        // SAFETY: valid pollfd array.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 10) };
        for i in 0..sockets {
            if pfds[i].revents & libc::POLLIN != 0 {
                while let Ok(n) = socks[i].recv(&mut buf) {
                    if n >= 4 && buf[..4] == xid[i].to_be_bytes() {
                        lat.push(sent_at[i].elapsed().as_micros() as u32);
                        send(i, &mut xid, &mut sent_at);
                    }
                }
            } else if sent_at[i].elapsed() > Duration::from_millis(200) {
                lost += 1;
                send(i, &mut xid, &mut sent_at);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let (busy1, _) = cpu_jiffies();
    let server1 = process_ticks(server_pid);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |&v| f64::from(v))
    };
    let calls = lat.len() as u64;
    Run {
        calls,
        lost,
        secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        cpu_us_per_call: (busy1 - busy0) as f64 / hz * 1e6 / calls.max(1) as f64,
        server_us_per_call: (server1 - server0) as f64 / hz * 1e6 / calls.max(1) as f64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
#[ignore = "load measurement: run explicitly with --ignored --nocapture (root)"]
fn load_afxdp_vs_kernel() {
    if !privileged() {
        return;
    }
    let secs = env_or("XMD_LOAD_SECS", 3) as f64;
    let rounds = env_or("XMD_LOAD_ROUNDS", 3);
    let sockets = env_or("XMD_LOAD_SOCKETS", 32) as usize;
    let two_cpus = std::thread::available_parallelism().map_or(1, usize::from) >= 2;
    let bed = Bed::new("load", 9, 1);
    let exports = bed.write("exports", "/srv/a *(ro,insecure)\n");
    let e = exports.to_str().unwrap().to_owned();
    let worker_core = if two_cpus { "1" } else { "0" };
    let variants: [(&str, Vec<&str>); 3] = [
        ("off (kernel UDP)", vec!["--udp-workers", "1"]),
        (
            "native AF_XDP",
            vec![
                "--udp-workers",
                "1",
                "--iface",
                SRV_IF,
                "--xdp",
                "native",
                "--cores",
                worker_core,
            ],
        ),
        (
            "generic AF_XDP",
            vec![
                "--udp-workers",
                "1",
                "--iface",
                SRV_IF,
                "--xdp",
                "generic",
                "--cores",
                worker_core,
            ],
        ),
    ];
    let to = bed.srv_addr(false);
    let mut results: Vec<Vec<Run>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, (name, extra)) in variants.iter().enumerate() {
            let mut args = vec!["--exports", e.as_str()];
            args.extend(extra.iter().copied());
            let daemon = bed.daemon(&args);
            let pid = daemon.pid();
            let run = bed.in_client(|| {
                if two_cpus {
                    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
                }
                blast(to, sockets, 0.3, pid); // warm-up: neighbours, caches
                blast(to, sockets, secs, pid)
            });
            if std::env::var_os("XMD_LOAD_STATS").is_some() {
                println!("{}", daemon.stats_table());
            }
            drop(daemon);
            println!(
                "round {round} {name:<17} {:>9.0} calls/s  p50 {:>6.0} us  p99 {:>6.0} us  \
                 cpu {:>5.1} us/call  server {:>5.1} us/call  lost {}",
                run.calls as f64 / run.secs,
                run.p50_us,
                run.p99_us,
                run.cpu_us_per_call,
                run.server_us_per_call,
                run.lost
            );
            results[i].push(run);
        }
    }
    println!(
        "\nMNT v3 over UDP/IPv4, {sockets} calls in flight, {rounds} rounds x {secs} s, medians:"
    );
    println!(
        "{:<17} {:>10} {:>8} {:>8} {:>12} {:>15}",
        "variant", "calls/s", "p50 us", "p99 us", "cpu us/call", "server us/call"
    );
    for ((name, _), runs) in variants.iter().zip(&results) {
        println!(
            "{name:<17} {:>10.0} {:>8.0} {:>8.0} {:>12.1} {:>15.1}",
            median(runs.iter().map(|r| r.calls as f64 / r.secs).collect()),
            median(runs.iter().map(|r| r.p50_us).collect()),
            median(runs.iter().map(|r| r.p99_us).collect()),
            median(runs.iter().map(|r| r.cpu_us_per_call).collect()),
            median(runs.iter().map(|r| r.server_us_per_call).collect()),
        );
    }
    let total: u64 = results.iter().flatten().map(|r| r.calls).sum();
    assert!(total > 0, "no call answered at all");
}
