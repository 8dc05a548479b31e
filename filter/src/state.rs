//! What every context of one configuration shares: the compiled policy, the source workload
//! resolved once, the property names this proxy understands, the batched counters and the
//! per-cluster namespace cache. The root context (`root.rs`) builds one per configuration and
//! swaps it whole; `enforce.rs` reads it.

use std::cell::RefCell;

use rustc_hash::FxHashMap;
use tenant_egress_core::{Policy, SourceScope};

use crate::host::Host;
use crate::metrics::Counters;

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
pub static XDS: Paths = Paths {
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
pub static LEGACY: Paths = Paths {
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

/// How often the cluster-namespace cache is dropped (so a ServiceEntry that moved namespace is
/// noticed), in flush periods: one minute.
pub const CACHE_TICKS: u32 = 240;

/// At most this many cluster names are cached; beyond, the cache starts over.
const CACHE_MAX: usize = 4096;

/// Everything a request needs, shared by all contexts of one configuration.
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
    /// True in an Istio gateway proxy under `gateways: passthrough`: every request and
    /// connection passes undecided (`root.rs` reads the node id once per configuration).
    pub stand_aside: bool,
    /// With `stand_aside`: the reason is `delegatedNamespaces` (a sharded fallback plugin in a
    /// namespace whose own plugin decides), not a gateway.
    pub delegated: bool,
    /// Cluster name -> destination namespace from its `istio.services` metadata. Cluster
    /// metadata is part of the cluster's configuration, not of the request, so it is read once
    /// per cluster instead of once per request.
    cluster_namespaces: RefCell<FxHashMap<Box<str>, Option<Box<str>>>>,
}

impl State {
    /// The state of one configuration, with an empty cache.
    pub fn new(
        policy: Policy,
        source: SourceScope,
        paths: &'static Paths,
        counters: Counters,
    ) -> State {
        State {
            policy,
            source,
            paths,
            counters,
            stand_aside: false,
            delegated: false,
            cluster_namespaces: RefCell::new(FxHashMap::default()),
        }
    }

    /// The destination namespace of an outbound cluster, from the cache or the host. The
    /// property is the current stream's cluster metadata, so `cluster` must be the cluster
    /// the current stream was routed to.
    pub fn cluster_namespace<H: Host, R>(
        &self,
        host: &H,
        cluster: &str,
        then: impl FnOnce(Option<&str>) -> R,
    ) -> R {
        if let Ok(cache) = self.cluster_namespaces.try_borrow() {
            if let Some(ns) = cache.get(cluster) {
                return then(ns.as_deref());
            }
        }
        let ns: Option<Box<str>> = host
            .property(self.paths.cluster_namespace)
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

    /// Drops the cluster-namespace cache (every [`CACHE_TICKS`] timer ticks).
    pub fn clear_cluster_cache(&self) {
        if let Ok(mut cache) = self.cluster_namespaces.try_borrow_mut() {
            cache.clear();
        }
    }
}
