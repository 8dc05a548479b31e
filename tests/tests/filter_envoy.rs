//! The filter inside a real Envoy, the way Istio runs it: Istio-shaped outbound listeners,
//! `outbound|PORT||FQDN` clusters with `istio.services` metadata, a passthrough catch-all.
//! Every scenario asserts the status, the denial header and body (or which upstream answered),
//! that denied upstreams were never reached, and the filter's counters and log lines.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tenant_egress_tests::*;

fn policy(v: Value) -> String {
    v.to_string()
}

/// Asserts a request was let through to `svc.ns:port`.
#[track_caller]
fn assert_allowed(r: &Response, svc: &str, ns: &str, port: u16, what: &str) {
    assert_eq!(r.status, 200, "{what}: expected 200, got {r:?}");
    assert_eq!(
        r.body,
        format!("upstream={svc}.{ns}:{port}\n"),
        "{what}: wrong upstream"
    );
    assert_eq!(r.header("x-tenant-egress-denied"), None, "{what}");
}

// === Scenario 1: default and foo, helloworld on 80 and 8080 ===

fn helloworld_policy() -> String {
    policy(json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            {"name": "default", "namespaces": ["default"],
             "egress": [{"port": {"number": 80, "protocol": "HTTP", "name": "http"}, "hosts": ["foo/*"]}]},
            {"name": "foo", "namespaces": ["foo"],
             "egress": [{"port": {"number": 8080, "protocol": "HTTP", "name": "http-alt"}, "hosts": ["./*", "default/*"]}]}
        ]
    }))
}

#[test]
fn scenario1_helloworld_every_source_destination_port() {
    let pol = helloworld_policy();
    for src in ["default", "foo"] {
        let envoy = EnvoyConfig::new(src)
            .service("helloworld", "default", &[80, 8080])
            .service("helloworld", "foo", &[80, 8080])
            .wasm_filter(&pol)
            .start();
        let mut expected_allowed = 0;
        let mut expected_denied = 0;
        for dst in ["default", "foo"] {
            for port in [80u16, 8080] {
                let allowed = matches!(
                    (src, dst, port),
                    ("default", "foo", 80) | ("foo", "foo", 8080) | ("foo", "default", 8080)
                );
                // Every alias Istio routes for this service, as seen from `src`.
                let aliases = istio_domains("helloworld", dst, port, Some(src));
                for host in &aliases {
                    let what = format!("{src} -> {host} (port {port})");
                    let r = get(envoy.listener_port(port), host, "/");
                    if allowed {
                        assert_allowed(&r, "helloworld", dst, port, &what);
                        expected_allowed += 1;
                    } else {
                        assert_denied(&r, "not-allowed", &what);
                        assert!(r.body.contains(&format!(
                            "destination: helloworld.{dst}.svc.cluster.local:{port} (namespace {dst}) via outbound|{port}||helloworld.{dst}.svc.cluster.local"
                        )), "{what}: {}", r.body);
                        assert!(r
                            .body
                            .contains(&format!("source: namespace {src} (tenant {src})")));
                        expected_denied += 1;
                    }
                }
                let hits = envoy.upstream_hits("helloworld", dst, port);
                if allowed {
                    assert_eq!(hits, aliases.len() as u64, "{src} -> {dst}:{port}");
                } else {
                    assert_eq!(
                        hits, 0,
                        "denied upstream {dst}:{port} was reached from {src}"
                    );
                }
            }
        }
        assert_counter(&envoy, "allowed", expected_allowed);
        assert_counter(&envoy, "denied", expected_denied);
        assert_counter(&envoy, "denied.not_allowed", expected_denied);
        assert_eq!(envoy.canary_hits(), 0);
        assert!(envoy.wait_for_log(&format!("denied source={src} tenant={src}"), WAIT));
        assert!(envoy.wait_for_log(
            "loaded policy (root id \"tenant-egress\"): mode=enforce tenants=2",
            WAIT
        ));
        assert!(envoy.wait_for_log(
            "serving as the HTTP filter (root id \"tenant-egress\")",
            WAIT
        ));
    }
}

// === Scenario 2: prod, uat, dev each with its own cockroachdb on 26257 ===

fn crdb_policy(mode: &str) -> String {
    let tenant = |name: &str| {
        json!({"name": name, "namespaces": [name],
               "egress": [{"hosts": ["./*", "istio-system/*"]}]})
    };
    policy(json!({
        "apiVersion": "tenant-egress/v1",
        "mode": mode,
        // These scenarios check what the full body teaches (`add "..."`).
        "denyBody": "full",
        "tenants": [tenant("prod"), tenant("uat"), tenant("dev")],
    }))
}

/// The deny body's detail is the policy's choice: `terse` (the default) names no rule, no path
/// and no namespace but the caller's own and the one it asked for, and says where the detail
/// is; `full` explains. The proxy log has the rule either way.
#[test]
fn deny_body_terse_by_default_full_on_request() {
    let doc = |body: Option<&str>| {
        let mut v = json!({
            "apiVersion": "tenant-egress/v1",
            "sharedNamespaces": ["istio-system"],
            "tenants": [
                {"name": "prod", "namespaces": ["prod"],
                 "egress": [{"hosts": ["./*", "istio-system/*", "~dev/*"]}]},
                {"name": "uat", "namespaces": ["uat"], "egress": [{"hosts": ["./*"]}]},
                {"name": "dev", "namespaces": ["dev"], "egress": [{"hosts": ["./*"]}]}
            ]
        });
        if let Some(b) = body {
            v["denyBody"] = json!(b);
        }
        policy(v)
    };
    let cluster = |ns: &str| format!("outbound|26257||cockroachdb.{ns}.svc.cluster.local");

    let envoy = crdb_mesh("prod").wasm_filter(&doc(None)).start();
    let port = envoy.listener_port(26257);
    let r = get(port, "cockroachdb.uat:26257", "/");
    assert_denied(&r, "not-allowed", "terse, not-allowed");
    assert_eq!(
        r.body,
        format!(
            "tenant-egress: request denied (not-allowed)\n\
             source: namespace prod (tenant prod)\n\
             destination: cockroachdb.uat.svc.cluster.local:26257 (namespace uat) via {c}\n\
             why: the egress policy of this namespace does not allow this destination\n\
             detail: in the proxy log (\"denied source=...\"), or run: tenant-egress explain POLICY \
             --source-namespace prod --authority cockroachdb.uat.svc.cluster.local:26257 --cluster '{c}'\n",
            c = cluster("uat")
        )
    );
    // An exclusion naming another tenant's namespace stays in the log.
    let r = get(port, "cockroachdb.dev:26257", "/");
    assert_denied(&r, "excluded", "terse, excluded");
    for leak in ["tenants[", "~dev", "istio-system", "add \""] {
        assert!(!r.body.contains(leak), "{leak:?} leaked: {}", r.body);
    }
    assert!(envoy.wait_for_log(
        "denied source=prod tenant=prod destination=cockroachdb.dev.svc.cluster.local:26257",
        WAIT
    ));
    assert!(envoy.wait_for_log(
        "reason=excluded rule=tenants[0].egress[0].hosts[2] \"~dev/*\"",
        WAIT
    ));
    assert_eq!(envoy.upstream_hits("cockroachdb", "uat", 26257), 0);
    assert_eq!(envoy.upstream_hits("cockroachdb", "dev", 26257), 0);
    assert_counter(&envoy, "denied", 2);
    drop(envoy);

    let envoy = crdb_mesh("prod").wasm_filter(&doc(Some("full"))).start();
    let port = envoy.listener_port(26257);
    let r = get(port, "cockroachdb.dev:26257", "/");
    assert_denied(&r, "excluded", "full, excluded");
    assert!(
        r.body.ends_with(
            "why: cockroachdb.dev.svc.cluster.local:26257 is excluded by tenants[0].egress[0].hosts[2] \
             \"~dev/*\"; remove that exclusion to allow it\n"
        ),
        "{}",
        r.body
    );
    assert!(!r.body.contains("detail:"), "{}", r.body);
    assert_eq!(envoy.upstream_hits("cockroachdb", "dev", 26257), 0);
}

fn crdb_mesh(src: &str) -> EnvoyConfig {
    EnvoyConfig::new(src)
        .service("cockroachdb", "prod", &[26257])
        .service("cockroachdb", "uat", &[26257])
        .service("cockroachdb", "dev", &[26257])
        .service("istiod", "istio-system", &[15014])
}

#[test]
fn scenario2_each_tenant_reaches_only_its_own_database() {
    let pol = crdb_policy("enforce");
    for src in ["prod", "uat", "dev"] {
        let envoy = crdb_mesh(src).wasm_filter(&pol).start();
        let port = envoy.listener_port(26257);
        for dst in ["prod", "uat", "dev"] {
            let fqdn = format!("cockroachdb.{dst}.svc.cluster.local:26257");
            let r = get(port, &fqdn, "/");
            let what = format!("{src} -> {fqdn}");
            if src == dst {
                assert_allowed(&r, "cockroachdb", dst, 26257, &what);
                // The short name resolves in the source namespace.
                let r = get(port, "cockroachdb:26257", "/");
                assert_allowed(&r, "cockroachdb", dst, 26257, "short name");
                assert_eq!(envoy.upstream_hits("cockroachdb", dst, 26257), 2);
            } else {
                assert_denied(&r, "not-allowed", &what);
                assert!(r.body.contains(&format!(
                    "add \"{dst}/cockroachdb.{dst}.svc.cluster.local\""
                )));
                // Case variants are the same name (RFC 4343) and Envoy routes them alike.
                let upper = format!("CockroachDB.{}.svc.cluster.local:26257", dst.to_uppercase());
                assert_denied(&get(port, &upper, "/"), "not-allowed", "uppercase");
                // A trailing dot matches no route: Envoy passes it through, and a mesh name on a
                // passthrough is a mismatch.
                let dotted = format!("cockroachdb.{dst}.svc.cluster.local.:26257");
                assert_denied(
                    &get(port, &dotted, "/"),
                    "authority-mismatch",
                    "trailing dot",
                );
                assert_eq!(envoy.upstream_hits("cockroachdb", dst, 26257), 0, "{what}");
            }
        }
        // Shared namespaces stay reachable.
        let r = get(
            envoy.listener_port(15014),
            "istiod.istio-system.svc:15014",
            "/",
        );
        assert_allowed(&r, "istiod", "istio-system", 15014, "istiod");
        assert_counter(&envoy, "allowed", 3);
        assert_counter(&envoy, "denied.not_allowed", 4);
        assert_counter(&envoy, "denied.authority_mismatch", 2);
        assert_eq!(envoy.canary_hits(), 0);
    }
}

// === Scenario 3: a workload exception ===

fn exception_policy() -> String {
    policy(json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            {"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}],
             "workloads": [{"name": "permit-logs-to-logmonkey",
                            "selector": {"app.kubernetes.io/name": "batman-app"},
                            "egress": [{"hosts": ["logmonkey/logcatcher.logmonkey.svc.cluster.local"]}]}]},
            {"name": "logmonkey", "namespaces": ["logmonkey"], "egress": [{"hosts": ["./*"]}]}
        ]
    }))
}

#[test]
fn scenario3_workload_exception_adds_to_the_namespace_egress() {
    let pol = exception_policy();
    let mesh = |cfg: EnvoyConfig| {
        cfg.service("logcatcher", "logmonkey", &[80])
            .service("cockroachdb", "prod", &[26257])
            .wasm_filter(&pol)
    };
    let batman = mesh(
        EnvoyConfig::new("prod")
            .label("app.kubernetes.io/name", "batman-app")
            .label("version", "v2"),
    )
    .start();
    let r = get(
        batman.listener_port(80),
        "logcatcher.logmonkey.svc.cluster.local",
        "/",
    );
    assert_allowed(&r, "logcatcher", "logmonkey", 80, "batman -> logcatcher");
    let r = get(batman.listener_port(26257), "cockroachdb:26257", "/");
    assert_allowed(&r, "cockroachdb", "prod", 26257, "batman keeps ./*");
    assert!(batman.wait_for_log("workload=permit-logs-to-logmonkey", WAIT));
    assert_counter(&batman, "allowed", 2);

    let robin = mesh(EnvoyConfig::new("prod").label("app.kubernetes.io/name", "robin-app")).start();
    let r = get(robin.listener_port(80), "logcatcher.logmonkey", "/");
    assert_denied(&r, "not-allowed", "robin -> logcatcher");
    assert_eq!(robin.upstream_hits("logcatcher", "logmonkey", 80), 0);
    let r = get(robin.listener_port(26257), "cockroachdb.prod:26257", "/");
    assert_allowed(&r, "cockroachdb", "prod", 26257, "robin -> own db");
    assert!(robin.wait_for_log("workload=- labels={app.kubernetes.io/name=robin-app}", WAIT));
}

// === Scenario 4: Host spoofing and duplicate Host headers ===

#[test]
fn scenario4_spoofed_and_duplicate_hosts_are_denied() {
    let pol = crdb_policy("enforce");
    let envoy = crdb_mesh("prod").wasm_filter(&pol).start();
    let port = envoy.listener_port(26257);
    // Routes ignore the Host's port (Istio 1.20+, `ignore_port_in_host_matching`): an allowed
    // service's name with another port reaches that service on this listener's port, which is
    // where the bytes go, so it is allowed.
    let r = get(port, "cockroachdb.prod.svc.cluster.local:8080", "/");
    assert_allowed(
        &r,
        "cockroachdb",
        "prod",
        26257,
        "allowed name, port ignored",
    );
    // A mesh service that has no route on this port: Envoy finds none and passes the request
    // through to whatever address was dialled (here: the canary).
    let r = get(port, "istiod.istio-system.svc.cluster.local:26257", "/");
    assert_denied(&r, "authority-mismatch", "service name, passthrough");
    assert!(r.body.contains("via PassthroughCluster"), "{}", r.body);
    // An unknown host through passthrough under REGISTRY_ONLY.
    let r = get(port, "downloads.example.org", "/");
    assert_denied(&r, "not-in-registry", "unknown host, passthrough");
    // Two Host headers: Envoy joins them with a comma and routes to the catch-all.
    let r = raw_http1(
        port,
        b"GET / HTTP/1.1\r\nHost: cockroachdb.prod:26257\r\nHost: cockroachdb.uat:26257\r\nConnection: close\r\n\r\n",
    );
    assert_denied(&r, "malformed-authority", "duplicate Host");
    assert_eq!(
        envoy.canary_hits(),
        0,
        "the passthrough destination was reached"
    );
    assert_eq!(envoy.upstream_hits("cockroachdb", "uat", 26257), 0);
    assert_counter(&envoy, "denied.authority_mismatch", 1);
    assert_counter(&envoy, "denied.not_in_registry", 1);
    assert_counter(&envoy, "denied.malformed_authority", 1);
    assert!(envoy.wait_for_log("reason=malformed-authority", WAIT));
}

// === Scenario 5: live policy updates through ECDS ===

#[test]
fn scenario5_policy_update_applies_live_and_a_bad_one_is_refused() {
    let deny_uat = crdb_policy("enforce");
    let envoy = crdb_mesh("prod").wasm_filter_ecds(&deny_uat).start();
    let port = envoy.listener_port(26257);
    let uat = "cockroachdb.uat.svc.cluster.local:26257";
    assert_denied(&get(port, uat, "/"), "not-allowed", "before update");

    // The new policy lets prod read uat's database.
    let allow_uat = policy(json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "prod", "namespaces": ["prod"],
                     "egress": [{"hosts": ["./*", "uat/cockroachdb.uat.svc.cluster.local"]}]}]
    }));
    assert_eq!(
        envoy.update_policy_and_wait(&allow_uat, WAIT),
        EcdsOutcome::Accepted
    );
    assert_allowed(
        &get(port, uat, "/"),
        "cockroachdb",
        "uat",
        26257,
        "after update",
    );

    // An invalid policy (unknown field, bad host) is refused; the previous policy keeps
    // enforcing, in both directions.
    let mark = envoy.log_mark();
    let broken = r#"{"apiVersion": "tenant-egress/v1", "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["nonsense"]}], "egres": []}]}"#;
    assert_eq!(
        envoy.update_policy_and_wait(broken, WAIT),
        EcdsOutcome::Rejected
    );
    assert!(envoy.wait_for_log_after(mark, "refusing the policy", WAIT));
    assert!(envoy.wait_for_log_after(mark, "unknown field \"egres\"", WAIT));
    assert!(envoy.wait_for_log_after(mark, "tenants[0].egress[0].hosts[0]", WAIT));
    assert!(envoy
        .wait_for_counter("tenant_egress.config_errors", 1, WAIT)
        .is_some_and(|n| n >= 1));
    assert_allowed(
        &get(port, uat, "/"),
        "cockroachdb",
        "uat",
        26257,
        "after refused update",
    );
    let dev = "cockroachdb.dev.svc.cluster.local:26257";
    assert_denied(&get(port, dev, "/"), "not-allowed", "after refused update");
    assert_eq!(envoy.upstream_hits("cockroachdb", "dev", 26257), 0);
}

// === Scenario 6: audit mode ===

#[test]
fn scenario6_audit_mode_blocks_nothing_but_reports() {
    let envoy = crdb_mesh("prod").wasm_filter(&crdb_policy("audit")).start();
    let port = envoy.listener_port(26257);
    let r = get(port, "cockroachdb.uat.svc.cluster.local:26257", "/");
    assert_allowed(&r, "cockroachdb", "uat", 26257, "audit lets it through");
    let r = get(port, "cockroachdb:26257", "/");
    assert_allowed(&r, "cockroachdb", "prod", 26257, "own db");
    assert_counter(&envoy, "audit_denied", 1);
    assert_counter(&envoy, "audit_denied.not_allowed", 1);
    assert_counter(&envoy, "allowed", 1);
    assert_counter(&envoy, "denied", 0);
    assert!(envoy.wait_for_log(
        "audit-denied source=prod tenant=prod destination=cockroachdb.uat.svc.cluster.local:26257",
        WAIT
    ));
}

// === Scenario 7: no NAMESPACE metadata ===

#[test]
fn scenario7_proxy_without_namespace_denies_everything() {
    let envoy = crdb_mesh("prod")
        .without_namespace_metadata()
        .wasm_filter(&crdb_policy("enforce"))
        .start();
    let port = envoy.listener_port(26257);
    for host in [
        "cockroachdb.prod.svc.cluster.local:26257",
        "cockroachdb.uat:26257",
        "x.example",
    ] {
        let r = get(port, host, "/");
        assert_denied(&r, "unknown-source", host);
        assert!(r.body.contains("no NAMESPACE node metadata"));
    }
    assert_eq!(envoy.upstream_hits("cockroachdb", "prod", 26257), 0);
    assert_eq!(envoy.canary_hits(), 0);
    assert_counter(&envoy, "denied.unknown_source", 3);
    assert!(envoy.wait_for_log("no NAMESPACE node metadata", WAIT));
}

// === The core's request vectors, replayed through Envoy ===

/// Vectors that map onto this harness: an authority Envoy routes to the vector's cluster
/// (a Kubernetes service in `cluster.local`, the authority one of its Istio aliases), or a
/// passthrough the harness can produce (an authority no route matches).
#[test]
fn vectors_replay_through_envoy() {
    use tenant_egress_core::vectors;
    let file = vectors::load().unwrap();
    // Group by (policy, source namespace, labels): one sidecar each.
    type Key = (String, String, BTreeMap<String, String>);
    let mut groups: BTreeMap<Key, Vec<&vectors::Case>> = BTreeMap::new();
    let mut skipped = 0;
    for case in &file.cases {
        let req = &case.request;
        let (Some(ns), Some(authority)) = (&req.source.namespace, &req.authority) else {
            skipped += 1;
            continue;
        };
        if ns.is_empty() || req.authority_repeated || !replayable(case) {
            skipped += 1;
            continue;
        }
        groups
            .entry((case.policy.clone(), ns.clone(), req.source.labels.clone()))
            .or_default()
            .push(case);
        let _ = authority;
    }
    let mut replayed = 0;
    for ((pol, ns, labels), cases) in &groups {
        let doc = file.policies[pol].to_string();
        let mut cfg = EnvoyConfig::new(ns).wasm_filter(&doc);
        for (k, v) in labels {
            cfg = cfg.label(k, v);
        }
        let mut services: BTreeMap<(String, String), Vec<u16>> = BTreeMap::new();
        let mut passthrough_ports = Vec::new();
        for case in cases {
            match k8s_cluster(case.request.cluster.as_deref()) {
                Some((svc, sns, port)) => services.entry((svc, sns)).or_default().push(port),
                None => passthrough_ports.push(80),
            }
        }
        for ((svc, sns), ports) in &mut services {
            ports.sort_unstable();
            ports.dedup();
            cfg = cfg.service(svc, sns, ports);
        }
        if services.values().all(|p| !p.contains(&80)) && !passthrough_ports.is_empty() {
            cfg = cfg.listener(80);
        }
        let envoy = cfg.start();
        for case in cases {
            let port = k8s_cluster(case.request.cluster.as_deref()).map_or(80, |(_, _, p)| p);
            let authority = case.request.authority.as_deref().unwrap_or_default();
            let r = get(envoy.listener_port(port), authority, "/");
            let what = format!("vector {} ({})", case.name, case.note);
            match (
                case.expect.decision.as_str(),
                case.expect.enforced.unwrap_or(true),
            ) {
                ("allow", _) | ("deny", false) => {
                    assert_eq!(r.status, 200, "{what}: {r:?}");
                    assert!(r.header("x-tenant-egress-denied").is_none(), "{what}");
                }
                _ => assert_denied(&r, &case.expect.reason, &what),
            }
            replayed += 1;
        }
    }
    assert!(
        replayed >= 18,
        "only {replayed} vectors replayed ({skipped} skipped)"
    );
}

/// `outbound|PORT||svc.ns.svc.cluster.local` -> (svc, ns, port).
fn k8s_cluster(cluster: Option<&str>) -> Option<(String, String, u16)> {
    let rest = cluster?.strip_prefix("outbound|")?;
    let (port, rest) = rest.split_once('|')?;
    let (subset, host) = rest.split_once('|')?;
    if !subset.is_empty() {
        return None;
    }
    let base = host.strip_suffix(".svc.cluster.local")?;
    let (svc, ns) = base.split_once('.')?;
    Some((svc.to_owned(), ns.to_owned(), port.parse().ok()?))
}

fn replayable(case: &tenant_egress_core::vectors::Case) -> bool {
    let req = &case.request;
    if req.protocol != tenant_egress_core::Protocol::Http {
        return false; // TCP/TLS vectors are replayed by tests/tests/tcp.rs.
    }
    let authority = req.authority.as_deref().unwrap_or_default();
    if !authority.is_ascii() || authority.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        // Envoy's codec rejects these with 400 before any filter runs.
        return false;
    }
    match (req.cluster.as_deref(), k8s_cluster(req.cluster.as_deref())) {
        (Some(_), Some((svc, ns, port))) => {
            // The harness routes only Istio's aliases to the service's cluster.
            let src = req.source.namespace.as_deref();
            let lower = authority.to_ascii_lowercase();
            let trimmed = lower.replacen(".:", ":", 1);
            let trimmed = trimmed.trim_end_matches('.');
            let routed = istio_domains(&svc, &ns, port, src)
                .iter()
                .any(|d| d == trimmed);
            routed
                && req.destination_namespace.as_deref().is_none_or(|d| d == ns)
                && !trimmed.ends_with('.')
                && !lower.contains(".:")
                && !lower.ends_with('.')
        }
        // Passthrough in the vector and an authority no route of the harness can match (not a
        // cluster-local name).
        (Some("PassthroughCluster"), None) => {
            !authority.contains(".svc") && authority.split('.').count() > 2
        }
        _ => false,
    }
}

// Every scenario above again, with each mesh service behind its destination sidecar: the
// verdict at the end that decides must be the same, and the destination must deny, on the
// caller's mTLS identity alone, what the caller's end denied (`tenant_egress_tests::ends`).
tenant_egress_tests::both_ends_tests!(
    scenario1_helloworld_every_source_destination_port,
    deny_body_terse_by_default_full_on_request,
    scenario2_each_tenant_reaches_only_its_own_database,
    scenario3_workload_exception_adds_to_the_namespace_egress,
    scenario4_spoofed_and_duplicate_hosts_are_denied,
    scenario5_policy_update_applies_live_and_a_bad_one_is_refused,
    scenario6_audit_mode_blocks_nothing_but_reports,
    scenario7_proxy_without_namespace_denies_everything,
    vectors_replay_through_envoy,
);
