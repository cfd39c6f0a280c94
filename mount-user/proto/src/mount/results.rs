//! The server's writers of the MOUNT results that come from its state: `mountres3` with
//! the export's flavor policy, `mountlist` from the mount list, `exports` from the export
//! table (precomputed, or filtered per client). Lists are truncated at an entry boundary
//! when the reply buffer is full. The layouts themselves, with their decoders, are in
//! [`super::wire`].
use std::net::IpAddr;
use std::ops::ControlFlow;

use super::wire::{emit_list_end, ExportNode, Flavors, MountBody, MountRes3, MAX_FLAVORS};
use super::{MNTNAMLEN, MNTPATHLEN};
use crate::exports::{ClientCheck, ExportTable, FileHandle, HostFacts};
use crate::mountlist::MountList;
use crate::rpc::{AUTH_NONE, AUTH_SYS};
use crate::xdr::{Writer, XdrError, UNIT};

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
    let mut words = [0u8; MAX_FLAVORS * UNIT];
    let mut count = 0;
    let ordered = flavors
        .iter()
        .filter(|&&f| f != AUTH_NONE)
        .chain(flavors.iter().filter(|&&f| f == AUTH_NONE));
    for (&f, slot) in ordered.zip(words.chunks_exact_mut(UNIT)) {
        slot.copy_from_slice(&f.to_be_bytes());
        count += 1;
    }
    if count == 0 {
        words[..UNIT].copy_from_slice(&AUTH_SYS.to_be_bytes());
        count = 1;
    }
    let flavors = Flavors::from_be_words(&words[..count * UNIT]).unwrap_or_default();
    MountRes3::Ok { handle, flavors }.emit(w)
}

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
        let body = MountBody {
            hostname: host.as_bytes(),
            directory: dir.as_bytes(),
        };
        if body.emit_entry(w).is_err() || w.remaining() < UNIT {
            w.rewind(m);
            truncated = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    emit_list_end(w)?;
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
    emit_list_end(w)?;
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
        let groups = export
            .groups()
            .iter()
            .map(|g| g.as_bytes())
            .filter(|g| g.len() <= MNTNAMLEN);
        match ExportNode::emit_entry(w, export.path().as_bytes(), groups) {
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
    emit_list_end(w)?;
    Ok(Filtered::Written(truncated))
}
