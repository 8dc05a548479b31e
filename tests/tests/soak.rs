//! A bounded soak at saturation through the filter: mixed allowed and denied traffic from
//! several keep-alive clients for `TENANT_EGRESS_SOAK_SECS` seconds (default 60). Zero
//! unexpected statuses, the denied upstream never reached, counters that add up, and memory
//! that stays put (RSS at start and end are printed; growth is bounded).
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tenant_egress_tests::*;

const CLIENTS: usize = 4;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    allowed: AtomicU64,
    denied: AtomicU64,
    unexpected: AtomicU64,
}

/// Sends requests over one keep-alive connection (reconnecting when Envoy closes it) until
/// `deadline`; even requests go to prod's database (allowed), odd ones to uat's (denied).
fn client(port: u16, deadline: Instant, tally: &Tally) {
    let allowed = b"GET / HTTP/1.1\r\nHost: cockroachdb.prod.svc.cluster.local:26257\r\n\r\n";
    let denied = b"GET / HTTP/1.1\r\nHost: cockroachdb.uat.svc.cluster.local:26257\r\n\r\n";
    let mut conn: Option<Http1Conn> = None;
    let mut i = 0u64;
    while Instant::now() < deadline {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Http1Conn::connect(port) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    tally.unexpected.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let want_allowed = i.is_multiple_of(2);
        i += 1;
        match c.request(if want_allowed { allowed } else { denied }) {
            Ok(r)
                if want_allowed
                    && r.status == 200
                    && r.body == "upstream=cockroachdb.prod:26257\n" =>
            {
                tally.allowed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r)
                if !want_allowed
                    && r.status == 403
                    && r.header("x-tenant-egress-denied") == Some("not-allowed") =>
            {
                tally.denied.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                eprintln!("unexpected response: {r:?}");
                tally.unexpected.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("request failed: {e}");
                tally.unexpected.fetch_add(1, Ordering::Relaxed);
                conn = None;
                continue;
            }
        }
        if c.peer_closed() {
            conn = None;
        }
    }
}

#[test]
fn soak_mixed_traffic_at_saturation() {
    let secs: u64 = std::env::var("TENANT_EGRESS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let policy = json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            {"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*", "istio-system/*"]}]},
            {"name": "uat", "namespaces": ["uat"], "egress": [{"hosts": ["./*"]}]}
        ]
    })
    .to_string();
    let envoy = EnvoyConfig::new("prod")
        .service("cockroachdb", "prod", &[26257])
        .service("cockroachdb", "uat", &[26257])
        // Per-request logs at info would measure the disk, not the filter.
        .log_level("warning")
        .component_log_level("wasm:warning")
        .wasm_filter(&policy)
        .start();
    let port = envoy.listener_port(26257);

    // Warm up, then measure.
    let warm = Tally::default();
    client(port, Instant::now() + Duration::from_secs(1), &warm);
    assert_eq!(warm.unexpected.load(Ordering::Relaxed), 0, "during warm-up");
    let rss_start = rss_kib(envoy.pid());

    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let tally = Arc::clone(&tally);
            std::thread::spawn(move || client(port, deadline, &tally))
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = rss_kib(envoy.pid());
    let allowed = tally.allowed.load(Ordering::Relaxed);
    let denied = tally.denied.load(Ordering::Relaxed);
    let unexpected = tally.unexpected.load(Ordering::Relaxed);
    eprintln!(
        "soak: {secs} s, {CLIENTS} clients: {allowed} allowed + {denied} denied = {:.0} req/s; \
         unexpected {unexpected}; Envoy RSS {} MiB at start, {} MiB at end",
        (allowed + denied) as f64 / elapsed,
        rss_start / 1024,
        rss_end / 1024
    );
    assert_eq!(unexpected, 0, "unexpected statuses or failed requests");
    assert!(allowed > 0 && denied > 0);
    assert_eq!(envoy.upstream_hits("cockroachdb", "uat", 26257), 0);
    let warm_allowed = warm.allowed.load(Ordering::Relaxed);
    let warm_denied = warm.denied.load(Ordering::Relaxed);
    let wait = Duration::from_secs(5);
    assert_eq!(
        envoy.wait_for_counter("tenant_egress.allowed", allowed + warm_allowed, wait),
        Some(allowed + warm_allowed)
    );
    assert_eq!(
        envoy.wait_for_counter(
            "tenant_egress.denied.not_allowed",
            denied + warm_denied,
            wait
        ),
        Some(denied + warm_denied)
    );
    // Stable memory: a leak of even a few hundred bytes per request would show here.
    assert!(
        rss_end <= rss_start + 32 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}
