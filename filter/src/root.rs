//! The root context: one per plugin configuration per VM (each Envoy worker thread runs its own
//! VM with its own copy). It compiles the policy and resolves the source workload once
//! (`state.rs`), then hands every context a shared reference.
//!
//! A configuration that fails validation is refused (`on_configure` returns `false`): Envoy then
//! keeps the previous configuration running, exactly as for a rejected xDS update, so the last
//! good policy keeps enforcing. Compile first, swap after.
//!
//! The same .wasm is the HTTP filter and the network filter, whatever the root id: the kind is
//! learnt from the stream Envoy creates the first context for (`host::context_kind`), since the
//! proxy-wasm ABI does not say it and the SDK's dispatcher aborts the VM when it guesses wrong.

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::ContextType;
use tenant_egress_core::spec::Gateways;
use tenant_egress_core::{Policy, Source, SourceScope};

use crate::host::{self, Direction, FilterKind, Proxy};
use crate::http::Http;
use crate::metrics::{self, Counters, FLUSH_PERIOD};
use crate::state::{Paths, State, CACHE_TICKS, LEGACY, XDS};
use crate::tcp::Tcp;

/// The root context.
#[derive(Default)]
pub struct Root {
    state: Option<Rc<State>>,
    config_errors: Option<u32>,
    ticks: u32,
    root_id: String,
    /// Learnt when Envoy creates the first context (`get_type`); one root context serves one
    /// kind.
    kind: Cell<Option<FilterKind>>,
    /// Learnt with the kind: which end this filter runs at.
    direction: Cell<Direction>,
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
        host::adopt_log_level();
        log::info!("version {} starting", env!("CARGO_PKG_VERSION"));
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        if self.config_errors.is_none() {
            self.config_errors = metrics::config_errors();
        }
        self.root_id = host::property(&["plugin_root_id"])
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_default();
        let bytes = host::plugin_configuration().unwrap_or_default();
        if bytes.is_empty() {
            return self.refuse(
                "the plugin configuration is empty; it must be the policy document (JSON)",
            );
        }
        // Warnings are the CLI's business: the shipped module builds the core without its
        // `warnings` feature, so `_warnings` is empty there (validate::WARNINGS).
        let (policy, _warnings) = match Policy::from_json(&bytes) {
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
        let (source, paths, labels) = read_source(&policy);
        if source.namespace().is_none() {
            log::warn!(
                "the proxy has no NAMESPACE node metadata; every request will be denied (unknown-source)"
            );
        }
        let summary = format!(
            "version {} loaded policy (root id {:?}): {}; source namespace={} tenant={} workload={} labels={}",
            env!("CARGO_PKG_VERSION"),
            self.root_id,
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
        let counters = Counters::new();
        if let Some(kind) = self.kind.get() {
            counters.define(kind, self.direction.get());
        }
        let stand_aside = stands_aside(&policy);
        let mut state = State::new(policy, source, paths, counters);
        state.stand_aside = stand_aside;
        state.set_direction(self.direction.get());
        self.state = Some(Rc::new(state));
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
            state.clear_cluster_cache();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(Proxy, self.state.clone())))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Tcp::new(Proxy, self.state.clone())))
    }

    /// Asked by the SDK each time Envoy creates a context of this root (no factory is set
    /// with `set_http_context`/`set_stream_context`, so the SDK's dispatcher asks here), to
    /// file it as an HTTP or a stream context. The first time, the new stream is asked which
    /// kind it is (one host call per root context, never per request); the answer holds for
    /// every later context, since one root context serves one filter.
    fn get_type(&self) -> Option<ContextType> {
        let kind = match self.kind.get() {
            Some(kind) => kind,
            None => {
                let kind = host::context_kind();
                let direction = host::listener_direction();
                self.kind.set(Some(kind));
                self.direction.set(direction);
                if let Some(state) = &self.state {
                    state.set_direction(direction);
                    state.counters.define(kind, direction);
                }
                log::info!(
                    "serving as the {} filter (root id {:?}), as Envoy created its first context",
                    kind.as_str(),
                    self.root_id,
                );
                if direction == Direction::Inbound {
                    log::info!(
                        "at the destination's end (an inbound listener, root id {:?}): deciding on the caller's mTLS identity",
                        self.root_id,
                    );
                }
                kind
            }
        };
        Some(match kind {
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

/// Whether this proxy is an Istio gateway and the policy leaves gateways alone. Reads only the
/// node id (`xds.node.id`, else the pre-1.33 `node.id`), never the whole node (about 60 KB).
///
/// Why: a root-namespace `CLIENT` WasmPlugin without a selector reaches gateway listeners too,
/// and WasmPlugin selectors cannot exclude them. A gateway's traffic is ingress (or egress
/// through a shared gateway), not a tenant's sidecar egress, and its namespace belongs to no
/// tenant: with `unknownSource: deny` enforcing would answer every ingress request with a 403.
fn stands_aside(policy: &Policy) -> bool {
    let id = host::property(&["xds", "node", "id"])
        .or_else(|| host::property(&["node", "id"]))
        .unwrap_or_default();
    if !tenant_egress_core::spec::is_gateway_node_id(&id) {
        return false;
    }
    let shown = String::from_utf8_lossy(&id);
    match policy.gateways() {
        Gateways::Passthrough => {
            log::info!(
                "gateway proxy (node id {shown:?}): standing aside as the policy says (gateways: \
                 passthrough); every request and connection passes, counted as {}",
                metrics::stat_name("gateway_passthrough", None)
            );
            true
        }
        Gateways::Enforce => {
            log::info!(
                "gateway proxy (node id {shown:?}): enforcing as the policy says (gateways: enforce)"
            );
            false
        }
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
    // Istio's `SERVICE_ACCOUNT` node metadata: the pod's service account, for exceptions by
    // service account (absent: those never apply).
    let sa_path: &[&str] = if std::ptr::eq(paths, &LEGACY) {
        &["node", "metadata", "SERVICE_ACCOUNT"]
    } else {
        &["xds", "node", "metadata", "SERVICE_ACCOUNT"]
    };
    let service_account = host::property(sa_path).and_then(|v| String::from_utf8(v).ok());
    let scope = policy.source_as(
        &Source {
            namespace: namespace.as_deref(),
            labels: &labels,
        },
        service_account.as_deref(),
    );
    let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    (scope, paths, format!("{{{}}}", shown.join(",")))
}
