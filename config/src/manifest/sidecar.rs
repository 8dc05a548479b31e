//! `Sidecar`s that scope Istio's configuration exactly as the filter enforces.
//!
//! Per destination port Istio uses the egress listener that declares the port, else the
//! portless catch-all (`GetEgressListenerForRDS`). A workload exception is ADDED to its tenant's
//! egress, but Istio has no inheritance: a workload-specific Sidecar replaces the namespace
//! default for the pods it selects. So the generated workload Sidecar carries the merge, and it
//! is the merge the filter enforces: both call the one listener model,
//! [`tenant_egress_core::listeners::merge`], which states the rules.
//!
//! An empty egress would make Istio import `*/*`; the generator writes `~/*` (imports nothing,
//! before and after Istio 1.31) so that "reaches nothing" stays nothing.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::Serialize;

use crate::yaml::Value;

use super::{
    tenant_mode, to_value, AuditSidecars, Doc, DocKind, GenerateError, Generated, Metadata,
    Options, DEFAULT_SIDECAR_NAME, TENANT_LABEL, WORKLOAD_LABEL,
};
pub use tenant_egress_core::listeners::{HostListener, SidecarEgress as Listeners};
use tenant_egress_core::spec::{EgressSpec, Mode, OutboundTrafficPolicy, PolicySpec, PortProtocol};

/// The Sidecar `apiVersion` generated (the storage version since Istio 1.22).
pub const API_VERSION: &str = "networking.istio.io/v1";

/// The host entry that imports nothing (an empty `egress` would import everything).
pub const NOTHING: &str = "~/*";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sidecar {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: SidecarSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SidecarSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    workload_selector: Option<WorkloadSelector>,
    /// `null` here; the listeners go in as a [`Value::Shared`] ([`sidecar_doc`]).
    egress: Value,
    outbound_traffic_policy: Otp,
}

#[derive(Serialize)]
struct WorkloadSelector {
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Listener {
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<Port>,
    hosts: Vec<String>,
}

#[derive(Serialize)]
struct Port {
    number: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<PortProtocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Serialize)]
struct Otp {
    mode: &'static str,
}

fn listeners_to_yaml(l: &Listeners) -> Vec<Listener> {
    let mut out: Vec<Listener> = l
        .to_egress()
        .into_iter()
        .map(|e| Listener {
            port: e.port.map(|p| Port {
                number: p.number,
                protocol: p.protocol,
                name: p.name,
            }),
            hosts: e.hosts,
        })
        .collect();
    if out.is_empty() {
        out.push(Listener {
            port: None,
            hosts: vec![NOTHING.to_owned()],
        });
    }
    out
}

/// The `egress` of a Sidecar with these listeners, built once for every Sidecar carrying them
/// (the tenant's namespaces all have the same).
fn egress_value(l: &Listeners) -> Result<Rc<Value>, GenerateError> {
    Ok(Rc::new(to_value(&listeners_to_yaml(l))?))
}

struct SidecarArgs<'a> {
    name: &'a str,
    namespace: &'a str,
    labels: &'a [(&'a str, &'a str)],
    selector: Option<&'a BTreeMap<String, String>>,
    egress: &'a Rc<Value>,
    outbound: OutboundTrafficPolicy,
    comment: Vec<String>,
}

fn sidecar_doc(a: SidecarArgs<'_>) -> Result<Doc, GenerateError> {
    let doc = Sidecar {
        api_version: API_VERSION,
        kind: "Sidecar",
        metadata: Metadata::new(a.name, a.namespace, a.labels),
        spec: SidecarSpec {
            workload_selector: a.selector.map(|labels| WorkloadSelector {
                labels: labels.clone(),
            }),
            egress: Value::Null,
            outbound_traffic_policy: Otp {
                mode: a.outbound.as_str(),
            },
        },
    };
    let mut value = to_value(&doc)?;
    if let Some(egress) = value.get_mut("spec").and_then(|s| s.get_mut("egress")) {
        *egress = Value::Shared(a.egress.clone());
    }
    Ok(Doc {
        kind: DocKind::Sidecar,
        comment: a.comment,
        value,
    })
}

/// Appends every Sidecar of the policy to `out`.
pub(crate) fn generate(
    spec: &PolicySpec,
    opts: &Options,
    out: &mut Generated,
) -> Result<(), GenerateError> {
    for (t, tenant) in spec.tenants.iter().enumerate() {
        let base = Listeners::from_egress(&tenant.egress);
        let base_egress = egress_value(&base)?;
        let open =
            tenant_mode(spec, t) == Mode::Audit && opts.audit_sidecars == AuditSidecars::Open;
        if open {
            out.notes.push(format!(
                "tenant \"{}\" is in audit mode: its Sidecars import \"*/*\" so that Istio blocks nothing \
                 new while the filter reports what enforcement would deny; regenerate after switching it \
                 to enforce (or pass --audit-sidecars scoped)",
                tenant.name
            ));
        }
        // Each exception's Sidecar is the same in every namespace of the tenant: merged once.
        let exceptions = if open {
            Vec::new()
        } else {
            tenant
                .workloads
                .iter()
                .filter(|w| !w.selector.is_empty())
                .map(|w| {
                    Ok((
                        w,
                        egress_value(&Listeners::merged(&tenant.egress, &w.egress))?,
                    ))
                })
                .collect::<Result<Vec<_>, GenerateError>>()?
        };
        let everything = if open {
            Some(egress_value(&Listeners::everything())?)
        } else {
            None
        };
        for ns in &tenant.namespaces {
            let labels = [(TENANT_LABEL, tenant.name.as_str())];
            let (egress, comment) = match &everything {
                Some(everything) => (
                    everything,
                    vec![format!(
                        "tenant {}, namespace {ns}: namespace-wide default, open while the tenant is in audit mode",
                        tenant.name
                    )],
                ),
                None => (
                    &base_egress,
                    vec![format!(
                        "tenant {}, namespace {ns}: namespace-wide default",
                        tenant.name
                    )],
                ),
            };
            out.docs.push(sidecar_doc(SidecarArgs {
                name: DEFAULT_SIDECAR_NAME,
                namespace: ns,
                labels: &labels,
                selector: None,
                egress,
                outbound: tenant.outbound_traffic_policy,
                comment,
            })?);
            // Istio's workloadSelector selects by labels only: an exception by service account
            // alone has no Sidecar of its own (an empty selector would select every pod);
            // `validate` warns about it. (None while the tenant's Sidecars are open.)
            for (w, merged) in &exceptions {
                let labels = [
                    (TENANT_LABEL, tenant.name.as_str()),
                    (WORKLOAD_LABEL, w.name.as_str()),
                ];
                out.docs.push(sidecar_doc(SidecarArgs {
                    name: &w.name,
                    namespace: ns,
                    labels: &labels,
                    selector: Some(&w.selector),
                    egress: merged,
                    outbound: tenant.outbound_traffic_policy,
                    comment: vec![format!(
                        "tenant {}, namespace {ns}, workload exception {}: the namespace-wide default \
                         PLUS the exception (Istio does not inherit)",
                        tenant.name, w.name
                    )],
                })?);
            }
        }
    }
    if opts.emit_root_default {
        let mut hosts = vec!["./*".to_owned()];
        hosts.extend(opts.shared_namespaces.iter().map(|ns| format!("{ns}/*")));
        let egress = [EgressSpec {
            port: None,
            hosts,
            host_index: Vec::new(),
        }];
        out.docs.push(sidecar_doc(SidecarArgs {
            name: DEFAULT_SIDECAR_NAME,
            namespace: &opts.root_namespace,
            labels: &[],
            selector: None,
            egress: &egress_value(&Listeners::from_egress(&egress))?,
            outbound: OutboundTrafficPolicy::RegistryOnly,
            comment: vec![
                "mesh default: namespaces without a Sidecar of their own (owned by no tenant) \
                 may reach their own namespace"
                    .to_owned(),
                if opts.shared_namespaces.is_empty() {
                    "and nothing else".to_owned()
                } else {
                    format!("plus {}", opts.shared_namespaces.join(", "))
                },
            ],
        })?);
    }
    Ok(())
}
