//! Istio gateways are not tenants' sidecars. A root-namespace `CLIENT` WasmPlugin without a
//! selector (what `generate` emits) also reaches gateway listeners, and a gateway's namespace
//! (istio-system) belongs to no tenant: with `unknownSource: deny` enforcing there would answer
//! every ingress request with a 403. The filter reads the node id once per configuration and,
//! in a gateway proxy (`router~...`), stands aside unless the policy says `gateways: enforce`.
//! A sidecar in the same namespace is still decided.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use tenant_egress_tests::*;

/// Istio's node id of an ingress gateway pod (`istio/pkg/model/proxy.go`, node type `router`).
const GATEWAY_ID: &str =
    "router~10.244.0.7~istio-ingressgateway-5d9f7-abcde.istio-system~istio-system.svc.cluster.local";

fn policy(gateways: Option<&str>) -> String {
    let mut doc = json!({
        "apiVersion": "tenant-egress/v1",
        "unknownSource": "deny",
        // The assertions read the explanation out of the body.
        "denyBody": "full",
        "tenants": [{"name": "team-01", "namespaces": ["team-01"],
                     "egress": [{"hosts": ["./*"]}]}]
    });
    match gateways {
        // A gateway the caller's end stands aside for is admitted at the destination by its
        // identity: without it, a destination sidecar refuses it (no tenant), and so does the
        // scenario run through both ends.
        None | Some("passthrough") => {
            doc["tenants"][0]["inbound"] =
                json!([{"namespace": "istio-system", "serviceAccounts": [GATEWAY_SA]}]);
        }
        Some(_) => {}
    }
    if let Some(g) = gateways {
        doc["gateways"] = json!(g);
    }
    doc.to_string()
}

/// The ingress gateway's service account (Istio's chart), its identity at the destination.
const GATEWAY_SA: &str = "istio-ingressgateway-service-account";

fn proxy(node_id: Option<&str>, policy: &str) -> Envoy {
    let mut cfg = EnvoyConfig::new("istio-system")
        .pod("istio-ingressgateway-5d9f7-abcde")
        .service("api", "team-01", &[8080])
        .wasm_filter(policy);
    if let Some(id) = node_id {
        cfg = cfg
            .node_id(id)
            .node_metadata("SERVICE_ACCOUNT", json!(GATEWAY_SA));
    }
    cfg.start()
}

#[test]
fn a_gateway_in_istio_system_passes_traffic_by_default() {
    let envoy = proxy(Some(GATEWAY_ID), &policy(None));
    for _ in 0..3 {
        let r = get(envoy.listener_port(8080), "api.team-01:8080", "/");
        assert_eq!(r.status, 200, "gateway traffic must pass: {r:?}");
        assert_eq!(r.body, "upstream=api.team-01:8080\n");
        assert_eq!(r.header("x-tenant-egress-denied"), None);
    }
    assert_eq!(envoy.upstream_hits("api", "team-01", 8080), 3);
    assert_counter(&envoy, "gateway_passthrough", 3);
    assert_counter(&envoy, "denied", 0);
    assert_counter(&envoy, "allowed", 0);
    assert!(envoy.wait_for_log(
        "gateway proxy (node id \"router~10.244.0.7~istio-ingressgateway",
        WAIT
    ));
    assert!(envoy.wait_for_log(
        "standing aside as the policy says (gateways: passthrough)",
        WAIT
    ));
}

#[test]
fn a_sidecar_in_istio_system_is_still_denied() {
    // The kit's default node id is a sidecar's (`sidecar~...`): same namespace, same policy.
    let envoy = proxy(None, &policy(None));
    let r = get(envoy.listener_port(8080), "api.team-01:8080", "/");
    assert_denied(&r, "no-tenant", "sidecar in istio-system");
    assert!(
        r.body.contains("gateway proxies"),
        "the body says gateways are not enforced: {}",
        r.body
    );
    assert_eq!(envoy.upstream_hits("api", "team-01", 8080), 0);
    assert_counter(&envoy, "denied.no_tenant", 1);
    assert_counter(&envoy, "gateway_passthrough", 0);
}

#[test]
fn gateways_enforce_decides_in_a_gateway_too() {
    let envoy = proxy(Some(GATEWAY_ID), &policy(Some("enforce")));
    let r = get(envoy.listener_port(8080), "api.team-01:8080", "/");
    assert_denied(&r, "no-tenant", "gateway under gateways: enforce");
    assert_eq!(envoy.upstream_hits("api", "team-01", 8080), 0);
    assert_counter(&envoy, "denied.no_tenant", 1);
    assert_counter(&envoy, "gateway_passthrough", 0);
    assert!(envoy.wait_for_log("enforcing as the policy says (gateways: enforce)", WAIT));
}

tenant_egress_tests::both_ends_tests!(
    a_gateway_in_istio_system_passes_traffic_by_default,
    a_sidecar_in_istio_system_is_still_denied,
    gateways_enforce_decides_in_a_gateway_too,
);
