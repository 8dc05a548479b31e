//! Smoke tests of the harness itself against the real Envoy, WITHOUT the
//! tenant-egress wasm filter (it need not be built for these to pass; only
//! `scripts/setup.sh`'s Envoy is required).
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use tenant_egress_tests::*;

const SRC: &str = "tenant-a";

/// web.tenant-a on 80 and 8080, db.tenant-b on 80; the sidecar lives in tenant-a.
fn mesh() -> EnvoyConfig {
    EnvoyConfig::new(SRC)
        .label("app", "client")
        .service("web", "tenant-a", &[80, 8080])
        .service("db", "tenant-b", &[80])
}

#[test]
fn routes_every_istio_alias_to_its_upstream() {
    let envoy = mesh().start();
    let p80 = envoy.listener_port(80);
    let p8080 = envoy.listener_port(8080);

    let web80 = istio_domains("web", "tenant-a", 80, Some(SRC));
    assert_eq!(
        web80.len(),
        8,
        "same-namespace service has the short aliases too"
    );
    for host in &web80 {
        let r = get(p80, host, "/some/path?q=1");
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.body, "upstream=web.tenant-a:80\n", "{host}");
        assert_eq!(r.header("x-upstream"), Some("web.tenant-a:80"), "{host}");
        assert_eq!(r.header("x-upstream-authority"), Some(host.as_str()));
        assert_eq!(r.header("x-upstream-path"), Some("/some/path?q=1"));
    }
    for host in istio_domains("web", "tenant-a", 8080, Some(SRC)) {
        let r = get(p8080, &host, "/");
        assert_eq!(r.body, "upstream=web.tenant-a:8080\n", "{host}");
    }
    let db80 = istio_domains("db", "tenant-b", 80, Some(SRC));
    assert_eq!(db80.len(), 6, "no short aliases across namespaces");
    for host in &db80 {
        assert_eq!(
            get(p80, host, "/").body,
            "upstream=db.tenant-b:80\n",
            "{host}"
        );
    }
    // Not in the route table, so they fall through to allow_any → canary:
    // the cross-namespace short name, and db on a port it does not have.
    assert_eq!(get(p80, "db", "/").body, "upstream=canary\n");
    assert_eq!(get(p8080, "db.tenant-b", "/").body, "upstream=canary\n");

    assert_eq!(
        envoy.upstream_hits("web", "tenant-a", 80),
        web80.len() as u64
    );
    assert_eq!(envoy.upstream_hits("web", "tenant-a", 8080), 8);
    assert_eq!(envoy.upstream_hits("db", "tenant-b", 80), db80.len() as u64);
    assert_eq!(envoy.canary_hits(), 2);
    assert!(envoy.wait_for_access_log(
        "cluster=outbound|80||db.tenant-b.svc.cluster.local",
        Duration::from_secs(2)
    ));
}

#[test]
fn passthrough_goes_to_canary_or_follows_original_dst_header() {
    let envoy = mesh().listener(443).start();
    let p80 = envoy.listener_port(80);

    let r = get(p80, "unknown.example.com", "/");
    assert_eq!((r.status, r.body.as_str()), (200, "upstream=canary\n"));
    let r = get(envoy.listener_port(443), "api.example.com:443", "/");
    assert_eq!(r.body, "upstream=canary\n", "listener without services");

    // Steer the passthrough (stand-in for iptables' original destination).
    let target = format!("127.0.0.1:{}", envoy.upstream_port("db", "tenant-b", 80));
    let r = get_with_headers(
        p80,
        "unknown.example.com",
        "/",
        &[("x-envoy-original-dst-host", &target)],
    );
    assert_eq!(r.body, "upstream=db.tenant-b:80\n");
    assert_eq!(
        r.header("x-upstream-authority"),
        Some("unknown.example.com")
    );

    assert_eq!(envoy.canary_hits(), 2);
    assert_eq!(envoy.upstream_hits("db", "tenant-b", 80), 1);
    assert_eq!(envoy.upstream_hits("web", "tenant-a", 80), 0);
}

#[test]
fn registry_only_blocks_unknown_hosts() {
    let envoy = mesh().registry_only().start();
    let p80 = envoy.listener_port(80);
    assert_eq!(get(p80, "unknown.example.com", "/").status, 502);
    assert_eq!(get(p80, "db", "/").status, 502);
    assert_eq!(
        get(p80, "db.tenant-b", "/").body,
        "upstream=db.tenant-b:80\n"
    );
    assert_eq!(envoy.canary_hits(), 0);
    assert!(envoy.wait_for_access_log("route=block_all", Duration::from_secs(2)));
}

#[test]
fn admin_stats_and_node_identity() {
    let envoy = mesh().start();
    assert_eq!(envoy.admin_get("/ready").trim(), "LIVE");

    let rq = "http.outbound_0.0.0.0_80.downstream_rq_total";
    assert_eq!(envoy.counter(rq), Some(0));
    get(envoy.listener_port(80), "web", "/");
    get(envoy.listener_port(80), "web", "/");
    assert_eq!(envoy.counter(rq), Some(2));
    assert_eq!(
        envoy.wait_for_counter(rq, 2, Duration::from_secs(1)),
        Some(2)
    );
    assert_eq!(envoy.counter("no.such.counter"), None);
    let stats = envoy.stats();
    assert!(stats.contains_key("http.upstream_canary.downstream_rq_total"));
    assert!(stats
        .contains_key("cluster.outbound|8080||web.tenant-a.svc.cluster.local.upstream_rq_total"));

    let info: Value = serde_json::from_str(&envoy.admin_get("/server_info")).unwrap();
    let node = &info["node"];
    assert_eq!(
        node["id"],
        "sidecar~127.0.0.1~client-0.tenant-a~tenant-a.svc.cluster.local"
    );
    assert_eq!(node["cluster"], "client.tenant-a");
    assert_eq!(node["metadata"]["NAMESPACE"], "tenant-a");
    assert_eq!(node["metadata"]["LABELS"], json!({"app": "client"}));
    assert!(envoy.wait_for_log("starting workers", Duration::from_secs(2)));
    assert!(!envoy.wait_for_log("no such line", Duration::from_millis(100)));

    let bare = EnvoyConfig::new(SRC)
        .without_namespace_metadata()
        .listener(80)
        .start();
    let info: Value = serde_json::from_str(&bare.admin_get("/server_info")).unwrap();
    assert!(info["node"]["metadata"].get("NAMESPACE").is_none());
    assert!(info["node"]["metadata"].get("LABELS").is_none());
}

#[test]
fn raw_requests_and_keep_alive() {
    let envoy = mesh().start();
    let p80 = envoy.listener_port(80);

    // Two requests for different services on one connection.
    let mut conn = Http1Conn::connect(p80).unwrap();
    let r = conn
        .request(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .unwrap();
    assert_eq!(r.body, "upstream=web.tenant-a:80\n");
    let r = conn
        .request(b"GET / HTTP/1.1\r\nHost: db.tenant-b\r\n\r\n")
        .unwrap();
    assert_eq!(r.body, "upstream=db.tenant-b:80\n");

    // HEAD: headers only.
    let r = raw_http1(
        p80,
        b"HEAD / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.body.as_str()), (200, ""));

    // Chunked request body is accepted and routed.
    let r = raw_http1(
        p80,
        b"POST /p HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.body, "upstream=web.tenant-a:80\n");

    // What Envoy 1.40's HTTP/1 codec does with odd requests (facts the
    // filter has to live with; asserted so a change of Envoy is noticed):
    // duplicate Host headers are joined with a comma into :authority, which
    // then matches no virtual host → passthrough.
    let r = raw_http1(
        p80,
        b"GET / HTTP/1.1\r\nHost: web\r\nHost: db.tenant-b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.header("x-upstream-authority"), Some("web,db.tenant-b"));
    assert_eq!(r.body, "upstream=canary\n");
    // Absolute-form target: its authority wins over the Host header.
    let r = raw_http1(
        p80,
        b"GET http://db.tenant-b/x HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.header("x-upstream-authority"), Some("db.tenant-b"));
    assert_eq!(r.body, "upstream=db.tenant-b:80\n");
    // Domain matching is case-insensitive; the authority is passed unchanged.
    let r = get(p80, "WEB.Tenant-A", "/");
    assert_eq!(r.header("x-upstream-authority"), Some("WEB.Tenant-A"));
    assert_eq!(r.body, "upstream=web.tenant-a:80\n");
    // A trailing dot matches no domain.
    assert_eq!(get(p80, "web.", "/").body, "upstream=canary\n");
    // Rejected by the codec before any filter runs.
    let bad: [(&[u8], u16); 4] = [
        (
            b"GET / HTTP/1.1\r\nHost: we\x01b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: web\x80\r\nConnection: close\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\n\r\n", 426),
    ];
    for (req, status) in bad {
        assert_eq!(
            raw_http1(p80, req).status,
            status,
            "{:?}",
            String::from_utf8_lossy(req)
        );
    }
    assert_eq!(envoy.canary_hits(), 2);
}

#[test]
fn http2_prior_knowledge_is_accepted_by_the_outbound_listener() {
    let envoy = mesh().start();
    let mut s = TcpStream::connect(("127.0.0.1", envoy.listener_port(80))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Connection preface + empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut frame_header = [0u8; 9];
    s.read_exact(&mut frame_header).unwrap();
    assert_eq!(frame_header[3], 0x4, "server answers with a SETTINGS frame");
}

fn header_mutation(value: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        "mutations": {"response_mutations": [
            {"append": {"header": {"key": "x-ecds", "value": value}}},
        ]},
    })
}

#[test]
fn ecds_file_updates_apply_without_restart() {
    let envoy = mesh().typed_filter_ecds(header_mutation("v1")).start();
    let (p80, p8080) = (envoy.listener_port(80), envoy.listener_port(8080));
    let initial = envoy.ecds_counts();
    assert_eq!((initial.success, initial.rejected), (1, 0));
    assert_eq!(get(p80, "web", "/").header("x-ecds"), Some("v1"));

    let wait = Duration::from_secs(5);
    assert_eq!(
        envoy.update_ecds_and_wait(&header_mutation("v2"), wait),
        EcdsOutcome::Accepted
    );
    assert_eq!(get(p80, "web", "/").header("x-ecds"), Some("v2"));
    assert_eq!(
        get(p8080, "web", "/").header("x-ecds"),
        Some("v2"),
        "every listener"
    );

    // A config of another type is rejected; the previous one keeps serving.
    let mark = envoy.log_mark();
    let router =
        json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"});
    assert_eq!(
        envoy.update_ecds_and_wait(&router, wait),
        EcdsOutcome::Rejected
    );
    assert!(envoy.wait_for_log_after(mark, "Filesystem config update rejected", wait));
    assert_eq!(get(p80, "web", "/").header("x-ecds"), Some("v2"));

    // An unparsable file is a failure; still v2.
    let before = envoy.ecds_counts();
    envoy.write_ecds_raw("{not json");
    assert_eq!(envoy.wait_for_ecds(before, wait), EcdsOutcome::Rejected);
    assert_eq!(envoy.ecds_counts().failure, before.failure + 1);
    assert!(envoy.wait_for_log_after(mark, "Filesystem config update failure", wait));
    assert_eq!(get(p80, "web", "/").header("x-ecds"), Some("v2"));

    // Rewriting the file in place (no rename) is NOT noticed by Envoy.
    let before = envoy.ecds_counts();
    let body = ecds_discovery_response(99, &header_mutation("in-place"));
    std::fs::write(envoy.ecds_file(), serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(
        envoy.wait_for_ecds(before, Duration::from_millis(500)),
        EcdsOutcome::TimedOut
    );
    assert_eq!(get(p80, "web", "/").header("x-ecds"), Some("v2"));

    assert_eq!(
        envoy.update_ecds_and_wait(&header_mutation("v3"), wait),
        EcdsOutcome::Accepted
    );
    assert_eq!(get(p80, "web", "/").header("x-ecds"), Some("v3"));
}

#[test]
fn inline_typed_filter_applies_on_every_outbound_listener() {
    let envoy = mesh().typed_filter(header_mutation("inline")).start();
    for port in [80, 8080] {
        let r = get(envoy.listener_port(port), "web", "/");
        assert_eq!(r.header("x-ecds"), Some("inline"), "listener for {port}");
    }
    // Upstream listeners do not get it.
    let r = get(envoy.upstream_port("web", "tenant-a", 80), "web", "/");
    assert_eq!(r.header("x-ecds"), None);
}

#[test]
fn wasm_module_missing_or_corrupt_prevents_start() {
    let missing = EnvoyConfig::new(SRC)
        .listener(80)
        .wasm_file("/nonexistent/tenant_egress_filter.wasm")
        .wasm_filter("{}")
        .try_start()
        .err()
        .expect("Envoy must not start without the module");
    assert!(missing.exit_status.is_some_and(|s| !s.success()));
    assert!(
        missing
            .output()
            .contains("Invalid path: /nonexistent/tenant_egress_filter.wasm"),
        "{missing}"
    );

    let dir = std::env::temp_dir().join(format!("tenant-egress-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let corrupt = dir.join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm but not really").unwrap();
    let err = EnvoyConfig::new(SRC)
        .listener(80)
        .wasm_file(&corrupt)
        .wasm_filter("{}")
        .try_start()
        .err()
        .expect("Envoy must not start with a corrupt module");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.exit_status.is_some_and(|s| !s.success()));
    let out = err.output();
    assert!(
        out.contains("Unable to create Wasm plugin tenant-egress"),
        "{err}"
    );
    assert!(
        out.contains("Plugin configured to fail closed failed to load"),
        "{err}"
    );
}

#[test]
fn wasm_module_missing_via_ecds_starts_but_answers_500() {
    // With ECDS the rejected initial config is not fatal: Envoy is LIVE and
    // the listener fails every request with 500 (response flag NFCF).
    let envoy = EnvoyConfig::new(SRC)
        .listener(80)
        .wasm_file("/nonexistent/tenant_egress_filter.wasm")
        .wasm_filter_ecds("{}")
        .start();
    let counts = envoy.ecds_counts();
    assert_eq!((counts.success, counts.rejected), (0, 1));
    assert!(envoy.wait_for_log(
        "Filesystem config update rejected: Invalid path",
        Duration::from_secs(2)
    ));
    assert_eq!(get(envoy.listener_port(80), "example.com", "/").status, 500);
    assert_eq!(envoy.canary_hits(), 0);
    assert!(envoy.wait_for_access_log("flags=NFCF", Duration::from_secs(2)));
}

/// A hand-written YAML bootstrap: one listener answering "hello".
fn hello_bootstrap(port: u16) -> String {
    format!(
        r#"
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: hello
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    enable_reuse_port: false
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hello
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: hello}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

#[test]
fn raw_bootstrap_yaml_and_start_errors() {
    let port = free_port();
    let envoy = Envoy::start(&hello_bootstrap(port));
    assert!(envoy
        .bootstrap_path()
        .extension()
        .is_some_and(|e| e == "yaml"));
    assert_eq!(get(port, "x", "/").body, "hello");
    assert_eq!(envoy.counter("http.hello.downstream_rq_total"), Some(1));

    let err = Envoy::try_start("static_resources: {listeners: [{name: 1}]}\n")
        .err()
        .expect("invalid bootstrap");
    assert!(err.exit_status.is_some());
    assert!(!err.output().is_empty());
    assert!(!err.is_port_conflict());

    // A taken port is recognised (EnvoyConfig::start retries on it), and
    // try_start cleans up its run directory.
    let err = Envoy::try_start(&hello_bootstrap(port))
        .err()
        .expect("port is taken by the first Envoy");
    assert!(err.is_port_conflict(), "{err}");
    if !err.dir_kept {
        assert!(!err.dir.exists());
    }
}

#[test]
fn several_envoys_run_side_by_side() {
    let a = mesh().start();
    let b = mesh().registry_only().start();
    assert_ne!(a.listener_port(80), b.listener_port(80));
    assert_eq!(
        get(a.listener_port(80), "nowhere", "/").body,
        "upstream=canary\n"
    );
    assert_eq!(get(b.listener_port(80), "nowhere", "/").status, 502);
}

#[test]
fn failing_test_keeps_and_dumps_the_run_dir() {
    let dir = std::panic::catch_unwind(|| {
        let envoy = mesh().start();
        let dir = envoy.dir().to_path_buf();
        std::panic::panic_any(dir); // Drop runs while panicking
    })
    .err()
    .and_then(|p| p.downcast::<std::path::PathBuf>().ok())
    .expect("panic payload is the run dir");
    assert!(dir.join("envoy.log").is_file(), "kept for inspection");
    assert!(dir.join("bootstrap.json").is_file());
    std::fs::remove_dir_all(&*dir).unwrap();

    let envoy = mesh().start();
    let dir = envoy.dir().to_path_buf();
    drop(envoy);
    if std::env::var_os("TENANT_EGRESS_KEEP_TMP").is_none() {
        assert!(!dir.exists(), "removed after a passing run");
    }
}
