//! Human and machine explanations of a decision, shared by the CLI (`explain`), the test
//! vectors and the filter's denial body, so all three say the same thing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, Detail, Protocol, Reason, Request, Source, Target};
pub use crate::inbound::End;
use crate::inbound::{parse_spiffe, Inbound};
use crate::policy::Policy;
use crate::spec::Gateways;

/// One request as JSON: the `explain --batch` input line and the test-vector request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestSpec {
    /// The source workload (the caller's end; unused at the destination).
    #[serde(default)]
    pub source: SourceSpec,
    /// The `:authority` (or Host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Set when the request carried the authority more than once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authority_repeated: bool,
    /// The upstream cluster (`outbound|PORT|SUBSET|FQDN`, `PassthroughCluster`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The destination namespace from cluster metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespace: Option<String>,
    /// The original destination `ip:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address: Option<String>,
    /// `http` (default: an HTTP request) or `tcp` (a TCP/TLS connection; `authority` is the SNI).
    #[serde(default, skip_serializing_if = "is_http")]
    pub protocol: Protocol,
    /// Which end decides: `source` (default: the caller's own sidecar) or `destination` (the
    /// called workload's sidecar, on the caller's identity; `destinationNamespace` is then
    /// that workload's namespace and `source` is not used).
    #[serde(default, skip_serializing_if = "End::is_source")]
    pub at: End,
    /// Destination end: the caller's SPIFFE id from its verified certificate; absent for a
    /// plaintext caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Destination end: the TLS SNI (Istio's `outbound_.<port>_.<subset>_.<fqdn>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Destination end: the services the inbound port serves (`istio.services` of the inbound
    /// cluster); empty when unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

fn is_http(p: &Protocol) -> bool {
    *p == Protocol::Http
}

/// The source part of a [`RequestSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Source namespace (required in batch input; may be absent to model a proxy without it).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Pod labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The pod's service account (`SERVICE_ACCOUNT` node metadata).
    #[serde(
        default,
        rename = "serviceAccount",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account: Option<String>,
}

impl RequestSpec {
    /// Decides this request against `policy`.
    pub fn decide(&self, policy: &Policy) -> Decision {
        self.report(policy).0
    }

    /// Decides this request and explains the decision.
    pub fn report(&self, policy: &Policy) -> (Decision, Report) {
        if self.at == End::Destination {
            return self.report_inbound(policy);
        }
        let labels: Vec<(&str, &str)> = self
            .source
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let request = self.as_request(&labels);
        let sa = self.source.service_account.as_deref();
        let scope = policy.source_as(&request.source, sa);
        let decision = policy.decide_for(&scope, &request.target);
        let mut report = Report::new(policy, &decision, &request.source);
        report.workload = scope
            .tenant()
            .zip(scope.workload())
            .and_then(|(t, w)| policy.workload_name(t, w))
            .map(str::to_owned);
        (decision, report)
    }

    /// The destination end's decision ([`Policy::decide_inbound`]).
    fn report_inbound(&self, policy: &Policy) -> (Decision, Report) {
        let services: Vec<&str> = self.services.iter().map(String::as_str).collect();
        let inbound = Inbound {
            namespace: self.destination_namespace.as_deref(),
            peer: self.caller.as_deref().map(str::as_bytes),
            sni: self.sni.as_deref().map(str::as_bytes),
            authority: self.authority.as_deref().map(str::as_bytes),
            authority_repeated: self.authority_repeated,
            services: &services,
            protocol: self.protocol,
        };
        let decision = policy.decide_inbound(&inbound);
        let caller = self
            .caller
            .as_deref()
            .and_then(|c| parse_spiffe(c.as_bytes()).ok());
        let source = Source {
            namespace: caller.map(|c| c.namespace),
            labels: &[],
        };
        let mut report = Report::new(policy, &decision, &source);
        // The exception that allowed, if any, is the one the rule belongs to.
        report.workload = None;
        (decision, report)
    }

    /// Reads one line of `explain --batch` input (JSON). `source.namespace` is required there
    /// (at the destination, `destinationNamespace`): a batch line without it is a mistake in
    /// the batch, not a request to decide.
    pub fn from_batch_line(line: &str) -> Result<RequestSpec, String> {
        let req: RequestSpec = serde_json::from_str(line).map_err(|e| e.to_string())?;
        match req.at {
            End::Source if req.source.namespace.is_none() => {
                Err("source.namespace is required".to_owned())
            }
            // At the destination the caller may be absent (plaintext), the place may not.
            End::Destination if req.destination_namespace.is_none() => Err(
                "destinationNamespace (the called workload's namespace) is required at the destination"
                    .to_owned(),
            ),
            _ => Ok(req),
        }
    }

    /// Whether the port must be asked for: nothing in the request says which port it goes to
    /// ([`Self::port_missing`]) while the source's listeners declare ports, so the answer
    /// depends on it. `explain` asks rather than decide as if the port did not matter.
    pub fn needs_port(&self, policy: &Policy) -> bool {
        if !self.port_missing() {
            return false;
        }
        let labels: Vec<(&str, &str)> = self
            .source
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        policy.port_scoped(&policy.source(&self.as_request(&labels).source))
    }

    /// Whether nothing in the request says which port it goes to: no port in the authority,
    /// no cluster, no destination address.
    pub fn port_missing(&self) -> bool {
        self.cluster.as_deref().is_none_or(str::is_empty)
            && self.destination_address.is_none()
            && self
                .authority
                .as_deref()
                .and_then(|a| crate::authority::parse_authority(a.as_bytes()).ok())
                .is_some_and(|a| a.port.is_none())
    }

    /// Without a `cluster`, the one this decision assumed Envoy routed to: `outbound|PORT||FQDN`
    /// for a service resolved from the authority, `PassthroughCluster` for a destination
    /// outside the registry. `None` when the request names its cluster (or nothing resolved).
    /// At the destination nothing is assumed: the SNI names the caller's cluster.
    pub fn assumed_cluster(&self, d: &Decision) -> Option<String> {
        if self.at == End::Destination || self.cluster.as_deref().is_some_and(|c| !c.is_empty()) {
            return None;
        }
        match (d.destination.host(), d.destination.port, d.destination.kind) {
            (_, _, crate::decision::DestinationKind::Ip) => Some("PassthroughCluster".to_owned()),
            (Some(h), Some(p), _) => Some(format!("outbound|{p}||{h}")),
            _ => None,
        }
    }

    /// Borrows this spec as a [`Request`]; `labels` must be built from `self.source.labels`.
    pub fn as_request<'a>(&'a self, labels: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            source: Source {
                namespace: self.source.namespace.as_deref(),
                labels,
            },
            target: Target {
                authority: self.authority.as_deref().map(str::as_bytes),
                authority_repeated: self.authority_repeated,
                cluster: self.cluster.as_deref(),
                destination_namespace: self.destination_namespace.as_deref(),
                destination_address: self.destination_address.as_deref(),
                protocol: self.protocol,
            },
        }
    }
}

/// A decision as JSON (`explain --json`, batch output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `allow` or `deny`.
    pub decision: String,
    /// The stable reason code.
    pub reason: String,
    /// False in audit mode (a denial that is only reported).
    pub enforced: bool,
    /// The source tenant.
    pub tenant: Option<String>,
    /// The workload exception that applied to the source.
    pub workload: Option<String>,
    /// The rule that decided.
    pub rule: Option<RuleReport>,
    /// The destination as resolved.
    pub destination: DestinationReport,
    /// A sentence a person can act on.
    pub explanation: String,
}

/// A rule reference in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// Place in the document.
    pub path: String,
    /// Text of the rule.
    pub text: String,
}

/// The destination in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationReport {
    /// Destination namespace, when known.
    pub namespace: Option<String>,
    /// Destination host (FQDN or IP), when known.
    pub host: Option<String>,
    /// Destination port, when known.
    pub port: Option<u16>,
    /// The original destination (`ip:port`) of a passthrough named by its `Host`/SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Report {
    /// Builds the report for a decision made for `source_labels`.
    pub fn new(policy: &Policy, d: &Decision, source: &Source<'_>) -> Report {
        let scope = policy.source(source);
        Report {
            decision: d.verdict().to_owned(),
            reason: d.reason.as_str().to_owned(),
            enforced: d.enforced,
            tenant: d
                .tenant
                .and_then(|t| policy.tenant_name(t))
                .map(str::to_owned),
            workload: scope
                .tenant()
                .zip(scope.workload())
                .and_then(|(t, w)| policy.workload_name(t, w))
                .map(str::to_owned),
            rule: d.rule.and_then(|r| policy.rule(r)).map(|r| RuleReport {
                path: r.path.clone(),
                text: r.text.clone(),
            }),
            destination: DestinationReport {
                namespace: d.destination.namespace().map(str::to_owned),
                host: d.destination.host().map(str::to_owned),
                port: d.destination.port,
                address: d.destination.address.map(|a| a.to_string()),
            },
            explanation: explain(policy, d, source.namespace),
        }
    }

    /// The report as `explain` prints it for a person: one labelled line per fact.
    /// `source_namespace` is the request's (the report itself names only the tenant).
    pub fn to_text(&self, source_namespace: Option<&str>) -> String {
        let verdict = if self.decision == "deny" && !self.enforced {
            "DENY (audit: would be denied, let through)".to_owned()
        } else {
            self.decision.to_uppercase()
        };
        let mut source = format!("namespace {}", source_namespace.unwrap_or("(none)"));
        if let Some(t) = &self.tenant {
            let _ = write!(source, ", tenant {t}");
        }
        if let Some(w) = &self.workload {
            let _ = write!(source, ", workload exception {w}");
        }
        let d = &self.destination;
        let mut destination = d.host.as_deref().unwrap_or("(unknown)").to_owned();
        if let Some(p) = d.port {
            let _ = write!(destination, ":{p}");
        }
        let _ = write!(
            destination,
            " (namespace {})",
            d.namespace.as_deref().unwrap_or("unknown")
        );
        let rule = self
            .rule
            .as_ref()
            .map_or_else(|| "-".to_owned(), |r| format!("{} \"{}\"", r.path, r.text));
        format!(
            "decision:    {verdict}\nreason:      {}\nsource:      {source}\n\
             destination: {destination}\nrule:        {rule}\nwhy:         {}\n",
            self.reason, self.explanation
        )
    }
}

/// What a terse denial body (`denyBody: terse`) says why: one sentence per reason that names
/// nothing from the policy (no rule, no path, no other namespace), so a caller learns only
/// what its own request already told it. The full sentence ([`explain`]) is in the proxy log
/// and `tenant-egress explain`.
pub fn terse_why(reason: Reason) -> &'static str {
    match reason {
        Reason::Allowed | Reason::AllowAny | Reason::InboundAllowed => "allowed",
        Reason::NoPeerIdentity => "the caller presented no verified mesh identity (plaintext)",
        Reason::UntrustedPeer => "the caller's identity is not from a trusted mesh",
        Reason::SniMismatch => {
            "the TLS server name does not name a service this workload serves on this port"
        }
        Reason::UndeclaredService => {
            "the TLS server name names a host this namespace's destination shard has no rules for"
        }
        Reason::UnknownSource => {
            "the proxy has no NAMESPACE node metadata, so the source is unknown (fail closed)"
        }
        Reason::NoTenant => "the source namespace belongs to no tenant",
        Reason::MalformedAuthority => "the :authority is malformed",
        Reason::MalformedCluster => "the upstream cluster name is malformed",
        Reason::UnsupportedCluster => {
            "the request was routed to a cluster this filter does not enforce on"
        }
        Reason::AuthorityMismatch => {
            "the :authority names a different destination than the cluster Envoy routed to"
        }
        Reason::UnknownDestination => "nothing identifies the destination",
        Reason::NotInRegistry => {
            "the destination is outside the service registry and this namespace is REGISTRY_ONLY"
        }
        Reason::Blackhole => "Envoy routed the request to BlackHoleCluster",
        Reason::Excluded | Reason::NotAllowed => {
            "the egress policy of this namespace does not allow this destination"
        }
    }
}

fn in_cluster(detail: Option<Detail>) -> bool {
    matches!(
        detail,
        Some(
            Detail::InCluster
                | Detail::InClusterPodName
                | Detail::InClusterExcluded
                | Detail::NoOriginalDestination
        )
    )
}

fn is_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

/// One or two sentences on why, and what to change. Used for `explain` and the denial body.
pub fn explain(policy: &Policy, d: &Decision, source_ns: Option<&str>) -> String {
    let mut s = String::new();
    let tenant = d.tenant.and_then(|t| policy.tenant_name(t)).unwrap_or("?");
    let src = source_ns.unwrap_or("(none)");
    let rule = d.rule.and_then(|r| policy.rule(r));
    let dest = d.destination;
    let _ = match d.reason {
        Reason::Allowed => match rule {
            Some(r) => write!(s, "allowed by {} \"{}\"", r.path, r.text),
            None => write!(s, "allowed"),
        },
        Reason::AllowAny => write!(
            s,
            "{dest} is outside the service registry{} and tenant {tenant} uses ALLOW_ANY",
            if policy.cluster_networks().is_empty() {
                ""
            } else {
                " and the cluster's networks"
            }
        ),
        Reason::UnknownSource => write!(
            s,
            "the proxy has no NAMESPACE node metadata, so the source is unknown; every request is denied (fail closed)"
        ),
        Reason::NoTenant => write!(
            s,
            "namespace {src} belongs to no tenant (unknownSource: {}); add it to a tenant's namespaces. {}",
            if d.allowed { "allow" } else { "deny" },
            match policy.gateways() {
                Gateways::Passthrough => format!(
                    "This holds for sidecars in {src}: Istio gateway proxies (ingress/egress gateways, \
                     node id router~...) are not enforced in any namespace (gateways: passthrough)"
                ),
                Gateways::Enforce => format!(
                    "Gateway proxies in {src} are decided the same way (gateways: enforce)"
                ),
            }
        ),
        Reason::MalformedAuthority => match d.detail {
            Some(Detail::Authority(e)) => write!(s, "the :authority is malformed ({e})"),
            _ => write!(s, "the :authority is malformed"),
        },
        Reason::MalformedCluster => write!(s, "the upstream cluster name is malformed"),
        Reason::UnsupportedCluster => write!(
            s,
            "the request was routed to a cluster this filter does not enforce on (inbound, or not an Istio outbound cluster)"
        ),
        Reason::AuthorityMismatch if dest.host().is_some_and(is_ip) => write!(
            s,
            "the :authority names a mesh service, but Envoy passed the request through to {dest} \
             (PassthroughCluster), so the Host header cannot vouch for where it goes. Under ALLOW_ANY \
             Istio lets this out today: tenant {tenant}'s Sidecar does not import that service, so its \
             address falls through to PassthroughCluster unchecked (the leak the filter closes). To keep \
             it working, import the service the :authority names in tenant {tenant}'s egress; Envoy then \
             routes it to the service's own cluster"
        ),
        Reason::AuthorityMismatch => write!(
            s,
            "the :authority names a different destination than the cluster Envoy routed to ({dest})"
        ),
        Reason::UnknownDestination => write!(s, "nothing identifies the destination"),
        Reason::NotInRegistry => write!(
            s,
            "{dest} is outside the service registry (passthrough or IP address) and tenant {tenant} is REGISTRY_ONLY"
        ),
        Reason::Blackhole => write!(s, "Envoy routed the request to BlackHoleCluster"),
        Reason::Excluded => match rule {
            Some(r) => write!(
                s,
                "{dest} is excluded by {} \"{}\"; remove that exclusion to allow it",
                r.path, r.text
            ),
            None => write!(s, "{dest} is excluded"),
        },
        Reason::NotAllowed if in_cluster(d.detail) => {
            let list = match d.detail {
                Some(Detail::NoOriginalDestination) => {
                    s.push_str("the original destination of this passthrough is unknown, so it may lie in the cluster's networks");
                    true
                }
                Some(Detail::InClusterPodName) => {
                    let _ = write!(
                        s,
                        "{dest} is in-cluster: the request names a pod (*.pod.{})",
                        policy.cluster_domain()
                    );
                    false
                }
                _ => {
                    let _ = write!(s, "{dest} is inside the cluster's networks");
                    true
                }
            };
            if list {
                for (i, c) in policy.cluster_networks().iter().enumerate() {
                    let _ = write!(s, "{}{c}", if i == 0 { " (" } else { ", " });
                }
                s.push(')');
            }
            s.push_str(" and Envoy sent it to PassthroughCluster, so no name the policy can check says which service or namespace it is; ");
            match (d.detail, rule) {
                (Some(Detail::InClusterExcluded), Some(r)) => {
                    let _ = write!(s, "{} imports every namespace, but it also excludes something in the cluster, which an address alone could be", r.path);
                }
                _ => {
                    let _ = write!(s, "only an entry importing every namespace (\"*/*\") allows an in-cluster address for tenant {tenant}");
                }
            }
            write!(
                s,
                ". Call the service by its name (svc.ns.svc.{}) and import that",
                policy.cluster_domain()
            )
        }
        Reason::NotAllowed => {
            let suggestion = match (dest.namespace(), dest.host()) {
                (Some(ns), Some(h)) => format!("\"{ns}/{h}\""),
                (None, Some(h)) => format!("\"*/{h}\""),
                _ => "a host".to_owned(),
            };
            match (rule, d.detail) {
                (Some(r), Some(Detail::HttpOnlyPort(p))) => write!(
                    s,
                    "{} ({}) is HTTP-only, so it does not open TCP/TLS connections on port {p}; declare the port with protocol TCP or TLS to allow {dest}",
                    r.path, r.text
                ),
                (Some(r), _) => write!(
                    s,
                    "no host of {} ({}) imports {dest} for tenant {tenant}; add {suggestion} to {}.hosts",
                    r.path, r.text, r.path
                ),
                (None, Some(Detail::NoListenerForPort(Some(p)))) => write!(
                    s,
                    "tenant {tenant} has no egress entry for port {p} and no portless one; add an egress entry with {suggestion}"
                ),
                (None, Some(Detail::NoListenerForPort(None))) => write!(
                    s,
                    "the destination port is unknown (no port in the authority, no cluster, no destination address), and tenant {tenant} has only port-scoped egress entries: which port was it?"
                ),
                _ => write!(s, "no egress entry of tenant {tenant} imports {dest}"),
            }
        }
        Reason::NoPeerIdentity => write!(
            s,
            "the caller presented no verified client certificate (plaintext); the destination admits only mTLS callers"
        ),
        Reason::UntrustedPeer => match d.detail {
            Some(Detail::Identity(e)) => write!(
                s,
                "the caller's certificate identity is refused ({e}); trusted domains: {}",
                policy.trust_domains().collect::<Vec<_>>().join(", ")
            ),
            _ => write!(s, "the caller's certificate identity is refused"),
        },
        Reason::SniMismatch => write!(
            s,
            "the TLS SNI names {dest}, which this workload does not serve on this port"
        ),
        Reason::UndeclaredService => write!(
            s,
            "the TLS SNI names {dest}, which is neither a Kubernetes service of this namespace nor in \
             its tenant's serves: this namespace's destination shard carries no rules for it (add \
             it to serves, or generate --shard none)"
        ),
        Reason::InboundAllowed => match rule {
            Some(r) => write!(s, "admitted by {} \"{}\"", r.path, r.text),
            None => write!(s, "admitted by an inbound allowance"),
        },
    };
    if !d.allowed && !d.enforced {
        s.push_str(" (audit mode: reported, not blocked)");
    }
    s
}

#[cfg(test)]
mod tests {
    // Under wasm32 these run through wasm-bindgen-test (scripts/test-wasm.sh): every `#[test]`
    // here becomes a `#[wasm_bindgen_test]` there.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn policy(mode: &str) -> Policy {
        let doc = format!(
            r#"{{"apiVersion": "tenant-egress/v1", "mode": "{mode}",
                "tenants": [{{"name": "prod", "namespaces": ["prod"],
                  "egress": [{{"hosts": ["./*"]}}],
                  "workloads": [{{"name": "batman", "selector": {{"app": "batman"}},
                                  "egress": [{{"hosts": ["logs/*"]}}]}}]}}]}}"#
        );
        Policy::from_json(doc.as_bytes()).unwrap().0
    }

    #[test]
    fn text_report_names_every_fact() {
        let req = RequestSpec::from_batch_line(
            r#"{"source": {"namespace": "prod", "labels": {"app": "batman"}},
                "authority": "db.uat:26257", "cluster": "outbound|26257||db.uat.svc.cluster.local"}"#,
        )
        .unwrap();
        let (_, report) = req.report(&policy("enforce"));
        let text = report.to_text(req.source.namespace.as_deref());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "decision:    DENY");
        assert_eq!(lines[1], "reason:      not-allowed");
        assert_eq!(
            lines[2],
            "source:      namespace prod, tenant prod, workload exception batman"
        );
        assert_eq!(
            lines[3],
            "destination: db.uat.svc.cluster.local:26257 (namespace uat)"
        );
        assert!(lines[4].starts_with("rule:        tenants[0]"), "{text}");
        assert_eq!(lines[5], format!("why:         {}", report.explanation));
        assert_eq!(lines.len(), 6);

        let (_, audit) = req.report(&policy("audit"));
        assert!(audit
            .to_text(None)
            .starts_with("decision:    DENY (audit: would be denied, let through)\n"));
        assert!(audit
            .to_text(None)
            .contains("source:      namespace (none)"));
    }

    #[test]
    fn batch_lines_need_a_source_namespace() {
        assert_eq!(
            RequestSpec::from_batch_line(r#"{"source": {}}"#),
            Err("source.namespace is required".to_owned())
        );
        assert!(RequestSpec::from_batch_line("{not json")
            .unwrap_err()
            .contains("line 1"));
        let tcp =
            RequestSpec::from_batch_line(r#"{"source": {"namespace": "a"}, "protocol": "tcp"}"#)
                .unwrap();
        assert_eq!(tcp.protocol, Protocol::Tcp);
    }
}
