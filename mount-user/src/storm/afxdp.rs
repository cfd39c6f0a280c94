//! storm's AF_XDP transport: calls leave as hand-built Ethernet frames on an AF_XDP TX
//! ring, replies come back through storm's own XDP program (the project's program with
//! `match_source` set: UDP datagrams *from* the target's port) into AF_XDP RX rings.
//! The kernel's UDP stack is bypassed in both directions, so the generator costs less per
//! call than the server it measures.
//!
//! Set-up: the route to the target gives the source address (and the gateway, if any);
//! one kernel UDP socket per client reserves its source port (and keeps other programs
//! off it) and the first one sends a NULL call the ordinary way, which makes the kernel
//! resolve the next hop's MAC address; that address is then read from the neighbour table
//! (`ip neigh`). Then the program is attached steering nothing, one socket per rx queue is
//! bound and registered, and only then are replies steered.
//!
//! Per call: copy a precomputed frame (~100-200 bytes) into a UMEM chunk, patch the source
//! port and xid, finish the UDP checksum from a precomputed partial sum (a few additions).
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use super::engine::Transport;
use super::socket::{ppoll, source_for};
use crate::afxdp::xsk::{self, BindMode, Xsk, FRAMES, FRAME_SIZE, RING_SIZE};
use crate::ebpf::{XdpAttachment, XdpMode};
use crate::packet::{self, checksum, Addressing, IpPair, MacAddr, UDP_HDR_LEN};

/// What to open.
#[derive(Debug, Clone)]
pub struct AfxdpConfig {
    /// Interface towards the target.
    pub iface: String,
    /// Native or generic XDP.
    pub mode: XdpMode,
    /// The MOUNT server.
    pub target: SocketAddr,
    /// Simulated clients (source ports).
    pub clients: u32,
    /// Source addresses (empty: the route's).
    pub sources: Vec<IpAddr>,
    /// RPC call templates (xid 0).
    pub messages: Vec<Vec<u8>>,
}

/// A precomputed call frame.
struct Frame {
    bytes: Vec<u8>,
    /// One's-complement sum of the UDP pseudo-header and segment with source port, xid
    /// and checksum zero: adding port and xid and folding gives the checksum.
    partial: u64,
    udp: usize,
    payload: usize,
}

/// One AF_XDP socket and its frame bookkeeping.
struct Queue {
    xsk: Xsk,
    free: Vec<u64>,
}

/// The AF_XDP transport (see the module docs).
pub struct AfxdpIo {
    queues: Vec<Queue>,
    pfds: Vec<libc::pollfd>,
    /// `frames[source][template]`.
    frames: Vec<Vec<Frame>>,
    /// Client → (source index, source port).
    clients: Vec<(usize, u16)>,
    /// Destination port → client, `u32::MAX` for ports that are not ours.
    port_to_client: Vec<u32>,
    target: SocketAddr,
    pending: Vec<(u32, u16, u32)>,
    send_errors: u64,
    foreign: u64,
    info: serde_json::Value,
    sources: Vec<IpAddr>,
    // Dropped last: the program detaches, then the reserved ports are released.
    attachment: XdpAttachment,
    _reserved: Vec<UdpSocket>,
}

// SAFETY-free: every field is Send (Xsk declares it; the attachment owns fds and maps).

fn run_ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The word after `key` in `text` (`ip` output is `key value` pairs).
fn word_after<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next();
        }
    }
    None
}

/// `ip route get TARGET` → (device, preferred source, gateway).
pub fn parse_route(text: &str) -> (Option<String>, Option<IpAddr>, Option<IpAddr>) {
    (
        word_after(text, "dev").map(str::to_owned),
        word_after(text, "src").and_then(|s| s.parse().ok()),
        word_after(text, "via").and_then(|s| s.parse().ok()),
    )
}

/// `aa:bb:cc:dd:ee:ff` → MAC.
pub fn parse_mac(text: &str) -> Option<MacAddr> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddr(mac))
}

/// The `lladdr` of a usable `ip neigh show` line.
pub fn parse_neigh(text: &str) -> Option<MacAddr> {
    text.lines()
        .filter(|l| !l.contains("FAILED") && !l.contains("INCOMPLETE"))
        .find_map(|l| word_after(l, "lladdr").and_then(parse_mac))
}

fn if_index(iface: &str) -> anyhow::Result<u32> {
    let name =
        std::ffi::CString::new(iface).map_err(|_| anyhow!("bad interface name {iface:?}"))?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no interface named {iface}");
    }
    Ok(index)
}

fn read_sys(iface: &str, file: &str) -> anyhow::Result<String> {
    let path = format!("/sys/class/net/{iface}/{file}");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_owned())
}

/// Sends a NULL call through the kernel (so it resolves the next hop) and waits briefly
/// for the reply.
fn prime(sock: &UdpSocket, target: SocketAddr) -> bool {
    let mut call = [0u8; 64];
    let Ok(n) = crate::rpc::encode_call(
        &mut call,
        0x5354_4f52,
        crate::mount::MOUNT_PROGRAM,
        3,
        0,
        &crate::rpc::Credential::None,
        &[],
    ) else {
        return false;
    };
    if sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 512];
    for _ in 0..3 {
        if sock.send_to(&call[..n], target).is_err() {
            continue;
        }
        if let Ok((_, from)) = sock.recv_from(&mut buf) {
            if from == target {
                return true;
            }
        }
    }
    false
}

/// The next hop's MAC from the neighbour table, waiting up to a second for resolution.
fn neighbour_mac(hop: IpAddr, iface: &str) -> anyhow::Result<MacAddr> {
    let hop_text = hop.to_string();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let out = run_ip(&["neigh", "show", "to", &hop_text, "dev", iface])?;
        if let Some(mac) = parse_neigh(&out) {
            return Ok(mac);
        }
        if Instant::now() > deadline {
            bail!("no neighbour entry for {hop} on {iface} (is the target reachable there?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds the frame of `message` from `src` (port 0, xid 0) to `target` via `dst_mac`.
fn build_frame(
    message: &[u8],
    src: IpAddr,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    target: SocketAddr,
    mtu: usize,
) -> anyhow::Result<Frame> {
    let ips = match (target.ip(), src) {
        // `finish_reply` addresses the frame back to the "request's" sender: describe
        // the target as that sender.
        (IpAddr::V4(t), IpAddr::V4(s)) => IpPair::V4 { src: t, dst: s },
        (IpAddr::V6(t), IpAddr::V6(s)) => IpPair::V6 { src: t, dst: s },
        _ => bail!("source {src} and target {target} are not of the same family"),
    };
    let from_target = Addressing {
        src_mac: dst_mac,
        dst_mac: src_mac,
        ips,
        src_port: target.port(),
        dst_port: 0,
    };
    let payload = packet::reply_payload_offset(&ips);
    let mut bytes = vec![0u8; payload + message.len()];
    bytes[payload..].copy_from_slice(message);
    let len = packet::finish_reply(&mut bytes, &from_target, message.len(), mtu)
        .map_err(|e| anyhow!("a call frame does not fit: {e}"))?;
    bytes.truncate(len);
    let udp = payload - UDP_HDR_LEN;
    // Partial sum: pseudo-header + segment with checksum, source port and xid at zero
    // (they are zero in `bytes` except the checksum).
    bytes[udp + 6..udp + 8].fill(0);
    let mut acc = match ips {
        IpPair::V4 { src: t, dst: s } => checksum::sum(&t.octets(), checksum::sum(&s.octets(), 0)),
        IpPair::V6 { src: t, dst: s } => checksum::sum(&t.octets(), checksum::sum(&s.octets(), 0)),
    };
    acc += u64::from(packet::IPPROTO_UDP) + (bytes.len() - udp) as u64;
    let partial = checksum::sum(&bytes[udp..], acc);
    Ok(Frame {
        bytes,
        partial,
        udp,
        payload,
    })
}

impl AfxdpIo {
    /// Resolves addresses, reserves ports, attaches the program and binds the sockets.
    pub fn open(cfg: &AfxdpConfig) -> anyhow::Result<AfxdpIo> {
        let iface = cfg.iface.as_str();
        let ifindex = if_index(iface)?;
        let route = run_ip(&["route", "get", &cfg.target.ip().to_string()])?;
        let (dev, route_src, via) = parse_route(&route);
        if dev.as_deref() != Some(iface) {
            tracing::warn!(
                route = route.trim(),
                iface,
                "the route to the target does not leave through --iface"
            );
        }
        let sources = if cfg.sources.is_empty() {
            vec![route_src.ok_or_else(|| anyhow!("no source address in `ip route get`: {route}"))?]
        } else {
            cfg.sources.clone()
        };
        let src_mac = parse_mac(&read_sys(iface, "address")?)
            .ok_or_else(|| anyhow!("cannot read the MAC address of {iface}"))?;
        let mtu: usize = read_sys(iface, "mtu")?
            .parse()
            .with_context(|| format!("MTU of {iface}"))?;

        // Reserve one port per client (the kernel picks free ones).
        let mut reserved = Vec::with_capacity(cfg.clients as usize);
        let mut clients = Vec::with_capacity(cfg.clients as usize);
        let mut port_to_client = vec![u32::MAX; 1 << 16];
        for c in 0..cfg.clients as usize {
            let src = source_for(c, &sources, &cfg.target);
            let sock = UdpSocket::bind(SocketAddr::new(src, 0))
                .with_context(|| format!("reserving a UDP port on {src}"))?;
            let port = sock.local_addr()?.port();
            port_to_client[usize::from(port)] = c as u32;
            clients.push((c % sources.len(), port));
            reserved.push(sock);
        }
        if !prime(&reserved[0], cfg.target) {
            tracing::warn!(target = %cfg.target, "no reply to the priming NULL call through the kernel");
        }
        let dst_mac = neighbour_mac(via.unwrap_or(cfg.target.ip()), iface)?;

        let frames = sources
            .iter()
            .map(|&s| {
                cfg.messages
                    .iter()
                    .map(|m| build_frame(m, s, src_mac, dst_mac, cfg.target, mtu))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .collect::<anyhow::Result<Vec<_>>>()?;

        let queue_count = crate::afxdp::rx_queue_count(iface)?;
        let mut attachment =
            XdpAttachment::attach_with(iface, cfg.mode, mount_ebpf::Config::from_source_port(0))?;
        let mut queues = Vec::with_capacity(queue_count as usize);
        for q in 0..queue_count {
            let xsk = Xsk::open(ifindex, q, cfg.mode == XdpMode::Native)
                .map_err(|e| anyhow!("opening the AF_XDP socket of {iface} queue {q}: {e}"))?;
            attachment.register_socket(q, &*xsk.fd())?;
            let mut queue = Queue {
                xsk,
                free: (0..u64::from(FRAMES))
                    .map(|i| i * FRAME_SIZE as u64)
                    .collect(),
            };
            // Half the frames wait for replies, half carry calls.
            refill(&mut queue, RING_SIZE);
            queues.push(queue);
        }
        attachment.set_port(cfg.target.port())?;
        let bind_mode = queues
            .first()
            .map(|q| q.xsk.mode().as_str())
            .unwrap_or("none");
        tracing::info!(
            iface,
            xdp = cfg.mode.as_str(),
            bind = bind_mode,
            queues = queue_count,
            dst_mac = ?dst_mac.0,
            "storm AF_XDP path ready"
        );
        let info = serde_json::json!({
            "iface": iface,
            "xdp_mode": cfg.mode.as_str(),
            "bind_mode": bind_mode,
            "queues": queue_count,
            "next_hop_mac": format_mac(dst_mac),
            "source_mac": format_mac(src_mac),
        });
        let pfds = queues
            .iter()
            .map(|q| libc::pollfd {
                fd: q.xsk.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Ok(AfxdpIo {
            queues,
            pfds,
            frames,
            clients,
            port_to_client,
            target: cfg.target,
            pending: Vec::with_capacity(FRAMES as usize),
            send_errors: 0,
            foreign: 0,
            info,
            sources,
            attachment,
            _reserved: reserved,
        })
    }

    /// The source addresses in use.
    pub fn sources(&self) -> &[IpAddr] {
        &self.sources
    }
}

fn format_mac(m: MacAddr) -> String {
    m.0.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Free frames to the fill ring, at most `max`.
fn refill(q: &mut Queue, max: u32) {
    let want = (q.free.len() as u32).min(max);
    let room = q.xsk.fill.free(want).min(want);
    for _ in 0..room {
        if let Some(addr) = q.free.pop() {
            q.xsk.fill.push(addr);
        }
    }
    if room > 0 {
        q.xsk.fill.commit();
        if q.xsk.fill.needs_wakeup() {
            q.xsk.kick_fill();
        }
    }
}

/// Completed TX frames back to the free list.
fn reclaim(q: &mut Queue) {
    let n = q.xsk.completion.available(RING_SIZE);
    for _ in 0..n {
        let addr = q.xsk.completion.pop();
        q.free.push(addr - addr % FRAME_SIZE as u64);
    }
    if n > 0 {
        q.xsk.completion.release();
    }
}

fn kick(q: &mut Queue) -> io::Result<()> {
    let r = q.xsk.kick_tx();
    reclaim(q);
    r
}

impl Transport for AfxdpIo {
    fn queue(&mut self, client: u32, template: u16, xid: u32) {
        self.pending.push((client, template, xid));
    }

    fn flush(&mut self) {
        let q = &mut self.queues[0];
        reclaim(q);
        // Keep half the frames for the fill ring's sake only when RX is starving; TX
        // takes what is free, bounded by the ring.
        let room = q.xsk.tx.free(self.pending.len() as u32);
        let n = (self.pending.len() as u32)
            .min(room)
            .min(q.free.len() as u32) as usize;
        for &(client, template, xid) in &self.pending[..n] {
            let Some(addr) = q.free.pop() else { break };
            let (src, port) = self.clients[client as usize];
            let f = &self.frames[src][usize::from(template)];
            let Some(chunk) = q.xsk.frame_mut(addr) else {
                self.send_errors += 1;
                continue;
            };
            let len = f.bytes.len();
            let out = &mut chunk[..len];
            out.copy_from_slice(&f.bytes);
            out[f.udp..f.udp + 2].copy_from_slice(&port.to_be_bytes());
            out[f.payload..f.payload + 4].copy_from_slice(&xid.to_be_bytes());
            let acc = f.partial + u64::from(port) + u64::from(xid >> 16) + u64::from(xid & 0xffff);
            let mut sum = !checksum::fold(acc);
            if sum == 0 {
                sum = 0xffff;
            }
            out[f.udp + 6..f.udp + 8].copy_from_slice(&sum.to_be_bytes());
            q.xsk.tx.push(libc::xdp_desc {
                addr,
                len: len as u32,
                options: 0,
            });
        }
        if n > 0 {
            q.xsk.tx.commit();
            self.pending.drain(..n);
        }
        match q.xsk.mode() {
            BindMode::Copy => {
                // Copy mode sends at most 32 descriptors per kick.
                for _ in 0..(RING_SIZE / 32 + 2) {
                    if q.xsk.tx.pending() == 0 {
                        break;
                    }
                    if kick(q).is_err() {
                        self.send_errors += 1;
                        break;
                    }
                }
            }
            BindMode::ZeroCopy => {
                if q.xsk.tx.pending() > 0 && q.xsk.tx.needs_wakeup() {
                    let _ = kick(q);
                }
            }
        }
    }

    fn recv(
        &mut self,
        wait: Duration,
        sink: &mut dyn FnMut(u32, &[u8], bool),
    ) -> anyhow::Result<()> {
        let mut got = 0;
        for round in 0..2 {
            for q in &mut self.queues {
                let ready = q.xsk.rx.available(RING_SIZE);
                for _ in 0..ready {
                    let desc = q.xsk.rx.pop();
                    let base = desc.addr - desc.addr % FRAME_SIZE as u64;
                    if let Some(chunk) = q.xsk.frame_mut(desc.addr) {
                        let frame = &chunk[..(desc.len as usize).min(chunk.len())];
                        match packet::parse(frame) {
                            Ok(udp) if udp.addressing.source() == self.target => {
                                let client =
                                    self.port_to_client[usize::from(udp.addressing.dst_port)];
                                if client == u32::MAX {
                                    self.foreign += 1;
                                } else {
                                    sink(client, udp.payload(frame), false);
                                }
                            }
                            _ => self.foreign += 1,
                        }
                    }
                    q.free.push(base);
                }
                if ready > 0 {
                    q.xsk.rx.release();
                    got += ready;
                }
                refill(q, RING_SIZE);
            }
            if got > 0 || round == 1 || wait.is_zero() {
                break;
            }
            for p in &mut self.pfds {
                p.revents = 0;
            }
            ppoll(&mut self.pfds, wait)?;
        }
        Ok(())
    }

    fn send_errors(&self) -> u64 {
        self.send_errors
    }

    fn report(&self) -> Option<serde_json::Value> {
        let mut info = self.info.clone();
        info["foreign_frames"] = self.foreign.into();
        info["xsk"] = self
            .queues
            .iter()
            .map(|q| {
                xsk::statistics(q.xsk.fd().as_raw_fd())
                    .ok()
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or_default()
            })
            .collect();
        info["xdp_program"] = match self.attachment.counters() {
            Ok(c) => c
                .iter()
                .map(|(k, v)| (k.name().to_owned(), serde_json::Value::from(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            Err(_) => serde_json::Value::Null,
        };
        Some(info)
    }
}

impl Drop for AfxdpIo {
    fn drop(&mut self) {
        // Stop steering before the sockets close: late replies go to the kernel (and
        // the reserved ports), not to a socket being torn down.
        if let Err(e) = self.attachment.set_port(0) {
            tracing::debug!("{e:#}");
        }
        tracing::debug!(foreign = self.foreign, "storm AF_XDP path closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_route_and_neigh_output() {
        let (dev, src, via) =
            parse_route("10.233.1.1 dev xaf-cli src 10.233.1.2 uid 0 \n    cache \n");
        assert_eq!(dev.as_deref(), Some("xaf-cli"));
        assert_eq!(src, Some("10.233.1.2".parse().unwrap()));
        assert_eq!(via, None);
        let (_, _, via) = parse_route("8.8.8.8 via 192.168.1.1 dev eth0 src 192.168.1.5 uid 0");
        assert_eq!(via, Some("192.168.1.1".parse().unwrap()));
        assert_eq!(
            parse_neigh("10.233.1.1 lladdr 02:aa:bb:cc:dd:0e REACHABLE\n"),
            Some(MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e]))
        );
        assert_eq!(parse_neigh("10.233.1.1  INCOMPLETE\n"), None);
        assert_eq!(parse_neigh(""), None);
        assert_eq!(parse_mac("02:aa:bb:cc:dd"), None);
        assert_eq!(parse_mac("02:aa:bb:cc:dd:ee:ff"), None);
    }

    #[test]
    fn frames_parse_back_with_valid_checksums_after_patching() {
        for (src, target) in [("10.1.0.2", "10.1.0.1:644"), ("fd00::2", "[fd00::1]:20048")] {
            let src: IpAddr = src.parse().unwrap();
            let target: SocketAddr = target.parse().unwrap();
            let msg = vec![0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3];
            let f = build_frame(&msg, src, MacAddr([2; 6]), MacAddr([4; 6]), target, 1500).unwrap();
            let mut out = f.bytes.clone();
            let (port, xid) = (40_001u16, 0xfedc_ba98u32);
            out[f.udp..f.udp + 2].copy_from_slice(&port.to_be_bytes());
            out[f.payload..f.payload + 4].copy_from_slice(&xid.to_be_bytes());
            let acc = f.partial + u64::from(port) + u64::from(xid >> 16) + u64::from(xid & 0xffff);
            let sum = !checksum::fold(acc);
            out[f.udp + 6..f.udp + 8].copy_from_slice(&sum.to_be_bytes());
            let parsed = packet::parse(&out).unwrap();
            assert_eq!(parsed.addressing.destination(), target);
            assert_eq!(parsed.addressing.source(), SocketAddr::new(src, port));
            assert_eq!(parsed.addressing.dst_mac, MacAddr([4; 6]));
            assert_eq!(&parsed.payload(&out)[..4], &xid.to_be_bytes());
            assert_eq!(&parsed.payload(&out)[4..], &msg[4..]);
            // The whole-segment checksum recomputed from scratch agrees.
            let mut zeroed = out.clone();
            zeroed[f.udp + 6..f.udp + 8].fill(0);
            let full = match (src, target.ip()) {
                (IpAddr::V4(s), IpAddr::V4(t)) => checksum::udp_ipv4(s, t, &zeroed[f.udp..]),
                (IpAddr::V6(s), IpAddr::V6(t)) => checksum::udp_ipv6(s, t, &zeroed[f.udp..]),
                _ => unreachable!(),
            };
            assert_eq!(full, sum, "{src}");
        }
    }
}
