//! The local demo (`scripts/demo.sh`, `demo/`) on the test kit: six Envoys on 127.0.0.1 (the
//! mesh playing every upstream, and one Istio-shaped sidecar per source identity enforcing
//! `demo/policy/`) and a table of requests.
//!
//! - [`topology`]: the services, the sidecars and every fixed port;
//! - [`render`](mod@render): the files in `demo/` (sidecars, mesh, docker-compose, ports.env) and the drift
//!   check, rendered with the kit's [`EnvoyConfig`](crate::EnvoyConfig);
//! - [`requests`]: the request table, checked against the policy (the core's decision) and the
//!   running Envoys.
//!
//! The `tenant-egress-demo` binary (`tests/src/bin/demo.rs`) runs these for `scripts/demo.sh`;
//! `tests/tests/demo.rs` runs them on free ports.

pub mod render;
pub mod requests;
pub mod topology;

pub use render::{check, demo_dir, policy_json, read_policy, render, render_committed, write};
pub use requests::{format_table, run, Outcome, Row, RowResult, TABLE};
pub use topology::{sidecar, sidecar_config, Ports, Sidecar, EXTERNAL, SERVICES, SIDECARS};
