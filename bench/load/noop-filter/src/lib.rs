//! A proxy-wasm HTTP filter that does nothing: every request continues untouched and no host
//! call is made. It measures what running any wasm filter costs in Envoy (creating the HTTP
//! context in the VM and calling into it for each request's headers).
//!
//! For attributing tenant-egress's own cost, its plugin configuration can name host calls to
//! make per request (and nothing else), comma-separated:
//! - `header-map`: the whole request header map (`proxy_get_header_map_pairs`), as
//!   tenant-egress read it on every request until 2026-12-01;
//! - `authority`: only the `:authority` value (`proxy_get_header_map_value`);
//! - `cluster`: the `xds.cluster_name` property (`proxy_get_property`).
//!
//! `authority,cluster` is the load benchmark's *floor* (issue 14): the two inputs any filter
//! deciding on the routed destination must fetch, and no decision.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

#[derive(Default, Clone, Copy)]
struct Calls {
    header_map: bool,
    authority: bool,
    cluster: bool,
}

#[derive(Default)]
struct Root {
    calls: Calls,
}

struct Noop {
    calls: Calls,
}

impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        for call in config.split(',').map(str::trim) {
            match call {
                "header-map" => self.calls.header_map = true,
                "authority" => self.calls.authority = true,
                "cluster" => self.calls.cluster = true,
                _ => {}
            }
        }
        true
    }
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop { calls: self.calls }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Noop {}
impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.calls.header_map {
            let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
        }
        if self.calls.authority {
            let _ = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":authority");
        }
        if self.calls.cluster {
            let _ = hostcalls::get_property(vec!["xds", "cluster_name"]);
        }
        Action::Continue
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}
