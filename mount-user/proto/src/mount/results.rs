//! Encoders of the MOUNT results: `fhstatus`, `mountres3`, `mountlist`, `exports`,
//! `ppathcnf`. Lists are truncated at an entry boundary when the reply buffer is full.
use std::net::IpAddr;
use std::ops::ControlFlow;

use super::{FHSIZE, FHSIZE3, MNTNAMLEN, MNTPATHLEN};
use crate::exports::{ClientCheck, ExportTable, FileHandle, HostFacts};
use crate::mountlist::MountList;
use crate::rpc::{AUTH_NONE, AUTH_SYS};
use crate::xdr::{padded, Writer, XdrError, UNIT};

/// The Linux client keeps at most this many flavors of a `mountres3`.
pub const MAX_FLAVORS: usize = 12;

/// Write a v1/v2 `fhstatus` of 0 with `handle` zero-padded to 32 bytes; the caller has
/// checked that it fits.
pub fn put_fhstatus_ok(w: &mut Writer<'_>, handle: &[u8]) -> Result<(), XdrError> {
    let mut fixed = [0u8; FHSIZE];
    let n = handle.len().min(FHSIZE);
    fixed[..n].copy_from_slice(&handle[..n]);
    let m = w.mark();
    let res = w.put_u32(0).and_then(|()| w.put_opaque_fixed(&fixed));
    if res.is_err() {
        w.rewind(m);
    }
    res
}

/// Write a v3 `mountres3` of MNT3_OK: `fhandle3` and `auth_flavors`.
///
/// Flavors keep the rule's order, except that AUTH_NONE moves to the end (nfs-utils drops it;
/// a Linux client without `sec=` takes the first flavor it supports, and AUTH_NONE first
/// would demote every such mount to anonymous access). At most [`MAX_FLAVORS`] are listed;
/// an empty list becomes `[AUTH_SYS]`, the exports(5) default.
pub fn put_mountres3_ok(
    w: &mut Writer<'_>,
    handle: &[u8],
    flavors: &[u32],
) -> Result<(), XdrError> {
    if handle.len() > FHSIZE3 {
        return Err(XdrError::TooLong {
            len: handle.len(),
            max: FHSIZE3,
        });
    }
    // Assembled on the stack and written with one bounds check and one copy: word-by-word
    // writes were ~170 instructions of a ~1500-instruction MNT.
    let mut buf = [0u8; MOUNTRES3_MAX];
    // buf[0..4] = MNT3_OK (0), already zero.
    let hlen = handle.len();
    buf[UNIT..2 * UNIT].copy_from_slice(&(hlen as u32).to_be_bytes());
    buf[2 * UNIT..2 * UNIT + hlen].copy_from_slice(handle);
    let count_at = 2 * UNIT + padded(hlen);
    let mut at = count_at + UNIT;
    let mut count = 0u32;
    let ordered = flavors
        .iter()
        .filter(|&&f| f != AUTH_NONE)
        .chain(flavors.iter().filter(|&&f| f == AUTH_NONE));
    for &f in ordered.take(MAX_FLAVORS) {
        buf[at..at + UNIT].copy_from_slice(&f.to_be_bytes());
        at += UNIT;
        count += 1;
    }
    if count == 0 {
        buf[at..at + UNIT].copy_from_slice(&AUTH_SYS.to_be_bytes());
        at += UNIT;
        count = 1;
    }
    buf[count_at..count_at + UNIT].copy_from_slice(&count.to_be_bytes());
    // All or nothing: `put_raw` checks the room before writing.
    w.put_raw(&buf[..at])
}

/// Largest `mountres3` of MNT3_OK: status, `fhandle3` (length + 64 bytes), count, flavors.
const MOUNTRES3_MAX: usize = UNIT + UNIT + FHSIZE3 + UNIT + MAX_FLAVORS * UNIT;

/// A handle's meaningful bytes, or None when its length field is out of range.
pub fn handle_bytes(h: &FileHandle) -> Option<&[u8]> {
    match h.len as usize {
        0 => None,
        n => h.bytes.get(..n),
    }
}

/// Write the DUMP `mountlist`; returns whether entries were left out for lack of room.
/// Entries whose host or directory cannot be expressed (longer than MNTNAMLEN/MNTPATHLEN,
/// e.g. from a hand-edited rmtab) are skipped.
pub fn put_mountlist(w: &mut Writer<'_>, mounts: &MountList) -> Result<bool, XdrError> {
    // Room for the terminating 0 is kept free throughout.
    if w.remaining() < UNIT {
        return Err(XdrError::Overflow);
    }
    let mut truncated = false;
    mounts.for_each(|host, dir| {
        if host.len() > MNTNAMLEN || dir.len() > MNTPATHLEN {
            return ControlFlow::Continue(());
        }
        let m = w.mark();
        let res = (|| {
            w.put_u32(1)?;
            w.put_string(host.as_bytes(), MNTNAMLEN)?;
            w.put_string(dir.as_bytes(), MNTPATHLEN)
        })();
        if res.is_err() || w.remaining() < UNIT {
            w.rewind(m);
            truncated = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    w.put_u32(0)?;
    Ok(truncated)
}

/// Write the precomputed `exports` list, cut after the last entry that fits (with the
/// terminating 0) when the whole list does not; returns whether it was cut.
pub fn put_export_list(w: &mut Writer<'_>, table: &ExportTable) -> Result<bool, XdrError> {
    let list = table.export_list_xdr();
    if list.len() >= UNIT && list.len() <= w.remaining() {
        w.put_raw(list)?;
        return Ok(false);
    }
    if w.remaining() < UNIT {
        return Err(XdrError::Overflow);
    }
    let room = w.remaining() - UNIT;
    // Entry ends ascend; take the last one that fits and lies inside the list.
    let cut = table
        .export_entry_ends()
        .iter()
        .copied()
        .take_while(|&end| end <= room && end <= list.len())
        .last()
        .unwrap_or(0);
    w.put_raw(&list[..cut])?;
    w.put_u32(0)?;
    // An empty precomputed list (never produced by the table) is encoded as an empty list.
    Ok(list.len() >= UNIT)
}

/// Result of filtering the export list by client.
pub enum Filtered {
    /// The list was written; `true` when entries were left out for lack of room.
    Written(bool),
    /// A rule needs the client's looked-up facts (host name, netgroups).
    NeedName,
}

/// Write the `exports` list restricted to the exports `ip`/`host` could mount.
pub fn put_filtered_exports(
    w: &mut Writer<'_>,
    table: &ExportTable,
    ip: IpAddr,
    host: Option<&HostFacts>,
) -> Result<Filtered, XdrError> {
    if w.remaining() < UNIT {
        return Err(XdrError::Overflow);
    }
    let start = w.mark();
    let mut truncated = false;
    for export in table.exports() {
        match export.check_client(ip, host) {
            ClientCheck::Denied => continue,
            ClientCheck::NeedName if host.is_none() => {
                w.rewind(start);
                return Ok(Filtered::NeedName);
            }
            ClientCheck::NeedName => continue,
            ClientCheck::Allowed(_) => {}
        }
        let m = w.mark();
        let res = (|| {
            w.put_u32(1)?;
            w.put_string(export.path().as_bytes(), MNTPATHLEN)?;
            for group in export.groups() {
                if group.len() <= MNTNAMLEN {
                    w.put_u32(1)?;
                    w.put_string(group.as_bytes(), MNTNAMLEN)?;
                }
            }
            w.put_u32(0)
        })();
        match res {
            Ok(()) if w.remaining() >= UNIT => {}
            // An export path that cannot be expressed is left out.
            Err(XdrError::TooLong { .. }) => w.rewind(m),
            _ => {
                w.rewind(m);
                truncated = true;
                break;
            }
        }
    }
    w.put_u32(0)?;
    Ok(Filtered::Written(truncated))
}

/// The values of a v2 PATHCONF reply.
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
}

/// Write `ppathcnf`: int, 5 shorts, u_char, char, `short[2]`; XDR widens each to 4 bytes
/// (shorts and chars sign-extended, u_char zero-extended), 40 bytes in all.
pub fn put_ppathcnf(w: &mut Writer<'_>, pc: &PathConf) -> Result<(), XdrError> {
    let words: [u32; 10] = [
        pc.link_max as u32,
        i32::from(pc.max_canon) as u32,
        i32::from(pc.max_input) as u32,
        i32::from(pc.name_max) as u32,
        i32::from(pc.path_max) as u32,
        i32::from(pc.pipe_buf) as u32,
        u32::from(pc.vdisable),
        i32::from(pc.xxx) as u32,
        i32::from(pc.mask[0]) as u32,
        i32::from(pc.mask[1]) as u32,
    ];
    let mut bytes = [0u8; 40];
    for (chunk, v) in bytes.chunks_exact_mut(UNIT).zip(words) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    w.put_raw(&bytes)
}
