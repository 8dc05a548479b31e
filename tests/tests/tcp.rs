//! The network filter (Istio WasmPlugin `type: NETWORK`) in a real Envoy: the same .wasm,
//! root id `tenant-egress-tcp`, before `tcp_proxy` on listeners shaped like Istio's outbound
//! TCP filter chains (one per service VIP, `outbound|26257||cockroachdb.<ns>.svc.cluster.local`
//! clusters with `istio.services` metadata), a TLS listener that routes on SNI, and an unknown
//! destination that goes to `BlackHoleCluster` (REGISTRY_ONLY). Upstreams echo.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use tenant_egress_tests::*;

const WAIT: Duration = Duration::from_secs(5);
const NAMESPACES: [&str; 3] = ["prod", "uat", "dev"];

fn policy() -> String {
    let tenant = |n: &str| json!({"name": n, "namespaces": [n], "egress": [{"hosts": ["./*"]}]});
    json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [tenant("prod"), tenant("uat"), tenant("dev")]
    })
    .to_string()
}

struct Ports {
    /// Sidecar listener per database ("VIP" listeners).
    vip: Vec<u16>,
    /// The TLS listener (routes on SNI).
    tls: u16,
    /// A listener whose chain goes to BlackHoleCluster.
    unknown: u16,
    /// Echo upstream per database.
    echo: Vec<u16>,
}

fn fqdn(ns: &str) -> String {
    format!("cockroachdb.{ns}.svc.cluster.local")
}

fn cluster(ns: &str) -> String {
    format!("outbound|26257||{}", fqdn(ns))
}

fn addr(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

/// The caller's identity at the destinations when the scenario runs through both ends.
const CALLER: (&str, &str) = ("prod", "default");

fn bootstrap(namespace: Option<&str>, policy: &str, p: &Ports, mesh: Option<&TcpMesh>) -> String {
    let wasm = network_wasm_filter("tenant-egress-tcp", policy);
    let mut listeners = Vec::new();
    for (i, ns) in NAMESPACES.iter().enumerate() {
        // Istio's outbound TCP chain for one service VIP: [wasm (NETWORK, AUTHZ), tcp_proxy].
        listeners.push(json!({
            "name": format!("10.96.0.{i}_26257"),
            "address": addr(p.vip[i]),
            "enable_reuse_port": false,
            "traffic_direction": "OUTBOUND",
            "filter_chains": [{"filters": [wasm, tcp_proxy_filter(&cluster(ns))]}]
        }));
        listeners.push(json!({
            "name": format!("echo_{ns}"),
            "address": addr(p.echo[i]),
            "enable_reuse_port": false,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.echo",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"}
            }]}]
        }));
    }
    // TLS passthrough routed on SNI, as Istio does for TLS/HTTPS ports.
    let mut chains: Vec<Value> = NAMESPACES
        .iter()
        .map(|ns| {
            json!({
                "filter_chain_match": {"server_names": [fqdn(ns)]},
                "filters": [wasm, tcp_proxy_filter(&cluster(ns))]
            })
        })
        .collect();
    chains.push(json!({"filters": [wasm, tcp_proxy_filter("BlackHoleCluster")]}));
    listeners.push(json!({
        "name": "0.0.0.0_26257_tls",
        "address": addr(p.tls),
        "enable_reuse_port": false,
        "traffic_direction": "OUTBOUND",
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
        }],
        "filter_chains": chains
    }));
    // The catch-all for an unknown destination under REGISTRY_ONLY.
    listeners.push(json!({
        "name": "virtualOutbound-blackhole",
        "address": addr(p.unknown),
        "enable_reuse_port": false,
        "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filters": [wasm, tcp_proxy_filter("BlackHoleCluster")]}]
    }));
    let mut clusters: Vec<Value> = NAMESPACES
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            if let Some(m) = mesh {
                // Through both ends: Istio mTLS to the database's destination sidecar.
                return m.cluster(&cluster(ns), CALLER, "cockroachdb", ns, 26257);
            }
            json!({
                "name": cluster(ns),
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": cluster(ns), "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr(p.echo[i])}}]}]},
                "metadata": {"filter_metadata": {"istio": {"services": [{"host": fqdn(ns), "name": "cockroachdb", "namespace": ns}]}}}
            })
        })
        .collect();
    clusters.push(json!({"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"}));
    let mut metadata = json!({"LABELS": {"app": "client"}});
    if let Some(ns) = namespace {
        metadata["NAMESPACE"] = json!(ns);
    }
    json!({
        "node": {"id": "sidecar~127.0.0.1~client.prod~prod.svc.cluster.local", "cluster": "client.prod", "metadata": metadata},
        "admin": {"address": addr(0)},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    })
    .to_string()
}

/// The caller sidecar; inside [`through_both_ends`] also a destination sidecar per database
/// (`TcpMesh`), whose connections the scenario's end checks with [`TcpMesh::check`].
fn start(namespace: Option<&str>) -> (Envoy, Ports, Option<TcpMesh>) {
    // The destinations first: their listeners hold their ports before the caller's are picked.
    let mut mesh = (tenant_egress_tests::ends::default_ends() == Ends::Both).then(|| {
        let services = NAMESPACES.map(|ns| ("cockroachdb", ns, 26257));
        TcpMesh::start(&policy(), &services, &[CALLER])
    });
    let ports = free_ports(8);
    let p = Ports {
        vip: ports[0..3].to_vec(),
        echo: ports[3..6].to_vec(),
        tls: ports[6],
        unknown: ports[7],
    };
    let envoy = Envoy::start(&bootstrap(namespace, &policy(), &p, mesh.as_ref()));
    if let (Some(m), Some(_)) = (&mut mesh, namespace) {
        // A VIP chain names one database: a connection the caller's end closes is tried
        // again without its filter. (The TLS chain routes on SNI to any of them: not probed.)
        for (i, ns) in NAMESPACES.iter().enumerate() {
            m.probe(p.vip[i], CALLER, "cockroachdb", ns, 26257);
        }
    }
    (envoy, p, mesh)
}

/// A minimal TLS 1.2 ClientHello carrying `sni` (RFC 8446 §4.1.2, RFC 6066 §3): enough for
/// Envoy's tls_inspector to read the server name.
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes()); // server_name_list
    sni_ext.push(0); // host_name
    sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni_ext.extend_from_slice(name);
    let mut exts = Vec::new();
    exts.extend_from_slice(&[0, 0]); // server_name
    exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni_ext);
    let mut body = vec![3, 3]; // TLS 1.2
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0xc0, 0x2f]); // one cipher suite
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

fn upstream_tx_bytes(envoy: &Envoy, ns: &str) -> u64 {
    envoy
        .counter(&format!(
            "cluster.{}.upstream_cx_tx_bytes_total",
            cluster(ns)
        ))
        .unwrap_or(0)
}

#[test]
fn tcp_connections_to_own_database_pass_and_others_are_closed() {
    let (envoy, p, mesh) = start(Some("prod"));
    assert!(envoy.wait_for_log("loaded policy (root id \"tenant-egress-tcp\")", WAIT));
    let payload = b"SELECT 1; -- from prod\n";
    assert_eq!(
        tcp_exchange(p.vip[0], payload),
        payload,
        "prod -> prod's database"
    );
    assert!(upstream_tx_bytes(&envoy, "prod") >= payload.len() as u64);
    for (i, ns) in NAMESPACES.iter().enumerate().skip(1) {
        let got = tcp_exchange(p.vip[i], payload);
        assert!(got.is_empty(), "prod -> {ns}: bytes came back: {got:?}");
        assert_eq!(
            upstream_tx_bytes(&envoy, ns),
            0,
            "bytes reached {ns}'s database"
        );
    }
    // Unknown destination (REGISTRY_ONLY's BlackHoleCluster): tcp_proxy finds no upstream and
    // Envoy closes the connection itself, before any data callback reaches the filter.
    assert!(tcp_exchange(p.unknown, payload).is_empty());
    assert!(envoy
        .wait_for_counter("cluster.BlackHoleCluster.upstream_cx_none_healthy", 1, WAIT)
        .is_some_and(|n| n >= 1));
    assert!(envoy.wait_for_counter("tenant_egress.connections.allowed", 1, WAIT) == Some(1));
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.connections.denied.not_allowed", 2, WAIT),
        Some(2)
    );
    assert!(envoy.wait_for_log(
        "denied connection source=prod tenant=prod destination=cockroachdb.uat.svc.cluster.local:26257",
        WAIT
    ));
    // Which inputs exist at which callback (the filter logs them at debug level).
    let vip = format!("127.0.0.1:{}", p.vip[1]);
    assert!(envoy.wait_for_log(
        &format!("availability at on_new_connection: xds.cluster_name=unset connection.requested_server_name=unset destination.address={vip}"),
        WAIT
    ));
    assert!(envoy.wait_for_log(
        &format!("availability at first on_downstream_data: xds.cluster_name={} connection.requested_server_name=unset destination.address={vip}", cluster("uat")),
        WAIT
    ));
    assert!(envoy.wait_for_log(
        "serving as the network filter (root id \"tenant-egress-tcp\")",
        WAIT
    ));
    // HTTP counters are untouched by connections.
    assert_eq!(envoy.counter("tenant_egress.allowed").unwrap_or(0), 0);
    if let Some(m) = mesh {
        m.check(&envoy);
        assert_eq!(
            m.destination("prod").wait_for_counter(
                "tenant_egress.inbound.connections.allowed",
                1,
                WAIT
            ),
            Some(1)
        );
    }
}

#[test]
fn tls_sni_allowed_and_denied() {
    let (envoy, p, mesh) = start(Some("prod"));
    let hello = client_hello(&fqdn("prod"));
    assert_eq!(
        tcp_exchange(p.tls, &hello),
        hello,
        "allowed SNI passes bytes both ways"
    );
    let hello = client_hello(&fqdn("uat"));
    assert!(tcp_exchange(p.tls, &hello).is_empty(), "denied SNI");
    if let Some(m) = &mesh {
        // The TLS chain routes on SNI, so its listener is not probed: the same bytes from a
        // caller without a filter, straight to uat's database sidecar, are closed there.
        let got = m.bypass_exchange(CALLER, "cockroachdb", "uat", 26257, &hello);
        assert!(
            got.is_empty(),
            "uat's destination passed prod's TLS: {got:?}"
        );
    }
    assert!(envoy.wait_for_log(
        &format!("availability at on_new_connection: xds.cluster_name=unset connection.requested_server_name={} destination.address=127.0.0.1:{}", fqdn("uat"), p.tls),
        WAIT
    ));
    assert_eq!(upstream_tx_bytes(&envoy, "uat"), 0);
    // A denied SNI is refused on the new connection, before tcp_proxy picks an upstream.
    assert_eq!(
        envoy
            .counter(&format!("cluster.{}.upstream_cx_total", cluster("uat")))
            .unwrap_or(0),
        0,
        "tcp_proxy connected to uat for a denied SNI"
    );
    // An SNI naming no known service goes to the blackhole chain and is denied.
    let hello = client_hello("db.evil.example");
    assert!(tcp_exchange(p.tls, &hello).is_empty());
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.connections.denied", 2, WAIT),
        Some(2)
    );
    assert_eq!(envoy.counter("tenant_egress.connections.allowed"), Some(1));
    if let Some(m) = mesh {
        m.check(&envoy);
    }
}

#[test]
fn tcp_without_namespace_metadata_denies() {
    let (envoy, p, mesh) = start(None);
    assert!(tcp_exchange(p.vip[0], b"hello\n").is_empty());
    assert_eq!(upstream_tx_bytes(&envoy, "prod"), 0);
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.connections.denied.unknown_source", 1, WAIT),
        Some(1)
    );
    if let Some(m) = mesh {
        m.check(&envoy);
    }
}

// The same connections with each database behind its destination sidecar, on the caller's
// mTLS identity (`tenant_egress_tests::ends::TcpMesh`).
tenant_egress_tests::both_ends_tests!(
    tcp_connections_to_own_database_pass_and_others_are_closed,
    tls_sni_allowed_and_denied,
    tcp_without_namespace_metadata_denies,
);
