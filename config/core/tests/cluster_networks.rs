//! `clusterNetworks`: validation of the CIDRs, the ALLOW_ANY warning, and the compiled set.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tenant_egress_core::validate::{validate_json, ErrorKind};
use tenant_egress_core::Policy;

fn doc(networks: serde_json::Value, outbound: &str) -> Vec<u8> {
    let mut d = serde_json::json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "dev", "namespaces": ["dev"], "outboundTrafficPolicy": outbound,
                     "egress": [{"hosts": ["./*"]}]},
                    {"name": "qa", "namespaces": ["qa"], "outboundTrafficPolicy": outbound,
                     "egress": [{"hosts": ["./*"]}]}]
    });
    if !networks.is_null() {
        d["clusterNetworks"] = networks;
    }
    d.to_string().into_bytes()
}

#[test]
fn allow_any_without_networks_warns_with_how_to_find_them() {
    let (_, warnings) = validate_json(&doc(serde_json::Value::Null, "ALLOW_ANY")).unwrap();
    let w = warnings
        .iter()
        .find(|w| w.path == "clusterNetworks")
        .expect("a clusterNetworks warning");
    assert!(w.message.contains("tenant(s) dev, qa use ALLOW_ANY"), "{w}");
    assert!(w.message.contains("service-cluster-ip-range"), "{w}");
    assert!(w.message.contains("cluster-cidr"), "{w}");
    // REGISTRY_ONLY tenants have no passthrough: no warning.
    let (_, warnings) = validate_json(&doc(serde_json::Value::Null, "REGISTRY_ONLY")).unwrap();
    assert!(
        warnings.iter().all(|w| w.path != "clusterNetworks"),
        "{warnings:?}"
    );
    // Declared: no warning, and the policy holds them in order.
    let nets = serde_json::json!(["10.96.0.0/12", "10.244.0.0/16", "fd00:10:244::/56"]);
    let (spec, warnings) = validate_json(&doc(nets, "ALLOW_ANY")).unwrap();
    assert!(
        warnings.iter().all(|w| w.path != "clusterNetworks"),
        "{warnings:?}"
    );
    let policy = Policy::from_spec(&spec).unwrap();
    let cidrs: Vec<String> = policy
        .cluster_networks()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(cidrs, ["10.96.0.0/12", "10.244.0.0/16", "fd00:10:244::/56"]);
}

#[test]
fn every_bad_cidr_is_reported_with_its_place() {
    let nets = serde_json::json!([
        "10.96.0.1/12",
        "10.96.0.0",
        "10.244.0.0/33",
        "not-an-ip/16",
        "::/129"
    ]);
    let err = validate_json(&doc(nets, "ALLOW_ANY")).unwrap_err();
    let got: Vec<String> = err.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "clusterNetworks[0]: \"10.96.0.1/12\" has host bits set; the network is \"10.96.0.0/12\"",
            "clusterNetworks[1]: \"10.96.0.0\" is not of the form address/prefix-length (for example \"10.96.0.0/12\")",
            "clusterNetworks[2]: \"10.244.0.0/33\" has a prefix length that is not 0..=32",
            "clusterNetworks[3]: \"not-an-ip/16\" has an address that is not IPv4 or IPv6",
            "clusterNetworks[4]: \"::/129\" has a prefix length that is not 0..=128",
        ]
    );
    assert!(err
        .errors
        .iter()
        .all(|e| matches!(e.kind, ErrorKind::Cidr(..))));
}

#[test]
fn mistyped_networks_are_errors() {
    let nets = serde_json::json!({"serviceCIDRs": ["10.96.0.0/12"]});
    let err = validate_json(&doc(nets, "ALLOW_ANY")).unwrap_err();
    let got: Vec<String> = err.errors.iter().map(ToString::to_string).collect();
    assert!(
        got.iter()
            .any(|e| e.starts_with("clusterNetworks: expected a list of strings")),
        "{got:?}"
    );
}
