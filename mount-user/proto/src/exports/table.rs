//! Compiling raw entries into the [`ExportTable`]: name resolution, matchers, handles, the
//! path index and the precomputed EXPORT list; plus lookup and client checks.
use ipnet::IpNet;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use std::sync::Arc;

use super::facts::HostFacts;
use super::handle::HandleSource;
use super::hosts::{HostSpec, Matcher, Resolver};
use super::merge::place;
use super::options::Options;
use super::parse::{LineError, RawExport};
use super::{ClientCheck, ClientOptions, Export, ExportMatch, ExportTable, FileHandle};
use crate::mount::wire::{emit_list_end, ExportNode};
use crate::xdr::{Writer, UNIT};

/// One compiled client rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The client spec as written.
    pub spec: String,
    /// How the client is matched.
    pub matcher: Matcher,
    /// What the rule grants (what the protocol core needs).
    pub client: ClientOptions,
    /// Every option, for `describe()`.
    pub options: Options,
}

/// Compile merged exports; host names are resolved once each through `resolver`. A name
/// that does not resolve is a warning (its rule matches by reverse-resolved name), not an
/// error.
pub(crate) fn compile(
    raw: Vec<RawExport>,
    resolver: &dyn Resolver,
    warnings: &mut Vec<LineError>,
) -> Result<ExportTable, Vec<LineError>> {
    let mut errors = Vec::new();
    let mut resolved: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let mut netgroups: Vec<Arc<str>> = Vec::new();
    let mut handles: HashMap<FileHandle, (String, (String, usize))> = HashMap::new();
    let mut exports = Vec::with_capacity(raw.len());
    for r in raw {
        let source = match (&r.fh, &r.fsid) {
            (Some(_), _) => HandleSource::Explicit,
            (None, Some(fsid)) => HandleSource::SyntheticFsid(fsid.clone()),
            (None, None) => HandleSource::SyntheticPath,
        };
        let handle = match (r.fh, source.identity(&r.path, "")) {
            (Some(fh), _) => fh,
            (None, Some(id)) => FileHandle::synthetic(&id),
            // Unreachable by construction (no fh= means a synthetic source), but keep a
            // path-derived handle rather than panic.
            (None, None) => FileHandle::synthetic(&r.path),
        };
        if let Some((other, at)) = handles.get(&handle) {
            errors.push(LineError {
                origin: r.origin.clone(),
                line: r.line,
                message: format!(
                    "export {:?} has the same file handle as {other:?} ({}); \
                     give each export its own fh= or fsid=",
                    r.path,
                    place(&at.0, at.1, &r.origin)
                ),
            });
            continue;
        }
        handles.insert(handle, (r.path.clone(), (r.origin.clone(), r.line)));
        let mut rules = Vec::with_capacity(r.clients.len());
        let mut exact: HashMap<IpAddr, usize, hashbrown::DefaultHashBuilder> = HashMap::default();
        let mut scan = Vec::new();
        for (idx, c) in r.clients.iter().enumerate() {
            let matcher = match &c.spec {
                HostSpec::Any => Matcher::Any,
                HostSpec::Net(net) => Matcher::Net(*net),
                HostSpec::Wildcard(p) => Matcher::Wildcard(p.clone()),
                HostSpec::Obsolete(_) => Matcher::Nothing,
                HostSpec::Netgroup(g) => Matcher::Netgroup(intern(&mut netgroups, g)),
                HostSpec::Name(name) => {
                    let addrs = resolved
                        .entry(name.clone())
                        .or_insert_with(|| {
                            let why = match resolver.resolve(name) {
                                Ok(a) if !a.is_empty() => return a,
                                Ok(_) => "it has no address".to_string(),
                                Err(e) => e.to_string(),
                            };
                            warnings.push(LineError {
                                origin: r.origin.clone(),
                                line: r.line,
                                message: format!(
                                    "cannot resolve host {name:?} ({why}); matching it by the \
                                     client's reverse-resolved name until it resolves"
                                ),
                            });
                            Vec::new()
                        })
                        .clone();
                    if addrs.is_empty() {
                        Matcher::Unresolved(name.clone())
                    } else {
                        Matcher::Addrs(addrs)
                    }
                }
            };
            match &matcher {
                Matcher::Net(net) if net.prefix_len() == net.max_prefix_len() => {
                    exact.entry(net.addr()).or_insert(idx);
                }
                Matcher::Addrs(addrs) => {
                    for a in addrs {
                        exact.entry(a.to_canonical()).or_insert(idx);
                    }
                }
                _ => scan.push(idx),
            }
            rules.push(Rule {
                spec: c.spec_text.clone(),
                matcher,
                client: ClientOptions {
                    read_only: c.options.read_only,
                    secure: c.options.secure,
                    flavors: c.options.effective_flavors(),
                },
                options: c.options.clone(),
            });
        }
        exports.push(Export {
            groups: r.clients.iter().map(|c| c.spec_text.clone()).collect(),
            path: r.path,
            line: r.line,
            handle,
            source,
            rules,
            exact,
            scan,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let by_path = exports
        .iter()
        .enumerate()
        .map(|(i, e)| (Box::from(e.path.as_bytes()), i))
        .collect();
    let (xdr, ends) = encode_export_list(&exports);
    netgroups.sort();
    let unresolved = resolved
        .into_iter()
        .filter(|(_, a)| a.is_empty())
        .map(|(n, _)| n)
        .collect();
    Ok(ExportTable {
        exports,
        by_path,
        xdr,
        ends,
        warnings: Vec::new(),
        netgroups: netgroups.into(),
        unresolved,
    })
}

/// One shared `Arc<str>` per netgroup name in a table.
fn intern(groups: &mut Vec<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(g) = groups.iter().find(|g| ***g == *name) {
        return g.clone();
    }
    let g: Arc<str> = Arc::from(name);
    groups.push(g.clone());
    g
}

/// Longest-prefix lookup: try the path, then each ancestor ('/'-by-'/'), so the cost is
/// O(depth) hash probes however many exports there are.
pub(crate) fn lookup<'t>(table: &'t ExportTable, path: &'t str) -> Option<ExportMatch<'t>> {
    if !path.starts_with('/') {
        return None;
    }
    let mut end = path.len();
    loop {
        let prefix = if end == 0 { "/" } else { &path[..end] };
        if let Some(&i) = table.by_path.get(prefix.as_bytes()) {
            let rest = path.get(end..).unwrap_or("");
            let subpath = rest.strip_prefix('/').unwrap_or(rest);
            return table
                .exports
                .get(i)
                .map(|export| ExportMatch { export, subpath });
        }
        if end == 0 {
            return None;
        }
        // Next shorter ancestor: cut at the last '/' before `end` ("/a" -> "" meaning "/").
        end = path[..end].rfind('/')?;
    }
}

/// First matching rule wins (exports(5)). Exact addresses are a hash probe; the other rules
/// are scanned in file order, stopping at the exact hit's position. A rule that needs the
/// client's looked-up facts (name, netgroups) asks for them only when it could decide.
pub(crate) fn check_client<'e>(
    export: &'e Export,
    addr: IpAddr,
    host: Option<&HostFacts>,
) -> ClientCheck<'e> {
    let exact = export.exact.get(&addr).copied();
    for &i in &export.scan {
        if let Some(e) = exact {
            if e < i {
                break;
            }
        }
        let Some(rule) = export.rules.get(i) else {
            continue;
        };
        let hit = match (&rule.matcher, host) {
            (Matcher::Any, _) => true,
            (Matcher::Net(net), _) => net_contains(net, addr),
            (Matcher::Addrs(a), _) => a.contains(&addr),
            (Matcher::Nothing, _) => false,
            (Matcher::Wildcard(_) | Matcher::Unresolved(_) | Matcher::Netgroup(_), None) => {
                return ClientCheck::NeedName
            }
            (Matcher::Wildcard(p), Some(h)) => p.matches(&h.name),
            (Matcher::Unresolved(n), Some(h)) => {
                *h.name == **n || h.name.strip_suffix('.') == Some(n.as_str())
            }
            (Matcher::Netgroup(g), Some(h)) => match h.in_netgroup(g) {
                Some(member) => member,
                // Looked up before this table named the group: ask again.
                None => return ClientCheck::NeedName,
            },
        };
        if hit {
            return ClientCheck::Allowed(&rule.client);
        }
    }
    match exact.and_then(|e| export.rules.get(e)) {
        Some(rule) => ClientCheck::Allowed(&rule.client),
        None => ClientCheck::Denied,
    }
}

fn net_contains(net: &IpNet, addr: IpAddr) -> bool {
    net.contains(&addr)
}

/// `exports` = *exportnode: each node preceded by 1 (dirpath, groups = *groupnode, each
/// preceded by 1 and ended by 0), the list ended by 0, written by the protocol's own
/// `exportnode` encoder. Returns bytes and per-entry end offsets.
fn encode_export_list(exports: &[Export]) -> (Vec<u8>, Vec<usize>) {
    fn groups(e: &Export) -> impl Iterator<Item = &[u8]> {
        e.groups.iter().map(|g| g.as_bytes())
    }
    let len: usize = exports
        .iter()
        .map(|e| ExportNode::entry_len(e.path.as_bytes(), groups(e)))
        .sum();
    let mut out = vec![0u8; len + UNIT];
    let mut w = Writer::new(&mut out);
    let mut ends = Vec::with_capacity(exports.len());
    for e in exports {
        // The parser bounds paths (MNTPATHLEN) and client specs (MNTNAMLEN), so this cannot
        // fail; an entry that did would be left out, its end the previous one's.
        let _ = ExportNode::emit_entry(&mut w, e.path.as_bytes(), groups(e));
        ends.push(w.position());
    }
    let _ = emit_list_end(&mut w);
    let n = w.position();
    out.truncate(n);
    (out, ends)
}

/// The compiled table as text: each export with its handle and rules.
pub(crate) fn describe(table: &ExportTable) -> String {
    let mut s = String::new();
    if table.exports.is_empty() {
        s.push_str("(no exports)\n");
    }
    for e in &table.exports {
        let _ = writeln!(s, "{}  (line {})", e.path, e.line);
        let _ = writeln!(s, "    handle {} ({})", e.handle.to_hex(), e.source);
        for r in &e.rules {
            let what = match &r.matcher {
                Matcher::Any => "everyone".to_string(),
                Matcher::Net(n) if n.prefix_len() == n.max_prefix_len() => {
                    format!("address {}", n.addr())
                }
                Matcher::Net(n) => format!("network {n}"),
                Matcher::Addrs(a) => {
                    let list: Vec<String> = a.iter().map(ToString::to_string).collect();
                    format!("host name -> {}", list.join(", "))
                }
                Matcher::Unresolved(n) => {
                    format!("unresolved host name: reverse name equals {n}")
                }
                Matcher::Wildcard(p) => format!("wildcard: reverse name matches {p}"),
                Matcher::Netgroup(g) => format!("netgroup {g} (NSS innetgr)"),
                Matcher::Nothing => "obsolete form: matches no client".to_string(),
            };
            let _ = writeln!(s, "    {}({})  [{what}]", r.spec, r.options.describe());
            let _ = writeln!(s, "        {}", r.options.describe_flavors());
        }
    }
    s
}
