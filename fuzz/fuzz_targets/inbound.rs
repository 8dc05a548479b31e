//! The destination end: caller identity, SNI, authority, namespace and services as arbitrary
//! bytes. Invariants: `tenant_egress_fuzz::check_inbound`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenant_egress_fuzz::check_inbound(data);
});
