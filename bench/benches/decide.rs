//! `decide/<case>/<rules>`: one decision on the filter's per-request path
//! ([`Policy::decide_for`] with the source resolved once, as the filter does per
//! configuration), for every case of [`tenant_egress_bench::cases`] at every policy size.
//! `decide_routed/<case>/<rules>`: the same with the cluster name parsed beforehand
//! ([`Policy::decide_routed`]), as the filter does once per distinct cluster.
//! `decide_with_source/<rules>`: [`Policy::decide`] including the source resolution.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenant_egress_bench::{cases, generate_policy_bytes, DEFAULT_SEED, SIZES};
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
