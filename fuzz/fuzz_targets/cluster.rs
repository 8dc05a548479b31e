//! An arbitrary string as Istio's upstream cluster name: no panic, only Istio's names
//! recognized, outbound clusters re-format to themselves. Invariants:
//! `tenant_egress_fuzz::check_cluster`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Envoy hands the filter the cluster name as bytes; the filter only decides on UTF-8.
    if let Ok(name) = std::str::from_utf8(data) {
        tenant_egress_fuzz::check_cluster(name);
    }
});
