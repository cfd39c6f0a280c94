//! The key layout under the cluster prefix (see docs/cluster.md):
//!
//! - `P/exports`: the published exports file set, one JSON value; its mod_revision is the
//!   table generation;
//! - `P/nodes/NODE`: a node's status (JSON), attached to its lease;
//! - `P/mounts/HOST/DIR/NODE`: NODE recorded a MNT of DIR by HOST (empty value); the entry is
//!   in the cluster's mount list while any node holds a key for it;
//! - `P/handles/PATH`: a handle learned from upstream (gateway mode), JSON.
//!
//! HOST, DIR and PATH are percent-encoded (every byte but `A-Za-z0-9._:-`), so a `/` in a
//! path never splits a key component.
use std::fmt::Write as _;

/// Node names: what may appear as the last key component.
pub fn valid_node(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Percent-encodes one key component.
pub fn encode(component: &str) -> String {
    let mut out = String::with_capacity(component.len() + 8);
    for b in component.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes what [`encode`] wrote; None for a malformed escape or invalid UTF-8.
pub fn decode(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = component.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The keys of one cluster (one prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// A parsed mount key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountKey {
    /// Client host text (canonical IP text as the core records it).
    pub host: String,
    /// Mounted directory.
    pub dir: String,
    /// The node that recorded it.
    pub node: String,
}

impl Keys {
    /// The keys under `prefix` (a trailing `/` is dropped).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }
    /// Everything of this cluster.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }
    /// The published exports set.
    pub fn exports(&self) -> String {
        format!("{}/exports", self.prefix)
    }
    /// Prefix of the node status keys.
    pub fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }
    /// One node's status key.
    pub fn node(&self, node: &str) -> String {
        format!("{}/nodes/{node}", self.prefix)
    }
    /// Prefix of the mount keys.
    pub fn mounts(&self) -> String {
        format!("{}/mounts/", self.prefix)
    }
    /// The key saying `node` recorded `(host, dir)`.
    pub fn mount(&self, host: &str, dir: &str, node: &str) -> String {
        format!(
            "{}/mounts/{}/{}/{node}",
            self.prefix,
            encode(host),
            encode(dir)
        )
    }
    /// Prefix of the learned-handle keys.
    pub fn handles(&self) -> String {
        format!("{}/handles/", self.prefix)
    }
    /// The learned-handle key of `path`.
    pub fn handle(&self, path: &str) -> String {
        format!("{}/handles/{}", self.prefix, encode(path))
    }
    /// Parses a mount key; None when `key` is not one.
    pub fn parse_mount(&self, key: &str) -> Option<MountKey> {
        let rest = key.strip_prefix(&self.mounts())?;
        let mut parts = rest.split('/');
        let (host, dir, node) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !valid_node(node) {
            return None;
        }
        Some(MountKey {
            host: decode(host)?,
            dir: decode(dir)?,
            node: node.to_owned(),
        })
    }
    /// Parses a learned-handle key into its path.
    pub fn parse_handle(&self, key: &str) -> Option<String> {
        decode(key.strip_prefix(&self.handles())?)
    }
    /// Parses a node status key into the node name.
    pub fn parse_node<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.nodes()).filter(|n| valid_node(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_round_trip_and_never_contain_a_slash() {
        for s in ["/srv/a b", "10.0.0.1", "fd00::1", "/ü/%2F", "", "a/b/c"] {
            let e = encode(s);
            assert!(!e.contains('/'), "{e}");
            assert_eq!(decode(&e).as_deref(), Some(s));
        }
        assert_eq!(encode("/srv/x"), "%2Fsrv%2Fx");
        assert_eq!(decode("%2"), None);
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%FF"), None, "not UTF-8");
    }

    #[test]
    fn mount_keys_parse_back() {
        let k = Keys::new("/xdp-mountd/");
        let key = k.mount("10.0.0.1", "/srv/a", "node-a");
        assert_eq!(key, "/xdp-mountd/mounts/10.0.0.1/%2Fsrv%2Fa/node-a");
        assert_eq!(
            k.parse_mount(&key),
            Some(MountKey {
                host: "10.0.0.1".into(),
                dir: "/srv/a".into(),
                node: "node-a".into()
            })
        );
        assert_eq!(k.parse_mount("/xdp-mountd/mounts/h/d"), None);
        assert_eq!(k.parse_mount("/xdp-mountd/mounts/h/d/n/x"), None);
        assert_eq!(k.parse_mount("/other/mounts/h/d/n"), None);
        assert_eq!(
            k.parse_handle(&k.handle("/srv/a")).as_deref(),
            Some("/srv/a")
        );
        assert_eq!(k.parse_node("/xdp-mountd/nodes/a"), Some("a"));
        assert_eq!(k.parse_node("/xdp-mountd/nodes/a/b"), None);
    }

    #[test]
    fn node_names() {
        assert!(valid_node("node-1.rack_2"));
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_node(bad), "{bad:?}");
        }
    }
}
