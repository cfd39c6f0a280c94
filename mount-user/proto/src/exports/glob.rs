//! Host-name patterns of exports(5) clients: `*`, `?` and `[...]` character classes, matched
//! against the client's reverse-resolved name as nfs-utils' `wildmat` does (`*` also spans
//! dots: `*.example.com` matches `a.b.example.com`).
use std::fmt;

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
    /// A literal byte (lowercase).
    Byte(u8),
    /// `[...]` / `[!...]` / `[^...]`: one byte in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

/// A compiled host-name pattern; matching is case-insensitive and linear in practice.
#[derive(Clone, PartialEq, Eq)]
pub struct HostPattern {
    text: String,
    tokens: Vec<Token>,
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostPattern({:?})", self.text)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether `spec` uses pattern syntax (and so names no single host).
pub fn is_pattern(spec: &str) -> bool {
    spec.contains(['*', '?', '['])
}

impl HostPattern {
    /// Compiles `pattern` (lowercased); an unterminated or empty class is an error.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let text = pattern.to_ascii_lowercase();
        let bytes = text.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            i += 1;
            let token = match b {
                b'*' => {
                    // Consecutive stars mean the same as one.
                    if tokens.last() == Some(&Token::Star) {
                        continue;
                    }
                    Token::Star
                }
                b'?' => Token::One,
                b'[' => {
                    let (class, next) = parse_class(bytes, i).ok_or_else(|| {
                        format!("unterminated or empty [...] class in {pattern:?}")
                    })?;
                    i = next;
                    class
                }
                b']' => return Err(format!("unmatched ']' in {pattern:?}")),
                b if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') => Token::Byte(b),
                _ => return Err(format!("bad host name pattern {pattern:?}")),
            };
            tokens.push(token);
        }
        Ok(Self { text, tokens })
    }

    /// The pattern as written (lowercase).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches; a trailing '.' of a fully-qualified name is ignored.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let pat = &self.tokens;
        // Iterative glob with one backtrack point (the last star): no recursion blow-up.
        let (mut p, mut n) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            let c = name[n].to_ascii_lowercase();
            match pat.get(p) {
                Some(Token::Star) => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                Some(t) if single_matches(t, c) => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            }
        }
        pat[p..].iter().all(|t| *t == Token::Star)
    }
}

fn single_matches(token: &Token, c: u8) -> bool {
    match token {
        Token::Star => false,
        Token::One => true,
        Token::Byte(b) => *b == c,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated
        }
    }
}

/// Parses a class whose '[' is just before `start`; returns it and the index after ']'.
/// As in fnmatch, a ']' right after `[` or `[!` is a member, `a-z` is a range.
fn parse_class(bytes: &[u8], start: usize) -> Option<(Token, usize)> {
    let mut i = start;
    let negated = matches!(bytes.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let first = i;
    loop {
        let b = *bytes.get(i)?;
        if b == b']' && i > first {
            break;
        }
        i += 1;
        if bytes.get(i) == Some(&b'-') && bytes.get(i + 1).is_some_and(|&e| e != b']') {
            let e = bytes[i + 1];
            i += 2;
            ranges.push((b.min(e), b.max(e)));
        } else {
            ranges.push((b, b));
        }
    }
    (!ranges.is_empty()).then_some((Token::Class { negated, ranges }, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        HostPattern::new(p).unwrap().matches(n)
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("*.example.com", "a.example.com"));
        assert!(m("*.example.com", "a.b.example.com"));
        assert!(m("*.example.com", "A.Example.com."));
        assert!(!m("*.example.com", "example.com"));
        assert!(!m("*.example.com", "a.example.org"));
        assert!(m("node?.x", "node1.x"));
        assert!(!m("node?.x", "node12.x"));
        assert!(m("*", ""));
        assert!(m("a**b", "ab"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
    }

    #[test]
    fn classes() {
        assert!(m("buildhost[0-9].local.domain", "buildhost7.local.domain"));
        assert!(!m("buildhost[0-9].local.domain", "buildhostx.local.domain"));
        assert!(!m(
            "buildhost[0-9].local.domain",
            "buildhost10.local.domain"
        ));
        assert!(m("h[!0-9]", "hx"));
        assert!(!m("h[^0-9]", "h5"));
        assert!(m("h[abc-]", "h-"));
        assert!(m("h[]a]", "h]"));
        assert!(m("h[A-C]", "hb"), "classes are case-insensitive too");
        assert!(m("*[13579].odd", "n17.odd"));
        assert!(!m("*[13579].odd", "n18.odd"));
    }

    #[test]
    fn malformed_patterns() {
        for bad in ["h[0-9", "h[]", "h[!]", "a]b", "a b*", "a$*"] {
            assert!(HostPattern::new(bad).is_err(), "{bad:?}");
        }
        assert!(is_pattern("a[1]") && is_pattern("a?") && !is_pattern("a.b"));
    }

    /// A plain recursive glob over `*` and `?` (exponential, fine for short inputs).
    fn reference(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..])),
            (Some(b'?'), Some(_)) => reference(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &n[1..]),
            _ => false,
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_a_reference_glob(p in "[ab.*?]{0,8}", n in "[ab.]{0,10}") {
            let compiled = HostPattern::new(&p).unwrap();
            // A fully-qualified name's trailing dot is not part of the name.
            let name = n.strip_suffix('.').unwrap_or(&n);
            proptest::prop_assert_eq!(compiled.matches(&n), reference(p.as_bytes(), name.as_bytes()));
        }

        #[test]
        fn classes_never_panic(p in "[a-c*?\\[\\]!^-]{0,12}", n in "[a-z.-]{0,20}") {
            if let Ok(h) = HostPattern::new(&p) {
                let _ = h.matches(&n);
            }
        }
    }
}
