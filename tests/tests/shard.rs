//! Sharded distribution through a real Envoy: a sidecar in a tenant namespace gets two plugins
//! (the mesh-wide fallback from the root namespace and its namespace's shard), and its requests
//! are decided exactly once: by the shard, while the fallback stands aside (the namespace is in
//! its `delegatedNamespaces`), counted as `tenant_egress.fallback_skipped`. A namespace no
//! tenant owns gets only the fallback, which decides `unknownSource`. The plugin
//! configurations are the ones `tenant-egress generate` emits.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use tenant_egress_config::manifest::{self, DocKind, Options, Selection};
use tenant_egress_tests::*;

/// `generate`'s HTTP WasmPlugins' `pluginConfig`, by namespace.
fn plugin_configs() -> Vec<(String, String)> {
    let doc = json!({
        "apiVersion": "tenant-egress/v1",
        "unknownSource": "deny",
        "tenants": [
            {"name": "team-01", "namespaces": ["team-01"], "egress": [{"hosts": ["./*"]}]},
            {"name": "team-02", "namespaces": ["team-02"], "egress": [{"hosts": ["./*", "team-01/*"]}]},
            {"name": "team-03", "namespaces": ["team-03"], "egress": [{"hosts": ["./*"]}]}
        ]
    });
    let (spec, _) = tenant_egress_core::validate::validate_value(doc).unwrap();
    let mut opts = Options {
        selection: Selection::WasmPlugin,
        ..Options::default()
    };
    opts.wasm.url = "file:///tenant_egress_filter.wasm".into();
    let g = manifest::generate(&spec, &opts).unwrap();
    g.docs
        .iter()
        .filter(|d| d.kind == DocKind::WasmPlugin)
        .map(|d| d.value.to_json())
        // The caller's end (the destination's SERVER plugins carry the whole policy).
        .filter(|v| v["spec"]["type"] == "HTTP" && v["spec"]["match"][0]["mode"] == "CLIENT")
        .map(|v: Value| {
            (
                v["metadata"]["namespace"].as_str().unwrap().to_owned(),
                v["spec"]["pluginConfig"].to_string(),
            )
        })
        .collect()
}

fn config_of(configs: &[(String, String)], ns: &str) -> String {
    configs
        .iter()
        .find(|(n, _)| n == ns)
        .map(|(_, c)| c.clone())
        .unwrap_or_else(|| panic!("no plugin in {ns}: {configs:?}"))
}

/// Counters flush every 250 ms per root context: wait past a few flushes, so a second
/// decision would have been counted too.
fn settle() {
    std::thread::sleep(Duration::from_millis(1200));
}

#[test]
fn a_tenant_namespace_is_decided_once_by_its_shard() {
    let configs = plugin_configs();
    assert_eq!(
        configs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["istio-system", "team-01", "team-02", "team-03"]
    );
    let fallback = config_of(&configs, "istio-system");
    assert!(
        fallback.contains("\"delegatedNamespaces\":[\"team-01\",\"team-02\",\"team-03\"]"),
        "{fallback}"
    );
    // team-02's shard names every namespace of the policy, team-03 among them, which its
    // tenant does not (for Istio's short names).
    let shard = config_of(&configs, "team-02");
    assert!(
        shard.contains("\"knownNamespaces\":\"team-01 team-02 team-03\""),
        "{shard}"
    );
    let envoy = EnvoyConfig::new("team-02")
        .service("api", "team-01", &[8080])
        .service("db", "team-03", &[8080])
        .another_wasm_filter("tenant-egress-fallback", &fallback)
        .wasm_filter(&shard)
        .start();
    let ok = get(envoy.listener_port(8080), "api.team-01:8080", "/");
    assert_eq!(ok.status, 200, "team-02 may reach team-01: {ok:?}");
    assert_eq!(ok.body, "upstream=api.team-01:8080\n");
    let no = get(envoy.listener_port(8080), "db.team-03:8080", "/");
    assert_denied(&no, "not-allowed", "team-02 -> team-03");
    assert_eq!(envoy.upstream_hits("db", "team-03", 8080), 0);
    assert_counter(&envoy, "fallback_skipped", 2);
    assert_counter(&envoy, "allowed", 1);
    assert_counter(&envoy, "denied", 1);
    settle();
    // Exactly once: the fallback decided neither request.
    assert_counter(&envoy, "fallback_skipped", 2);
    assert_counter(&envoy, "allowed", 1);
    assert_counter(&envoy, "denied", 1);
    assert_counter(&envoy, "denied.no_tenant", 0);
    assert!(envoy.wait_for_log(
        "namespace delegated to its own plugin: standing aside",
        WAIT
    ));
}

#[test]
fn a_namespace_of_no_tenant_gets_unknown_source_from_the_fallback() {
    let configs = plugin_configs();
    assert!(!configs.iter().any(|(n, _)| n == "elsewhere"));
    let envoy = EnvoyConfig::new("elsewhere")
        .service("api", "team-01", &[8080])
        .wasm_filter(&config_of(&configs, "istio-system"))
        .start();
    let r = get(envoy.listener_port(8080), "api.team-01:8080", "/");
    assert_denied(&r, "no-tenant", "a namespace no tenant owns");
    assert_eq!(envoy.upstream_hits("api", "team-01", 8080), 0);
    assert_counter(&envoy, "denied.no_tenant", 1);
    settle();
    assert_counter(&envoy, "denied", 1);
    assert_counter(&envoy, "fallback_skipped", 0);
}
