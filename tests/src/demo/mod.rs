//! The local demo (`scripts/demo.sh`, `demo/`) on the test kit: ten Envoys on 127.0.0.1 (the
//! mesh playing every upstream, one Istio-shaped sidecar per source identity enforcing
//! `demo/policy/`, and the both-ends part: prod's database behind its own sidecar, deciding
//! on the caller's mTLS identity, with a caller of prod's and uat's bypass) and a table of
//! requests and connections.
//!
//! - [`topology`]: the services, the sidecars and every fixed port;
//! - [`render`](mod@render): the files in `demo/` (sidecars, mesh, docker-compose, ports.env) and the drift
//!   check, rendered with the kit's [`EnvoyConfig`](crate::EnvoyConfig);
//! - [`requests`]: the request table, checked against the policy (the core's decision) and the
//!   running Envoys;
//! - [`ends`]: the both-ends Envoys' configurations and connections (a bypass refused at the
//!   destination), checked the same way at each end.
//!
//! The `tenant-egress-demo` binary (`tests/src/bin/demo.rs`) runs these for `scripts/demo.sh`;
//! `tests/tests/demo.rs` runs them on free ports.

pub mod ends;
pub mod render;
pub mod requests;
pub mod topology;

pub use ends::{make_certs, Connection, ConnectionResult, CONNECTIONS};
pub use render::{check, demo_dir, policy_json, read_policy, render, render_committed, write};
pub use requests::{format_report, format_table, run, Outcome, Report, Row, RowResult, TABLE};
pub use topology::{
    end, sidecar, sidecar_config, End, Ports, Sidecar, ENDS, EXTERNAL, PKI_RELATIVE, SERVICES,
    SIDECARS,
};

/// The demo's plain-text tables: each column padded to its widest cell, two spaces apart.
pub(crate) struct TextTable {
    widths: Vec<usize>,
}

impl TextTable {
    /// The widths of `header` and every row.
    pub(crate) fn new<R: AsRef<[String]>>(header: &[String], rows: &[R]) -> TextTable {
        let widths = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(AsRef::as_ref)
                    .chain(std::iter::once(header))
                    .filter_map(|r| r.get(i).map(String::len))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        TextTable { widths }
    }

    /// One line of cells.
    pub(crate) fn line(&self, cells: &[String]) -> String {
        let s: Vec<String> = cells
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.join("  ").trim_end().to_string() + "\n"
    }

    /// The header line and the dashes under it.
    pub(crate) fn head(&self, header: &[String]) -> String {
        let dashes: Vec<String> = self.widths.iter().map(|w| "-".repeat(*w)).collect();
        self.line(header) + &self.line(&dashes)
    }
}

/// The committed demo policy (`demo/policy/`), compiled: what the tables' unit tests check
/// their expectations against.
#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
fn committed_policy() -> tenant_egress_core::Policy {
    let json = render::read_policy(&render::demo_dir()).unwrap();
    tenant_egress_core::Policy::from_json(json.as_bytes())
        .unwrap()
        .0
}
