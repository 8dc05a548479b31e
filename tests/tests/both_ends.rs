//! Both ends, in a real Envoy with real mTLS: the filter at the DESTINATION (prod's sidecar),
//! deciding on the caller's verified SPIFFE identity, against callers that have no filter of
//! their own (the bypass: `sidecar.istio.io/inject: "false"`, `excludeOutboundPorts`, ...).
//!
//! One Envoy plays both sides. The callers: plain listeners whose `tcp_proxy` dials prod's
//! inbound listener over mTLS with a workload certificate and Istio's SNI
//! (`outbound_.<port>_._.<fqdn>`), with NO tenant-egress filter, as a bypassing pod would. The
//! destination: Istio-shaped inbound listeners (`traffic_direction: INBOUND`, `tls_inspector`, a
//! DownstreamTlsContext that requires and verifies a client certificate, the filter, then
//! `tcp_proxy` or the router to `inbound|<port>||` clusters carrying `istio.services`), in front of
//! the "applications": an echo server (the database, 26257) and an HTTP app (the api, 8080).
//! Whether a byte reached an application is read from the inbound clusters' upstream stats.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use tenant_egress_tests::mtls::{downstream_tls, istio_sni, upstream_tls, Pki, Workload};
use tenant_egress_tests::*;

const WAIT: Duration = Duration::from_secs(5);
const DB: &str = "cockroachdb.prod.svc.cluster.local";
const API: &str = "api.prod.svc.cluster.local";
const DB_CLUSTER: &str = "inbound|26257||";
const API_CLUSTER: &str = "inbound|8080||";

/// The policy of config/core/testdata/inbound-vectors.json's "both-ends", plus a dev exception
/// by service account that opens prod's database to dev's `batman` pods.
fn policy() -> String {
    json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            {"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}]},
            {"name": "uat", "namespaces": ["uat"], "egress": [{"hosts": ["./*"]}]},
            {"name": "dev", "namespaces": ["dev"],
             "egress": [{"port": {"number": 8080, "protocol": "HTTP"}, "hosts": ["./*", "prod/api.prod.svc.cluster.local"]},
                        {"hosts": ["./*"]}],
             "workloads": [{"name": "batman", "selector": {"app": "batman"}, "serviceAccounts": ["batman"],
                            "egress": [{"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["prod/cockroachdb.prod.svc.cluster.local"]}]}]},
            {"name": "staging", "namespaces": ["staging"], "mode": "audit", "egress": [{"hosts": ["./*"]}]}
        ]
    })
    .to_string()
}

fn addr(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr(port)}}]}]}
    })
}

/// A caller with no filter: plain TCP in, mTLS out to `target` with `who`'s certificate.
struct Caller {
    name: &'static str,
    who: Workload,
    /// The CA the caller trusts for the server's certificate.
    ca: std::path::PathBuf,
    sni: String,
    /// Which inbound listener it dials: the database's (26257) or the api's (8080).
    to_api: bool,
}

struct Ports {
    db_inbound: u16,
    api_inbound: u16,
    db_app: u16,
    api_app: u16,
    callers: Vec<u16>,
}

fn bootstrap(pki: &Pki, prod: &Workload, callers: &[Caller], p: &Ports) -> String {
    let policy = policy();
    let tls_inspector = json!({
        "name": "envoy.filters.listener.tls_inspector",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
    });
    let server_tls = downstream_tls(prod, &pki.ca_cert);
    let mut listeners = vec![
        // prod's database port, as Istio's virtualInbound chain for 26257.
        json!({
            "name": "virtualInbound-26257", "address": addr(p.db_inbound), "enable_reuse_port": false,
            "traffic_direction": "INBOUND",
            "listener_filters": [tls_inspector],
            "filter_chains": [{
                "transport_socket": server_tls,
                "filters": [network_wasm_filter("tenant-egress-inbound-tcp", &policy), tcp_proxy_filter(DB_CLUSTER)]
            }]
        }),
        // prod's api port: HTTP, the filter in the inbound HTTP chain.
        json!({
            "name": "virtualInbound-8080", "address": addr(p.api_inbound), "enable_reuse_port": false,
            "traffic_direction": "INBOUND",
            "listener_filters": [tls_inspector],
            "filter_chains": [{
                "transport_socket": server_tls,
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound_0.0.0.0_8080",
                        "route_config": {"name": "inbound|8080||", "virtual_hosts": [{"name": "inbound|http|8080", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": API_CLUSTER}}]}]},
                        "http_filters": [
                            {"name": "tenant-egress-inbound", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                "config": {
                                    "name": "tenant-egress-inbound", "root_id": "tenant-egress-inbound",
                                    "failure_policy": "FAIL_CLOSED",
                                    "vm_config": {"vm_id": "tenant-egress", "runtime": "envoy.wasm.runtime.v8",
                                                  "code": {"local": {"filename": wasm_path().to_string_lossy()}}},
                                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": policy}
                                }}},
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]
                    }
                }]
            }]
        }),
        // The applications.
        json!({
            "name": "app-db", "address": addr(p.db_app), "enable_reuse_port": false,
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.echo",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"}}]}]
        }),
        json!({
            "name": "app-api", "address": addr(p.api_app), "enable_reuse_port": false,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "app_api",
                    "route_config": {"virtual_hosts": [{"name": "app", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "app=api\n"}}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                }
            }]}]
        }),
    ];
    let service = |host: &str, name: &str| json!({"filter_metadata": {"istio": {"services": [{"host": host, "name": name, "namespace": "prod"}]}}});
    let mut db = static_cluster(DB_CLUSTER, p.db_app);
    db["metadata"] = service(DB, "cockroachdb");
    let mut api = static_cluster(API_CLUSTER, p.api_app);
    api["metadata"] = service(API, "api");
    let mut clusters = vec![db, api];
    for (c, port) in callers.iter().zip(&p.callers) {
        let cluster = format!("caller-{}", c.name);
        listeners.push(json!({
            "name": format!("caller-{}", c.name), "address": addr(*port), "enable_reuse_port": false,
            "traffic_direction": "OUTBOUND",
            "filter_chains": [{"filters": [tcp_proxy_filter(&cluster)]}]
        }));
        let mut cl = static_cluster(
            &cluster,
            if c.to_api {
                p.api_inbound
            } else {
                p.db_inbound
            },
        );
        cl["transport_socket"] = upstream_tls(&c.who, &c.ca, &c.sni);
        clusters.push(cl);
    }
    json!({
        "node": {"id": "sidecar~127.0.0.1~db-0.prod~prod.svc.cluster.local", "cluster": "cockroachdb.prod",
                 "metadata": {"NAMESPACE": "prod", "SERVICE_ACCOUNT": "cockroachdb", "LABELS": {"app": "cockroachdb"}}},
        "admin": {"address": addr(0)},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    })
    .to_string()
}

/// Bytes the application behind an inbound cluster received.
fn app_rx(envoy: &Envoy, cluster: &str) -> u64 {
    envoy
        .counter(&format!("cluster.{cluster}.upstream_cx_tx_bytes_total"))
        .unwrap_or(0)
}

fn http_get(port: u16, authority: &str) -> Option<Response> {
    let req = format!("GET / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    try_raw_http1(port, req.as_bytes()).ok()
}

#[test]
fn the_destination_refuses_a_bypassing_caller_on_its_identity() {
    let pki = Pki::new("cluster.local");
    let foreign = Pki::new("cluster.local");
    let prod = pki.workload("prod", "cockroachdb");
    let db_sni = istio_sni(26257, "", DB);
    let api_sni = istio_sni(8080, "", API);
    let ca = pki.ca_cert.clone();
    let caller = |name, who, sni: &str, to_api| Caller {
        name,
        who,
        ca: ca.clone(),
        sni: sni.to_owned(),
        to_api,
    };
    let callers = vec![
        caller("uat", pki.workload("uat", "default"), &db_sni, false),
        caller("prod", pki.workload("prod", "default"), &db_sni, false),
        caller("dev-api", pki.workload("dev", "default"), &api_sni, true),
        caller("dev-db", pki.workload("dev", "default"), &db_sni, false),
        caller(
            "dev-api-sni-on-db",
            pki.workload("dev", "default"),
            &api_sni,
            false,
        ),
        caller("batman", pki.workload("dev", "batman"), &db_sni, false),
        caller(
            "staging",
            pki.workload("staging", "default"),
            &db_sni,
            false,
        ),
        caller(
            "evil-domain",
            pki.workload_id("spiffe://evil.example/ns/prod/sa/default", "evil-prod"),
            &db_sni,
            false,
        ),
        caller(
            "foreign-ca",
            foreign.workload("prod", "default"),
            &db_sni,
            false,
        ),
    ];
    let ports = free_ports(4 + callers.len());
    let p = Ports {
        db_inbound: ports[0],
        api_inbound: ports[1],
        db_app: ports[2],
        api_app: ports[3],
        callers: ports[4..].to_vec(),
    };
    let port_of = |name: &str| p.callers[callers.iter().position(|c| c.name == name).unwrap()];
    let envoy = Envoy::start(&bootstrap(&pki, &prod, &callers, &p));
    assert!(envoy.wait_for_log(
        "loaded policy (root id \"tenant-egress-inbound-tcp\")",
        WAIT
    ));
    let payload = b"SELECT * FROM accounts;\n";

    // uat -> prod's database: denied at the destination, not one byte reaches the database.
    assert!(
        tcp_exchange(port_of("uat"), payload).is_empty(),
        "uat got bytes back"
    );
    assert!(envoy.wait_for_log(
        "denied connection at destination caller=spiffe://cluster.local/ns/uat/sa/default tenant=uat destination=cockroachdb.prod.svc.cluster.local:26257",
        WAIT
    ));
    assert!(envoy.wait_for_log(
        "at the destination's end (an inbound listener, root id \"tenant-egress-inbound-tcp\")",
        WAIT
    ));
    assert_eq!(
        app_rx(&envoy, DB_CLUSTER),
        0,
        "uat's bytes reached the database"
    );
    assert_eq!(
        envoy.wait_for_counter(
            "tenant_egress.inbound.connections.denied.not_allowed",
            1,
            WAIT
        ),
        Some(1)
    );

    // prod -> prod's database: allowed, the echo comes back.
    assert_eq!(tcp_exchange(port_of("prod"), payload), payload);
    let after_prod = app_rx(&envoy, DB_CLUSTER);
    assert!(after_prod >= payload.len() as u64);
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.inbound.connections.allowed", 1, WAIT),
        Some(1)
    );

    // dev -> prod's api over HTTP, which dev's egress imports on 8080: allowed.
    let r = http_get(port_of("dev-api"), "api.prod:8080").expect("dev -> api");
    assert_eq!((r.status, r.body.as_str()), (200, "app=api\n"), "{r:?}");
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.inbound.allowed", 1, WAIT),
        Some(1)
    );
    // The same caller with a spoofed :authority naming the database: 403 with the reason.
    let r = http_get(port_of("dev-api"), "cockroachdb.prod:26257").expect("spoofed");
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        r.header("x-tenant-egress-denied"),
        Some("authority-mismatch")
    );
    assert!(r.body.starts_with(DENIAL_MARKER), "{}", r.body);
    assert!(
        r.body
            .contains("caller: spiffe://cluster.local/ns/dev/sa/default (tenant dev)"),
        "{}",
        r.body
    );
    assert!(r.body.contains("decided at the destination"), "{}", r.body);
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.inbound.denied.authority_mismatch", 1, WAIT),
        Some(1)
    );
    assert_eq!(
        envoy.counter("cluster.inbound|8080||.upstream_rq_total"),
        Some(1)
    );

    // dev's own default account may not reach the database; its batman account may, by the
    // exception that names its service account.
    assert!(tcp_exchange(port_of("dev-db"), payload).is_empty());
    // An SNI naming the api dev may reach, while landing on the database's port.
    assert!(tcp_exchange(port_of("dev-api-sni-on-db"), payload).is_empty());
    assert_eq!(
        app_rx(&envoy, DB_CLUSTER),
        after_prod,
        "dev's bytes reached the database"
    );
    assert_eq!(
        envoy.wait_for_counter(
            "tenant_egress.inbound.connections.denied.sni_mismatch",
            1,
            WAIT
        ),
        Some(1)
    );
    assert_eq!(
        tcp_exchange(port_of("batman"), payload),
        payload,
        "batman's exception"
    );
    assert!(envoy.wait_for_log("tenant=dev", WAIT));

    // A certificate from the mesh's CA for another trust domain: refused by the filter.
    let before = app_rx(&envoy, DB_CLUSTER);
    assert!(tcp_exchange(port_of("evil-domain"), payload).is_empty());
    assert_eq!(
        envoy.wait_for_counter(
            "tenant_egress.inbound.connections.denied.untrusted_peer",
            1,
            WAIT
        ),
        Some(1)
    );
    // A certificate from another CA, and plaintext: refused by the TLS handshake, before the
    // filter ever runs (the client certificate is required and verified).
    assert!(tcp_exchange(port_of("foreign-ca"), payload).is_empty());
    // (Envoy answers plaintext with a TLS alert record: anything but the echo.)
    let plain = tcp_exchange(p.db_inbound, payload);
    assert!(
        !plain.windows(6).any(|w| w == b"SELECT"),
        "plaintext was echoed: {plain:?}"
    );
    let ssl = |stat: &str| format!("listener.127.0.0.1_{}.ssl.{stat}", p.db_inbound);
    assert!(
        envoy
            .wait_for_counter(&ssl("fail_verify_error"), 1, WAIT)
            .is_some(),
        "the foreign CA's certificate failed verification"
    );
    assert!(
        envoy
            .wait_for_counter(&ssl("connection_error"), 2, WAIT)
            .is_some(),
        "both handshakes failed"
    );
    assert_eq!(
        app_rx(&envoy, DB_CLUSTER),
        before,
        "refused callers' bytes reached the database"
    );

    // staging is in audit mode: let through, counted and logged.
    assert_eq!(tcp_exchange(port_of("staging"), payload), payload);
    assert_eq!(
        envoy.wait_for_counter(
            "tenant_egress.inbound.connections.audit_denied.not_allowed",
            1,
            WAIT
        ),
        Some(1)
    );
    assert!(envoy.wait_for_log(
        "audit-denied connection at destination caller=spiffe://cluster.local/ns/staging/sa/default tenant=staging",
        WAIT
    ));
    // Totals: allowed prod + batman; denied uat, dev-db, sni-on-db, evil-domain.
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.inbound.connections.allowed", 2, WAIT),
        Some(2)
    );
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.inbound.connections.denied", 4, WAIT),
        Some(4)
    );
    // Nothing was counted as the caller's end.
    assert_eq!(
        envoy
            .counter("tenant_egress.connections.allowed")
            .unwrap_or(0),
        0
    );
}

/// A caller sidecar WITH the filter at its own (outbound) end: dev's pod, labelled
/// `app: batman`, running as `sa`, whose 26257 listener goes over mTLS to prod's database.
fn caller_sidecar(pki: &Pki, sa: &str, listener: u16, destination: u16) -> String {
    let who = pki.workload("dev", sa);
    let cluster = format!("outbound|26257||{DB}");
    let mut cl = static_cluster(&cluster, destination);
    cl["metadata"] = json!({"filter_metadata": {"istio": {"services": [{"host": DB, "name": "cockroachdb", "namespace": "prod"}]}}});
    cl["transport_socket"] = upstream_tls(&who, &pki.ca_cert, &istio_sni(26257, "", DB));
    json!({
        "node": {"id": format!("sidecar~127.0.0.2~{sa}-0.dev~dev.svc.cluster.local"), "cluster": "batman.dev",
                 "metadata": {"NAMESPACE": "dev", "SERVICE_ACCOUNT": sa, "LABELS": {"app": "batman"}}},
        "admin": {"address": addr(0)},
        "static_resources": {
            "listeners": [{
                "name": "10.96.0.7_26257", "address": addr(listener), "enable_reuse_port": false,
                "traffic_direction": "OUTBOUND",
                "filter_chains": [{"filters": [network_wasm_filter("tenant-egress-tcp", &policy()), tcp_proxy_filter(&cluster)]}]
            }],
            "clusters": [cl]
        }
    })
    .to_string()
}

#[test]
fn an_exception_by_service_account_holds_at_both_ends() {
    let pki = Pki::new("cluster.local");
    let prod = pki.workload("prod", "cockroachdb");
    let ports = free_ports(6);
    let p = Ports {
        db_inbound: ports[0],
        api_inbound: ports[1],
        db_app: ports[2],
        api_app: ports[3],
        callers: Vec::new(),
    };
    let destination = Envoy::start(&bootstrap(&pki, &prod, &[], &p));
    let batman = Envoy::start(&caller_sidecar(&pki, "batman", ports[4], p.db_inbound));
    let other = Envoy::start(&caller_sidecar(&pki, "default", ports[5], p.db_inbound));
    let payload = b"SELECT 1;\n";
    // batman's pod: its labels AND its service account select the exception at its own end;
    // its certificate's service account selects it at prod's end.
    assert_eq!(tcp_exchange(ports[4], payload), payload);
    assert_eq!(
        batman.wait_for_counter("tenant_egress.connections.allowed", 1, WAIT),
        Some(1)
    );
    assert_eq!(
        destination.wait_for_counter("tenant_egress.inbound.connections.allowed", 1, WAIT),
        Some(1)
    );
    assert!(
        batman.wait_for_log("workload=batman", WAIT),
        "the caller's end applied the exception"
    );
    // The same labels under another service account: refused at the caller's own end, so
    // prod's end never sees it.
    assert!(tcp_exchange(ports[5], payload).is_empty());
    assert_eq!(
        other.wait_for_counter("tenant_egress.connections.denied.not_allowed", 1, WAIT),
        Some(1)
    );
    assert!(other.wait_for_log("workload=-", WAIT));
    // Only batman's bytes reached the database. (The refused connection's TLS close may still
    // reach prod's end, as an empty end of stream, which it refuses too.)
    assert!(destination
        .wait_for_counter(
            &format!("cluster.{DB_CLUSTER}.upstream_cx_tx_bytes_total"),
            1,
            WAIT
        )
        .is_some());
    assert_eq!(app_rx(&destination, DB_CLUSTER), payload.len() as u64);
}
