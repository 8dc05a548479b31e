//! Hostile traffic through a real Envoy, over HTTP/1.1 and HTTP/2. Every case asserts the
//! status and that the denied upstream (uat's database) was never reached. Where Envoy's own
//! codec refuses a request before any filter runs (400, a reset stream), that is as good as a
//! denial, and the test says so.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use tenant_egress_tests::*;

const PROD: &str = "cockroachdb.prod.svc.cluster.local:26257";
const UAT: &str = "cockroachdb.uat.svc.cluster.local:26257";

fn policy() -> String {
    json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            {"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}]},
            {"name": "uat", "namespaces": ["uat"], "egress": [{"hosts": ["./*"]}]}
        ]
    })
    .to_string()
}

fn sidecar(outbound: OutboundPolicy) -> Envoy {
    EnvoyConfig::new("prod")
        .service("cockroachdb", "prod", &[26257])
        .service("cockroachdb", "uat", &[26257])
        .outbound_policy(outbound)
        .wasm_filter(&policy())
        .start()
}

/// Refused before or by the filter: a 400 from Envoy's codec, a reset HTTP/2 stream, or the
/// filter's 403. Never a 2xx.
#[track_caller]
fn refused(r: &Response, what: &str) {
    let by_filter = r.status == 403 && r.header("x-tenant-egress-denied").is_some();
    let by_codec = matches!(r.status, 0 | 400 | 404 | 501);
    assert!(by_filter || by_codec, "{what}: not refused: {r:?}");
    assert!(
        !r.body.contains("upstream="),
        "{what}: reached an upstream: {r:?}"
    );
}

#[track_caller]
fn allowed_prod(r: &Response, what: &str) {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert_eq!(r.body, "upstream=cockroachdb.prod:26257\n", "{what}");
}

fn assert_uat_untouched(envoy: &Envoy) {
    assert_eq!(
        envoy.upstream_hits("cockroachdb", "uat", 26257),
        0,
        "uat's database was reached"
    );
    assert_eq!(
        envoy.canary_hits(),
        0,
        "the passthrough destination was reached"
    );
}

fn req(lines: &[&str]) -> Vec<u8> {
    let mut s = lines.join("\r\n");
    s.push_str("\r\nConnection: close\r\n\r\n");
    s.into_bytes()
}

#[test]
fn http1_host_tricks() {
    let envoy = sidecar(OutboundPolicy::AllowAny);
    let port = envoy.listener_port(26257);

    // Duplicate Host headers, in both orders.
    for (a, b) in [(PROD, UAT), (UAT, PROD)] {
        let r = raw_http1(
            port,
            &req(&[
                "GET / HTTP/1.1",
                &format!("Host: {a}"),
                &format!("Host: {b}"),
            ]),
        );
        assert_denied(&r, "malformed-authority", "duplicate Host");
    }
    // Absolute-form target: Envoy routes on the target's authority (RFC 9112 §3.2.2), and so
    // does the filter, whatever the Host header claims.
    let r = raw_http1(
        port,
        &req(&[
            &format!("GET http://{UAT}/ HTTP/1.1"),
            &format!("Host: {PROD}"),
        ]),
    );
    assert_denied(&r, "not-allowed", "absolute-form to uat, Host prod");
    let r = raw_http1(
        port,
        &req(&[
            &format!("GET http://{PROD}/ HTTP/1.1"),
            &format!("Host: {UAT}"),
        ]),
    );
    allowed_prod(&r, "absolute-form to prod, Host uat");

    // Case, port and trailing-dot variants.
    allowed_prod(
        &get(port, "COCKROACHDB.Prod.SVC.cluster.local:26257", "/"),
        "uppercase allowed",
    );
    allowed_prod(&get(port, "cockroachdb.prod", "/"), "allowed without port");
    allowed_prod(
        &get(port, "cockroachdb:26257", "/"),
        "allowed short name with port",
    );
    assert_denied(
        &get(port, "COCKROACHDB.UAT.svc.cluster.local:26257", "/"),
        "not-allowed",
        "uppercase denied",
    );
    assert_denied(
        &get(port, "cockroachdb.uat", "/"),
        "not-allowed",
        "denied without port",
    );
    // A trailing dot matches no route, so Envoy passes it through: a mesh name on a
    // passthrough is refused as a mismatch, allowed or not (a documented, fail-closed
    // deviation: the dotted form of an allowed host is denied).
    assert_denied(
        &get(port, "cockroachdb.prod.svc.cluster.local.:26257", "/"),
        "authority-mismatch",
        "trailing dot allowed",
    );
    assert_denied(
        &get(port, "cockroachdb.uat.svc.cluster.local.", "/"),
        "authority-mismatch",
        "trailing dot denied",
    );
    // A port the service does not have: routes ignore the Host's port (Istio 1.20+,
    // `ignore_port_in_host_matching`), so it reaches the named service on this listener's
    // port, where the bytes go: allowed for prod's own database, denied for uat's.
    allowed_prod(&get(port, "cockroachdb.prod:1", "/"), "wrong port");
    assert_denied(
        &get(port, "cockroachdb.uat:1", "/"),
        "not-allowed",
        "wrong port denied",
    );

    // Userinfo, percent-encoding, control bytes, overlong names.
    for host in [
        "user@cockroachdb.uat:26257",
        "user:pass@cockroachdb.prod:26257",
        "cockroachdb%2euat:26257",
        "cockroachdb.uat%00.evil:26257",
        "cockroachdb.uat,cockroachdb.prod",
        "cockroachdb.uat:26257:26257",
        "cockroachdb.uat:65536",
        "[cockroachdb.uat]:26257",
    ] {
        let r = get(port, host, "/");
        refused(&r, host);
        if r.status == 403 {
            assert_eq!(
                r.header("x-tenant-egress-denied"),
                Some("malformed-authority"),
                "{host}"
            );
        }
    }
    let long = format!(
        "{}.uat.svc.cluster.local",
        vec!["a".repeat(60); 4].join(".")
    );
    let r = get(port, &long, "/");
    assert_denied(&r, "malformed-authority", "overlong name");
    for raw in [
        &b"cockroachdb.uat\x00:26257"[..],
        b"cockroachdb.\x01uat:26257",
        b"cockroachdb.uat\x7f",
    ] {
        let mut bytes = b"GET / HTTP/1.1\r\nHost: ".to_vec();
        bytes.extend_from_slice(raw);
        bytes.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let r = raw_http1(port, &bytes);
        refused(&r, &format!("control byte {raw:?}"));
    }
    let mut bytes =
        b"GET / HTTP/1.1\r\nHost: cockroachdb.pr\xc3\xb6d\r\nConnection: close\r\n\r\n".to_vec();
    let r = raw_http1(port, &bytes);
    refused(&r, "non-ASCII host");
    bytes.clear();

    // CONNECT and Upgrade.
    let r = raw_http1(
        port,
        &req(&[&format!("CONNECT {UAT} HTTP/1.1"), &format!("Host: {UAT}")]),
    );
    refused(&r, "CONNECT to uat");
    let r = raw_http1(
        port,
        &req(&[
            "GET /ws HTTP/1.1",
            &format!("Host: {UAT}"),
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ]),
    );
    assert_denied(&r, "not-allowed", "websocket upgrade to uat");

    // Passthrough steered at uat's pod by the original-destination header.
    let uat_pod = format!(
        "127.0.0.1:{}",
        envoy.upstream_port("cockroachdb", "uat", 26257)
    );
    let r = get_with_headers(
        port,
        "payments.example.org",
        "/",
        &[("x-envoy-original-dst-host", &uat_pod)],
    );
    assert_denied(&r, "not-in-registry", "passthrough to uat's pod");
    let r = get_with_headers(
        port,
        "cockroachdb.uat",
        "/",
        &[("x-envoy-original-dst-host", &uat_pod)],
    );
    assert_denied(&r, "not-allowed", "routed name plus dst header");

    assert_uat_untouched(&envoy);
    assert!(envoy.wait_for_log("reason=malformed-authority", WAIT));
}

#[test]
fn http1_blackhole_cluster() {
    let envoy = sidecar(OutboundPolicy::BlackHole);
    let port = envoy.listener_port(26257);
    let r = get(port, "anything.example.org", "/");
    assert_denied(&r, "blackhole", "BlackHoleCluster");
    allowed_prod(
        &get(port, PROD, "/"),
        "allowed next to a blackhole catch-all",
    );
    assert_uat_untouched(&envoy);
}

#[test]
fn http2_authority_tricks() {
    let envoy = sidecar(OutboundPolicy::AllowAny);
    let port = envoy.listener_port(26257);

    allowed_prod(&h2_get(port, PROD, &[]), "h2 allowed");
    assert_denied(&h2_get(port, UAT, &[]), "not-allowed", "h2 denied");
    assert_denied(
        &h2_get(port, "CockroachDB.UAT.svc.cluster.local:26257", &[]),
        "not-allowed",
        "h2 uppercase",
    );

    // A `host` header beside `:authority` (RFC 9113 §8.3.1: must agree). Envoy either drops
    // it (envoy.reloadable_features.http2_discard_host_header) or hands both to the filter,
    // which then refuses the request; uat is never reached either way.
    let r = h2_get(port, PROD, &[("host", UAT)]);
    eprintln!(
        "h2 :authority + differing host: status {} ({:?})",
        r.status,
        r.header("x-tenant-egress-denied")
    );
    if r.status == 200 {
        allowed_prod(&r, "h2 :authority prod + host uat (host dropped by Envoy)");
    } else {
        assert_denied(&r, "malformed-authority", "h2 :authority prod + host uat");
    }
    let r = h2_get(port, UAT, &[("host", PROD)]);
    refused(&r, "h2 :authority uat + host prod");

    // Two :authority pseudo-headers: a malformed HTTP/2 request.
    let r = h2_request(
        port,
        &[
            (":method", H2Value::Text("GET")),
            (":scheme", H2Value::Text("http")),
            (":authority", H2Value::Text(PROD)),
            (":authority", H2Value::Text(UAT)),
            (":path", H2Value::Text("/")),
        ],
    );
    refused(&r, "h2 two :authority");

    // Bytes HTTP/1 could not even carry.
    for bad in [
        &b"cockroachdb.uat\x00.x"[..],
        b"cockroachdb.uat\r\nx: y",
        b"user@cockroachdb.uat:26257",
        b"cockroachdb.uat:26257 ",
    ] {
        let r = h2_request(
            port,
            &[
                (":method", H2Value::Text("GET")),
                (":scheme", H2Value::Text("http")),
                (":authority", H2Value::Bytes(bad)),
                (":path", H2Value::Text("/")),
            ],
        );
        refused(&r, &format!("h2 authority {bad:?}"));
    }

    // CONNECT over HTTP/2 (no :scheme/:path).
    let r = h2_request(
        port,
        &[
            (":method", H2Value::Text("CONNECT")),
            (":authority", H2Value::Text(UAT)),
        ],
    );
    refused(&r, "h2 CONNECT to uat");

    assert_uat_untouched(&envoy);
    assert!(envoy
        .wait_for_counter("tenant_egress.denied", 3, WAIT)
        .is_some_and(|n| n >= 3));
}

/// The filter reads only `:authority` (`enforce::request_authority`): Envoy's request header
/// map files a `host` under `:authority` and appends a second value to it comma-joined. With
/// Envoy's discarding of an HTTP/2 `host` switched off, a `host` beside `:authority` must
/// therefore reach the filter joined to it, and be refused; never decided on one of the two.
#[test]
fn http2_host_beside_authority_arrives_joined_and_is_refused() {
    let envoy = EnvoyConfig::new("prod")
        .service("cockroachdb", "prod", &[26257])
        .service("cockroachdb", "uat", &[26257])
        .outbound_policy(OutboundPolicy::AllowAny)
        .wasm_filter(&policy())
        .runtime(
            "envoy.reloadable_features.http2_discard_host_header",
            serde_json::json!(false),
        )
        .start();
    let port = envoy.listener_port(26257);
    allowed_prod(&h2_get(port, PROD, &[]), "h2 allowed, flag off");
    for (authority, host, what) in [
        (PROD, UAT, "h2 :authority prod + host uat"),
        (UAT, PROD, "h2 :authority uat + host prod"),
        (PROD, PROD, "h2 :authority prod + the same host"),
    ] {
        let r = h2_get(port, authority, &[("host", host)]);
        assert_denied(&r, "malformed-authority", what);
    }
    assert_uat_untouched(&envoy);
    // Each refusal is the filter's, logged with its reason; Envoy's router could not match the
    // joined value either (the request was routed to the passthrough cluster).
    let line = "cluster=PassthroughCluster reason=malformed-authority";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while envoy.log().matches(line).count() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(envoy.log().matches(line).count(), 3, "{}", envoy.log());
}

// The same hostile requests with each mesh service behind its destination sidecar: what the
// caller's end refuses, the destination refuses on the caller's identity alone
// (`tenant_egress_tests::ends`).
tenant_egress_tests::both_ends_tests!(
    http1_host_tricks,
    http1_blackhole_cluster,
    http2_authority_tricks,
);
