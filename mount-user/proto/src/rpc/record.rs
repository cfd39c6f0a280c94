//! RPC record marking (RFC 5531 §11) for stream transports, sans-IO.
//!
//! Each fragment starts with a 4-byte big-endian header: bit 31 marks the last fragment of
//! a record, bits 0–30 give the fragment length. [`RecordReader`] reassembles records from
//! whatever chunks the transport hands it (split headers, multi-fragment records, several
//! records per read, one record across many reads) and enforces a cap on a record's size.

/// Bit 31 of a fragment header: this fragment ends the record.
pub const LAST_FRAGMENT: u32 = 0x8000_0000;

/// Length of a fragment header.
pub const HEADER_LEN: usize = 4;

/// The header of a record sent as a single (last) fragment of `len` bytes.
pub fn single_fragment_header(len: usize) -> Result<[u8; HEADER_LEN], RecordError> {
    let len32 = u32::try_from(len)
        .ok()
        .filter(|l| *l < LAST_FRAGMENT)
        .ok_or(RecordError::TooLarge {
            size: len,
            max: (LAST_FRAGMENT - 1) as usize,
        })?;
    Ok((len32 | LAST_FRAGMENT).to_be_bytes())
}

/// Why a stream must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record being assembled would exceed the cap.
    #[error("record of at least {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

/// Reassembles records from a byte stream.
///
/// Feed bytes with [`push`](Self::push), then take complete records with
/// [`next_record`](Self::next_record) until it returns `Ok(None)`.
#[derive(Debug)]
pub struct RecordReader {
    max_record: usize,
    /// Bytes received and not yet consumed, starting at `pos`.
    input: Vec<u8>,
    pos: usize,
    /// Payload of the record being assembled (fragments concatenated).
    record: Vec<u8>,
    /// Bytes still to come in the current fragment and whether it is the last one; None
    /// while a header is expected.
    fragment: Option<(usize, bool)>,
    /// The previous call handed out `record`: clear it before assembling the next one.
    delivered: bool,
}

impl RecordReader {
    /// A reader that refuses records (sum of fragment payloads) over `max_record` bytes.
    pub fn new(max_record: usize) -> Self {
        Self {
            max_record,
            input: Vec::new(),
            pos: 0,
            record: Vec::new(),
            fragment: None,
            delivered: false,
        }
    }

    /// Append bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        // Drop what was consumed so the buffer holds at most one read plus a partial tail.
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// True when no partial record or unconsumed byte is pending (a clean point to close).
    pub fn is_idle(&self) -> bool {
        self.pos == self.input.len()
            && self.fragment.is_none()
            && (self.delivered || self.record.is_empty())
    }

    /// The next complete record, `Ok(None)` if more bytes are needed, or an error when the
    /// record exceeds the cap (the stream must then be closed: framing is lost).
    pub fn next_record(&mut self) -> Result<Option<&[u8]>, RecordError> {
        if self.delivered {
            self.record.clear();
            self.delivered = false;
        }
        loop {
            match self.fragment {
                None => {
                    let avail = &self.input[self.pos..];
                    let Some(header) = avail.first_chunk::<HEADER_LEN>() else {
                        return Ok(None);
                    };
                    let word = u32::from_be_bytes(*header);
                    self.pos += HEADER_LEN;
                    let len = (word & !LAST_FRAGMENT) as usize;
                    let size = self.record.len().saturating_add(len);
                    if size > self.max_record {
                        return Err(RecordError::TooLarge {
                            size,
                            max: self.max_record,
                        });
                    }
                    self.fragment = Some((len, word & LAST_FRAGMENT != 0));
                }
                Some((remaining, last)) => {
                    let avail = &self.input[self.pos..];
                    let take = remaining.min(avail.len());
                    self.record.extend_from_slice(&avail[..take]);
                    self.pos += take;
                    let remaining = remaining - take;
                    if remaining > 0 {
                        self.fragment = Some((remaining, last));
                        return Ok(None);
                    }
                    self.fragment = None;
                    if last {
                        self.delivered = true;
                        return Ok(Some(&self.record));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(payload: &[u8], last: bool) -> Vec<u8> {
        let mut word = payload.len() as u32;
        if last {
            word |= LAST_FRAGMENT;
        }
        let mut v = word.to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn drain(r: &mut RecordReader) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec.to_vec());
        }
        out
    }

    #[test]
    fn single_record_in_one_read() {
        let mut r = RecordReader::new(100);
        r.push(&frag(b"hello", true));
        assert_eq!(drain(&mut r), vec![b"hello".to_vec()]);
        assert!(r.is_idle());
    }

    #[test]
    fn header_split_across_reads_byte_by_byte() {
        let bytes = frag(b"abcdefgh", true);
        let mut r = RecordReader::new(100);
        let mut got = Vec::new();
        for b in &bytes {
            r.push(std::slice::from_ref(b));
            got.extend(drain(&mut r));
        }
        assert_eq!(got, vec![b"abcdefgh".to_vec()]);
    }

    #[test]
    fn multi_fragment_record() {
        let mut bytes = frag(b"ab", false);
        bytes.extend(frag(b"", false));
        bytes.extend(frag(b"cde", false));
        bytes.extend(frag(b"f", true));
        let mut r = RecordReader::new(100);
        r.push(&bytes[..7]);
        assert!(drain(&mut r).is_empty());
        assert!(!r.is_idle());
        r.push(&bytes[7..]);
        assert_eq!(drain(&mut r), vec![b"abcdef".to_vec()]);
    }

    #[test]
    fn several_records_in_one_read_then_partial() {
        let mut bytes = frag(b"one", true);
        bytes.extend(frag(b"tw", false));
        bytes.extend(frag(b"o", true));
        bytes.extend(frag(b"three", true));
        let tail = frag(b"four", true);
        bytes.extend(&tail[..5]);
        let mut r = RecordReader::new(100);
        r.push(&bytes);
        assert_eq!(
            drain(&mut r),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        r.push(&tail[5..]);
        assert_eq!(drain(&mut r), vec![b"four".to_vec()]);
        assert!(r.is_idle());
    }

    #[test]
    fn record_spanning_many_reads() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let bytes = frag(&payload, true);
        let mut r = RecordReader::new(8192);
        let mut got = Vec::new();
        for chunk in bytes.chunks(333) {
            r.push(chunk);
            got.extend(drain(&mut r));
        }
        assert_eq!(got, vec![payload]);
    }

    #[test]
    fn oversize_single_fragment_is_refused_before_payload_arrives() {
        let mut r = RecordReader::new(8);
        r.push(&(LAST_FRAGMENT | 9).to_be_bytes());
        assert_eq!(
            r.next_record(),
            Err(RecordError::TooLarge { size: 9, max: 8 })
        );
    }

    #[test]
    fn oversize_across_fragments_is_refused() {
        let mut bytes = frag(b"12345", false);
        bytes.extend(frag(b"6789", true));
        let mut r = RecordReader::new(8);
        r.push(&bytes);
        assert_eq!(
            r.next_record(),
            Err(RecordError::TooLarge { size: 9, max: 8 })
        );
    }

    #[test]
    fn exactly_max_is_accepted() {
        let mut r = RecordReader::new(8);
        r.push(&frag(b"12345678", true));
        assert_eq!(drain(&mut r), vec![b"12345678".to_vec()]);
    }

    #[test]
    fn single_fragment_header_sets_last_bit() {
        assert_eq!(
            single_fragment_header(0x1234).unwrap(),
            [0x80, 0, 0x12, 0x34]
        );
        assert!(single_fragment_header(1 << 31).is_err());
    }
}
