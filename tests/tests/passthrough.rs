//! Issue 15 in a real Envoy: ALLOW_ANY and passthrough, where addresses matter.
//!
//! Each test runs in a private network namespace (the kit's [`in_private_netns`]) whose loopback carries
//! an external address (93.184.216.34, 140.82.112.5), a ClusterIP (10.96.3.4) and a pod IP
//! (10.244.1.7). The sidecar's outbound listeners bind `0.0.0.0:80`, `:81` and `:443` as
//! Istio's do, so a client connecting to `10.96.3.4:80` reaches the listener with
//! `destination.address` = `10.96.3.4:80`, and `PassthroughCluster` (ORIGINAL_DST) connects to
//! that same address. There is no iptables redirect to restore the original destination, so a
//! `set_filter_state` network filter hands ORIGINAL_DST the connection's local address as
//! `envoy.network.transport_socket.original_dst_address`, with the port moved to 9000, where
//! each address has an upstream that names itself (so a passthrough cannot loop into the
//! listener).
//!
//! Listener 80 matches virtual hosts as Istio configures it (`ignore_port_in_host_matching`:
//! the `Host` port is dropped before matching), listener 81 literally (the demo's and the test
//! kit's harness): an exclusion must hold on both. Listener 443 is a TLS chain (tls_inspector,
//! the network filter, `tcp_proxy` to `PassthroughCluster`).
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use tenant_egress_tests::istiod::{add_loopback_addresses, in_private_netns};
use tenant_egress_tests::*;

const EXTERNAL: &str = "93.184.216.34";
const GITHUB: &str = "140.82.112.5";
const CLUSTER_IP: &str = "10.96.3.4";
const POD_IP: &str = "10.244.1.7";
/// Inside the namespace: bring `lo` up with the test's addresses. `false` in the outer test
/// process, which has just run the test in the namespace and checked it passed there.
fn in_namespace_with_addresses() -> bool {
    if !in_private_netns() {
        return false;
    }
    let addrs: BTreeSet<Ipv4Addr> = [EXTERNAL, GITHUB, CLUSTER_IP, POD_IP]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    add_loopback_addresses(&addrs);
    true
}
/// Where every passthrough lands (the original destination's IP, this port).
const UPSTREAM_PORT: u16 = 9000;
/// The `*.example.com` ServiceEntry's and `api.dev`'s endpoints.
const EXAMPLE_PORT: u16 = 9101;
const API_DEV_PORT: u16 = 9102;

fn policy() -> String {
    json!({
        "apiVersion": "tenant-egress/v1",
        // The assertions read the rule that decided out of the body.
        "denyBody": "full",
        "clusterNetworks": ["10.96.0.0/12", "10.244.0.0/16"],
        "tenants": [
            {"name": "dev", "namespaces": ["dev"], "outboundTrafficPolicy": "ALLOW_ANY",
             "egress": [{"hosts": ["./*", "uat/*", "*/*.example.com", "~/secret.example.com"]}]},
            {"name": "ops", "namespaces": ["ops"], "outboundTrafficPolicy": "ALLOW_ANY",
             "egress": [{"hosts": ["*/*"]}]}
        ]
    })
    .to_string()
}

fn addr(ip: &str, port: u16) -> Value {
    json!({"socket_address": {"address": ip, "port_value": port}})
}

/// Stands in for Istio's iptables REDIRECT + `use_original_dst`: the original destination of a
/// connection is the address the client connected to, at [`UPSTREAM_PORT`].
fn original_dst() -> Value {
    json!({
        "name": "envoy.filters.network.set_filter_state",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config",
            "on_new_connection": [{
                "object_key": "envoy.network.transport_socket.original_dst_address",
                "format_string": {"text_format_source": {"inline_string": format!("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%:{UPSTREAM_PORT}")}}
            }]
        }
    })
}

fn router() -> Value {
    json!({"name": "envoy.filters.http.router",
           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// An upstream answering 200 with `x-upstream: <marker>` (HCM stat prefix `up_<name>`).
fn upstream(name: &str, ip: &str, port: u16, marker: &str) -> Value {
    json!({
        "name": format!("up_{name}"),
        "address": addr(ip, port),
        "enable_reuse_port": false,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": format!("up_{name}"),
                "codec_type": "AUTO",
                "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [{
                    "match": {"prefix": "/"},
                    "direct_response": {"status": 200, "body": {"inline_string": format!("upstream={marker}\n")}},
                    "response_headers_to_add": [{"header": {"key": "x-upstream", "value": marker}}]
                }]}]},
                "http_filters": [router()]
            }
        }]}]
    })
}

/// Istio's outbound HTTP listener for `port` (route table as Istio builds it for the policy's
/// dev sidecar: the `*.example.com` ServiceEntry, the `api.dev` service, `allow_any`).
fn http_listener(port: u16, ignore_port: bool, policy: &str) -> Value {
    let with_port = |d: &str| [d.to_owned(), format!("{d}:{port}")];
    let api: Vec<String> = ["api.dev.svc.cluster.local", "api.dev.svc", "api.dev", "api"]
        .iter()
        .flat_map(|d| with_port(d))
        .collect();
    json!({
        "name": format!("0.0.0.0_{port}"),
        "address": addr("0.0.0.0", port),
        "enable_reuse_port": false,
        "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filters": [original_dst(), {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": format!("outbound_0.0.0.0_{port}"),
                "codec_type": "AUTO",
                "route_config": {
                    "name": port.to_string(),
                    "validate_clusters": false,
                    "ignore_port_in_host_matching": ignore_port,
                    "virtual_hosts": [
                        {"name": "*.example.com:80", "domains": with_port("*.example.com"),
                         "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "outbound|80||*.example.com"}}]},
                        {"name": "api.dev.svc.cluster.local:80", "domains": api,
                         "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "outbound|80||api.dev.svc.cluster.local"}}]},
                        {"name": "allow_any", "domains": ["*"],
                         "routes": [{"name": "allow_any", "match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]}
                    ]
                },
                "http_filters": [
                    {"name": ECDS_FILTER_NAME, "typed_config": wasm_typed_config(&wasm_path(), policy, "FAIL_CLOSED")},
                    router()
                ]
            }
        }]}]
    })
}

fn bootstrap(namespace: &str) -> String {
    let policy = policy();
    let network_filter = json!({
        "name": "tenant-egress-tcp",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
            "config": {
                "name": "tenant-egress-tcp",
                "root_id": "tenant-egress-tcp",
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {"vm_id": "tenant-egress-tcp", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": wasm_path().to_string_lossy()}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": policy}
            }
        }
    });
    let tls = json!({
        "name": "0.0.0.0_443",
        "address": addr("0.0.0.0", 443),
        "enable_reuse_port": false,
        "traffic_direction": "OUTBOUND",
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
        "filter_chains": [{"filters": [original_dst(), network_filter, {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                             "stat_prefix": "PassthroughCluster", "cluster": "PassthroughCluster"}
        }]}]
    });
    let mut listeners = vec![
        http_listener(80, true, &policy),
        http_listener(81, false, &policy),
        tls,
        upstream("example", "127.0.0.1", EXAMPLE_PORT, "example"),
        upstream("api_dev", "127.0.0.1", API_DEV_PORT, "api.dev"),
    ];
    for (name, ip) in [
        ("external", EXTERNAL),
        ("github", GITHUB),
        ("clusterip", CLUSTER_IP),
        ("pod", POD_IP),
    ] {
        listeners.push(upstream(name, ip, UPSTREAM_PORT, ip));
    }
    let stat = |name: &str, port: u16, meta: Value| {
        json!({
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": addr("127.0.0.1", port)}}]}]},
            "metadata": meta
        })
    };
    let clusters = json!([
        stat("outbound|80||*.example.com", EXAMPLE_PORT, json!({})),
        stat("outbound|80||api.dev.svc.cluster.local", API_DEV_PORT,
             json!({"filter_metadata": {"istio": {"services": [{"host": "api.dev.svc.cluster.local", "name": "api", "namespace": "dev"}]}}})),
        {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "connect_timeout": "1s",
         "lb_policy": "CLUSTER_PROVIDED"},
        {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"}
    ]);
    json!({
        "node": {"id": format!("sidecar~10.244.9.9~client.{namespace}~{namespace}.svc.cluster.local"),
                 "cluster": format!("client.{namespace}"),
                 "metadata": {"NAMESPACE": namespace, "LABELS": {"app": "client"}}},
        "admin": {"address": addr("127.0.0.1", 0)},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    })
    .to_string()
}

/// `GET /` with `Host: host` to `ip:port` (what the application dialled).
fn get_at(ip: &str, port: u16, host: &str) -> Response {
    let to = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port);
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    Http1Conn::connect_addr(to)
        .and_then(|mut c| c.request(req.as_bytes()))
        .unwrap_or_else(|e| panic!("GET {host} via {to}: {e}"))
}

#[track_caller]
fn assert_reached(r: &Response, marker: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert_eq!(r.header("x-upstream"), Some(marker), "{what}: {r:?}");
    assert!(r.header("x-tenant-egress-denied").is_none(), "{what}");
}

fn requests(envoy: &Envoy, upstream: &str) -> u64 {
    envoy
        .counter(&format!("http.up_{upstream}.downstream_rq_total"))
        .unwrap_or(0)
}

fn connections(envoy: &Envoy, upstream: &str) -> u64 {
    envoy
        .counter(&format!("http.up_{upstream}.downstream_cx_total"))
        .unwrap_or(0)
}

/// A TLS ClientHello with `sni` to `ip:443`; returns whether the connection stayed open past
/// the hello (the filter closes a denied one at once).
fn tls_hello(ip: &str, sni: &str) -> Vec<u8> {
    let to = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 443);
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(&client_hello(sni));
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// A minimal TLS 1.2 ClientHello carrying `sni` (RFC 8446 §4.1.2, RFC 6066 §3).
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni_ext.extend_from_slice(name);
    let mut exts = vec![0, 0];
    exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni_ext);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0xc0, 0x2f]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// The demo's dev tenant (ALLOW_ANY, `*/*.example.com` but `~/secret.example.com`).
#[test]
fn allow_any_passthrough_in_a_network_namespace() {
    if !in_namespace_with_addresses() {
        return;
    }
    let envoy = Envoy::start(&bootstrap("dev"));
    assert!(envoy.wait_for_log("loaded policy", WAIT));

    // 1. The exclusion, on every spelling, on both route-matching styles: routed to the
    //    `*.example.com` cluster where Envoy's match catches the spelling, passed through
    //    to the real secret.example.com (here 93.184.216.34) where it does not.
    let mut excluded = 0;
    for port in [80, 81] {
        for host in [
            "secret.example.com",
            "secret.example.com.",
            "secret.example.com:8080",
            "SECRET.Example.COM.:80",
        ] {
            let r = get_at(EXTERNAL, port, host);
            assert_denied(&r, "excluded", &format!("{host} on listener {port}"));
            assert!(r.body.contains("~/secret.example.com"), "{}", r.body);
            excluded += 1;
        }
        // Envoy never reads `:00080` as port 80; the filter refuses the spelling.
        let r = get_at(EXTERNAL, port, "secret.example.com:00080");
        assert_denied(&r, "malformed-authority", "secret.example.com:00080");
        // Allowed names still work on both paths.
        assert_reached(
            &get_at(EXTERNAL, port, "en.example.com"),
            "example",
            "routed",
        );
        assert_reached(&get_at(EXTERNAL, port, "api.dev"), "api.dev", "own service");
    }
    assert!(envoy.wait_for_log(
        "denied source=dev tenant=dev destination=secret.example.com:80 (original destination 93.184.216.34:80) destination_namespace=- cluster=PassthroughCluster reason=excluded",
        WAIT
    ));
    assert!(envoy.wait_for_log(
        "denied source=dev tenant=dev destination=secret.example.com:80 destination_namespace=- cluster=outbound|80||*.example.com reason=excluded",
        WAIT
    ));

    // 2. Public names are not service aliases: `dev` is a namespace, `go.dev` is not a
    //    service in it; single labels and underscores are names Envoy routes.
    let mut allowed_any = 0;
    for host in [
        "go.dev",
        "web.dev:80",
        "intranet",
        "localhost:8080",
        "foo_bar.example.org",
    ] {
        assert_reached(&get_at(EXTERNAL, 81, host), EXTERNAL, host);
        allowed_any += 1;
    }
    assert_eq!(requests(&envoy, "external"), allowed_any);

    // 3. In-cluster destinations need an import: another tenant's ClusterIP or pod IP
    //    behind a Host that is no mesh name, and a pod DNS name.
    let inside = "inside the cluster's networks (10.96.0.0/12, 10.244.0.0/16)";
    for (ip, port, host, why) in [
        (CLUSTER_IP, 80, "x.test", inside),
        (CLUSTER_IP, 81, "x.test:80", inside),
        (POD_IP, 80, "x.test", inside),
        (
            POD_IP,
            81,
            "10-0-0-4.prod.pod.cluster.local:8080",
            "names a pod",
        ),
    ] {
        let r = get_at(ip, port, host);
        assert_denied(&r, "not-allowed", &format!("{host} to {ip}:{port}"));
        assert!(r.body.contains(why), "{}", r.body);
        assert!(r.body.contains("\"*/*\""), "{}", r.body);
    }
    assert_eq!(requests(&envoy, "clusterip"), 0, "reached the ClusterIP");
    assert_eq!(requests(&envoy, "pod"), 0, "reached the pod");
    assert!(envoy.wait_for_log(
        "denied source=dev tenant=dev destination=10.96.3.4:80 destination_namespace=- cluster=PassthroughCluster reason=not-allowed rule=tenants[0].egress[0] \"all ports\"",
        WAIT
    ));

    // 4. TLS: the SNI on a passthrough honours the exclusion (closed before tcp_proxy
    //    connects), a public SNI passes, an in-cluster address needs an import.
    assert!(tls_hello(GITHUB, "secret.example.com").is_empty());
    assert!(tls_hello(GITHUB, "SECRET.example.com").is_empty());
    assert_eq!(
        connections(&envoy, "github"),
        0,
        "denied SNI reached upstream"
    );
    let _ = tls_hello(GITHUB, "api.github.com");
    assert_eq!(
        envoy.wait_for_counter("http.up_github.downstream_cx_total", 1, WAIT),
        Some(1),
        "allowed SNI did not reach 140.82.112.5"
    );
    assert!(tls_hello(CLUSTER_IP, "x.test").is_empty());
    assert_eq!(
        connections(&envoy, "clusterip"),
        0,
        "in-cluster TLS reached"
    );

    assert_counter(&envoy, "denied.excluded", excluded);
    assert_counter(&envoy, "denied.malformed_authority", 2);
    assert_counter(&envoy, "denied.not_allowed", 4);
    assert_counter(&envoy, "connections.denied.excluded", 2);
    assert_counter(&envoy, "connections.denied.not_allowed", 1);
    assert_counter(&envoy, "connections.allowed", 1);
    // 4 routed + 5 passed through (HTTP); no 403 reached any upstream.
    assert_counter(&envoy, "allowed", 4 + allowed_any);
}

/// A tenant importing every namespace (`*/*`) reaches in-cluster addresses, HTTP and TLS: the
/// denials above come from the import rule, not from the addresses themselves.
#[test]
fn import_everything_reaches_in_cluster_addresses() {
    if !in_namespace_with_addresses() {
        return;
    }
    let envoy = Envoy::start(&bootstrap("ops"));
    assert!(envoy.wait_for_log("loaded policy", WAIT));
    assert_reached(&get_at(CLUSTER_IP, 80, "x.test"), CLUSTER_IP, "ClusterIP");
    assert_reached(
        &get_at(POD_IP, 81, "10-0-0-4.prod.pod.cluster.local:8080"),
        POD_IP,
        "pod DNS name",
    );
    // ops has no exclusion: secret.example.com is just another external name.
    assert_reached(
        &get_at(EXTERNAL, 81, "secret.example.com."),
        EXTERNAL,
        "no exclusion",
    );
    let _ = tls_hello(CLUSTER_IP, "x.test");
    assert_eq!(
        envoy.wait_for_counter("http.up_clusterip.downstream_cx_total", 2, WAIT),
        Some(2),
        "TLS to the ClusterIP did not pass"
    );
    assert_counter(&envoy, "allowed", 3);
    assert_counter(&envoy, "connections.allowed", 1);
    assert_eq!(envoy.counter("tenant_egress.denied").unwrap_or(0), 0);
}
