//! [`EnvoyConfig`]: renders an Envoy v3 bootstrap (as JSON) that imitates the
//! OUTBOUND side of an Istio sidecar, plus local "upstream" listeners that
//! stand in for the services' pods.
//!
//! Layout of the rendered bootstrap (all on 127.0.0.1, ports from
//! [`free_ports`](crate::free_ports)):
//!
//! - `node`: `id: sidecar~127.0.0.1~<pod>.<ns>~<ns>.svc.cluster.local`,
//!   `cluster: <app>.<ns>`, `metadata: {NAMESPACE, LABELS}` (both optional).
//! - one outbound listener per service port `P` (Istio's `0.0.0.0_P`,
//!   `traffic_direction: OUTBOUND`, HCM `stat_prefix: outbound_0.0.0.0_P`,
//!   codec AUTO, route config named `"P"` with `ignore_port_in_host_matching`),
//!   with one virtual host `<fqdn>:P` per service having port `P` (domains:
//!   [`route_domains`], no `:port` variants), one `<host>:P` per
//!   [`ServiceEntry`] host, and the catch-all `allow_any` (→ `PassthroughCluster`)
//!   or `block_all` (direct 502) virtual host; HTTP filters: the
//!   metadata-exchange stand-in ([`metadata_exchange_stand_in`]), the filter
//!   right after it, the router. These are Istio 1.22's shapes, held to the
//!   real 1.22.3 dump by `tests/tests/istiod_dumps.rs`. Its local port is
//!   [`Topology::listeners`]. (The standalone sidecars of [`crate::standalone`]
//!   hold every port in ONE listener, so they keep the pre-1.20 `:port` domain
//!   variants that tell the ports apart.)
//! - clusters `outbound|P||<fqdn>` (STATIC → the service's upstream listener)
//!   carrying Istio's `filter_metadata.istio.services` metadata,
//!   `PassthroughCluster` (ORIGINAL_DST) and `BlackHoleCluster`.
//! - upstream listeners: one per (service, port), answering 200 with body
//!   `upstream=<svc>.<ns>:<port>\n`, header `x-upstream: <svc>.<ns>:<port>`,
//!   `x-upstream-authority` / `x-upstream-path` (what the upstream received);
//!   plus the `canary` listener (`upstream=canary\n`), the passthrough target
//!   that denied requests must never reach. Each has its own HCM stat_prefix
//!   ([`upstream_stat_prefix`], `upstream_canary`).
//!
//! There is no iptables here, so nothing "original-destination"-redirects
//! traffic: `PassthroughCluster` uses `original_dst_lb_config.use_http_header`,
//! i.e. the `x-envoy-original-dst-host: 127.0.0.1:<port>` request header picks
//! the passthrough destination. The `allow_any` route adds that header pointing
//! at the canary when the client did not send one (`ADD_IF_ABSENT`), so plain
//! requests to unknown hosts land on the canary instead of looping back into
//! the listener itself (ORIGINAL_DST would otherwise fall back to the
//! downstream connection's local address = the listener).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::envoy::{Envoy, StartError};

/// Name of the HTTP filter (and of its ECDS resource, wasm plugin, root and VM ids).
pub const ECDS_FILTER_NAME: &str = "tenant-egress";

/// Type URL of the Envoy wasm HTTP filter config.
pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// What the catch-all virtual host of each outbound listener does, as Istio's
/// `meshConfig.outboundTrafficPolicy.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutboundPolicy {
    /// `allow_any` → `PassthroughCluster` (the canary): the filter is what must block.
    #[default]
    AllowAny,
    /// `block_all` → `direct_response: {status: 502}`.
    RegistryOnly,
    /// The catch-all routes to `BlackHoleCluster` (a cluster with no endpoints), as Istio did
    /// for REGISTRY_ONLY before the direct 502 and still does on TCP ports.
    BlackHole,
}

/// Which extra HTTP filter (before the router) the outbound listeners get.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum FilterMode {
    /// Only the router.
    #[default]
    None,
    /// The tenant-egress wasm filter, with this policy JSON as its plugin configuration.
    Wasm { policy: String },
    /// Any HTTP filter config (`{"@type": ..., ...}`), e.g. to exercise ECDS
    /// mechanics without the wasm.
    Typed(Value),
}

/// A service (Kubernetes `Service`) in the simulated mesh registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub ports: Vec<u16>,
}

impl Service {
    /// `<name>.<namespace>.svc.cluster.local`.
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }
}

/// An Istio `ServiceEntry` host (e.g. the wildcard `*.example.com`, resolution NONE) declared in
/// `namespace`: one virtual host per port with the domains [`service_entry_domains`] and a
/// cluster `outbound|P||<host>` whose `istio.services` metadata names that namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub host: String,
    pub namespace: String,
    pub ports: Vec<u16>,
}

/// One (registry entry, port) of an [`EnvoyConfig`]: a service's or a ServiceEntry's port, with
/// everything the bootstrap says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryPort {
    /// The host Istio names the virtual host and cluster after: a service's FQDN or the
    /// ServiceEntry's host.
    pub host: String,
    /// `istio.services[0].name`: the service name, or for a ServiceEntry its host.
    pub name: String,
    /// `istio.services[0].namespace`: where the service (or ServiceEntry) lives.
    pub namespace: String,
    pub port: u16,
    /// Whether this is a ServiceEntry rather than a Kubernetes service.
    pub service_entry: bool,
}

impl RegistryPort {
    /// Istio's outbound cluster name, `outbound|<port>||<host>`.
    pub fn cluster(&self) -> String {
        format!("outbound|{}||{}", self.port, self.host)
    }

    /// The [`Topology::upstreams`] key of the upstream listener playing this port's pods.
    pub fn upstream_key(&self) -> (String, String, u16) {
        (self.name.clone(), self.namespace.clone(), self.port)
    }

    /// What the upstream listener says it is (`x-upstream` header, body `upstream=<label>`):
    /// `<svc>.<ns>:<port>`, or `<host>:<port>` for a ServiceEntry.
    pub fn label(&self) -> String {
        if self.service_entry {
            format!("{}:{}", self.host, self.port)
        } else {
            format!("{}.{}:{}", self.name, self.namespace, self.port)
        }
    }

    /// The virtual host's domains as seen from a sidecar in namespace `src`: with `:port`
    /// variants (Istio up to 1.19, and a listener holding several ports), or without them
    /// (Istio 1.20+, whose route tables are per port and ignore the port).
    pub fn domains(&self, src: Option<&str>, port_variants: bool) -> Vec<String> {
        match (self.service_entry, port_variants) {
            (true, true) => service_entry_domains(&self.host, self.port),
            (true, false) => vec![self.host.clone()],
            (false, true) => istio_domains(&self.name, &self.namespace, self.port, src),
            (false, false) => route_domains(&self.name, &self.namespace, src),
        }
    }
}

/// Local ports assigned for one Envoy run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Service port (what the app dials) → local port of its outbound listener.
    pub listeners: BTreeMap<u16, u16>,
    /// (service, namespace, service port) → local port of its upstream listener.
    pub upstreams: BTreeMap<(String, String, u16), u16>,
    /// Local port of the canary (passthrough target) listener.
    pub canary: u16,
}

/// Builder for an Istio-sidecar-like Envoy bootstrap; see the module docs.
#[derive(Clone, Debug)]
pub struct EnvoyConfig {
    pod: String,
    app: String,
    /// Source namespace: used in the node id/cluster and for the short aliases.
    namespace: String,
    /// Whether `node.metadata.NAMESPACE` is set.
    namespace_metadata: bool,
    labels: BTreeMap<String, String>,
    extra_metadata: BTreeMap<String, Value>,
    node_id: Option<String>,
    node_cluster: Option<String>,
    services: Vec<Service>,
    service_entries: Vec<ServiceEntry>,
    extra_ports: BTreeSet<u16>,
    outbound_policy: OutboundPolicy,
    filter: FilterMode,
    ecds: bool,
    wasm_file: Option<PathBuf>,
    failure_policy: String,
    log_level: String,
    component_log_level: String,
    extra_args: Vec<String>,
    /// Runtime flags (`layered_runtime`, one static layer): key -> value.
    runtime: BTreeMap<String, Value>,
    /// Further wasm filters (name, policy) before the configured one: the same module, VM and
    /// root id, another configuration (a second WasmPlugin reaching the same proxy).
    more_wasm: Vec<(String, String)>,
    ends: crate::ends::Ends,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        Self::new("tenant-a")
    }
}

impl EnvoyConfig {
    /// A sidecar of pod `client-0` (app `client`) in namespace `namespace`, with
    /// `NAMESPACE` metadata, no labels, no services, ALLOW_ANY, no extra filter.
    pub fn new(namespace: &str) -> Self {
        Self {
            pod: "client-0".into(),
            app: "client".into(),
            namespace: namespace.into(),
            namespace_metadata: true,
            labels: BTreeMap::new(),
            extra_metadata: BTreeMap::new(),
            node_id: None,
            node_cluster: None,
            services: Vec::new(),
            service_entries: Vec::new(),
            extra_ports: BTreeSet::new(),
            outbound_policy: OutboundPolicy::AllowAny,
            filter: FilterMode::None,
            ecds: false,
            wasm_file: None,
            failure_policy: "FAIL_CLOSED".into(),
            log_level: "info".into(),
            component_log_level: "wasm:debug".into(),
            extra_args: Vec::new(),
            runtime: BTreeMap::new(),
            more_wasm: Vec::new(),
            ends: crate::ends::default_ends(),
        }
    }

    /// Adds another wasm filter named `name` with `policy_json`, before the configured one
    /// (as a root-namespace WasmPlugin and a namespace one both reach a sidecar).
    pub fn another_wasm_filter(mut self, name: &str, policy_json: &str) -> Self {
        self.more_wasm.push((name.into(), policy_json.into()));
        self
    }

    pub fn pod(mut self, pod: &str) -> Self {
        self.pod = pod.into();
        self
    }

    pub fn app(mut self, app: &str) -> Self {
        self.app = app.into();
        self
    }

    /// Leaves `NAMESPACE` out of the node metadata (the node id and cluster
    /// still mention the namespace, as they always do in Istio; override them
    /// with [`node_id`](Self::node_id) / [`node_cluster`](Self::node_cluster)).
    pub fn without_namespace_metadata(mut self) -> Self {
        self.namespace_metadata = false;
        self
    }

    /// Adds a pod label (`node.metadata.LABELS`, omitted when empty).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets any other `node.metadata` key (overrides NAMESPACE/LABELS too).
    pub fn node_metadata(mut self, key: &str, value: Value) -> Self {
        self.extra_metadata.insert(key.into(), value);
        self
    }

    pub fn node_id(mut self, id: &str) -> Self {
        self.node_id = Some(id.into());
        self
    }

    pub fn node_cluster(mut self, cluster: &str) -> Self {
        self.node_cluster = Some(cluster.into());
        self
    }

    /// Registers service `name.namespace` with the given ports.
    pub fn service(mut self, name: &str, namespace: &str, ports: &[u16]) -> Self {
        self.services.push(Service {
            name: name.into(),
            namespace: namespace.into(),
            ports: ports.to_vec(),
        });
        self
    }

    /// Registers an Istio `ServiceEntry` host (exact or wildcard, e.g. `*.example.com`)
    /// declared in `namespace`, with the given ports; see [`ServiceEntry`].
    pub fn service_entry(mut self, host: &str, namespace: &str, ports: &[u16]) -> Self {
        self.service_entries.push(ServiceEntry {
            host: host.into(),
            namespace: namespace.into(),
            ports: ports.to_vec(),
        });
        self
    }

    /// Adds an outbound listener for `port` even if no service has it (only
    /// the catch-all virtual host then).
    pub fn listener(mut self, port: u16) -> Self {
        self.extra_ports.insert(port);
        self
    }

    pub fn outbound_policy(mut self, policy: OutboundPolicy) -> Self {
        self.outbound_policy = policy;
        self
    }

    /// Shorthand for `outbound_policy(OutboundPolicy::RegistryOnly)`.
    pub fn registry_only(self) -> Self {
        self.outbound_policy(OutboundPolicy::RegistryOnly)
    }

    /// Adds the wasm filter, inline in every outbound listener, with `policy_json`.
    pub fn wasm_filter(mut self, policy_json: &str) -> Self {
        self.filter = FilterMode::Wasm {
            policy: policy_json.into(),
        };
        self.ecds = false;
        self
    }

    /// Adds the wasm filter delivered through ECDS from a watched file; the
    /// initial policy is `policy_json`; see [`Envoy::update_policy`].
    pub fn wasm_filter_ecds(mut self, policy_json: &str) -> Self {
        self.filter = FilterMode::Wasm {
            policy: policy_json.into(),
        };
        self.ecds = true;
        self
    }

    /// Adds an arbitrary HTTP filter config (`{"@type": ..}`) inline.
    pub fn typed_filter(mut self, typed_config: Value) -> Self {
        self.filter = FilterMode::Typed(typed_config);
        self.ecds = false;
        self
    }

    /// Adds an arbitrary HTTP filter config through ECDS (type URL taken from
    /// its `@type`); update it with [`Envoy::update_ecds`].
    pub fn typed_filter_ecds(mut self, typed_config: Value) -> Self {
        self.filter = FilterMode::Typed(typed_config);
        self.ecds = true;
        self
    }

    /// Uses this `.wasm` instead of [`wasm_path()`](crate::wasm_path) (e.g. a missing or corrupt file).
    pub fn wasm_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.wasm_file = Some(path.into());
        self
    }

    /// `failure_policy` of the wasm plugin (`FAIL_CLOSED` by default).
    pub fn wasm_failure_policy(mut self, policy: &str) -> Self {
        self.failure_policy = policy.into();
        self
    }

    /// Envoy's `-l` (default `info`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// Envoy's `--component-log-level` (default `wasm:debug`; empty = not passed).
    pub fn component_log_level(mut self, spec: &str) -> Self {
        self.component_log_level = spec.into();
        self
    }

    /// Appends a raw Envoy command-line argument (e.g. `--reject-unknown-dynamic-fields`).
    pub fn envoy_arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Sets an Envoy runtime flag in a static `layered_runtime` layer (e.g.
    /// `envoy.reloadable_features.http2_discard_host_header` = `false`).
    pub fn runtime(mut self, key: &str, value: Value) -> Self {
        self.runtime.insert(key.into(), value);
        self
    }

    /// Which ends run the filter: the caller's only (the default, unless the test runs inside
    /// [`through_both_ends`](crate::ends::through_both_ends)), or both ([`crate::ends`]).
    pub fn ends(mut self, ends: crate::ends::Ends) -> Self {
        self.ends = ends;
        self
    }

    /// See [`ends`](Self::ends).
    pub fn which_ends(&self) -> crate::ends::Ends {
        self.ends
    }

    /// The node metadata set with [`node_metadata`](Self::node_metadata).
    pub fn extra_metadata(&self) -> &BTreeMap<String, Value> {
        &self.extra_metadata
    }

    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn service_entries(&self) -> &[ServiceEntry] {
        &self.service_entries
    }

    /// The source namespace this sidecar belongs to (whether or not it is in the metadata).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether `node.metadata.NAMESPACE` is set.
    pub fn has_namespace_metadata(&self) -> bool {
        self.namespace_metadata
    }

    /// The pod labels (`node.metadata.LABELS`).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Every (service or ServiceEntry, port), services first, in the order they were added;
    /// a repeated one is listed once.
    pub fn registry(&self) -> Vec<RegistryPort> {
        let mut out: Vec<RegistryPort> = Vec::new();
        let services = self.services.iter().flat_map(|s| {
            s.ports.iter().map(move |&port| RegistryPort {
                host: s.fqdn(),
                name: s.name.clone(),
                namespace: s.namespace.clone(),
                port,
                service_entry: false,
            })
        });
        let entries = self.service_entries.iter().flat_map(|e| {
            e.ports.iter().map(move |&port| RegistryPort {
                host: e.host.clone(),
                name: e.host.clone(),
                namespace: e.namespace.clone(),
                port,
                service_entry: true,
            })
        });
        for r in services.chain(entries) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    pub fn filter(&self) -> &FilterMode {
        &self.filter
    }

    pub fn uses_ecds(&self) -> bool {
        self.ecds && self.filter != FilterMode::None
    }

    pub fn failure_policy(&self) -> &str {
        &self.failure_policy
    }

    /// Logging and extra command-line arguments for Envoy.
    pub(crate) fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["-l".to_string(), self.log_level.clone()];
        if !self.component_log_level.is_empty() {
            args.push("--component-log-level".into());
            args.push(self.component_log_level.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Service ports that get an outbound listener.
    pub fn service_ports(&self) -> BTreeSet<u16> {
        let mut ports = self.extra_ports.clone();
        ports.extend(self.registry().iter().map(|r| r.port));
        ports
    }

    /// Picks fresh local ports for every listener.
    pub fn allocate(&self) -> Topology {
        let svc_ports: Vec<u16> = self.service_ports().into_iter().collect();
        let mut upstream_keys: Vec<(String, String, u16)> = Vec::new();
        for r in self.registry() {
            let key = r.upstream_key();
            if !upstream_keys.contains(&key) {
                upstream_keys.push(key);
            }
        }
        let mut ports = crate::free_ports(svc_ports.len() + upstream_keys.len() + 1).into_iter();
        let mut next = || ports.next().unwrap_or_default();
        Topology {
            listeners: svc_ports.iter().map(|&p| (p, next())).collect(),
            upstreams: upstream_keys.into_iter().map(|k| (k, next())).collect(),
            canary: next(),
        }
    }

    /// The wasm file this config loads (explicit override or [`wasm_path()`](crate::wasm_path)).
    pub fn resolved_wasm_file(&self) -> PathBuf {
        self.wasm_file.clone().unwrap_or_else(crate::wasm_path)
    }

    /// The HTTP filter's typed config (what goes inline or into the ECDS resource).
    /// Panics if the filter is [`FilterMode::None`].
    pub fn filter_typed_config(&self) -> Value {
        match &self.filter {
            FilterMode::None => panic!("no filter configured"),
            FilterMode::Wasm { policy } => {
                wasm_typed_config(&self.resolved_wasm_file(), policy, &self.failure_policy)
            }
            FilterMode::Typed(v) => v.clone(),
        }
    }

    /// Renders the bootstrap. `dir` is the run's scratch directory (access
    /// log, ECDS file live there).
    pub fn render(&self, topo: &Topology, dir: &Path) -> Value {
        let access_log = dir.join("access.log");
        let mut listeners = Vec::new();
        for (&svc_port, &local) in &topo.listeners {
            let stat_prefix = format!("outbound_0.0.0.0_{svc_port}");
            let mut used_domains = BTreeSet::new();
            let mut vhosts = self.virtual_hosts(Some(svc_port), &mut used_domains);
            vhosts.push(self.catch_all(topo.canary));
            listeners.push(outbound_listener(
                &format!("0.0.0.0_{svc_port}"),
                local,
                &svc_port.to_string(),
                true,
                vhosts,
                self.http_filters(dir),
                file_access_log(&access_log, &stat_prefix),
                &stat_prefix,
            ));
        }
        let registry = self.registry();
        for (key, &local) in &topo.upstreams {
            let (svc, ns, port) = key;
            let marker = registry
                .iter()
                .find(|r| &r.upstream_key() == key)
                .map(RegistryPort::label)
                .unwrap_or_else(|| format!("{svc}.{ns}:{port}"));
            listeners.push(upstream_listener(
                &format!("upstream_{marker}"),
                local,
                &upstream_stat_prefix(svc, ns, *port),
                &marker,
            ));
        }
        listeners.push(upstream_listener(
            "upstream_canary",
            topo.canary,
            "upstream_canary",
            "canary",
        ));

        let mut clusters = self.registry_clusters(&|r| topo.upstreams[&r.upstream_key()]);
        clusters.push(passthrough_cluster());
        clusters.push(blackhole_cluster());

        let mut bootstrap = json!({
            "node": self.node(),
            "admin": {
                // Port 0: the real port is read from --admin-address-path.
                "address": socket(0),
            },
            "static_resources": {"listeners": listeners, "clusters": clusters},
        });
        if !self.runtime.is_empty() {
            bootstrap["layered_runtime"] = json!({
                "layers": [{"name": "test-flags", "static_layer": self.runtime}],
            });
        }
        bootstrap
    }

    /// The bootstrap's `node`: id, cluster and metadata (`NAMESPACE`, `LABELS`, `NAME`, extras),
    /// as Istio's sidecar injector sets them.
    pub(crate) fn node(&self) -> Value {
        let mut metadata = serde_json::Map::new();
        if self.namespace_metadata {
            metadata.insert("NAMESPACE".into(), json!(self.namespace));
        }
        if !self.labels.is_empty() {
            metadata.insert("LABELS".into(), json!(self.labels));
        }
        metadata.insert("NAME".into(), json!(self.pod));
        for (k, v) in &self.extra_metadata {
            metadata.insert(k.clone(), v.clone());
        }
        json!({
            "id": self.node_id.clone().unwrap_or_else(|| format!(
                "sidecar~127.0.0.1~{}.{}~{}.svc.cluster.local",
                self.pod, self.namespace, self.namespace
            )),
            "cluster": self.node_cluster.clone().unwrap_or_else(|| format!("{}.{}", self.app, self.namespace)),
            "metadata": metadata,
        })
    }

    /// Istio's `outbound|P||<host>` clusters, one per [`registry`](Self::registry) entry, each
    /// sending to 127.0.0.1:`upstream(entry)` and carrying `istio.services` metadata.
    pub(crate) fn registry_clusters(&self, upstream: &dyn Fn(&RegistryPort) -> u16) -> Vec<Value> {
        self.registry()
            .iter()
            .map(|r| {
                let name = r.cluster();
                json!({
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(upstream(r))}}]}],
                    },
                    "metadata": {"filter_metadata": {"istio": {"services": [{
                        "host": r.host,
                        "name": r.name,
                        "namespace": r.namespace,
                    }]}}},
                })
            })
            .collect()
    }

    /// The virtual hosts of the registry entries on service port `port` (`None`: every port,
    /// for a listener that holds them all), named `<host>:<port>` with the domains Istio gives
    /// them as seen from this sidecar's namespace. A domain already in `used` is left out (Envoy
    /// rejects a route table with a domain twice); an entry left with none gets no virtual host.
    pub(crate) fn virtual_hosts(
        &self,
        port: Option<u16>,
        used: &mut BTreeSet<String>,
    ) -> Vec<Value> {
        let mut vhosts = Vec::new();
        for r in self.registry() {
            if port.is_some_and(|p| p != r.port) {
                continue;
            }
            // A per-port route table (Istio 1.20+) lists no `:port` variants; a listener that
            // holds every port needs them to tell the ports apart.
            let domains: Vec<String> = r
                .domains(Some(&self.namespace), port.is_none())
                .into_iter()
                .filter(|d| used.insert(d.clone()))
                .collect();
            if domains.is_empty() {
                continue;
            }
            let name = format!("{}:{}", r.host, r.port);
            vhosts.push(json!({
                "name": name,
                "domains": domains,
                "routes": [{
                    "name": "default",
                    "match": {"prefix": "/"},
                    "route": {
                        "cluster": r.cluster(),
                        "timeout": "0s",
                    },
                    "decorator": {"operation": format!("{name}/*")},
                }],
                "include_request_attempt_count": true,
            }));
        }
        vhosts
    }

    /// The catch-all virtual host (`domains: ["*"]`) for the [`OutboundPolicy`]. Under
    /// ALLOW_ANY the passthrough destination defaults to 127.0.0.1:`passthrough_default`.
    pub(crate) fn catch_all(&self, passthrough_default: u16) -> Value {
        match self.outbound_policy {
            OutboundPolicy::AllowAny => json!({
                "name": "allow_any",
                "domains": ["*"],
                "routes": [{
                    "name": "allow_any",
                    "match": {"prefix": "/"},
                    "route": {"cluster": "PassthroughCluster", "timeout": "0s"},
                    // Harness-only (see module docs): default the passthrough
                    // destination to the canary instead of looping into ourselves.
                    "request_headers_to_add": [{
                        "header": {
                            "key": "x-envoy-original-dst-host",
                            "value": format!("127.0.0.1:{passthrough_default}"),
                        },
                        "append_action": "ADD_IF_ABSENT",
                    }],
                }],
                "include_request_attempt_count": true,
            }),
            OutboundPolicy::RegistryOnly => json!({
                "name": "block_all",
                "domains": ["*"],
                "routes": [{
                    "name": "block_all",
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 502},
                }],
                "include_request_attempt_count": true,
            }),
            OutboundPolicy::BlackHole => json!({
                "name": "block_all",
                "domains": ["*"],
                "routes": [{
                    "name": "block_all",
                    "match": {"prefix": "/"},
                    "route": {"cluster": "BlackHoleCluster", "timeout": "0s"},
                }],
                "include_request_attempt_count": true,
            }),
        }
    }

    /// The outbound HTTP filters, as Istio 1.22+ orders them: the metadata exchange (a
    /// stand-in), the configured filter right after it (phase AUTHZ; inline, or through ECDS
    /// from a file in `dir`), then the router.
    pub(crate) fn http_filters(&self, dir: &Path) -> Vec<Value> {
        let mut http_filters = vec![metadata_exchange_stand_in()];
        for (name, policy) in &self.more_wasm {
            let wasm = self.resolved_wasm_file();
            let typed = wasm_typed_config(&wasm, policy, &self.failure_policy);
            http_filters.push(json!({"name": name, "typed_config": typed}));
        }
        match (&self.filter, self.uses_ecds()) {
            (FilterMode::None, _) => {}
            (_, false) => http_filters.push(json!({
                "name": ECDS_FILTER_NAME,
                "typed_config": self.filter_typed_config(),
            })),
            (_, true) => {
                let type_url = self.filter_typed_config()["@type"]
                    .as_str()
                    .unwrap_or(WASM_TYPE_URL)
                    .to_string();
                http_filters.push(json!({
                    "name": ECDS_FILTER_NAME,
                    "config_discovery": {
                        "config_source": {
                            "path_config_source": {"path": ecds_path(dir)},
                            "resource_api_version": "V3",
                        },
                        "type_urls": [type_url],
                    },
                }));
            }
        }
        http_filters.push(router());
        http_filters
    }

    /// Renders, launches and waits for readiness; retries (up to 3 attempts)
    /// with fresh ports when a port was taken in the meantime. On failure the
    /// run directory is removed (the error carries the log).
    pub fn try_start(&self) -> Result<Envoy, StartError> {
        self.start_attempts(false)
    }

    /// [`try_start`](Self::try_start), panicking with Envoy's log on failure
    /// (the run directory is then kept for inspection).
    pub fn start(&self) -> Envoy {
        match self.start_attempts(true) {
            Ok(e) => e,
            Err(e) => panic!("Envoy failed to start: {e}"),
        }
    }

    fn start_attempts(&self, keep_on_failure: bool) -> Result<Envoy, StartError> {
        let mut last = None;
        for _ in 0..3 {
            match Envoy::launch(self, keep_on_failure) {
                Ok(e) => return Ok(e),
                Err(e) if e.is_port_conflict() => {
                    if e.dir_kept {
                        let _ = std::fs::remove_dir_all(&e.dir);
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StartError::other("no attempt made")))
    }
}

/// Path of the ECDS resource file inside a run directory.
pub fn ecds_path(dir: &Path) -> PathBuf {
    dir.join("xds").join("ecds.json")
}

/// Every Host a client in namespace `src` may send for service `svc.ns` port `port` that
/// Istio routes to it: the FQDN, `svc.ns.svc` and `svc.ns`, each bare and with `:port`, and
/// (only when `src == ns`) the short name `svc` and `svc:port`. Istio up to 1.19 listed exactly
/// these as domains; from 1.20 the route lists the bare ones ([`route_domains`]) and ignores
/// the port, which routes the same Hosts.
pub fn istio_domains(svc: &str, ns: &str, port: u16, src: Option<&str>) -> Vec<String> {
    let mut names = vec![
        format!("{svc}.{ns}.svc.cluster.local"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}"),
    ];
    if src == Some(ns) {
        names.push(svc.to_string());
    }
    names
        .into_iter()
        .flat_map(|n| {
            let with_port = format!("{n}:{port}");
            [n, with_port]
        })
        .collect()
}

/// HCM stat_prefix of the upstream listener of `svc.ns:port`; its request
/// count is the counter `http.<prefix>.downstream_rq_total`.
pub fn upstream_stat_prefix(svc: &str, ns: &str, port: u16) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    format!("upstream_{}_{}_{port}", clean(svc), clean(ns))
}

/// `envoy.extensions.filters.http.wasm.v3.Wasm` config of the tenant-egress
/// plugin loading `wasm` with plugin configuration `policy_json` (a
/// `google.protobuf.StringValue`).
pub fn wasm_typed_config(wasm: &Path, policy_json: &str, failure_policy: &str) -> Value {
    json!({
        "@type": WASM_TYPE_URL,
        "config": {
            "name": ECDS_FILTER_NAME,
            "root_id": ECDS_FILTER_NAME,
            "failure_policy": failure_policy,
            "vm_config": {
                "vm_id": ECDS_FILTER_NAME,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm.display().to_string()}},
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": policy_json,
            },
        },
    })
}

/// An outbound listener on 127.0.0.1:`local` (`traffic_direction: OUTBOUND`) whose HTTP
/// connection manager, like Istio's outbound one, has codec AUTO, WebSocket upgrades and the
/// route table `route_name` with `vhosts`; `ignore_port`: Istio 1.20+'s
/// `ignore_port_in_host_matching` (per-port route tables without `:port` domains).
#[allow(clippy::too_many_arguments)]
pub(crate) fn outbound_listener(
    name: &str,
    local: u16,
    route_name: &str,
    ignore_port: bool,
    vhosts: Vec<Value>,
    http_filters: Vec<Value>,
    access_log: Value,
    stat_prefix: &str,
) -> Value {
    json!({
        "name": name,
        "address": socket(local),
        "enable_reuse_port": false, // see `socket()`
        "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": stat_prefix,
                "codec_type": "AUTO",
                "use_remote_address": false,
                // As Istio's outbound HCM: WebSocket upgrades pass through the filters.
                "upgrade_configs": [{"upgrade_type": "websocket"}],
                "route_config": {
                    "name": route_name,
                    "validate_clusters": false,
                    "ignore_port_in_host_matching": ignore_port,
                    "virtual_hosts": vhosts,
                },
                "http_filters": http_filters,
                "access_log": [access_log],
            },
        }]}],
    })
}

/// Istio's `PassthroughCluster` (ORIGINAL_DST). No iptables here: the destination comes from
/// the `x-envoy-original-dst-host` request header instead of SO_ORIGINAL_DST.
pub(crate) fn passthrough_cluster() -> Value {
    json!({
        "name": "PassthroughCluster",
        "type": "ORIGINAL_DST",
        "connect_timeout": "2s",
        "lb_policy": "CLUSTER_PROVIDED",
        "original_dst_lb_config": {"use_http_header": true},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "use_downstream_protocol_config": {
                    "http_protocol_options": {},
                    "http2_protocol_options": {},
                },
            },
        },
    })
}

/// Istio's `BlackHoleCluster`: a cluster without endpoints.
pub(crate) fn blackhole_cluster() -> Value {
    json!({
        "name": "BlackHoleCluster",
        "type": "STATIC",
        "connect_timeout": "2s",
    })
}

/// The domains of the virtual host of service `svc.ns` in the route table of a sidecar in
/// namespace `src`, as Istio 1.22 writes them (see the 1.22.3 dump): the FQDN, `svc.ns` and
/// `svc.ns.svc`, and the short name `svc` only when `src == ns`; no `:port` variants, since the
/// route configuration sets `ignore_port_in_host_matching`. (Istio also lists the ClusterIP;
/// this harness has none: the dump replays in `tests/tests/istiod_dumps.rs` cover it.)
pub fn route_domains(svc: &str, ns: &str, src: Option<&str>) -> Vec<String> {
    let mut names = vec![
        format!("{svc}.{ns}.svc.cluster.local"),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
    ];
    if src == Some(ns) {
        names.push(svc.to_string());
    }
    names
}

/// Name of Istio's HTTP metadata-exchange filter, which the harness keeps as a stand-in.
pub const METADATA_EXCHANGE: &str = "istio.metadata_exchange";

/// The request header the metadata-exchange stand-in sets.
pub const METADATA_EXCHANGE_STAND_IN: &str = "x-istio-metadata-exchange-stand-in";

/// A pass-through stand-in for Istio's `istio.metadata_exchange` HTTP filter (Istio's
/// `peer_metadata` filter, not in upstream Envoy): Envoy's `header_mutation` setting
/// [`METADATA_EXCHANGE_STAND_IN`]` = 1` on the request, so the chain has Istio's shape and a test
/// can see that it ran.
pub fn metadata_exchange_stand_in() -> Value {
    json!({
        "name": METADATA_EXCHANGE,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"append": {
                "header": {"key": METADATA_EXCHANGE_STAND_IN, "value": "1"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }}]},
        },
    })
}

/// The domains Istio puts on the virtual host of a `ServiceEntry` host (exact or wildcard)
/// on `port`: the host, bare and with `:port`.
pub fn service_entry_domains(host: &str, port: u16) -> Vec<String> {
    vec![host.to_string(), format!("{host}:{port}")]
}

/// A 127.0.0.1 socket address.
///
/// Every listener also sets `enable_reuse_port: false`: Envoy's default
/// (SO_REUSEPORT) would let two parallel test Envoys that happened to pick the
/// same free port both bind it and silently share its traffic; without it the
/// second one fails with "Address already in use" and is retried.
pub(crate) fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

pub(crate) fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
}

/// The access log line of the outbound listeners: one line per request with the authority,
/// status, response flags and details, route, cluster and upstream host.
fn access_log_format(listener: &str) -> String {
    format!(
        "[%START_TIME%] {listener} \"%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%\" authority=%REQ(:AUTHORITY)% \
         status=%RESPONSE_CODE% flags=%RESPONSE_FLAGS% details=%RESPONSE_CODE_DETAILS% \
         route=%ROUTE_NAME% cluster=%UPSTREAM_CLUSTER% upstream=%UPSTREAM_HOST%\n"
    )
}

pub(crate) fn file_access_log(path: &Path, listener: &str) -> Value {
    json!({
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.display().to_string(),
            "log_format": {"text_format_source": {"inline_string": access_log_format(listener)}},
        },
    })
}

/// The same access log line, on Envoy's standard output (for Envoys that run on their own,
/// where `docker logs` or the caller's redirection collects it).
pub(crate) fn stdout_access_log(listener: &str) -> Value {
    json!({
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {"text_format_source": {"inline_string": access_log_format(listener)}},
        },
    })
}

pub(crate) fn upstream_listener(name: &str, port: u16, stat_prefix: &str, marker: &str) -> Value {
    json!({
        "name": name,
        "address": socket(port),
        "enable_reuse_port": false,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": stat_prefix,
                "codec_type": "AUTO",
                "route_config": {
                    "name": name,
                    "virtual_hosts": [{
                        "name": name,
                        "domains": ["*"],
                        "routes": [{
                            "match": {"prefix": "/"},
                            "direct_response": {
                                "status": 200,
                                "body": {"inline_string": format!("upstream={marker}\n")},
                            },
                            "response_headers_to_add": [
                                {"header": {"key": "x-upstream", "value": marker}},
                                {"header": {"key": "x-upstream-authority", "value": "%REQ(:AUTHORITY)%"}},
                                {"header": {"key": "x-upstream-path", "value": "%REQ(:PATH)%"}},
                            ],
                        }],
                    }],
                },
                "http_filters": [router()],
            },
        }]}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_same_namespace_include_short_names() {
        assert_eq!(
            istio_domains("svc", "ns", 8080, Some("ns")),
            vec![
                "svc.ns.svc.cluster.local",
                "svc.ns.svc.cluster.local:8080",
                "svc.ns.svc",
                "svc.ns.svc:8080",
                "svc.ns",
                "svc.ns:8080",
                "svc",
                "svc:8080",
            ]
        );
    }

    #[test]
    fn domains_other_namespace_exclude_short_names() {
        let d = istio_domains("svc", "ns", 80, Some("other"));
        assert_eq!(d.len(), 6);
        assert!(!d.iter().any(|d| d == "svc" || d == "svc:80"));
        assert_eq!(istio_domains("svc", "ns", 80, None).len(), 6);
    }

    #[test]
    fn render_has_istio_shapes() {
        let cfg = EnvoyConfig::new("a")
            .label("app", "client")
            .service("web", "a", &[80, 8080])
            .service("db", "b", &[80]);
        let topo = cfg.allocate();
        assert_eq!(topo.listeners.len(), 2);
        assert_eq!(topo.upstreams.len(), 3);
        let v = cfg.render(&topo, Path::new("/tmp/x"));
        assert_eq!(
            v["node"]["id"],
            "sidecar~127.0.0.1~client-0.a~a.svc.cluster.local"
        );
        assert_eq!(v["node"]["cluster"], "client.a");
        assert_eq!(v["node"]["metadata"]["NAMESPACE"], "a");
        assert_eq!(v["node"]["metadata"]["LABELS"]["app"], "client");
        let clusters = v["static_resources"]["clusters"].as_array().unwrap();
        let db = clusters
            .iter()
            .find(|c| c["name"] == "outbound|80||db.b.svc.cluster.local")
            .unwrap();
        assert_eq!(
            db["metadata"]["filter_metadata"]["istio"]["services"][0],
            json!({"host": "db.b.svc.cluster.local", "name": "db", "namespace": "b"})
        );
        let no_ns = EnvoyConfig::new("a").without_namespace_metadata();
        let v = no_ns.render(&no_ns.allocate(), Path::new("/tmp/x"));
        assert!(v["node"]["metadata"].get("NAMESPACE").is_none());
        assert!(v["node"]["metadata"].get("LABELS").is_none());
    }
}
