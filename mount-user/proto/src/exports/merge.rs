//! Lines that export the same path, in one file or across files, are merged as exportfs
//! merges them: their clients are added in order. The same client named twice for one path
//! is reported as exportfs reports it ("duplicated export entries", "incompatible" when the
//! options differ) and the later entry is ignored.
use std::collections::HashMap;

use super::parse::{LineError, RawExport};

/// Merges `raw` (every file's exports, in reading order). Returns the merged exports in
/// order of first appearance, the errors (conflicting `fh=`/`fsid=`) and the warnings.
pub fn merge(raw: Vec<RawExport>) -> (Vec<RawExport>, Vec<LineError>, Vec<LineError>) {
    let mut merged: Vec<RawExport> = Vec::with_capacity(raw.len());
    let mut by_path: HashMap<String, usize> = HashMap::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for r in raw {
        let Some(&i) = by_path.get(&r.path) else {
            by_path.insert(r.path.clone(), merged.len());
            merged.push(r);
            continue;
        };
        let first = &mut merged[i];
        let at = |message: String| LineError {
            origin: r.origin.clone(),
            line: r.line,
            message,
        };
        let first_at = place(&first.origin, first.line, &r.origin);
        if let Some(conflict) = conflict(first, &r, &first_at) {
            errors.push(at(conflict));
            continue;
        }
        first.fh = first.fh.or(r.fh);
        first.fsid = first.fsid.clone().or(r.fsid.clone());
        for c in r.clients {
            match first.clients.iter().find(|k| k.spec_text == c.spec_text) {
                Some(kept) => {
                    let what = if kept.options == c.options {
                        "duplicated export entries"
                    } else {
                        "incompatible duplicated export entries"
                    };
                    warnings.push(at(format!(
                        "{what}: {}:{} [IGNORED], {}:{} ({first_at}) kept",
                        c.spec_text, r.path, kept.spec_text, first.path
                    )));
                }
                None => first.clients.push(c),
            }
        }
    }
    (merged, errors, warnings)
}

/// `line N` within the same file, else `FILE:N`.
pub fn place(origin: &str, line: usize, from: &str) -> String {
    if origin == from {
        format!("line {line}")
    } else {
        format!("{origin}:{line}")
    }
}

/// The export-wide `fh=` and `fsid=` of two lines of one path must agree.
fn conflict(first: &RawExport, later: &RawExport, first_at: &str) -> Option<String> {
    if let (Some(a), Some(b)) = (&first.fh, &later.fh) {
        if a != b {
            return Some(format!(
                "conflicting fh= for {:?}: fh={} here, fh={} on {first_at}",
                later.path,
                b.to_hex(),
                a.to_hex()
            ));
        }
    }
    if let (Some(a), Some(b)) = (&first.fsid, &later.fsid) {
        if a != b {
            return Some(format!(
                "conflicting fsid= for {:?}: fsid={b} here, fsid={a} on {first_at}",
                later.path
            ));
        }
    }
    None
}
