//! Reload without a stall: request latency through a real Envoy (one worker) while the policy
//! is replaced by file-based ECDS every 1.5 s, against the same load without updates. Once with
//! the shard a tenant namespace's sidecars load (`generate`'s default) and once with the whole
//! policy (`--shard none`): each update makes the worker compile its document again while
//! requests wait.
//!
//! `reload [RULES] [SECONDS] [NAMESPACE]` (defaults 100000, 20, `tenant-1-a`); needs the built
//! filter (`scripts/setup.sh`) and Envoy, as the Envoy tests do. Prints one line per document
//! and phase: requests, p50, p99, max, and the ECDS reloads Envoy counted.
// A bench tool, not the proxy: a failed set-up ends it with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tenant_egress_bench::{generate_policy, DEFAULT_SEED};
use tenant_egress_core::shard::shard_for;
use tenant_egress_tests::{get, EnvoyConfig};

/// The update period the issue measured with.
const PERIOD: Duration = Duration::from_millis(1500);

struct Phase {
    latencies: Vec<Duration>,
    reloads: u64,
    failed: usize,
}

impl Phase {
    fn line(&self, what: &str) -> String {
        let mut l = self.latencies.clone();
        l.sort();
        let at = |q: f64| {
            l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        format!(
            "{what:<32} {:>7} requests  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  reloads {:>3}  non-200 {}",
            l.len(),
            at(0.50),
            at(0.99),
            l.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            self.reloads,
            self.failed
        )
    }
}

/// Requests `host` through `port` for `seconds`, one at a time, while `update` (if any) is
/// called every [`PERIOD`] on this thread.
fn phase(
    envoy: &tenant_egress_tests::Envoy,
    port: u16,
    host: &str,
    seconds: u64,
    update: Option<&dyn Fn(usize)>,
) -> Phase {
    let before = envoy.ecds_counts().reload;
    let stop = AtomicBool::new(false);
    let (latencies, failed) = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let mut latencies = Vec::new();
            let mut failed = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = get(port, host, "/");
                latencies.push(t.elapsed());
                if r.status != 200 {
                    failed += 1;
                }
            }
            (latencies, failed)
        });
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut n = 0;
        while Instant::now() < end {
            std::thread::sleep(PERIOD.min(end.saturating_duration_since(Instant::now())));
            if let Some(update) = update {
                if Instant::now() < end {
                    n += 1;
                    update(n);
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    Phase {
        latencies,
        reloads: envoy.ecds_counts().reload - before,
        failed,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rules: usize = args.get(1).map_or(100_000, |a| a.parse().expect("RULES"));
    let seconds: u64 = args.get(2).map_or(20, |a| a.parse().expect("SECONDS"));
    let ns = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "tenant-1-a".to_owned());
    let doc = generate_policy(rules, DEFAULT_SEED);
    let (spec, _) = tenant_egress_core::validate::validate_value(doc).expect("a valid policy");
    let shard = shard_for(&spec, &ns);
    let tenant = shard
        .tenants
        .first()
        .expect("NAMESPACE belongs to a tenant");
    let hosts: usize = tenant
        .egress
        .iter()
        .chain(tenant.workloads.iter().flat_map(|w| w.egress.iter()))
        .map(|e| e.hosts.len())
        .sum();
    println!(
        "{rules}-rule policy, namespace {ns} (tenant {}, {hosts} host entries); {seconds} s per phase, updates every {} ms, one worker",
        tenant.name,
        PERIOD.as_millis()
    );
    // Two versions of each document that differ only in what a denial answers, so each update
    // is a new configuration (Envoy reloads it) deciding the same.
    let versions = |spec: &tenant_egress_core::PolicySpec| -> [String; 2] {
        let mut a = spec.clone();
        a.deny_status = 403;
        let mut b = spec.clone();
        b.deny_status = 451;
        [
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap(),
        ]
    };
    for (what, docs) in [
        ("shard", versions(&shard)),
        ("whole policy", versions(&spec)),
    ] {
        println!("{what}: {} bytes of plugin configuration", docs[0].len());
        let envoy = EnvoyConfig::new(&ns)
            .service("api", &ns, &[8080])
            .wasm_filter_ecds(&docs[0])
            .start();
        let port = envoy.listener_port(8080);
        let host = format!("api.{ns}:8080");
        // Warm up (and check that the request is allowed).
        let deadline = Instant::now() + Duration::from_secs(60);
        while get(port, &host, "/").status != 200 {
            assert!(
                Instant::now() < deadline,
                "{what}: the request is not allowed"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let quiet = phase(&envoy, port, &host, seconds, None);
        println!("{}", quiet.line(&format!("{what}, no updates")));
        let update = |n: usize| envoy.update_policy(&docs[n % 2]);
        let loaded = phase(&envoy, port, &host, seconds, Some(&update));
        println!("{}", loaded.line(&format!("{what}, updates every 1.5 s")));
    }
}
