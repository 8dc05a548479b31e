//! Faults: what happens when things go wrong must be what the documentation says.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tenant_egress_tests::*;

const WAIT: Duration = Duration::from_secs(5);

fn crdb_policy() -> String {
    json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}]}]
    })
    .to_string()
}

fn mesh() -> EnvoyConfig {
    EnvoyConfig::new("prod")
        .service("cockroachdb", "prod", &[26257])
        .service("cockroachdb", "uat", &[26257])
}

/// Builds the filter with the test-only `fault-injection` feature into its own target dir.
fn fault_injection_wasm() -> PathBuf {
    let root = workspace_root();
    let target = root.join("target").join("fault-injection");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--release",
            "--locked",
            "-p",
            "tenant-egress-filter",
            "--target",
            "wasm32-wasip1",
            "--features",
            "fault-injection",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the fault-injection filter failed"
    );
    target.join("wasm32-wasip1/release/tenant_egress_filter.wasm")
}

/// A crashed VM under FAIL_CLOSED: the crashing request and every later one get a 503,
/// never an unchecked request; the panic is in Envoy's log through the filter's panic hook.
#[test]
fn crashed_vm_fails_closed() {
    let wasm = fault_injection_wasm();
    let envoy = mesh()
        .wasm_file(&wasm)
        .wasm_failure_policy("FAIL_CLOSED")
        .wasm_filter(&crdb_policy())
        .start();
    let port = envoy.listener_port(26257);
    let prod = "cockroachdb.prod.svc.cluster.local:26257";
    assert_eq!(get(port, prod, "/").status, 200, "before the crash");
    let r = get_with_headers(port, prod, "/", &[("x-tenant-egress-test-panic", "1")]);
    assert_eq!(r.status, 503, "the crashing request: {r:?}");
    for _ in 0..3 {
        let r = get(port, "cockroachdb.uat.svc.cluster.local:26257", "/");
        assert_eq!(
            r.status, 503,
            "after the crash, a would-be-denied request: {r:?}"
        );
        let r = get(port, prod, "/");
        assert_eq!(
            r.status, 503,
            "after the crash, a would-be-allowed request: {r:?}"
        );
    }
    assert_eq!(
        envoy.upstream_hits("cockroachdb", "prod", 26257),
        1,
        "only the pre-crash request"
    );
    assert_eq!(envoy.upstream_hits("cockroachdb", "uat", 26257), 0);
    assert!(envoy.wait_for_log("panic, the VM will abort: panicked at", WAIT));
    assert!(envoy.wait_for_log("fault injection: x-tenant-egress-test-panic", WAIT));
}

/// An invalid policy at start-up: Envoy refuses to start (the filter's on_configure returns
/// false), listing every error. Nothing runs unchecked.
#[test]
fn invalid_policy_at_startup_refuses_to_start() {
    let broken = r#"{"apiVersion": "tenant-egress/v1", "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["prod", "*/10.0.0.1"]}]}]}"#;
    let err = match mesh().wasm_filter(broken).try_start() {
        Ok(_) => panic!("Envoy started with an invalid policy"),
        Err(e) => e,
    };
    let out = err.output();
    assert!(
        out.contains("refusing the policy (no policy is loaded): 2 error(s)"),
        "{out}"
    );
    assert!(
        out.contains(
            "tenants[0].egress[0].hosts[0]: \"prod\" is not of the form namespace/dnsName"
        ),
        "{out}"
    );
    assert!(
        out.contains("tenants[0].egress[0].hosts[1]: \"*/10.0.0.1\" names IP address"),
        "{out}"
    );
    let empty = mesh().wasm_filter("").try_start();
    assert!(
        empty.is_err(),
        "Envoy started with an empty plugin configuration"
    );
}

/// A policy at the size limit the benchmarks use (100,000 host entries) loads in every VM
/// and enforces.
#[test]
fn hundred_thousand_rule_policy_loads_and_enforces() {
    let mut hosts: Vec<String> = (0..100_000)
        .map(|i| format!("ext-{}/svc-{i}.ext-{}.svc.cluster.local", i % 500, i % 500))
        .collect();
    hosts.push("./*".into());
    let doc = json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": hosts}]}]
    })
    .to_string();
    let envoy = mesh()
        .service("svc-99999", "ext-499", &[80])
        .service("svc-1", "ext-2", &[80])
        .wasm_filter(&doc)
        .start();
    assert!(envoy.wait_for_log(
        "): mode=enforce tenants=1 namespaces=1 host_rules=100001",
        WAIT
    ));
    let r = get(
        envoy.listener_port(80),
        "svc-99999.ext-499.svc.cluster.local",
        "/",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "upstream=svc-99999.ext-499:80\n");
    let r = get(envoy.listener_port(80), "svc-1.ext-2", "/");
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-tenant-egress-denied"), Some("not-allowed"));
    assert_eq!(envoy.upstream_hits("svc-1", "ext-2", 80), 0);
    let r = get(envoy.listener_port(26257), "cockroachdb:26257", "/");
    assert_eq!(r.status, 200);
    let rss = rss_kib(envoy.pid());
    eprintln!(
        "Envoy RSS with a 100,000-rule policy loaded: {} MiB",
        rss / 1024
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A freshly started proxy whose FIRST policy is refused, delivered as Istio delivers a
/// WasmPlugin (ECDS, no default configuration): no request passes unchecked. The filter has
/// no configuration at all, so Envoy answers every request itself (500, empty body) and
/// nothing reaches an upstream; the refusal is logged. The first valid policy then takes over
/// without a restart.
#[test]
fn first_policy_refused_over_ecds_fails_closed() {
    let broken = r#"{"apiVersion": "tenant-egress/v1", "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["nonsense"]}]}]}"#;
    let envoy = mesh().wasm_filter_ecds(broken).start();
    assert!(envoy.wait_for_log("refusing the policy (no policy is loaded)", WAIT));
    let port = envoy.listener_port(26257);
    for host in [
        "cockroachdb.prod.svc.cluster.local:26257",
        "cockroachdb.uat.svc.cluster.local:26257",
    ] {
        // Envoy's own answer for a filter without configuration: 500, empty body.
        let r = get(port, host, "/");
        assert_eq!((r.status, r.body.as_str()), (500, ""), "{host}: {r:?}");
        assert_eq!(r.header("x-tenant-egress-denied"), None, "{r:?}");
    }
    assert_eq!(envoy.upstream_hits("cockroachdb", "prod", 26257), 0);
    assert_eq!(envoy.upstream_hits("cockroachdb", "uat", 26257), 0);
    assert_eq!(
        envoy.update_policy_and_wait(&crdb_policy(), WAIT),
        EcdsOutcome::Accepted
    );
    let r = get(port, "cockroachdb.prod.svc.cluster.local:26257", "/");
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(port, "cockroachdb.uat.svc.cluster.local:26257", "/");
    assert_eq!(r.status, 403, "{r:?}");
}

// The faults of the caller's end with each mesh service behind its destination sidecar: the
// destinations run the shipped filter with the same policy, refuse to start on an invalid one,
// and take a policy update over ECDS with the caller (`tenant_egress_tests::ends`). The
// 100,000-rule policy is left out: four more Envoys compiling it cost minutes on CI's two
// cores, and the destination compiles the same policy with the same code.
tenant_egress_tests::both_ends_tests!(
    crashed_vm_fails_closed,
    invalid_policy_at_startup_refuses_to_start,
    first_policy_refused_over_ecds_fails_closed,
);
