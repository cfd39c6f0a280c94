//! Client specs (`10.0.0.0/8`, `fd00::/8`, `*`, `host.example`, `*.example.com`): parsing,
//! name resolution at load time, and matching.
use ipnet::IpNet;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

/// A client spec as parsed, before name resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    /// `*`: every client.
    Any,
    /// A single address or a network (a single address is a /32 or /128).
    Net(IpNet),
    /// A host name, resolved to addresses when the file is loaded.
    Name(String),
    /// A pattern with `*`/`?`, matched against the client's reverse-resolved name.
    Wildcard(String),
}

/// Parse the host part of a client token (without options).
pub fn parse_host_spec(spec: &str) -> Result<HostSpec, String> {
    if spec.is_empty() {
        return Err("empty client".into());
    }
    if spec == "*" {
        return Ok(HostSpec::Any);
    }
    if let Some(group) = spec.strip_prefix('@') {
        return Err(format!("netgroups not supported (\"@{group}\")"));
    }
    if spec.starts_with("gss/") {
        return Err(format!(
            "obsolete client syntax {spec:?}; write *(sec={}) instead",
            spec.trim_start_matches("gss/")
        ));
    }
    // Brackets are accepted around an IPv6 address for readability.
    let unbracketed = spec
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(spec);
    if let Some((addr, mask)) = unbracketed.split_once('/') {
        return parse_network(addr, mask).map(HostSpec::Net);
    }
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(HostSpec::Net(IpNet::from(ip.to_canonical())));
    }
    if spec.contains('[') {
        return Err(format!("character classes are not supported in {spec:?}"));
    }
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if spec.contains(['*', '?']) {
        if !spec.chars().all(|c| valid_char(c) || c == '*' || c == '?') {
            return Err(format!("bad host name pattern {spec:?}"));
        }
        return Ok(HostSpec::Wildcard(spec.to_ascii_lowercase()));
    }
    // getaddrinfo would read "10.1" or "167772161" as legacy IPv4 forms: refuse them.
    if spec.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("bad address {spec:?}"));
    }
    if !spec.chars().all(valid_char) || spec.starts_with(['.', '-']) {
        return Err(format!("bad client {spec:?}"));
    }
    Ok(HostSpec::Name(spec.to_ascii_lowercase()))
}

/// `addr/prefix` or `addr/netmask` (IPv4 dotted netmask, contiguous).
fn parse_network(addr: &str, mask: &str) -> Result<IpNet, String> {
    let bad = || format!("bad network \"{addr}/{mask}\"");
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = if let Ok(p) = mask.parse::<u8>() {
        p
    } else {
        let m: Ipv4Addr = mask.parse().map_err(|_| bad())?;
        if !ip.is_ipv4() {
            return Err(format!("netmask form is IPv4 only in \"{addr}/{mask}\""));
        }
        let bits = u32::from(m);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(format!("non-contiguous netmask in \"{addr}/{mask}\""));
        }
        bits.leading_ones() as u8
    };
    // Host bits set below the prefix are dropped, as nfs-utils does.
    IpNet::new(ip, prefix)
        .map(|n| n.trunc())
        .map_err(|_| format!("prefix length {prefix} too long in \"{addr}/{mask}\""))
}

/// Resolves host names to addresses when an exports file is loaded.
pub trait Resolver {
    /// The addresses of `name`; an error or an empty list makes the rule inert.
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (getaddrinfo through std).
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        let mut out: Vec<IpAddr> = (name, 0u16)
            .to_socket_addrs()?
            .map(|sa| sa.ip().to_canonical())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A fixed name -> addresses map (tests, and `check` runs that must not touch DNS).
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolver for StaticResolver {
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name}: unknown host")))
    }
}

/// A compiled matcher of one client rule.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// `*`.
    Any,
    /// A network (single addresses are kept in the export's exact-address map instead).
    Net(IpNet),
    /// A resolved host name: its addresses (empty when it did not resolve: inert).
    Addrs(Vec<IpAddr>),
    /// A wildcard pattern on the reverse-resolved name, lowercase.
    Wildcard(String),
}

/// Glob match with `*` (any run, dots included, as exports(5) says) and `?` (one char).
/// `name` must be lowercase; a trailing '.' of a fully-qualified name is ignored.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    let pat = pattern.as_bytes();
    // Iterative glob with single backtrack point: linear-ish, no recursion blow-up.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == name[n].to_ascii_lowercase()) {
            p += 1;
            n += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> HostSpec {
        HostSpec::Net(s.parse().unwrap())
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(parse_host_spec("*"), Ok(HostSpec::Any));
        assert_eq!(parse_host_spec("10.1.2.3"), Ok(net("10.1.2.3/32")));
        assert_eq!(parse_host_spec("10.0.0.0/8"), Ok(net("10.0.0.0/8")));
        assert_eq!(parse_host_spec("10.0.0.0/255.0.0.0"), Ok(net("10.0.0.0/8")));
        assert_eq!(
            parse_host_spec("10.1.2.3/255.255.0.0"),
            Ok(net("10.1.0.0/16"))
        );
        assert_eq!(parse_host_spec("fd00::/8"), Ok(net("fd00::/8")));
        assert_eq!(parse_host_spec("fd00::1"), Ok(net("fd00::1/128")));
        assert_eq!(parse_host_spec("[fd00::1]"), Ok(net("fd00::1/128")));
        assert_eq!(parse_host_spec("::ffff:10.0.0.1"), Ok(net("10.0.0.1/32")));
        assert_eq!(
            parse_host_spec("Host.Example"),
            Ok(HostSpec::Name("host.example".into()))
        );
        assert_eq!(
            parse_host_spec("*.Example.com"),
            Ok(HostSpec::Wildcard("*.example.com".into()))
        );
        assert_eq!(
            parse_host_spec("node?.x"),
            Ok(HostSpec::Wildcard("node?.x".into()))
        );
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(parse_host_spec("@trusted")
            .unwrap_err()
            .contains("netgroups not supported"));
        assert!(parse_host_spec("gss/krb5")
            .unwrap_err()
            .contains("*(sec=krb5)"));
        assert!(parse_host_spec("10.0.0.0/33")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_host_spec("10.0.0.0/255.0.255.0")
            .unwrap_err()
            .contains("non-contiguous"));
        assert!(parse_host_spec("fd00::/255.0.0.0").is_err());
        assert!(parse_host_spec("10.0.0/8")
            .unwrap_err()
            .contains("bad network"));
        assert!(parse_host_spec("host[12].x").is_err());
        assert!(parse_host_spec("ho st").is_err());
        assert!(parse_host_spec("a$b").is_err());
        assert!(parse_host_spec("10.1").unwrap_err().contains("bad address"));
        assert!(parse_host_spec("167772161")
            .unwrap_err()
            .contains("bad address"));
        assert!(parse_host_spec("").is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.example.com", "a.example.com"));
        assert!(wildcard_match("*.example.com", "a.b.example.com"));
        assert!(wildcard_match("*.example.com", "A.Example.com."));
        assert!(!wildcard_match("*.example.com", "example.com"));
        assert!(!wildcard_match("*.example.com", "a.example.org"));
        assert!(wildcard_match("node?.x", "node1.x"));
        assert!(!wildcard_match("node?.x", "node12.x"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
    }
}
