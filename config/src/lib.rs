//! # tenant-egress-config: the companion crate
//!
//! The `tenant-egress` CLI (`src/bin/tenant-egress`) and the Istio objects it produces from
//! one policy: [`manifest`] generates the `Sidecar`s, `WasmPlugin`s and `EnvoyFilter`s,
//! imports existing Sidecars into a policy, and draws the tenant graph.
//!
//! Every rule of the policy itself (grammar, validation, listener model, decision) lives in
//! [`tenant_egress_core`], which the filter links too; this crate only translates it to and
//! from Istio's objects and YAML.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod load;
pub mod locate;
pub mod manifest;
pub mod policy_dir;
pub mod yaml;
