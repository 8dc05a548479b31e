//! The root context: one per plugin configuration per VM (each Envoy worker thread runs its own
//! VM with its own copy). It compiles the policy and resolves the source workload once, then
//! hands every HTTP context a shared reference.
//!
//! A configuration that fails validation is refused (`on_configure` returns `false`): Envoy then
//! keeps the previous configuration running, exactly as for a rejected xDS update, so the last
//! good policy keeps enforcing. Compile first, swap after.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::ContextType;
use tenant_egress_core::{Policy, Source, SourceScope};

use crate::host;
use crate::http::Http;
use crate::metrics::{self, Counters};
use crate::tcp::Tcp;

/// Property paths of one Envoy generation.
#[derive(Debug)]
pub struct Paths {
    /// Upstream cluster name.
    pub cluster_name: &'static [&'static str],
    /// Destination namespace from the cluster's Istio metadata.
    pub cluster_namespace: &'static [&'static str],
    /// Original destination `ip:port`.
    pub destination_address: &'static [&'static str],
    /// TLS SNI of the downstream connection.
    pub sni: &'static [&'static str],
}

/// Envoy >= 1.30 (`xds.*`); the only names on Envoy >= 1.33.
static XDS: Paths = Paths {
    cluster_name: &["xds", "cluster_name"],
    cluster_namespace: &[
        "xds",
        "cluster_metadata",
        "filter_metadata",
        "istio",
        "services",
        "0",
        "namespace",
    ],
    destination_address: &["destination", "address"],
    sni: &["connection", "requested_server_name"],
};

/// Envoy <= 1.32 (older Istio proxies): removed in 1.33 (envoy#36619).
static LEGACY: Paths = Paths {
    cluster_name: &["cluster_name"],
    cluster_namespace: &[
        "cluster_metadata",
        "filter_metadata",
        "istio",
        "services",
        "0",
        "namespace",
    ],
    destination_address: &["destination", "address"],
    sni: &["connection", "requested_server_name"],
};

/// How often batched counters reach Envoy's stats.
pub const FLUSH_PERIOD: Duration = Duration::from_millis(250);

/// How often the cluster-namespace cache is dropped (so a ServiceEntry that moved namespace is
/// noticed), in flush periods: one minute.
const CACHE_TICKS: u32 = 240;

/// At most this many cluster names are cached; beyond, the cache starts over.
const CACHE_MAX: usize = 4096;

/// Everything a request needs, shared by all HTTP contexts of one configuration.
#[derive(Debug)]
pub struct State {
    /// The compiled policy.
    pub policy: Policy,
    /// The source workload, resolved once.
    pub source: SourceScope,
    /// Which property names this proxy understands.
    pub paths: &'static Paths,
    /// Batched counters.
    pub counters: Counters,
    /// Cluster name -> destination namespace from its `istio.services` metadata. Cluster
    /// metadata is part of the cluster's configuration, not of the request, so it is read once
    /// per cluster instead of once per request.
    cluster_namespaces: RefCell<FxHashMap<Box<str>, Option<Box<str>>>>,
}

impl State {
    /// The destination namespace of an outbound cluster, from the cache or the host.
    pub fn cluster_namespace<R>(&self, cluster: &str, then: impl FnOnce(Option<&str>) -> R) -> R {
        if let Ok(cache) = self.cluster_namespaces.try_borrow() {
            if let Some(ns) = cache.get(cluster) {
                return then(ns.as_deref());
            }
        }
        let ns: Option<Box<str>> = host::property(self.paths.cluster_namespace)
            .and_then(|v| String::from_utf8(v).ok())
            .map(String::into_boxed_str);
        if let Ok(mut cache) = self.cluster_namespaces.try_borrow_mut() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(cluster.into(), ns.clone());
        }
        then(ns.as_deref())
    }
}

/// Which filter this root context serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FilterKind {
    /// The HTTP filter (`envoy.filters.http.wasm`; WasmPlugin `type: HTTP`).
    #[default]
    Http,
    /// The network filter (`envoy.filters.network.wasm`; WasmPlugin `type: NETWORK`).
    Network,
}

/// The plugin's root id selects the kind: one ending in `-tcp` (the generated NETWORK
/// WasmPlugin is named `tenant-egress-tcp`) is the network filter, anything else HTTP. The same
/// .wasm serves both; the root id is the one thing Istio and Envoy let us set per filter.
pub fn kind_for_root_id(root_id: &str) -> FilterKind {
    if root_id.ends_with("-tcp") || root_id.ends_with(".tcp") {
        FilterKind::Network
    } else {
        FilterKind::Http
    }
}

/// The root context.
#[derive(Default)]
pub struct Root {
    state: Option<Rc<State>>,
    config_errors: Option<u32>,
    ticks: u32,
    kind: FilterKind,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        // The VM is going away (new configuration or shutdown): do not lose pending counts.
        if let Some(state) = &self.state {
            state.counters.flush();
        }
        true
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        // Adopt the proxy's log level so messages it would drop never cross the VM boundary.
        proxy_wasm::set_log_level(host::log_level());
        log::info!("version {} starting", env!("CARGO_PKG_VERSION"));
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        if self.config_errors.is_none() {
            self.config_errors = metrics::config_errors();
        }
        let root_id = host::property(&["plugin_root_id"])
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_default();
        self.kind = kind_for_root_id(&root_id);
        let bytes = host::plugin_configuration().unwrap_or_default();
        if bytes.is_empty() {
            return self.refuse(
                "the plugin configuration is empty; it must be the policy document (JSON)",
            );
        }
        let (policy, warnings) = match Policy::from_json(&bytes) {
            Ok(ok) => ok,
            Err(tenant_egress_core::PolicyError::Invalid(invalid)) => {
                let mut msg = format!("{} error(s):", invalid.errors.len());
                for e in &invalid.errors {
                    msg.push_str("\n  error: ");
                    msg.push_str(&e.to_string());
                }
                return self.refuse(&msg);
            }
            Err(other) => return self.refuse(&other.to_string()),
        };
        for w in &warnings {
            log::warn!("policy warning: {w}");
        }
        let (source, paths, labels) = read_source(&policy);
        if source.namespace().is_none() {
            log::warn!(
                "the proxy has no NAMESPACE node metadata; every request will be denied (unknown-source)"
            );
        }
        let summary = format!(
            "version {} loaded policy ({} filter, root id {root_id:?}): {}; source namespace={} tenant={} workload={} labels={}",
            env!("CARGO_PKG_VERSION"),
            match self.kind {
                FilterKind::Http => "HTTP",
                FilterKind::Network => "network",
            },
            policy.summary(),
            source.namespace().unwrap_or("-"),
            source
                .tenant()
                .and_then(|t| policy.tenant_name(t))
                .unwrap_or("-"),
            source
                .tenant()
                .zip(source.workload())
                .and_then(|(t, w)| policy.workload_name(t, w))
                .unwrap_or("-"),
            labels,
        );
        log::info!("{summary}");
        if let Some(old) = self.state.take() {
            old.counters.flush();
        }
        self.state = Some(Rc::new(State {
            policy,
            source,
            paths,
            counters: Counters::define(match self.kind {
                FilterKind::Http => "",
                FilterKind::Network => "connections.",
            }),
            cluster_namespaces: RefCell::new(FxHashMap::default()),
        }));
        host::set_tick_period(FLUSH_PERIOD);
        true
    }

    fn on_tick(&mut self) {
        let Some(state) = &self.state else {
            return;
        };
        state.counters.flush();
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(CACHE_TICKS) {
            if let Ok(mut cache) = state.cluster_namespaces.try_borrow_mut() {
                cache.clear();
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(self.state.clone())))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Tcp::new(self.state.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(match self.kind {
            FilterKind::Http => ContextType::HttpContext,
            FilterKind::Network => ContextType::StreamContext,
        })
    }
}

impl Root {
    fn refuse(&mut self, why: &str) -> bool {
        host::add(self.config_errors, 1);
        let keeping = if self.state.is_some() {
            "the previous policy keeps enforcing"
        } else {
            "no policy is loaded"
        };
        log::error!("refusing the policy ({keeping}): {why}");
        false
    }
}

/// Reads the source workload's namespace and labels from the node metadata, once per
/// configuration: `xds.node.*` first, then the pre-1.33 `node.*`. Never reads the whole node
/// (about 60 KB serialized), only the two fields.
fn read_source(policy: &Policy) -> (SourceScope, &'static Paths, String) {
    let (namespace, paths, labels_path): (_, _, &[&str]) =
        match host::property(&["xds", "node", "metadata", "NAMESPACE"]) {
            Some(ns) => (Some(ns), &XDS, &["xds", "node", "metadata", "LABELS"]),
            None => match host::property(&["node", "metadata", "NAMESPACE"]) {
                Some(ns) => (Some(ns), &LEGACY, &["node", "metadata", "LABELS"]),
                None => (None, &XDS, &["xds", "node", "metadata", "LABELS"]),
            },
        };
    let labels_blob = host::property(labels_path).unwrap_or_default();
    let labels: Vec<(&str, &str)> = crate::pairs::decode(&labels_blob)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?)))
        .collect();
    let namespace = namespace.and_then(|ns| String::from_utf8(ns).ok());
    let scope = policy.source(&Source {
        namespace: namespace.as_deref(),
        labels: &labels,
    });
    let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    (scope, paths, format!("{{{}}}", shown.join(",")))
}
