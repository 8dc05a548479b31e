//! The destination end: replays `testdata/inbound-vectors.json`, and asks every caller-side
//! vector of `testdata/vectors.json` again at the destination, where it must get the same
//! verdict (the destination decides with the caller's own decision function).
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tenant_egress_core::authority::{parse_cluster, Cluster};
use tenant_egress_core::explain::{End, RequestSpec};
use tenant_egress_core::inbound::istio_sni_for_cluster;
use tenant_egress_core::vectors;

#[test]
fn every_inbound_vector_decides_as_expected() {
    let file = vectors::load_inbound().expect("inbound-vectors.json parses");
    let policies = vectors::compile_policies(&file).expect("vector policies compile");
    let failures: Vec<String> = file
        .cases
        .iter()
        .filter_map(|c| vectors::check(&policies, c).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(file.cases.len() >= 15, "the corpus shrank");
    let mut names = std::collections::HashSet::new();
    assert!(file.cases.iter().all(|c| names.insert(&c.name)));
}

/// The caller-side request, as the destination sees it: the caller's identity (its namespace,
/// service account `default`), Istio's SNI for the routed cluster, the destination's namespace.
fn at_destination(req: &RequestSpec) -> Option<RequestSpec> {
    let cluster = req.cluster.as_deref()?;
    let Ok(Cluster::Outbound { host, .. }) = parse_cluster(cluster) else {
        return None;
    };
    let ns = req.destination_namespace.clone().or_else(|| {
        let h = host.as_str();
        let rest = h.strip_suffix(".svc.cluster.local")?;
        rest.rsplit_once('.').map(|(_, ns)| ns.to_owned())
    })?;
    let caller_ns = req.source.namespace.as_deref()?;
    Some(RequestSpec {
        at: End::Destination,
        caller: Some(format!("spiffe://cluster.local/ns/{caller_ns}/sa/default")),
        sni: istio_sni_for_cluster(cluster),
        authority: req.authority.clone(),
        authority_repeated: req.authority_repeated,
        destination_namespace: Some(ns),
        services: vec![host.as_str().to_owned()],
        protocol: req.protocol,
        ..RequestSpec::default()
    })
}

#[test]
fn every_caller_side_vector_gets_the_same_verdict_at_the_destination() {
    let file = vectors::load().unwrap();
    let policies = vectors::compile_policies(&file).unwrap();
    let mut compared = 0;
    let mut differ = Vec::new();
    for case in &file.cases {
        let policy = &policies[&case.policy];
        let Some(inbound) = at_destination(&case.request) else {
            continue;
        };
        // A policy's own clusterDomain is the caller's; these vectors use the default one.
        if policy.cluster_domain() != "cluster.local" {
            continue;
        }
        let (src, _) = case.request.report(policy);
        let (dst, report) = inbound.report(policy);
        compared += 1;
        // Labels are invisible at the destination: a label-only exception may admit more there,
        // never less.
        // An IP-literal :authority (a ClusterIP) is checked against the dialled address at the
        // caller's end only: the destination never sees that address, and there the SNI alone
        // names the service (the request lands on it whatever the Host says).
        let ip_authority = case
            .request
            .authority
            .as_deref()
            .and_then(|a| tenant_egress_core::authority::parse_authority(a.as_bytes()).ok())
            .is_some_and(|a| a.kind == tenant_egress_core::authority::HostKind::Ip);
        let same = if ip_authority && src.reason == tenant_egress_core::Reason::AuthorityMismatch {
            true
        } else if case.request.source.labels.is_empty() {
            (src.allowed, src.enforced) == (dst.allowed, dst.enforced)
        } else {
            !src.allowed || dst.allowed
        };
        if !same {
            differ.push(format!(
                "{}: caller's end {} ({}), destination {} ({})",
                case.name,
                src.verdict(),
                src.reason,
                dst.verdict(),
                report.explanation
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(compared >= 20, "only {compared} vectors compared");
}
