//! A deliberately independent, tiny XDR encoder/decoder (RFC 4506).
//!
//! It shares no code with the daemon's codec so that the end-to-end tests can catch codec
//! bugs on either side of the wire instead of agreeing with them.

use anyhow::{bail, Result};

/// Appends XDR items to a byte vector.
#[derive(Default, Clone, Debug)]
pub struct XdrWriter {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl XdrWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A big-endian unsigned 32-bit word.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Fixed-length opaque data, zero-padded to a multiple of 4.
    pub fn fixed(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        let pad = (4 - data.len() % 4) % 4;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// Variable-length opaque data (length word, bytes, padding).
    pub fn opaque(&mut self, data: &[u8]) -> &mut Self {
        self.u32(data.len() as u32);
        self.fixed(data)
    }

    /// A string (same layout as variable opaque).
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.opaque(s.as_bytes())
    }

    /// Raw bytes, no padding (for deliberately malformed messages).
    pub fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A strict XDR reader over a byte slice.
#[derive(Clone, Debug)]
pub struct XdrReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> XdrReader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Bytes not consumed yet.
    pub fn remaining(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos == self.data.len()
    }

    /// Fails unless every byte has been consumed (catches trailing garbage in replies).
    pub fn finish(&self) -> Result<()> {
        if !self.is_empty() {
            bail!(
                "{} trailing bytes after decoding: {:02x?}",
                self.data.len() - self.pos,
                self.remaining()
            );
        }
        Ok(())
    }

    /// A big-endian unsigned 32-bit word.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A signed 32-bit word.
    pub fn i32(&mut self) -> Result<i32> {
        Ok(self.u32()? as i32)
    }

    /// An XDR bool, strictly 0 or 1.
    pub fn bool(&mut self) -> Result<bool> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => bail!("bad XDR bool {v} at offset {}", self.pos - 4),
        }
    }

    /// Fixed-length opaque data; the padding must be zero.
    pub fn fixed(&mut self, len: usize) -> Result<Vec<u8>> {
        let bytes = self.take(len)?.to_vec();
        let pad = (4 - len % 4) % 4;
        let p = self.take(pad)?;
        if p.iter().any(|&b| b != 0) {
            bail!("non-zero XDR padding {p:02x?}");
        }
        Ok(bytes)
    }

    /// Variable-length opaque data with an upper bound.
    pub fn opaque(&mut self, max: usize) -> Result<Vec<u8>> {
        let len = self.u32()? as usize;
        if len > max {
            bail!("opaque length {len} exceeds bound {max}");
        }
        self.fixed(len)
    }

    /// A string with an upper bound, which must be UTF-8 here (all our names are).
    pub fn string(&mut self, max: usize) -> Result<String> {
        let b = self.opaque(max)?;
        Ok(String::from_utf8(b)?)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.data.len() - self.pos < n {
            bail!(
                "XDR underrun: need {n} bytes at offset {}, have {}",
                self.pos,
                self.data.len() - self.pos
            );
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}
