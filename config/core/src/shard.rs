//! Sharded distribution: the part of a policy one namespace's sidecars need.
//!
//! A sidecar decides only for its own namespace (the source is the proxy's `NAMESPACE` node
//! metadata, read once per configuration), so it needs only the tenant owning that namespace,
//! the document-wide settings, and the names of the namespaces the whole policy knows (Istio's
//! short names `svc.ns` resolve only for those: `policy/resolve.rs: expand_alias`). That is
//! [`shard_for`]: a valid policy document in its own right, whose decisions for a source in
//! `namespace` equal the whole policy's (`tests/shard_equivalence.rs` proves it over the
//! vectors and random policies).
//!
//! Namespaces no tenant owns are decided by one small mesh-wide [`fallback`] document: no
//! tenants (so `unknownSource` decides), and the tenant namespaces listed as
//! `delegatedNamespaces`, where it stands aside because the namespace's own shard decides.

use std::collections::BTreeSet;

use crate::pattern::{HostEntry, NsSelector};
use crate::spec::{EgressSpec, PolicySpec, TenantSpec};

/// Every namespace `spec` names, as compiling it records them (`policy/compile.rs`): its
/// tenants', those its hosts name (`ns/...`), its `knownNamespaces` and
/// `sharedNamespaces`; sorted.
fn named_namespaces(spec: &PolicySpec) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in &spec.tenants {
        out.extend(tenant_named(t));
    }
    out.extend(
        spec.known_namespaces
            .split(' ')
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned),
    );
    out.extend(spec.shared_namespaces.iter().cloned());
    out
}

/// The namespaces one tenant names: its own, and those its hosts name.
fn tenant_named(t: &TenantSpec) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = t.namespaces.iter().cloned().collect();
    let egress = t
        .egress
        .iter()
        .chain(t.workloads.iter().flat_map(|w| w.egress.iter()));
    out.extend(egress.flat_map(named_in));
    out
}

/// The namespaces one egress entry's hosts name.
fn named_in(e: &EgressSpec) -> impl Iterator<Item = String> + '_ {
    e.hosts
        .iter()
        .filter_map(|h| match h.parse::<HostEntry>().ok()?.namespace {
            NsSelector::Named(ns) => Some(ns),
            NsSelector::Any | NsSelector::Own => None,
        })
}

/// The shard of `spec` for sidecars in `namespace`: the document-wide settings, the tenant
/// owning `namespace` (whole: its rules, exceptions and namespaces) or no tenant at all, and
/// as `knownNamespaces` the other namespaces the whole policy names.
pub fn shard_for(spec: &PolicySpec, namespace: &str) -> PolicySpec {
    Sharder::new(spec).shard_for(namespace)
}

/// [`shard_for`] for many namespaces of one policy: the namespaces the whole policy names are
/// gathered once.
pub struct Sharder<'a> {
    spec: &'a PolicySpec,
    named: BTreeSet<String>,
    /// What each tenant alone names (its namespaces and its hosts'), by tenant index: read
    /// once, not again for each shard.
    by_tenant: Vec<BTreeSet<String>>,
}

impl<'a> Sharder<'a> {
    /// Reads `spec` once.
    pub fn new(spec: &'a PolicySpec) -> Self {
        let by_tenant: Vec<BTreeSet<String>> = spec.tenants.iter().map(tenant_named).collect();
        // As `named_namespaces(spec)`, from the tenants' sets.
        let mut named = named_namespaces(&PolicySpec {
            tenants: Vec::new(),
            known_namespaces: spec.known_namespaces.clone(),
            ..header(spec)
        });
        named.extend(by_tenant.iter().flatten().cloned());
        Sharder {
            spec,
            named,
            by_tenant,
        }
    }

    /// See [`shard_for`].
    pub fn shard_for(&self, namespace: &str) -> PolicySpec {
        let owner = self
            .spec
            .tenants
            .iter()
            .position(|t| t.namespaces.iter().any(|ns| ns == namespace));
        let tenants: Vec<_> = owner
            .and_then(|t| self.spec.tenants.get(t))
            .cloned()
            .into_iter()
            .collect();
        let mut shard = PolicySpec {
            tenants,
            ..header(self.spec)
        };
        // As `named_namespaces(&shard)` (whose knownNamespaces is still empty): its tenant's,
        // and `sharedNamespaces`.
        let mut own: BTreeSet<&String> = self.spec.shared_namespaces.iter().collect();
        if let Some(mine) = owner.and_then(|t| self.by_tenant.get(t)) {
            own.extend(mine);
        }
        // Both sets are sorted: one walk along each, not a lookup per name (a large policy
        // names thousands of namespaces, for each of its hundreds of tenants).
        let mut own = own.iter().peekable();
        let mut known = String::new();
        for ns in &self.named {
            while own.next_if(|o| **o < ns).is_some() {}
            if own.peek() == Some(&&ns) {
                continue;
            }
            if !known.is_empty() {
                known.push(' ');
            }
            known.push_str(ns);
        }
        shard.known_namespaces = known;
        shard
    }
}

/// The mesh-wide fallback: the document-wide settings, no tenant, and every tenant namespace
/// delegated to its own shard (a tenant namespace outside a staged rollout is then left alone,
/// as it is without sharding).
pub fn fallback(spec: &PolicySpec) -> PolicySpec {
    PolicySpec {
        tenants: Vec::new(),
        delegated_namespaces: spec
            .tenants
            .iter()
            .flat_map(|t| t.namespaces.iter().cloned())
            .collect(),
        known_namespaces: String::new(),
        ..header(spec)
    }
}

/// The document-wide settings of `spec`, with no tenant.
fn header(spec: &PolicySpec) -> PolicySpec {
    PolicySpec {
        api_version: spec.api_version.clone(),
        mode: spec.mode,
        cluster_domain: spec.cluster_domain.clone(),
        unknown_source: spec.unknown_source,
        deny_status: spec.deny_status,
        deny_body: spec.deny_body,
        shared_namespaces: spec.shared_namespaces.clone(),
        cluster_networks: spec.cluster_networks.clone(),
        gateways: spec.gateways,
        trust_domains: spec.trust_domains.clone(),
        tenants: Vec::new(),
        delegated_namespaces: Vec::new(),
        known_namespaces: String::new(),
    }
}
