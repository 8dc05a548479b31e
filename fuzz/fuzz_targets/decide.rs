//! The whole decision: a policy (a vectors policy, a small grammar, or raw bytes) and a few
//! requests with arbitrary attributes. No panic, deterministic, fail-closed on a missing
//! source and on a malformed authority, `decide == decide_for(source())`.
//! Input format: `tenant_egress_fuzz::input`; invariants: `tenant_egress_fuzz::check_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_egress_fuzz::input::DecideInput;

fuzz_target!(|input: DecideInput| {
    tenant_egress_fuzz::check_decide(&input);
});
