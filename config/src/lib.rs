//! # tenant-egress policy core
//!
//! The pure half of tenant-egress: the policy document ([`spec`]), its validation
//! ([`validate`]), the compiled matcher ([`Policy`]) and the request-time decision
//! ([`Policy::decide`]). With the default `cli` feature it also holds the Istio manifest
//! generators and the `tenant-egress` command.
//!
//! This crate must not depend on proxy-wasm: the same code runs natively (tests, CLI,
//! criterion) and inside the Envoy filter compiled to `wasm32-wasip1`, so "it validates on my
//! laptop" means "Envoy will accept it".
//!
//! ```
//! use tenant_egress_config::{Policy, Request, Source, Target};
//!
//! let (policy, _warnings) = Policy::from_json(br#"{
//!     "apiVersion": "tenant-egress/v1",
//!     "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}]}]
//! }"#)?;
//! let decision = policy.decide(&Request {
//!     source: Source { namespace: Some("prod"), labels: &[] },
//!     target: Target {
//!         authority: Some(b"db.prod.svc.cluster.local:26257"),
//!         cluster: Some("outbound|26257||db.prod.svc.cluster.local"),
//!         ..Target::default()
//!     },
//! });
//! assert!(decision.allowed);
//! assert_eq!(decision.reason.as_str(), "allowed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod authority;
pub mod decision;
pub mod explain;
#[cfg(feature = "cli")]
pub mod manifest;
pub mod name;
pub mod pattern;
pub mod policy;
pub mod spec;
pub mod validate;
pub mod vectors;

pub use decision::{
    Decision, Destination, Detail, Protocol, Reason, Request, RuleId, RuleInfo, Source, Target,
};
pub use policy::{Policy, PolicyError, SourceScope};
pub use spec::PolicySpec;
pub use validate::{InvalidPolicy, ValidationError, Warning};
