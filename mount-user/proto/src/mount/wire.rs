//! The MOUNT results on the wire (RFC 1094 appendix A, RFC 1813 appendix I), each decoder
//! beside its encoder, in the style of smoltcp's `wire`: a small `Repr` (or, for the lists,
//! a view over the validated bytes, borrowed from the reply) with `parse` and `emit` side by
//! side, so that each layout is written down once.
//!
//! The server emits through these (its list writers in `results` through the per-entry
//! emitters); the gateway's upstream client, the load generator's reply checks and the
//! tests parse with them. Parsing checks what XDR and the protocol's bounds define
//! (`dirpath<MNTPATHLEN>`, `name<MNTNAMLEN>`, `fhandle3<FHSIZE3>`, lists terminated);
//! what a caller requires beyond that (a non-empty handle, a status of OK) is the caller's.
//!
//! A status other than 0 is carried as the number on the wire ([`super::MountStat`] names
//! the ones this server sends); emitting a status of 0 as an error is refused, since it
//! would parse back as a success without its body.

use super::{FHSIZE, FHSIZE3, MNTNAMLEN, MNTPATHLEN};
use crate::xdr::{padded, Reader, Writer, XdrError, UNIT};

#[cfg(test)]
mod tests;

/// The status of a successful MNT (`MNT3_OK`, and 0 in `fhstatus`).
pub const MNT_OK: u32 = 0;

/// The error status of a failed MNT; 0 cannot be one.
fn error_status(stat: u32) -> Result<u32, XdrError> {
    match stat {
        MNT_OK => Err(XdrError::BadValue(MNT_OK)),
        stat => Ok(stat),
    }
}

/// `fhstatus`: the result of a v1/v2 MNT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FhStatus<'a> {
    /// Status 0 and the fixed-size `fhandle`: parsed, exactly [`FHSIZE`] bytes; emitted, a
    /// shorter handle is zero-padded (a longer one cannot be expressed).
    Ok(&'a [u8]),
    /// A non-zero status.
    Err(u32),
}

impl<'a> FhStatus<'a> {
    /// Decode an `fhstatus`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        match r.u32()? {
            MNT_OK => Ok(FhStatus::Ok(r.opaque_fixed(FHSIZE)?)),
            stat => Ok(FhStatus::Err(stat)),
        }
    }

    /// Encode, all or nothing.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        match *self {
            FhStatus::Ok(handle) => {
                if handle.len() > FHSIZE {
                    return Err(XdrError::TooLong {
                        len: handle.len(),
                        max: FHSIZE,
                    });
                }
                // Status 0 (already zero), then the handle zero-padded: one write.
                let mut buf = [0u8; UNIT + FHSIZE];
                buf[UNIT..UNIT + handle.len()].copy_from_slice(handle);
                w.put_raw(&buf)
            }
            FhStatus::Err(stat) => w.put_u32(error_status(stat)?),
        }
    }
}

/// `mountres3`: the result of a v3 MNT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountRes3<'a> {
    /// `MNT3_OK`: the handle (`fhandle3`, at most [`FHSIZE3`] bytes) and the auth flavors
    /// the client may use, in the server's order of preference.
    Ok {
        /// The file handle.
        handle: &'a [u8],
        /// The auth flavors.
        flavors: Flavors<'a>,
    },
    /// A non-zero `mountstat3`.
    Err(u32),
}

/// The Linux client keeps at most this many flavors of a `mountres3` (the server lists no
/// more).
pub const MAX_FLAVORS: usize = 12;

/// The most bytes a `mountres3` of MNT3_OK is assembled in on the stack before one write:
/// status, `fhandle3` (length + 64 bytes), count and [`MAX_FLAVORS`] flavors.
const MOUNTRES3_STACK: usize = UNIT + UNIT + FHSIZE3 + UNIT + MAX_FLAVORS * UNIT;

impl<'a> MountRes3<'a> {
    /// Decode a `mountres3`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        match r.u32()? {
            MNT_OK => {
                let handle = r.opaque(FHSIZE3)?;
                let flavors = Flavors::parse(r)?;
                Ok(MountRes3::Ok { handle, flavors })
            }
            stat => Ok(MountRes3::Err(stat)),
        }
    }

    /// Decode a `mountres3` for its status and handle only: a flavor list that is missing
    /// or malformed reads as empty. For the gateway's client, whose offered flavors come
    /// from the local exports (`sec=`), so a server that omits or garbles the list still
    /// gives a usable handle; a handle over [`FHSIZE3`] is still an error.
    pub fn parse_handle(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        match r.u32()? {
            MNT_OK => {
                let handle = r.opaque(FHSIZE3)?;
                let flavors = Flavors::parse(r).unwrap_or_default();
                Ok(MountRes3::Ok { handle, flavors })
            }
            stat => Ok(MountRes3::Err(stat)),
        }
    }

    /// Encode, all or nothing.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        let (handle, flavors) = match *self {
            MountRes3::Ok { handle, flavors } => (handle, flavors),
            MountRes3::Err(stat) => return w.put_u32(error_status(stat)?),
        };
        if handle.len() > FHSIZE3 {
            return Err(XdrError::TooLong {
                len: handle.len(),
                max: FHSIZE3,
            });
        }
        let words = flavors.as_be_words();
        let count = u32::try_from(flavors.len()).map_err(|_| XdrError::TooLong {
            len: flavors.len(),
            max: u32::MAX as usize,
        })?;
        let hlen = handle.len();
        let total = 3 * UNIT + padded(hlen) + words.len();
        if total > MOUNTRES3_STACK {
            return w.all_or_nothing(|w| {
                w.put_u32(MNT_OK)?;
                w.put_opaque(handle, FHSIZE3)?;
                w.put_u32(count)?;
                w.put_raw(words)
            });
        }
        // Assembled on the stack and written with one bounds check and one copy: word-by-word
        // writes were ~170 instructions of a ~1500-instruction MNT.
        let mut buf = [0u8; MOUNTRES3_STACK];
        // buf[0..4] = MNT3_OK (0), already zero; the handle's padding is zero too.
        buf[UNIT..2 * UNIT].copy_from_slice(&(hlen as u32).to_be_bytes());
        buf[2 * UNIT..2 * UNIT + hlen].copy_from_slice(handle);
        let count_at = 2 * UNIT + padded(hlen);
        buf[count_at..count_at + UNIT].copy_from_slice(&count.to_be_bytes());
        buf[count_at + UNIT..total].copy_from_slice(words);
        w.put_raw(&buf[..total])
    }
}

/// `auth_flavors` of a `mountres3`: a counted array of flavor numbers, kept as the
/// big-endian words they are on the wire (no allocation to parse or to emit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flavors<'a>(&'a [u8]);

impl<'a> Flavors<'a> {
    /// Flavors from their big-endian words; None unless `words` is a whole number of words.
    pub fn from_be_words(words: &'a [u8]) -> Option<Self> {
        words.len().is_multiple_of(UNIT).then_some(Flavors(words))
    }

    /// The flavors as big-endian words.
    pub fn as_be_words(&self) -> &'a [u8] {
        self.0
    }

    /// Number of flavors.
    pub fn len(&self) -> usize {
        self.0.len() / UNIT
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The flavor numbers, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.0
            .chunks_exact(UNIT)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    }

    /// Decode the count and the flavors.
    fn parse(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        let count = r.u32()? as usize;
        let len = count.checked_mul(UNIT).ok_or(XdrError::Short)?;
        Ok(Flavors(r.take(len)?))
    }
}

/// Walk a list of entries (`bool` "more", then an entry) to its terminating FALSE, checking
/// each entry with `entry`; returns the list's bytes, terminator included.
fn parse_list<'a>(
    r: &mut Reader<'a>,
    mut entry: impl FnMut(&mut Reader<'a>) -> Result<(), XdrError>,
) -> Result<&'a [u8], XdrError> {
    let start = r.remaining();
    let from = r.position();
    while r.bool()? {
        entry(r)?;
    }
    Ok(&start[..r.position() - from])
}

/// `exports`: the EXPORT (and v1/v2 EXPORTALL) result, a list of `exportnode` (a directory
/// and the groups allowed to mount it). A view over the validated list, borrowed from the
/// reply; iterate it with [`ExportList::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportList<'a> {
    /// The whole list, terminating FALSE included.
    bytes: &'a [u8],
}

/// One `exportnode` of an [`ExportList`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportNode<'a> {
    /// The exported directory (`dirpath`).
    pub dir: &'a [u8],
    /// The groups (client specs) allowed to mount it.
    pub groups: Groups<'a>,
}

/// The `groups` of an [`ExportNode`]: a view over its validated list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups<'a> {
    /// The list, terminating FALSE included.
    bytes: &'a [u8],
}

impl<'a> ExportList<'a> {
    /// Decode and check a whole `exports` list.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        let bytes = parse_list(r, |r| ExportNode::parse(r).map(drop))?;
        Ok(ExportList { bytes })
    }

    /// Encode the list as it was parsed.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        w.put_raw(self.bytes)
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = ExportNode<'a>> + 'a {
        list_entries(self.bytes, ExportNode::parse)
    }

    /// Whether the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<'a> ExportNode<'a> {
    /// Decode one node (after its list's TRUE).
    fn parse(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        let dir = r.string(MNTPATHLEN)?;
        let bytes = parse_list(r, |r| r.string(MNTNAMLEN).map(drop))?;
        Ok(ExportNode {
            dir,
            groups: Groups { bytes },
        })
    }

    /// Write one list entry: TRUE, the directory, its groups, the groups' FALSE. All or
    /// nothing; a directory or group longer than the protocol carries is
    /// [`XdrError::TooLong`]. End the list with [`emit_list_end`].
    pub fn emit_entry<'g>(
        w: &mut Writer<'_>,
        dir: &[u8],
        groups: impl IntoIterator<Item = &'g [u8]>,
    ) -> Result<(), XdrError> {
        w.all_or_nothing(|w| {
            w.put_bool(true)?;
            w.put_string(dir, MNTPATHLEN)?;
            for group in groups {
                w.put_bool(true)?;
                w.put_string(group, MNTNAMLEN)?;
            }
            w.put_bool(false)
        })
    }

    /// The bytes [`ExportNode::emit_entry`] writes for `dir` and `groups`.
    pub fn entry_len<'g>(dir: &[u8], groups: impl IntoIterator<Item = &'g [u8]>) -> usize {
        let groups: usize = groups.into_iter().map(|g| 2 * UNIT + padded(g.len())).sum();
        2 * UNIT + padded(dir.len()) + groups + UNIT
    }
}

impl<'a> Groups<'a> {
    /// The group names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        list_entries(self.bytes, |r| r.string(MNTNAMLEN))
    }
}

/// `mountlist`: the DUMP result, a list of `mountbody` (a client host and a directory it
/// mounted). A view over the validated list, borrowed from the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountBodies<'a> {
    /// The whole list, terminating FALSE included.
    bytes: &'a [u8],
}

/// One `mountbody` of a [`MountBodies`] list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountBody<'a> {
    /// The client (`hostname`: its address text, as this server records it).
    pub hostname: &'a [u8],
    /// The directory it mounted (`directory`).
    pub directory: &'a [u8],
}

impl<'a> MountBodies<'a> {
    /// Decode and check a whole `mountlist`.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        let bytes = parse_list(r, |r| MountBody::parse(r).map(drop))?;
        Ok(MountBodies { bytes })
    }

    /// Encode the list as it was parsed.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        w.put_raw(self.bytes)
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = MountBody<'a>> + 'a {
        list_entries(self.bytes, MountBody::parse)
    }

    /// Whether the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<'a> MountBody<'a> {
    /// Decode one body (after its list's TRUE).
    fn parse(r: &mut Reader<'a>) -> Result<Self, XdrError> {
        Ok(MountBody {
            hostname: r.string(MNTNAMLEN)?,
            directory: r.string(MNTPATHLEN)?,
        })
    }

    /// Write this body as one list entry: TRUE, host, directory. All or nothing; a host or
    /// directory longer than the protocol carries is [`XdrError::TooLong`]. End the list
    /// with [`emit_list_end`].
    pub fn emit_entry(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        w.all_or_nothing(|w| {
            w.put_bool(true)?;
            w.put_string(self.hostname, MNTNAMLEN)?;
            w.put_string(self.directory, MNTPATHLEN)
        })
    }
}

/// End a list of entries (`exports`, `groups`, `mountlist`): FALSE.
pub fn emit_list_end(w: &mut Writer<'_>) -> Result<(), XdrError> {
    w.put_bool(false)
}

/// The entries of a list already validated by `parse_list` with the same `entry` decoder.
fn list_entries<'a, T>(
    bytes: &'a [u8],
    entry: impl Fn(&mut Reader<'a>) -> Result<T, XdrError> + 'a,
) -> impl Iterator<Item = T> + 'a {
    let mut r = Reader::new(bytes);
    // Validated when parsed: an error cannot happen here, and would end the list.
    std::iter::from_fn(move || match r.bool() {
        Ok(true) => entry(&mut r).ok(),
        _ => None,
    })
}

/// The values of a v2 PATHCONF result, `ppathcnf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathConf {
    /// Max links to a file.
    pub link_max: i32,
    /// Max terminal input line (canonical).
    pub max_canon: i16,
    /// Max terminal input queue.
    pub max_input: i16,
    /// Max file name component.
    pub name_max: i16,
    /// Max path name.
    pub path_max: i16,
    /// Max atomic pipe write.
    pub pipe_buf: i16,
    /// Character that disables a terminal special character.
    pub vdisable: u8,
    /// Unused.
    pub xxx: i8,
    /// Which values are invalid/unlimited (Sun's `_PC_*` bits); 0: all valid.
    pub mask: [i16; 2],
}

/// `ppathcnf` on the wire: 10 words.
const PPATHCNF_LEN: usize = 10 * UNIT;

impl PathConf {
    /// The all-zero answer nfs-utils gives for a path or client it refuses.
    pub const REFUSED: PathConf = PathConf {
        link_max: 0,
        max_canon: 0,
        max_input: 0,
        name_max: 0,
        path_max: 0,
        pipe_buf: 0,
        vdisable: 0,
        xxx: 0,
        mask: [0, 0],
    };

    /// What we report for an export: we serve no file system of our own, so these are
    /// conventional POSIX-ish values. `path_max` is MNTPATHLEN (the longest path this
    /// protocol carries), `pipe_buf` POSIX's minimum, `vdisable` Linux's 0.
    pub const EXPORT: PathConf = PathConf {
        link_max: 32000,
        max_canon: 255,
        max_input: 255,
        name_max: 255,
        path_max: MNTPATHLEN as i16,
        pipe_buf: 512,
        vdisable: 0,
        xxx: 0,
        mask: [0, 0],
    };

    /// Encode `ppathcnf`: int, 5 shorts, u_char, char, `short[2]`; XDR widens each to 4
    /// bytes (shorts and chars sign-extended, u_char zero-extended), 40 bytes in all.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        let words: [u32; 10] = [
            self.link_max as u32,
            i32::from(self.max_canon) as u32,
            i32::from(self.max_input) as u32,
            i32::from(self.name_max) as u32,
            i32::from(self.path_max) as u32,
            i32::from(self.pipe_buf) as u32,
            u32::from(self.vdisable),
            i32::from(self.xxx) as u32,
            i32::from(self.mask[0]) as u32,
            i32::from(self.mask[1]) as u32,
        ];
        let mut bytes = [0u8; PPATHCNF_LEN];
        for (chunk, v) in bytes.chunks_exact_mut(UNIT).zip(words) {
            chunk.copy_from_slice(&v.to_be_bytes());
        }
        w.put_raw(&bytes)
    }

    /// Decode `ppathcnf`; a widened value outside its C type's range is
    /// [`XdrError::BadValue`].
    pub fn parse(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let bytes = r.take(PPATHCNF_LEN)?;
        let mut words = bytes
            .chunks_exact(UNIT)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
        let mut next = || words.next().ok_or(XdrError::Short);
        let short = |v: u32| i16::try_from(v as i32).map_err(|_| XdrError::BadValue(v));
        Ok(PathConf {
            link_max: next()? as i32,
            max_canon: short(next()?)?,
            max_input: short(next()?)?,
            name_max: short(next()?)?,
            path_max: short(next()?)?,
            pipe_buf: short(next()?)?,
            vdisable: {
                let v = next()?;
                u8::try_from(v).map_err(|_| XdrError::BadValue(v))?
            },
            xxx: {
                let v = next()?;
                i8::try_from(v as i32).map_err(|_| XdrError::BadValue(v))?
            },
            mask: [short(next()?)?, short(next()?)?],
        })
    }
}
