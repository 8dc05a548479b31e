//! `compile/<rules>`: [`Policy::from_json`], what the filter runs in `on_configure` (JSON parse,
//! validation, index build). `validate/<rules>`: [`validate::validate_json`] alone (parse +
//! shape + types + meaning). `from_spec/<rules>`: [`Policy::from_spec`] on a decoded spec
//! (meaning checks + index build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenant_egress_bench::{generate_policy_bytes, DEFAULT_SEED, SIZES};
use tenant_egress_core::{validate, Policy};

fn compile(c: &mut Criterion) {
    let docs: Vec<(usize, Vec<u8>)> = SIZES
        .iter()
        .map(|&n| (n, generate_policy_bytes(n, DEFAULT_SEED)))
        .collect();
    for (name, which) in [("compile", 0), ("validate", 1), ("from_spec", 2)] {
        let mut g = c.benchmark_group(name);
        for (n, bytes) in &docs {
            // Rules per second.
            g.throughput(Throughput::Elements(*n as u64));
            if *n >= 10_000 {
                g.sample_size(10);
            }
            let (spec, _) = validate::validate_json(bytes).expect("valid");
            g.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| match which {
                0 => b.iter(|| Policy::from_json(black_box(bytes)).map(|(p, _)| p.rule_count())),
                1 => b.iter(|| {
                    validate::validate_json(black_box(bytes)).map(|(s, _)| s.tenants.len())
                }),
                _ => b.iter(|| Policy::from_spec(black_box(&spec)).map(|p| p.rule_count())),
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = compile
}
criterion_main!(benches);
