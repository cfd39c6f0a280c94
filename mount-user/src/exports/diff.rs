//! What a reload changed: exports added, removed and changed (clients, options or handle),
//! as `xdp-mountd reload` prints it.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use mount_proto::exports::{Export, ExportTable};

/// The difference between two tables, by export path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDiff {
    /// Paths exported now and not before.
    pub added: Vec<String>,
    /// Paths exported before and not now.
    pub removed: Vec<String>,
    /// Paths exported in both, with other clients, options or handle.
    pub changed: Vec<String>,
}

impl TableDiff {
    /// Compares `old` with `new`; paths in `new`'s order, then removed ones in `old`'s.
    pub fn between(old: &ExportTable, new: &ExportTable) -> Self {
        let before: HashMap<&str, &Export> = old.exports().iter().map(|e| (e.path(), e)).collect();
        let mut diff = TableDiff::default();
        for e in new.exports() {
            match before.get(e.path()) {
                None => diff.added.push(e.path().to_string()),
                Some(prev) if signature(prev) != signature(e) => {
                    diff.changed.push(e.path().to_string());
                }
                Some(_) => {}
            }
        }
        for e in old.exports() {
            if new.lookup_exact(e.path().as_bytes()).is_none() {
                diff.removed.push(e.path().to_string());
            }
        }
        diff
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Everything about an export that a client can notice.
fn signature(e: &Export) -> String {
    let mut s = format!("{} {}", e.handle().to_hex(), e.handle_source());
    for r in e.rules() {
        s.push_str(&format!(
            "|{}({}) {}",
            r.spec,
            r.options.describe(),
            r.options.describe_flavors()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use mount_proto::exports::StaticResolver;

    use super::*;

    fn t(text: &str) -> ExportTable {
        ExportTable::parse_str_with(text, "e", &StaticResolver::default()).unwrap()
    }

    #[test]
    fn added_removed_changed() {
        let old = t("/a *(ro)\n/b *\n/c 10.0.0.1\n");
        let new = t("/c 10.0.0.1\n/a *(rw)\n/d *\n");
        let d = TableDiff::between(&old, &new);
        assert_eq!(d.added, ["/d"]);
        assert_eq!(d.removed, ["/b"]);
        assert_eq!(d.changed, ["/a"]);
        assert!(TableDiff::between(&new, &new).is_empty());
    }
}
