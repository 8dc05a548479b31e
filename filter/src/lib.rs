//! # tenant-egress filter
//!
//! The thin proxy-wasm shell around the policy core: Istio loads it (WasmPlugin, `mode: CLIENT`)
//! into every sidecar's outbound HTTP filter chain. The root context compiles the policy and
//! resolves the source workload once per configuration; each request's HTTP context gathers the
//! routed destination and decides with [`tenant_egress_core::Policy::decide_for`].
//!
//! `host.rs` is the only module that talks to the host; `reply`, `metrics` names and `pairs`
//! are pure and unit-tested natively.
#![deny(missing_docs)]

pub mod host;
pub mod http;
pub mod metrics;
pub mod pairs;
pub mod reply;
pub mod root;
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
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(root::Root::default())
        });
    }}
}
