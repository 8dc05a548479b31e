//! # tenant-egress filter
//!
//! The thin proxy-wasm shell around the policy core (`tenant_egress_core`): Istio loads the same
//! .wasm as an HTTP filter (WasmPlugin `type: HTTP`, one context per request) and as a network
//! filter (`type: NETWORK`, one context per TCP/TLS connection); which one is learnt from Envoy,
//! never from the root id. Dependencies run one way, top to bottom:
//!
//! - `lib.rs`: the entry point (`proxy_wasm::main!`).
//! - `root.rs`: the root context. Compiles and swaps the policy, learns the filter kind,
//!   creates the per-request/per-connection contexts, flushes counters on a timer.
//! - `http.rs`, `tcp.rs`: the two context kinds, thin adapters from Envoy's callbacks (`tcp.rs`
//!   keeps the per-connection verdict).
//! - `enforce.rs`: the one gather -> decide -> count/log/act path both kinds use.
//! - `state.rs`: what one configuration shares (compiled policy, resolved source, property
//!   paths, counters, per-cluster cache).
//! - `metrics.rs`: batched counters. `reply.rs`: denial body and log line (pure).
//!   `pairs.rs`: the proxy-wasm map encoding (pure).
//! - `host.rs`: the only file that calls the host; per-request calls go through its `Host`
//!   trait, so `enforce.rs` and `tcp.rs` are unit-tested natively against a fake host.
#![deny(missing_docs)]

pub mod enforce;
pub mod host;
pub mod http;
pub mod metrics;
pub mod pairs;
pub mod reply;
pub mod root;
pub mod state;
pub mod tcp;

/// The module's entry point: `_initialize`, which Envoy calls once per VM.
#[allow(unsafe_code)] // proxy_wasm::main! exports an `extern "C"` symbol (`#[no_mangle]`).
mod entry {
    use super::*;

    proxy_wasm::main! {{
        // Registers the `log` crate backend. Host calls are not allowed during `_initialize`
        // (V8: "restricted_callback"), so the proxy's own level is adopted in `on_vm_start`.
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        // After set_log_level, which installs the SDK's hook (it unwraps inside the hook).
        host::install_panic_hook();
        // Only the root context factory: no `set_http_context`/`set_stream_context`, so the
        // SDK asks the root's `get_type` which kind each new context is (`root.rs`).
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(root::Root::default())
        });
    }}
}
