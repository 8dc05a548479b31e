//! `decide/<case>/<rules>`: one decision on the filter's per-request path
//! ([`Policy::decide_for`] with the source resolved once, as the filter does per
//! configuration), for every case of [`tenant_egress_bench::cases`] at every policy size.
//! `decide_routed/<case>/<rules>`: the same with the cluster name parsed beforehand
//! ([`Policy::decide_routed`]), as the filter does once per distinct cluster.
//! `decide_with_source/<rules>`: [`Policy::decide`] including the source resolution.
//! `decide_inbound/<case>/<rules>`: the same request decided at the DESTINATION end
//! ([`Policy::decide_inbound`]: the caller's SPIFFE id, Istio's SNI for the case's cluster, the
//! services of the inbound cluster), for every case whose destination is a mesh workload (its
//! namespace known); it must give the caller's answer, and cost about the same (it is the
//! caller's decision plus the identity and SNI parses).
//! `decide_inbound_cached/<case>/<rules>`: the destination end's per-request path in the filter
//! ([`Policy::decide_inbound_with`], the identity and the SNI resolved once, as the filter caches
//! them): the cell to compare with `decide_routed` (issue 12: no costlier than the caller's end).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenant_egress_bench::PROBE_NAMESPACE;
use tenant_egress_bench::{cases, generate_policy_bytes, DEFAULT_SEED, SIZES};
use tenant_egress_core::authority::{parse_cluster, Cluster};
use tenant_egress_core::explain::RequestSpec;
use tenant_egress_core::inbound::{istio_sni_for_cluster, Inbound};
use tenant_egress_core::{Policy, RoutedCluster};

fn policies() -> Vec<(usize, Policy)> {
    SIZES
        .iter()
        .map(|&n| {
            let bytes = generate_policy_bytes(n, DEFAULT_SEED);
            let (policy, _) = Policy::from_json(&bytes).expect("generated policy is valid");
            assert_eq!(policy.rule_count(), n);
            (n, policy)
        })
        .collect()
}

fn decide(c: &mut Criterion) {
    let policies = policies();
    let cases = cases();
    for case in &cases {
        let labels = case.labels();
        let req = case.request.as_request(&labels);
        let mut g = c.benchmark_group(format!("decide/{}", case.name));
        g.throughput(Throughput::Elements(1));
        for (n, policy) in &policies {
            // Built outside the timed loop, checked once.
            let scope = policy.source(&req.source);
            let target = req.target;
            let d = policy.decide_for(&scope, &target);
            assert_eq!(d.reason.as_str(), case.expect, "{} at {n}", case.name);
            g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
                b.iter(|| policy.decide_for(black_box(&scope), black_box(&target)))
            });
        }
        g.finish();
        // The filter's path for an outbound cluster: the name parsed once per distinct
        // cluster (cached in the VM), only the authority per request.
        let mut g = c.benchmark_group(format!("decide_routed/{}", case.name));
        g.throughput(Throughput::Elements(1));
        for (n, policy) in &policies {
            let scope = policy.source(&req.source);
            let target = req.target;
            let routed = RoutedCluster::parse(target.cluster);
            let d = policy.decide_routed(&scope, &target, &routed);
            assert_eq!(
                d,
                policy.decide_for(&scope, &target),
                "{} at {n}",
                case.name
            );
            g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
                b.iter(|| {
                    policy.decide_routed(black_box(&scope), black_box(&target), black_box(&routed))
                })
            });
        }
        g.finish();
    }

    // The destination end: a destination is a mesh workload, so only requests whose caller-side
    // decision knows the destination's namespace have one (not the external hosts of the other
    // cases); plus a Kubernetes service in a namespace the probe tenant does not import.
    let caller = format!("spiffe://cluster.local/ns/{PROBE_NAMESPACE}/sa/default");
    let mut inbound_cases: Vec<(&str, RequestSpec)> =
        cases.iter().map(|c| (c.name, c.request.clone())).collect();
    inbound_cases.push((
        "k8s_miss",
        RequestSpec {
            source: cases[0].request.source.clone(),
            authority: Some("svc-0.elsewhere:8080".into()),
            cluster: Some("outbound|8080||svc-0.elsewhere.svc.cluster.local".into()),
            ..RequestSpec::default()
        },
    ));
    for (name, req) in &inbound_cases {
        let Some(cluster) = req.cluster.as_deref() else {
            continue;
        };
        let Ok(Cluster::Outbound { host, .. }) = parse_cluster(cluster) else {
            continue;
        };
        let sni = istio_sni_for_cluster(cluster).unwrap();
        let services = [host.as_str()];
        // (size, policy, the destination's namespace as the caller's end resolved it)
        let cells: Vec<(usize, &Policy, String)> = policies
            .iter()
            .filter_map(|(n, policy)| {
                let (at_source, _) = req.report(policy);
                let ns = at_source.destination.namespace()?.to_owned();
                Some((*n, policy, ns))
            })
            .collect();
        if cells.is_empty() {
            continue;
        }
        // What the destination's proxy sees of this request, in each cell's namespace.
        let inbounds: Vec<Inbound<'_>> = cells
            .iter()
            .map(|(_, _, ns)| Inbound {
                namespace: Some(ns.as_str()),
                peer: Some(caller.as_bytes()),
                sni: Some(sni.as_bytes()),
                authority: req.authority.as_deref().map(str::as_bytes),
                authority_repeated: false,
                services: &services,
                protocol: req.protocol,
            })
            .collect();
        let mut g = c.benchmark_group(format!("decide_inbound/{name}"));
        g.throughput(Throughput::Elements(1));
        for ((n, policy, _), inbound) in cells.iter().zip(inbounds.iter().copied()) {
            let d = policy.decide_inbound(&inbound);
            let (at_source, _) = req.report(policy);
            assert_eq!(d.reason, at_source.reason, "{name} at {n}: both ends agree");
            g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
                b.iter(|| policy.decide_inbound(black_box(&inbound)))
            });
        }
        g.finish();
        // The filter's path at the destination, on the same footing as `decide_routed` at the
        // caller's: what the identity and the SNI resolve to is cached (per identity, per SNI
        // and inbound cluster), only the request's `:authority` is parsed per request.
        let mut g = c.benchmark_group(format!("decide_inbound_cached/{name}"));
        g.throughput(Throughput::Elements(1));
        for ((n, policy, _), inbound) in cells.iter().zip(inbounds.iter().copied()) {
            let who = policy.inbound_caller(inbound.namespace, inbound.peer);
            let what = policy.inbound_service(inbound.namespace, inbound.sni, inbound.services);
            let d = policy.decide_inbound_with(&who, &what, &inbound);
            assert_eq!(d, policy.decide_inbound(&inbound), "{name} at {n}");
            g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
                b.iter(|| {
                    policy.decide_inbound_with(
                        black_box(&who),
                        black_box(&what),
                        black_box(&inbound),
                    )
                })
            });
        }
        g.finish();
    }

    let case = &cases[0];
    let labels = case.labels();
    let req = case.request.as_request(&labels);
    let mut g = c.benchmark_group("decide_with_source");
    g.throughput(Throughput::Elements(1));
    for (n, policy) in &policies {
        g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
            b.iter(|| policy.decide(black_box(&req)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = decide
}
criterion_main!(benches);
