//! The rmtab text format of the mount list, as nfs-utils writes it: one
//! `host:dir:0x00000001` line per entry. As nfs-utils does, ':' in the host (IPv6
//! addresses) is written as ';'. nfs-utils writes dirs verbatim; we do too, and when reading
//! we take the count from the last ':' (nfs-utils takes the first), so a dir containing ':'
//! round-trips here. Reading and writing the file is the daemon's (mount-user's `rmtab`).

use super::{Limits, MountList};

/// rmtab text parse/render; see the module docs for the format.
pub struct Rmtab;

impl Rmtab {
    /// The mount list in rmtab `text` read from `origin`, within `limits`; a malformed line
    /// is logged (origin:line) and skipped so a damaged file never prevents a restart.
    pub fn parse(text: &str, origin: &str, limits: Limits) -> MountList {
        let list = MountList::with_limits(limits);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(line) {
                Ok(Some((host, dir))) => {
                    list.add(&host, dir);
                }
                Ok(None) => {}
                Err(msg) => {
                    tracing::warn!("{origin}:{}: {msg}; line skipped", i + 1);
                }
            }
        }
        list
    }

    /// The file contents for `entries`.
    pub fn render(entries: &[(String, String)]) -> String {
        let mut out = String::new();
        for (host, dir) in entries {
            // A newline cannot be represented in this line format (nfs-utils has the same
            // limit); such an entry is left out rather than corrupting the file.
            if host.contains(['\n', '\r']) || dir.contains(['\n', '\r']) || host.is_empty() {
                tracing::warn!("mount list entry {host:?}:{dir:?} cannot be written to rmtab");
                continue;
            }
            out.push_str(&host.replace(':', ";"));
            out.push(':');
            out.push_str(dir);
            out.push_str(":0x00000001\n");
        }
        out
    }
}

/// Parse one rmtab line into (host, dir); None for an entry whose count is 0 (unmounted).
fn parse_line(line: &str) -> Result<Option<(String, &str)>, String> {
    let (host, rest) = line
        .split_once(':')
        .ok_or_else(|| format!("malformed rmtab entry {line:?} (no ':')"))?;
    if host.is_empty() {
        return Err(format!("malformed rmtab entry {line:?} (empty host)"));
    }
    let (dir, count) = match rest.rsplit_once(':') {
        Some((dir, c)) => match parse_count(c) {
            Some(n) => (dir, n),
            // Not a count: the ':' belongs to the dir (nfs-utils writes dirs verbatim).
            None => (rest, 1),
        },
        None => (rest, 1),
    };
    if !dir.starts_with('/') {
        return Err(format!(
            "malformed rmtab entry {line:?} (dir is not absolute)"
        ));
    }
    // `render` cannot write a carriage return back; an entry loaded with one would be
    // served, then silently lost at the next write. (Found by the rmtab fuzz target.)
    if line.contains('\r') {
        return Err(format!(
            "malformed rmtab entry {line:?} (carriage return inside the line)"
        ));
    }
    if count == 0 {
        return Ok(None);
    }
    Ok(Some((host.replace(';', ":"), dir)))
}

/// strtol(.., 0)-style count: `0x` hex, leading-0 octal, or decimal.
fn parse_count(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_loads_is_what_render_writes_back() {
        // The rmtab fuzz target's first find: a carriage return inside a line loaded, but
        // could not be written back.
        let text = "10.0.0.1:/s\r\rv:0x00000001\n10.0.0.2:/ok:0x00000001\nfd00;;1:/v6\n";
        let (_, entries) = Rmtab::parse(text, "t", Limits::default()).snapshot();
        assert_eq!(
            entries,
            vec![
                ("10.0.0.2".to_string(), "/ok".to_string()),
                ("fd00::1".to_string(), "/v6".to_string())
            ]
        );
        let (_, again) = Rmtab::parse(&Rmtab::render(&entries), "t", Limits::default()).snapshot();
        assert_eq!(again, entries);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\n10.0.0.1:/ok:0x00000001\n:/nohost:0x1\nh:relative:0x1\n\nh2:/zero:0x00000000\nh3:/nocount\n";
        assert_eq!(
            Rmtab::parse(text, "t", Limits::default()).snapshot().1,
            vec![
                ("10.0.0.1".into(), "/ok".into()),
                ("h3".into(), "/nocount".into())
            ]
        );
    }

    #[test]
    fn unwritable_entries_are_left_out() {
        let text = Rmtab::render(&[("h".into(), "/a\nb".into()), ("h".into(), "/ok".into())]);
        assert_eq!(text, "h:/ok:0x00000001\n");
    }
}
