//! The compiled policy and the request-time decision.
//!
//! Compile once, decide fast: [`Policy::from_spec`] turns a validated [`PolicySpec`] into hash
//! indexes, and [`Policy::decide`] is a total function over borrowed inputs that never
//! allocates and never scans rules linearly:
//! - exact hosts are one hash probe;
//! - `*.example.com` wildcards are stored by their suffix (`.example.com`) and found by probing
//!   the request host's own suffixes at each label boundary (a reversed-label walk, bounded by
//!   the host's label count, not the rule count); a bitmask of the label counts present skips
//!   probes that cannot hit;
//! - `ns/*` is one probe keyed by namespace.
//!
//! Istio's selection order is mirrored (`pilot/pkg/model/sidecar.go: selectServices`): an
//! exclusion in the destination's namespace bucket or the `*` bucket drops the host; otherwise
//! the destination namespace's bucket is tried, then `*`; the rule named is the most specific
//! ([`crate::pattern::Specificity`]). Per port, the egress listener that declares the port
//! applies, else the portless catch-all (`GetEgressListenerForRDS`), as laid out by the one
//! listener model, [`crate::listeners`], which the Sidecar generator uses too.

mod compile;
mod inbound;
mod index;
mod resolve;

pub use inbound::{InboundCaller, InboundService};
pub use resolve::RoutedCluster;

use rustc_hash::FxHashMap;

use crate::authority::{self, Authority, MalformedAuthority};
use crate::decision::{
    Decision, Destination, DestinationKind, Detail, Protocol, Reason, Request, RuleId, RuleInfo,
    Source, Target,
};
use crate::name::NsName;
use crate::network::{Cidr, ClusterNetworks};
use crate::spec::{DenyBody, Gateways, Mode, OutboundTrafficPolicy, PolicySpec, UnknownSource};
use crate::validate::{self, InvalidPolicy, Warning};
use index::{Bucket, Found, HostSet};
use resolve::{ip_destination, Claim, Passthrough, Route};

pub use compile::opens_tcp;

/// Which listener applies on which port for one source scope ([`crate::listeners`]).
type View = crate::listeners::Listeners<Listener>;

#[derive(Debug, Clone, Copy)]
struct Listener {
    set: u32,
    /// The egress entry to point users at for `not-allowed`.
    rule: RuleId,
    /// Whether TCP/TLS connections may use it (false when its port protocol is HTTP-only).
    tcp: bool,
}

#[derive(Debug)]
struct Tenant {
    name: Box<str>,
    mode: Mode,
    outbound: OutboundTrafficPolicy,
    /// views[0] is the tenant's own egress; views[i + 1] adds workload exception i.
    views: Vec<View>,
    workloads: Vec<Workload>,
    /// Callers outside every tenant that this tenant's destinations admit.
    inbound: Box<[inbound::Allowance]>,
}

#[derive(Debug)]
struct Workload {
    name: Box<str>,
    selector: Box<[(Box<str>, Box<str>)]>,
    /// Empty: any service account.
    service_accounts: Box<[Box<str>]>,
}

/// A source resolved against the policy: its namespace, tenant and the workload exception that
/// applies. Owns its data (the namespace is held inline), so the filter resolves it once per
/// configuration and keeps it: pod labels never change for the life of a proxy (Istio reads them
/// from the downward API at bootstrap).
#[derive(Debug, Clone, Copy)]
pub struct SourceScope {
    /// Empty when the proxy has no (valid) namespace: every request is then denied.
    namespace: NsName,
    tenant: Option<u32>,
    view: u32,
}

impl SourceScope {
    /// The source namespace.
    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then(|| self.namespace.as_str())
    }

    /// The tenant index.
    pub fn tenant(&self) -> Option<u32> {
        self.tenant
    }

    /// The workload exception index that applies, if any.
    pub fn workload(&self) -> Option<u32> {
        self.view.checked_sub(1)
    }
}

/// A compiled, immutable policy.
#[derive(Debug)]
pub struct Policy {
    mode: Mode,
    gateways: Gateways,
    /// `delegatedNamespaces` (sharded distribution's fallback plugin).
    delegated: Box<[Box<str>]>,
    unknown_source: UnknownSource,
    deny_status: u16,
    deny_body: DenyBody,
    cluster_domain: Box<str>,
    /// `.svc.<clusterDomain>`
    svc_suffix: Box<str>,
    /// `.pod.<clusterDomain>`
    pod_suffix: Box<str>,
    /// The cluster's Service and pod CIDRs (`clusterNetworks`).
    networks: ClusterNetworks,
    /// Per listener set: whether its exclusions may select an in-cluster destination whose
    /// namespace is unknown (see [`index::Patterns::may_select_in_cluster`]).
    excludes_in_cluster: Vec<bool>,
    tenants: Vec<Tenant>,
    tenant_of_ns: FxHashMap<Box<str>, u32>,
    /// Every namespace the policy names (tenants' and hosts'), for short-name resolution.
    ns_ids: FxHashMap<Box<[u8]>, u32>,
    sets: Vec<HostSet>,
    rules: Vec<RuleInfo>,
    host_rules: usize,
    /// SPIFFE trust domains the destination end accepts.
    trust_domains: Box<[Box<str>]>,
    /// A destination shard (`destinationShard`): its namespace and the hosts it decides
    /// ([`crate::shard::served_by`]); any other host is `undeclared-service`.
    destination_shard: Option<(Box<str>, Box<[crate::pattern::HostPattern]>)>,
}

/// Policy loading failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The document is invalid; every error is listed.
    #[error(transparent)]
    Invalid(#[from] InvalidPolicy),
}

impl Policy {
    /// Parses, validates and compiles a JSON policy document. On success also returns the
    /// warnings.
    pub fn from_json(bytes: &[u8]) -> Result<(Policy, Vec<Warning>), PolicyError> {
        // validate_json has run every check (check_meaning included): compile directly.
        let (spec, warnings) = validate::validate_json(bytes)?;
        Ok((Self::compile_valid(&spec), warnings))
    }

    /// Validates and compiles a decoded document ([`validate::validate_value`]), returning the
    /// spec too. As [`Policy::from_json`], it compiles what validation passed without checking
    /// it again (`check_meaning` is most of the time `generate` spends reading a large policy).
    pub fn from_value(
        v: serde_json::Value,
    ) -> Result<(PolicySpec, Policy, Vec<Warning>), InvalidPolicy> {
        let (spec, warnings) = validate::validate_value(v)?;
        let policy = Self::compile_valid(&spec);
        Ok((spec, policy, warnings))
    }

    /// Compiles a spec that [`validate::validate_value`] (or [`validate::validate_json`])
    /// accepted, without checking it again: for a caller that validates once and compiles only
    /// when it decides requests (`generate` never does). A spec that was not validated is
    /// compiled all the same, into a policy that may not mean what it says: use
    /// [`Policy::from_spec`] for those.
    pub fn from_validated(spec: &PolicySpec) -> Policy {
        Self::compile_valid(spec)
    }

    /// Validates and compiles a decoded spec.
    pub fn from_spec(spec: &PolicySpec) -> Result<Policy, PolicyError> {
        let (errors, warnings) = validate::check_meaning(spec);
        if !errors.is_empty() {
            return Err(InvalidPolicy { errors, warnings }.into());
        }
        Ok(Self::compile_valid(spec))
    }

    // === accessors ===

    /// The document-wide mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the filter decides in Istio gateway proxies (`gateways:`).
    pub fn gateways(&self) -> Gateways {
        self.gateways
    }

    /// Whether a proxy in `namespace` stands aside because its namespace's own plugin decides
    /// (`delegatedNamespaces`). Asked once per configuration, never per request.
    pub fn delegates(&self, namespace: &str) -> bool {
        self.delegated.iter().any(|ns| &**ns == namespace)
    }

    /// HTTP status for denials.
    pub fn deny_status(&self) -> u16 {
        self.deny_status
    }

    /// How much a denial's body says.
    pub fn deny_body(&self) -> DenyBody {
        self.deny_body
    }

    /// The cluster domain (`cluster.local`).
    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    /// The cluster's Service and pod CIDRs, as declared in `clusterNetworks`.
    pub fn cluster_networks(&self) -> &[Cidr] {
        self.networks.cidrs()
    }

    /// Number of tenants.
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// Number of host entries compiled (the "rules" of the policy).
    pub fn rule_count(&self) -> usize {
        self.host_rules
    }

    /// Number of namespaces owned by tenants.
    pub fn namespace_count(&self) -> usize {
        self.tenant_of_ns.len()
    }

    /// A tenant's name.
    pub fn tenant_name(&self, tenant: u32) -> Option<&str> {
        self.tenants.get(tenant as usize).map(|t| &*t.name)
    }

    /// A tenant's workload exception name.
    pub fn workload_name(&self, tenant: u32, workload: u32) -> Option<&str> {
        self.tenants
            .get(tenant as usize)
            .and_then(|t| t.workloads.get(workload as usize))
            .map(|w| &*w.name)
    }

    /// Where a rule is in the document and what it says.
    pub fn rule(&self, id: RuleId) -> Option<&RuleInfo> {
        self.rules.get(id.0 as usize)
    }

    /// One line describing the policy, for logs.
    pub fn summary(&self) -> String {
        let workloads: usize = self.tenants.iter().map(|t| t.workloads.len()).sum();
        format!(
            "mode={} tenants={} namespaces={} host_rules={} workload_exceptions={} listeners={} deny_status={} unknown_source={}",
            self.mode.as_str(),
            self.tenants.len(),
            self.tenant_of_ns.len(),
            self.host_rules,
            workloads,
            self.sets.len(),
            self.deny_status,
            match self.unknown_source {
                UnknownSource::Deny => "deny",
                UnknownSource::Allow => "allow",
            },
        )
    }

    /// Whether a decision for this source can depend on the destination port: some listener
    /// of its scope (tenant, or tenant plus workload exception) declares a port.
    pub fn port_scoped(&self, src: &SourceScope) -> bool {
        src.tenant
            .and_then(|t| self.tenants.get(t as usize))
            .and_then(|t| t.views.get(src.view as usize))
            .is_some_and(|v| !v.ports.is_empty())
    }

    // === request time ===

    /// Resolves a source: its tenant and the workload exception whose selector is a subset of
    /// the labels (validation guarantees at most one can match; the first wins regardless).
    /// A proxy without service account metadata: exceptions by service account never apply.
    pub fn source(&self, source: &Source<'_>) -> SourceScope {
        self.source_as(source, None)
    }

    /// [`Policy::source`] for a pod running as `service_account` (`SERVICE_ACCOUNT` node
    /// metadata): an exception applies when its selector is a subset of the labels AND, when it
    /// lists service accounts, the pod's is one of them.
    pub fn source_as(&self, source: &Source<'_>, service_account: Option<&str>) -> SourceScope {
        // A namespace longer than a DNS label cannot exist in Kubernetes: treat it as absent.
        let namespace = source
            .namespace
            .filter(|ns| !ns.is_empty())
            .and_then(|ns| NsName::lower(ns.as_bytes()).filter(|n| n.as_str() == ns));
        let tenant = namespace.and_then(|ns| self.tenant_of_ns.get(ns.as_str()).copied());
        let view = tenant
            .and_then(|t| self.tenants.get(t as usize))
            .and_then(|t| {
                t.workloads.iter().position(|w| {
                    w.selector.iter().all(|(k, v)| {
                        source
                            .labels
                            .iter()
                            .any(|(lk, lv)| *lk == &**k && *lv == &**v)
                    }) && w.admits_service_account(service_account)
                })
            })
            .map_or(0, |w| u32::try_from(w + 1).unwrap_or(0));
        SourceScope {
            namespace: namespace.unwrap_or(NsName::empty()),
            tenant,
            view,
        }
    }

    /// Decides one request. Total: every input, however malformed, yields a decision.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        self.decide_for(&self.source(&req.source), &req.target)
    }

    /// Decides for a pre-resolved source (the filter's per-request path).
    pub fn decide_for(&self, src: &SourceScope, target: &Target<'_>) -> Decision {
        self.decide_routed(src, target, &RoutedCluster::parse(target.cluster))
    }

    /// [`Self::decide_for`] with the routed cluster parsed beforehand ([`RoutedCluster::parse`]
    /// of `target.cluster`, which this ignores): the filter parses each distinct cluster name
    /// once and reuses it for every request routed there.
    pub fn decide_routed(
        &self,
        src: &SourceScope,
        target: &Target<'_>,
        cluster: &RoutedCluster,
    ) -> Decision {
        let parsed;
        let claim = match target.authority {
            None => Claim::Absent,
            Some(raw) if cluster.is_named_by(raw) => Claim::ClusterHost,
            Some(raw) => {
                parsed = authority::parse_authority(raw);
                Claim::Parsed(&parsed)
            }
        };
        self.decide_claimed(src, target, claim, cluster)
    }

    /// [`Self::decide_routed`] with the authority parsed beforehand (`target.authority` is not
    /// read): the destination end parses it once for its own check and for every view it asks.
    pub(super) fn decide_parsed(
        &self,
        src: &SourceScope,
        target: &Target<'_>,
        authority: Option<&Result<Authority, MalformedAuthority>>,
        cluster: &RoutedCluster,
    ) -> Decision {
        let claim = match authority {
            Some(a) => Claim::Parsed(a),
            None => Claim::Absent,
        };
        self.decide_claimed(src, target, claim, cluster)
    }

    /// [`Self::decide_parsed`] for a [`Claim`]. One return path, so the decision is built in
    /// the caller's slot rather than copied there (it holds two inline names).
    fn decide_claimed(
        &self,
        src: &SourceScope,
        target: &Target<'_>,
        claim: Claim<'_>,
        cluster: &RoutedCluster,
    ) -> Decision {
        let tenant = src.tenant.and_then(|t| self.tenants.get(t as usize));
        let mode = tenant.map_or(self.mode, |t| t.mode);
        let mut d = Decision {
            allowed: false,
            enforced: mode == Mode::Enforce,
            reason: Reason::UnknownSource,
            tenant: src.tenant,
            rule: None,
            destination: Destination::UNKNOWN,
            detail: None,
        };
        if !src.namespace.is_empty() {
            self.decide_into(tenant, src, target, claim, cluster, &mut d);
        }
        d
    }

    /// The body of [`Self::decide_claimed`], writing into `d`.
    fn decide_into(
        &self,
        tenant: Option<&Tenant>,
        src: &SourceScope,
        target: &Target<'_>,
        claim: Claim<'_>,
        cluster: &RoutedCluster,
        d: &mut Decision,
    ) {
        let src_ns = src.namespace.as_bytes();
        let Some(route) = self.resolve(src_ns, target, claim, cluster, d) else {
            return;
        };
        let Some(tenant) = tenant else {
            d.reason = Reason::NoTenant;
            d.allowed = self.unknown_source == UnknownSource::Allow;
            return;
        };
        match route {
            Route::Registry { fallback } => {
                let dest = &d.destination;
                let outcome = self.decide_import(tenant, src, target, dest, dest.host.as_bytes());
                outcome.apply(d);
                // Without a routed cluster, a name no entry imports is one the tenant's Sidecar
                // has no route for: under ALLOW_ANY Envoy would pass it through, so it is
                // decided as that passthrough. A short name is never denied only because its
                // last label happens to be a namespace.
                if let Some(p) = fallback {
                    if !d.allowed && tenant.outbound == OutboundTrafficPolicy::AllowAny {
                        self.decide_passthrough(tenant, src, target, &p, d);
                    }
                }
            }
            Route::Passthrough(p) => self.decide_passthrough(tenant, src, target, &p, d),
        }
    }

    /// The import check of one listener: exclusions win, then imports, for `host` (the
    /// destination's, or none) in the destination's namespace bucket. Not inlined: one copy
    /// serves both callers (the shipped .wasm has a size budget). Returns the outcome rather
    /// than writing the decision, so that `host` can be borrowed from it without a copy.
    #[inline(never)]
    fn decide_import(
        &self,
        tenant: &Tenant,
        src: &SourceScope,
        target: &Target<'_>,
        dest: &Destination,
        host: &[u8],
    ) -> Outcome {
        let mut o = Outcome {
            allowed: false,
            reason: Reason::NotAllowed,
            rule: None,
            detail: None,
        };
        let Some(view) = tenant.views.get(src.view as usize) else {
            return o;
        };
        let Some(listener) = view.on_port(dest.port) else {
            o.detail = Some(Detail::NoListenerForPort(dest.port));
            return o;
        };
        if target.protocol == Protocol::Tcp && !listener.tcp {
            o.rule = Some(listener.rule);
            o.detail = dest.port.map(Detail::HttpOnlyPort);
            return o;
        }
        let Some(set) = self.sets.get(listener.set as usize) else {
            return o;
        };
        let src_ns = src.namespace.as_bytes();
        let dest_ns = dest.namespace.as_bytes();
        let bucket = Bucket {
            ns: if dest_ns.is_empty() {
                None
            } else {
                self.ns_ids.get(dest_ns).copied()
            },
            own: !dest_ns.is_empty() && dest_ns == src_ns,
        };
        match set.find(host, bucket) {
            Found::Excluded(rule) => {
                o.reason = Reason::Excluded;
                o.rule = Some(rule);
            }
            Found::Imported(rule) => {
                o.allowed = true;
                o.reason = Reason::Allowed;
                o.rule = Some(rule);
            }
            Found::Neither => o.rule = Some(listener.rule),
        }
        o
    }

    /// A request or connection Envoy sent to `PassthroughCluster` (or that no cluster names):
    /// it goes to the original destination, whatever its name says. HTTP and TLS alike:
    /// 1. an exclusion of the listener for the destination port holds on the name (the `Host`
    ///    or the SNI, already folded to one spelling: case, trailing dot, port);
    /// 2. `REGISTRY_ONLY`: nothing outside the registry passes;
    /// 3. in-cluster (the original destination lies in `clusterNetworks`, or the name is a
    ///    pod's DNS name): mesh traffic, so it needs an import. Nothing verifiable says which
    ///    namespace it is in, so only `*/*` can allow it, and not when the listener excludes
    ///    something in the cluster. Unknown original destination with networks declared: the
    ///    same (fail closed);
    /// 4. otherwise external: allowed under `ALLOW_ANY`.
    fn decide_passthrough(
        &self,
        tenant: &Tenant,
        src: &SourceScope,
        target: &Target<'_>,
        p: &Passthrough,
        d: &mut Decision,
    ) {
        d.allowed = false;
        d.rule = None;
        d.detail = None;
        d.destination = match (p.name, p.ip) {
            (Some(name), _) => Destination {
                kind: DestinationKind::Host,
                host: name,
                namespace: NsName::empty(),
                port: p.port,
                address: p.address,
            },
            (None, Some(ip)) => ip_destination(ip, p.port),
            (None, None) => Destination {
                port: p.port,
                ..Destination::UNKNOWN
            },
        };
        let listener = tenant
            .views
            .get(src.view as usize)
            .and_then(|v| v.on_port(p.port));
        if let Some(name) = p.name {
            let set = listener.and_then(|l| self.sets.get(l.set as usize));
            if let Some(set) = set {
                if let Some(rule) = set.find_exclusion(name.as_bytes(), Bucket::UNKNOWN) {
                    d.reason = Reason::Excluded;
                    d.rule = Some(rule);
                    return;
                }
            }
        }
        if tenant.outbound == OutboundTrafficPolicy::RegistryOnly {
            d.reason = Reason::NotInRegistry;
            return;
        }
        let in_cluster = p.pod_name || p.ip.is_some_and(|ip| self.networks.contains(ip));
        let unknown = p.ip.is_none() && self.networks.is_declared();
        if !in_cluster && !unknown {
            d.allowed = true;
            d.reason = Reason::AllowAny;
            return;
        }
        // Decided on the address (the name is only a claim): only `*/*` selects it.
        if let Some(ip) = p.ip {
            d.destination = ip_destination(ip, p.port);
        }
        let dest = &d.destination;
        let host = if p.ip.is_some() {
            dest.host.as_bytes()
        } else {
            &[]
        };
        self.decide_import(tenant, src, target, dest, host).apply(d);
        if d.detail.is_some() {
            return;
        }
        let excluding = listener
            .and_then(|l| self.excludes_in_cluster.get(l.set as usize))
            .copied()
            .unwrap_or(true);
        d.detail = Some(if !in_cluster {
            Detail::NoOriginalDestination
        } else if d.allowed && excluding {
            Detail::InClusterExcluded
        } else if p.pod_name {
            Detail::InClusterPodName
        } else {
            Detail::InCluster
        });
        if d.allowed && excluding {
            d.allowed = false;
            d.reason = Reason::NotAllowed;
        }
    }
}

/// What [`Policy::decide_import`] found, for the decision.
struct Outcome {
    allowed: bool,
    reason: Reason,
    rule: Option<RuleId>,
    detail: Option<Detail>,
}

impl Outcome {
    /// Writes the outcome into the decision (whose detail is unset at both call sites).
    fn apply(self, d: &mut Decision) {
        d.allowed = self.allowed;
        d.reason = self.reason;
        d.rule = self.rule;
        d.detail = self.detail;
    }
}

/// The cluster networks a spec declares (validation has refused unparsable CIDRs).
pub(super) fn networks_of(spec: &PolicySpec) -> ClusterNetworks {
    // Plain loops: iterator adapters here cost the shipped .wasm more than they read better.
    let mut cidrs = Vec::new();
    for c in &spec.cluster_networks {
        if let Ok(c) = c.parse::<Cidr>() {
            cidrs.push(c);
        }
    }
    ClusterNetworks::new(cidrs)
}

#[cfg(test)]
mod tests;
