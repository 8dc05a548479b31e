//! Counters, defined once per configuration. Cardinality is bounded: one counter per outcome
//! and per reason code, never per host. Envoy shows them under their names (the `wasmcustom.`
//! namespace is stripped in `/stats`); Istio needs the `tenant_egress` prefix in
//! `proxyStatsMatcher.inclusionPrefixes` to export them.

use tenant_egress_config::Reason;

use crate::host;

/// The stats prefix.
pub const PREFIX: &str = "tenant_egress";

/// Counter name for an outcome and optional reason: `tenant_egress.denied.not_allowed`.
/// Reason codes are kebab-case; stat names use `_` so Prometheus names read the same.
pub fn stat_name(outcome: &str, reason: Option<Reason>) -> String {
    match reason {
        Some(r) => format!("{PREFIX}.{outcome}.{}", r.as_str().replace('-', "_")),
        None => format!("{PREFIX}.{outcome}"),
    }
}

/// Counter ids for one configuration.
#[derive(Debug)]
pub struct Counters {
    allowed: Option<u32>,
    denied: Option<u32>,
    audit_denied: Option<u32>,
    denied_by: Vec<Option<u32>>,
    audit_by: Vec<Option<u32>>,
}

impl Counters {
    /// Defines every counter with the host.
    pub fn define() -> Counters {
        let per_reason = |outcome: &str| {
            Reason::ALL
                .iter()
                .map(|r| host::define_counter(&stat_name(outcome, Some(*r))))
                .collect()
        };
        Counters {
            allowed: host::define_counter(&stat_name("allowed", None)),
            denied: host::define_counter(&stat_name("denied", None)),
            audit_denied: host::define_counter(&stat_name("audit_denied", None)),
            denied_by: per_reason("denied"),
            audit_by: per_reason("audit_denied"),
        }
    }

    /// An allowed request.
    pub fn allowed(&self) {
        host::increment(self.allowed);
    }

    /// A blocked request.
    pub fn denied(&self, reason: Reason) {
        host::increment(self.denied);
        host::increment(self.denied_by.get(reason.index()).copied().flatten());
    }

    /// A request audit mode let through that enforce mode would block.
    pub fn audit_denied(&self, reason: Reason) {
        host::increment(self.audit_denied);
        host::increment(self.audit_by.get(reason.index()).copied().flatten());
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
    }
}
