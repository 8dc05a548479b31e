//! The network filter: one context per TCP/TLS connection (Istio WasmPlugin `type: NETWORK`,
//! placed before `tcp_proxy` on the sidecar's outbound TCP filter chains).
//!
//! When each input is available (measured on Envoy 1.40, see tests/tests/tcp.rs):
//! - `on_new_connection`: the original destination (`destination.address`) and, when a TLS
//!   inspector ran, the SNI (`connection.requested_server_name`); NOT the cluster, which
//!   `tcp_proxy` (after us in the chain) has not picked yet. A TLS connection whose SNI the
//!   policy denies is closed here, before `tcp_proxy` even connects upstream.
//! - first `on_downstream_data` (client speaks first) or first `on_upstream_data` (server-first
//!   protocols such as MySQL or SMTP greet first): `xds.cluster_name` is set. The decision is
//!   made at the first of the two, and until then no byte is forwarded in either direction
//!   (`Action::Pause`). A denied connection is closed on both sides with its bytes unsent. The
//!   upstream may have seen the TCP handshake (`tcp_proxy` connects as the connection opens),
//!   never a byte of the client's data; a server-first upstream's greeting is dropped.

use std::rc::Rc;

use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};
use tenant_egress_core::authority::OUTBOUND_PREFIX;
use tenant_egress_core::{Protocol, Target};

use crate::host;
use crate::reply;
use crate::root::State;

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Undecided,
    Allowed,
    Denied,
}

/// One connection.
pub struct Tcp {
    state: Option<Rc<State>>,
    verdict: Verdict,
}

impl Tcp {
    /// A context sharing the configuration's state (`None`: no policy ever loaded).
    pub fn new(state: Option<Rc<State>>) -> Tcp {
        Tcp {
            state,
            verdict: Verdict::Undecided,
        }
    }

    /// Decides once, with whatever the proxy knows now; `early` is the `on_new_connection`
    /// pass, which only acts on a denial (the cluster is not known yet).
    fn decide(&mut self, early: bool) -> Action {
        match self.verdict {
            Verdict::Allowed => return Action::Continue,
            Verdict::Denied => return Action::Pause,
            Verdict::Undecided => {}
        }
        let Some(state) = self.state.clone() else {
            log::warn!("closing a connection: no valid policy is loaded");
            return self.close();
        };
        let mut target = Target {
            protocol: Protocol::Tcp,
            ..Target::default()
        };
        if state.source.namespace().is_none() {
            return self.act(&state, &target, early);
        }
        let sni = host::property(state.paths.sni).filter(|s| !s.is_empty());
        target.authority = sni.as_deref();
        let address = host::property(state.paths.destination_address);
        target.destination_address = address.as_deref().and_then(|v| std::str::from_utf8(v).ok());
        let cluster = if early {
            None
        } else {
            host::property(state.paths.cluster_name)
        };
        target.cluster = cluster
            .as_deref()
            .map(|b| std::str::from_utf8(b).unwrap_or("(invalid)"));
        if early && target.authority.is_none() {
            // Nothing to decide on yet: wait for the cluster.
            return Action::Continue;
        }
        if let Some(name) = target.cluster.filter(|c| c.starts_with(OUTBOUND_PREFIX)) {
            return state.cluster_namespace(name, |ns| {
                let target = Target {
                    destination_namespace: ns,
                    ..target
                };
                self.act(&state, &target, early)
            });
        }
        self.act(&state, &target, early)
    }

    fn act(&mut self, state: &State, target: &Target<'_>, early: bool) -> Action {
        let policy = &state.policy;
        let d = policy.decide_for(&state.source, target);
        if d.allowed {
            if early {
                // The SNI is allowed; the cluster is checked with the first bytes.
                return Action::Continue;
            }
            self.verdict = Verdict::Allowed;
            state.counters.allowed();
            return Action::Continue;
        }
        if !d.enforced {
            self.verdict = Verdict::Allowed;
            state.counters.audit_denied(d.reason);
            log::info!(
                "{}",
                reply::log_line(
                    "audit-denied connection",
                    policy,
                    &d,
                    &state.source,
                    target.cluster
                )
            );
            return Action::Continue;
        }
        state.counters.denied(d.reason);
        log::info!(
            "{}",
            reply::log_line(
                "denied connection",
                policy,
                &d,
                &state.source,
                target.cluster
            )
        );
        self.close()
    }

    fn close(&mut self) -> Action {
        self.verdict = Verdict::Denied;
        host::close_downstream();
        host::close_upstream();
        Action::Pause
    }
}

impl Context for Tcp {}

/// At debug level, logs which inputs the proxy has at a callback (how the availability table in
/// the module docs is checked against a real Envoy). Costs nothing at info.
fn log_availability(callback: &str, state: Option<&State>) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let Some(state) = state else { return };
    let show = |path: &[&str]| {
        host::property(path).filter(|v| !v.is_empty()).map_or_else(
            || "unset".to_owned(),
            |v| String::from_utf8_lossy(&v).into_owned(),
        )
    };
    log::debug!(
        "availability at {callback}: xds.cluster_name={} connection.requested_server_name={} destination.address={}",
        show(state.paths.cluster_name),
        show(state.paths.sni),
        show(state.paths.destination_address),
    );
}

impl StreamContext for Tcp {
    fn on_new_connection(&mut self) -> Action {
        log_availability("on_new_connection", self.state.as_deref());
        // Continue unless denied: tcp_proxy after us must run to pick the cluster.
        match self.decide(true) {
            Action::Pause => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        if self.verdict == Verdict::Undecided {
            log_availability("first on_downstream_data", self.state.as_deref());
        }
        self.decide(false)
    }

    fn on_upstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        if self.verdict == Verdict::Undecided {
            log_availability("first on_upstream_data", self.state.as_deref());
        }
        self.decide(false)
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {}
}
