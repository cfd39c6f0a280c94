//! exports(5) syntax -> raw entries, with `FILE:LINE: message` errors.
//!
//! Decisions where exports(5)/nfs-utils leave room (documented in `ExportTable` docs too):
//! - a line with a path and no client exports to `*` (nfs-utils does, with a warning; so do we);
//! - `host (rw)` (blank before the parenthesis) is an error: nfs-utils would export `(rw)`
//!   to the world, a classic security mistake;
//! - the obsolete `gss/krb5` client form loads with a warning pointing to `sec=` (it matches
//!   no client), as exportfs still accepts it;
//! - the same path on several lines (or files) is merged later, as exportfs does
//!   (`merge.rs`).
use std::fmt;

use super::hosts::{parse_host_spec, HostSpec};
use super::options::{OptionError, Options};
use super::FileHandle;
use crate::mount::{MNTNAMLEN, MNTPATHLEN};

/// One error in an exports file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The file name (or other origin) the text came from.
    pub origin: String,
    /// 1-based line number (the first physical line of a continued line).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.origin, self.line, self.message)
    }
}

/// One client rule as parsed.
#[derive(Debug, Clone)]
pub struct RawClient {
    /// The host part as written (`10.0.0.0/8`, `*.example.com`, `*`).
    pub spec_text: String,
    /// The parsed host part.
    pub spec: HostSpec,
    /// Line defaults plus this client's options.
    pub options: Options,
}

/// One export line as parsed.
#[derive(Debug, Clone)]
pub struct RawExport {
    /// The file it came from.
    pub origin: String,
    /// Normalised absolute path.
    pub path: String,
    /// Line number of the export.
    pub line: usize,
    /// Client rules in file order.
    pub clients: Vec<RawClient>,
    /// The export's explicit handle (`fh=` of any of its clients; they must agree).
    pub fh: Option<FileHandle>,
    /// The export's `fsid=` (they must agree likewise).
    pub fsid: Option<String>,
    /// The line named no client, so `*` was assumed.
    pub implicit_world: bool,
}

/// What one exports text gave: its exports, its errors and its warnings (all with line).
#[derive(Debug, Default)]
pub struct Parsed {
    /// Every export line that parsed, in order.
    pub exports: Vec<RawExport>,
    /// Every error found.
    pub errors: Vec<LineError>,
    /// Things exportfs accepts with a warning.
    pub warnings: Vec<LineError>,
}

/// Parse exports text; returns every export that parsed and every error found.
pub fn parse(text: &str, origin: &str) -> Parsed {
    let mut out = Parsed::default();
    for (line_no, logical) in logical_lines(text) {
        let note = |message: String| LineError {
            origin: origin.to_string(),
            line: line_no,
            message,
        };
        match parse_line(&logical) {
            Ok(None) => {}
            Ok(Some(mut raw)) => {
                raw.line = line_no;
                raw.origin = origin.to_string();
                if raw.implicit_world {
                    out.warnings.push(note(format!(
                        "export {:?} names no client: exporting to the world (*), as \
                         nfs-utils does",
                        raw.path
                    )));
                }
                for c in &raw.clients {
                    if let HostSpec::Obsolete(flavor) = &c.spec {
                        out.warnings.push(note(format!(
                            "obsolete client form {:?} matches no client; write \
                             *(sec={flavor}) instead",
                            c.spec_text
                        )));
                    }
                }
                out.exports.push(raw);
            }
            Err(message) => out.errors.push(note(message)),
        }
    }
    out
}

/// Join continued lines (trailing `\`); yields (first line number, text). Comments are
/// removed first, per physical line, as nfs-utils does: a `#` outside double quotes runs to
/// the end of its line, and a `\` inside a comment does not continue the line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    // Quote state carries over a continuation, so `"a \` + `b"` is one quoted token.
    let mut quoted = false;
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let mut body_end = line.len();
        for (i, c) in line.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '#' if !quoted => {
                    body_end = i;
                    break;
                }
                _ => {}
            }
        }
        let body = line[..body_end].trim_end();
        let in_comment = body_end < line.len();
        let (body, continued) = match body.strip_suffix('\\') {
            Some(b) if !in_comment => (b, true),
            _ => (body, false),
        };
        let entry = current.get_or_insert_with(|| (idx + 1, String::new()));
        if !entry.1.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body);
        if !continued {
            quoted = false;
            if let Some(done) = current.take() {
                out.push(done);
            }
        }
    }
    if let Some(done) = current.take() {
        out.push(done);
    }
    out
}

/// Split a logical line (comments already removed) into tokens: blanks separate, except
/// inside double quotes or parentheses. Quotes are removed.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut tok = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut depth = 0u32;
    for c in line.chars() {
        if quoted {
            if c == '"' {
                quoted = false;
            } else {
                tok.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                in_token = true;
            }
            c if c.is_whitespace() && depth == 0 => {
                if in_token {
                    tokens.push(std::mem::take(&mut tok));
                    in_token = false;
                }
            }
            c => {
                if c == '(' {
                    depth += 1;
                } else if c == ')' {
                    depth = depth.saturating_sub(1);
                }
                tok.push(c);
                in_token = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if depth > 0 {
        return Err(format!("missing ')' in \"{tok}\""));
    }
    if in_token {
        tokens.push(tok);
    }
    Ok(tokens)
}

/// Parse one logical line; None for blank/comment lines.
fn parse_line(line: &str) -> Result<Option<RawExport>, String> {
    let tokens = tokenize(line)?;
    let Some((path_tok, rest)) = tokens.split_first() else {
        return Ok(None);
    };
    let path = normalise_export_path(&unescape(path_tok)?)?;
    let mut defaults = Options::default();
    let mut rest = rest;
    if let Some((first, tail)) = rest.split_first() {
        if let Some(list) = first.strip_prefix('-') {
            defaults
                .apply_list(list)
                .map_err(|e| option_error(e, first))?;
            rest = tail;
        }
    }
    let mut clients = Vec::with_capacity(rest.len().max(1));
    for tok in rest {
        clients.push(parse_client(tok, &defaults)?);
    }
    if clients.is_empty() {
        // parse() logs the warning: it knows the file and line.
        clients.push(RawClient {
            spec_text: "*".into(),
            spec: HostSpec::Any,
            options: defaults,
        });
    }
    let implicit_world = rest.is_empty();
    let fh = agree(&clients, |o| o.fh, "fh=", |fh| fh.to_hex())?;
    let fsid = agree(&clients, |o| o.fsid.clone(), "fsid=", |s| s.clone())?;
    Ok(Some(RawExport {
        origin: String::new(),
        path,
        line: 0,
        clients,
        fh,
        fsid,
        implicit_world,
    }))
}

/// The export-wide value of an option given per client: all clients that give it must agree.
fn agree<T: PartialEq>(
    clients: &[RawClient],
    get: impl Fn(&Options) -> Option<T>,
    what: &str,
    show: impl Fn(&T) -> String,
) -> Result<Option<T>, String> {
    let mut found: Option<(T, &str)> = None;
    for c in clients {
        if let Some(v) = get(&c.options) {
            match &found {
                Some((prev, who)) if *prev != v => {
                    return Err(format!(
                        "conflicting {what} for one export: {what}{} for {who}, {what}{} for {}",
                        show(prev),
                        show(&v),
                        c.spec_text
                    ));
                }
                Some(_) => {}
                None => found = Some((v, &c.spec_text)),
            }
        }
    }
    Ok(found.map(|(v, _)| v))
}

fn option_error(e: OptionError, token: &str) -> String {
    match e {
        OptionError::Unknown(opt) => format!("unknown option \"{opt}\" in \"{token}\""),
        OptionError::Malformed(msg) => format!("{msg} in \"{token}\""),
    }
}

fn parse_client(tok: &str, defaults: &Options) -> Result<RawClient, String> {
    if tok.starts_with('(') {
        return Err(format!(
            "options \"{tok}\" are separated from their client by a blank; write client{tok} \
             (exports(5) would apply them to the whole world)"
        ));
    }
    if tok.starts_with('-') {
        return Err(format!(
            "default options \"{tok}\" must directly follow the export path"
        ));
    }
    let (host, list) = match tok.split_once('(') {
        Some((host, rest)) => match rest.strip_suffix(')') {
            Some(list) if !list.contains(['(', ')']) => (host, Some(list)),
            _ => return Err(format!("malformed client \"{tok}\"")),
        },
        None if tok.contains(')') => return Err(format!("malformed client \"{tok}\"")),
        None => (tok, None),
    };
    // The EXPORT reply carries each client spec as a `name` (string<255>).
    if host.len() > MNTNAMLEN {
        return Err(format!(
            "client spec is {} bytes long; the MOUNT protocol carries at most {MNTNAMLEN}",
            host.len()
        ));
    }
    let spec = parse_host_spec(host).map_err(|m| format!("{m} in \"{tok}\""))?;
    let mut options = defaults.clone();
    if let Some(list) = list {
        options.apply_list(list).map_err(|e| option_error(e, tok))?;
    }
    Ok(RawClient {
        spec_text: host.to_string(),
        spec,
        options,
    })
}

/// Decode `\ooo` octal escapes (as written by exportfs for blanks: `\040`).
fn unescape(tok: &str) -> Result<String, String> {
    if !tok.contains('\\') {
        return Ok(tok.to_string());
    }
    let b = tok.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            let byte = u8::try_from(v).map_err(|_| format!("bad octal escape in {tok:?}"))?;
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("path {tok:?} is not UTF-8 after unescaping"))
}

/// Check and normalise an export path: absolute, no "." or ".." components, "//" collapsed,
/// no trailing '/', at most [`MNTPATHLEN`] bytes.
pub fn normalise_export_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("export path {path:?} is not absolute"));
    }
    if path.contains('\0') {
        return Err(format!("export path {path:?} contains a NUL byte"));
    }
    let mut out = String::with_capacity(path.len());
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if comp == "." || comp == ".." {
            return Err(format!(
                "export path {path:?} contains a \"{comp}\" component"
            ));
        }
        out.push('/');
        out.push_str(comp);
    }
    if out.is_empty() {
        out.push('/');
    }
    if out.len() > MNTPATHLEN {
        return Err(format!(
            "export path is {} bytes long; the MOUNT protocol carries at most {MNTPATHLEN}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logical lines with blanks collapsed (their exact count does not matter).
    fn lines(text: &str) -> Vec<(usize, String)> {
        logical_lines(text)
            .into_iter()
            .map(|(n, l)| (n, l.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect()
    }

    #[test]
    fn continuation_and_comments() {
        assert_eq!(
            lines("/a \\\n  h1 \\\n h2\n/b h3\n"),
            vec![(1, "/a h1 h2".to_string()), (4, "/b h3".to_string())]
        );
        // A backslash inside a comment does not swallow the next line (as in nfs-utils).
        assert_eq!(
            lines("# note \\\n/a *\n"),
            vec![(1, String::new()), (2, "/a *".to_string())]
        );
        // '#' inside quotes is part of the path.
        assert_eq!(
            lines("\"/a#b\" * # c\n"),
            vec![(1, "\"/a#b\" *".to_string())]
        );
        // CRLF and trailing blanks after the backslash.
        assert_eq!(lines("/a \\  \r\n*\r\n"), vec![(1, "/a *".to_string())]);
        // A continuation on the last line just ends.
        assert_eq!(lines("/a *\\"), vec![(1, "/a *".to_string())]);
    }

    #[test]
    fn tokens() {
        assert_eq!(
            tokenize("\"/my dir\" h(rw, sync)  *").unwrap(),
            vec!["/my dir", "h(rw, sync)", "*"]
        );
        assert_eq!(tokenize("").unwrap(), Vec::<String>::new());
        assert_eq!(tokenize("\"\" x").unwrap(), vec!["", "x"]);
        assert!(tokenize("a(b").is_err());
        assert!(tokenize("\"a").is_err());
    }

    #[test]
    fn escapes_and_paths() {
        assert_eq!(unescape("/a\\040b").unwrap(), "/a b");
        assert_eq!(unescape("/a\\\\b").unwrap(), "/a\\\\b");
        assert_eq!(unescape("/a\\04").unwrap(), "/a\\04");
        assert!(unescape("/a\\777").is_err());
        assert!(unescape("/a\\377").is_err(), "lone 0xff is not UTF-8");
        assert_eq!(normalise_export_path("//srv//a/").unwrap(), "/srv/a");
        assert_eq!(normalise_export_path("/").unwrap(), "/");
        assert_eq!(normalise_export_path("///").unwrap(), "/");
        assert!(normalise_export_path("/a/./b").is_err());
        assert!(normalise_export_path("a").is_err());
        assert!(normalise_export_path("").is_err());
    }

    #[test]
    fn clients_and_defaults() {
        let Parsed {
            exports: ex,
            errors: errs,
            ..
        } = parse("/a -rw h() 10.0.0.1(ro) *\n", "f");
        assert!(errs.is_empty(), "{errs:?}");
        let c = &ex[0].clients;
        assert_eq!(c.len(), 3);
        assert!(!c[0].options.read_only, "empty () keeps the defaults");
        assert!(c[1].options.read_only);
        assert!(!c[2].options.read_only);
        assert!(!ex[0].implicit_world);
        let parsed = parse("/a\n/b -rw\n", "f");
        assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
        let ex = parsed.exports;
        assert!(ex[0].implicit_world && ex[1].implicit_world);
        assert!(
            !ex[1].clients[0].options.read_only,
            "defaults apply to the implicit *"
        );
    }
}
