//! The seam: the only file that calls the proxy-wasm host.
//!
//! Every host call crosses the VM boundary and costs far more than the decision itself, so the
//! functions here are few and coarse: one call returns the whole request header map (needed
//! anyway to see repeated `:authority`/`host` values, since Envoy hands a wasm filter only the
//! first value of a repeated header), one returns each property. Errors become `None`: the
//! decision treats a missing input as unknown and fails closed. We use `hostcalls::*`, never
//! the SDK's trait defaults, which `unwrap()` host results.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

/// The proxy's current log level, to avoid crossing the boundary for messages it would drop.
pub fn log_level() -> LogLevel {
    hostcalls::get_log_level().unwrap_or(LogLevel::Info)
}

/// Reads a property by path (`["xds", "cluster_name"]`). `None` when absent or on error.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(v) => v,
        Err(status) => {
            log::debug!("property {} unavailable: {status:?}", path.join("."));
            None
        }
    }
}

/// The plugin configuration bytes (the policy document).
pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

/// All request headers, values as raw bytes (a non-UTF-8 `:authority` must reach the parser
/// as bytes: the SDK's string getters would panic on it).
pub fn request_headers() -> Vec<(String, Vec<u8>)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
}

/// Sends a local reply and stops the request.
pub fn send_local_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let _ = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body));
}

/// Closes the downstream (client) side of a TCP connection.
pub fn close_downstream() {
    let _ = hostcalls::close_downstream();
}

/// Closes the upstream (server) side of a TCP connection.
pub fn close_upstream() {
    let _ = hostcalls::close_upstream();
}

/// Defines (or finds: ids are shared across VMs by name) a counter.
pub fn define_counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

/// Adds `n` to a counter.
pub fn add(id: Option<u32>, n: u64) {
    if let (Some(id), Ok(n)) = (id, i64::try_from(n)) {
        if n > 0 {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}

/// Arms the root context's timer (`on_tick`).
pub fn set_tick_period(period: std::time::Duration) {
    let _ = hostcalls::set_tick_period(period);
}

/// Logs a panic through the proxy before the VM aborts (`panic = "abort"`), so a crash leaves
/// a reason in Envoy's log instead of only a trap.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(
            LogLevel::Critical,
            &format!("tenant-egress: panic, the VM will abort: {info}"),
        );
    }));
}
