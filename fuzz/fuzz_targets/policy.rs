//! Arbitrary bytes as a policy document: validation never panics, a policy that validates
//! also compiles, and the validated spec survives re-serialization unchanged.
//! Invariants: `tenant_egress_fuzz::check_policy`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tenant_egress_fuzz::check_policy(data);
});
