//! `Sidecar`s that scope Istio's configuration exactly as the filter enforces.
//!
//! Per destination port Istio uses the egress listener that declares the port, else the
//! portless catch-all (`GetEgressListenerForRDS`); the filter does the same
//! ([`tenant_egress_core::policy`]). A workload exception is ADDED to its tenant's egress, but Istio has no
//! inheritance: a workload-specific Sidecar replaces the namespace default for the pods it
//! selects. So the generated workload Sidecar carries the merge the filter computes:
//! - for each port declared by the tenant or the exception: the union of what each exposes on
//!   that port (its listener for the port, else its catch-all);
//! - the catch-all: the union of both catch-alls.
//!
//! An empty egress would make Istio import `*/*`; the generator writes `~/*` (imports nothing,
//! before and after Istio 1.31) so that "reaches nothing" stays nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    tenant_mode, to_value, AuditSidecars, Doc, DocKind, GenerateError, Generated, Metadata,
    Options, DEFAULT_SIDECAR_NAME, TENANT_LABEL, WORKLOAD_LABEL,
};
use tenant_egress_core::pattern::HostEntry;
use tenant_egress_core::spec::{EgressSpec, Mode, OutboundTrafficPolicy, PolicySpec, PortSpec};

/// The Sidecar `apiVersion` generated (the storage version since Istio 1.22).
pub const API_VERSION: &str = "networking.istio.io/v1";

/// The host entry that imports nothing (an empty `egress` would import everything).
pub const NOTHING: &str = "~/*";

/// One egress list grouped by listener, hosts parsed and de-duplicated (first occurrence kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    /// Port-scoped listeners, by port number.
    pub ports: BTreeMap<u16, (PortSpec, Vec<HostEntry>)>,
    /// The portless catch-all, if any.
    pub catch_all: Option<Vec<HostEntry>>,
}

fn push_unique(into: &mut Vec<HostEntry>, from: &[HostEntry]) {
    for e in from {
        if !into.contains(e) {
            into.push(e.clone());
        }
    }
}

impl Listeners {
    /// Groups a validated egress list. Unparsable hosts (validation refuses them) are skipped.
    pub fn from_egress(egress: &[EgressSpec]) -> Listeners {
        let mut out = Listeners::default();
        for entry in egress {
            let hosts: Vec<HostEntry> = entry.hosts.iter().filter_map(|h| h.parse().ok()).collect();
            match entry
                .port
                .as_ref()
                .and_then(|p| u16::try_from(p.number).ok().map(|n| (n, p)))
            {
                Some((n, port)) => {
                    let slot = out
                        .ports
                        .entry(n)
                        .or_insert_with(|| (port.clone(), Vec::new()));
                    push_unique(&mut slot.1, &hosts);
                }
                None => push_unique(out.catch_all.get_or_insert_with(Vec::new), &hosts),
            }
        }
        out
    }

    /// What this list exposes on `port`: its listener for the port, else its catch-all.
    pub fn on_port(&self, port: u16) -> Option<&[HostEntry]> {
        match self.ports.get(&port) {
            Some((_, hosts)) => Some(hosts),
            None => self.catch_all.as_deref(),
        }
    }

    /// The egress the filter enforces for a workload exception: `self` (the tenant's) PLUS
    /// `extra` (the exception's), exactly as `policy.rs: make_view` merges them.
    pub fn merge(&self, extra: &Listeners) -> Listeners {
        let mut out = Listeners::default();
        let ports: Vec<u16> = self
            .ports
            .keys()
            .chain(extra.ports.keys())
            .copied()
            .collect();
        for port in ports {
            if out.ports.contains_key(&port) {
                continue;
            }
            let spec = self
                .ports
                .get(&port)
                .or_else(|| extra.ports.get(&port))
                .map(|(spec, _)| spec.clone())
                .unwrap_or(PortSpec {
                    number: i64::from(port),
                    protocol: None,
                    name: None,
                });
            let mut hosts = Vec::new();
            push_unique(&mut hosts, self.on_port(port).unwrap_or(&[]));
            push_unique(&mut hosts, extra.on_port(port).unwrap_or(&[]));
            out.ports.insert(port, (spec, hosts));
        }
        if self.catch_all.is_some() || extra.catch_all.is_some() {
            let mut hosts = Vec::new();
            push_unique(&mut hosts, self.catch_all.as_deref().unwrap_or(&[]));
            push_unique(&mut hosts, extra.catch_all.as_deref().unwrap_or(&[]));
            out.catch_all = Some(hosts);
        }
        out
    }

    /// Back to the policy's egress shape (port-scoped by port, then the catch-all).
    pub fn to_egress(&self) -> Vec<EgressSpec> {
        let mut out: Vec<EgressSpec> = self
            .ports
            .values()
            .map(|(port, hosts)| EgressSpec {
                port: Some(port.clone()),
                hosts: hosts.iter().map(ToString::to_string).collect(),
            })
            .collect();
        if let Some(hosts) = &self.catch_all {
            out.push(EgressSpec {
                port: None,
                hosts: hosts.iter().map(ToString::to_string).collect(),
            });
        }
        out
    }

    /// One catch-all importing `*/*`: what Istio applies when a Sidecar has no egress.
    pub fn everything() -> Listeners {
        Listeners {
            ports: BTreeMap::new(),
            catch_all: "*/*".parse::<HostEntry>().ok().map(|e| vec![e]),
        }
    }

    /// Whether the list has no listener at all.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.catch_all.is_none()
    }
}

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
    egress: Vec<Listener>,
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
    protocol: Option<String>,
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

struct SidecarArgs<'a> {
    name: &'a str,
    namespace: &'a str,
    labels: &'a [(&'a str, &'a str)],
    selector: Option<&'a BTreeMap<String, String>>,
    listeners: &'a Listeners,
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
            egress: listeners_to_yaml(a.listeners),
            outbound_traffic_policy: Otp {
                mode: a.outbound.as_str(),
            },
        },
    };
    Ok(Doc {
        kind: DocKind::Sidecar,
        comment: a.comment,
        value: to_value(&doc)?,
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
        for ns in &tenant.namespaces {
            let labels = [(TENANT_LABEL, tenant.name.as_str())];
            let (listeners, comment) = if open {
                (
                    Listeners::everything(),
                    vec![format!(
                        "tenant {}, namespace {ns}: namespace-wide default, open while the tenant is in audit mode",
                        tenant.name
                    )],
                )
            } else {
                (
                    base.clone(),
                    vec![format!(
                        "tenant {}, namespace {ns}: namespace-wide default",
                        tenant.name
                    )],
                )
            };
            out.docs.push(sidecar_doc(SidecarArgs {
                name: DEFAULT_SIDECAR_NAME,
                namespace: ns,
                labels: &labels,
                selector: None,
                listeners: &listeners,
                outbound: tenant.outbound_traffic_policy,
                comment,
            })?);
            if open {
                continue;
            }
            // Istio's workloadSelector selects by labels only: an exception by service account
            // alone has no Sidecar of its own (an empty selector would select every pod);
            // `validate` warns about it.
            for w in tenant.workloads.iter().filter(|w| !w.selector.is_empty()) {
                let merged = base.merge(&Listeners::from_egress(&w.egress));
                let labels = [
                    (TENANT_LABEL, tenant.name.as_str()),
                    (WORKLOAD_LABEL, w.name.as_str()),
                ];
                out.docs.push(sidecar_doc(SidecarArgs {
                    name: &w.name,
                    namespace: ns,
                    labels: &labels,
                    selector: Some(&w.selector),
                    listeners: &merged,
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
        let egress = [EgressSpec { port: None, hosts }];
        out.docs.push(sidecar_doc(SidecarArgs {
            name: DEFAULT_SIDECAR_NAME,
            namespace: &opts.root_namespace,
            labels: &[],
            selector: None,
            listeners: &Listeners::from_egress(&egress),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn l(egress: serde_json::Value) -> Listeners {
        let e: Vec<EgressSpec> = serde_json::from_value(egress).unwrap();
        Listeners::from_egress(&e)
    }

    fn show(l: &Listeners) -> Vec<(Option<u16>, Vec<String>)> {
        let mut out: Vec<_> = l
            .ports
            .iter()
            .map(|(p, (_, h))| (Some(*p), h.iter().map(|e| e.to_string()).collect()))
            .collect();
        if let Some(h) = &l.catch_all {
            out.push((None, h.iter().map(|e| e.to_string()).collect()));
        }
        out
    }

    #[test]
    fn merge_follows_the_filter() {
        let tenant = l(serde_json::json!([
            {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./cockroachdb.uat.svc.cluster.local"]},
            {"hosts": ["./*", "istio-system/*"]}
        ]));
        let exception = l(serde_json::json!([
            {"port": {"number": 26257}, "hosts": ["prod/cockroachdb.prod.svc.cluster.local"]},
            {"port": {"number": 8080}, "hosts": ["tools/*"]}
        ]));
        let m = tenant.merge(&exception);
        assert_eq!(
            show(&m),
            vec![
                (
                    Some(8080),
                    vec!["./*".into(), "istio-system/*".into(), "tools/*".into()]
                ),
                (
                    Some(26257),
                    vec![
                        "./cockroachdb.uat.svc.cluster.local".into(),
                        "prod/cockroachdb.prod.svc.cluster.local".into()
                    ]
                ),
                (None, vec!["./*".into(), "istio-system/*".into()]),
            ]
        );
        // The tenant's port spec (protocol) wins on a shared port.
        assert_eq!(m.ports[&26257].0.protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn merge_of_catch_alls_and_duplicates() {
        let a = l(serde_json::json!([{"hosts": ["./*", "~/evil.example.com"]}]));
        let b = l(serde_json::json!([{"hosts": ["./*", "x/*"]}]));
        assert_eq!(
            show(&a.merge(&b)),
            vec![(
                None,
                vec!["./*".into(), "~/evil.example.com".into(), "x/*".into()]
            )]
        );
        assert!(Listeners::default().merge(&Listeners::default()).is_empty());
    }
}
