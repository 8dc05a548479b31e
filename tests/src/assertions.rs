//! Assertions shared by the integration tests, so every test judges a denial, an allowed
//! request and a counter the same way.

use std::time::Duration;

use crate::envoy::Envoy;
use crate::http::Response;

/// The first line of every denial body the filter sends (`filter/src/reply.rs`).
pub const DENIAL_MARKER: &str = "tenant-egress: request denied";

/// How long to wait for the filter's batched counters (flushed every 250 ms) and log lines.
pub const WAIT: Duration = Duration::from_secs(5);

/// The filter denied the request with `reason`: its 403, the `x-tenant-egress-denied` header,
/// the body marker, and no upstream answered.
#[track_caller]
pub fn assert_denied(r: &Response, reason: &str, what: &str) {
    assert_eq!(
        r.status, 403,
        "{what}: expected the filter's 403, got {r:?}"
    );
    assert_eq!(
        r.header("x-tenant-egress-denied"),
        Some(reason),
        "{what}: {r:?}"
    );
    assert!(
        r.body.starts_with(&format!("{DENIAL_MARKER} ({reason})")),
        "{what}: body {:?}",
        r.body
    );
    assert_eq!(r.header("x-upstream"), None, "{what}: reached an upstream");
}

/// The filter's counter `tenant_egress.<name>` equals `expected`. The filter batches its
/// counters, so a non-zero expectation is waited for (bounded) before it is required exactly;
/// check zero expectations after a non-zero one of the same test, since one flush carries all
/// counts of its period.
#[track_caller]
pub fn assert_counter(envoy: &Envoy, name: &str, expected: u64) {
    let full = format!("tenant_egress.{name}");
    let got = if expected > 0 {
        envoy.wait_for_counter(&full, expected, WAIT)
    } else {
        envoy.counter(&full)
    };
    assert_eq!(got.unwrap_or(0), expected, "counter {full}");
}
