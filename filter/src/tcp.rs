//! The network filter's context: one per TCP/TLS connection (Istio WasmPlugin `type: NETWORK`,
//! placed before `tcp_proxy` on the sidecar's outbound TCP filter chains). A small state
//! machine around `enforce.rs`: decide once, then remember.
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

use crate::enforce::{enforce, At, Outcome};
use crate::host::{Host, Proxy};
use crate::state::State;

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Undecided,
    Allowed,
    Denied,
}

/// One connection.
pub struct Tcp<H: Host = Proxy> {
    host: H,
    state: Option<Rc<State>>,
    verdict: Verdict,
}

impl<H: Host> Tcp<H> {
    /// A context sharing the configuration's state (`None`: no policy ever loaded).
    pub fn new(host: H, state: Option<Rc<State>>) -> Tcp<H> {
        Tcp {
            host,
            state,
            verdict: Verdict::Undecided,
        }
    }

    /// Decides once, with whatever the proxy knows at `at`; afterwards only replays the verdict.
    fn decide(&mut self, at: At) -> Action {
        match self.verdict {
            Verdict::Allowed => return Action::Continue,
            Verdict::Denied => return Action::Pause,
            Verdict::Undecided => {}
        }
        match enforce(&self.host, self.state.as_deref(), at) {
            Outcome::Allow => {
                self.verdict = Verdict::Allowed;
                Action::Continue
            }
            Outcome::Deny => {
                self.verdict = Verdict::Denied;
                Action::Pause
            }
            // At on_new_connection: let tcp_proxy run to pick the cluster; no byte moves
            // before the data callbacks decide. At the destination end, the application's
            // first bytes before the caller's identity is known: hold them.
            Outcome::Undecided if at == At::NewConnection => Action::Continue,
            Outcome::Undecided => Action::Pause,
        }
    }

    /// At debug level, logs which inputs the proxy has at a callback (how the availability
    /// table in the module docs is checked against a real Envoy). Costs nothing at info.
    fn log_availability(&self, callback: &str) {
        if self.verdict != Verdict::Undecided || !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let Some(state) = self.state.as_deref() else {
            return;
        };
        let show = |path: &[&str]| {
            self.host
                .property(path)
                .filter(|v| !v.is_empty())
                .map_or_else(
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
}

impl<H: Host> Context for Tcp<H> {}

impl<H: Host> StreamContext for Tcp<H> {
    fn on_new_connection(&mut self) -> Action {
        self.log_availability("on_new_connection");
        self.decide(At::NewConnection)
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        self.log_availability("first on_downstream_data");
        self.decide(At::FirstData)
    }

    fn on_upstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        self.log_availability("first on_upstream_data");
        self.decide(At::FirstUpstreamData)
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::tests::{state, FakeHost, CLUSTER_NS};

    const PROD: &str = "outbound|26257||cockroachdb.prod.svc.cluster.local";
    const UAT: &str = "outbound|26257||cockroachdb.uat.svc.cluster.local";

    fn tcp(host: FakeHost, ns: Option<&str>) -> Tcp<FakeHost> {
        Tcp::new(host, Some(Rc::new(state(ns))))
    }

    fn counted(t: &Tcp<FakeHost>) -> (u64, u64, u64) {
        t.state.as_deref().map(|s| s.counters.pending()).unwrap()
    }

    #[test]
    fn plaintext_is_decided_at_the_first_bytes_then_remembered() {
        let host = FakeHost::default()
            .prop("destination.address", "10.96.0.1:26257")
            .prop("xds.cluster_name", PROD)
            .prop(CLUSTER_NS, "prod");
        let mut t = tcp(host, Some("prod"));
        // No SNI: nothing to decide on before the cluster is known.
        assert_eq!(t.on_new_connection(), Action::Continue);
        assert_eq!(t.host.take_calls(), ["connection.requested_server_name"]);
        assert_eq!(counted(&t), (0, 0, 0));
        assert_eq!(t.on_upstream_data(5, false), Action::Continue);
        assert_eq!(
            t.host.take_calls(),
            [
                "connection.requested_server_name",
                "xds.cluster_name",
                CLUSTER_NS
            ]
        );
        assert_eq!(t.on_downstream_data(5, false), Action::Continue);
        assert_eq!(t.on_upstream_data(5, true), Action::Continue);
        assert!(t.host.take_calls().is_empty(), "decided once");
        assert_eq!(counted(&t), (1, 0, 0));
    }

    #[test]
    fn denied_connection_is_closed_on_both_sides_and_stays_paused() {
        let host = FakeHost::default()
            .prop("xds.cluster_name", UAT)
            .prop(CLUSTER_NS, "uat");
        let mut t = tcp(host, Some("prod"));
        assert_eq!(t.on_new_connection(), Action::Continue);
        t.host.take_calls();
        assert_eq!(t.on_downstream_data(5, false), Action::Pause);
        let calls = t.host.take_calls();
        assert_eq!(
            calls[calls.len() - 2..],
            ["close_downstream", "close_upstream"]
        );
        assert_eq!(t.on_downstream_data(5, false), Action::Pause);
        assert_eq!(t.on_upstream_data(5, false), Action::Pause);
        assert!(t.host.take_calls().is_empty());
        assert_eq!(counted(&t), (0, 1, 0));
    }

    #[test]
    fn tls_sni_is_decided_at_the_new_connection() {
        let denied = FakeHost::default()
            .prop(
                "connection.requested_server_name",
                "cockroachdb.uat.svc.cluster.local",
            )
            .prop("destination.address", "127.0.0.1:26257");
        let mut t = tcp(denied, Some("prod"));
        assert_eq!(t.on_new_connection(), Action::Pause);
        assert_eq!(
            t.host.take_calls(),
            [
                "connection.requested_server_name",
                "destination.address",
                "close_downstream",
                "close_upstream"
            ]
        );
        assert_eq!(t.on_downstream_data(5, false), Action::Pause);
        // An allowed SNI is provisional: counted once, with the cluster, at the first bytes.
        let allowed = FakeHost::default()
            .prop(
                "connection.requested_server_name",
                "cockroachdb.prod.svc.cluster.local",
            )
            .prop("destination.address", "127.0.0.1:26257")
            .prop("xds.cluster_name", PROD)
            .prop(CLUSTER_NS, "prod");
        let mut t = tcp(allowed, Some("prod"));
        assert_eq!(t.on_new_connection(), Action::Continue);
        assert_eq!(counted(&t), (0, 0, 0));
        assert_eq!(t.on_downstream_data(5, false), Action::Continue);
        assert_eq!(counted(&t), (1, 0, 0));
    }

    #[test]
    fn audit_mode_is_final_at_the_new_connection() {
        let host = FakeHost::default()
            .prop(
                "connection.requested_server_name",
                "cockroachdb.uat.svc.cluster.local",
            )
            .prop("destination.address", "127.0.0.1:26257");
        let mut t = tcp(host, Some("audit"));
        assert_eq!(t.on_new_connection(), Action::Continue);
        t.host.take_calls();
        assert_eq!(t.on_downstream_data(5, false), Action::Continue);
        assert!(t.host.take_calls().is_empty());
        assert_eq!(counted(&t), (0, 0, 1));
    }

    #[test]
    fn no_policy_closes() {
        let mut t = Tcp::new(FakeHost::default(), None);
        assert_eq!(t.on_new_connection(), Action::Pause);
        assert_eq!(t.host.take_calls(), ["close_downstream", "close_upstream"]);
        assert_eq!(t.on_downstream_data(1, false), Action::Pause);
        assert!(t.host.take_calls().is_empty());
    }

    #[test]
    fn inbound_connection_waits_for_the_handshake_and_holds_a_greeting() {
        use crate::enforce::tests::{inbound_host, inbound_state};
        let mut t = Tcp::new(inbound_host("uat"), Some(Rc::new(inbound_state())));
        // No client certificate before the handshake: read nothing, let tcp_proxy connect.
        assert_eq!(t.on_new_connection(), Action::Continue);
        assert!(t.host.take_calls().is_empty());
        assert_eq!(t.on_downstream_data(5, false), Action::Pause);
        let calls = t.host.take_calls();
        assert_eq!(
            calls[calls.len() - 2..],
            ["close_downstream", "close_upstream"]
        );
        assert_eq!(counted(&t), (0, 1, 0));
        // A server-first application's greeting before the caller's identity is known is held,
        // undecided, until the caller's first bytes.
        let mut t = Tcp::new(
            FakeHost::default().prop("xds.cluster_name", "inbound|26257||"),
            Some(Rc::new(inbound_state())),
        );
        assert_eq!(t.on_new_connection(), Action::Continue);
        assert_eq!(t.on_upstream_data(7, false), Action::Pause);
        assert_eq!(t.host.take_calls(), ["connection.uri_san_peer_certificate"]);
        assert_eq!(counted(&t), (0, 0, 0));
        // The caller spoke without a certificate: plaintext, closed.
        assert_eq!(t.on_downstream_data(5, false), Action::Pause);
        assert_eq!(counted(&t), (0, 1, 0));
        let mut t = Tcp::new(inbound_host("prod"), Some(Rc::new(inbound_state())));
        assert_eq!(t.on_new_connection(), Action::Continue);
        assert_eq!(t.on_upstream_data(7, false), Action::Continue);
        assert_eq!(counted(&t), (1, 0, 0));
    }
}
