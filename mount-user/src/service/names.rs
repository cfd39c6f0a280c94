//! Host facts for name, wildcard and netgroup export rules: reverse host-name lookups and
//! NSS netgroup membership (innetgr), with a TTL cache (and a shorter one for failures) in
//! front.
//!
//! Lookups block (they may wait on DNS, NIS or LDAP), so the shells call
//! [`NameCache::resolve`] off their hot path: UDP and AF_XDP from resolver threads, TCP from
//! `spawn_blocking`; the hot path only reads [`NameCache::cached`]. A name is only believed
//! when its forward lookup gives the address back (like nfs-utils' mountd), so a client
//! cannot claim a domain just by controlling its own PTR record.
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use mount_proto::exports::HostFacts;

/// How long a found name (and the netgroup answers looked up with it) is cached.
pub const NAME_TTL: Duration = Duration::from_secs(300);
/// How long a failed lookup is cached (short: DNS may come back).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; past that, expired entries go, then everything.
pub const MAX_ENTRIES: usize = 4096;

type Lookup = dyn Fn(IpAddr) -> Option<String> + Send + Sync;
/// `(group, candidate host names)` -> member of the group under any of those names.
type NetgroupLookup = dyn Fn(&str, &[String]) -> bool + Send + Sync;
/// The netgroups the current export table names.
type Groups = dyn Fn() -> Arc<[Arc<str>]> + Send + Sync;

/// Cached host facts, shared by all shells.
pub struct NameCache {
    entries: Mutex<HashMap<IpAddr, (Arc<HostFacts>, Instant)>>,
    lookup: Box<Lookup>,
    innetgr: Box<NetgroupLookup>,
    groups: Box<Groups>,
    ttl: Duration,
    negative_ttl: Duration,
}

impl Default for NameCache {
    fn default() -> Self {
        Self::new()
    }
}

impl NameCache {
    /// A cache in front of the system resolver (getnameinfo + forward confirmation) and
    /// NSS innetgr; no netgroups until [`NameCache::with_netgroups`].
    pub fn new() -> Self {
        Self::with_lookup(Box::new(system_lookup))
    }

    /// A cache in front of `lookup` (tests).
    pub fn with_lookup(lookup: Box<Lookup>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            lookup,
            innetgr: Box::new(system_innetgr),
            groups: Box::new(|| Arc::from(Vec::new())),
            ttl: NAME_TTL,
            negative_ttl: NEGATIVE_TTL,
        }
    }

    /// Look up membership of the netgroups `groups()` names (the live export table's).
    pub fn with_netgroups(mut self, groups: Box<Groups>) -> Self {
        self.groups = groups;
        self
    }

    /// Answer netgroup membership with `innetgr` instead of NSS (tests).
    pub fn with_innetgr(mut self, innetgr: Box<NetgroupLookup>) -> Self {
        self.innetgr = innetgr;
        self
    }

    /// Cache found names for `ttl`, failures for `negative_ttl` (at most `ttl`).
    pub fn with_ttl(mut self, ttl: Duration, negative_ttl: Duration) -> Self {
        self.ttl = ttl;
        self.negative_ttl = negative_ttl.min(ttl);
        self
    }

    /// Forgets everything (a reload: the netgroup or hosts files may have changed).
    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    /// The cached facts of `ip`, if a fresh entry answers every netgroup of the current
    /// table. Never blocks on a lookup: the hot path's question.
    pub fn cached(&self, ip: IpAddr) -> Option<Arc<HostFacts>> {
        let ip = ip.to_canonical();
        let groups = (self.groups)();
        let entries = self.entries.lock();
        entries
            .get(&ip)
            .filter(|(facts, expires)| *expires > Instant::now() && facts.covers(&groups))
            .map(|(facts, _)| facts.clone())
    }

    /// The facts to match `ip` against name and netgroup rules; blocks on DNS/NSS when not
    /// cached. Without a (confirmed) name the name is the address as text, which no name
    /// pattern matches, so such rules then deny, as in nfs-utils.
    pub fn resolve(&self, ip: IpAddr) -> Arc<HostFacts> {
        let ip = ip.to_canonical();
        if let Some(facts) = self.cached(ip) {
            return facts;
        }
        let found = (self.lookup)(ip);
        let ttl = if found.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        let candidates = netgroup_candidates(found.as_deref(), ip);
        let mut netgroups: Vec<(Arc<str>, bool)> = (self.groups)()
            .iter()
            .map(|g| (g.clone(), (self.innetgr)(g, &candidates)))
            .collect();
        netgroups.sort();
        let name = Arc::<str>::from(found.unwrap_or_else(|| ip.to_string()));
        let facts = Arc::new(HostFacts { name, netgroups });
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(ip, (facts.clone(), now + ttl));
        facts
    }
}

/// The names nfs-utils' mountd tries with innetgr: the canonical name, the address as
/// text, then the name without its domain.
fn netgroup_candidates(name: Option<&str>, ip: IpAddr) -> Vec<String> {
    let mut out = Vec::with_capacity(3);
    if let Some(n) = name {
        out.push(n.to_string());
    }
    out.push(ip.to_string());
    if let Some((short, _)) = name.and_then(|n| n.split_once('.')) {
        out.push(short.to_string());
    }
    out
}

/// glibc's innetgr keeps its iteration state in globals (MT-Unsafe race:netgrent).
static INNETGR: Mutex<()> = Mutex::new(());

extern "C" {
    // glibc: int innetgr(const char *netgroup, const char *host, const char *user,
    // const char *domain); the libc crate does not declare it.
    fn innetgr(
        netgroup: *const libc::c_char,
        host: *const libc::c_char,
        user: *const libc::c_char,
        domain: *const libc::c_char,
    ) -> libc::c_int;
}

/// Whether any of `hosts` is in `group`, through NSS (nsswitch.conf's `netgroup:` line:
/// /etc/netgroup, NIS, LDAP, ...).
pub fn system_innetgr(group: &str, hosts: &[String]) -> bool {
    let Ok(group) = CString::new(group) else {
        return false;
    };
    let _serial = INNETGR.lock();
    hosts.iter().any(|h| {
        let Ok(host) = CString::new(h.as_str()) else {
            return false;
        };
        // SAFETY: both strings are NUL-terminated and live across the call; NULL user and
        // domain mean "any"; calls are serialised by INNETGR.
        unsafe {
            innetgr(
                group.as_ptr(),
                host.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
            ) == 1
        }
    })
}

/// Reverse-resolve with getnameinfo(NI_NAMEREQD), then keep the name only if resolving it
/// forward yields `ip`. Lower-cased, without a trailing dot.
pub fn system_lookup(ip: IpAddr) -> Option<String> {
    let name = reverse(ip)?;
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    let confirmed = (name.as_str(), 0)
        .to_socket_addrs()
        .ok()?
        .any(|a| a.ip().to_canonical() == ip);
    if confirmed {
        Some(name)
    } else {
        tracing::debug!(%ip, %name, "reverse name does not resolve back to the address; ignored");
        None
    }
}

/// getnameinfo is used directly because std has no reverse lookup.
fn reverse(ip: IpAddr) -> Option<String> {
    let sa = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `sa` is a valid socket address of `sa.len()` bytes; `host` is a writable
    // buffer of the length passed; no service buffer is requested.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr().cast(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn caches_names_and_failures_and_canonicalises_mapped_addresses() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let cache = NameCache::with_lookup(Box::new(move |ip| {
            c.fetch_add(1, Ordering::SeqCst);
            (ip == "10.0.0.1".parse::<IpAddr>().unwrap()).then(|| "a.example".to_string())
        }));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(&*cache.resolve(mapped).name, "a.example");
        assert_eq!(
            &*cache.resolve("10.0.0.1".parse().unwrap()).name,
            "a.example"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            &*cache.resolve("10.0.0.2".parse().unwrap()).name,
            "10.0.0.2"
        );
        assert_eq!(
            &*cache.resolve("10.0.0.2".parse().unwrap()).name,
            "10.0.0.2"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(cache.cached("10.0.0.3".parse().unwrap()).is_none());
        cache.clear();
        assert!(cache.cached("10.0.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn netgroups_are_looked_up_for_the_current_groups_and_expire() {
        let groups: Arc<Mutex<Arc<[Arc<str>]>>> =
            Arc::new(Mutex::new(Arc::from(vec![Arc::<str>::from("trusted")])));
        let members = Arc::new(Mutex::new(vec!["a.example".to_string()]));
        let calls = Arc::new(AtomicUsize::new(0));
        let (g, m, c) = (groups.clone(), members.clone(), calls.clone());
        let cache = NameCache::with_lookup(Box::new(|ip| {
            (ip == "10.0.0.1".parse::<IpAddr>().unwrap()).then(|| "a.example".to_string())
        }))
        .with_netgroups(Box::new(move || g.lock().clone()))
        .with_innetgr(Box::new(move |group, hosts| {
            c.fetch_add(1, Ordering::SeqCst);
            group == "trusted" && hosts.iter().any(|h| m.lock().contains(h))
        }))
        .with_ttl(Duration::from_millis(200), Duration::from_secs(30));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(cache.resolve(a).in_netgroup("trusted"), Some(true));
        assert_eq!(cache.resolve(b).in_netgroup("trusted"), Some(false));
        // Non-members are cached too (negative TTL capped at the TTL).
        assert_eq!(cache.cached(b).unwrap().in_netgroup("trusted"), Some(false));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A table naming another group makes old entries stale at once.
        *groups.lock() = Arc::from(vec![Arc::<str>::from("ops"), Arc::from("trusted")]);
        assert!(cache.cached(a).is_none());
        assert_eq!(cache.resolve(a).in_netgroup("ops"), Some(false));
        // A membership change shows after the TTL.
        members.lock().clear();
        assert_eq!(cache.cached(a).unwrap().in_netgroup("trusted"), Some(true));
        std::thread::sleep(Duration::from_millis(250));
        assert!(cache.cached(a).is_none());
        assert_eq!(cache.resolve(a).in_netgroup("trusted"), Some(false));
    }

    #[test]
    fn netgroup_candidates_follow_mountd() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            netgroup_candidates(Some("c2.e2e.test"), ip),
            ["c2.e2e.test", "10.0.0.1", "c2"]
        );
        assert_eq!(netgroup_candidates(None, ip), ["10.0.0.1"]);
    }

    #[test]
    fn system_innetgr_answers_without_panicking() {
        // No such group anywhere: false, whatever nsswitch.conf says.
        assert!(!system_innetgr("xmd-no-such-group", &["h".into()]));
        assert!(!system_innetgr("bad\0group", &["h".into()]));
    }

    #[test]
    fn loopback_resolves_to_a_confirmed_name_or_nothing() {
        // /etc/hosts maps 127.0.0.1 to localhost on any sane system (no DNS traffic).
        if let Some(name) = system_lookup("127.0.0.1".parse().unwrap()) {
            assert!(!name.ends_with('.'));
            assert_eq!(name, name.to_ascii_lowercase());
        }
    }
}
