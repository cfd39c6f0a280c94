//! A small AF_XDP ring layer over libc: one socket, its own UMEM, the four rings.
//!
//! Why hand-written rather than a crate (decided for this project, see the module doc of
//! `mount_user::afxdp` for the whole rationale):
//! - `xdpilone` 1.3 works here and has a good low-level API, but is EUPL-1.2 (copyleft);
//!   the project is MIT OR Apache-2.0 and wants permissive dependencies only.
//! - `xdp` 0.8 is Apache-2.0 OR MIT, but does not map the rings' `flags` word, so the
//!   `need_wakeup` protocol cannot be honoured (every batch would pay a syscall), and its
//!   `Umem` keeps frames in its own `VecDeque`/`Packet` bookkeeping that our in-place
//!   reply (RX frame becomes the TX frame) does not fit.
//! - The kernel ABI is small and stable (`linux/if_xdp.h`): mmap of four SPSC rings plus
//!   a few socket options, about 300 lines, and this way the two platform pitfalls
//!   (cached consumer index, copy-mode TX progressing only inside `sendto`) are handled
//!   where they arise.
//!
//! Everything here is single-threaded by construction: an [`Xsk`] is owned by one worker
//! thread. Only the socket fd is shared (for statistics and the XSKMAP), via `Arc<OwnedFd>`.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

pub use crate::ring::{Consumer, Producer};
use crate::ring::{Mapping, RingMap};

/// Size of one UMEM chunk: a page, so a frame never straddles pages and MTUs up to
/// about 3.5 KB (the veth native-XDP limit) fit.
pub const FRAME_SIZE: usize = 4096;
/// UMEM chunks per socket (16 MiB of pinned memory per queue).
pub const FRAMES: u32 = 4096;
/// Entries of each of the four rings (power of two; fill + TX in flight <= FRAMES).
pub const RING_SIZE: u32 = 2048;

/// How the socket ended up bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// The driver DMAs straight into our UMEM.
    ZeroCopy,
    /// The kernel copies frames between its buffers and our UMEM.
    Copy,
}

impl BindMode {
    /// Lower-case name for logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        }
    }
}

/// `getsockopt(XDP_STATISTICS)` of one socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XskStatistics {
    /// Frames dropped for reasons other than a full RX ring or empty fill ring.
    pub rx_dropped: u64,
    /// RX descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel found invalid.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

/// Reads the statistics of the AF_XDP socket `fd`.
pub fn statistics(fd: RawFd) -> io::Result<XskStatistics> {
    // SAFETY: all-zero is a valid xdp_statistics.
    let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: `s` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&raw mut s).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(XskStatistics {
        rx_dropped: s.rx_dropped,
        rx_invalid_descs: s.rx_invalid_descs,
        tx_invalid_descs: s.tx_invalid_descs,
        rx_ring_full: s.rx_ring_full,
        rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: s.tx_ring_empty_descs,
    })
}

/// An AF_XDP socket bound to one queue, with its own UMEM and rings.
///
/// Field order is drop order: rings are unmapped before the socket closes, and the
/// UMEM is unmapped last.
pub struct Xsk {
    /// Frames the kernel may fill with received packets.
    pub fill: Producer<u64>,
    /// Frames the kernel has finished sending.
    pub completion: Consumer<u64>,
    /// Received frames.
    pub rx: Consumer<libc::xdp_desc>,
    /// Frames to send.
    pub tx: Producer<libc::xdp_desc>,
    fd: Arc<OwnedFd>,
    umem: Mapping,
    mode: BindMode,
}

// SAFETY: the raw pointers refer to mappings owned by the value; moving it to the worker
// thread that then owns it alone is sound.
unsafe impl Send for Xsk {}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` is valid for reads of its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// `linux/if_xdp.h` (6.17), not in libc yet.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// The kernel's copy-mode TX budget per sendto() or poll() without it (`TX_BATCH_SIZE`).
pub const DEFAULT_TX_BUDGET: u32 = 32;

/// `asm-generic/socket.h` (x86, arm, riscv; not every libc target exports them).
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// An int `SOL_SOCKET` option.
fn socket_option(fd: RawFd, name: libc::c_int, value: libc::c_int, what: &str) -> io::Result<()> {
    // SAFETY: `value` is valid for reads of its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

fn bind(fd: RawFd, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags | libc::XDP_USE_NEED_WAKEUP,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: a valid sockaddr_xdp of the size given.
    let rc = unsafe {
        libc::bind(
            fd,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Xsk {
    /// Creates a socket with a fresh UMEM and binds it to `queue` of interface `ifindex`
    /// (in the calling thread's network namespace). With `try_zero_copy`, zero-copy is
    /// tried first and copy mode used when the driver refuses (veth: EOPNOTSUPP).
    pub fn open(ifindex: u32, queue: u32, try_zero_copy: bool) -> io::Result<Xsk> {
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("socket(AF_XDP): {e}")));
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mapping::new(FRAMES as usize * FRAME_SIZE, -1, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem.len as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg, "registering the UMEM")?;
        for (name, what) in [
            (libc::XDP_UMEM_FILL_RING, "fill ring size"),
            (libc::XDP_UMEM_COMPLETION_RING, "completion ring size"),
            (libc::XDP_RX_RING, "RX ring size"),
            (libc::XDP_TX_RING, "TX ring size"),
        ] {
            setsockopt(raw, name, &RING_SIZE, what)?;
        }
        // SAFETY: all-zero is a valid xdp_mmap_offsets.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&raw mut off).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let fill = Producer::new(RingMap::new(
            raw,
            &off.fr,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
        )?);
        let completion = Consumer::new(RingMap::new(
            raw,
            &off.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
        )?);
        let rx = Consumer::new(RingMap::new(raw, &off.rx, libc::XDP_PGOFF_RX_RING)?);
        let tx = Producer::new(RingMap::new(raw, &off.tx, libc::XDP_PGOFF_TX_RING)?);

        let mode = if try_zero_copy {
            match bind(raw, ifindex, queue, libc::XDP_ZEROCOPY) {
                Ok(()) => BindMode::ZeroCopy,
                Err(zc) => {
                    bind(raw, ifindex, queue, libc::XDP_COPY).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("binding to queue {queue}: zero-copy: {zc}; copy: {e}"),
                        )
                    })?;
                    tracing::info!(queue, reason = %zc, "AF_XDP zero-copy refused, using copy mode");
                    BindMode::Copy
                }
            }
        } else {
            bind(raw, ifindex, queue, libc::XDP_COPY).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("binding to queue {queue} (copy mode): {e}"),
                )
            })?;
            BindMode::Copy
        };
        Ok(Xsk {
            fill,
            completion,
            rx,
            tx,
            fd: Arc::new(fd),
            umem,
            mode,
        })
    }

    /// Zero-copy or copy mode.
    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// The socket, shared for statistics and XSKMAP registration.
    pub fn fd(&self) -> Arc<OwnedFd> {
        self.fd.clone()
    }

    /// The UMEM chunk holding `addr`, from `addr` to the chunk's end, or None when the
    /// address is outside the UMEM (a kernel bug; never trusted blindly).
    pub fn frame_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = (start / FRAME_SIZE + 1) * FRAME_SIZE;
        if end > self.umem.len {
            return None;
        }
        // SAFETY: inside the UMEM; the chunk is ours (received, not yet given back), and
        // the returned borrow of `self` prevents handing out a second one.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(start), end - start)
        })
    }

    /// Kicks the kernel to transmit: in copy mode TX only progresses inside sendto().
    /// Returns Err only for errors other than "busy, try again".
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: sendto with no data on our socket.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                Ok(())
            }
            _ => Err(e),
        }
    }

    /// Raises how many descriptors the kernel transmits per sendto() or poll() in copy
    /// mode (`XDP_MAX_TX_SKB_BUDGET`, Linux 6.17+; the default is 32). Err on kernels
    /// without it (ENOPROTOOPT) or out of range (32..=ring size).
    pub fn set_tx_budget(&self, budget: u32) -> io::Result<()> {
        setsockopt(
            self.fd.as_raw_fd(),
            XDP_MAX_TX_SKB_BUDGET,
            &budget,
            "XDP_MAX_TX_SKB_BUDGET",
        )
    }

    /// Turns on busy polling of the socket's NAPI instance: `SO_PREFER_BUSY_POLL`,
    /// `SO_BUSY_POLL` (µs) and `SO_BUSY_POLL_BUDGET` (packets per NAPI poll). From then on
    /// each [`busy_poll`](Self::busy_poll) (and sendto) runs the device's receive
    /// processing in the calling thread. Needs CAP_NET_ADMIN above the sysctl defaults.
    pub fn set_busy_poll(&self, usecs: u32, budget: u16) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        let int = |v: u32| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
        socket_option(fd, SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL")?;
        socket_option(fd, SO_BUSY_POLL, int(usecs), "SO_BUSY_POLL")?;
        socket_option(
            fd,
            SO_BUSY_POLL_BUDGET,
            int(u32::from(budget)),
            "SO_BUSY_POLL_BUDGET",
        )
    }

    /// One busy poll: a non-blocking recvfrom() in which the kernel runs the NAPI poll of
    /// the queue the socket receives from (after [`set_busy_poll`](Self::set_busy_poll);
    /// without it only the fill-ring wakeup of [`kick_fill`](Self::kick_fill)).
    pub fn busy_poll(&self) {
        self.kick_fill();
    }

    /// Wakes the kernel to refill from the fill ring (zero-copy drivers that asked).
    pub fn kick_fill(&self) {
        // SAFETY: recvfrom with no buffer on our socket.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Sleeps until a frame is ready to receive or `timeout_ms` passes; true when woken
    /// by a frame (or an error), false on timeout. In copy mode the kernel transmits
    /// pending TX descriptors (up to its TX budget) in poll() before it sleeps.
    pub fn wait_rx(&self, timeout_ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) != 0 }
    }
}
