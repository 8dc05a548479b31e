//! The one decision path, shared by the HTTP filter (`http.rs`) and the network filter
//! (`tcp.rs`): gather the few inputs the decision needs, decide with the core, then count, log
//! and act (a local reply for a request, closing both sides of a connection).
//!
//! Host calls, in order, each made only when the decision needs it:
//! - nothing at all when the proxy has no `NAMESPACE` (the source is unknown: deny);
//! - the `:authority` (HTTP: one header lookup, see [`request_authority`]), or the TLS SNI
//!   (network); a new connection without SNI stops here, since the cluster is not known yet;
//! - `xds.cluster_name` (not at `on_new_connection`, where `tcp_proxy` has not picked it);
//! - for an outbound cluster its namespace metadata, read once per cluster and cached (plus
//!   the original destination when the authority is an IP literal: only the address the app
//!   dialled can confirm that a ClusterIP Host names the routed service); for
//!   `PassthroughCluster`, `AllowAnyDynamicDNSCluster` or no cluster the original destination
//!   (`destination.address`).
//!
//! So an allowed request makes 2 calls (the `:authority`, the cluster name): the floor of any
//! filter deciding on the routed destination. Counters are batched in the VM and flushed on a
//! timer. A denial adds the log line and the local reply or the two closes.
//!
//! At the destination end (an inbound listener, learnt once per root context) the gather step
//! differs and the rest is the same: the caller's certificate URI SAN (nothing at
//! `on_new_connection`, before the TLS handshake; a plaintext caller stops here), the
//! `:authority` (HTTP, as above), the SNI, `xds.cluster_name` and, once per inbound cluster,
//! the services it serves. So an allowed inbound request makes 4 calls (3 for a
//! connection); what the identity and the SNI resolve to is cached per identity and per SNI,
//! so only the `:authority` is parsed per request. The outbound path's calls are unchanged
//! (the direction is a field of the shared state, not a host call).

use tenant_egress_core::authority::{DYNAMIC_DNS_CLUSTER, OUTBOUND_PREFIX, PASSTHROUGH_CLUSTER};
use tenant_egress_core::inbound::Inbound;
use tenant_egress_core::{Decision, Protocol, RoutedCluster, Target};

use crate::host::{Direction, Host};
use crate::reply::{self, LocalReply, DENIED_HEADER};
use crate::state::State;

/// Where in a request's or a connection's life the filter decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// An HTTP request's headers: everything is known.
    RequestHeaders,
    /// A new TCP/TLS connection: the SNI and the original destination are known, the cluster
    /// is not. Only a denial (or an audit-mode verdict) is final here.
    NewConnection,
    /// A connection's first bytes, in either direction: the cluster is known.
    FirstData,
    /// At the destination end, the first bytes from the application (a server-first protocol)
    /// before any from the caller: the TLS handshake may still be running, so the caller's
    /// identity may not be known yet.
    FirstUpstreamData,
}

impl At {
    fn protocol(self) -> Protocol {
        match self {
            At::RequestHeaders => Protocol::Http,
            At::NewConnection | At::FirstData | At::FirstUpstreamData => Protocol::Tcp,
        }
    }
}

/// What the context does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let it through: allowed, or audit mode (counted and logged).
    Allow,
    /// Blocked: the local reply was sent, or the connection closed.
    Deny,
    /// Nothing final yet: a new connection the policy allows so far, or that has no SNI, or
    /// at the destination end a connection whose caller identity is not known yet. Decide
    /// again with the (next) bytes. Only [`At::NewConnection`] and [`At::FirstUpstreamData`]
    /// return it.
    Undecided,
}

/// Gathers, decides and acts. `state` is `None` when no valid policy was ever loaded in this
/// VM: fail closed.
pub fn enforce<H: Host>(host: &H, state: Option<&State>, at: At) -> Outcome {
    let Some(state) = state else {
        return refuse_without_policy(host, at);
    };
    if state.stand_aside {
        // A gateway proxy under `gateways: passthrough`: not a tenant's egress; no host call.
        state.counters.stood_aside(state.delegated);
        return Outcome::Allow;
    }
    if state.direction() == Direction::Inbound {
        return enforce_inbound(host, state, at);
    }
    let mut target = Target {
        protocol: at.protocol(),
        ..Target::default()
    };
    if state.source.namespace().is_none() {
        // Denied as `unknown-source` whatever the destination: read nothing.
        return act(host, state, at, &target, None);
    }
    let authority;
    let sni;
    match at {
        At::RequestHeaders => {
            #[cfg(feature = "fault-injection")]
            inject_fault(host);
            authority = request_authority(host);
            target.authority = authority.as_deref();
        }
        At::NewConnection | At::FirstData | At::FirstUpstreamData => {
            sni = host.property(state.paths.sni).filter(|s| !s.is_empty());
            target.authority = sni.as_deref();
            if at == At::NewConnection && target.authority.is_none() {
                // Nothing to decide on yet: wait for the cluster.
                return Outcome::Undecided;
            }
        }
    }
    let cluster = match at {
        At::NewConnection => None,
        At::RequestHeaders | At::FirstData | At::FirstUpstreamData => {
            host.property(state.paths.cluster_name)
        }
    };
    // A non-UTF-8 cluster name cannot be Istio's: pass a name that fails closed.
    target.cluster = cluster
        .as_deref()
        .map(|b| std::str::from_utf8(b).unwrap_or("(invalid)"));
    // Only the input this kind of destination needs: the namespace of an outbound cluster
    // (cached per cluster), the original destination of a passthrough or of a connection whose
    // cluster is not known. The name alone says which; the core parses (and validates) it
    // once, when deciding.
    let address;
    match target.cluster {
        Some(name) if name.starts_with(OUTBOUND_PREFIX) => {
            if target.authority.is_some_and(maybe_ip_authority) {
                address = host.property(state.paths.destination_address);
                target.destination_address =
                    address.as_deref().and_then(|v| std::str::from_utf8(v).ok());
            }
            return state.cluster_namespace(host, name, |ns, routed| {
                let target = Target {
                    destination_namespace: ns,
                    ..target
                };
                act(host, state, at, &target, Some(routed))
            });
        }
        Some(PASSTHROUGH_CLUSTER | DYNAMIC_DNS_CLUSTER) | None => {
            address = host.property(state.paths.destination_address);
            target.destination_address =
                address.as_deref().and_then(|v| std::str::from_utf8(v).ok());
        }
        Some(_) => {}
    }
    act(host, state, at, &target, None)
}

/// Whether an authority may be an IP literal (`10.98.24.100:3333`, `[fd00::1]:80`): a cheap
/// first-byte test that keeps the extra host call off the common named-service path. DNS
/// labels may start with a digit too; the core decides exactly.
fn maybe_ip_authority(a: &[u8]) -> bool {
    a.first().is_some_and(|c| c.is_ascii_digit() || *c == b'[')
}

/// Decides, counts, logs, and for a blocked request or connection acts.
/// `routed`: the target's cluster parsed beforehand (cached per cluster), else parsed here.
fn act<H: Host>(
    host: &H,
    state: &State,
    at: At,
    target: &Target<'_>,
    routed: Option<&RoutedCluster>,
) -> Outcome {
    let policy = &state.policy;
    let d = match routed {
        Some(routed) => policy.decide_routed(&state.source, target, routed),
        None => policy.decide_for(&state.source, target),
    };
    finish(
        host,
        state,
        at,
        &d,
        |verb| reply::log_line(verb, policy, &d, &state.source, target.cluster),
        || reply::deny_reply(policy, &d, &state.source, target.cluster),
    )
}

/// The destination end's gather step (`crate::tcp`'s connection or an inbound HTTP request):
/// the caller's verified identity, the SNI, the `:authority` (HTTP, read as at the caller's
/// end: two targeted reads), and the services the inbound cluster serves (read once per
/// cluster). What the identity and the SNI resolve to is cached ([`State::inbound`]), so a
/// request only parses its `:authority`. Then the same count/log/act as the caller's end.
/// Host calls: the peer identity, the `:authority` (HTTP), the SNI, `xds.cluster_name`.
fn enforce_inbound<H: Host>(host: &H, state: &State, at: At) -> Outcome {
    if at == At::NewConnection {
        // The TLS handshake has not finished: no client certificate to decide on yet.
        return Outcome::Undecided;
    }
    let peer = host
        .property(state.paths.peer_uri)
        .filter(|p| !p.is_empty());
    if peer.is_none() && at == At::FirstUpstreamData {
        // A server-first application greeted before the caller's handshake completed: hold
        // its bytes, decide with the caller's first bytes.
        return Outcome::Undecided;
    }
    let mut req = Inbound {
        namespace: state.source.namespace(),
        peer: peer.as_deref(),
        protocol: at.protocol(),
        ..Inbound::default()
    };
    let Some(peer) = req.peer else {
        // Plaintext: denied whatever is called; read nothing more.
        let d = state.policy.decide_inbound(&req);
        return act_inbound(host, state, at, &req, &d, None);
    };
    let authority;
    if at == At::RequestHeaders {
        authority = request_authority(host);
        req.authority = authority.as_deref();
    }
    let sni = host.property(state.paths.sni).filter(|s| !s.is_empty());
    req.sni = sni.as_deref();
    let cluster = host.property(state.paths.cluster_name);
    let name = cluster.as_deref().and_then(|c| std::str::from_utf8(c).ok());
    let (caller, service) = state.inbound(host, name, req.sni, peer);
    let d = state.policy.decide_inbound_with(&caller, &service, &req);
    act_inbound(host, state, at, &req, &d, name)
}

fn act_inbound<H: Host>(
    host: &H,
    state: &State,
    at: At,
    req: &Inbound<'_>,
    d: &Decision,
    cluster: Option<&str>,
) -> Outcome {
    let policy = &state.policy;
    finish(
        host,
        state,
        at,
        d,
        |verb| reply::inbound_log_line(verb, policy, d, &state.source, req.peer, cluster),
        || {
            state.with_inbound_services(cluster, |services| {
                reply::inbound_deny_reply(policy, d, &Inbound { services, ..*req }, cluster)
            })
        },
    )
}

/// The request's authority: one lookup of `:authority`, never the whole header map (whose
/// cost grows with every cookie, token and tracing header a request carries).
///
/// One lookup sees every authority the request carries, because Envoy keeps them in one entry.
/// Its request header map files `host` under `:authority` (`header_map_impl.cc`,
/// `StaticLookupTable`: "map a legacy host header to :authority"), for lookups and for
/// insertion alike, and a second value for that entry is appended to it comma-joined
/// (`appendToHeader`). So a `host` beside `:authority` (HTTP/2 without Envoy's
/// `http2_discard_host_header`) and repeated HTTP/1 `Host` lines both arrive as one
/// `a,b` value, which the strict authority parser refuses as `malformed-authority`; a
/// repeated `:authority` pseudo-header is refused by the HTTP/2 and HTTP/3 codecs (RFC 9113
/// §8.3). A lookup of `host` would return this same entry. `tests/tests/hostile.rs` pins each
/// case against Envoy.
fn request_authority<H: Host>(host: &H) -> Option<Vec<u8>> {
    host.request_header(":authority")
}

/// Counts, logs, and for a blocked request or connection acts: the one tail of both ends.
fn finish<H: Host>(
    host: &H,
    state: &State,
    at: At,
    d: &Decision,
    log_line: impl Fn(&str) -> String,
    deny_reply: impl FnOnce() -> LocalReply,
) -> Outcome {
    let (denied, audit_denied) = match at {
        At::RequestHeaders => ("denied", "audit-denied"),
        At::NewConnection | At::FirstData | At::FirstUpstreamData => {
            ("denied connection", "audit-denied connection")
        }
    };
    if d.allowed {
        if at == At::NewConnection {
            // The SNI is allowed; the cluster is checked with the first bytes.
            return Outcome::Undecided;
        }
        state.counters.allowed();
        return Outcome::Allow;
    }
    if !d.enforced {
        state.counters.audit_denied(d.reason);
        log::info!("{}", log_line(audit_denied));
        return Outcome::Allow;
    }
    state.counters.denied(d.reason);
    log::info!("{}", log_line(denied));
    match at {
        At::RequestHeaders => send(host, &deny_reply()),
        At::NewConnection | At::FirstData | At::FirstUpstreamData => close(host),
    }
    Outcome::Deny
}

/// A VM without a valid policy never lets a request or a connection through.
fn refuse_without_policy<H: Host>(host: &H, at: At) -> Outcome {
    match at {
        At::RequestHeaders => send(host, &reply::no_policy_reply()),
        At::NewConnection | At::FirstData | At::FirstUpstreamData => {
            log::warn!("closing a connection: no valid policy is loaded");
            close(host);
        }
    }
    Outcome::Deny
}

fn send<H: Host>(host: &H, reply: &LocalReply) {
    host.send_local_reply(
        reply.status,
        &[
            (DENIED_HEADER, reply.reason),
            ("content-type", "text/plain; charset=utf-8"),
        ],
        reply.body.as_bytes(),
    );
}

/// Closes both sides: the client's bytes are never forwarded, a server-first greeting never
/// reaches the client.
fn close<H: Host>(host: &H) {
    host.close_downstream();
    host.close_upstream();
}

/// Test-only (feature `fault-injection`): crash the VM on request.
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
fn inject_fault<H: Host>(host: &H) {
    if host.request_header("x-tenant-egress-test-panic").is_some() {
        panic!("fault injection: x-tenant-egress-test-panic");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;

    use tenant_egress_core::{Policy, Reason, Source};

    use super::*;
    use crate::metrics::Counters;
    use crate::state::XDS;

    /// A local reply the fake host was asked to send: status, headers, body.
    pub(crate) type Reply = (u16, Vec<(String, String)>, String);

    /// A host that answers from fixed values and records every call.
    #[derive(Default)]
    pub(crate) struct FakeHost {
        pub props: Vec<(String, Vec<u8>)>,
        pub headers: Vec<(String, Vec<u8>)>,
        pub calls: RefCell<Vec<String>>,
        pub replies: RefCell<Vec<Reply>>,
    }

    impl FakeHost {
        pub fn prop(mut self, path: &str, value: &str) -> Self {
            self.props.push((path.into(), value.as_bytes().to_vec()));
            self
        }

        /// Adds a request header as Envoy's request header map would: `host` is filed under
        /// `:authority`, and a second value of an entry is appended to it comma-joined
        /// (`header_map_impl.cc`; see `request_authority`).
        pub fn header(mut self, name: &str, value: &[u8]) -> Self {
            let mut name = name.to_ascii_lowercase();
            if name == "host" {
                name = ":authority".into();
            }
            match self.headers.iter_mut().find(|(k, _)| *k == name) {
                Some((_, v)) => {
                    v.push(b',');
                    v.extend_from_slice(value);
                }
                None => self.headers.push((name, value.to_vec())),
            }
            self
        }

        /// The calls made so far, then forgets them.
        pub fn take_calls(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.borrow_mut())
        }
    }

    impl Host for FakeHost {
        fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
            let path = path.join(".");
            self.calls.borrow_mut().push(path.clone());
            self.props
                .iter()
                .find(|(k, _)| *k == path)
                .map(|(_, v)| v.clone())
        }

        /// As Envoy's `getHeaderMapValue`: `host` is looked up as `:authority`.
        fn request_header(&self, name: &str) -> Option<Vec<u8>> {
            self.calls.borrow_mut().push(format!("header {name}"));
            let name = if name.eq_ignore_ascii_case("host") {
                ":authority"
            } else {
                name
            };
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }

        fn send_local_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
            self.calls.borrow_mut().push("send_local_reply".into());
            self.replies.borrow_mut().push((
                status,
                headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                String::from_utf8_lossy(body).into_owned(),
            ));
        }

        fn close_downstream(&self) {
            self.calls.borrow_mut().push("close_downstream".into());
        }

        fn close_upstream(&self) {
            self.calls.borrow_mut().push("close_upstream".into());
        }
    }

    pub(crate) const CLUSTER_NS: &str =
        "xds.cluster_metadata.filter_metadata.istio.services.0.namespace";

    /// prod may reach its own namespace; `audit` is a tenant in audit mode.
    pub(crate) fn state(namespace: Option<&str>) -> State {
        let policy = Policy::from_json(
            br#"{"apiVersion": "tenant-egress/v1",
                 "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}]},
                             {"name": "audit", "namespaces": ["audit"], "mode": "audit",
                              "egress": [{"hosts": ["./*"]}]}]}"#,
        )
        .unwrap()
        .0;
        let source = policy.source(&Source {
            namespace,
            labels: &[],
        });
        State::new(policy, source, &XDS, Counters::new())
    }

    fn outbound(ns: &str) -> String {
        format!("outbound|26257||cockroachdb.{ns}.svc.cluster.local")
    }

    #[test]
    fn allowed_request_makes_two_host_calls_once_the_cluster_is_cached() {
        let st = state(Some("prod"));
        let host = FakeHost::default()
            .header(":authority", b"cockroachdb.prod:26257")
            .prop("xds.cluster_name", &outbound("prod"))
            .prop(CLUSTER_NS, "prod");
        assert_eq!(
            enforce(&host, Some(&st), At::RequestHeaders),
            Outcome::Allow
        );
        assert_eq!(
            host.take_calls(),
            ["header :authority", "xds.cluster_name", CLUSTER_NS]
        );
        assert_eq!(
            enforce(&host, Some(&st), At::RequestHeaders),
            Outcome::Allow
        );
        assert_eq!(host.take_calls(), ["header :authority", "xds.cluster_name"]);
        assert_eq!(st.counters.pending(), (2, 0, 0));
    }

    #[test]
    fn denied_request_gets_the_reply_and_is_counted() {
        let st = state(Some("prod"));
        let host = FakeHost::default()
            .header(":authority", b"cockroachdb.uat:26257")
            .prop("xds.cluster_name", &outbound("uat"))
            .prop(CLUSTER_NS, "uat");
        assert_eq!(enforce(&host, Some(&st), At::RequestHeaders), Outcome::Deny);
        assert_eq!(
            host.take_calls(),
            [
                "header :authority",
                "xds.cluster_name",
                CLUSTER_NS,
                "send_local_reply"
            ]
        );
        let replies = host.replies.borrow();
        let (status, headers, body) = &replies[0];
        assert_eq!(*status, 403);
        assert!(headers.contains(&(DENIED_HEADER.into(), "not-allowed".into())));
        assert!(body.starts_with(reply::BODY_MARKER), "{body}");
        assert_eq!(st.counters.pending(), (0, 1, 0));
        assert_eq!(st.counters.pending_denied(Reason::NotAllowed), 1);
    }

    #[test]
    fn passthrough_reads_the_original_destination() {
        let st = state(Some("prod"));
        let host = FakeHost::default()
            .header(":authority", b"10.1.2.3:8080")
            .prop("xds.cluster_name", "PassthroughCluster")
            .prop("destination.address", "10.1.2.3:8080");
        assert_eq!(enforce(&host, Some(&st), At::RequestHeaders), Outcome::Deny);
        assert_eq!(
            host.take_calls(),
            [
                "header :authority",
                "xds.cluster_name",
                "destination.address",
                "send_local_reply"
            ]
        );
    }

    #[test]
    fn a_gateway_standing_aside_reads_nothing_and_allows() {
        // A source that would be denied (no NAMESPACE) in a gateway under `gateways:
        // passthrough`: nothing is read or sent, each request and connection is counted.
        let mut st = state(None);
        st.stand_aside = true;
        let host = FakeHost::default();
        for at in [At::RequestHeaders, At::NewConnection, At::FirstData] {
            assert_eq!(enforce(&host, Some(&st), at), Outcome::Allow, "{at:?}");
        }
        assert!(host.take_calls().is_empty());
        assert_eq!(st.counters.pending(), (0, 0, 0));
        assert_eq!(st.counters.pending_gateway_passthrough(), 3);
    }

    #[test]
    fn unknown_source_reads_nothing_and_denies() {
        let st = state(None);
        let host = FakeHost::default();
        assert_eq!(enforce(&host, Some(&st), At::RequestHeaders), Outcome::Deny);
        assert_eq!(host.take_calls(), ["send_local_reply"]);
        assert_eq!(st.counters.pending_denied(Reason::UnknownSource), 1);
        assert_eq!(enforce(&host, Some(&st), At::FirstData), Outcome::Deny);
        assert_eq!(host.take_calls(), ["close_downstream", "close_upstream"]);
    }

    #[test]
    fn audit_mode_lets_through_and_counts() {
        let st = state(Some("audit"));
        let host = FakeHost::default()
            .header(":authority", b"cockroachdb.uat:26257")
            .prop("xds.cluster_name", &outbound("uat"))
            .prop(CLUSTER_NS, "uat");
        assert_eq!(
            enforce(&host, Some(&st), At::RequestHeaders),
            Outcome::Allow
        );
        assert!(!host.take_calls().contains(&"send_local_reply".to_string()));
        assert_eq!(st.counters.pending(), (0, 0, 1));
    }

    #[test]
    fn no_policy_fails_closed() {
        let host = FakeHost::default();
        assert_eq!(enforce(&host, None, At::RequestHeaders), Outcome::Deny);
        assert_eq!(host.take_calls(), ["send_local_reply"]);
        assert_eq!(host.replies.borrow()[0].0, 403);
        assert_eq!(enforce(&host, None, At::NewConnection), Outcome::Deny);
        assert_eq!(host.take_calls(), ["close_downstream", "close_upstream"]);
    }

    /// One lookup of `:authority` and nothing else of the request's headers; a `host` beside
    /// it or a repeated `Host` reaches that lookup comma-joined, as Envoy's header map stores
    /// it (see `request_authority` and `FakeHost::header`), and is refused.
    #[test]
    fn the_authority_is_one_lookup_and_a_second_value_is_refused() {
        let st = state(Some("prod"));
        let cluster = outbound("prod");
        let run = |headers: &[(&str, &[u8])]| {
            let mut host = FakeHost::default()
                .prop("xds.cluster_name", &cluster)
                .prop(CLUSTER_NS, "prod");
            for (k, v) in headers {
                host = host.header(k, v);
            }
            let outcome = enforce(&host, Some(&st), At::RequestHeaders);
            let reason = host
                .replies
                .borrow()
                .first()
                .and_then(|(_, h, _)| h.iter().find(|(k, _)| k == DENIED_HEADER).cloned())
                .map(|(_, v)| v);
            (outcome, host.take_calls(), reason)
        };
        let prod: &[u8] = b"cockroachdb.prod:26257";
        let uat: &[u8] = b"cockroachdb.uat:26257";
        let (outcome, calls, _) = run(&[(":authority", prod), ("cookie", b"x")]);
        assert_eq!(outcome, Outcome::Allow);
        assert_eq!(
            calls,
            ["header :authority", "xds.cluster_name", CLUSTER_NS],
            "the allowed path reads one header"
        );
        // A differing `host` beside `:authority` (HTTP/2): one comma-joined value, refused.
        let (outcome, _, reason) = run(&[(":authority", prod), ("host", uat)]);
        assert_eq!(outcome, Outcome::Deny);
        assert_eq!(reason.as_deref(), Some("malformed-authority"));
        // Even an agreeing one: `a,a` is no authority.
        let (outcome, _, reason) = run(&[(":authority", prod), ("host", prod)]);
        assert_eq!(outcome, Outcome::Deny);
        assert_eq!(reason.as_deref(), Some("malformed-authority"));
        // HTTP/1 `Host` lines: the first is the authority, a second is refused.
        let (outcome, _, _) = run(&[("Host", prod)]);
        assert_eq!(outcome, Outcome::Allow);
        let (outcome, _, reason) = run(&[("host", prod), ("Host", uat)]);
        assert_eq!(outcome, Outcome::Deny);
        assert_eq!(reason.as_deref(), Some("malformed-authority"));
        // No authority at all (HTTP/1.0): the routed cluster alone decides, as the core says.
        let (outcome, calls, _) = run(&[("cookie", b"x")]);
        assert_eq!(outcome, Outcome::Allow);
        assert_eq!(calls[0], "header :authority");
    }

    /// A destination sidecar in prod: the same policy, at the inbound end.
    pub(crate) fn inbound_state() -> State {
        let st = state(Some("prod"));
        st.set_direction(Direction::Inbound);
        st
    }

    const PEER: &str = "connection.uri_san_peer_certificate";
    const SNI: &str = "connection.requested_server_name";
    pub(crate) const SERVICE0: &str = "xds.cluster_metadata.filter_metadata.istio.services.0.host";
    const SERVICE1: &str = "xds.cluster_metadata.filter_metadata.istio.services.1.host";

    pub(crate) fn inbound_host(caller_ns: &str) -> FakeHost {
        FakeHost::default()
            .prop(
                PEER,
                &format!("spiffe://cluster.local/ns/{caller_ns}/sa/default"),
            )
            .prop(SNI, "outbound_.26257_._.cockroachdb.prod.svc.cluster.local")
            .prop("xds.cluster_name", "inbound|26257||")
            .prop(SERVICE0, "cockroachdb.prod.svc.cluster.local")
    }

    #[test]
    fn inbound_request_decides_on_the_callers_identity() {
        let st = inbound_state();
        let host = inbound_host("prod").header(":authority", b"cockroachdb.prod:26257");
        assert_eq!(
            enforce(&host, Some(&st), At::RequestHeaders),
            Outcome::Allow
        );
        assert_eq!(
            host.take_calls(),
            [
                PEER,
                "header :authority",
                SNI,
                "xds.cluster_name",
                SERVICE0,
                SERVICE1
            ]
        );
        // The services are cached per inbound cluster (and what the identity and the SNI
        // resolve to, per identity and per SNI): the same calls, without the services.
        assert_eq!(
            enforce(&host, Some(&st), At::RequestHeaders),
            Outcome::Allow
        );
        assert_eq!(
            host.take_calls(),
            [PEER, "header :authority", SNI, "xds.cluster_name"]
        );
        // A `host` beside the `:authority` (HTTP/2): one comma-joined value, refused at this
        // end as at the caller's.
        let spoofed = inbound_host("prod")
            .header(":authority", b"cockroachdb.prod:26257")
            .header("host", b"api.prod:8080");
        assert_eq!(
            enforce(&spoofed, Some(&st), At::RequestHeaders),
            Outcome::Deny
        );
        assert_eq!(
            spoofed.take_calls(),
            [
                PEER,
                "header :authority",
                SNI,
                "xds.cluster_name",
                "send_local_reply"
            ]
        );
        let replies = spoofed.replies.borrow();
        assert!(
            replies[0]
                .1
                .contains(&(DENIED_HEADER.into(), "malformed-authority".into())),
            "{:?}",
            replies[0]
        );
        let uat = inbound_host("audit-less").header(":authority", b"cockroachdb.prod:26257");
        assert_eq!(enforce(&uat, Some(&st), At::RequestHeaders), Outcome::Deny);
        let replies = uat.replies.borrow();
        let (status, headers, body) = &replies[0];
        assert_eq!(*status, 403);
        assert!(
            headers.contains(&(DENIED_HEADER.into(), "no-tenant".into())),
            "{headers:?}"
        );
        assert!(body.starts_with(reply::BODY_MARKER), "{body}");
        assert!(
            body.contains("caller: spiffe://cluster.local/ns/audit-less/sa/default"),
            "{body}"
        );
        assert!(body.contains("decided at the destination"), "{body}");
        assert_eq!(st.counters.pending(), (2, 2, 0));
    }

    #[test]
    fn inbound_plaintext_reads_nothing_more_and_denies() {
        let st = inbound_state();
        let host = FakeHost::default().header(":authority", b"cockroachdb.prod:26257");
        assert_eq!(enforce(&host, Some(&st), At::RequestHeaders), Outcome::Deny);
        assert_eq!(host.take_calls(), [PEER, "send_local_reply"]);
        assert_eq!(st.counters.pending_denied(Reason::NoPeerIdentity), 1);
    }

    #[test]
    fn inbound_audit_caller_passes_and_is_counted() {
        let st = inbound_state();
        // `audit` is a tenant in audit mode whose egress does not import prod.
        let host = inbound_host("audit").header(":authority", b"cockroachdb.prod:26257");
        assert_eq!(
            enforce(&host, Some(&st), At::RequestHeaders),
            Outcome::Allow
        );
        assert!(host.replies.borrow().is_empty());
        assert_eq!(st.counters.pending(), (0, 0, 1));
        assert_eq!(st.counters.pending_audit(Reason::NotAllowed), 1);
    }
}
