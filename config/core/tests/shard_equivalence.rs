//! Sharded distribution decides as the whole policy: for every source namespace, the decision
//! under the document that namespace's sidecars load (its shard, or the mesh-wide fallback for
//! a namespace no tenant owns) equals the decision under the whole policy. Over the request
//! vectors and over random policies, HTTP and TCP.
// proptest needs OS randomness, which wasm32-unknown-unknown lacks: native only.
#![cfg(not(target_arch = "wasm32"))]
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/policies.rs"]
mod policies;

use proptest::prelude::*;
use tenant_egress_core::shard::{fallback, shard_for};
use tenant_egress_core::{
    vectors, Decision, Policy, PolicySpec, Protocol, Request, Source, Target,
};

/// Rule paths name the tenant by its index, which a shard renumbers (its one tenant is
/// `tenants[0]`): compare them without it.
fn without_tenant_index(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("tenants[") {
        out.push_str(&rest[..i + "tenants[".len()]);
        rest = &rest[i + "tenants[".len()..];
        rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('_');
    }
    out.push_str(rest);
    out
}

/// What the sidecars of `namespace` load: its shard, or the fallback when no tenant owns it
/// (checking that the fallback stands aside exactly in the tenant namespaces).
fn loaded_by(spec: &PolicySpec, namespace: Option<&str>) -> Policy {
    let fb = Policy::from_spec(&fallback(spec)).expect("the fallback is a valid policy");
    let owned = namespace.is_some_and(|ns| {
        spec.tenants
            .iter()
            .any(|t| t.namespaces.iter().any(|n| n == ns))
    });
    assert_eq!(
        namespace.is_some_and(|ns| fb.delegates(ns)),
        owned,
        "{namespace:?}"
    );
    match namespace {
        Some(ns) if owned => {
            let shard = shard_for(spec, ns);
            assert_eq!(shard.tenants.len(), 1);
            Policy::from_spec(&shard).unwrap_or_else(|e| panic!("shard {ns} is invalid: {e}"))
        }
        _ => fb,
    }
}

/// A decision as comparable across documents: rule and tenant by name and text.
fn comparable(p: &Policy, d: &Decision) -> String {
    let rule = d
        .rule
        .and_then(|r| p.rule(r))
        .map(|r| (without_tenant_index(&r.path), r.text.clone()));
    let tenant = d.tenant.and_then(|t| p.tenant_name(t));
    format!(
        "allowed={} enforced={} reason={:?} tenant={tenant:?} rule={rule:?} destination={:?} detail={:?}",
        d.allowed, d.enforced, d.reason, d.destination, d.detail
    )
}

#[test]
fn every_vector_decides_the_same_under_its_shard() {
    let file = vectors::load().unwrap();
    let mut compared = 0;
    for case in &file.cases {
        let doc = &file.policies[&case.policy];
        let (spec, _) = tenant_egress_core::validate::validate_value(doc.clone()).unwrap();
        let whole = Policy::from_spec(&spec).unwrap();
        let part = loaded_by(&spec, case.request.source.namespace.as_deref());
        let (_, want) = case.request.report(&whole);
        let (_, got) = case.request.report(&part);
        let want = without_tenant_index(&serde_json::to_string(&want).unwrap());
        let got = without_tenant_index(&serde_json::to_string(&got).unwrap());
        assert_eq!(got, want, "vector {} ({})", case.name, case.note);
        compared += 1;
    }
    assert!(compared > 50, "only {compared} vectors");
}

/// Every request a pod in `ns` with `labels` makes to the probe destinations, HTTP and TCP, by
/// FQDN and (HTTP) by Istio's short names, each decision made comparable.
fn decisions(policy: &Policy, ns: &str, labels: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (host, dest_ns) in policies::destinations() {
        let short = host.strip_suffix(".svc.cluster.local").map(str::to_owned);
        let mut names = vec![host.clone()];
        names.extend(short.iter().cloned());
        names.extend(short.map(|s| format!("{s}.svc")));
        names.extend(host.split('.').next().map(str::to_owned));
        for &port in policies::PROBE_PORTS {
            let cluster = format!("outbound|{port}||{host}");
            for name in &names {
                for protocol in [Protocol::Http, Protocol::Tcp] {
                    let authority = format!("{name}:{port}");
                    let d = policy.decide(&Request {
                        source: Source {
                            namespace: Some(ns),
                            labels,
                        },
                        target: Target {
                            authority: Some(authority.as_bytes()),
                            cluster: Some(&cluster),
                            destination_namespace: Some(&dest_ns),
                            protocol,
                            ..Target::default()
                        },
                    });
                    out.push(format!(
                        "{ns} {labels:?} -> {authority} via {cluster} {protocol:?}: {}",
                        comparable(policy, &d)
                    ));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_source_namespace_decides_the_same_under_its_shard(doc in policies::policy()) {
        let Ok((spec, _)) = tenant_egress_core::validate::validate_value(doc.clone()) else {
            return Ok(());
        };
        let whole = Policy::from_spec(&spec).unwrap();
        let mut sources: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for w in &spec.tenants[0].workloads {
            sources.push(w.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        }
        for ns in policies::NAMESPACES.iter().chain(&["elsewhere"]) {
            let part = loaded_by(&spec, Some(ns));
            for labels in &sources {
                let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let want = decisions(&whole, ns, &labels);
                let got = decisions(&part, ns, &labels);
                for (w, g) in want.iter().zip(&got) {
                    prop_assert_eq!(g, w, "{:#}", doc);
                }
            }
        }
    }
}
