//! The questions users ask: "what can namespace X reach?" ([`outgoing`]) and "who can reach
//! namespace Y?" ([`incoming`]), answered from the one listener model ([`crate::listeners`]:
//! which entry applies on which port, the merge of a workload exception) and the host grammar
//! ([`crate::pattern`]: which entry selects which namespace), so the answers follow the same
//! rules as the decision and the generated Sidecars.
//!
//! The answers also name what weakens the picture: a tenant in audit mode (the filter only
//! reports), `ALLOW_ANY` (destinations outside the registry, pod IPs included, pass), and
//! `unknownSource: allow` (namespaces no tenant owns are not checked).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::listeners::{HostListener, SidecarEgress};
use crate::name;
use crate::pattern::{HostEntry, HostPattern, NsSelector};
use crate::spec::{Mode, OutboundTrafficPolicy, PolicySpec, TenantSpec, UnknownSource};

/// One listener of a source: its port and what it lets through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerReach {
    /// The port; `None` for the catch-all (every port no entry declares).
    pub port: Option<u16>,
    /// The port's protocol, when declared.
    pub protocol: Option<String>,
    /// Whether TCP/TLS connections may use it (false on HTTP-only ports).
    pub tcp: bool,
    /// The imported hosts (`.` written as the source namespace).
    pub allows: Vec<String>,
    /// The `~` exclusions.
    pub excludes: Vec<String>,
}

/// The egress of one set of pods of a namespace: the namespace default or a workload exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeReach {
    /// The workload exception; `None` for the namespace's default.
    pub workload: Option<String>,
    /// Its pod selector.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Its listeners (for an exception: those that differ from the default).
    pub listeners: Vec<ListenerReach>,
}

/// "What can namespace X reach?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outgoing {
    /// The namespace asked about.
    pub namespace: String,
    /// Its tenant; `None` when no tenant owns it.
    pub tenant: Option<String>,
    /// `enforce` or `audit` (the tenant's, else the document's).
    pub mode: Mode,
    /// The tenant's `outboundTrafficPolicy`.
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// For a namespace no tenant owns: `unknownSource`.
    pub unknown_source: Option<UnknownSource>,
    /// The namespace default, then each workload exception.
    pub scopes: Vec<ScopeReach>,
    /// What weakens the picture, in words.
    pub notes: Vec<String>,
}

/// One way a source reaches the namespace asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Path {
    /// The source namespace.
    pub namespace: String,
    /// Its tenant.
    pub tenant: String,
    /// `enforce` or `audit`.
    pub mode: Mode,
    /// The workload exception; `None` for every pod of the namespace.
    pub workload: Option<String>,
    /// The listener.
    pub port: Option<u16>,
    /// The port's protocol, when declared.
    pub protocol: Option<String>,
    /// Whether TCP/TLS connections may use it.
    pub tcp: bool,
    /// The entries that import hosts of the namespace (`.` written as the source namespace).
    pub hosts: Vec<String>,
    /// The exclusions that apply to hosts of the namespace.
    pub excludes: Vec<String>,
}

/// A source that reaches the namespace other than by its egress entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bypass {
    /// The source namespace.
    pub namespace: String,
    /// Its tenant.
    pub tenant: String,
}

/// "Who can reach namespace Y?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Incoming {
    /// The namespace asked about.
    pub namespace: String,
    /// The tenant owning it, if any.
    pub owner: Option<String>,
    /// Whether it is declared in `sharedNamespaces`.
    pub shared: bool,
    /// Every listener of every source namespace that imports hosts of it.
    pub paths: Vec<Path>,
    /// Sources in audit mode: the filter blocks nothing for them.
    pub audit: Vec<Bypass>,
    /// Sources with `ALLOW_ANY` while `clusterNetworks` is not set: they reach its pods by IP
    /// address (PassthroughCluster).
    pub allow_any: Vec<Bypass>,
    /// `unknownSource`: `allow` lets every namespace no tenant owns through unchecked.
    pub unknown_source: UnknownSource,
    /// What weakens the picture, in words.
    pub notes: Vec<String>,
}

fn protocol(l: &HostListener) -> Option<String> {
    l.port
        .as_ref()
        .and_then(|p| p.protocol)
        .map(|p| p.to_string())
}

/// `.` written as the namespace it stands for, for a source in `src`.
fn resolved(e: &HostEntry, src: &str) -> String {
    let mut e = e.clone();
    if e.namespace == NsSelector::Own {
        e.namespace = NsSelector::Named(src.to_owned());
    }
    e.to_string()
}

fn listener_reach(port: Option<u16>, l: &HostListener, src: &str) -> ListenerReach {
    ListenerReach {
        port,
        protocol: protocol(l),
        tcp: crate::listeners::opens_tcp(l.port.as_ref()),
        allows: l
            .hosts
            .iter()
            .filter(|e| !e.exclude)
            .map(|e| resolved(e, src))
            .collect(),
        excludes: l
            .hosts
            .iter()
            .filter(|e| e.exclude)
            .map(|e| resolved(e, src))
            .collect(),
    }
}

fn tenant_of<'a>(spec: &'a PolicySpec, ns: &str) -> Option<&'a TenantSpec> {
    spec.tenants
        .iter()
        .find(|t| t.namespaces.iter().any(|n| n == ns))
}

fn mode_of(spec: &PolicySpec, t: &TenantSpec) -> Mode {
    t.mode.unwrap_or(spec.mode)
}

/// The namespace default and each workload exception, with their merged listeners
/// ([`SidecarEgress::merged`], the merge the filter and the Sidecars apply).
fn views(t: &TenantSpec) -> Vec<(Option<usize>, SidecarEgress)> {
    let mut out = vec![(None, SidecarEgress::from_egress(&t.egress))];
    for (w, wl) in t.workloads.iter().enumerate() {
        out.push((Some(w), SidecarEgress::merged(&t.egress, &wl.egress)));
    }
    out
}

/// What pods of namespace `ns` may reach, listener by listener.
pub fn outgoing(spec: &PolicySpec, ns: &str) -> Outgoing {
    let Some(t) = tenant_of(spec, ns) else {
        let mut notes = vec![format!("namespace {ns} belongs to no tenant")];
        notes.push(match spec.unknown_source {
            UnknownSource::Deny => {
                "unknownSource: deny: the filter denies every request it sends".to_owned()
            }
            UnknownSource::Allow => "unknownSource: allow: the filter does not check it; it reaches whatever its Sidecar lets through".to_owned(),
        });
        return Outgoing {
            namespace: ns.to_owned(),
            tenant: None,
            mode: spec.mode,
            outbound_traffic_policy: None,
            unknown_source: Some(spec.unknown_source),
            scopes: Vec::new(),
            notes,
        };
    };
    let mode = mode_of(spec, t);
    let all = views(t);
    let default = all.first().map(|(_, v)| v.clone()).unwrap_or_default();
    let mut scopes = Vec::new();
    for (w, view) in &all {
        let wl = w.and_then(|w| t.workloads.get(w));
        let listeners = view
            .iter()
            .filter(|(port, l)| {
                // An exception lists only what differs from the namespace default.
                wl.is_none() || default.iter().find(|(p, _)| p == port).map(|(_, d)| d) != Some(l)
            })
            .map(|(port, l)| listener_reach(port, l, ns))
            .collect();
        scopes.push(ScopeReach {
            workload: wl.map(|w| w.name.clone()),
            selector: wl.map(|w| w.selector.clone()).unwrap_or_default(),
            listeners,
        });
    }
    let mut notes = Vec::new();
    if mode == Mode::Audit {
        notes.push(
            "audit mode: the filter blocks nothing, it reports what it would deny".to_owned(),
        );
    }
    notes.push(match t.outbound_traffic_policy {
        OutboundTrafficPolicy::AllowAny if spec.cluster_networks.is_empty() => "ALLOW_ANY: every destination outside the service registry passes (external addresses, and pods and ClusterIPs of every namespace by IP address: clusterNetworks is not set)".to_owned(),
        OutboundTrafficPolicy::AllowAny => "ALLOW_ANY: destinations outside the service registry pass, except addresses inside clusterNetworks (in-cluster: they need an import)".to_owned(),
        OutboundTrafficPolicy::RegistryOnly => "REGISTRY_ONLY: destinations outside the service registry are denied".to_owned(),
    });
    Outgoing {
        namespace: ns.to_owned(),
        tenant: Some(t.name.clone()),
        mode,
        outbound_traffic_policy: Some(t.outbound_traffic_policy),
        unknown_source: None,
        scopes,
        notes,
    }
}

/// Whether entry `e` selects hosts of namespace `dest` for a source in `src`: its namespace
/// part selects `dest` ([`NsSelector::selects`]) and, for an entry of any namespace (`*/...`),
/// its dnsName covers a service of `dest` (`<svc>.<dest>.svc.<clusterDomain>`).
/// `svc_suffix` is `.svc.<clusterDomain>`.
pub fn selects_namespace(e: &HostEntry, src: &str, dest: &str, svc_suffix: &str) -> bool {
    if !e.namespace.selects(src, dest) {
        return false;
    }
    match (&e.namespace, &e.host) {
        (NsSelector::Any, HostPattern::Exact(h)) => {
            name::service_namespace(h.as_bytes(), svc_suffix.as_bytes()) == Some(dest.as_bytes())
        }
        (NsSelector::Any, p @ HostPattern::Suffix(_)) => {
            p.covers(&format!("svc.{dest}{svc_suffix}"))
        }
        _ => true,
    }
}

/// Every source namespace (and workload exception) that may reach hosts of namespace `dest`,
/// listener by listener, and the sources that reach it around their egress entries.
pub fn incoming(spec: &PolicySpec, dest: &str) -> Incoming {
    let svc_suffix = format!(".svc.{}", spec.cluster_domain.to_ascii_lowercase());
    let mut paths: Vec<Path> = Vec::new();
    let mut audit = Vec::new();
    let mut allow_any = Vec::new();
    for t in &spec.tenants {
        let mode = mode_of(spec, t);
        let all = views(t);
        for src in &t.namespaces {
            let bypass = || Bypass {
                namespace: src.clone(),
                tenant: t.name.clone(),
            };
            if mode == Mode::Audit {
                audit.push(bypass());
            }
            // With clusterNetworks, a passthrough into the cluster's addresses needs an import
            // like any other destination: ALLOW_ANY then opens only what is outside.
            if t.outbound_traffic_policy == OutboundTrafficPolicy::AllowAny
                && spec.cluster_networks.is_empty()
                && src != dest
            {
                allow_any.push(bypass());
            }
            let mut seen: Vec<(Option<u16>, Vec<String>, Vec<String>)> = Vec::new();
            for (w, view) in &all {
                for (port, l) in view.iter() {
                    let pick = |exclude: bool| -> Vec<String> {
                        l.hosts
                            .iter()
                            .filter(|e| e.exclude == exclude)
                            .filter(|e| selects_namespace(e, src, dest, &svc_suffix))
                            .map(|e| resolved(e, src))
                            .collect()
                    };
                    let hosts = pick(false);
                    let excludes = pick(true);
                    // An exclusion of the whole namespace (`~uat/*`, `~/*`) leaves nothing.
                    let all_excluded = l.hosts.iter().any(|e| {
                        e.exclude && e.host == HostPattern::All && e.namespace.selects(src, dest)
                    });
                    if hosts.is_empty() || all_excluded {
                        continue;
                    }
                    let key = (port, hosts.clone(), excludes.clone());
                    if w.is_some() && seen.contains(&key) {
                        continue; // the exception adds nothing here
                    }
                    seen.push(key);
                    paths.push(Path {
                        namespace: src.clone(),
                        tenant: t.name.clone(),
                        mode,
                        workload: w.and_then(|w| t.workloads.get(w)).map(|w| w.name.clone()),
                        port,
                        protocol: protocol(l),
                        tcp: crate::listeners::opens_tcp(l.port.as_ref()),
                        hosts,
                        excludes,
                    });
                }
            }
        }
    }
    let owner = tenant_of(spec, dest).map(|t| t.name.clone());
    let shared = spec.shared_namespaces.iter().any(|n| n == dest);
    let mut notes = Vec::new();
    if owner.is_none() && !shared {
        notes.push(format!(
            "namespace {dest} is owned by no tenant and not declared in sharedNamespaces"
        ));
    }
    if spec.unknown_source == UnknownSource::Allow {
        notes.push(
            "unknownSource: allow: namespaces no tenant owns are not checked by the filter"
                .to_owned(),
        );
    }
    Incoming {
        namespace: dest.to_owned(),
        owner,
        shared,
        paths,
        audit,
        allow_any,
        unknown_source: spec.unknown_source,
        notes,
    }
}

/// `26257/TCP`, `80/HTTP (HTTP only)`, `all ports`, `other ports`.
fn port_label(port: Option<u16>, protocol: Option<&str>, tcp: bool, has_ports: bool) -> String {
    match (port, protocol) {
        (Some(p), Some(proto)) if !tcp => format!("port {p}/{proto} (HTTP only)"),
        (Some(p), Some(proto)) => format!("port {p}/{proto}"),
        (Some(p), None) => format!("port {p}"),
        (None, _) if has_ports => "other ports".to_owned(),
        (None, _) => "all ports".to_owned(),
    }
}

impl Outgoing {
    /// The answer as a person reads it.
    pub fn to_text(&self) -> String {
        let mut s = format!("namespace {}", self.namespace);
        match &self.tenant {
            Some(t) => {
                let _ = write!(s, ": tenant {t}, mode {}", self.mode.as_str());
                if let Some(o) = self.outbound_traffic_policy {
                    let _ = write!(s, ", {}", o.as_str());
                }
            }
            None => s.push_str(": no tenant"),
        }
        s.push('\n');
        for scope in &self.scopes {
            match &scope.workload {
                None => s.push_str("  every pod:\n"),
                Some(w) => {
                    let sel: Vec<String> = scope
                        .selector
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let _ = writeln!(s, "  workload exception {w} ({}) also:", sel.join(","));
                    if scope.listeners.is_empty() {
                        s.push_str("    (nothing more)\n");
                    }
                }
            }
            let has_ports = scope.listeners.iter().any(|l| l.port.is_some());
            for l in &scope.listeners {
                let _ = writeln!(
                    s,
                    "    {}: {}",
                    port_label(l.port, l.protocol.as_deref(), l.tcp, has_ports),
                    l.allows.join(", ")
                );
                if !l.excludes.is_empty() {
                    let _ = writeln!(s, "      except {}", l.excludes.join(", "));
                }
            }
            if scope.workload.is_none() && scope.listeners.is_empty() {
                s.push_str("    nothing (no egress entries)\n");
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

impl Incoming {
    /// The answer as a person reads it.
    pub fn to_text(&self) -> String {
        let mut s = format!("namespace {}", self.namespace);
        match (&self.owner, self.shared) {
            (Some(t), _) => {
                let _ = write!(s, " (tenant {t})");
            }
            (None, true) => s.push_str(" (shared)"),
            (None, false) => s.push_str(" (no tenant)"),
        }
        s.push_str(" is reachable from:\n");
        if self.paths.is_empty() {
            s.push_str("  no egress entry of any tenant\n");
        }
        for p in &self.paths {
            let who = match &p.workload {
                Some(w) => format!("{} (workload exception {w})", p.namespace),
                None => p.namespace.clone(),
            };
            let audit = if p.mode == Mode::Audit {
                " [audit]"
            } else {
                ""
            };
            let port = match (p.port, p.protocol.as_deref()) {
                (None, _) => "any port".to_owned(),
                (Some(n), proto) => port_label(Some(n), proto, p.tcp, true),
            };
            let _ = writeln!(s, "  {who}{audit}: {port}: {}", p.hosts.join(", "));
            if !p.excludes.is_empty() {
                let _ = writeln!(s, "    except {}", p.excludes.join(", "));
            }
        }
        let list = |b: &[Bypass]| -> String {
            b.iter()
                .map(|b| b.namespace.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.allow_any.is_empty() {
            let _ = writeln!(
                s,
                "  ALLOW_ANY (its pods by IP address, via PassthroughCluster): {}",
                list(&self.allow_any)
            );
        }
        if !self.audit.is_empty() {
            let _ = writeln!(s, "  audit mode (nothing blocked): {}", list(&self.audit));
        }
        if self.unknown_source == UnknownSource::Allow {
            s.push_str("  every namespace no tenant owns (unknownSource: allow)\n");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn spec() -> PolicySpec {
        crate::validate::validate_value(serde_json::json!({
            "apiVersion": "tenant-egress/v1",
            "sharedNamespaces": ["istio-system"],
            "tenants": [
                {"name": "prod", "namespaces": ["prod"],
                 "egress": [
                    {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["uat/cockroachdb.uat.svc.cluster.local"]},
                    {"port": {"number": 8080, "protocol": "HTTP"}, "hosts": ["./*"]},
                    {"hosts": ["./*", "istio-system/*", "~uat/secret.uat.svc.cluster.local", "uat/*"]}],
                 "workloads": [{"name": "batman", "selector": {"app": "batman"},
                                "egress": [{"port": {"number": 8080, "protocol": "HTTP"}, "hosts": ["logs/*"]}]}]},
                {"name": "uat", "namespaces": ["uat"], "mode": "audit",
                 "egress": [{"hosts": ["./*"]}]},
                {"name": "dev", "namespaces": ["dev"], "outboundTrafficPolicy": "ALLOW_ANY",
                 "egress": [{"hosts": ["./*", "*/*.uat.svc.cluster.local", "*/api.example.com"]}]},
                {"name": "logs", "namespaces": ["logs"],
                 "egress": [{"hosts": ["./*", "~uat/*", "*/*"]}]}
            ]
        }))
        .unwrap()
        .0
    }

    #[test]
    fn outgoing_lists_listeners_exclusions_and_exceptions() {
        let o = outgoing(&spec(), "prod");
        assert_eq!(o.tenant.as_deref(), Some("prod"));
        assert_eq!(o.mode, Mode::Enforce);
        let default = &o.scopes[0];
        assert_eq!(default.listeners.len(), 3);
        assert_eq!(default.listeners[1].port, Some(26257));
        assert!(default.listeners[1].tcp);
        assert_eq!(default.listeners[0].port, Some(8080));
        assert!(!default.listeners[0].tcp);
        assert_eq!(
            default.listeners[2].allows,
            ["prod/*", "istio-system/*", "uat/*"]
        );
        assert_eq!(
            default.listeners[2].excludes,
            ["~uat/secret.uat.svc.cluster.local"]
        );
        // The exception lists only the listener it changes: 8080, HTTP only, the tenant's hosts
        // there plus its own (the merge).
        let batman = &o.scopes[1];
        assert_eq!(batman.workload.as_deref(), Some("batman"));
        assert_eq!(batman.listeners.len(), 1, "{batman:?}");
        assert_eq!(batman.listeners[0].port, Some(8080));
        assert!(!batman.listeners[0].tcp);
        assert_eq!(batman.listeners[0].allows, ["prod/*", "logs/*"]);
        let text = o.to_text();
        assert!(
            text.starts_with("namespace prod: tenant prod, mode enforce, REGISTRY_ONLY\n"),
            "{text}"
        );
        assert!(
            text.contains("    port 26257/TCP: uat/cockroachdb.uat.svc.cluster.local\n"),
            "{text}"
        );
        assert!(
            text.contains("      except ~uat/secret.uat.svc.cluster.local\n"),
            "{text}"
        );
        assert!(text.contains("port 8080/HTTP (HTTP only)"), "{text}");

        let dev = outgoing(&spec(), "dev");
        assert!(
            dev.notes.iter().any(|n| n.starts_with("ALLOW_ANY")),
            "{dev:?}"
        );
        let uat = outgoing(&spec(), "uat");
        assert!(uat.notes.iter().any(|n| n.starts_with("audit mode")));
        let nobody = outgoing(&spec(), "kube-system");
        assert_eq!(nobody.tenant, None);
        assert!(nobody.to_text().contains("unknownSource: deny"));
    }

    #[test]
    fn incoming_names_every_path_and_every_bypass() {
        let i = incoming(&spec(), "uat");
        assert_eq!(i.owner.as_deref(), Some("uat"));
        let from: Vec<(&str, Option<u16>, Vec<&str>)> = i
            .paths
            .iter()
            .map(|p| {
                (
                    p.namespace.as_str(),
                    p.port,
                    p.hosts.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            from,
            vec![
                (
                    "prod",
                    Some(26257),
                    vec!["uat/cockroachdb.uat.svc.cluster.local"]
                ),
                // Not on 8080: that listener imports only prod (and, for batman, logs).
                ("prod", None, vec!["uat/*"]),
                ("uat", None, vec!["uat/*"]),
                ("dev", None, vec!["*/*.uat.svc.cluster.local"]),
                // logs: `*/*` imports it, but `~uat/*` excludes the whole namespace.
            ]
        );
        assert_eq!(i.paths[1].excludes, ["~uat/secret.uat.svc.cluster.local"]);
        assert_eq!(i.paths[2].mode, Mode::Audit);
        assert_eq!(
            i.allow_any,
            [Bypass {
                namespace: "dev".into(),
                tenant: "dev".into()
            }]
        );
        assert_eq!(i.audit.len(), 1);
        let text = i.to_text();
        assert!(
            text.starts_with("namespace uat (tenant uat) is reachable from:\n"),
            "{text}"
        );
        assert!(text.contains("  uat [audit]: any port: uat/*\n"), "{text}");
        assert!(
            text.contains("  ALLOW_ANY (its pods by IP address, via PassthroughCluster): dev\n"),
            "{text}"
        );

        // With clusterNetworks, ALLOW_ANY no longer reaches uat's addresses.
        let mut fenced = spec();
        fenced.cluster_networks = vec!["10.96.0.0/12".into()];
        assert!(incoming(&fenced, "uat").allow_any.is_empty());
        assert!(outgoing(&fenced, "dev")
            .notes
            .iter()
            .any(|n| n.contains("except addresses inside clusterNetworks")));

        // `*/api.example.com` is no service of uat; `istio-system` is shared.
        let sys = incoming(&spec(), "istio-system");
        assert!(sys.shared);
        let srcs: Vec<&str> = sys.paths.iter().map(|p| p.namespace.as_str()).collect();
        assert_eq!(srcs, ["prod", "logs"]);
    }
}
