//! # tenant-egress-core: the pure policy core
//!
//! Where the rules live. The policy document ([`spec`]), its validation ([`validate`]), Istio's
//! `namespace/dnsName` host grammar and which entry wins ([`pattern`], [`name`]), Istio's
//! listener model: which egress entry applies on which port with which protocol, and how a
//! workload exception merges with its tenant ([`listeners`], shared with the Sidecar
//! generator), the strict request parsers ([`authority`]), the compiled matcher ([`Policy`]),
//! the request-time decision ([`Policy::decide`]) and its human/JSON report ([`explain`]).
//!
//! The rest of the project links this crate and adds one job each: the proxy-wasm filter
//! (`filter/`), the `tenant-egress` CLI with Istio generate/import/graph (`config/`), the Envoy
//! test kit (`tests/`) and the benchmarks (`bench/`).
//!
//! This crate must not depend on proxy-wasm, YAML or clap: the same code runs natively (tests, CLI,
//! criterion) and inside the Envoy filter compiled to `wasm32-wasip1`, so "it validates on my
//! laptop" means "Envoy will accept it". Errors are the same everywhere; warnings (the
//! `warnings` feature, on by default) are computed where a person reads them, not in the filter.
//!
//! ```
//! use tenant_egress_core::{Policy, Request, Source, Target};
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
pub mod cases;
pub mod decision;
pub mod explain;
pub mod inbound;
pub mod listeners;
pub mod name;
pub mod network;
pub mod pattern;
pub mod policy;
pub mod reach;
pub mod shard;
pub mod spec;
pub mod validate;
pub mod vectors;

pub use decision::{
    Decision, Destination, Detail, Protocol, Reason, Request, RuleId, RuleInfo, Source, Target,
};
pub use policy::{InboundCaller, InboundService, Policy, PolicyError, RoutedCluster, SourceScope};
pub use spec::PolicySpec;
pub use validate::{InvalidPolicy, ValidationError, Warning};
