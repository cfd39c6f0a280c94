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
//! With forged sources (`--spoof-sources`) a frame is precomputed per forged address and
//! the calls take them in turn; replies to those addresses reach this host only if the
//! network routes them here, and are then caught like any others (the program matches
//! the server's source port, not our addresses).
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{anyhow, Context as _};

use mount_proto::packet;

use super::engine::Transport;
use super::socket::{ppoll, source_for};
use super::spoof::Cycle;
use mount_xdp::ebpf::{XdpAttachment, XdpMode};
use mount_xdp::xsk::{self, BindMode, Xsk, FRAMES, FRAME_SIZE, RING_SIZE};

mod frame;
mod setup;

use frame::{build_frame, Frame};
use setup::{format_mac, if_index, neighbour_mac, prime, read_sys, run_ip};
pub use setup::{parse_mac, parse_neigh, parse_route};

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
    /// Where calls come from.
    pub sources: Sources,
    /// RPC call templates (xid 0).
    pub messages: Vec<Vec<u8>>,
}

/// The source addresses of storm's calls.
#[derive(Debug, Clone)]
pub enum Sources {
    /// Addresses configured on this host: client `c` sends from `addrs[c % len]` (empty:
    /// the route's source address).
    Local(Vec<IpAddr>),
    /// Addresses configured nowhere (`--spoof-sources`): the calls leave from each in
    /// turn; the clients' ports are reserved on the route's source address.
    Forged(Vec<IpAddr>),
}

/// One AF_XDP socket and its frame bookkeeping.
struct Queue {
    xsk: Xsk,
    free: Vec<u64>,
    /// Frames received on this queue.
    rx: u64,
}

/// The AF_XDP transport (see the module docs).
pub struct AfxdpIo {
    queues: Vec<Queue>,
    pfds: Vec<libc::pollfd>,
    /// `frames[source][template]`.
    frames: Vec<Vec<Frame>>,
    /// Client → (source index, source port).
    clients: Vec<(usize, u16)>,
    /// Forged sources: the source index of each call in turn (None: the client's own).
    forged: Option<Cycle>,
    /// Destination port → client, `u32::MAX` for ports that are not ours.
    port_to_client: Vec<u32>,
    target: SocketAddr,
    /// Per queue, calls waiting for its TX ring: client `c` sends on queue
    /// `c % queues`, so a multi-queue server sees its load on every queue.
    pending: Vec<Vec<(u32, u16, u32)>>,
    send_errors: u64,
    foreign: u64,
    info: serde_json::Value,
    sources: Vec<IpAddr>,
    // Dropped last: the program detaches, then the reserved ports are released.
    attachment: XdpAttachment,
    _reserved: Vec<UdpSocket>,
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
        let route_src =
            || route_src.ok_or_else(|| anyhow!("no source address in `ip route get`: {route}"));
        // `local`: where the clients' ports are reserved; `sources`: what the frames carry.
        let (local, sources, forged) = match &cfg.sources {
            Sources::Local(addrs) if addrs.is_empty() => {
                let src = route_src()?;
                (vec![src], vec![src], None)
            }
            Sources::Local(addrs) => (addrs.clone(), addrs.clone(), None),
            Sources::Forged(addrs) => (vec![route_src()?], addrs.clone(), Some(addrs.len())),
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
            let src = source_for(c, &local, &cfg.target);
            let sock = UdpSocket::bind(SocketAddr::new(src, 0))
                .with_context(|| format!("reserving a UDP port on {src}"))?;
            let port = sock.local_addr()?.port();
            port_to_client[usize::from(port)] = c as u32;
            clients.push((c % local.len(), port));
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

        let queue_count = mount_xdp::rx_queue_count(iface)?;
        let mut attachment = XdpAttachment::attach_with(
            iface,
            cfg.mode,
            mount_ebpf::Config::from_source_port(0),
            mount_xdp::ebpf::SOURCES_UNUSED_ENTRIES,
        )?;
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
                rx: 0,
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
        let mut info = serde_json::json!({
            "iface": iface,
            "xdp_mode": cfg.mode.as_str(),
            "bind_mode": bind_mode,
            "queues": queue_count,
            "next_hop_mac": format_mac(dst_mac),
            "source_mac": format_mac(src_mac),
        });
        if let Some(n) = forged {
            info["forged_sources"] = n.into();
        }
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
            forged: forged.map(Cycle::new),
            port_to_client,
            target: cfg.target,
            pending: vec![Vec::with_capacity(FRAMES as usize); queue_count as usize],
            send_errors: 0,
            foreign: 0,
            info,
            sources: if forged.is_some() {
                Vec::new()
            } else {
                sources
            },
            attachment,
            _reserved: reserved,
        })
    }

    /// The configured source addresses the calls leave from (none when forged).
    pub fn sources(&self) -> &[IpAddr] {
        &self.sources
    }
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

/// Puts queue `q`'s pending calls on its TX ring (as far as frames and ring room go)
/// and gets them out.
fn flush_queue(
    q: &mut Queue,
    pending: &mut Vec<(u32, u16, u32)>,
    clients: &[(usize, u16)],
    forged: &mut Option<Cycle>,
    frames: &[Vec<Frame>],
    send_errors: &mut u64,
) {
    reclaim(q);
    let room = q.xsk.tx.free(pending.len() as u32);
    let n = (pending.len() as u32).min(room).min(q.free.len() as u32) as usize;
    for &(client, template, xid) in &pending[..n] {
        let Some(addr) = q.free.pop() else { break };
        let (own, port) = clients[client as usize];
        let src = forged.as_mut().map_or(own, Cycle::advance);
        let f = &frames[src][usize::from(template)];
        let Some(chunk) = q.xsk.frame_mut(addr) else {
            *send_errors += 1;
            continue;
        };
        let len = f.write(chunk, port, xid);
        q.xsk.tx.push(libc::xdp_desc {
            addr,
            len: len as u32,
            options: 0,
        });
    }
    if n > 0 {
        q.xsk.tx.commit();
        pending.drain(..n);
    }
    match q.xsk.mode() {
        BindMode::Copy => {
            // Copy mode sends at most 32 descriptors per kick.
            for _ in 0..(RING_SIZE / 32 + 2) {
                if q.xsk.tx.pending() == 0 {
                    break;
                }
                if kick(q).is_err() {
                    *send_errors += 1;
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

impl Transport for AfxdpIo {
    fn queue(&mut self, client: u32, template: u16, xid: u32) {
        let n = self.pending.len();
        self.pending[client as usize % n].push((client, template, xid));
    }

    fn flush(&mut self) {
        for (qi, q) in self.queues.iter_mut().enumerate() {
            let pending = &mut self.pending[qi];
            flush_queue(
                q,
                pending,
                &self.clients,
                &mut self.forged,
                &self.frames,
                &mut self.send_errors,
            );
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
                    q.rx += u64::from(ready);
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
        info["rx_per_queue"] = self.queues.iter().map(|q| q.rx).collect();
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
