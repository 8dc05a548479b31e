//! The shipped .wasm: its size is a budget (issue: Performance), held here so it cannot creep.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tenant_egress_tests::wasm_path;

/// Every sidecar loads one copy per VM (one per worker thread plus the main thread's), and
/// Istio fetches the module per node.
const BUDGET_BYTES: u64 = 300_000;

#[test]
fn shipped_wasm_is_under_budget_and_has_no_debug_sections() {
    let path = wasm_path();
    let bytes = std::fs::read(&path).unwrap();
    eprintln!("{}: {} bytes", path.display(), bytes.len());
    assert!(
        (bytes.len() as u64) < BUDGET_BYTES,
        "{} is {} bytes, over the {BUDGET_BYTES}-byte budget",
        path.display(),
        bytes.len()
    );
    assert_eq!(&bytes[..4], b"\0asm", "not a wasm module");
    // wasm-opt stripped DWARF and the producers section.
    for section in [&b".debug_info"[..], b"producers"] {
        assert!(
            !bytes.windows(section.len()).any(|w| w == section),
            "section {:?} is still in the shipped module",
            String::from_utf8_lossy(section)
        );
    }
    // The proxy-wasm ABI entry points Envoy looks for are exported.
    for export in [
        &b"proxy_abi_version_0_2_1"[..],
        b"proxy_on_request_headers",
        b"proxy_on_new_connection",
    ] {
        assert!(
            bytes.windows(export.len()).any(|w| w == export),
            "export {:?} missing",
            String::from_utf8_lossy(export)
        );
    }
}
