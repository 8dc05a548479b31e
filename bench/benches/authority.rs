//! `authority/<kind>`: [`parse_authority`] on short and long hosts (the first thing every
//! decision does with the request). `cluster/<kind>`: [`parse_cluster`] on Istio cluster names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenant_egress_bench::authorities;
use tenant_egress_core::authority::{parse_authority, parse_cluster};

fn authority(c: &mut Criterion) {
    let mut g = c.benchmark_group("authority");
    g.throughput(Throughput::Elements(1));
    for (name, raw) in authorities() {
        assert!(parse_authority(&raw).is_ok(), "{name}");
        g.bench_with_input(BenchmarkId::from_parameter(name), &raw, |b, raw| {
            b.iter(|| parse_authority(black_box(raw)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cluster");
    g.throughput(Throughput::Elements(1));
    for (name, cluster) in [
        (
            "outbound",
            "outbound|8080||svc-0.tenant-1-a.svc.cluster.local",
        ),
        ("wildcard", "outbound|443||*.partner-0.example.com"),
        ("passthrough", "PassthroughCluster"),
    ] {
        assert!(parse_cluster(cluster).is_ok(), "{name}");
        g.bench_with_input(BenchmarkId::from_parameter(name), cluster, |b, cluster| {
            b.iter(|| parse_cluster(black_box(cluster)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = authority
}
criterion_main!(benches);
