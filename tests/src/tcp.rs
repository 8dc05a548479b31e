//! Pieces for the network filter's tests (Istio WasmPlugin `type: NETWORK`): the filter's
//! Envoy config, the `tcp_proxy` after it, and a raw TCP exchange. Used by `tests/tests/tcp.rs`
//! and `tests/tests/kind.rs`, which write their own listeners.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use crate::wasm_path;

/// `envoy.filters.network.wasm` loading the shipped filter with `policy_json`, named and
/// rooted `root_id`, FAIL_CLOSED, in the VM `tenant-egress`.
pub fn network_wasm_filter(root_id: &str, policy_json: &str) -> Value {
    network_wasm_filter_file(root_id, policy_json, &wasm_path().to_string_lossy())
}

/// [`network_wasm_filter`] loading the module from `wasm` (for example a filename relative to
/// Envoy's working directory, as the demo's files have it).
pub fn network_wasm_filter_file(root_id: &str, policy_json: &str, wasm: &str) -> Value {
    json!({
        "name": root_id,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
            "config": {
                "name": root_id,
                "root_id": root_id,
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {
                    "vm_id": "tenant-egress",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm}}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": policy_json
                }
            }
        }
    })
}

/// `tcp_proxy` to `cluster`, as on Istio's outbound TCP filter chains.
pub fn tcp_proxy_filter(cluster: &str) -> Value {
    let stat = cluster.replace(['|', '.'], "_");
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": stat,
            "cluster": cluster
        }
    })
}

/// Connects to 127.0.0.1:`port`, writes `payload`, and reads what comes back until EOF, the
/// echo is complete, or a 2 s timeout. Empty when the connection was closed on us.
///
/// A listener probed by a [`crate::ends::TcpMesh`] that closes the connection has the same
/// bytes sent through the bypass, which the destination must close too.
pub fn tcp_exchange(port: u16, payload: &[u8]) -> Vec<u8> {
    let got = tcp_exchange_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)), payload);
    crate::ends::after_tcp_exchange(port, payload, &got);
    got
}

/// [`tcp_exchange`] with any address (a VIP inside a private network namespace, say).
pub fn tcp_exchange_at(addr: impl Into<std::net::SocketAddr>, payload: &[u8]) -> Vec<u8> {
    let addr = addr.into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("set_read_timeout");
    if s.write_all(payload).is_err() {
        return Vec::new();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < payload.len() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    got
}
