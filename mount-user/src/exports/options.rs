//! Export options (`rw,sec=krb5p:sys,fh=...`): parsing, merging defaults, describing.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::FileHandle;

/// RPC auth flavor numbers of `sec=` names.
pub const AUTH_NONE: u32 = 0;
/// AUTH_SYS (AUTH_UNIX).
pub const AUTH_SYS: u32 = 1;
/// RPCSEC_GSS Kerberos v5 pseudo-flavors (RFC 2623).
pub const AUTH_KRB5: u32 = 390003;
/// Kerberos v5 with integrity.
pub const AUTH_KRB5I: u32 = 390004;
/// Kerberos v5 with privacy.
pub const AUTH_KRB5P: u32 = 390005;

/// The flavor number of a `sec=` name (`unix` and `null` are nfs-utils' aliases).
pub fn flavor_from_name(name: &str) -> Option<u32> {
    match name {
        "sys" | "unix" => Some(AUTH_SYS),
        "none" | "null" => Some(AUTH_NONE),
        "krb5" => Some(AUTH_KRB5),
        "krb5i" => Some(AUTH_KRB5I),
        "krb5p" => Some(AUTH_KRB5P),
        _ => None,
    }
}

/// The `sec=` name of a flavor number.
pub fn flavor_name(flavor: u32) -> &'static str {
    match flavor {
        AUTH_SYS => "sys",
        AUTH_NONE => "none",
        AUTH_KRB5 => "krb5",
        AUTH_KRB5I => "krb5i",
        AUTH_KRB5P => "krb5p",
        _ => "?",
    }
}

/// Every option of one client rule (after applying the line's `-defaults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `ro` (default) / `rw`.
    pub read_only: bool,
    /// `secure` (default) / `insecure`.
    pub secure: bool,
    /// `sec=`; empty means "not given" (the default [sys] is applied when compiling).
    pub flavors: Vec<u32>,
    /// `fh=HEX`: explicit root handle of the export.
    pub fh: Option<FileHandle>,
    /// `fsid=N|root|uuid`.
    pub fsid: Option<String>,
    /// Options accepted and kept only for display (they are the kernel NFS server's
    /// business, not the MOUNT service's): group name -> option as normalised text. The
    /// group makes opposites override each other (`sync` then `async` keeps `async`).
    pub kept: BTreeMap<&'static str, String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            read_only: true,
            secure: true,
            flavors: Vec::new(),
            fh: None,
            fsid: None,
            kept: BTreeMap::new(),
        }
    }
}

/// Flag options kept for display: (option, group). Opposites share a group.
const KEPT_FLAGS: &[(&str, &str)] = &[
    ("sync", "sync"),
    ("async", "sync"),
    ("subtree_check", "subtree_check"),
    ("no_subtree_check", "subtree_check"),
    ("root_squash", "root_squash"),
    ("no_root_squash", "root_squash"),
    ("all_squash", "all_squash"),
    ("no_all_squash", "all_squash"),
    ("wdelay", "wdelay"),
    ("no_wdelay", "wdelay"),
    ("hide", "hide"),
    ("nohide", "hide"),
    ("crossmnt", "crossmnt"),
    ("nocrossmnt", "crossmnt"),
    ("acl", "acl"),
    ("no_acl", "acl"),
    ("insecure_locks", "locks"),
    ("secure_locks", "locks"),
    ("no_auth_nlm", "locks"),
    ("auth_nlm", "locks"),
    ("pnfs", "pnfs"),
    ("no_pnfs", "pnfs"),
    ("security_label", "security_label"),
    ("nordirplus", "nordirplus"),
];

impl Options {
    /// Apply a comma-separated option list on top of `self`. A `sec=` in this list replaces
    /// the inherited flavors; several `sec=` in one list accumulate in order.
    pub fn apply_list(&mut self, list: &str) -> Result<(), OptionError> {
        let list = list.trim();
        if list.is_empty() {
            return Ok(());
        }
        let mut sec_seen = false;
        for raw in list.split(',') {
            let opt = raw.trim();
            if opt.is_empty() {
                return Err(OptionError::Malformed("empty option".into()));
            }
            self.apply_one(opt, &mut sec_seen)?;
        }
        Ok(())
    }

    fn apply_one(&mut self, opt: &str, sec_seen: &mut bool) -> Result<(), OptionError> {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (opt, None),
        };
        let bad = |msg: String| Err(OptionError::Malformed(msg));
        match (name, value) {
            ("ro", None) => self.read_only = true,
            ("rw", None) => self.read_only = false,
            ("secure", None) => self.secure = true,
            ("insecure", None) => self.secure = false,
            ("sec", Some(v)) => {
                if !*sec_seen {
                    self.flavors.clear();
                    *sec_seen = true;
                }
                for fl in v.split(':') {
                    let Some(n) = flavor_from_name(fl) else {
                        return bad(format!(
                            "unknown security flavor {fl:?} in \"{opt}\" (known: sys, none, krb5, krb5i, krb5p)"
                        ));
                    };
                    if !self.flavors.contains(&n) {
                        self.flavors.push(n);
                    }
                }
            }
            ("fh", Some(v)) => match FileHandle::from_hex(v) {
                Ok(fh) => self.fh = Some(fh),
                Err(e) => return bad(e),
            },
            ("fsid", Some(v)) => {
                let Some(fsid) = normalise_fsid(v) else {
                    return bad(format!(
                        "bad fsid {v:?}: expected a number, \"root\" or a UUID"
                    ));
                };
                self.fsid = Some(fsid);
            }
            ("anonuid" | "anongid", Some(v)) => {
                // nfs-utils accepts negative ids (anonuid=-2, the old nobody).
                match v.parse::<i64>() {
                    Ok(n) if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&n) => {
                        let group = if name == "anonuid" {
                            "anonuid"
                        } else {
                            "anongid"
                        };
                        self.kept.insert(group, format!("{name}={n}"));
                    }
                    _ => return bad(format!("bad {name} value {v:?}: expected an integer")),
                }
            }
            ("mp" | "mountpoint", None) => {
                self.kept.insert("mountpoint", name.to_string());
            }
            ("mp" | "mountpoint", Some(v)) => {
                if !v.starts_with('/') {
                    return bad(format!("{name}= needs an absolute path, got {v:?}"));
                }
                self.kept.insert("mountpoint", format!("{name}={v}"));
            }
            ("refer" | "replicas", Some(v)) => {
                if v.is_empty() {
                    return bad(format!("{name}= needs a value"));
                }
                let group = if name == "refer" { "refer" } else { "replicas" };
                self.kept.insert(group, format!("{name}={v}"));
            }
            ("xprtsec", Some(v)) => {
                if v.is_empty() || !v.split(':').all(|m| matches!(m, "none" | "tls" | "mtls")) {
                    return bad(format!("bad xprtsec value {v:?} (none, tls, mtls)"));
                }
                self.kept.insert("xprtsec", format!("xprtsec={v}"));
            }
            (
                "sec" | "fh" | "fsid" | "anonuid" | "anongid" | "refer" | "replicas" | "xprtsec",
                None,
            ) => return bad(format!("option {name:?} needs a value")),
            (flag, None) => match KEPT_FLAGS.iter().find(|(f, _)| *f == flag) {
                Some((f, group)) => {
                    self.kept.insert(group, (*f).to_string());
                }
                None => return Err(OptionError::Unknown(opt.to_string())),
            },
            (name, Some(_)) => {
                let takes_no_value = matches!(name, "ro" | "rw" | "secure" | "insecure")
                    || KEPT_FLAGS.iter().any(|(f, _)| *f == name);
                if takes_no_value {
                    return bad(format!("option {name:?} takes no value"));
                }
                return Err(OptionError::Unknown(opt.to_string()));
            }
        }
        Ok(())
    }

    /// The sec= flavors to advertise: as given, or [sys] when none was given.
    pub fn effective_flavors(&self) -> Vec<u32> {
        if self.flavors.is_empty() {
            vec![AUTH_SYS]
        } else {
            self.flavors.clone()
        }
    }

    /// The options in a canonical, readable form (`rw,insecure,sec=krb5p:sys,async,...`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        s.push_str(if self.read_only { "ro" } else { "rw" });
        s.push_str(if self.secure { ",secure" } else { ",insecure" });
        s.push_str(",sec=");
        let names: Vec<&str> = self
            .effective_flavors()
            .into_iter()
            .map(flavor_name)
            .collect();
        s.push_str(&names.join(":"));
        if let Some(fsid) = &self.fsid {
            let _ = write!(s, ",fsid={fsid}");
        }
        if let Some(fh) = &self.fh {
            let _ = write!(s, ",fh={}", fh.to_hex());
        }
        for v in self.kept.values() {
            s.push(',');
            s.push_str(v);
        }
        s
    }
}

/// `fsid=`: "root", a 32-bit number (decimal, `0x` hex or leading-0 octal, as nfs-utils'
/// strtoul(.., 0)), or a UUID (32 hex digits, '-' or ':' separators anywhere).
/// Normalised (decimal; lowercase UUID without separators) so that equal ids compare equal
/// and give the same synthetic handle.
fn normalise_fsid(v: &str) -> Option<String> {
    if v == "root" {
        return Some(v.to_string());
    }
    if let Some(n) = parse_c_u32(v) {
        return Some(n.to_string());
    }
    let digits: String = v
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let only_separators = v
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c == '-' || c == ':');
    (digits.len() == 32 && only_separators).then_some(digits)
}

/// A C-style unsigned literal: `0x` hex, leading-0 octal, or decimal.
fn parse_c_u32(v: &str) -> Option<u32> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if v.len() > 1 && v.starts_with('0') {
        u32::from_str_radix(&v[1..], 8).ok()
    } else if v.starts_with(|c: char| c.is_ascii_digit()) {
        v.parse().ok()
    } else {
        None
    }
}

/// Why an option list was refused (the caller adds file:line and the client spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    /// An option name we do not know.
    Unknown(String),
    /// A known option with a bad value, or a malformed list.
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &str) -> Result<Options, OptionError> {
        let mut o = Options::default();
        o.apply_list(list).map(|()| o)
    }

    #[test]
    fn defaults_are_ro_secure_sys() {
        let o = opts("").unwrap();
        assert!(o.read_only);
        assert!(o.secure);
        assert_eq!(o.effective_flavors(), vec![AUTH_SYS]);
    }

    #[test]
    fn rw_insecure_and_sec_order() {
        let o = opts("rw,insecure,sec=krb5p:krb5i:sys").unwrap();
        assert!(!o.read_only);
        assert!(!o.secure);
        assert_eq!(o.flavors, vec![AUTH_KRB5P, AUTH_KRB5I, AUTH_SYS]);
        assert_eq!(o.describe(), "rw,insecure,sec=krb5p:krb5i:sys");
    }

    #[test]
    fn flavor_aliases() {
        assert_eq!(
            opts("sec=unix:null").unwrap().flavors,
            vec![AUTH_SYS, AUTH_NONE]
        );
        assert_eq!(
            opts("sec=sys:unix").unwrap().flavors,
            vec![AUTH_SYS],
            "deduplicated"
        );
    }

    #[test]
    fn sec_in_later_list_replaces_defaults() {
        let mut o = opts("sec=krb5").unwrap();
        o.apply_list("sec=sys,sec=none").unwrap();
        assert_eq!(o.flavors, vec![AUTH_SYS, AUTH_NONE]);
    }

    #[test]
    fn kept_options_override_their_opposite() {
        let o = opts("sync,no_subtree_check,async,anonuid=-2,mp=/srv,crossmnt").unwrap();
        assert_eq!(
            o.describe(),
            "ro,secure,sec=sys,anonuid=-2,crossmnt,mp=/srv,no_subtree_check,async"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(opts("rx"), Err(OptionError::Unknown("rx".into())));
        assert_eq!(opts("foo=1"), Err(OptionError::Unknown("foo=1".into())));
        assert!(matches!(opts("sec=krb6"), Err(OptionError::Malformed(m)) if m.contains("krb6")));
        assert!(
            matches!(opts("rw=1"), Err(OptionError::Malformed(m)) if m.contains("takes no value"))
        );
        assert!(
            matches!(opts("sec"), Err(OptionError::Malformed(m)) if m.contains("needs a value"))
        );
        assert!(matches!(opts("rw,,ro"), Err(OptionError::Malformed(m)) if m.contains("empty")));
        assert!(matches!(opts("fsid=abc"), Err(OptionError::Malformed(_))));
        assert!(matches!(opts("anonuid=x"), Err(OptionError::Malformed(_))));
        assert!(matches!(
            opts("mountpoint=rel"),
            Err(OptionError::Malformed(_))
        ));
        assert!(matches!(opts("fh=abc"), Err(OptionError::Malformed(_))));
    }

    #[test]
    fn fsid_forms() {
        assert_eq!(opts("fsid=0").unwrap().fsid.as_deref(), Some("0"));
        assert_eq!(opts("fsid=root").unwrap().fsid.as_deref(), Some("root"));
        assert_eq!(opts("fsid=0x1f").unwrap().fsid.as_deref(), Some("31"));
        assert_eq!(opts("fsid=017").unwrap().fsid.as_deref(), Some("15"));
        assert!(opts("fsid=09").is_err());
        assert!(opts("fsid=+5").is_err());
        assert!(opts("fsid=4294967296").is_err());
        let u = "6F1C3A2E-8D2B-4C1F-9E3A-0123456789AB";
        assert_eq!(
            opts(&format!("fsid={u}")).unwrap().fsid.as_deref(),
            Some("6f1c3a2e8d2b4c1f9e3a0123456789ab")
        );
        assert!(
            opts("fsid=6f1c3a2e8d2b4c1f9e3a0123456789a").is_err(),
            "31 digits"
        );
    }
}
