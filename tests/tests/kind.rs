//! The filter kind comes from Envoy, not from the root id. The same .wasm configured with the
//! "wrong" root id (a network filter named like the HTTP plugin, `tenant-egress`, as a
//! hand-written EnvoyFilter might; an HTTP filter named `tenant-egress-tcp`) still enforces:
//! the first context tells the root context which kind it serves (`filter/src/host.rs:
//! context_kind`). Before, the first connection aborted the VM inside the proxy-wasm SDK's
//! dispatcher, and every later connection on that listener failed.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use tenant_egress_tests::*;

const WAIT: Duration = Duration::from_secs(5);
const PROD: &str = "cockroachdb.prod.svc.cluster.local:26257";
const UAT: &str = "cockroachdb.uat.svc.cluster.local:26257";

fn policy() -> String {
    let tenant = |n: &str| json!({"name": n, "namespaces": [n], "egress": [{"hosts": ["./*"]}]});
    json!({"apiVersion": "tenant-egress/v1", "tenants": [tenant("prod"), tenant("uat")]})
        .to_string()
}

fn cluster(ns: &str) -> String {
    format!("outbound|26257||cockroachdb.{ns}.svc.cluster.local")
}

fn addr(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// A sidecar in `prod` with one outbound TCP listener per database, each `[wasm (network
/// filter, root id `root_id`), tcp_proxy]`, and an echo server behind each.
/// The caller's identity at the destinations when the scenario runs through both ends.
const CALLER: (&str, &str) = ("prod", "default");

fn network_bootstrap(
    root_id: &str,
    vip: [u16; 2],
    echo: [u16; 2],
    mesh: Option<&TcpMesh>,
) -> String {
    let wasm = network_wasm_filter(root_id, &policy());
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for (i, ns) in ["prod", "uat"].into_iter().enumerate() {
        listeners.push(json!({
            "name": format!("10.96.0.{i}_26257"),
            "address": addr(vip[i]),
            "enable_reuse_port": false,
            "traffic_direction": "OUTBOUND",
            "filter_chains": [{"filters": [wasm, tcp_proxy_filter(&cluster(ns))]}]
        }));
        listeners.push(json!({
            "name": format!("echo_{ns}"),
            "address": addr(echo[i]),
            "enable_reuse_port": false,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.echo",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"}
            }]}]
        }));
        if let Some(m) = mesh {
            // Through both ends: Istio mTLS to the database's destination sidecar.
            clusters.push(m.cluster(&cluster(ns), CALLER, "cockroachdb", ns, 26257));
            continue;
        }
        clusters.push(json!({
            "name": cluster(ns),
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": cluster(ns), "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr(echo[i])}}]}]},
            "metadata": {"filter_metadata": {"istio": {"services": [{"host": format!("cockroachdb.{ns}.svc.cluster.local"), "name": "cockroachdb", "namespace": ns}]}}}
        }));
    }
    json!({
        "node": {"id": "sidecar~127.0.0.1~client.prod~prod.svc.cluster.local", "cluster": "client.prod",
                 "metadata": {"NAMESPACE": "prod", "LABELS": {"app": "client"}}},
        "admin": {"address": addr(0)},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    })
    .to_string()
}

fn assert_no_crash(envoy: &Envoy) {
    let log = envoy.log();
    assert!(
        !log.contains("tenant-egress: panic") && !log.contains("Uncaught"),
        "the VM crashed:\n{log}"
    );
}

/// A network filter whose root id is the HTTP plugin's name: connections are decided, and
/// the VM survives them.
#[test]
fn network_filter_with_an_http_root_id_enforces() {
    // Inside `through_both_ends`: each database behind its destination sidecar, and what the
    // caller's end closes tried again without its filter. (Started first: their listeners
    // hold their ports before the caller's are picked.)
    let mut mesh = (tenant_egress_tests::ends::default_ends() == Ends::Both).then(|| {
        TcpMesh::start(
            &policy(),
            &[
                ("cockroachdb", "prod", 26257),
                ("cockroachdb", "uat", 26257),
            ],
            &[CALLER],
        )
    });
    let ports = free_ports(4);
    let (vip, echo) = ([ports[0], ports[1]], [ports[2], ports[3]]);
    let envoy = Envoy::start(&network_bootstrap(
        "tenant-egress",
        vip,
        echo,
        mesh.as_ref(),
    ));
    if let Some(m) = &mut mesh {
        for (i, ns) in ["prod", "uat"].into_iter().enumerate() {
            m.probe(vip[i], CALLER, "cockroachdb", ns, 26257);
        }
    }
    let payload = b"SELECT 1; -- from prod\n";
    for round in 0..2 {
        assert_eq!(
            tcp_exchange(vip[0], payload),
            payload,
            "round {round}: prod -> prod's database"
        );
        assert!(
            tcp_exchange(vip[1], payload).is_empty(),
            "round {round}: prod -> uat's database"
        );
    }
    assert!(envoy.wait_for_log(
        "serving as the network filter (root id \"tenant-egress\")",
        WAIT
    ));
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.connections.allowed", 2, WAIT),
        Some(2)
    );
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.connections.denied.not_allowed", 2, WAIT),
        Some(2)
    );
    assert!(envoy.wait_for_log(
        "denied connection source=prod tenant=prod destination=cockroachdb.uat.svc.cluster.local:26257",
        WAIT
    ));
    assert_eq!(
        envoy
            .counter(&format!(
                "cluster.{}.upstream_cx_tx_bytes_total",
                cluster("uat")
            ))
            .unwrap_or(0),
        0,
        "bytes reached uat's database"
    );
    // The HTTP counters were never defined for this filter.
    assert_eq!(envoy.counter("tenant_egress.allowed"), None);
    assert_no_crash(&envoy);
    if let Some(m) = mesh {
        m.check(&envoy);
    }
}

/// An HTTP filter whose root id ends in `-tcp` (the NETWORK plugin's name): requests are
/// decided. The first request is HTTP/2, so the kind is learnt from an HTTP/2 stream; the
/// next ones are HTTP/1.1.
#[test]
fn http_filter_with_a_network_root_id_enforces() {
    let mut filter = wasm_typed_config(&wasm_path(), &policy(), "FAIL_CLOSED");
    filter["config"]["root_id"] = json!("tenant-egress-tcp");
    let envoy = EnvoyConfig::new("prod")
        .service("cockroachdb", "prod", &[26257])
        .service("cockroachdb", "uat", &[26257])
        .typed_filter(filter)
        .start();
    let port = envoy.listener_port(26257);
    let r = h2_get(port, PROD, &[]);
    assert_eq!(r.status, 200, "h2 prod -> prod: {r:?}");
    assert!(envoy.wait_for_log(
        "serving as the HTTP filter (root id \"tenant-egress-tcp\")",
        WAIT
    ));
    assert_denied(&h2_get(port, UAT, &[]), "not-allowed", "h2 prod -> uat");
    assert_eq!(get(port, PROD, "/").status, 200, "HTTP/1.1 prod -> prod");
    assert_denied(&get(port, UAT, "/"), "not-allowed", "HTTP/1.1 prod -> uat");
    assert_eq!(envoy.upstream_hits("cockroachdb", "uat", 26257), 0);
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.allowed", 2, WAIT),
        Some(2)
    );
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.denied.not_allowed", 2, WAIT),
        Some(2)
    );
    assert_eq!(envoy.counter("tenant_egress.connections.allowed"), None);
    assert_no_crash(&envoy);
}

/// A sidecar with both filters: the network bootstrap plus an outbound HTTP listener whose
/// wasm HTTP filter is configured like the network one (same name, VM and configuration)
/// except for `http_root_id`. Requests for uat's database route to its cluster.
fn both_kinds_bootstrap(http_root_id: &str, ports: &[u16]) -> String {
    let (vip, echo) = ([ports[0], ports[1]], [ports[2], ports[3]]);
    let mut boot: Value =
        serde_json::from_str(&network_bootstrap("tenant-egress", vip, echo, None)).unwrap();
    let mut wasm =
        boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0].clone();
    wasm["typed_config"]["@type"] = json!(WASM_TYPE_URL);
    wasm["typed_config"]["config"]["root_id"] = json!(http_root_id);
    let hcm = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "outbound_http",
            "route_config": {"name": "26257", "virtual_hosts": [{
                "name": "cockroachdb.uat.svc.cluster.local:26257",
                "domains": ["cockroachdb.uat.svc.cluster.local"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster("uat")}}]
            }]},
            "http_filters": [wasm, {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
        }
    });
    boot["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "0.0.0.0_26257_http",
            "address": addr(ports[4]),
            "enable_reuse_port": false,
            "traffic_direction": "OUTBOUND",
            "filter_chains": [{"filters": [hcm]}]
        }));
    boot.to_string()
}

/// The one case the kind cannot be learnt: Envoy gives an HTTP and a network filter with the
/// same root id and configuration in one VM a single root context, which serves the kind of
/// its first context. The other kind's first callback then aborts the VM in the SDK's
/// dispatcher (FAIL_CLOSED: a 503), and the log says what to change. With different root ids
/// both enforce.
#[test]
fn http_and_network_filters_sharing_a_root_context_are_told_to_differ() {
    let payload = b"SELECT 1;\n";
    let ports = free_ports(5);
    let envoy = Envoy::start(&both_kinds_bootstrap("tenant-egress", &ports));
    assert_eq!(
        tcp_exchange(ports[0], payload),
        payload,
        "the first kind works"
    );
    let r = get(ports[4], UAT, "/");
    assert_eq!(r.status, 503, "the other kind fails closed: {r:?}");
    assert!(envoy.wait_for_log(
        "invalid context_id (one root context serves one filter kind: an HTTP and a network filter with the same vm_id, root_id and configuration share one; give them different root ids)",
        WAIT
    ));
    drop(envoy);

    let ports = free_ports(5);
    let envoy = Envoy::start(&both_kinds_bootstrap("tenant-egress-http", &ports));
    assert_eq!(tcp_exchange(ports[0], payload), payload);
    assert!(tcp_exchange(ports[1], payload).is_empty());
    assert_denied(&get(ports[4], UAT, "/"), "not-allowed", "HTTP prod -> uat");
    assert!(envoy.wait_for_log(
        "serving as the network filter (root id \"tenant-egress\")",
        WAIT
    ));
    assert!(envoy.wait_for_log(
        "serving as the HTTP filter (root id \"tenant-egress-http\")",
        WAIT
    ));
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.connections.denied.not_allowed", 1, WAIT),
        Some(1)
    );
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.denied.not_allowed", 1, WAIT),
        Some(1)
    );
    assert_no_crash(&envoy);
}

// The same decisions with each database behind its destination sidecar (which runs the
// filter as `generate` names it). The third scenario is about two filters of one proxy
// sharing a root context, a fault of the caller's own configuration: nothing to compare.
tenant_egress_tests::both_ends_tests!(
    network_filter_with_an_http_root_id_enforces,
    http_filter_with_a_network_root_id_enforces,
);
