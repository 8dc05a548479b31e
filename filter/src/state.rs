//! What every context of one configuration shares: the compiled policy, the source workload
//! resolved once, the property names this proxy understands, the batched counters and the
//! per-cluster namespace cache. The root context (`root.rs`) builds one per configuration and
//! swaps it whole; `enforce.rs` reads it.

use std::cell::{Cell, RefCell};

use rustc_hash::FxHashMap;
use tenant_egress_core::{InboundCaller, InboundService, Policy, RoutedCluster, SourceScope};

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

/// What is cached per inbound cluster (destination end): the service hosts it serves, and per
/// distinct SNI what the core resolves from it ([`Policy::inbound_service`]).
#[derive(Debug, Default)]
struct InboundCluster {
    services: Box<[Box<str>]>,
    by_sni: FxHashMap<Box<[u8]>, InboundService>,
}

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
    /// cluster like the namespaces, and what each SNI seen on it names. The key `""` holds the
    /// SNIs of connections without an inbound cluster (no services known).
    inbound_clusters: RefCell<FxHashMap<Box<str>, InboundCluster>>,
    /// Caller identity (the peer certificate's URI SAN) -> what the core resolves from it
    /// ([`Policy::inbound_caller`]): a connection's identity is the same for every request on
    /// it, and a mesh has few. Depends only on the policy, so never dropped on the timer.
    callers: RefCell<FxHashMap<Box<[u8]>, InboundCaller>>,
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
            inbound_clusters: RefCell::new(FxHashMap::default()),
            callers: RefCell::new(FxHashMap::default()),
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

    /// The destination end's request-independent inputs, from the caches or, the first time,
    /// the core (and, once per inbound cluster, the host: at most [`MAX_SERVICES`] reads):
    /// what the caller's identity `peer` resolves to, and what the `sni` names on `cluster`
    /// (the current stream's cluster, as for [`State::cluster_namespace`]; the services are
    /// read only for an `inbound|` one).
    pub fn inbound<H: Host>(
        &self,
        host: &H,
        cluster: Option<&str>,
        sni: Option<&[u8]>,
        peer: &[u8],
    ) -> (InboundCaller, InboundService) {
        let namespace = self.source.namespace();
        let caller = match self
            .callers
            .try_borrow()
            .ok()
            .and_then(|c| c.get(peer).copied())
        {
            Some(caller) => caller,
            None => {
                let caller = self.policy.inbound_caller(namespace, Some(peer));
                if let Ok(mut cache) = self.callers.try_borrow_mut() {
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(peer.into(), caller);
                }
                caller
            }
        };
        let key = cluster.filter(|c| c.starts_with("inbound|")).unwrap_or("");
        let Ok(mut cache) = self.inbound_clusters.try_borrow_mut() else {
            return (caller, self.resolve_service(host, key, sni));
        };
        if !cache.contains_key(key) {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            let entry = InboundCluster {
                services: self.read_services(host, key),
                by_sni: FxHashMap::default(),
            };
            cache.insert(key.into(), entry);
        }
        let Some(entry) = cache.get_mut(key) else {
            return (caller, self.resolve_service(host, key, sni));
        };
        let sni_key = sni.unwrap_or(&[]);
        if let Some(service) = entry.by_sni.get(sni_key) {
            return (caller, *service);
        }
        let service = with_refs(&entry.services, |services| {
            self.policy.inbound_service(namespace, sni, services)
        });
        if entry.by_sni.len() >= CACHE_MAX {
            entry.by_sni.clear();
        }
        entry.by_sni.insert(sni_key.into(), service);
        (caller, service)
    }

    /// Calls `then` with the service hosts cached for `cluster` (none when it is not an
    /// `inbound|` cluster or was not seen): for a denial's explain command, off the hot path.
    pub fn with_inbound_services<R>(
        &self,
        cluster: Option<&str>,
        then: impl FnOnce(&[&str]) -> R,
    ) -> R {
        let key = cluster.filter(|c| c.starts_with("inbound|")).unwrap_or("");
        let cache = self.inbound_clusters.try_borrow().ok();
        let services = cache
            .as_ref()
            .and_then(|c| c.get(key))
            .map(|e| &*e.services)
            .unwrap_or(&[]);
        with_refs(services, then)
    }

    /// The service hosts of an `inbound|` cluster (none for the key `""`).
    fn read_services<H: Host>(&self, host: &H, key: &str) -> Box<[Box<str>]> {
        let mut hosts: Vec<Box<str>> = Vec::new();
        if key.is_empty() {
            return hosts.into_boxed_slice();
        }
        for path in self.paths.service_hosts {
            match host.property(path).and_then(|v| String::from_utf8(v).ok()) {
                Some(h) if !h.is_empty() => hosts.push(h.into_boxed_str()),
                _ => break,
            }
        }
        hosts.into_boxed_slice()
    }

    /// [`State::inbound`]'s service without the cache (only if the cache is borrowed: never in
    /// a single-threaded VM).
    #[cold]
    fn resolve_service<H: Host>(&self, host: &H, key: &str, sni: Option<&[u8]>) -> InboundService {
        let services = self.read_services(host, key);
        with_refs(&services, |services| {
            self.policy
                .inbound_service(self.source.namespace(), sni, services)
        })
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
        if let Ok(mut cache) = self.inbound_clusters.try_borrow_mut() {
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
