//! The seam: the only file that calls the proxy-wasm host.
//!
//! Every host call crosses the VM boundary and costs far more than the decision itself, so the
//! functions here are few and targeted: one call returns one request header (`:authority`,
//! which in Envoy also holds any `host` and every repeated value, see
//! `enforce::request_authority`), one call returns each property; the whole header map is
//! never read. Errors become `None`: the
//! decision treats a missing input as unknown and fails closed. We use `hostcalls::*`, never
//! the SDK's trait defaults, which `unwrap()` host results.
//!
//! What a request or connection calls goes through the [`Host`] trait, so the decision path
//! (`enforce.rs`) and the per-connection state machine (`tcp.rs`) run natively in unit tests
//! against a fake host that also counts the calls. Configuration-time calls (plugin
//! configuration, counters, timer, log level) are plain functions.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

/// The calls a request or connection makes. [`Proxy`] is the real host.
pub trait Host {
    /// Reads a property by path (`["xds", "cluster_name"]`). `None` when absent or on error.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// The first value of one request header, as raw bytes. `None` when absent or on error.
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Sends a local reply and stops the request.
    fn send_local_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    /// Closes the downstream (client) side of a TCP connection.
    fn close_downstream(&self);
    /// Closes the upstream (server) side of a TCP connection.
    fn close_upstream(&self);
}

/// The proxy this module runs in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proxy;

impl Host for Proxy {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        property(path)
    }

    /// A non-UTF-8 `:authority` must reach the parser as bytes: the SDK's string getters
    /// would panic on it.
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn send_local_reply(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body));
    }

    fn close_downstream(&self) {
        let _ = hostcalls::close_downstream();
    }

    fn close_upstream(&self) {
        let _ = hostcalls::close_upstream();
    }
}

/// Reads a property by path. `None` when absent or on error.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(v) => v,
        Err(status) => {
            log::debug!("property {} unavailable: {status:?}", path.join("."));
            None
        }
    }
}

/// Which filter Envoy runs a context in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// The HTTP filter (`envoy.filters.http.wasm`; WasmPlugin `type: HTTP`): one context per
    /// request.
    Http,
    /// The network filter (`envoy.filters.network.wasm`; WasmPlugin `type: NETWORK`): one
    /// context per TCP/TLS connection.
    Network,
}

impl FilterKind {
    /// `HTTP` or `network`, for log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterKind::Http => "HTTP",
            FilterKind::Network => "network",
        }
    }
}

/// Which filter Envoy is creating the current context for. Only meaningful while Envoy creates
/// a context (`proxy_on_context_create`, where the SDK asks the root context's `get_type`): the
/// new context is then the current one.
///
/// The ABI does not say which kind it is creating (`proxy_on_context_create(id, root_id)`), and
/// proxy-wasm-rust-sdk 0.2 files the context as HTTP or stream by the root's answer; a wrong
/// answer makes the SDK's dispatcher panic at the first callback of the other kind. So ask the
/// stream itself: the HTTP connection manager gives every HTTP stream its protocol (`HTTP/1.1`,
/// `HTTP/2`, ...) when it creates it, which `request.protocol` reads; a connection that a
/// network filter sees has no HTTP protocol (asserted on Envoy 1.40 in `tests/tests/kind.rs`).
pub fn context_kind() -> FilterKind {
    kind_of_stream(property(&["request", "protocol"]).as_deref())
}

/// The kind, from the new stream's `request.protocol`: any HTTP protocol is the HTTP filter;
/// none (absent, empty, or unreadable) is a connection.
pub fn kind_of_stream(protocol: Option<&[u8]>) -> FilterKind {
    match protocol {
        Some(p) if !p.is_empty() => FilterKind::Http,
        _ => FilterKind::Network,
    }
}

/// Which end of a request the filter runs at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Direction {
    /// The caller's sidecar (outbound listeners): decides on the source's own metadata.
    #[default]
    Outbound,
    /// The destination's sidecar (inbound listeners): decides on the caller's mTLS identity.
    Inbound,
}

impl Direction {
    /// `outbound` or `inbound`, for log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Which end the current stream's listener is: `xds.listener_direction`, Envoy's
/// `TrafficDirection` as an int64 (little-endian), 1 = INBOUND, which Istio sets on its inbound
/// listeners (`virtualInbound`). Read once per root context, with [`context_kind`]: one filter
/// configuration sits on listeners of one direction (generate gives the inbound plugins their
/// own root ids).
pub fn listener_direction() -> Direction {
    direction_of(property(&["xds", "listener_direction"]).as_deref())
}

/// The direction from `xds.listener_direction`'s bytes: INBOUND (1) or anything else.
pub fn direction_of(value: Option<&[u8]>) -> Direction {
    match value.and_then(|v| <[u8; 8]>::try_from(v).ok()) {
        Some(b) if i64::from_le_bytes(b) == 1 => Direction::Inbound,
        _ => Direction::Outbound,
    }
}

/// Adopts the proxy's current log level, so messages it would drop never cross the boundary.
pub fn adopt_log_level() {
    proxy_wasm::set_log_level(hostcalls::get_log_level().unwrap_or(LogLevel::Info));
}

/// The plugin configuration bytes (the policy document).
pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
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
        // The SDK's dispatcher panics with "invalid context_id" when Envoy calls a context
        // with a callback of the kind it was not created as. [`context_kind`] prevents that
        // unless one root context serves both kinds, which is what Envoy does for an HTTP and
        // a network filter with the same vm_id, root_id and configuration: say what to change.
        let hint = if info.payload_as_str() == Some("invalid context_id")
            && info
                .location()
                .is_some_and(|l| l.file().ends_with("dispatcher.rs"))
        {
            " (one root context serves one filter kind: an HTTP and a network filter with the same vm_id, root_id and configuration share one; give them different root ids)"
        } else {
            ""
        };
        let _ = hostcalls::log(
            LogLevel::Critical,
            &format!("tenant-egress: panic, the VM will abort: {info}{hint}"),
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_protocol_is_the_http_filter_anything_else_a_connection() {
        for p in ["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3"] {
            assert_eq!(kind_of_stream(Some(p.as_bytes())), FilterKind::Http, "{p}");
        }
        assert_eq!(kind_of_stream(None), FilterKind::Network);
        assert_eq!(kind_of_stream(Some(b"")), FilterKind::Network);
    }

    #[test]
    fn only_traffic_direction_inbound_is_the_destination_end() {
        assert_eq!(direction_of(Some(&1i64.to_le_bytes())), Direction::Inbound);
        assert_eq!(direction_of(Some(&2i64.to_le_bytes())), Direction::Outbound);
        assert_eq!(direction_of(Some(&0i64.to_le_bytes())), Direction::Outbound);
        assert_eq!(direction_of(Some(b"\x01")), Direction::Outbound);
        assert_eq!(direction_of(None), Direction::Outbound);
    }
}
