//! The Envoy RBAC configuration the benchmark compares tenant-egress with: one ALLOW policy
//! whose permissions are the policy's host entries as `:authority` matchers.
//!
//! Host entries are read with the core's own grammar ([`HostEntry`]), then mapped one to one:
//! an exact FQDN → `exact`; `*.x` → `suffix .x`; `ns/*` (and `./*`, with the tenant's first
//! namespace) → `suffix .ns.svc.<clusterDomain>`; `*/*` → `suffix .svc.<clusterDomain>`.
//! `~` exclusions become permissions of their own that never match this traffic (RBAC has no
//! exclusion inside an ALLOW policy). This is a cost model, not a translation: RBAC sees only
//! the `:authority`, not the source namespace or the routed cluster.

use serde_json::{json, Value};
use tenant_egress_core::pattern::{HostEntry, HostPattern, NsSelector};
use tenant_egress_core::PolicySpec;

/// Type URL of Envoy's RBAC HTTP filter config.
pub const RBAC_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// One `:authority` permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Perm {
    Exact(String),
    Suffix(String),
}

impl Perm {
    fn matches(&self, host: &str) -> bool {
        match self {
            Perm::Exact(h) => h == host,
            Perm::Suffix(s) => host.ends_with(s.as_str()),
        }
    }

    fn to_json(&self) -> Value {
        let (kind, value) = match self {
            Perm::Exact(v) => ("exact", v),
            Perm::Suffix(v) => ("suffix", v),
        };
        json!({"header": {"name": ":authority", "string_match": {kind: value}}})
    }
}

/// Every host entry of `policy` (tenants' and workload exceptions'), as a permission.
pub fn permissions(policy: &PolicySpec) -> Result<Vec<Perm>, String> {
    let domain = &policy.cluster_domain;
    let mut perms = Vec::new();
    for tenant in &policy.tenants {
        let own = tenant.namespaces.first().map(String::as_str).unwrap_or("");
        let listeners = tenant
            .egress
            .iter()
            .chain(tenant.workloads.iter().flat_map(|w| w.egress.iter()));
        for listener in listeners {
            for raw in &listener.hosts {
                let entry: HostEntry = raw
                    .parse()
                    .map_err(|e| format!("tenant {}: host {raw:?} {e}", tenant.name))?;
                perms.push(match (&entry.namespace, &entry.host) {
                    (NsSelector::Named(ns), HostPattern::All) => {
                        Perm::Suffix(format!(".{ns}.svc.{domain}"))
                    }
                    (NsSelector::Own, HostPattern::All) => {
                        Perm::Suffix(format!(".{own}.svc.{domain}"))
                    }
                    (NsSelector::Any, HostPattern::All) => Perm::Suffix(format!(".svc.{domain}")),
                    (_, HostPattern::Suffix(s)) => Perm::Suffix(s.clone()),
                    (_, HostPattern::Exact(h)) => Perm::Exact(h.clone()),
                });
            }
        }
    }
    Ok(perms)
}

/// The RBAC filter's typed config with exactly `rules` permissions, and a note for the report.
///
/// The permissions that would allow `allowed_host` are replaced by one placed in the middle of
/// the list (traffic spread over 1,000 hosts matches on average halfway), and the list is
/// padded (or cut) to exactly `rules`. A denied request evaluates every permission.
pub fn filter(
    policy: &PolicySpec,
    allowed_host: &str,
    rules: usize,
) -> Result<(Value, String), String> {
    let rules = rules.max(1);
    let all = permissions(policy)?;
    let winner = all
        .iter()
        .find(|p| p.matches(allowed_host))
        .cloned()
        .unwrap_or_else(|| Perm::Exact(allowed_host.to_string()));
    let mut perms: Vec<Perm> = all
        .into_iter()
        .filter(|p| !p.matches(allowed_host))
        .collect();
    let mut pad = 0;
    while perms.len() < rules - 1 {
        perms.push(Perm::Exact(format!("pad-{pad}.rbac.example.com")));
        pad += 1;
    }
    perms.truncate(rules - 1);
    let middle = perms.len() / 2;
    perms.insert(middle, winner);
    let exact = perms.iter().filter(|p| matches!(p, Perm::Exact(_))).count();
    let note = format!(
        "{rules} `:authority` permissions ({exact} exact, {} suffix); the allowed host matches \
         permission #{}, a denied host is checked against all {rules}",
        perms.len() - exact,
        middle + 1
    );
    let cfg = json!({
        "@type": RBAC_TYPE_URL,
        "rules": {
            "action": "ALLOW",
            "policies": {
                "tenant-egress-equivalent": {
                    "permissions": perms.iter().map(Perm::to_json).collect::<Vec<_>>(),
                    "principals": [{"any": true}],
                }
            },
        },
    });
    Ok((cfg, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> PolicySpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn entries_map_one_to_one() {
        let p = spec(json!({
            "apiVersion": "tenant-egress/v1",
            "tenants": [{
                "name": "t", "namespaces": ["a", "b"],
                "egress": [{"hosts": ["./*", "c/*", "*/*.x.com", "*/api.y.com", "~/secret.x.com"]}],
                "workloads": [{"name": "w", "selector": {"app": "w"},
                               "egress": [{"hosts": ["*/w.z.com"]}]}],
            }],
        }));
        assert_eq!(
            permissions(&p).unwrap(),
            vec![
                Perm::Suffix(".a.svc.cluster.local".into()),
                Perm::Suffix(".c.svc.cluster.local".into()),
                Perm::Suffix(".x.com".into()),
                Perm::Exact("api.y.com".into()),
                Perm::Exact("secret.x.com".into()),
                Perm::Exact("w.z.com".into()),
            ]
        );
    }

    #[test]
    fn padded_to_size_with_the_allowing_permission_in_the_middle() {
        let p = spec(json!({
            "apiVersion": "tenant-egress/v1",
            "tenants": [{"name": "t", "namespaces": ["a"],
                         "egress": [{"hosts": ["./*", "c/*", "*/api.y.com"]}]}],
        }));
        let (cfg, note) = filter(&p, "svc.c.svc.cluster.local", 10).unwrap();
        let perms = cfg["rules"]["policies"]["tenant-egress-equivalent"]["permissions"]
            .as_array()
            .unwrap();
        assert_eq!(perms.len(), 10);
        assert_eq!(
            perms[4]["header"]["string_match"]["suffix"],
            ".c.svc.cluster.local"
        );
        assert_eq!(
            perms
                .iter()
                .filter(|p| p.to_string().contains(".c.svc"))
                .count(),
            1
        );
        assert!(note.contains("permission #5"), "{note}");
        assert!(note.contains("(8 exact, 2 suffix)"), "{note}");
    }
}
