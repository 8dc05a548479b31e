//! What every context of one configuration shares: the compiled policy, the source workload
//! resolved once, the property names this proxy understands, the batched counters and the
//! per-cluster namespace cache. The root context (`root.rs`) builds one per configuration and
//! swaps it whole; `enforce.rs` reads it.

use std::cell::{Cell, RefCell};

use rustc_hash::FxHashMap;
use tenant_egress_core::{Policy, RoutedCluster, SourceScope};

pub use crate::host::Direction;
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
    /// The caller's verified certificate URI SAN (its SPIFFE id), at the destination end.
    pub peer_uri: &'static [&'static str],
    /// `istio.services[i].host` of the current cluster, for i in 0..[`MAX_SERVICES`]: at the
    /// destination end, the services an inbound cluster (`inbound|<port>||`) serves.
    pub service_hosts: &'static [&'static [&'static str]],
}

/// At most this many services per inbound cluster are read (a pod port is rarely the target of
/// more than a few Services).
pub const MAX_SERVICES: usize = 4;

macro_rules! service_hosts {
    ($($prefix:literal),*) => {
        &[
            &[$($prefix,)* "cluster_metadata", "filter_metadata", "istio", "services", "0", "host"],
            &[$($prefix,)* "cluster_metadata", "filter_metadata", "istio", "services", "1", "host"],
            &[$($prefix,)* "cluster_metadata", "filter_metadata", "istio", "services", "2", "host"],
            &[$($prefix,)* "cluster_metadata", "filter_metadata", "istio", "services", "3", "host"],
        ]
    };
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
    peer_uri: &["connection", "uri_san_peer_certificate"],
    service_hosts: service_hosts!("xds"),
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
    peer_uri: &["connection", "uri_san_peer_certificate"],
    service_hosts: service_hosts!(),
};

/// How often the cluster-namespace cache is dropped (so a ServiceEntry that moved namespace is
/// noticed), in flush periods: one minute.
pub const CACHE_TICKS: u32 = 240;

/// At most this many cluster names are cached; beyond, the cache starts over.
const CACHE_MAX: usize = 4096;

/// What is cached per outbound cluster.
#[derive(Debug)]
struct ClusterInfo {
    namespace: Option<Box<str>>,
    routed: RoutedCluster,
}

/// The service hosts an inbound cluster serves.
type Services = Box<[Box<str>]>;

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
    /// Cluster name -> what does not depend on the request: the destination namespace from
    /// its `istio.services` metadata, and the parsed name. Cluster metadata is part of the
    /// cluster's configuration, not of the request, so both are read and parsed once per
    /// cluster instead of once per request.
    cluster_namespaces: RefCell<FxHashMap<Box<str>, ClusterInfo>>,
    /// Inbound cluster name -> the service hosts it serves (destination end), read once per
    /// cluster like the namespaces.
    cluster_services: RefCell<FxHashMap<Box<str>, Services>>,
    /// Which end this configuration's filter runs at, learnt from Envoy with the filter kind.
    direction: Cell<Direction>,
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
            cluster_services: RefCell::new(FxHashMap::default()),
            direction: Cell::new(Direction::Outbound),
        }
    }

    /// Which end the filter runs at.
    pub fn direction(&self) -> Direction {
        self.direction.get()
    }

    /// Sets the end (the root context, when Envoy creates the first context).
    pub fn set_direction(&self, direction: Direction) {
        self.direction.set(direction);
    }

    /// The service hosts an inbound cluster serves, from the cache or the host (at most
    /// [`MAX_SERVICES`] reads, the first time). As for [`State::cluster_namespace`], `cluster`
    /// must be the current stream's cluster.
    pub fn cluster_services<H: Host, R>(
        &self,
        host: &H,
        cluster: &str,
        then: impl FnOnce(&[&str]) -> R,
    ) -> R {
        if let Ok(cache) = self.cluster_services.try_borrow() {
            if let Some(hosts) = cache.get(cluster) {
                return with_refs(hosts, then);
            }
        }
        let mut hosts: Vec<Box<str>> = Vec::new();
        for path in self.paths.service_hosts {
            match host.property(path).and_then(|v| String::from_utf8(v).ok()) {
                Some(h) if !h.is_empty() => hosts.push(h.into_boxed_str()),
                _ => break,
            }
        }
        let hosts = hosts.into_boxed_slice();
        let out = with_refs(&hosts, then);
        if let Ok(mut cache) = self.cluster_services.try_borrow_mut() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(cluster.into(), hosts);
        }
        out
    }

    /// The destination namespace of an outbound cluster and its parsed name, from the cache or
    /// the host. The property is the current stream's cluster metadata, so `cluster` must be
    /// the cluster the current stream was routed to.
    pub fn cluster_namespace<H: Host, R>(
        &self,
        host: &H,
        cluster: &str,
        then: impl FnOnce(Option<&str>, &RoutedCluster) -> R,
    ) -> R {
        if let Ok(cache) = self.cluster_namespaces.try_borrow() {
            if let Some(info) = cache.get(cluster) {
                return then(info.namespace.as_deref(), &info.routed);
            }
        }
        let info = ClusterInfo {
            namespace: host
                .property(self.paths.cluster_namespace)
                .and_then(|v| String::from_utf8(v).ok())
                .map(String::into_boxed_str),
            routed: RoutedCluster::parse(Some(cluster)),
        };
        let out = then(info.namespace.as_deref(), &info.routed);
        if let Ok(mut cache) = self.cluster_namespaces.try_borrow_mut() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(cluster.into(), info);
        }
        out
    }

    /// Drops the cluster caches (every [`CACHE_TICKS`] timer ticks).
    pub fn clear_cluster_cache(&self) {
        if let Ok(mut cache) = self.cluster_namespaces.try_borrow_mut() {
            cache.clear();
        }
        if let Ok(mut cache) = self.cluster_services.try_borrow_mut() {
            cache.clear();
        }
    }
}

/// Calls `then` with the hosts borrowed as `&str`s, without allocating.
fn with_refs<R>(hosts: &[Box<str>], then: impl FnOnce(&[&str]) -> R) -> R {
    let mut refs: [&str; MAX_SERVICES] = [""; MAX_SERVICES];
    for (slot, h) in refs.iter_mut().zip(hosts) {
        *slot = h;
    }
    let n = hosts.len().min(MAX_SERVICES);
    then(refs.get(..n).unwrap_or(&[]))
}
