//! Source identity: a peer address -> the identity-table entry of the app
//! whose task uses it. The table is built at reload; a lookup is one hash probe.

use schemas::Identity;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Peer address -> index into the node config's `identities`.
#[derive(Debug, Default)]
pub struct IdentityTable {
    by_address: HashMap<IpAddr, usize>,
    /// Each identity's app name, shared by the connections it opens (a
    /// connection keeps its source's name: a count, not a copy, each).
    apps: Vec<Arc<str>>,
    /// `UNKNOWN`, shared the same way.
    unknown: Option<Arc<str>>,
}

/// The source name of a peer outside the identity table.
pub const UNKNOWN: &str = "unknown";

impl IdentityTable {
    /// Indexes a node config's identities (validation already refused duplicates).
    pub fn new(identities: &[Identity]) -> IdentityTable {
        let by_address = identities
            .iter()
            .enumerate()
            .map(|(i, id)| (id.address, i))
            .collect();
        let apps = identities
            .iter()
            .map(|id| Arc::from(id.app.as_str()))
            .collect();
        IdentityTable {
            by_address,
            apps,
            unknown: Some(Arc::from(UNKNOWN)),
        }
    }

    /// The app name of `addr`'s identity, or `unknown`, shared.
    pub fn app_name(&self, addr: IpAddr) -> Arc<str> {
        match self.lookup(addr).and_then(|i| self.apps.get(i)) {
            Some(app) => Arc::clone(app),
            None => self.unknown.clone().unwrap_or_else(|| Arc::from(UNKNOWN)),
        }
    }

    /// The identity index of `addr`; an IPv4 peer seen on a dual-stack socket is looked up as IPv4.
    pub fn lookup(&self, addr: IpAddr) -> Option<usize> {
        self.by_address.get(&canonical(addr)).copied()
    }
}

/// `::ffff:a.b.c.d` -> `a.b.c.d`, so one address has one spelling.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_v6_peers_find_their_v4_identity() {
        let ids: Vec<Identity> = serde_json::from_str(
            r#"[{"address":"127.0.1.1","app":"/a","tasks":["a.1"]},{"address":"::1","app":"/b","tasks":["b.1"]}]"#,
        )
        .unwrap();
        let t = IdentityTable::new(&ids);
        assert_eq!(t.lookup("127.0.1.1".parse().unwrap()), Some(0));
        assert_eq!(t.lookup("::ffff:127.0.1.1".parse().unwrap()), Some(0));
        assert_eq!(t.lookup("::1".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("127.0.1.2".parse().unwrap()), None);
        assert_eq!(&*t.app_name("::ffff:127.0.1.1".parse().unwrap()), "/a");
        assert_eq!(&*t.app_name("127.0.1.2".parse().unwrap()), UNKNOWN);
    }
}
