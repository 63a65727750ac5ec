//! Policy resolution for one destination app: the most specific entry
//! (exact id, else deepest group, else the defaults) becomes its `Access`.

use crate::state::App;
use schemas::{Access, AppId, Balance, PolicySet, Protocol};

/// The resolved allow-list of `app`.
pub fn access(app: &AppId, policies: &PolicySet) -> Access {
    let entry = policies.entry_for(app);
    Access {
        policy: entry.map(|(p, _)| p.clone()),
        default_action: policies.defaults.action,
        mode: policies.defaults.mode,
        allow: entry.map(|(_, e)| e.allow.clone()).unwrap_or_default(),
        deny: entry.map(|(_, e)| e.deny.clone()).unwrap_or_default(),
    }
}

/// Protocol and balancing: the policy entry wins over the app's labels,
/// which win over the defaults (tcp, round robin).
pub fn settings(app: &App, policies: &PolicySet) -> (Protocol, Balance) {
    let entry = policies.entry_for(&app.id).map(|(_, e)| e);
    let protocol = entry
        .and_then(|e| e.protocol)
        .or(app.protocol)
        .unwrap_or_default();
    let balance = entry
        .and_then(|e| e.balance)
        .or(app.balance)
        .unwrap_or_default();
    (protocol, balance)
}
