//! Checks for the destination end ([`crate::inbound`]): service-account exceptions, `inbound`
//! allowances, trust domains, and the warnings where the two ends cannot agree.

use super::{fmt_labels, is_subdomain, selectors_overlap, Checker, ErrorKind, WARNINGS};
use crate::name;
use crate::spec::{PolicySpec, TenantSpec, UnknownSource, WorkloadSpec};

/// A Kubernetes service account name: a DNS-1123 subdomain (`validation.IsDNS1123Subdomain`).
fn check_service_accounts(c: &mut Checker, path: &str, sas: &[String]) {
    for (i, sa) in sas.iter().enumerate() {
        if sa.is_empty() || sa.len() > 253 || !is_subdomain(sa) {
            c.err(
                format!("{path}.serviceAccounts[{i}]"),
                ErrorKind::ServiceAccount(sa.clone()),
            );
        }
    }
}

/// A workload exception's service accounts, and what each form means at the other end.
pub(super) fn check_workload(c: &mut Checker, wp: &str, wl: &WorkloadSpec) {
    check_service_accounts(c, wp, &wl.service_accounts);
    if !WARNINGS {
        return;
    }
    match (wl.selector.is_empty(), wl.service_accounts.is_empty()) {
        (false, true) => c.warn(
            wp,
            "an exception by labels only: the destination end sees a caller's namespace and \
             service account, never its labels, so it admits this exception's egress for every \
             service account of the tenant's namespaces (more than this end allows); add \
             serviceAccounts for the two ends to agree",
        ),
        (true, false) => c.warn(
            wp,
            "an exception by service account only: Istio's Sidecar selects pods by labels, so \
             generate writes no Sidecar for it and Istio routes these pods with the tenant's \
             Sidecar; add a selector for the pods of these service accounts",
        ),
        _ => {}
    }
}

/// Whether two exceptions can select one pod: their selectors can match one pod (an empty
/// selector matches every pod) and their service accounts can be one (empty: any). Returns an
/// example of such a pod.
pub(super) fn exceptions_overlap(a: &WorkloadSpec, b: &WorkloadSpec) -> Option<String> {
    let unbounded = |w: &WorkloadSpec| w.selector.is_empty() && w.service_accounts.is_empty();
    if unbounded(a) || unbounded(b) {
        return None; // already an error of its own
    }
    let labels = a.selector.is_empty()
        || b.selector.is_empty()
        || selectors_overlap(&a.selector, &b.selector);
    let sa = match (a.service_accounts.is_empty(), b.service_accounts.is_empty()) {
        (true, true) => Some(None),
        (false, true) => a.service_accounts.first().map(Some),
        (true, false) => b.service_accounts.first().map(Some),
        (false, false) => a
            .service_accounts
            .iter()
            .find(|s| b.service_accounts.contains(s))
            .map(Some),
    };
    let (true, Some(sa)) = (labels, sa) else {
        return None;
    };
    let mut both = a.selector.clone();
    both.extend(b.selector.iter().map(|(k, v)| (k.clone(), v.clone())));
    let running = sa.map(|s| format!(" running as {s}")).unwrap_or_default();
    Some(format!(
        "a pod labelled {}{running} matches both",
        fmt_labels(&both)
    ))
}

/// A tenant's `inbound` allowances.
pub(super) fn check_inbound(c: &mut Checker, tp: &str, tenant: &TenantSpec, spec: &PolicySpec) {
    for (i, a) in tenant.inbound.iter().enumerate() {
        let ip = format!("{tp}.inbound[{i}]");
        if let Err(e) = name::check_namespace(&a.namespace) {
            c.err(
                format!("{ip}.namespace"),
                ErrorKind::Namespace(a.namespace.clone(), e),
            );
        } else if let Some(owner) = spec
            .tenants
            .iter()
            .find(|t| t.namespaces.contains(&a.namespace))
        {
            c.err(
                format!("{ip}.namespace"),
                ErrorKind::InboundTenantNamespace(a.namespace.clone(), owner.name.clone()),
            );
        }
        check_service_accounts(c, &ip, &a.service_accounts);
    }
}

/// Trust domains, and tenants whose destinations would refuse their ingress gateway.
pub(super) fn check_document(c: &mut Checker, spec: &PolicySpec) {
    for (i, td) in spec.trust_domains.iter().enumerate() {
        let ok = !td.is_empty()
            && td.len() <= 255
            && td
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !ok {
            c.err(
                format!("trustDomains[{i}]"),
                ErrorKind::TrustDomain(td.clone()),
            );
        }
    }
    // Only once the document configures the destination end (trust domains, an inbound entry,
    // an exception by service account): before that, every policy would carry this warning.
    let engaged = !spec.trust_domains.is_empty()
        || spec.tenants.iter().any(|t| {
            !t.inbound.is_empty() || t.workloads.iter().any(|w| !w.service_accounts.is_empty())
        });
    if !WARNINGS || spec.unknown_source == UnknownSource::Allow || !engaged {
        return;
    }
    let closed: Vec<&str> = spec
        .tenants
        .iter()
        .filter(|t| t.inbound.is_empty())
        .map(|t| t.name.as_str())
        .collect();
    if closed.is_empty() {
        return;
    }
    let shown = closed
        .iter()
        .take(5)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let more = if closed.len() > 5 {
        format!(" and {} more", closed.len() - 5)
    } else {
        String::new()
    };
    c.warn(
        "tenants",
        format!(
            "tenant(s) {shown}{more} have no inbound entry: enforced at the destination, they refuse \
             every caller outside the tenants, their ingress gateway and monitoring included; admit \
             those with inbound: [{{namespace: istio-system, serviceAccounts: [istio-ingressgateway-service-account]}}]"
        ),
    );
}
