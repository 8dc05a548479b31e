//! Both ends: the caller-side scenarios replayed with every mesh service behind its own
//! destination sidecar, so that each request is decided twice, as in a mesh that enforces at
//! both ends (issue 12).
//!
//! [`Ends::Both`] on an [`EnvoyConfig`](crate::EnvoyConfig) (or [`through_both_ends`] around
//! a test, which makes it the default of every `EnvoyConfig::new` on that thread) changes what
//! `start()` builds:
//!
//! - one **destination sidecar** per namespace that holds Kubernetes services of the config
//!   (ServiceEntry hosts are outside the mesh: no destination sidecar, no mTLS). It is an Envoy
//!   with `NAMESPACE` node metadata, and per service port an Istio-shaped inbound listener:
//!   `traffic_direction: INBOUND`, `tls_inspector`, a DownstreamTlsContext that requires and
//!   verifies a client certificate, the SAME filter, and the caller's policy as `generate` shards
//!   it for that namespace ([`destination_policy`]: its destination shard) (inline, or
//!   through its own ECDS file when the caller uses ECDS; [`Envoy::update_policy`] updates
//!   every end), then the router to an `inbound|<port>||` cluster carrying `istio.services`
//!   metadata, whose endpoint is the application (the kit's upstream listener, answering
//!   `upstream=<svc>.<ns>:<port>`, in the destination's Envoy). [`Envoy::upstream_hits`] and
//!   [`Envoy::upstream_port`] of the caller read that application (hits since the caller
//!   started), so the scenario's own assertions read as before.
//! - Within one [`through_both_ends`], callers with the same policy and services share the
//!   destination sidecars (one set per test, not per caller or request); a destination fed
//!   over ECDS is never shared (its caller may update its policy).
//! - the caller's `outbound|<port>||<fqdn>` clusters of Kubernetes services originate Istio
//!   mTLS to that listener: a client certificate with the caller's SPIFFE id
//!   (`spiffe://cluster.local/ns/<namespace>/sa/<SERVICE_ACCOUNT or default>`) and Istio's SNI
//!   `outbound_.<port>_._.<fqdn>` ([`crate::mtls`]; one CA per test process).
//! - per outbound listener a **bypass** listener in the caller's Envoy: the same routes to the
//!   same mTLS clusters (the same certificate), but no filter: a pod of the caller's namespace
//!   that opted out of its own end. Its catch-all answers 404 with
//!   [`NO_MESH_DESTINATION`]: a request that no mesh service's route takes has no destination
//!   sidecar to decide it (external hosts need an egress gateway).
//!
//! What is checked, without a change to the scenario's own code:
//! - every request the caller's end denies (the filter's 403; sent with [`crate::raw_http1`],
//!   [`crate::get`] and the like, or [`crate::h2_request`]) is sent again, byte for byte, to
//!   the bypass listener, and must be denied by the destination alone (its 403 and
//!   `x-tenant-egress-denied`), or reach no mesh destination, or be refused by Envoy itself
//!   before any upstream (a CONNECT, a codec error). One that reaches the application
//!   fails the test, unless the caller's tenant has a label-only workload exception: the
//!   destination cannot see pod labels and applies such an exception to every service account
//!   (README, "Workload exceptions by service account"), so it may let through what the
//!   caller's labels did not select; such probes are counted ([`Tally::label_gap`]), not
//!   failed, and left out of [`Envoy::upstream_hits`];
//! - when the run ends (the end of [`through_both_ends`], or the drop of a caller started with
//!   [`Ends::Both`] outside it): at each destination, `tenant_egress.inbound.allowed` plus
//!   `inbound.audit_denied` equals the requests its applications received (what a caller's end
//!   let through was let through, and counted, at the destination), and the destinations'
//!   `inbound.denied` equals the probes they denied (no destination denied what a caller's end
//!   allowed).
//!
//! Not compared: a caller without `NAMESPACE` metadata (its end denies `unknown-source`, a fault
//! of its own proxy that no identity at the destination reflects); requests sent over an
//! [`crate::Http1Conn`] of the test's own (keep-alive sequences): they still pass both ends,
//! and the counts above still hold, but a denial is not probed.
//!
//! [`TcpMesh`] does the same for the network filter's hand-written bootstraps.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::assertions::DENIAL_MARKER;
use crate::config::{
    ecds_path, outbound_listener, router, socket, upstream_listener, upstream_stat_prefix,
    EnvoyConfig, FilterMode, RegistryPort, Topology, ECDS_FILTER_NAME, WASM_TYPE_URL,
};
use crate::envoy::{Envoy, StartError};
use crate::http::Response;
use crate::mtls::{downstream_tls, istio_sni, upstream_tls, Pki, Workload};

/// Which ends of a request run the filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ends {
    /// Only the caller's own sidecar (outbound), as the scenarios were written.
    #[default]
    Caller,
    /// The caller's sidecar and, for mesh services, the destination's sidecar on the caller's
    /// mTLS identity; see the module docs.
    Both,
}

/// The header (and its value) of the bypass listeners' catch-all answer: no mesh service's
/// route took the request, so no destination sidecar can decide it.
pub const NO_MESH_DESTINATION: (&str, &str) = ("x-tenant-egress-tests", "no-mesh-destination");

/// The trust domain of the harness's mesh.
pub const TRUST_DOMAIN: &str = "cluster.local";

thread_local! {
    static DEFAULT: Cell<Ends> = const { Cell::new(Ends::Caller) };
}

/// The [`Ends`] that `EnvoyConfig::new` starts with on this thread.
pub fn default_ends() -> Ends {
    DEFAULT.with(Cell::get)
}

/// Runs `f` with [`Ends::Both`] as the default of every `EnvoyConfig::new` on this thread: the
/// scenario `f` runs through both ends unchanged. See [`both_ends_tests!`](crate::both_ends_tests).
pub fn through_both_ends<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Ends, Option<Arc<Scope>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEFAULT.with(|d| d.set(self.0));
            SCOPE.with(|s| *s.borrow_mut() = self.1.take());
        }
    }
    let scope = Scope::new();
    let restore = Restore(
        DEFAULT.with(|d| d.replace(Ends::Both)),
        SCOPE.with(|s| s.borrow_mut().replace(Arc::clone(&scope))),
    );
    let out = f();
    drop(restore);
    // Every caller of `f` is gone: compare the ends over the whole run, then stop the
    // destinations (the last reference).
    let started = scope.all.lock().unwrap_or_else(|e| e.into_inner()).len();
    let tcp = scope.tcp_meshes.load(std::sync::atomic::Ordering::Relaxed);
    let launched = scope.launched.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        launched + tcp > 0,
        "ran through both ends, but no caller started a destination sidecar (no wasm filter, \
         or no Kubernetes service)"
    );
    if let Err(why) = scope.check() {
        panic!("the two ends disagree:\n{why}");
    }
    eprintln!(
        "through both ends: {started} HTTP destination sidecars, {tcp} TCP meshes; probes of the \
         caller's denials: {:?}",
        scope.tally()
    );
    out
}

/// Runs the named `#[test]` functions of this file a second time through both ends, in a
/// module `both_ends` (`cargo test --test filter_envoy both_ends::` selects them):
///
/// ```ignore
/// tenant_egress_tests::both_ends_tests!(scenario1_helloworld, scenario2_databases);
/// ```
#[macro_export]
macro_rules! both_ends_tests {
    ($($name:ident),* $(,)?) => {
        /// The scenarios above, with every mesh service behind its destination sidecar
        /// (`tenant_egress_tests::ends`).
        mod both_ends {
            $(
                #[test]
                fn $name() {
                    $crate::ends::through_both_ends(super::$name)
                }
            )*
        }
    };
}

/// The mesh's CA and the workload certificates issued so far (one CA per test process).
struct Mesh {
    pki: Pki,
    workloads: Mutex<BTreeMap<(String, String), Workload>>,
}

fn mesh() -> &'static Mesh {
    static MESH: OnceLock<Mesh> = OnceLock::new();
    MESH.get_or_init(|| Mesh {
        pki: Pki::new(TRUST_DOMAIN),
        workloads: Mutex::new(BTreeMap::new()),
    })
}

/// The certificate of `namespace`/`service_account`, issued once per test process.
fn workload(namespace: &str, service_account: &str) -> Workload {
    let m = mesh();
    let mut w = m.workloads.lock().unwrap_or_else(|e| e.into_inner());
    w.entry((namespace.to_owned(), service_account.to_owned()))
        .or_insert_with(|| m.pki.workload(namespace, service_account))
        .clone()
}

/// One destination sidecar of a both-ends run: the Envoy of one namespace, with an inbound
/// listener and an application per service port.
pub struct Destination {
    /// The namespace it serves (its `NAMESPACE` node metadata).
    pub namespace: String,
    /// The service ports it has inbound listeners for.
    pub ports: Vec<RegistryPort>,
    /// Upstream key → its inbound listener's port (what the callers' mTLS clusters dial).
    inbound: BTreeMap<(String, String, u16), u16>,
    /// Upstream key → its application's port.
    apps: BTreeMap<(String, String, u16), u16>,
    pub envoy: Envoy,
}

impl Destination {
    /// Requests its application for `key` received.
    fn app_hits(&self, key: &(String, String, u16)) -> u64 {
        let (svc, ns, port) = key;
        self.counter(&format!(
            "http.{}.downstream_rq_total",
            upstream_stat_prefix(svc, ns, *port)
        ))
    }

    /// A counter of this sidecar (0 when absent), read patiently: the kit's bookkeeping.
    fn counter(&self, name: &str) -> u64 {
        crate::envoy::stat(&self.envoy.stats_patiently(), name).unwrap_or(0)
    }

    /// Requests its filter let through: `tenant_egress.inbound.allowed` + `audit_denied`.
    fn passed(&self) -> u64 {
        let stats = self.envoy.stats_patiently();
        let get = |name: &str| crate::envoy::stat(&stats, name).unwrap_or(0);
        get("tenant_egress.inbound.allowed") + get("tenant_egress.inbound.audit_denied")
    }

    fn denied(&self) -> u64 {
        self.counter("tenant_egress.inbound.denied")
    }
}

/// What the bypass probes found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Denied by the caller's end and, called directly, by the destination alone.
    pub destination_denied: u64,
    /// Denied by the caller's end; no mesh service's route takes it (external, passthrough,
    /// a malformed authority): only the caller's end can decide it.
    pub caller_end_only: u64,
    /// Denied by the caller's end on its pod labels, let through by the destination, which
    /// applies a label-only exception to every service account (documented).
    pub label_gap: u64,
    /// Denied by the caller's end; without the filter Envoy itself refuses it before any
    /// upstream (a CONNECT no route matches: 404; a codec error: 400 or a reset stream).
    pub refused_by_envoy: u64,
    /// Denied by the caller's end for a reason of its own proxy (`unknown-source`): no probe.
    pub not_comparable: u64,
}

/// What identifies a destination sidecar that callers may share: the same policy (inline: an
/// ECDS-fed one can change, so it is never shared), failure policy, namespace and services.
type DestinationKey = (String, String, String, Vec<RegistryKey>);
type RegistryKey = (String, String, String, u16);

/// The destinations started within one [`through_both_ends`] (or for one caller started with
/// [`Ends::Both`] outside it), shared by the callers whose policy and services are the same,
/// and the probes' tally. Checked when it ends.
pub(crate) struct Scope {
    /// [`TcpMesh`]es started in this scope (they check themselves: [`TcpMesh::check`]).
    tcp_meshes: std::sync::atomic::AtomicUsize,
    /// Destination sidecars launched, whether or not they came up (an invalid policy).
    launched: std::sync::atomic::AtomicUsize,
    destinations: Mutex<BTreeMap<DestinationKey, Arc<Destination>>>,
    all: Mutex<Vec<Arc<Destination>>>,
    tally: Mutex<Tally>,
}

impl Scope {
    fn new() -> Arc<Scope> {
        Arc::new(Scope {
            tcp_meshes: std::sync::atomic::AtomicUsize::new(0),
            launched: std::sync::atomic::AtomicUsize::new(0),
            destinations: Mutex::new(BTreeMap::new()),
            all: Mutex::new(Vec::new()),
            tally: Mutex::new(Tally::default()),
        })
    }

    pub(crate) fn tally(&self) -> Tally {
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The end-of-run comparison (module docs); `Err` says what disagreed.
    pub(crate) fn check(&self) -> Result<(), String> {
        const WAIT: Duration = Duration::from_secs(5);
        let tally = self.tally();
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut errors = Vec::new();
        for d in &all {
            let reached: u64 = d.ports.iter().map(|r| d.app_hits(&r.upstream_key())).sum();
            // The filter flushes its counters on a timer: wait (bounded) for them to settle.
            let deadline = Instant::now() + WAIT;
            let mut got = d.passed();
            while got < reached && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                got = d.passed();
            }
            if got != reached {
                errors.push(format!(
                    "destination {}: its applications received {reached} requests, its filter \
                     let {got} through (tenant_egress.inbound.allowed + audit_denied)",
                    d.namespace
                ));
            }
        }
        let denied = || all.iter().map(|d| d.denied()).sum::<u64>();
        let deadline = Instant::now() + WAIT;
        let mut denied_total = denied();
        while denied_total < tally.destination_denied && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            denied_total = denied();
        }
        if denied_total != tally.destination_denied {
            errors.push(format!(
                "the destinations denied {denied_total} requests, and {} of them were probes \
                 that the caller's end had denied first: a destination denied what a caller's \
                 end allowed, or a probe's denial was not counted",
                tally.destination_denied
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            for d in &all {
                d.envoy.dump_diagnostics();
            }
            Err(errors.join("\n"))
        }
    }
}

thread_local! {
    static SCOPE: std::cell::RefCell<Option<Arc<Scope>>> = const { std::cell::RefCell::new(None) };
}

/// A both-ends caller's probe state, found by the port a test sends to.
struct Probe {
    /// Caller listener (local port) → its bypass listener.
    bypass: BTreeMap<u16, u16>,
    comparable: bool,
    label_gap_possible: bool,
    caller_id: String,
    scope: Arc<Scope>,
    /// Requests that probes delivered to an application (`x-upstream` label → count), left
    /// out of [`Envoy::upstream_hits`]: the scenario did not send them.
    delivered: Mutex<BTreeMap<String, u64>>,
}

fn probes() -> &'static Mutex<BTreeMap<u16, Arc<Probe>>> {
    static PROBES: OnceLock<Mutex<BTreeMap<u16, Arc<Probe>>>> = OnceLock::new();
    PROBES.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The both-ends part of a caller [`Envoy`]: its destinations, probes, and what the
/// destinations' applications had received when it started.
pub(crate) struct BothEnds {
    pub(crate) destinations: Vec<Arc<Destination>>,
    probe: Arc<Probe>,
    baseline: BTreeMap<(String, String, u16), u64>,
    /// The scope is this caller's own (started outside [`through_both_ends`]): it is checked
    /// when the caller is dropped.
    own_scope: bool,
}

/// The filter's denial (at either end): its 403 with `x-tenant-egress-denied` and the marker.
fn is_filter_denial(r: &Response) -> bool {
    r.status == 403
        && r.header("x-tenant-egress-denied").is_some()
        && r.body.starts_with(DENIAL_MARKER)
}

/// Called by the request helpers ([`crate::raw_http1`], [`crate::get`], [`crate::h2_request`],
/// ...) after a response from 127.0.0.1:`port`. If `port` is a both-ends caller's listener
/// and its end denied the request, `replay` sends the same request to the bypass listener and
/// the destination's verdict is judged; see the module docs.
#[track_caller]
pub(crate) fn after_response(port: u16, r: &Response, replay: &dyn Fn(u16) -> Response) {
    let probe = {
        let map = probes().lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&port) {
            Some(p) => Arc::clone(p),
            None => return,
        }
    };
    if !is_filter_denial(r) {
        return;
    }
    if !probe.comparable {
        probe
            .scope
            .tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .not_comparable += 1;
        return;
    }
    let Some(&bypass) = probe.bypass.get(&port) else {
        return;
    };
    let b = replay(bypass);
    let reason = r.header("x-tenant-egress-denied").unwrap_or_default();
    let mut tally = probe.scope.tally.lock().unwrap_or_else(|e| e.into_inner());
    if is_filter_denial(&b) {
        tally.destination_denied += 1;
    } else if b.header(NO_MESH_DESTINATION.0) == Some(NO_MESH_DESTINATION.1) {
        tally.caller_end_only += 1;
    } else if matches!(b.status, 0 | 400 | 404) && b.header("x-upstream").is_none() {
        tally.refused_by_envoy += 1;
    } else if probe.label_gap_possible && b.status == 200 && b.body.starts_with("upstream=") {
        tally.label_gap += 1;
        let label = b.header("x-upstream").unwrap_or_default().to_owned();
        *probe
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(label)
            .or_default() += 1;
    } else {
        drop(tally);
        panic!(
            "both ends disagree: the caller's end denied this request ({reason}), but called \
             directly by {} without a filter of its own, the destination answered {b:?}\n\
             caller's answer: {r:?}",
            probe.caller_id
        );
    }
}

/// The caller's SPIFFE identity: its namespace and `SERVICE_ACCOUNT` node metadata (Istio's
/// `default` when unset).
fn caller_identity(cfg: &EnvoyConfig) -> (String, String) {
    let sa = cfg
        .extra_metadata()
        .get("SERVICE_ACCOUNT")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    (cfg.namespace().to_owned(), sa)
}

/// Whether the policy gives the caller's tenant a workload exception that selects pods by
/// labels only (no `serviceAccounts`): the destination then admits more than the caller's end.
fn label_only_exception(policy: &str, namespace: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(policy) else {
        return false;
    };
    let tenants = v["tenants"].as_array().cloned().unwrap_or_default();
    tenants
        .iter()
        .filter(|t| {
            t["namespaces"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n.as_str() == Some(namespace)))
        })
        .flat_map(|t| t["workloads"].as_array().cloned().unwrap_or_default())
        .any(|w| {
            w["serviceAccounts"]
                .as_array()
                .is_none_or(|sas| sas.is_empty())
        })
}

/// The policy of `cfg`'s filter: the wasm filter's, or a typed filter's that is the wasm
/// filter configured by hand (another root id, say).
fn policy_of(cfg: &EnvoyConfig) -> Option<String> {
    match cfg.filter() {
        FilterMode::Wasm { policy } => Some(policy.clone()),
        FilterMode::Typed(v) if v["@type"] == WASM_TYPE_URL => v["config"]["configuration"]
            ["value"]
            .as_str()
            .map(str::to_owned),
        _ => None,
    }
}

/// Whether `cfg` runs through both ends (asked for, and the filter is the wasm filter).
pub(crate) fn wanted(cfg: &EnvoyConfig) -> bool {
    cfg.which_ends() == Ends::Both && policy_of(cfg).is_some()
}

/// Finds or starts the destination sidecars of `cfg`, and rewrites the caller's `bootstrap`:
/// its Kubernetes services' clusters originate mTLS to them, and the bypass listeners (whose
/// ports are taken here) are added.
pub(crate) fn start(
    cfg: &EnvoyConfig,
    topo: &Topology,
    caller_dir: &Path,
    bootstrap: &mut Value,
    keep_on_failure: bool,
) -> Result<BothEnds, StartError> {
    let (ns, sa) = caller_identity(cfg);
    let who = workload(&ns, &sa);
    let ca = mesh().pki.ca_cert.clone();
    let policy = policy_of(cfg).unwrap_or_default();
    let (scope, own_scope) = match SCOPE.with(|s| s.borrow().clone()) {
        Some(s) => (s, false),
        None => (Scope::new(), true),
    };

    let mut by_namespace: BTreeMap<String, Vec<RegistryPort>> = BTreeMap::new();
    for r in cfg.registry().into_iter().filter(|r| !r.service_entry) {
        by_namespace.entry(r.namespace.clone()).or_default().push(r);
    }
    let mut destinations = Vec::new();
    for (namespace, ports) in by_namespace {
        let mut services: Vec<RegistryKey> = ports
            .iter()
            .map(|r| (r.host.clone(), r.name.clone(), r.namespace.clone(), r.port))
            .collect();
        services.sort();
        let key = (
            if cfg.uses_ecds() {
                // Never shared: its policy may be updated by its caller.
                format!("ecds {}", caller_dir.display())
            } else {
                policy.clone()
            },
            cfg.failure_policy().to_owned(),
            namespace.clone(),
            services,
        );
        let found = scope
            .destinations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let d = match found {
            Some(d) => d,
            None => {
                scope
                    .launched
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let d = Arc::new(start_destination(
                    cfg,
                    &namespace,
                    ports,
                    &policy,
                    &ca,
                    keep_on_failure,
                )?);
                scope
                    .destinations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, Arc::clone(&d));
                scope
                    .all
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Arc::clone(&d));
                d
            }
        };
        destinations.push(d);
    }
    let served = |key: &(String, String, u16)| {
        destinations
            .iter()
            .find_map(|d| d.inbound.get(key).copied())
    };

    // The caller's clusters of Kubernetes services: mTLS to their destination sidecar.
    let registry = cfg.registry();
    if let Some(clusters) = bootstrap["static_resources"]["clusters"].as_array_mut() {
        for c in clusters.iter_mut() {
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            let Some(r) = registry
                .iter()
                .find(|r| !r.service_entry && r.cluster() == name)
            else {
                continue;
            };
            let Some(port) = served(&r.upstream_key()) else {
                continue;
            };
            c["load_assignment"]["endpoints"] =
                json!([{"lb_endpoints": [{"endpoint": {"address": socket(port)}}]}]);
            c["transport_socket"] = upstream_tls(&who, &ca, &istio_sni(r.port, "", &r.host));
        }
    }
    // The bypass listeners: the same routes to the mesh services, no filter.
    let access_log = caller_dir.join("access.log");
    let bypass_ports = crate::free_ports(topo.listeners.len());
    let mut bypass = BTreeMap::new();
    if let Some(listeners) = bootstrap["static_resources"]["listeners"].as_array_mut() {
        for ((&svc_port, &local), &port) in topo.listeners.iter().zip(&bypass_ports) {
            bypass.insert(local, port);
            let mut used = std::collections::BTreeSet::new();
            let mut vhosts: Vec<Value> = cfg
                .virtual_hosts(Some(svc_port), &mut used)
                .into_iter()
                .filter(|v| {
                    let cluster = v["routes"][0]["route"]["cluster"].as_str().unwrap_or("");
                    registry
                        .iter()
                        .any(|r| !r.service_entry && r.cluster() == cluster)
                })
                .collect();
            vhosts.push(json!({
                "name": "no_mesh_destination",
                "domains": ["*"],
                "routes": [{
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 404, "body": {"inline_string": "no mesh destination\n"}},
                    "response_headers_to_add": [{"header": {"key": NO_MESH_DESTINATION.0, "value": NO_MESH_DESTINATION.1}}],
                }],
            }));
            let stat_prefix = format!("bypass_0.0.0.0_{svc_port}");
            listeners.push(outbound_listener(
                &format!("bypass_{svc_port}"),
                port,
                &format!("bypass_{svc_port}"),
                true,
                vhosts,
                vec![router()],
                crate::config::file_access_log(&access_log, &stat_prefix),
                &stat_prefix,
            ));
        }
    }

    let baseline = destinations
        .iter()
        .flat_map(|d| {
            d.ports
                .iter()
                .map(|r| (r.upstream_key(), d.app_hits(&r.upstream_key())))
        })
        .collect();
    let probe = Arc::new(Probe {
        bypass,
        comparable: cfg.has_namespace_metadata(),
        label_gap_possible: label_only_exception(&policy, &ns),
        caller_id: who.spiffe_id.clone(),
        scope,
        delivered: Mutex::new(BTreeMap::new()),
    });
    Ok(BothEnds {
        destinations,
        probe,
        baseline,
        own_scope,
    })
}

impl BothEnds {
    /// Makes the caller's listeners known to the request helpers.
    pub(crate) fn register(&self) {
        let mut map = probes().lock().unwrap_or_else(|e| e.into_inner());
        for &port in self.probe.bypass.keys() {
            map.insert(port, Arc::clone(&self.probe));
        }
    }

    /// Forgets the caller's listeners; for a caller with its own scope, checks it.
    pub(crate) fn finish(&self, panicking: bool) -> Result<(), String> {
        {
            let mut map = probes().lock().unwrap_or_else(|e| e.into_inner());
            for port in self.probe.bypass.keys() {
                map.remove(port);
            }
        }
        if self.own_scope && !panicking {
            self.probe.scope.check()
        } else {
            Ok(())
        }
    }

    pub(crate) fn tally(&self) -> Tally {
        self.probe.scope.tally()
    }

    /// Requests the application of `key` received since this caller started, if a destination
    /// of this run serves it.
    pub(crate) fn app_hits(&self, key: &(String, String, u16)) -> Option<u64> {
        let d = self
            .destinations
            .iter()
            .find(|d| d.apps.contains_key(key))?;
        let (svc, ns, port) = key;
        let by_probes = self
            .probe
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&format!("{svc}.{ns}:{port}"))
            .copied()
            .unwrap_or(0);
        let base = self.baseline.get(key).copied().unwrap_or(0) + by_probes;
        Some(d.app_hits(key).saturating_sub(base))
    }

    /// The bypass listener (no filter of the caller's own) of the caller's listener `local`.
    pub(crate) fn bypass_port(&self, local: u16) -> Option<u16> {
        self.probe.bypass.get(&local).copied()
    }

    /// The port of the application of `key`, if a destination of this run serves it.
    pub(crate) fn app_port(&self, key: &(String, String, u16)) -> Option<u16> {
        self.destinations
            .iter()
            .find_map(|d| d.apps.get(key).copied())
    }
}

/// The policy a destination sidecar of `namespace` loads, as `generate` shards it: the
/// namespace's destination shard when `policy` is valid and a tenant owns `namespace`; else
/// `policy` itself (an invalid one must reach the filter as it is, to be refused there; one
/// that already is a destination shard, as a vector's, is not cut again).
pub fn destination_policy(policy: &str, namespace: &str) -> String {
    tenant_egress_core::validate::validate_json(policy.as_bytes())
        .ok()
        .and_then(|(spec, _)| tenant_egress_core::shard::destination_shard_for(&spec, namespace))
        .and_then(|shard| serde_json::to_string(&shard).ok())
        .unwrap_or_else(|| policy.to_owned())
}

fn start_destination(
    cfg: &EnvoyConfig,
    namespace: &str,
    ports: Vec<RegistryPort>,
    policy: &str,
    ca: &Path,
    keep_on_failure: bool,
) -> Result<Destination, StartError> {
    let server = workload(namespace, "default");
    let mut last = None;
    // Ports are picked free and bound by Envoy a moment later: retry with fresh ones when one
    // was taken in between (as `EnvoyConfig::start` does).
    for _ in 0..3 {
        let mut free = crate::free_ports(2 * ports.len()).into_iter();
        let mut next = || free.next().unwrap_or_default();
        let inbound: BTreeMap<_, _> = ports.iter().map(|r| (r.upstream_key(), next())).collect();
        let apps: BTreeMap<_, _> = ports.iter().map(|r| (r.upstream_key(), next())).collect();
        let sharded = destination_policy(policy, namespace);
        let launch = crate::envoy::DestinationLaunch {
            cfg,
            namespace,
            policy: &sharded,
            keep_on_failure,
        };
        match Envoy::launch_destination(launch, |dir| {
            destination_bootstrap(cfg, namespace, &ports, &inbound, &apps, &server, ca, dir)
        }) {
            Ok(envoy) => {
                return Ok(Destination {
                    namespace: namespace.to_owned(),
                    ports,
                    inbound,
                    apps,
                    envoy,
                })
            }
            Err(e) if e.is_port_conflict() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| StartError::other("no attempt made")))
}

/// The bootstrap of the destination sidecar of `namespace`: per service port an inbound
/// listener and the application behind it.
#[allow(clippy::too_many_arguments)]
fn destination_bootstrap(
    cfg: &EnvoyConfig,
    namespace: &str,
    ports: &[RegistryPort],
    inbound: &BTreeMap<(String, String, u16), u16>,
    apps: &BTreeMap<(String, String, u16), u16>,
    server: &Workload,
    ca: &Path,
    dir: &Path,
) -> Value {
    let filter = if cfg.uses_ecds() {
        json!({
            "name": ECDS_FILTER_NAME,
            "config_discovery": {
                "config_source": {
                    "path_config_source": {"path": ecds_path(dir)},
                    "resource_api_version": "V3",
                },
                "type_urls": [WASM_TYPE_URL],
            },
        })
    } else {
        json!({"name": ECDS_FILTER_NAME, "typed_config": destination_filter_config(cfg)})
    };
    let tls_inspector = json!({
        "name": "envoy.filters.listener.tls_inspector",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
    });
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for r in ports {
        let key = r.upstream_key();
        // Istio names an inbound cluster after the target port only; two services of this
        // namespace on one port (two workloads in a mesh) get the service in the subset slot.
        let shared = ports.iter().filter(|o| o.port == r.port).count() > 1;
        let cluster = if shared {
            format!("inbound|{}|{}|", r.port, r.name)
        } else {
            format!("inbound|{}||", r.port)
        };
        let stat_prefix = format!("inbound_0.0.0.0_{}_{}", r.port, r.name);
        listeners.push(json!({
            "name": format!("virtualInbound_{}_{}", r.name, r.port),
            "address": socket(inbound[&key]),
            "enable_reuse_port": false,
            "traffic_direction": "INBOUND",
            "listener_filters": [tls_inspector],
            "filter_chains": [{
                "transport_socket": downstream_tls(server, ca),
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": stat_prefix,
                        "codec_type": "AUTO",
                        // As Istio's inbound HCM: WebSocket upgrades pass through the filters
                        // (without it Envoy itself answers an upgrade with a bare 403).
                        "upgrade_configs": [{"upgrade_type": "websocket"}],
                        "route_config": {
                            "name": cluster,
                            "validate_clusters": false,
                            "virtual_hosts": [{
                                "name": format!("inbound|http|{}", r.port),
                                "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}],
                            }],
                        },
                        "http_filters": [filter.clone(), router()],
                        "access_log": [crate::config::file_access_log(&dir.join("access.log"), &stat_prefix)],
                    },
                }],
            }],
        }));
        clusters.push(json!({
            "name": cluster,
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {
                "cluster_name": cluster,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(apps[&key])}}]}],
            },
            "metadata": {"filter_metadata": {"istio": {"services": [{
                "host": r.host, "name": r.name, "namespace": r.namespace,
            }]}}},
        }));
        let (svc, ns, port) = &key;
        listeners.push(upstream_listener(
            &format!("app_{}", r.label()),
            apps[&key],
            &upstream_stat_prefix(svc, ns, *port),
            &r.label(),
        ));
    }
    json!({
        "node": {
            "id": format!("sidecar~127.0.0.1~{namespace}-destination-0.{namespace}~{namespace}.svc.cluster.local"),
            "cluster": format!("destination.{namespace}"),
            "metadata": {"NAMESPACE": namespace, "SERVICE_ACCOUNT": "default", "NAME": format!("{namespace}-destination-0")},
        },
        "admin": {"address": socket(0)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    })
}

/// The destination's filter: the shipped module (whatever module, root id or kind the caller
/// loads) with the caller's policy and failure policy.
pub(crate) fn destination_filter_config(cfg: &EnvoyConfig) -> Value {
    let policy = policy_of(cfg).unwrap_or_default();
    crate::config::wasm_typed_config(&crate::wasm_path(), &policy, cfg.failure_policy())
}

/// Destination sidecars for the network filter's hand-written bootstraps (`tests/tests/tcp.rs`):
/// per namespace an Envoy with, per service port, an Istio-shaped inbound TCP listener
/// (`traffic_direction: INBOUND`, `tls_inspector`, a DownstreamTlsContext requiring a client
/// certificate, the network filter `tenant-egress-tcp` with the policy, `tcp_proxy` to an
/// `inbound|<port>||` cluster with `istio.services` metadata) in front of an echo application;
/// and per caller identity a filterless listener dialling it over mTLS with that identity's
/// certificate (the bypass). The caller's bootstrap takes its clusters from
/// [`TcpMesh::cluster`]; [`TcpMesh::probe`] makes every [`crate::tcp_exchange`] that the
/// caller's end closes try the bypass, which the destination must close too.
pub struct TcpMesh {
    destinations: Vec<TcpDestination>,
    probes: Vec<u16>,
    denied_probes: Arc<Mutex<u64>>,
}

struct TcpDestination {
    namespace: String,
    /// (service, port) → inbound listener port.
    inbound: BTreeMap<(String, u16), u16>,
    /// (caller SPIFFE id, service, port) → bypass listener port.
    bypass: BTreeMap<(String, String, u16), u16>,
    envoy: Envoy,
}

/// A TCP probe: the bypass port and where to count the destination's closes.
type TcpProbe = (u16, Arc<Mutex<u64>>, String);

fn tcp_probes() -> &'static Mutex<BTreeMap<u16, TcpProbe>> {
    static PROBES: OnceLock<Mutex<BTreeMap<u16, TcpProbe>>> = OnceLock::new();
    PROBES.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Called by [`crate::tcp_exchange`]: a connection to a probed caller listener that came back
/// empty (closed by the caller's end) is tried again through the bypass.
pub(crate) fn after_tcp_exchange(port: u16, payload: &[u8], got: &[u8]) {
    if !got.is_empty() {
        return;
    }
    let Some((bypass, denied, caller)) = tcp_probes()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&port)
        .cloned()
    else {
        return;
    };
    let b = crate::tcp::tcp_exchange_at(
        std::net::SocketAddr::from(([127, 0, 0, 1], bypass)),
        payload,
    );
    assert!(
        b.is_empty(),
        "both ends disagree: the caller's end closed this connection, but called directly by \
         {caller} without a filter of its own, the destination passed it: {b:?}"
    );
    *denied.lock().unwrap_or_else(|e| e.into_inner()) += 1;
}

fn spiffe(caller: (&str, &str)) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/{}/sa/{}", caller.0, caller.1)
}

impl TcpMesh {
    /// Starts a destination sidecar per namespace of `services` (`(name, namespace, port)`)
    /// with `policy`, and bypass listeners for each of `callers` (`(namespace, service
    /// account)`).
    pub fn start(
        policy: &str,
        services: &[(&str, &str, u16)],
        callers: &[(&str, &str)],
    ) -> TcpMesh {
        if let Some(scope) = SCOPE.with(|s| s.borrow().clone()) {
            scope
                .tcp_meshes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let ca = mesh().pki.ca_cert.clone();
        let mut by_namespace: BTreeMap<&str, Vec<(&str, u16)>> = BTreeMap::new();
        for &(svc, ns, port) in services {
            by_namespace.entry(ns).or_default().push((svc, port));
        }
        let mut destinations = Vec::new();
        for (ns, svcs) in by_namespace {
            let server = workload(ns, "default");
            // Ports are picked free and bound a moment later: retry with fresh ones when one
            // was taken in between (as `EnvoyConfig::start` does).
            for attempt in 0..3 {
                let n = svcs.len();
                let mut free = crate::free_ports(2 * n + n * callers.len()).into_iter();
                let mut next = || free.next().unwrap_or_default();
                let mut inbound = BTreeMap::new();
                let mut bypass = BTreeMap::new();
                let mut listeners = Vec::new();
                let mut clusters = Vec::new();
                let tls_inspector = json!({
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
                });
                for &(svc, port) in &svcs {
                    let fqdn = format!("{svc}.{ns}.svc.cluster.local");
                    let (listen, app) = (next(), next());
                    inbound.insert((svc.to_owned(), port), listen);
                    let shared = svcs.iter().filter(|(_, p)| *p == port).count() > 1;
                    let cluster = if shared {
                        format!("inbound|{port}|{svc}|")
                    } else {
                        format!("inbound|{port}||")
                    };
                    listeners.push(json!({
                    "name": format!("virtualInbound_{svc}_{port}"),
                    "address": socket(listen),
                    "enable_reuse_port": false,
                    "traffic_direction": "INBOUND",
                    "listener_filters": [tls_inspector],
                    "filter_chains": [{
                        "transport_socket": downstream_tls(&server, &ca),
                        "filters": [crate::tcp::network_wasm_filter("tenant-egress-tcp", policy), crate::tcp::tcp_proxy_filter(&cluster)],
                    }],
                }));
                    listeners.push(json!({
                    "name": format!("app_{svc}_{port}"),
                    "address": socket(app),
                    "enable_reuse_port": false,
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.echo",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"},
                    }]}],
                }));
                    clusters.push(json!({
                    "name": cluster, "type": "STATIC", "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(app)}}]}]},
                    "metadata": {"filter_metadata": {"istio": {"services": [{"host": fqdn, "name": svc, "namespace": ns}]}}},
                }));
                    for &caller in callers {
                        let who = workload(caller.0, caller.1);
                        let port_b = next();
                        let name = format!("bypass_{}_{}_{svc}_{port}", caller.0, caller.1);
                        bypass.insert((who.spiffe_id.clone(), svc.to_owned(), port), port_b);
                        listeners.push(json!({
                            "name": name, "address": socket(port_b), "enable_reuse_port": false,
                            "filter_chains": [{"filters": [crate::tcp::tcp_proxy_filter(&name)]}],
                        }));
                        clusters.push(json!({
                        "name": name, "type": "STATIC", "connect_timeout": "1s",
                        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(listen)}}]}]},
                        "transport_socket": upstream_tls(&who, &ca, &istio_sni(port, "", &fqdn)),
                    }));
                    }
                }
                let bootstrap = json!({
                    "node": {
                        "id": format!("sidecar~127.0.0.1~{ns}-destination-0.{ns}~{ns}.svc.cluster.local"),
                        "cluster": format!("destination.{ns}"),
                        "metadata": {"NAMESPACE": ns, "SERVICE_ACCOUNT": "default"},
                    },
                    "admin": {"address": socket(0)},
                    "static_resources": {"listeners": listeners, "clusters": clusters},
                });
                let envoy = match Envoy::try_start(&bootstrap.to_string()) {
                    Ok(e) => e,
                    Err(e) if e.is_port_conflict() && attempt < 2 => continue,
                    Err(e) => panic!("the destination sidecar of {ns} failed to start: {e}"),
                };
                destinations.push(TcpDestination {
                    namespace: ns.to_owned(),
                    inbound,
                    bypass,
                    envoy,
                });
                break;
            }
        }
        TcpMesh {
            destinations,
            probes: Vec::new(),
            denied_probes: Arc::new(Mutex::new(0)),
        }
    }

    fn find(&self, ns: &str) -> &TcpDestination {
        match self.destinations.iter().find(|d| d.namespace == ns) {
            Some(d) => d,
            None => panic!("no destination sidecar for namespace {ns}"),
        }
    }

    /// The destination sidecar of namespace `ns`.
    pub fn destination(&self, ns: &str) -> &Envoy {
        &self.find(ns).envoy
    }

    /// A caller sidecar's cluster `name` for `svc.ns:port`: mTLS as `caller` (namespace,
    /// service account) with Istio's SNI to the destination, and `istio.services` metadata.
    pub fn cluster(
        &self,
        name: &str,
        caller: (&str, &str),
        svc: &str,
        ns: &str,
        port: u16,
    ) -> Value {
        let fqdn = format!("{svc}.{ns}.svc.cluster.local");
        let listen = self.find(ns).inbound[&(svc.to_owned(), port)];
        json!({
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(listen)}}]}]},
            "metadata": {"filter_metadata": {"istio": {"services": [{"host": fqdn, "name": svc, "namespace": ns}]}}},
            "transport_socket": upstream_tls(&workload(caller.0, caller.1), &mesh().pki.ca_cert, &istio_sni(port, "", &fqdn)),
        })
    }

    /// From now on a [`crate::tcp_exchange`] with the caller's listener `caller_port` (a chain
    /// to `svc.ns:port`) that the caller's end closes is tried again through `caller`'s
    /// bypass, and must be closed by the destination too.
    pub fn probe(
        &mut self,
        caller_port: u16,
        caller: (&str, &str),
        svc: &str,
        ns: &str,
        port: u16,
    ) {
        let id = spiffe(caller);
        let bypass = self.find(ns).bypass[&(id.clone(), svc.to_owned(), port)];
        tcp_probes()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(caller_port, (bypass, Arc::clone(&self.denied_probes), id));
        self.probes.push(caller_port);
    }

    /// Sends `payload` as `caller` without a filter of its own (the bypass) to `svc.ns:port`
    /// and returns what came back; a connection the destination closed (empty) counts as a
    /// probe for [`check`](Self::check).
    pub fn bypass_exchange(
        &self,
        caller: (&str, &str),
        svc: &str,
        ns: &str,
        port: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let bypass = self.find(ns).bypass[&(spiffe(caller), svc.to_owned(), port)];
        let got = crate::tcp::tcp_exchange_at(
            std::net::SocketAddr::from(([127, 0, 0, 1], bypass)),
            payload,
        );
        if got.is_empty() {
            *self.denied_probes.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        }
        got
    }

    /// Compares the ends after the scenario: the destinations let through (counted under
    /// `tenant_egress.inbound.connections.allowed` and `audit_denied`) exactly the connections
    /// the caller's end let through (every one of which went to a destination of this mesh),
    /// closed every probe (`inbound.connections.denied`), and no byte reached an application
    /// whose destination let nothing through.
    #[track_caller]
    pub fn check(&self, caller: &Envoy) {
        const WAIT: Duration = Duration::from_secs(5);
        let sum = |name: &str| -> u64 {
            self.destinations
                .iter()
                .map(|d| d.envoy.counter(name).unwrap_or(0))
                .sum()
        };
        let wait = |want: u64, get: &dyn Fn() -> u64| {
            let deadline = Instant::now() + WAIT;
            let mut got = get();
            while got < want && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                got = get();
            }
            got
        };
        let at_caller = caller
            .counter("tenant_egress.connections.allowed")
            .unwrap_or(0)
            + caller
                .counter("tenant_egress.connections.audit_denied")
                .unwrap_or(0);
        let passed = wait(at_caller, &|| {
            sum("tenant_egress.inbound.connections.allowed")
                + sum("tenant_egress.inbound.connections.audit_denied")
        });
        assert_eq!(
            passed, at_caller,
            "connections let through at the destinations vs at the caller's end"
        );
        // Every probe is closed at a destination. A connection the caller's end closed may
        // reach a destination too: `tcp_proxy` dials its upstream when the connection opens,
        // before the caller's filter has seen a byte, and the TLS close that follows arrives
        // as an empty stream, which the destination refuses as well. So each of the caller's
        // closes adds at most one.
        let probes = *self.denied_probes.lock().unwrap_or_else(|e| e.into_inner());
        let denied = wait(probes, &|| sum("tenant_egress.inbound.connections.denied"));
        let caller_denied = caller
            .counter("tenant_egress.connections.denied")
            .unwrap_or(0);
        assert!(
            probes <= denied && denied <= probes + caller_denied,
            "the destinations closed {denied} connections: the {probes} probes of the caller's \
             closes, and at most the caller's {caller_denied} closed connections"
        );
        // Nothing reached an application whose destination let nothing through.
        for d in &self.destinations {
            let passed = d
                .envoy
                .counter("tenant_egress.inbound.connections.allowed")
                .unwrap_or(0)
                + d.envoy
                    .counter("tenant_egress.inbound.connections.audit_denied")
                    .unwrap_or(0);
            let bytes: u64 = d
                .envoy
                .stats()
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("cluster.inbound|") && k.ends_with(".upstream_cx_tx_bytes_total")
                })
                .map(|(_, v)| *v)
                .sum();
            assert!(
                passed > 0 || bytes == 0,
                "{bytes} bytes reached the application of {}, whose destination sidecar let no \
                 connection through",
                d.namespace
            );
        }
        eprintln!(
            "through both ends (TCP): {passed} connections let through at both ends, {probes} \
             closed by the caller's end and by the destination alone"
        );
    }
}

impl Drop for TcpMesh {
    fn drop(&mut self) {
        let mut map = tcp_probes().lock().unwrap_or_else(|e| e.into_inner());
        for p in &self.probes {
            map.remove(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_only_exception_of_the_callers_tenant_is_found() {
        let p = json!({"tenants": [
            {"name": "a", "namespaces": ["a"], "workloads": [{"selector": {"app": "x"}}]},
            {"name": "b", "namespaces": ["b"], "workloads": [{"serviceAccounts": ["x"]}]},
            {"name": "c", "namespaces": ["c"]}
        ]})
        .to_string();
        assert!(label_only_exception(&p, "a"));
        assert!(!label_only_exception(&p, "b"));
        assert!(!label_only_exception(&p, "c"));
        assert!(!label_only_exception("not json", "a"));
    }

    #[test]
    fn through_both_ends_sets_the_default_restores_it_and_fails_when_nothing_ran() {
        assert_eq!(default_ends(), Ends::Caller);
        let ran = std::panic::catch_unwind(|| {
            through_both_ends(|| assert_eq!(EnvoyConfig::new("a").which_ends(), Ends::Both))
        });
        let err = ran.expect_err("a scenario that starts no destination sidecar must fail");
        let msg = err
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(
            msg.contains("no caller started a destination sidecar"),
            "{msg}"
        );
        assert_eq!(default_ends(), Ends::Caller);
        assert!(SCOPE.with(|s| s.borrow().is_none()));
    }
}
