//! Client specs (`10.0.0.0/8`, `fd00::/8`, `*`, `host.example`, `*.example.com`,
//! `@netgroup`): parsing, name resolution at load time, and the compiled matchers.
use ipnet::IpNet;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::glob::{is_pattern, HostPattern};
use super::options::flavor_from_name;

/// A client spec as parsed, before name resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    /// `*`: every client.
    Any,
    /// A single address or a network (a single address is a /32 or /128).
    Net(IpNet),
    /// A host name, resolved to addresses when the file is loaded.
    Name(String),
    /// A pattern with `*`, `?` or `[...]`, matched against the client's reverse-resolved name.
    Wildcard(HostPattern),
    /// `@group`: an NSS netgroup (innetgr), looked up off the request path.
    Netgroup(String),
    /// The obsolete `gss/krb5` form: exportfs still accepts it, and it matches no address.
    Obsolete(String),
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
        // Netgroup names are NSS keys: anything but blanks, parentheses and commas.
        if group.is_empty() || group.contains(|c: char| c.is_whitespace() || "(),".contains(c)) {
            return Err(format!("bad netgroup name {spec:?}"));
        }
        return Ok(HostSpec::Netgroup(group.to_string()));
    }
    if let Some(flavor) = spec.strip_prefix("gss/") {
        if flavor_from_name(flavor).is_none() {
            return Err(format!(
                "unknown security flavor in obsolete client {spec:?}"
            ));
        }
        return Ok(HostSpec::Obsolete(flavor.to_string()));
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
    if is_pattern(spec) {
        return HostPattern::new(spec).map(HostSpec::Wildcard);
    }
    // getaddrinfo would read "10.1" or "167772161" as legacy IPv4 forms: refuse them.
    if spec.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("bad address {spec:?}"));
    }
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
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

/// Resolves host names to addresses when an exports file is loaded (the daemon's is the
/// system resolver; tests and fuzzing use a [`StaticResolver`]).
pub trait Resolver {
    /// The addresses of `name`; an error or an empty list makes the rule inert.
    fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>>;
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
    /// A resolved host name: its addresses.
    Addrs(Vec<IpAddr>),
    /// A host name that did not resolve when the table was built: matched against the
    /// client's reverse-resolved name until a background lookup succeeds and the table is
    /// rebuilt.
    Unresolved(String),
    /// A pattern on the reverse-resolved name.
    Wildcard(HostPattern),
    /// Membership of an NSS netgroup, as the shells looked it up.
    Netgroup(Arc<str>),
    /// Matches no client (the obsolete `gss/FLAVOR` form).
    Nothing,
}

impl Matcher {
    /// The kind of match, as `check` prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Matcher::Any => "everyone",
            Matcher::Net(n) if n.prefix_len() == n.max_prefix_len() => "address",
            Matcher::Net(_) => "network",
            Matcher::Addrs(_) => "host name",
            Matcher::Unresolved(_) => "unresolved host name",
            Matcher::Wildcard(_) => "wildcard",
            Matcher::Netgroup(_) => "netgroup",
            Matcher::Nothing => "obsolete form, matches nothing",
        }
    }
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
            Ok(HostSpec::Wildcard(
                HostPattern::new("*.example.com").unwrap()
            ))
        );
        assert_eq!(
            parse_host_spec("node[0-9]?.x"),
            Ok(HostSpec::Wildcard(
                HostPattern::new("node[0-9]?.x").unwrap()
            ))
        );
        assert_eq!(
            parse_host_spec("@trusted"),
            Ok(HostSpec::Netgroup("trusted".into()))
        );
        assert_eq!(
            parse_host_spec("gss/krb5p"),
            Ok(HostSpec::Obsolete("krb5p".into()))
        );
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(parse_host_spec("@").is_err());
        assert!(parse_host_spec("gss/krb6").is_err());
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
        assert!(parse_host_spec("host[12.x").is_err());
        assert!(parse_host_spec("ho st").is_err());
        assert!(parse_host_spec("a$b").is_err());
        assert!(parse_host_spec("10.1").unwrap_err().contains("bad address"));
        assert!(parse_host_spec("167772161")
            .unwrap_err()
            .contains("bad address"));
        assert!(parse_host_spec("").is_err());
    }
}
