//! The HTTP context: one per request. Gathers the few inputs the decision needs (as few host
//! calls as possible), decides with the core, and acts.
//!
//! Host calls per request: the header map (1) and the cluster name (1); then the original
//! destination for a passthrough (1), or for an outbound cluster its namespace metadata, read
//! once per cluster and cached (plus the original destination when the authority is an IP).
//! Counters are batched in the VM and flushed on a timer. A denial adds the log line and the
//! local reply (2).

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use tenant_egress_core::authority::{DYNAMIC_DNS_CLUSTER, OUTBOUND_PREFIX, PASSTHROUGH_CLUSTER};
use tenant_egress_core::Target;

use crate::host;
use crate::reply::{self, LocalReply, DENIED_HEADER};
use crate::root::State;

/// One request.
pub struct Http {
    state: Option<Rc<State>>,
}

impl Http {
    /// A context sharing the configuration's state (`None`: no policy ever loaded).
    pub fn new(state: Option<Rc<State>>) -> Http {
        Http { state }
    }
}

impl Context for Http {}

/// The `:authority` value and whether it was repeated. HTTP/1 `Host` arrives as `:authority`;
/// a separate `host` next to `:authority` (HTTP/2, RFC 9113 §8.3.1) that differs from it, or a
/// second `:authority`, is a repeat: Envoy would show us only the first (`context.cc`).
pub fn find_authority(headers: &[(String, Vec<u8>)]) -> (Option<&[u8]>, bool) {
    let mut authority: Option<&[u8]> = None;
    let mut repeated = false;
    for (name, value) in headers {
        let is_authority = name == ":authority";
        if !(is_authority || name.eq_ignore_ascii_case("host")) {
            continue;
        }
        match authority {
            None => authority = Some(value),
            Some(first) => {
                if is_authority || first != value.as_slice() {
                    repeated = true;
                }
            }
        }
    }
    (authority, repeated)
}

fn send(reply: &LocalReply) {
    host::send_local_reply(
        reply.status,
        &[
            (DENIED_HEADER, reply.reason),
            ("content-type", "text/plain; charset=utf-8"),
        ],
        reply.body.as_bytes(),
    );
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.as_deref() else {
            // Fail closed: a VM without a valid policy never lets a request through.
            send(&reply::no_policy_reply());
            return Action::Pause;
        };
        let headers;
        let cluster_bytes;
        let address;
        let mut target = Target::default();
        if state.source.namespace().is_some() {
            headers = host::request_headers();
            #[cfg(feature = "fault-injection")]
            inject_fault(&headers);
            let (authority, repeated) = find_authority(&headers);
            target.authority = authority;
            target.authority_repeated = repeated;
            cluster_bytes = host::property(state.paths.cluster_name);
            // A non-UTF-8 cluster name cannot be Istio's: pass a name that fails closed.
            target.cluster = cluster_bytes
                .as_deref()
                .map(|b| std::str::from_utf8(b).unwrap_or("(invalid)"));
            // Only the input this kind of destination needs: the namespace of an outbound
            // cluster (cached per cluster), the original destination of a passthrough. The name
            // alone says which; the core parses (and validates) it once, when deciding.
            match target.cluster {
                Some(cluster) if cluster.starts_with(OUTBOUND_PREFIX) => {
                    // An IP authority (a client using the ClusterIP as its Host) is confirmed
                    // only by the address the app dialled: fetch it for those requests alone.
                    if target.authority.is_some_and(maybe_ip_authority) {
                        address = host::property(state.paths.destination_address);
                        target.destination_address =
                            address.as_deref().and_then(|v| std::str::from_utf8(v).ok());
                    }
                    return state.cluster_namespace(cluster, |ns| {
                        let target = Target {
                            destination_namespace: ns,
                            ..target
                        };
                        decide_and_act(state, &target)
                    });
                }
                Some(PASSTHROUGH_CLUSTER | DYNAMIC_DNS_CLUSTER) | None => {
                    address = host::property(state.paths.destination_address);
                    target.destination_address =
                        address.as_deref().and_then(|v| std::str::from_utf8(v).ok());
                }
                _ => {}
            }
        }
        decide_and_act(state, &target)
    }
}

/// Whether the authority may be an IP literal (it starts like one: a digit, or `[` for IPv6).
/// Only decides whether to fetch `destination.address`; the core parses and judges it.
fn maybe_ip_authority(authority: &[u8]) -> bool {
    authority
        .first()
        .is_some_and(|&c| c.is_ascii_digit() || c == b'[')
}

/// Test-only (feature `fault-injection`): crash the VM on request.
#[cfg(feature = "fault-injection")]
#[allow(clippy::panic)]
fn inject_fault(headers: &[(String, Vec<u8>)]) {
    if headers
        .iter()
        .any(|(k, _)| k == "x-tenant-egress-test-panic")
    {
        panic!("fault injection: x-tenant-egress-test-panic");
    }
}

/// Decides and acts: counts, logs, and for a blocked request sends the local reply.
fn decide_and_act(state: &State, target: &Target<'_>) -> Action {
    let policy = &state.policy;
    let d = policy.decide_for(&state.source, target);
    if d.allowed {
        state.counters.allowed();
        return Action::Continue;
    }
    if !d.enforced {
        state.counters.audit_denied(d.reason);
        log::info!(
            "{}",
            reply::log_line("audit-denied", policy, &d, &state.source, target.cluster)
        );
        return Action::Continue;
    }
    state.counters.denied(d.reason);
    log::info!(
        "{}",
        reply::log_line("denied", policy, &d, &state.source, target.cluster)
    );
    send(&reply::deny_reply(
        policy,
        &d,
        &state.source,
        target.cluster,
    ));
    Action::Pause
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn authority_and_repeats() {
        let one = h(&[(":method", b"GET"), (":authority", b"a.example")]);
        assert_eq!(find_authority(&one), (Some(&b"a.example"[..]), false));
        let same_host = h(&[(":authority", b"a.example"), ("host", b"a.example")]);
        assert!(!find_authority(&same_host).1);
        let other_host = h(&[(":authority", b"a.example"), ("host", b"b.example")]);
        assert!(find_authority(&other_host).1);
        let two = h(&[(":authority", b"a.example"), (":authority", b"a.example")]);
        assert!(find_authority(&two).1);
        let two_hosts = h(&[("Host", b"a.example"), ("host", b"b.example")]);
        assert_eq!(find_authority(&two_hosts), (Some(&b"a.example"[..]), true));
        assert_eq!(find_authority(&h(&[])), (None, false));
    }
}
