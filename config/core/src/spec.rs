//! The policy document as users write it (the "wire" types).
//!
//! These types stay as close to the JSON/YAML as possible and carry no meaning of their own:
//! [`crate::validate`] checks them and [`crate::Policy::compile`] turns them into the matcher.
//! Every struct denies unknown fields, so a typo (`egres:`) is an error, never a silently
//! ignored rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::listeners::PortProtocol;

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "tenant-egress/v1";

/// The default `clusterDomain`, as in a stock Kubernetes cluster.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The default HTTP status of a denial.
pub const DEFAULT_DENY_STATUS: u16 = 403;

/// A whole policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// `enforce` blocks denied requests; `audit` lets them through and reports them.
    #[serde(default)]
    pub mode: Mode,
    /// The Kubernetes cluster domain that service FQDNs end in (`<svc>.<ns>.svc.<domain>`).
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// What happens to a source namespace that belongs to no tenant.
    #[serde(default)]
    pub unknown_source: UnknownSource,
    /// HTTP status of the local reply sent for a denied request (400..=599).
    #[serde(default = "default_deny_status")]
    pub deny_status: u16,
    /// How much the body of a denial tells the caller ([`DenyBody`]). The proxy log and
    /// `tenant-egress explain` always have the full detail.
    #[serde(default, skip_serializing_if = "DenyBody::is_default")]
    pub deny_body: DenyBody,
    /// Namespaces no tenant owns that hosts name on purpose (`istio-system`, a shared
    /// `monitoring`): validation warns about any other unowned namespace a host names, as a
    /// likely typo.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_namespaces: Vec<String>,
    /// The cluster's own address ranges: its Service CIDRs (`kube-apiserver
    /// --service-cluster-ip-range`) and pod CIDRs (`--cluster-cidr`, the nodes' `spec.podCIDRs`).
    /// A passthrough (`ALLOW_ANY`) whose original destination lies inside them is in-cluster
    /// traffic and needs an import; without them an `ALLOW_ANY` tenant can reach any ClusterIP
    /// or pod IP by address. One flat list: both kinds mean "in the cluster" to the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_networks: Vec<String>,
    /// What the filter does in an Istio gateway proxy (node id `router~...`). A mesh-wide
    /// `CLIENT` WasmPlugin also reaches gateway listeners, and a gateway's namespace belongs to
    /// no tenant: with `unknownSource: deny` enforcing there would deny all ingress traffic.
    #[serde(default, skip_serializing_if = "Gateways::is_default")]
    pub gateways: Gateways,
    /// The tenants; each owns one or more source namespaces.
    pub tenants: Vec<TenantSpec>,
    /// Sharded distribution only (`crate::shard`): in the mesh-wide fallback plugin, the tenant
    /// namespaces whose own plugin decides. A proxy in one of them stands aside here
    /// (`tenant_egress.fallback_skipped`), so no request is decided twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegated_namespaces: Vec<String>,
    /// Sharded destination end only (`crate::shard::destination_shard_for`): the namespace whose
    /// inbound traffic this document decides. It carries only the rules that can name a host
    /// that namespace serves (its Kubernetes services and its tenant's `serves`), so it refuses
    /// any other host (`undeclared-service`) instead of deciding it without the rules.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination_shard: String,
    /// SPIFFE trust domains whose identities the destination end accepts
    /// (`spiffe://<trust domain>/ns/<ns>/sa/<sa>`). Empty means Istio's default,
    /// [`DEFAULT_TRUST_DOMAIN`]; list the aliases too when `meshConfig.trustDomainAliases` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    /// Sharded distribution only: every namespace the whole policy names (tenants', those its
    /// hosts name, `sharedNamespaces`), so Istio's short names (`svc.ns`) resolve exactly as under
    /// the whole policy. One string, the names separated by single spaces: the same string in
    /// every shard, as one scalar (not ~1,500), which `generate` renders and sizes once (it
    /// appends it to each shard as one shared value, so it comes after every field a caller-end
    /// shard has).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub known_namespaces: String,
    /// Destination shard only: EVERY tenant of the whole policy, without hosts, so a caller is
    /// known by its namespace and decided in its tenant's mode however few of its rules this
    /// shard carries (`tenants` lists in full those that have some). One string of records
    /// separated by single spaces, `name;mode;ns,ns;listener,listener` (grammar:
    /// [`crate::shard::parse_directory`]): the same string in every shard, as one scalar,
    /// which `generate` renders and sizes once (it appends it to each shard as one shared
    /// value, so it is the last field).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant_directory: String,
}

/// Istio's default trust domain (`meshConfig.trustDomain`).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// One tenant: a set of namespaces that share one egress policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantSpec {
    /// Unique tenant name (a DNS-1123 label).
    pub name: String,
    /// Source namespaces owned by this tenant. A namespace belongs to at most one tenant.
    pub namespaces: Vec<String>,
    /// Sharded distribution only: this tenant's position in the whole policy (a shard lists
    /// only some tenants), so rule paths (`tenants[5].egress[0]`) name it as there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Overrides the document-wide `mode` for this tenant (roll out one tenant at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// `ALLOW_ANY` lets destinations outside the service registry (passthrough, IP literals)
    /// through, as Istio's Sidecar `outboundTrafficPolicy` does.
    #[serde(default)]
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// Allowed destinations, in the shape of Istio's `IstioEgressListener`.
    #[serde(default)]
    pub egress: Vec<EgressSpec>,
    /// Per-workload exceptions, ADDED to the tenant's egress for the pods they select.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadSpec>,
    /// Callers that belong to no tenant (an ingress gateway, monitoring) admitted at this
    /// tenant's destinations (the inbound end; see [`crate::inbound`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<InboundSpec>,
    /// Hosts this tenant's pods serve besides their Kubernetes services (`<svc>.<ns>.svc.<domain>`):
    /// those of a ServiceEntry in one of its namespaces whose `workloadSelector` picks its pods.
    /// Exact names or `*.` wildcards. Only the sharded destination end reads it: a namespace's
    /// destination plugin carries the callers' rules for these hosts and its Kubernetes names,
    /// and refuses any other host it is asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serves: Vec<String>,
}

/// An inbound allowance: a namespace outside every tenant, optionally narrowed to service
/// accounts, whose callers this tenant's destinations admit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InboundSpec {
    /// The caller's namespace (from its SPIFFE id).
    pub namespace: String,
    /// The caller's service accounts; empty admits every service account of the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
}

/// One egress listener: a set of hosts, optionally scoped to one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EgressSpec {
    /// When set, the hosts apply only to destinations on this port (Istio picks exactly one
    /// egress listener per port: the one declaring it, else the portless catch-all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSpec>,
    /// Hosts in Istio's `namespace/dnsName` syntax (`./*`, `istio-system/*`, `*/api.example.com`,
    /// `~prod-us2/*`).
    pub hosts: Vec<String>,
    /// Destination shard only: the position each of `hosts` has in the whole policy's entry
    /// (a shard keeps only some), so rule paths name it as there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_index: Vec<u32>,
}

/// An Istio `SidecarPort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortSpec {
    /// Port number, 1..=65535. Wider integer type so an out-of-range value is reported by
    /// validation with its place, not by the JSON decoder.
    pub number: i64,
    /// HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP or TLS ([`PortProtocol`]). Unset, the port serves
    /// HTTP and TCP alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<PortProtocol>,
    /// Optional port name (a DNS-1123 label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A workload exception: extra egress for the pods matching `selector`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Unique (within the tenant) name; also the generated workload Sidecar's name.
    pub name: String,
    /// Pod labels that must all be present (subset match, as Istio's `workloadSelector`).
    /// May be empty when `serviceAccounts` is set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Service accounts the pod must run as (`SERVICE_ACCOUNT` node metadata at the caller,
    /// the SPIFFE id at the destination). With a selector, both must match. The destination
    /// sees only a caller's namespace and service account, never its labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// Egress added to the tenant's own egress for these pods ([`crate::listeners::merge`]): no
    /// `~` exclusions, and a port the tenant declares keeps the tenant's protocol.
    #[serde(default)]
    pub egress: Vec<EgressSpec>,
}

/// Enforcement mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny what the policy does not allow.
    #[default]
    Enforce,
    /// Never block; log and count what would have been denied.
    Audit,
}

/// What the body of a denial says (`denyBody`).
///
/// On a cluster with one tenant per customer the full explanation is an information leak: it
/// names the policy's paths and rules, and through them other tenants' namespaces. `terse`
/// says only what the caller already knows (its own namespace, the destination it asked for,
/// the cluster Envoy chose) and the reason code; the proxy log keeps the rule that decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyBody {
    /// Reason, source, destination and a hint where the full detail is (the default).
    #[default]
    Terse,
    /// Also why, naming the rule that decided and what to add to the policy.
    Full,
}

impl DenyBody {
    /// Whether this is the default (`terse`), which documents need not spell out.
    pub fn is_default(&self) -> bool {
        *self == DenyBody::default()
    }

    /// The name documents use.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyBody::Terse => "terse",
            DenyBody::Full => "full",
        }
    }
}

/// Policy for source namespaces owned by no tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSource {
    /// Fail closed.
    #[default]
    Deny,
    /// Let such namespaces through unchecked (for gradual adoption).
    Allow,
}

/// `gateways:` in the policy: whether the filter decides in Istio gateway proxies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gateways {
    /// Stand aside in a gateway: every request and connection passes, counted as
    /// `tenant_egress.gateway_passthrough` (the default).
    #[default]
    Passthrough,
    /// Decide in gateways too, with the gateway's namespace as the source (a tenant's, or
    /// `unknownSource`).
    Enforce,
}

impl Gateways {
    fn is_default(&self) -> bool {
        *self == Gateways::Passthrough
    }
}

/// Istio's node id prefix of gateway proxies (`router~IP~POD.NS~NS.svc.cluster.local`;
/// sidecars are `sidecar~...`): `istio/pkg/model/proxy.go`, `NodeType` `router`.
pub const GATEWAY_NODE_ID_PREFIX: &str = "router~";

/// Whether an Envoy node id is an Istio gateway's.
pub fn is_gateway_node_id(id: &[u8]) -> bool {
    id.starts_with(GATEWAY_NODE_ID_PREFIX.as_bytes())
}

/// Istio's `OutboundTrafficPolicy.Mode` as a Sidecar spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboundTrafficPolicy {
    /// Only destinations in the service registry (Istio routes the rest to `BlackHoleCluster`).
    #[default]
    #[serde(rename = "REGISTRY_ONLY")]
    RegistryOnly,
    /// Unknown destinations pass through to the address the application dialled.
    #[serde(rename = "ALLOW_ANY")]
    AllowAny,
}

impl Mode {
    /// The kebab-case name used in documents and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

impl OutboundTrafficPolicy {
    /// The name Istio uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundTrafficPolicy::RegistryOnly => "REGISTRY_ONLY",
            OutboundTrafficPolicy::AllowAny => "ALLOW_ANY",
        }
    }
}

fn default_cluster_domain() -> String {
    DEFAULT_CLUSTER_DOMAIN.to_owned()
}

fn default_deny_status() -> u16 {
    DEFAULT_DENY_STATUS
}
