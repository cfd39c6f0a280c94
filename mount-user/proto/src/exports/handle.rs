//! Root file handles: explicit (`fh=HEX`) or synthetic (SHA-256 of the export's identity).
use sha2::{Digest, Sha256};
use std::fmt;

use super::FileHandle;
use crate::mount::{FHSIZE, FHSIZE3};

/// Magic prefix of synthetic handles, so they are recognisable in packet captures.
const SYNTHETIC_MAGIC: &[u8; 4] = b"XMD1";
/// Length of a synthetic handle: 32 bytes fits the v1/v2 `fhstatus` fixed handle too.
pub const SYNTHETIC_LEN: usize = FHSIZE;

impl FileHandle {
    /// A handle holding a copy of `bytes`; None when empty or longer than [`FHSIZE3`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > FHSIZE3 {
            return None;
        }
        let mut out = [0u8; FHSIZE3];
        out[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    /// Parse `fh=` hex: 1..=64 bytes, an even number of hex digits.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        if text.is_empty() || !text.len().is_multiple_of(2) {
            return Err(format!(
                "fh= needs an even number of hex digits (1 to {FHSIZE3} bytes), got {} digits",
                text.len()
            ));
        }
        if text.len() > 2 * FHSIZE3 {
            return Err(format!(
                "fh= is {} bytes long; at most {FHSIZE3} are allowed",
                text.len() / 2
            ));
        }
        let bytes = hex::decode(text).map_err(|e| format!("fh= is not hex: {e}"))?;
        Self::from_bytes(&bytes).ok_or_else(|| "fh= has a bad length".to_string())
    }

    /// The synthetic handle of `identity` (an absolute path, or `fsid=ID[/sub]`):
    /// `b"XMD1"` then the first 28 bytes of SHA-256("xdp-mountd:" + identity).
    /// Stable across restarts, builds and machines by construction.
    pub fn synthetic(identity: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"xdp-mountd:");
        hasher.update(identity.as_bytes());
        let digest = hasher.finalize();
        let mut bytes = [0u8; FHSIZE3];
        bytes[..4].copy_from_slice(SYNTHETIC_MAGIC);
        bytes[4..SYNTHETIC_LEN].copy_from_slice(&digest[..SYNTHETIC_LEN - 4]);
        Self {
            len: SYNTHETIC_LEN as u8,
            bytes,
        }
    }

    /// The handle's bytes as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl fmt::Debug for FileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileHandle({})", self.to_hex())
    }
}

/// Where an export's root handle comes from (shown by `describe()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleSource {
    /// `fh=HEX` in the exports file.
    Explicit,
    /// Derived from the export path.
    SyntheticPath,
    /// Derived from `fsid=` (so the handle survives moving the export).
    SyntheticFsid(String),
}

impl HandleSource {
    /// The synthetic identity of `full_path` (export path or export path + "/" + sub).
    /// `sub` is the part below the export ("" for the export itself).
    pub(crate) fn identity(&self, export_path: &str, sub: &str) -> Option<String> {
        match self {
            HandleSource::Explicit => None,
            HandleSource::SyntheticPath => Some(join(export_path, sub)),
            HandleSource::SyntheticFsid(id) => Some(if sub.is_empty() {
                format!("fsid={id}")
            } else {
                format!("fsid={id}/{sub}")
            }),
        }
    }
}

/// `base` + "/" + `sub`, without doubling the '/' of the root export.
pub(crate) fn join(base: &str, sub: &str) -> String {
    if sub.is_empty() {
        base.to_string()
    } else if base.ends_with('/') {
        format!("{base}{sub}")
    } else {
        format!("{base}/{sub}")
    }
}

impl fmt::Display for HandleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleSource::Explicit => f.write_str("fh="),
            HandleSource::SyntheticPath => f.write_str("synthetic from path"),
            HandleSource::SyntheticFsid(id) => write!(f, "synthetic from fsid={id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_handle_is_stable_golden() {
        // Golden value: changing it breaks every client's cached handle after an upgrade.
        let fh = FileHandle::synthetic("/srv/a");
        assert_eq!(fh.len, 32);
        assert_eq!(&fh.as_bytes()[..4], b"XMD1");
        let digest = Sha256::digest(b"xdp-mountd:/srv/a");
        assert_eq!(&fh.as_bytes()[4..], &digest[..28]);
        assert_eq!(
            fh.to_hex(),
            "584d4431719eade4646cd4ff7ba9383e805504cf4f91265780cbfacc6dca8cdc"
        );
    }

    #[test]
    fn different_paths_give_different_handles() {
        assert_ne!(
            FileHandle::synthetic("/srv/a"),
            FileHandle::synthetic("/srv/b")
        );
    }

    #[test]
    fn fh_hex_bounds() {
        assert_eq!(FileHandle::from_hex("ab").map(|h| h.len), Ok(1));
        assert!(FileHandle::from_hex("").is_err());
        assert!(FileHandle::from_hex("abc").is_err());
        assert!(FileHandle::from_hex("zz").is_err());
        assert_eq!(
            FileHandle::from_hex(&"00".repeat(64)).map(|h| h.len),
            Ok(64)
        );
        assert!(FileHandle::from_hex(&"00".repeat(65)).is_err());
    }

    #[test]
    fn identity_for_subdirs() {
        let p = HandleSource::SyntheticPath;
        assert_eq!(p.identity("/srv", "x/y").as_deref(), Some("/srv/x/y"));
        assert_eq!(p.identity("/", "x").as_deref(), Some("/x"));
        assert_eq!(p.identity("/srv", "").as_deref(), Some("/srv"));
        let f = HandleSource::SyntheticFsid("7".into());
        assert_eq!(f.identity("/srv", "").as_deref(), Some("fsid=7"));
        assert_eq!(f.identity("/srv", "x").as_deref(), Some("fsid=7/x"));
        assert_eq!(HandleSource::Explicit.identity("/srv", ""), None);
    }
}
