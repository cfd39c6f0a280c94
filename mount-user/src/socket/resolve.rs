//! Reverse host-name lookups for `*.domain` export rules, with a small TTL cache in front.
//!
//! Lookups block (they may wait on DNS), so the shells call [`NameCache::resolve`] off
//! their hot path: UDP from resolver threads, TCP from `spawn_blocking`. A name is only
//! believed when its forward lookup gives the address back (like nfs-utils' mountd), so
//! a client cannot claim a domain just by controlling its own PTR record.
use std::collections::HashMap;
use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a found name is cached.
pub const NAME_TTL: Duration = Duration::from_secs(300);
/// How long a failed lookup is cached (short: DNS may come back).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; past that, expired entries go, then everything.
pub const MAX_ENTRIES: usize = 4096;

type Lookup = dyn Fn(IpAddr) -> Option<String> + Send + Sync;

/// Cached reverse lookups, shared by all shells.
pub struct NameCache {
    entries: Mutex<HashMap<IpAddr, (Arc<str>, Instant)>>,
    lookup: Box<Lookup>,
}

impl Default for NameCache {
    fn default() -> Self {
        Self::new()
    }
}

impl NameCache {
    /// A cache in front of the system resolver (getnameinfo + forward confirmation).
    pub fn new() -> Self {
        Self::with_lookup(Box::new(system_lookup))
    }

    /// A cache in front of `lookup` (tests).
    pub fn with_lookup(lookup: Box<Lookup>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            lookup,
        }
    }

    /// The cached name of `ip`, if a fresh entry exists.
    pub fn cached(&self, ip: IpAddr) -> Option<Arc<str>> {
        let ip = ip.to_canonical();
        let entries = self.entries.lock();
        entries
            .get(&ip)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(name, _)| name.clone())
    }

    /// The name to match `ip` against host-name rules; blocks on DNS when not cached.
    /// Without a (confirmed) name this is the address as text, which no `*.domain`
    /// pattern matches, so such rules then deny, as in nfs-utils.
    pub fn resolve(&self, ip: IpAddr) -> Arc<str> {
        let ip = ip.to_canonical();
        if let Some(name) = self.cached(ip) {
            return name;
        }
        let (name, ttl) = match (self.lookup)(ip) {
            Some(name) => (Arc::<str>::from(name), NAME_TTL),
            None => (Arc::<str>::from(ip.to_string()), NEGATIVE_TTL),
        };
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(ip, (name.clone(), now + ttl));
        name
    }
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
        assert_eq!(&*cache.resolve(mapped), "a.example");
        assert_eq!(&*cache.resolve("10.0.0.1".parse().unwrap()), "a.example");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(&*cache.resolve("10.0.0.2".parse().unwrap()), "10.0.0.2");
        assert_eq!(&*cache.resolve("10.0.0.2".parse().unwrap()), "10.0.0.2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(cache.cached("10.0.0.3".parse().unwrap()).is_none());
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
