//! Lexical normalisation of a MOUNT `dirpath`, into a stack buffer (no allocation).
//!
//! Rules (docs/protocol.md, "Semantics"):
//! - the empty path means `/` (as nfs-utils does);
//! - a path not starting with `/` is relative: it names no export ([`PathError::Relative`],
//!   answered NOENT);
//! - `//` collapses, `.` components vanish, a trailing `/` is dropped;
//! - `..` removes the previous component, lexically (we have no file system to resolve
//!   symlinks in); a `..` at `/` is [`PathError::AboveRoot`] (answered ACCES). The lowest
//!   depth any `..` reached is kept in [`Normalised::min_depth`] so the caller can refuse a
//!   path that climbed above the export it finally matches (`/srv/a/../a/x` under `/srv/a`);
//! - a NUL byte or invalid UTF-8 cannot name an export ([`PathError::Nul`],
//!   [`PathError::NotUtf8`], answered NOENT).

use super::MNTPATHLEN;

/// Why a path cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Does not start with `/`.
    Relative,
    /// A `..` would climb above `/`.
    AboveRoot,
    /// Contains a NUL byte.
    Nul,
    /// Not UTF-8 (export paths are).
    NotUtf8,
    /// Longer than the buffer (cannot happen for a decoded `dirpath<1024>`).
    TooLong,
}

/// Stack storage for a normalised path, filled only when the path is not normal already.
pub struct NormBuf {
    // Lazily: zeroing 1 KiB costs more than the whole fast path of a normal path.
    buf: Option<[u8; MNTPATHLEN]>,
}

impl Default for NormBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl NormBuf {
    /// Empty storage.
    pub const fn new() -> Self {
        Self { buf: None }
    }
}

/// A normalised absolute path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalised<'b> {
    /// The path: absolute, no `//`, no trailing `/` (except `/` itself), no `.`/`..`.
    pub path: &'b str,
    /// The smallest number of components left right after a `..`; None without `..`.
    pub min_depth: Option<usize>,
}

/// Number of components of a normalised path (`/` has 0, `/srv/a` has 2).
pub fn depth(path: &str) -> usize {
    if path == "/" {
        0
    } else {
        path.bytes().filter(|&b| b == b'/').count()
    }
}

/// Whether `raw` is already normal: `/`, or `/`-separated components that are neither
/// empty, `.` nor `..`, with no NUL. Clients send such paths almost always.
fn is_normal(raw: &[u8]) -> bool {
    let Some((b'/', rest)) = raw.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    // One pass: a component is bad when empty, or all dots and at most two long.
    let mut len = 0usize;
    let mut dots = 0usize;
    for &b in rest {
        match b {
            0 => return false,
            b'/' => {
                if len == 0 || (dots == len && len <= 2) {
                    return false;
                }
                len = 0;
                dots = 0;
            }
            b'.' => {
                len += 1;
                dots += 1;
            }
            _ => len += 1,
        }
    }
    !(len == 0 || (dots == len && len <= 2))
}

/// Normalise `raw`: borrowed as it is when already normal, else rebuilt into `buf`.
pub fn normalise<'b>(raw: &'b [u8], buf: &'b mut NormBuf) -> Result<Normalised<'b>, PathError> {
    if is_normal(raw) && raw.len() <= MNTPATHLEN {
        let path = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?;
        return Ok(Normalised {
            path,
            min_depth: None,
        });
    }
    rebuild(raw, buf)
}

/// The general case of [`normalise`].
fn rebuild<'b>(raw: &[u8], buf: &'b mut NormBuf) -> Result<Normalised<'b>, PathError> {
    if raw.is_empty() {
        return Ok(Normalised {
            path: "/",
            min_depth: None,
        });
    }
    if raw[0] != b'/' {
        return Err(PathError::Relative);
    }
    if raw.contains(&0) {
        return Err(PathError::Nul);
    }
    let text = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?;
    let out = buf.buf.insert([0; MNTPATHLEN]);
    let mut len = 0usize;
    let mut depth = 0usize;
    let mut min_depth: Option<usize> = None;
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if depth == 0 {
                    return Err(PathError::AboveRoot);
                }
                // Drop the last "/name": cut at the last '/'.
                len = out[..len].iter().rposition(|&b| b == b'/').unwrap_or(0);
                depth -= 1;
                min_depth = Some(min_depth.map_or(depth, |m| m.min(depth)));
            }
            name => {
                let end = len + 1 + name.len();
                if end > out.len() {
                    return Err(PathError::TooLong);
                }
                out[len] = b'/';
                out[len + 1..end].copy_from_slice(name.as_bytes());
                len = end;
                depth += 1;
            }
        }
    }
    let path = if len == 0 {
        "/"
    } else {
        // Whole components of a UTF-8 string split at an ASCII byte stay UTF-8.
        std::str::from_utf8(&out[..len]).map_err(|_| PathError::NotUtf8)?
    };
    Ok(Normalised { path, min_depth })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(raw: &str) -> Result<(String, Option<usize>), PathError> {
        let mut buf = NormBuf::new();
        normalise(raw.as_bytes(), &mut buf).map(|n| (n.path.to_owned(), n.min_depth))
    }

    #[test]
    fn collapses_and_trims() {
        assert_eq!(norm("/srv/a"), Ok(("/srv/a".into(), None)));
        assert_eq!(norm("/srv//a/"), Ok(("/srv/a".into(), None)));
        assert_eq!(norm("//srv///a//"), Ok(("/srv/a".into(), None)));
        assert_eq!(
            norm("/tmp/peer/export/"),
            Ok(("/tmp/peer/export".into(), None))
        );
        assert_eq!(norm("/./srv/./a/."), Ok(("/srv/a".into(), None)));
        assert_eq!(norm("/"), Ok(("/".into(), None)));
        assert_eq!(norm("//"), Ok(("/".into(), None)));
        assert_eq!(norm(""), Ok(("/".into(), None)));
    }

    #[test]
    fn dotdot_is_lexical_and_tracks_depth() {
        assert_eq!(norm("/srv/a/x/../y"), Ok(("/srv/a/y".into(), Some(2))));
        assert_eq!(norm("/srv/a/../a/x"), Ok(("/srv/a/x".into(), Some(1))));
        assert_eq!(norm("/srv/.."), Ok(("/".into(), Some(0))));
        assert_eq!(norm("/a/b/c/../../d/../e"), Ok(("/a/e".into(), Some(1))));
    }

    #[test]
    fn rejects() {
        assert_eq!(norm("/.."), Err(PathError::AboveRoot));
        assert_eq!(norm("/srv/../.."), Err(PathError::AboveRoot));
        assert_eq!(norm("srv/a"), Err(PathError::Relative));
        assert_eq!(norm("."), Err(PathError::Relative));
        assert_eq!(norm("/srv\0/a"), Err(PathError::Nul));
        let mut buf = NormBuf::new();
        assert_eq!(normalise(b"/srv/\xff", &mut buf), Err(PathError::NotUtf8));
    }

    #[test]
    fn max_length_fits() {
        let raw = format!("/{}", "a".repeat(MNTPATHLEN - 1));
        assert_eq!(norm(&raw).unwrap().0.len(), MNTPATHLEN);
    }

    #[test]
    fn depth_counts_components() {
        assert_eq!(depth("/"), 0);
        assert_eq!(depth("/srv"), 1);
        assert_eq!(depth("/srv/a/b"), 3);
    }

    #[test]
    fn fast_path_only_for_normal_paths() {
        for p in ["/", "/srv", "/srv/a", "/a.b/..c/...", "/\u{e9}t\u{e9}"] {
            assert!(is_normal(p.as_bytes()), "{p}");
        }
        for p in [
            "", "srv", "//", "/srv/", "/srv//a", "/./a", "/a/.", "/a/..", "/a\0b",
        ] {
            assert!(!is_normal(p.as_bytes()), "{p:?}");
        }
        // Borrowed, not copied: the buffer stays untouched.
        let mut buf = NormBuf::new();
        let raw = b"/srv/a";
        let n = normalise(raw, &mut buf).unwrap();
        assert_eq!(n.path.as_ptr(), raw.as_ptr());
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_rebuild(parts in proptest::collection::vec(
            prop_oneof![Just("".to_string()), Just(".".to_string()), Just("..".to_string()),
                        Just("\0".to_string()), "[a-c.]{1,3}"], 0..8)) {
            let raw = format!("/{}", parts.join("/"));
            let mut a = NormBuf::new();
            let mut b = NormBuf::new();
            prop_assert_eq!(normalise(raw.as_bytes(), &mut a), rebuild(raw.as_bytes(), &mut b));
        }

        #[test]
        fn normalised_is_canonical(parts in proptest::collection::vec(
            prop_oneof![Just("".to_string()), Just(".".to_string()), Just("..".to_string()), "[a-c]{1,3}"], 0..12)) {
            let raw = format!("/{}", parts.join("/"));
            if let Ok((p, _)) = norm(&raw) {
                prop_assert!(p.starts_with('/'));
                prop_assert!(p == "/" || !p.ends_with('/'));
                prop_assert!(!p.contains("//"));
                prop_assert!(!p.split('/').any(|c| c == "." || c == ".."));
                // Idempotent.
                prop_assert_eq!(norm(&p), Ok((p.clone(), None)));
            }
        }
    }
}
