//! Counters, defined once per configuration. Cardinality is bounded: one counter per outcome
//! and per reason code, never per host. Envoy 1.40's `/stats` lists them as
//! `wasmcustom.tenant_egress.*` (the Prometheus endpoint as `envoy_tenant_egress_*`); Istio needs
//! the `tenant_egress` prefix in `proxyStatsMatcher.inclusionPrefixes` to export them.

use std::cell::{OnceCell, RefCell};
use std::time::Duration;

use tenant_egress_core::Reason;

use crate::host::{self, Direction, FilterKind};

/// The stats prefix.
pub const PREFIX: &str = "tenant_egress";

/// How often batched counters reach Envoy's stats (the root context's timer).
pub const FLUSH_PERIOD: Duration = Duration::from_millis(250);

/// Counter name for an outcome and optional reason: `tenant_egress.denied.not_allowed`.
/// Reason codes are kebab-case; stat names use `_` so Prometheus names read the same.
pub fn stat_name(outcome: &str, reason: Option<Reason>) -> String {
    let mut s = String::from(PREFIX);
    s.push('.');
    s.push_str(outcome);
    if let Some(r) = reason {
        s.push('.');
        s.extend(r.as_str().chars().map(|c| if c == '-' { '_' } else { c }));
    }
    s
}

/// Counters for one configuration, batched: a request only bumps a number in the VM's own
/// memory, and [`Counters::flush`] (from the root context's timer, every
/// [`FLUSH_PERIOD`]) adds them to Envoy's stats. Each host call crosses the VM boundary, so
/// this takes one or two calls off every request; the stats lag by at most one period.
///
/// The names depend on the filter kind, which is known only when Envoy creates the first
/// context (`host::context_kind`): the root context calls [`Counters::define`] then, before
/// that context can count anything.
#[derive(Debug, Default)]
pub struct Counters {
    ids: OnceCell<CounterIds>,
    pending: RefCell<Pending>,
}

#[derive(Debug)]
struct CounterIds {
    allowed: Option<u32>,
    denied: Option<u32>,
    audit_denied: Option<u32>,
    gateway_passthrough: Option<u32>,
    fallback_skipped: Option<u32>,
    denied_by: [Option<u32>; REASONS],
    audit_by: [Option<u32>; REASONS],
}

#[derive(Debug, Default)]
struct Pending {
    allowed: u64,
    gateway_passthrough: u64,
    fallback_skipped: u64,
    denied_by: [u64; REASONS],
    audit_by: [u64; REASONS],
}

const REASONS: usize = Reason::ALL.len();

/// The outcome prefix of a filter kind: `""` for HTTP requests (`tenant_egress.denied...`),
/// `"connections."` for the network filter (`tenant_egress.connections.denied...`).
pub fn kind_prefix(kind: FilterKind) -> &'static str {
    match kind {
        FilterKind::Http => "",
        FilterKind::Network => "connections.",
    }
}

/// The end's prefix: `""` at the caller's end, `"inbound."` at the destination's.
pub fn direction_prefix(direction: Direction) -> &'static str {
    match direction {
        Direction::Outbound => "",
        Direction::Inbound => "inbound.",
    }
}

impl Counters {
    /// Counters whose names are not defined yet; counts wait in the VM until they are.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Defines every counter of `kind` at `direction` with the host, once (later calls do
    /// nothing). The destination end counts under `tenant_egress.inbound.`.
    pub fn define(&self, kind: FilterKind, direction: Direction) {
        if self.ids.get().is_some() {
            return;
        }
        let name = |outcome: &str, r: Option<Reason>| {
            let mut o = String::from(direction_prefix(direction));
            o.push_str(kind_prefix(kind));
            o.push_str(outcome);
            stat_name(&o, r)
        };
        let per_reason =
            |outcome: &str| Reason::ALL.map(|r| host::define_counter(&name(outcome, Some(r))));
        let _ = self.ids.set(CounterIds {
            allowed: host::define_counter(&name("allowed", None)),
            denied: host::define_counter(&name("denied", None)),
            audit_denied: host::define_counter(&name("audit_denied", None)),
            gateway_passthrough: host::define_counter(&name("gateway_passthrough", None)),
            fallback_skipped: host::define_counter(&name("fallback_skipped", None)),
            denied_by: per_reason("denied"),
            audit_by: per_reason("audit_denied"),
        });
    }

    /// An allowed request.
    pub fn allowed(&self) {
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            p.allowed += 1;
        }
    }

    /// A request or connection let through undecided: in a gateway proxy (`gateways:
    /// passthrough`), or by a sharded fallback plugin whose namespace is `delegated`.
    pub fn stood_aside(&self, delegated: bool) {
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            if delegated {
                p.fallback_skipped += 1;
            } else {
                p.gateway_passthrough += 1;
            }
        }
    }

    /// A blocked request.
    pub fn denied(&self, reason: Reason) {
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            if let Some(c) = p.denied_by.get_mut(reason.index()) {
                *c += 1;
            }
        }
    }

    /// A request audit mode let through that enforce mode would block.
    pub fn audit_denied(&self, reason: Reason) {
        if let Ok(mut p) = self.pending.try_borrow_mut() {
            if let Some(c) = p.audit_by.get_mut(reason.index()) {
                *c += 1;
            }
        }
    }

    /// Adds what was counted since the last flush to Envoy's stats. Before
    /// [`define`](Self::define) there is nothing to add: no context has counted yet.
    pub fn flush(&self) {
        let Some(ids) = self.ids.get() else {
            return;
        };
        let Ok(mut p) = self.pending.try_borrow_mut() else {
            return;
        };
        let p = std::mem::take(&mut *p);
        host::add(ids.allowed, p.allowed);
        host::add(ids.gateway_passthrough, p.gateway_passthrough);
        host::add(ids.fallback_skipped, p.fallback_skipped);
        host::add(ids.denied, p.denied_by.iter().sum());
        host::add(ids.audit_denied, p.audit_by.iter().sum());
        for (id, n) in ids.denied_by.iter().zip(p.denied_by) {
            host::add(*id, n);
        }
        for (id, n) in ids.audit_by.iter().zip(p.audit_by) {
            host::add(*id, n);
        }
    }
}

/// What is counted and not flushed yet: (allowed, denied, audit-denied), and the count of
/// one reason among the denied.
#[cfg(test)]
impl Counters {
    pub(crate) fn pending(&self) -> (u64, u64, u64) {
        let p = self.pending.borrow();
        (p.allowed, p.denied_by.iter().sum(), p.audit_by.iter().sum())
    }

    pub(crate) fn pending_gateway_passthrough(&self) -> u64 {
        self.pending.borrow().gateway_passthrough
    }

    pub(crate) fn pending_denied(&self, reason: Reason) -> u64 {
        self.pending.borrow().denied_by[reason.index()]
    }

    pub(crate) fn pending_audit(&self, reason: Reason) -> u64 {
        self.pending.borrow().audit_by[reason.index()]
    }
}

/// The configuration-error counter (defined before any policy is known).
pub fn config_errors() -> Option<u32> {
    host::define_counter(&stat_name("config_errors", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names() {
        assert_eq!(stat_name("allowed", None), "tenant_egress.allowed");
        assert_eq!(
            stat_name("denied", Some(Reason::MalformedAuthority)),
            "tenant_egress.denied.malformed_authority"
        );
        assert_eq!(
            stat_name(
                &format!("{}allowed", kind_prefix(FilterKind::Network)),
                None
            ),
            "tenant_egress.connections.allowed"
        );
    }
}
