//! Arbitrary bytes as an `:authority`: no panic, forbidden bytes always refused, accepted
//! hosts lowercase, normalization idempotent. Invariants: `tenant_egress_fuzz::check_authority`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenant_egress_fuzz::check_authority(data);
});
