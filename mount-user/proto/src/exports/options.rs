//! Export options (`rw,sec=krb5p:sys,fh=...`): parsing, merging defaults, describing.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::FileHandle;
use crate::rpc::{AUTH_KRB5, AUTH_KRB5I, AUTH_KRB5P, AUTH_NONE, AUTH_SYS};

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

/// The options exports(5) keeps per security flavor (nfs-utils' `NFSEXP_SECINFO_FLAGS`):
/// options after a `sec=` in a list apply to that `sec=`'s flavors only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlavorFlags {
    /// `ro` / `rw`.
    pub read_only: bool,
    /// `secure` / `insecure`.
    pub secure: bool,
    /// `root_squash` / `no_root_squash`.
    pub root_squash: bool,
    /// `all_squash` / `no_all_squash`.
    pub all_squash: bool,
}

impl FlavorFlags {
    /// `ro,secure,root_squash` style text.
    pub fn describe(&self) -> String {
        format!(
            "{},{},{},{}",
            if self.read_only { "ro" } else { "rw" },
            if self.secure { "secure" } else { "insecure" },
            if self.root_squash {
                "root_squash"
            } else {
                "no_root_squash"
            },
            if self.all_squash {
                "all_squash"
            } else {
                "no_all_squash"
            },
        )
    }
}

/// Every option of one client rule (after applying the line's `-defaults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `ro` (default) / `rw`, as last set for the whole rule.
    pub read_only: bool,
    /// `secure` (default) / `insecure`, as last set for the whole rule; MNT's port rule.
    pub secure: bool,
    /// `root_squash` (default) / `no_root_squash`, as last set for the whole rule.
    pub root_squash: bool,
    /// `all_squash` / `no_all_squash` (default), as last set for the whole rule.
    pub all_squash: bool,
    /// `sec=` flavors in preference order, each with its own options; empty means "not
    /// given" (`sys` with the rule's options is applied when compiling).
    pub flavors: Vec<(u32, FlavorFlags)>,
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
            root_squash: true,
            all_squash: false,
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
    ("map_identity", "mapping"),
    ("map_daemon", "mapping"),
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
    /// Apply a comma-separated option list on top of `self`, as nfs-utils' parseopts: a
    /// `sec=` adds its flavors (a new flavor starts from the rule's options so far) and
    /// makes them the ones that later `ro`/`rw`/`secure`/`insecure`/squash options of this
    /// list also set.
    pub fn apply_list(&mut self, list: &str) -> Result<(), OptionError> {
        let list = list.trim();
        if list.is_empty() {
            return Ok(());
        }
        let mut active: Vec<u32> = Vec::new();
        // `squash_uids=0-15,20` : the ids after a comma still belong to the list.
        let mut squash: Option<&'static str> = None;
        for raw in list.split(',') {
            let opt = raw.trim();
            if opt.is_empty() {
                return Err(OptionError::Malformed("empty option".into()));
            }
            if let (Some(group), true) = (squash, is_id_range(opt)) {
                if let Some(v) = self.kept.get_mut(group) {
                    v.push(',');
                    v.push_str(opt);
                }
                continue;
            }
            squash = match opt.split_once('=') {
                Some(("squash_uids", _)) => Some("squash_uids"),
                Some(("squash_gids", _)) => Some("squash_gids"),
                _ => None,
            };
            self.apply_one(opt, &mut active)?;
        }
        Ok(())
    }

    /// The per-flavor options a flavor added now starts with.
    fn current_flags(&self) -> FlavorFlags {
        FlavorFlags {
            read_only: self.read_only,
            secure: self.secure,
            root_squash: self.root_squash,
            all_squash: self.all_squash,
        }
    }

    /// Sets a per-flavor option for the rule and for the active `sec=` flavors.
    fn set_flag(&mut self, active: &[u32], set: impl Fn(&mut FlavorFlags)) {
        let mut rule = self.current_flags();
        set(&mut rule);
        self.read_only = rule.read_only;
        self.secure = rule.secure;
        self.root_squash = rule.root_squash;
        self.all_squash = rule.all_squash;
        for (flavor, flags) in &mut self.flavors {
            if active.contains(flavor) {
                set(flags);
            }
        }
    }

    fn apply_one(&mut self, opt: &str, active: &mut Vec<u32>) -> Result<(), OptionError> {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (opt, None),
        };
        let bad = |msg: String| Err(OptionError::Malformed(msg));
        match (name, value) {
            ("ro", None) => self.set_flag(active, |f| f.read_only = true),
            ("rw", None) => self.set_flag(active, |f| f.read_only = false),
            ("secure", None) => self.set_flag(active, |f| f.secure = true),
            ("insecure", None) => self.set_flag(active, |f| f.secure = false),
            ("root_squash" | "no_root_squash", None) => {
                let on = name == "root_squash";
                self.kept.insert("root_squash", name.to_string());
                self.set_flag(active, |f| f.root_squash = on);
            }
            ("all_squash" | "no_all_squash", None) => {
                let on = name == "all_squash";
                self.kept.insert("all_squash", name.to_string());
                self.set_flag(active, |f| f.all_squash = on);
            }
            ("sec", Some(v)) => {
                active.clear();
                for fl in v.split(':') {
                    let Some(n) = flavor_from_name(fl) else {
                        return bad(format!(
                            "unknown security flavor {fl:?} in \"{opt}\" (known: sys, none, krb5, krb5i, krb5p)"
                        ));
                    };
                    if !self.flavors.iter().any(|(f, _)| *f == n) {
                        let flags = self.current_flags();
                        self.flavors.push((n, flags));
                    }
                    if !active.contains(&n) {
                        active.push(n);
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
            ("mapping", Some(v)) => {
                if !matches!(v, "identity" | "ugidd" | "file") {
                    return bad(format!("bad mapping {v:?} (identity, ugidd, file)"));
                }
                self.kept.insert("mapping", format!("mapping={v}"));
            }
            ("squash_uids" | "squash_gids", Some(v)) => {
                if !is_id_range(v) {
                    return bad(format!("bad {name} list {v:?}: ids or id ranges (0-15)"));
                }
                let group = if name == "squash_uids" {
                    "squash_uids"
                } else {
                    "squash_gids"
                };
                self.kept.insert(group, format!("{name}={v}"));
            }
            ("reexport", Some(v)) => {
                if !matches!(v, "auto-fsidnum" | "predefined-fsidnum" | "none") {
                    return bad(format!(
                        "bad reexport {v:?} (auto-fsidnum, predefined-fsidnum, none)"
                    ));
                }
                self.kept.insert("reexport", format!("reexport={v}"));
            }
            ("xprtsec", Some(v)) => {
                if v.is_empty() || !v.split(':').all(|m| matches!(m, "none" | "tls" | "mtls")) {
                    return bad(format!("bad xprtsec value {v:?} (none, tls, mtls)"));
                }
                self.kept.insert("xprtsec", format!("xprtsec={v}"));
            }
            (
                "sec" | "fh" | "fsid" | "anonuid" | "anongid" | "refer" | "replicas" | "xprtsec"
                | "mapping" | "reexport" | "squash_uids" | "squash_gids",
                None,
            ) => return bad(format!("option {name:?} needs a value")),
            (flag, None) => match KEPT_FLAGS.iter().find(|(f, _)| *f == flag) {
                Some((f, group)) => {
                    self.kept.insert(group, (*f).to_string());
                }
                None => return Err(OptionError::Unknown(opt.to_string())),
            },
            (name, Some(_)) => {
                let takes_no_value = matches!(
                    name,
                    "ro" | "rw"
                        | "secure"
                        | "insecure"
                        | "root_squash"
                        | "no_root_squash"
                        | "all_squash"
                        | "no_all_squash"
                ) || KEPT_FLAGS.iter().any(|(f, _)| *f == name);
                if takes_no_value {
                    return bad(format!("option {name:?} takes no value"));
                }
                return Err(OptionError::Unknown(opt.to_string()));
            }
        }
        Ok(())
    }

    /// The sec= flavors to advertise: as given, or `[sys]` when none was given.
    pub fn effective_flavors(&self) -> Vec<u32> {
        self.flavor_sections().into_iter().map(|(f, _)| f).collect()
    }

    /// Each flavor with its own options: as given, or `sys` with the rule's options.
    pub fn flavor_sections(&self) -> Vec<(u32, FlavorFlags)> {
        if self.flavors.is_empty() {
            vec![(AUTH_SYS, self.current_flags())]
        } else {
            self.flavors.clone()
        }
    }

    /// The per-flavor options, one `sec=FLAVOR(ro,secure,...)` per flavor.
    pub fn describe_flavors(&self) -> String {
        let parts: Vec<String> = self
            .flavor_sections()
            .iter()
            .map(|(f, flags)| format!("sec={}({})", flavor_name(*f), flags.describe()))
            .collect();
        parts.join(" ")
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

/// `N` or `N-M` (the ids of nfs-utils' old `squash_uids=`/`squash_gids=`).
fn is_id_range(v: &str) -> bool {
    let num = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    match v.split_once('-') {
        Some((a, b)) => num(a) && num(b),
        None => num(v),
    }
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
mod tests;
