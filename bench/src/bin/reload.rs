//! Reload without a stall: request latency through a real Envoy (one worker) while the policy
//! is replaced by file-based ECDS every 1.5 s, against the same load without updates.
//!
//! `--end caller` (the default) measures the caller's own sidecar: once with the shard a tenant
//! namespace's sidecars load (`generate`'s default) and once with the whole policy: each update
//! makes the worker compile its document again while requests wait.
//!
//! `--end destination` measures the destination end: the SERVER-side sidecar of NAMESPACE
//! loads that namespace's destination shard (`destination_shard_for`, what `generate` gives
//! it) and decides on the caller's mTLS identity. The test kit's both-ends sidecars
//! (`tenant_egress_tests::ends`) carry the request: a caller in a namespace of another tenant
//! whose rules name a service of NAMESPACE sends through its bypass listener (its own filter
//! not on the path; Istio's mTLS with its SPIFFE certificate and SNI), the destination's
//! inbound listener decides with the filter, the application answers. Only the destination's
//! document is replaced.
//!
//! `reload [--end caller|destination] [RULES] [SECONDS] [NAMESPACE]` (defaults caller, 100000,
//! 20; NAMESPACE `tenant-1-a` for the caller end, for the destination end the first namespace
//! of the tenant with closest to 100 host entries, as `policy-memory --destination-shard`);
//! needs the built filter (`scripts/setup.sh`) and Envoy, as the Envoy tests do. Prints one line
//! per document and phase: requests, p50, p99, max, and the ECDS reloads Envoy counted (at the
//! destination end: the destination's, and the requests its filter allowed).
// A bench tool, not the proxy: a failed set-up ends it with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tenant_egress_bench::{
    generate_policy, hundred_rule_tenant, tenant_host_entries, DEFAULT_SEED,
};
use tenant_egress_core::pattern::{HostEntry, HostPattern, NsSelector};
use tenant_egress_core::shard::{destination_shard_for, shard_for};
use tenant_egress_core::spec::{Mode, TenantSpec};
use tenant_egress_core::PolicySpec;
use tenant_egress_tests::{get, Ends, Envoy, EnvoyConfig};

/// The update period the issue measured with.
const PERIOD: Duration = Duration::from_millis(1500);

/// The service port of the measured requests.
const PORT: u16 = 8080;

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
            "{what:<38} {:>7} requests  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  reloads {:>3}  non-200 {}",
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
/// called every [`PERIOD`] on this thread; `updated` is the Envoy whose ECDS reloads count.
fn phase(
    updated: &Envoy,
    port: u16,
    host: &str,
    seconds: u64,
    update: Option<&dyn Fn(usize)>,
) -> Phase {
    let before = updated.ecds_counts().reload;
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
        reloads: updated.ecds_counts().reload - before,
        failed,
    }
}

/// Sends requests until one is answered 200 (the first waits for the filter to load).
fn warm_up(port: u16, host: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(port, host, "/").status != 200 {
        assert!(
            Instant::now() < deadline,
            "{what}: the request is not allowed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two versions of a document that differ only in what a denial answers, so each update is a
/// new configuration (Envoy reloads it) deciding the same.
fn versions(spec: &PolicySpec) -> [String; 2] {
    let mut a = spec.clone();
    a.deny_status = 403;
    let mut b = spec.clone();
    b.deny_status = 451;
    [
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap(),
    ]
}

/// The caller's own sidecar, with the shard of `ns` and with the whole policy.
fn caller_end(rules: usize, seconds: u64, spec: &PolicySpec, ns: &str) {
    let shard = shard_for(spec, ns);
    let tenant = shard
        .tenants
        .first()
        .expect("NAMESPACE belongs to a tenant");
    println!(
        "{rules}-rule policy, namespace {ns} (tenant {}, {} host entries); {seconds} s per phase, updates every {} ms, one worker",
        tenant.name,
        tenant_host_entries(tenant),
        PERIOD.as_millis()
    );
    for (what, docs) in [
        ("shard", versions(&shard)),
        ("whole policy", versions(spec)),
    ] {
        println!("{what}: {} bytes of plugin configuration", docs[0].len());
        let envoy = EnvoyConfig::new(ns)
            .service("api", ns, &[PORT])
            .wasm_filter_ecds(&docs[0])
            .start();
        let port = envoy.listener_port(PORT);
        let host = format!("api.{ns}:{PORT}");
        warm_up(port, &host, what);
        let quiet = phase(&envoy, port, &host, seconds, None);
        println!("{}", quiet.line(&format!("{what}, no updates")));
        let update = |n: usize| envoy.update_policy(&docs[n % 2]);
        let loaded = phase(&envoy, port, &host, seconds, Some(&update));
        println!("{}", loaded.line(&format!("{what}, updates every 1.5 s")));
    }
}

/// A caller the destination shard of `ns` allows: a tenant other than the owner, enforcing,
/// with a portless entry naming one Kubernetes service of `ns` exactly
/// (`*/svc.ns.svc.<domain>` or `ns/svc.ns.svc.<domain>`). Its first namespace and that service.
fn allowed_caller<'a>(shard: &'a PolicySpec, ns: &str) -> Option<(&'a TenantSpec, String)> {
    let suffix = format!(".{ns}.svc.{}", shard.cluster_domain.trim_end_matches('.'));
    shard
        .tenants
        .iter()
        .filter(|t| !t.namespaces.iter().any(|n| n == ns))
        .filter(|t| t.mode.unwrap_or(shard.mode) == Mode::Enforce)
        .find_map(|t| {
            let svc = t
                .egress
                .iter()
                .filter(|e| e.port.is_none())
                .flat_map(|e| &e.hosts)
                .find_map(|h| {
                    // Read with the policy's own host grammar.
                    let entry: HostEntry = h.parse().ok()?;
                    let selects = match &entry.namespace {
                        NsSelector::Any => true,
                        NsSelector::Named(n) => n == ns,
                        NsSelector::Own => false,
                    };
                    let HostPattern::Exact(name) = &entry.host else {
                        return None;
                    };
                    let svc = name.strip_suffix(&suffix)?;
                    (selects && !entry.exclude && !svc.is_empty() && !svc.contains('.'))
                        .then(|| svc.to_owned())
                })?;
            Some((t, svc))
        })
}

/// The destination end: the destination shard of `ns` at the destination's sidecar.
fn destination_end(rules: usize, seconds: u64, spec: &PolicySpec, ns: &str) {
    let shard = destination_shard_for(spec, ns).expect("NAMESPACE belongs to a tenant");
    let (caller, svc) = allowed_caller(&shard, ns)
        .expect("no enforcing tenant of the destination shard names a service of NAMESPACE");
    let caller_ns = caller.namespaces.first().expect("a tenant has namespaces");
    let carried: usize = shard.tenants.iter().map(tenant_host_entries).sum();
    println!(
        "{rules}-rule policy, destination namespace {ns}: its destination shard carries {} tenants ({carried} host entries) and a directory of {}; caller {caller_ns} (tenant {}) -> {svc}.{ns}:{PORT} over mTLS; {seconds} s per phase, updates every {} ms, one worker per sidecar",
        shard.tenants.len(),
        spec.tenants.len(),
        caller.name,
        PERIOD.as_millis()
    );
    let docs = versions(&shard);
    let what = "destination shard";
    println!("{what}: {} bytes of plugin configuration", docs[0].len());
    // The caller's own filter gets the same document (the kit gives a destination the
    // destination shard of the caller's policy, and a destination shard is not cut again); it
    // is never updated, and the requests go to its bypass listener, where it is not on the path.
    let envoy = EnvoyConfig::new(caller_ns)
        .service(&svc, ns, &[PORT])
        .wasm_filter_ecds(&docs[0])
        .ends(Ends::Both)
        .start();
    let destination = envoy.destination(ns);
    let port = envoy.bypass_port(PORT);
    let host = format!("{svc}.{ns}:{PORT}");
    warm_up(port, &host, what);
    let allowed = || {
        destination
            .counter("tenant_egress.inbound.allowed")
            .unwrap_or(0)
    };
    // The filter flushes its counters on a timer: wait (bounded) until they count `want`.
    let allowed_by = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = allowed();
        while got < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            got = allowed();
        }
        got
    };
    let quiet_before = allowed_by(1);
    let quiet = phase(destination, port, &host, seconds, None);
    let quiet_allowed = allowed_by(quiet_before + quiet.latencies.len() as u64) - quiet_before;
    println!(
        "{}  allowed at the destination {quiet_allowed}",
        quiet.line(&format!("{what}, no updates"))
    );
    let update = |n: usize| destination.update_policy(&docs[n % 2]);
    let before = allowed();
    let loaded = phase(destination, port, &host, seconds, Some(&update));
    let loaded_allowed = allowed_by(before + loaded.latencies.len() as u64) - before;
    println!(
        "{}  allowed at the destination {loaded_allowed}",
        loaded.line(&format!("{what}, updates every 1.5 s"))
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let destination = match args.iter().position(|a| a == "--end") {
        Some(i) => {
            let end = args.get(i + 1).cloned().unwrap_or_default();
            args.drain(i..(i + 2).min(args.len()));
            match end.as_str() {
                "caller" => false,
                "destination" => true,
                _ => panic!("--end caller|destination, not {end:?}"),
            }
        }
        None => false,
    };
    let rules: usize = args.first().map_or(100_000, |a| a.parse().expect("RULES"));
    let seconds: u64 = args.get(1).map_or(20, |a| a.parse().expect("SECONDS"));
    let doc = generate_policy(rules, DEFAULT_SEED);
    let (spec, _) = tenant_egress_core::validate::validate_value(doc).expect("a valid policy");
    let ns = match args.get(2) {
        Some(ns) => ns.clone(),
        None if destination => hundred_rule_tenant(&spec)
            .and_then(|t| t.namespaces.first())
            .expect("a tenant with a namespace")
            .clone(),
        None => "tenant-1-a".to_owned(),
    };
    if destination {
        destination_end(rules, seconds, &spec, &ns);
    } else {
        caller_end(rules, seconds, &spec, &ns);
    }
}
