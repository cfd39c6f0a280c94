//! The mmapped memory of an AF_XDP socket: the UMEM mapping and the four single-producer
//! single-consumer rings, with libxdp's cached-index discipline (`xsk_ring_prod`,
//! `xsk_ring_cons`). Single-threaded by construction, like the socket that owns them.
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::xsk::RING_SIZE;

/// An anonymous mapping, unmapped on drop.
pub(crate) struct Mapping {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset` (shared, populated), or anonymous memory when
    /// `fd` is negative.
    pub(crate) fn new(len: usize, fd: RawFd, offset: libc::off_t) -> io::Result<Mapping> {
        let (flags, fd) = if fd < 0 {
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
        } else {
            (libc::MAP_SHARED | libc::MAP_POPULATE, fd)
        };
        // SAFETY: a fresh mapping; the kernel validates fd and offset.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping created in `new`, no longer referenced.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One mmapped ring: shared producer/consumer/flags words and the descriptor array.
pub(crate) struct RingMap<T> {
    _map: Mapping,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
}

impl<T> RingMap<T> {
    /// Maps the ring at page offset `pgoff` of `fd`, laid out as the kernel's `off` says.
    pub(crate) fn new(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        pgoff: libc::off_t,
    ) -> io::Result<Self> {
        let len = off.desc as usize + RING_SIZE as usize * std::mem::size_of::<T>();
        let map = Mapping::new(len, fd, pgoff)?;
        let at = |o: u64| {
            // SAFETY: the kernel's offsets lie inside the mapping of `len` bytes.
            unsafe { NonNull::new_unchecked(map.ptr.as_ptr().add(o as usize)) }
        };
        Ok(RingMap {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            mask: RING_SIZE - 1,
            _map: map,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping; the kernel treats it as an atomic u32.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as above.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn slot(&self, index: u32) -> *mut T {
        // SAFETY: masked index < RING_SIZE entries of the descriptor array.
        unsafe { self.descs.as_ptr().add((index & self.mask) as usize) }
    }
}

/// The user-space producer side of a ring (fill, TX): like libxdp's `xsk_ring_prod`.
pub struct Producer<T> {
    ring: RingMap<T>,
    /// Next index we write.
    cached_prod: u32,
    /// The kernel's consumer index as last read, plus the ring size (so free = this - prod).
    cached_cons: u32,
}

impl<T: Copy> Producer<T> {
    pub(crate) fn new(ring: RingMap<T>) -> Self {
        let cached_prod = ring.producer().load(Ordering::Relaxed);
        let cached_cons = ring
            .consumer()
            .load(Ordering::Relaxed)
            .wrapping_add(RING_SIZE);
        Producer {
            ring,
            cached_prod,
            cached_cons,
        }
    }

    /// Free entries, at least `wanted` if there are that many: the cached consumer index
    /// understates free space, so it is refreshed before reporting fewer than `wanted`.
    pub fn free(&mut self, wanted: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= wanted {
            return free;
        }
        self.cached_cons = self
            .ring
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(RING_SIZE);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Writes one entry; the caller has checked [`free`](Self::free). Visible to the
    /// kernel after [`commit`](Self::commit).
    pub fn push(&mut self, item: T) {
        // SAFETY: the slot is ours: between the kernel's consumer and our producer.
        unsafe { self.ring.slot(self.cached_prod).write(item) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publishes every pushed entry.
    pub fn commit(&mut self) {
        self.ring
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries published but not yet taken by the kernel.
    pub fn pending(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.ring.consumer().load(Ordering::Acquire))
    }

    /// The kernel asks to be woken (need_wakeup protocol).
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}

/// The user-space consumer side of a ring (RX, completion): like `xsk_ring_cons`.
pub struct Consumer<T> {
    ring: RingMap<T>,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> Consumer<T> {
    pub(crate) fn new(ring: RingMap<T>) -> Self {
        let cached_cons = ring.consumer().load(Ordering::Relaxed);
        Consumer {
            cached_prod: cached_cons,
            cached_cons,
            ring,
        }
    }

    /// Entries ready to read, refreshing the producer index when fewer than `wanted`.
    pub fn available(&mut self, wanted: u32) -> u32 {
        let ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready >= wanted {
            return ready;
        }
        self.cached_prod = self.ring.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Reads the next entry; the caller has checked [`available`](Self::available).
    /// The slot goes back to the kernel at [`release`](Self::release).
    pub fn pop(&mut self) -> T {
        // SAFETY: between our consumer and the producer read with Acquire: written.
        let item = unsafe { self.ring.slot(self.cached_cons).read() };
        self.cached_cons = self.cached_cons.wrapping_add(1);
        item
    }

    /// Hands every popped slot back to the kernel.
    pub fn release(&mut self) {
        self.ring
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring over plain memory, with the kernel's side played by the test.
    fn ring<T>() -> RingMap<T> {
        let off = libc::xdp_ring_offset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        RingMap::new(-1, &off, 0).unwrap()
    }

    #[test]
    fn producer_refreshes_the_cached_consumer_before_reporting_full() {
        let mut p = Producer::new(ring::<u64>());
        assert_eq!(p.free(1), RING_SIZE);
        for i in 0..u64::from(RING_SIZE) {
            p.push(i);
        }
        p.commit();
        assert_eq!(p.free(1), 0, "full");
        assert_eq!(p.pending(), RING_SIZE);
        // The "kernel" consumes 10 entries: the cached index still says full until the
        // refresh that free() does when asked for more than it knows of.
        p.ring.consumer().store(10, Ordering::Release);
        assert_eq!(p.free(10), 10);
        assert_eq!(p.pending(), RING_SIZE - 10);
        // Slot 0 wraps around.
        p.push(99);
        p.commit();
        // SAFETY: slot 0 of the test ring.
        assert_eq!(unsafe { p.ring.slot(RING_SIZE).read() }, 99);
        assert!(!p.needs_wakeup());
        // SAFETY: the flags word of the test ring.
        unsafe { p.ring.flags.as_ref() }.store(libc::XDP_RING_NEED_WAKEUP, Ordering::Relaxed);
        assert!(p.needs_wakeup());
    }

    #[test]
    fn consumer_sees_what_the_producer_published() {
        let mut c = Consumer::new(ring::<u64>());
        assert_eq!(c.available(1), 0);
        for i in 0..5u32 {
            // SAFETY: slots of the test ring.
            unsafe { c.ring.slot(i).write(u64::from(i) * 7) };
        }
        c.ring.producer().store(5, Ordering::Release);
        assert_eq!(c.available(64), 5);
        assert_eq!((c.pop(), c.pop()), (0, 7));
        c.release();
        assert_eq!(c.ring.consumer().load(Ordering::Acquire), 2);
        assert_eq!(c.available(1), 3, "cached: no refresh needed");
    }
}
