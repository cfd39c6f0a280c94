//! XDR (RFC 4506) codec: a zero-copy [`Reader`] over `&[u8]` and a [`Writer`] into a
//! caller's `&mut [u8]`.
//!
//! Everything is big-endian and 4-byte aligned. Variable-length opaque data and strings are
//! followed by 0–3 pad bytes: the reader requires the pad bytes to be present but ignores their
//! contents (RFC 4506 says they are zero; being lenient costs nothing and some old encoders
//! leave garbage there), the writer always writes zeros.
//!
//! The writer never panics and never writes past the end of its buffer: every `put_*` checks
//! the whole item's size first and fails with [`XdrError::Overflow`] without writing anything.
//! [`Writer::mark`]/[`Writer::rewind`] let an encoder drop a partly written list entry.

/// Size of one XDR unit.
pub const UNIT: usize = 4;

/// Errors of the XDR reader and writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    /// The input ended before the item did.
    #[error("XDR input too short")]
    Short,
    /// A variable-length item declared more than its maximum.
    #[error("XDR item of {len} bytes exceeds its maximum of {max}")]
    TooLong {
        /// The declared or given length.
        len: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// An enum or bool had a value outside its range.
    #[error("XDR value {0} out of range")]
    BadValue(u32),
    /// The output buffer cannot hold the item.
    #[error("XDR output buffer full")]
    Overflow,
}

/// Bytes of padding after `len` bytes of opaque data.
pub const fn pad_len(len: usize) -> usize {
    (UNIT - len % UNIT) % UNIT
}

/// `len` rounded up to a multiple of 4.
pub const fn padded(len: usize) -> usize {
    len + pad_len(len)
}

/// A cursor over XDR-encoded bytes; items borrow from the input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread rest of the input.
    pub fn remaining(&self) -> &'a [u8] {
        // `pos` never exceeds `buf.len()` (every advance is checked).
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// True when the whole input has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Take exactly `n` raw bytes (no padding).
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let end = self.pos.checked_add(n).ok_or(XdrError::Short)?;
        let bytes = self.buf.get(self.pos..end).ok_or(XdrError::Short)?;
        self.pos = end;
        Ok(bytes)
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(UNIT)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A signed 32-bit integer.
    pub fn i32(&mut self) -> Result<i32, XdrError> {
        self.u32().map(|v| v as i32)
    }

    /// An unsigned 64-bit integer (hyper).
    pub fn u64(&mut self) -> Result<u64, XdrError> {
        let hi = self.u32()? as u64;
        let lo = self.u32()? as u64;
        Ok(hi << 32 | lo)
    }

    /// A bool: 0 or 1, anything else is [`XdrError::BadValue`].
    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::BadValue(v)),
        }
    }

    /// Fixed-length opaque data of `len` bytes plus its padding.
    pub fn opaque_fixed(&mut self, len: usize) -> Result<&'a [u8], XdrError> {
        let total = len.checked_add(pad_len(len)).ok_or(XdrError::Short)?;
        let with_pad = self.take(total)?;
        Ok(&with_pad[..len])
    }

    /// Variable-length opaque data `opaque<max>`: length word, bytes, padding.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        self.opaque_fixed(len)
    }

    /// `string<max>`: encoded like `opaque<max>`; returned as raw bytes (XDR strings are
    /// ASCII by convention but nothing enforces it).
    pub fn string(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        self.opaque(max)
    }
}

/// A saved writer position, for [`Writer::rewind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(usize);

/// An XDR encoder into a caller's buffer that never writes past its end.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    /// Remember the current position.
    pub fn mark(&self) -> Mark {
        Mark(self.pos)
    }

    /// Forget everything written after `mark` (the bytes stay but are no longer counted).
    /// A mark from a later position than the current one is ignored.
    pub fn rewind(&mut self, mark: Mark) {
        if mark.0 <= self.pos {
            self.pos = mark.0;
        }
    }

    /// Run `body` on this writer, keeping what it wrote only when it succeeds: on error the
    /// writer is rewound to where it was, so a composite item is written all or nothing.
    pub fn all_or_nothing<T>(
        &mut self,
        body: impl FnOnce(&mut Self) -> Result<T, XdrError>,
    ) -> Result<T, XdrError> {
        let m = self.mark();
        let res = body(self);
        if res.is_err() {
            self.rewind(m);
        }
        res
    }

    /// Reserve `n` bytes and return them for the caller to fill.
    fn reserve(&mut self, n: usize) -> Result<&mut [u8], XdrError> {
        if n > self.remaining() {
            return Err(XdrError::Overflow);
        }
        let start = self.pos;
        self.pos += n;
        Ok(&mut self.buf[start..start + n])
    }

    /// Raw bytes, copied as they are (no length, no padding): for precomputed XDR.
    pub fn put_raw(&mut self, bytes: &[u8]) -> Result<(), XdrError> {
        self.reserve(bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }

    /// An unsigned 32-bit integer.
    pub fn put_u32(&mut self, v: u32) -> Result<(), XdrError> {
        self.put_raw(&v.to_be_bytes())
    }

    /// A signed 32-bit integer.
    pub fn put_i32(&mut self, v: i32) -> Result<(), XdrError> {
        self.put_raw(&v.to_be_bytes())
    }

    /// An unsigned 64-bit integer (hyper).
    pub fn put_u64(&mut self, v: u64) -> Result<(), XdrError> {
        self.put_raw(&v.to_be_bytes())
    }

    /// A bool (0 or 1).
    pub fn put_bool(&mut self, v: bool) -> Result<(), XdrError> {
        self.put_u32(u32::from(v))
    }

    /// Fixed-length opaque data followed by zero padding.
    pub fn put_opaque_fixed(&mut self, bytes: &[u8]) -> Result<(), XdrError> {
        let len = bytes.len();
        let dst = self.reserve(padded(len))?;
        dst[..len].copy_from_slice(bytes);
        dst[len..].fill(0);
        Ok(())
    }

    /// Variable-length opaque data `opaque<max>`: length word, bytes, zero padding.
    /// Longer than `max` is [`XdrError::TooLong`] (an encoder bug, not a full buffer).
    pub fn put_opaque(&mut self, bytes: &[u8], max: usize) -> Result<(), XdrError> {
        let len = bytes.len();
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        let len32 = u32::try_from(len).map_err(|_| XdrError::TooLong { len, max })?;
        let dst = self.reserve(UNIT + padded(len))?;
        dst[..UNIT].copy_from_slice(&len32.to_be_bytes());
        dst[UNIT..UNIT + len].copy_from_slice(bytes);
        dst[UNIT + len..].fill(0);
        Ok(())
    }

    /// `string<max>`, encoded like `opaque<max>`.
    pub fn put_string(&mut self, s: &[u8], max: usize) -> Result<(), XdrError> {
        self.put_opaque(s, max)
    }

    /// Overwrite the 32-bit word at `at` (a position already written), e.g. a length
    /// filled in after the data it counts.
    pub fn patch_u32(&mut self, at: usize, v: u32) -> Result<(), XdrError> {
        let end = at.checked_add(UNIT).ok_or(XdrError::Overflow)?;
        if end > self.pos {
            return Err(XdrError::Overflow);
        }
        self.buf[at..end].copy_from_slice(&v.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_integers_big_endian() {
        let buf = [0, 0, 1, 2, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0, 0, 0, 7];
        let mut r = Reader::new(&buf);
        assert_eq!(r.u32(), Ok(0x102));
        assert_eq!(r.i32(), Ok(-2));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.bool(), Err(XdrError::BadValue(7)));
        assert!(r.is_empty());
        assert_eq!(r.u32(), Err(XdrError::Short));
    }

    #[test]
    fn reads_u64() {
        let buf = [0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(Reader::new(&buf).u64(), Ok(0x1_0000_0002));
    }

    #[test]
    fn reads_opaque_with_padding_and_ignores_pad_contents() {
        let buf = [0, 0, 0, 3, b'a', b'b', b'c', 0xaa, 0, 0, 0, 9];
        let mut r = Reader::new(&buf);
        assert_eq!(r.opaque(3), Ok(&b"abc"[..]));
        assert_eq!(r.position(), 8);
        assert_eq!(r.u32(), Ok(9));
    }

    #[test]
    fn opaque_over_max_is_too_long() {
        let buf = [0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(
            Reader::new(&buf).opaque(4),
            Err(XdrError::TooLong { len: 5, max: 4 })
        );
    }

    #[test]
    fn opaque_missing_padding_is_short() {
        let buf = [0, 0, 0, 3, b'a', b'b', b'c'];
        assert_eq!(Reader::new(&buf).opaque(10), Err(XdrError::Short));
    }

    #[test]
    fn huge_length_is_short_not_panic() {
        let buf = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(Reader::new(&buf).opaque(usize::MAX), Err(XdrError::Short));
    }

    #[test]
    fn writes_opaque_with_zero_padding() {
        let mut buf = [0xee; 12];
        let mut w = Writer::new(&mut buf);
        w.put_string(b"hello", 255).unwrap();
        assert_eq!(w.position(), 12);
        assert_eq!(&buf, b"\0\0\0\x05hello\0\0\0");
    }

    #[test]
    fn writes_fixed_opaque_with_padding() {
        let mut buf = [0xee; 8];
        let mut w = Writer::new(&mut buf);
        w.put_opaque_fixed(&[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(buf, [1, 2, 3, 4, 5, 0, 0, 0]);
    }

    #[test]
    fn overflow_writes_nothing() {
        let mut buf = [0xee; 10];
        let mut w = Writer::new(&mut buf);
        w.put_u32(1).unwrap();
        assert_eq!(w.put_string(b"abc", 10), Err(XdrError::Overflow));
        assert_eq!(w.position(), 4);
        w.put_u32(2).unwrap();
        assert_eq!(w.put_u32(3), Err(XdrError::Overflow));
        assert_eq!(w.position(), 8);
        assert_eq!(buf, [0, 0, 0, 1, 0, 0, 0, 2, 0xee, 0xee]);
    }

    #[test]
    fn too_long_is_refused_by_writer() {
        let mut buf = [0; 64];
        let mut w = Writer::new(&mut buf);
        assert_eq!(
            w.put_opaque(&[0; 5], 4),
            Err(XdrError::TooLong { len: 5, max: 4 })
        );
        assert_eq!(w.position(), 0);
    }

    #[test]
    fn mark_and_rewind_drop_a_partial_entry() {
        let mut buf = [0; 16];
        let mut w = Writer::new(&mut buf);
        w.put_u32(1).unwrap();
        let m = w.mark();
        w.put_u32(2).unwrap();
        w.rewind(m);
        assert_eq!(w.position(), 4);
        w.put_u32(3).unwrap();
        assert_eq!(w.written(), &[0, 0, 0, 1, 0, 0, 0, 3]);
        // A mark from the future is ignored.
        let future = Mark(12);
        w.rewind(future);
        assert_eq!(w.position(), 8);
    }

    #[test]
    fn patch_only_inside_written_part() {
        let mut buf = [0; 8];
        let mut w = Writer::new(&mut buf);
        w.put_u32(0).unwrap();
        w.patch_u32(0, 0xdead_beef).unwrap();
        assert_eq!(w.patch_u32(4, 1), Err(XdrError::Overflow));
        assert_eq!(w.patch_u32(usize::MAX, 1), Err(XdrError::Overflow));
        assert_eq!(w.written(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    /// One writer operation, for the property test.
    #[derive(Debug, Clone)]
    enum Op {
        U32(u32),
        Opaque(Vec<u8>),
        Fixed(Vec<u8>),
        Mark,
        Rewind,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u32>().prop_map(Op::U32),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Opaque),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Fixed),
            Just(Op::Mark),
            Just(Op::Rewind),
        ]
    }

    proptest! {
        #[test]
        fn writer_never_overflows(cap in 0usize..128, ops in proptest::collection::vec(op(), 0..40)) {
            // A guard zone after the writer's slice must stay untouched.
            let mut backing = vec![0x5a_u8; cap + 16];
            let (buf, guard) = backing.split_at_mut(cap);
            let mut w = Writer::new(buf);
            let mut mark = w.mark();
            for op in ops {
                let before = w.position();
                let res = match &op {
                    Op::U32(v) => w.put_u32(*v),
                    Op::Opaque(b) => w.put_opaque(b, 32),
                    Op::Fixed(b) => w.put_opaque_fixed(b),
                    Op::Mark => { mark = w.mark(); Ok(()) }
                    Op::Rewind => { w.rewind(mark); Ok(()) }
                };
                if res.is_err() {
                    prop_assert_eq!(w.position(), before);
                }
                prop_assert!(w.position() <= cap);
                prop_assert_eq!(w.position() % 4, 0);
            }
            prop_assert!(guard.iter().all(|&b| b == 0x5a));
        }

        #[test]
        fn opaque_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut buf = [0u8; 128];
            let mut w = Writer::new(&mut buf);
            w.put_opaque(&data, 100).unwrap();
            let n = w.position();
            let mut r = Reader::new(&buf[..n]);
            prop_assert_eq!(r.opaque(100).unwrap(), &data[..]);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..80) {
            let mut r = Reader::new(&bytes);
            while r.opaque(max).is_ok() {}
            prop_assert!(r.position() <= bytes.len());
        }
    }
}
