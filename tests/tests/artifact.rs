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
    // Exactly the exports of filter/exports.txt (scripts/trim-exports.sh): every ABI callback
    // the filter implements, and no other (Envoy enters the VM for each one exported).
    let list = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../filter/exports.txt"),
    )
    .unwrap();
    let mut want: Vec<&str> = list
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    want.sort_unstable();
    let mut got = exports(&bytes);
    got.sort_unstable();
    assert_eq!(
        got, want,
        "the module's exports are not filter/exports.txt's"
    );
    for needed in [
        "proxy_abi_version_0_2_1",
        "proxy_on_request_headers",
        "proxy_on_new_connection",
    ] {
        assert!(got.contains(&needed.to_owned()), "{needed} is not exported");
    }
}

/// The names in a module's export section (WebAssembly core spec 5.5.10: section id 7, a
/// vector of name + kind + index, numbers as unsigned LEB128).
fn exports(wasm: &[u8]) -> Vec<String> {
    fn leb(b: &[u8], i: &mut usize) -> usize {
        let (mut r, mut shift) = (0usize, 0);
        loop {
            let x = b[*i];
            *i += 1;
            r |= usize::from(x & 0x7f) << shift;
            shift += 7;
            if x < 0x80 {
                return r;
            }
        }
    }
    let mut i = 8;
    while i < wasm.len() {
        let id = wasm[i];
        i += 1;
        let size = leb(wasm, &mut i);
        if id == 7 {
            let mut j = i;
            let n = leb(wasm, &mut j);
            return (0..n)
                .map(|_| {
                    let len = leb(wasm, &mut j);
                    let name = String::from_utf8(wasm[j..j + len].to_vec()).unwrap();
                    j += len + 1; // the name, then the kind byte
                    leb(wasm, &mut j); // the index
                    name
                })
                .collect();
        }
        i += size;
    }
    Vec::new()
}
