//! A minimal AF_XDP socket (copy mode, one queue) written against the raw kernel ABI,
//! just enough for the smoke test to prove frames reach userspace and replies built by
//! `mount_user::packet` go back out. The daemon's worker will use a maintained crate.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const FRAME_SIZE: usize = 2048;
const FRAMES: usize = 64;
const RING: u32 = 32;

/// A single-producer/single-consumer ring shared with the kernel.
struct Ring {
    map: *mut u8,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    descs: *mut u8,
}

impl Ring {
    unsafe fn map(fd: RawFd, off: &libc::xdp_ring_offset, desc_size: usize, pgoff: u64) -> Ring {
        let map_len = off.desc as usize + RING as usize * desc_size;
        // SAFETY: maps the ring the kernel created for `fd` at `pgoff`; the length covers the
        // descriptors the offsets place after the producer and consumer words.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        assert_ne!(
            map,
            libc::MAP_FAILED,
            "mmap ring: {}",
            std::io::Error::last_os_error()
        );
        let map = map.cast::<u8>();
        // SAFETY: the kernel's offsets lie inside the mapping of `map_len` bytes.
        unsafe {
            Ring {
                map,
                map_len,
                producer: map.add(off.producer as usize).cast(),
                consumer: map.add(off.consumer as usize).cast(),
                descs: map.add(off.desc as usize),
            }
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: an aligned u32 inside the mapping, which lives as long as `self`; the
        // kernel accesses it atomically too.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as `producer`.
        unsafe { &*self.consumer }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `map`, which nothing references any more.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// A socket bound to one queue, with its own UMEM.
pub struct RawXsk {
    fd: OwnedFd,
    umem: *mut u8,
    _fill: Ring,
    rx: Ring,
    tx: Ring,
    _completion: Ring,
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) {
    // SAFETY: `value` is a live `T` of the size given; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {name}: {}",
        std::io::Error::last_os_error()
    );
}

impl RawXsk {
    /// Creates the socket in the calling thread's network namespace and binds it to
    /// `queue` of `ifname` in copy mode; half the frames go to the fill ring.
    pub fn bind(ifname: &str, queue: u32) -> RawXsk {
        // SAFETY: system calls on a socket created here, with pointers to live locals of
        // the sizes given; the fill ring writes stay inside its RING descriptors.
        unsafe {
            let raw = libc::socket(libc::AF_XDP, libc::SOCK_RAW, 0);
            assert!(
                raw >= 0,
                "socket(AF_XDP): {}",
                std::io::Error::last_os_error()
            );
            let fd = OwnedFd::from_raw_fd(raw);
            let umem = libc::mmap(
                std::ptr::null_mut(),
                FRAMES * FRAME_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(umem, libc::MAP_FAILED);
            let reg = libc::xdp_umem_reg {
                addr: umem as u64,
                len: (FRAMES * FRAME_SIZE) as u64,
                chunk_size: FRAME_SIZE as u32,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(raw, libc::XDP_UMEM_REG, &reg);
            for name in [
                libc::XDP_UMEM_FILL_RING,
                libc::XDP_UMEM_COMPLETION_RING,
                libc::XDP_RX_RING,
                libc::XDP_TX_RING,
            ] {
                setsockopt(raw, name, &RING);
            }
            let mut off: libc::xdp_mmap_offsets = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
            let rc = libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            );
            assert_eq!(rc, 0);
            let desc = std::mem::size_of::<libc::xdp_desc>();
            let rx = Ring::map(raw, &off.rx, desc, libc::XDP_PGOFF_RX_RING as u64);
            let tx = Ring::map(raw, &off.tx, desc, libc::XDP_PGOFF_TX_RING as u64);
            let fill = Ring::map(raw, &off.fr, 8, libc::XDP_UMEM_PGOFF_FILL_RING);
            let completion = Ring::map(raw, &off.cr, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING);

            let name = std::ffi::CString::new(ifname).unwrap();
            let ifindex = libc::if_nametoindex(name.as_ptr());
            assert_ne!(ifindex, 0, "no interface {ifname}");
            let addr = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: libc::XDP_COPY,
                sxdp_ifindex: ifindex,
                sxdp_queue_id: queue,
                sxdp_shared_umem_fd: 0,
            };
            let rc = libc::bind(
                raw,
                (&addr as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "bind AF_XDP: {}", std::io::Error::last_os_error());

            // Frames 0..RING receive; the rest are never used (replies reuse rx frames).
            let slots = fill.descs.cast::<u64>();
            for i in 0..RING as usize {
                *slots.add(i) = (i * FRAME_SIZE) as u64;
            }
            fill.producer().store(RING, Ordering::Release);

            RawXsk {
                fd,
                umem: umem.cast(),
                _fill: fill,
                rx,
                tx,
                _completion: completion,
            }
        }
    }

    /// Waits for one received frame; returns its UMEM address and length.
    pub fn recv(&self, timeout: Duration) -> Option<(u64, usize)> {
        let deadline = Instant::now() + timeout;
        loop {
            let cons = self.rx.consumer().load(Ordering::Relaxed);
            if self.rx.producer().load(Ordering::Acquire) != cons {
                // SAFETY: the kernel published this descriptor (producer moved past it)
                // and the index is reduced modulo the ring size.
                let d = unsafe {
                    &*self
                        .rx
                        .descs
                        .cast::<libc::xdp_desc>()
                        .add((cons % RING) as usize)
                };
                let got = (d.addr, d.len as usize);
                self.rx.consumer().store(cons + 1, Ordering::Release);
                return Some(got);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The UMEM chunk holding `addr`, from `addr` to the chunk's end.
    pub fn frame_mut(&mut self, addr: u64) -> &mut [u8] {
        let start = addr as usize;
        let end = (start / FRAME_SIZE + 1) * FRAME_SIZE;
        // SAFETY: the chunk lies inside the UMEM (an address the kernel handed back), and
        // `&mut self` makes this the only view of it.
        unsafe { std::slice::from_raw_parts_mut(self.umem.add(start), end - start) }
    }

    /// Queues `len` bytes at `addr` for transmission and kicks the kernel (copy mode
    /// only transmits inside sendto).
    pub fn send(&mut self, addr: u64, len: usize) {
        let prod = self.tx.producer().load(Ordering::Relaxed);
        // SAFETY: the slot at `prod` is ours until the producer index is published; the
        // index is reduced modulo the ring size.
        unsafe {
            *self
                .tx
                .descs
                .cast::<libc::xdp_desc>()
                .add((prod % RING) as usize) = libc::xdp_desc {
                addr,
                len: len as u32,
                options: 0,
            };
        }
        self.tx.producer().store(prod + 1, Ordering::Release);
        // EAGAIN/EBUSY only mean "kick again"; the caller's receive timeout catches a
        // frame that never left.
        for _ in 0..4 {
            // SAFETY: a zero-length sendto on our own socket, the AF_XDP "kick".
            unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
        }
    }
}

impl AsRawFd for RawXsk {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for RawXsk {
    fn drop(&mut self) {
        // SAFETY: unmaps the UMEM mapped in `bind`; the rings (dropped next) do not use it.
        unsafe { libc::munmap(self.umem.cast(), FRAMES * FRAME_SIZE) };
    }
}

// SAFETY: the raw pointers are to mappings owned by this value; it is used by one thread
// at a time.
unsafe impl Send for RawXsk {}
