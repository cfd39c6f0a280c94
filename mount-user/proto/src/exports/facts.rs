//! What the shells look up about a client off the request path (reverse name, netgroup
//! memberships) and hand to the sans-IO core, so that matching never blocks.
use std::sync::Arc;

/// A client's looked-up facts, cached by the shells (mount-user's `service::names::NameCache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The reverse-resolved, forward-confirmed name (lowercase, no trailing dot), or the
    /// address as text when there is none (which no name pattern matches).
    pub name: Arc<str>,
    /// Netgroup memberships looked up: (group, member), sorted by group.
    pub netgroups: Vec<(Arc<str>, bool)>,
}

impl HostFacts {
    /// Facts with a name and no netgroup answers.
    pub fn named(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            netgroups: Vec::new(),
        }
    }

    /// Whether the client is in `group`; None when that group was not looked up.
    pub fn in_netgroup(&self, group: &str) -> Option<bool> {
        self.netgroups
            .binary_search_by(|(g, _)| (**g).cmp(group))
            .ok()
            .and_then(|i| self.netgroups.get(i))
            .map(|(_, member)| *member)
    }

    /// Whether every group of `groups` has an answer here.
    pub fn covers(&self, groups: &[Arc<str>]) -> bool {
        groups.iter().all(|g| self.in_netgroup(g).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_by_group() {
        let mut f = HostFacts::named("a.example");
        f.netgroups = vec![(Arc::from("ops"), false), (Arc::from("trusted"), true)];
        assert_eq!(f.in_netgroup("trusted"), Some(true));
        assert_eq!(f.in_netgroup("ops"), Some(false));
        assert_eq!(f.in_netgroup("other"), None);
        assert!(f.covers(&[Arc::from("ops")]));
        assert!(!f.covers(&[Arc::from("ops"), Arc::from("x")]));
    }
}
