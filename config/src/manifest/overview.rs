//! The readable graphs of `tenant-egress graph`: one node per tenant (the default), or one
//! namespace with its edges in and out (`--namespace`).
//!
//! The detailed view ([`super::graph::render_namespaces`]) draws one node per namespace and per
//! external host and one edge per destination: at 50 namespaces that is thousands of edges. Here
//! - a tenant's namespaces are one node (its `.` is itself), and a tenant reaching all of itself
//!   on every port draws no self-edge (the legend says so);
//! - every host outside the cluster (`*/api.example.com`, `*/*.partner.com`) goes to ONE
//!   `external hosts` node; a service FQDN (`*/db.uat.svc.cluster.local`) to its namespace's;
//! - one edge per (source, destination, kind), labelled per port, hosts counted beyond two;
//! - what weakens isolation is drawn, in red: ALLOW_ANY (an edge to `outside the registry`,
//!   which includes every pod IP), audit mode (the tenant's node is dashed and says `audit`),
//!   `unknownSource: allow` (namespaces no tenant owns reach everything unchecked).
//!
//! Listeners come from the one listener model ([`SidecarEgress`]) and the namespace view from
//! [`tenant_egress_core::reach`], so the picture follows the rules the filter enforces.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tenant_egress_core::listeners::SidecarEgress;
use tenant_egress_core::name;
use tenant_egress_core::pattern::{HostEntry, HostPattern, NsSelector};
use tenant_egress_core::reach;
use tenant_egress_core::spec::{Mode, OutboundTrafficPolicy, PolicySpec, UnknownSource};

use super::graph::GraphFormat;

/// How many hosts an edge label names before it counts them.
const NAMED_HOSTS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EdgeKind {
    Allow,
    Workload,
    Except,
    /// Around the egress entries: ALLOW_ANY, unknownSource: allow.
    Leak,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A tenant (or, in the namespace view, a tenant's namespace).
    Tenant { audit: bool },
    /// A namespace no tenant owns (shared or not).
    Outside,
    /// `*`: any namespace.
    Any,
    /// Hosts outside the cluster.
    External,
    /// Destinations outside the service registry (ALLOW_ANY), or unowned sources.
    Leak,
}

#[derive(Debug)]
struct Node {
    key: String,
    label: String,
    shape: Shape,
}

/// What one listener of an edge lets through: every host of the destination, or some.
#[derive(Debug, Default)]
struct Hosts {
    all: bool,
    some: Vec<String>,
}

#[derive(Debug)]
struct Edge {
    from: usize,
    to: usize,
    kind: EdgeKind,
    /// The workload exception, for [`EdgeKind::Workload`].
    workload: Option<String>,
    /// Port label -> hosts, in insertion order.
    ports: Vec<(String, Hosts)>,
}

#[derive(Debug, Default)]
struct View {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    legend: Vec<String>,
}

impl View {
    fn node(&mut self, key: &str, label: impl Into<String>, shape: Shape) -> usize {
        if let Some(i) = self.nodes.iter().position(|n| n.key == key) {
            return i;
        }
        self.nodes.push(Node {
            key: key.to_owned(),
            label: label.into(),
            shape,
        });
        self.nodes.len() - 1
    }

    /// Adds `host` (`None`: every host) on `port` to the edge `from -> to` of `kind`.
    fn add(
        &mut self,
        (from, to): (usize, usize),
        kind: EdgeKind,
        workload: Option<&str>,
        port: &str,
        host: Option<String>,
    ) {
        let i = match self.edges.iter().position(|e| {
            e.from == from && e.to == to && e.kind == kind && e.workload.as_deref() == workload
        }) {
            Some(i) => i,
            None => {
                self.edges.push(Edge {
                    from,
                    to,
                    kind,
                    workload: workload.map(str::to_owned),
                    ports: Vec::new(),
                });
                self.edges.len() - 1
            }
        };
        let Some(edge) = self.edges.get_mut(i) else {
            return;
        };
        let slot = match edge.ports.iter().position(|(p, _)| p == port) {
            Some(j) => j,
            None => {
                edge.ports.push((port.to_owned(), Hosts::default()));
                edge.ports.len() - 1
            }
        };
        if let Some((_, hosts)) = edge.ports.get_mut(slot) {
            match host {
                None => hosts.all = true,
                Some(h) if !hosts.some.contains(&h) => hosts.some.push(h),
                Some(_) => {}
            }
        }
    }
}

fn edge_label(e: &Edge) -> String {
    let parts: Vec<String> = e
        .ports
        .iter()
        .map(|(port, hosts)| {
            let what = match (hosts.all, hosts.some.len()) {
                (true, _) => None,
                (false, n) if n <= NAMED_HOSTS => Some(hosts.some.join(", ")),
                (false, n) => Some(format!("{n} hosts")),
            };
            match what {
                Some(w) if port.is_empty() => w,
                Some(w) => format!("{port}: {w}"),
                None => port.clone(),
            }
        })
        .collect();
    let mut label = parts.join("; ");
    match e.kind {
        EdgeKind::Except => label = format!("except {label}"),
        EdgeKind::Workload => {
            label = format!("{} only: {label}", e.workload.as_deref().unwrap_or("?"))
        }
        EdgeKind::Allow | EdgeKind::Leak => {}
    }
    label
}

/// `26257/TCP`, `80/HTTP`, `all ports` (a lone catch-all), `other ports`.
fn port_label(port: Option<u16>, protocol: Option<String>, has_ports: bool) -> String {
    match (port, protocol) {
        (Some(p), Some(proto)) => format!("{p}/{proto}"),
        (Some(p), None) => p.to_string(),
        (None, _) if has_ports => "other ports".to_owned(),
        (None, _) => "all ports".to_owned(),
    }
}

/// Where an entry goes: the node key and label, and the host when it is not the whole
/// destination. `owner(ns)` names the node of a namespace (its tenant's, or its own).
fn destination(
    e: &HostEntry,
    own: &str,
    svc_suffix: &str,
    view: &mut View,
    owner: &dyn Fn(&str, &mut View) -> usize,
) -> (usize, Option<String>) {
    let host = match &e.host {
        HostPattern::All => None,
        h => Some(h.to_string()),
    };
    match (&e.namespace, &e.host) {
        (NsSelector::Own, _) => (owner(own, view), host),
        (NsSelector::Named(n), _) => (owner(n, view), host),
        (NsSelector::Any, HostPattern::All) => {
            (view.node("any", "* (any namespace)", Shape::Any), None)
        }
        (NsSelector::Any, HostPattern::Exact(h)) => {
            match name::service_namespace(h.as_bytes(), svc_suffix.as_bytes())
                .and_then(|ns| std::str::from_utf8(ns).ok())
            {
                Some(ns) => (owner(ns, view), host),
                None => (
                    view.node("external", "external hosts", Shape::External),
                    host,
                ),
            }
        }
        (NsSelector::Any, HostPattern::Suffix(_)) => (
            view.node("external", "external hosts", Shape::External),
            host,
        ),
    }
}

fn svc_suffix(spec: &PolicySpec) -> String {
    format!(".svc.{}", spec.cluster_domain.to_ascii_lowercase())
}

/// The node ALLOW_ANY leads to: everything outside the registry, which without
/// `clusterNetworks` includes every pod and ClusterIP by address.
fn outside_node(spec: &PolicySpec, view: &mut View) -> usize {
    let label = if spec.cluster_networks.is_empty() {
        "outside the registry: any IP, pods of every namespace"
    } else {
        "outside the registry (not clusterNetworks)"
    };
    view.node("outside-registry", label, Shape::Leak)
}

/// Draws the ways around the egress entries: ALLOW_ANY and `unknownSource: allow`.
fn leaks(spec: &PolicySpec, view: &mut View, sources: &[(usize, &str)], to: Option<usize>) {
    let outside = |view: &mut View| outside_node(spec, view);
    for (from, tenant) in sources {
        // Into one namespace, ALLOW_ANY reaches its addresses only without clusterNetworks
        // (the caller passes only such sources then).
        let allow_any = spec.tenants.iter().any(|t| {
            t.name == *tenant && t.outbound_traffic_policy == OutboundTrafficPolicy::AllowAny
        });
        if allow_any {
            let to = to.unwrap_or_else(|| outside(view));
            if to != *from {
                view.add((*from, to), EdgeKind::Leak, None, "ALLOW_ANY", None);
            }
        }
    }
    if spec.unknown_source == UnknownSource::Allow {
        let from = view.node(
            "unowned",
            "namespaces no tenant owns (unchecked)",
            Shape::Leak,
        );
        let to = to.unwrap_or_else(|| view.node("any", "* (any namespace)", Shape::Any));
        view.add(
            (from, to),
            EdgeKind::Leak,
            None,
            "unknownSource: allow",
            None,
        );
    }
}

/// One node per tenant.
fn tenants_view(spec: &PolicySpec) -> View {
    let mut view = View::default();
    let suffix = svc_suffix(spec);
    let mut tenant_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (t, tenant) in spec.tenants.iter().enumerate() {
        let audit = tenant.mode.unwrap_or(spec.mode) == Mode::Audit;
        let mut label = tenant.name.clone();
        if tenant.namespaces != [tenant.name.clone()] {
            let _ = write!(label, ": {}", tenant.namespaces.join(", "));
        }
        if audit {
            label.push_str(" [audit]");
        }
        let i = view.node(&format!("t{t}"), label, Shape::Tenant { audit });
        for ns in &tenant.namespaces {
            tenant_of.insert(ns, i);
        }
    }
    let shared = &spec.shared_namespaces;
    let owner = |ns: &str, view: &mut View| -> usize {
        tenant_of.get(ns).copied().unwrap_or_else(|| {
            let label = if shared.iter().any(|s| s == ns) {
                format!("{ns} (shared)")
            } else {
                ns.to_owned()
            };
            view.node(&format!("ns:{ns}"), label, Shape::Outside)
        })
    };
    let mut sources = Vec::new();
    let mut dropped_self = false;
    for (t, tenant) in spec.tenants.iter().enumerate() {
        let from = tenant_of
            .get(tenant.namespaces.first().map(String::as_str).unwrap_or(""))
            .copied()
            .unwrap_or(t);
        sources.push((from, tenant.name.as_str()));
        let own = tenant.namespaces.first().map(String::as_str).unwrap_or("");
        // The namespace default, then each exception as merged with it (what its pods get),
        // drawing only what the exception adds on each listener.
        let default = SidecarEgress::from_egress(&tenant.egress);
        let mut scopes = vec![(None, default.clone())];
        for wl in &tenant.workloads {
            scopes.push((
                Some(wl.name.as_str()),
                SidecarEgress::merged(&tenant.egress, &wl.egress),
            ));
        }
        // A tenant reaching every host of itself on every listener draws no self-edge.
        // (every port: so there must be a catch-all).
        let whole_self = default.catch_all.is_some()
            && default.iter().all(|(_, l)| {
                l.hosts.iter().any(|e| {
                    !e.exclude
                        && e.host == HostPattern::All
                        && tenant
                            .namespaces
                            .iter()
                            .all(|ns| e.namespace.selects(ns, ns))
                }) && !l.hosts.iter().any(|e| {
                    e.exclude
                        && tenant
                            .namespaces
                            .iter()
                            .any(|ns| reach::selects_namespace(e, ns, ns, &suffix))
                })
            });
        for (workload, listeners) in &scopes {
            let has_ports = !listeners.ports.is_empty();
            for (port, l) in listeners.iter() {
                let in_default = default
                    .on_port(port)
                    .map(|d| d.hosts.as_slice())
                    .unwrap_or(&[]);
                let label = port_label(
                    port,
                    l.port
                        .as_ref()
                        .and_then(|p| p.protocol)
                        .map(|p| p.to_string()),
                    has_ports,
                );
                for e in &l.hosts {
                    if workload.is_some() && in_default.contains(e) {
                        continue; // the namespace default's, drawn once
                    }
                    let (to, host) = destination(e, own, &suffix, &mut view, &owner);
                    if to == from && whole_self && !e.exclude {
                        dropped_self = true;
                        continue;
                    }
                    let kind = match (e.exclude, workload) {
                        (true, _) => EdgeKind::Except,
                        (false, Some(_)) => EdgeKind::Workload,
                        (false, None) => EdgeKind::Allow,
                    };
                    view.add((from, to), kind, *workload, &label, host);
                }
            }
        }
    }
    leaks(spec, &mut view, &sources, None);
    view.legend.push("one node per tenant (its namespaces listed); edges name ports, and hosts when not the whole destination (counted beyond two)".to_owned());
    if dropped_self {
        view.legend
            .push("a tenant reaching all of itself on every port draws no self-edge".to_owned());
    }
    view.legend.push("red: around the egress entries (ALLOW_ANY, unknownSource: allow); dashed red: exclusions; blue: workload exceptions; [audit]: nothing blocked".to_owned());
    view
}

/// One namespace, its edges out ([`reach::outgoing`]) and in ([`reach::incoming`]).
fn namespace_view(spec: &PolicySpec, ns: &str) -> View {
    let mut view = View::default();
    let suffix = svc_suffix(spec);
    let label_of = |n: &str| -> (String, Shape) {
        match spec
            .tenants
            .iter()
            .find(|t| t.namespaces.iter().any(|x| x == n))
        {
            Some(t) => {
                let audit = t.mode.unwrap_or(spec.mode) == Mode::Audit;
                let mut l = format!("{n} (tenant {})", t.name);
                if audit {
                    l.push_str(" [audit]");
                }
                (l, Shape::Tenant { audit })
            }
            None if spec.shared_namespaces.iter().any(|s| s == n) => {
                (format!("{n} (shared)"), Shape::Outside)
            }
            None => (n.to_owned(), Shape::Outside),
        }
    };
    let owner = |n: &str, view: &mut View| -> usize {
        let (label, shape) = label_of(n);
        view.node(&format!("ns:{n}"), label, shape)
    };
    let center = owner(ns, &mut view);
    let out = reach::outgoing(spec, ns);
    // All of itself on every port (a catch-all, and no exclusion in itself): no self-edge.
    let whole_self = out.scopes.first().is_some_and(|d| {
        d.listeners.iter().any(|l| l.port.is_none())
            && d.listeners.iter().all(|l| {
                l.allows.iter().any(|h| {
                    h.parse::<HostEntry>()
                        .is_ok_and(|e| e.host == HostPattern::All && e.namespace.selects(ns, ns))
                }) && !l.excludes.iter().any(|h| {
                    h.parse::<HostEntry>()
                        .is_ok_and(|e| reach::selects_namespace(&e, ns, ns, &suffix))
                })
            })
    });
    let has_ports = out
        .scopes
        .first()
        .is_some_and(|s| s.listeners.iter().any(|l| l.port.is_some()));
    for scope in &out.scopes {
        for l in &scope.listeners {
            let label = port_label(l.port, l.protocol.clone(), has_ports);
            for (raw, exclude) in l
                .allows
                .iter()
                .map(|h| (h, false))
                .chain(l.excludes.iter().map(|h| (h, true)))
            {
                let Ok(e) = raw.parse::<HostEntry>() else {
                    continue;
                };
                let (to, host) = destination(&e, ns, &suffix, &mut view, &owner);
                if whole_self && to == center && !exclude {
                    continue; // all of itself: no self-edge (the legend says so)
                }
                let kind = match (exclude, &scope.workload) {
                    (true, _) => EdgeKind::Except,
                    (false, Some(_)) => EdgeKind::Workload,
                    (false, None) => EdgeKind::Allow,
                };
                view.add((center, to), kind, scope.workload.as_deref(), &label, host);
            }
        }
    }
    let inc = reach::incoming(spec, ns);
    for p in &inc.paths {
        if p.namespace == ns {
            continue; // drawn as part of its edges out
        }
        let from = owner(&p.namespace, &mut view);
        let label = match p.port {
            Some(n) => port_label(Some(n), p.protocol.clone(), true),
            None => "any port".to_owned(),
        };
        let kind = if p.workload.is_some() {
            EdgeKind::Workload
        } else {
            EdgeKind::Allow
        };
        for h in &p.hosts {
            let host = h.parse::<HostEntry>().ok().and_then(|e| match e.host {
                HostPattern::All => None,
                other => Some(other.to_string()),
            });
            view.add((from, center), kind, p.workload.as_deref(), &label, host);
        }
    }
    let sources: Vec<(usize, String)> = inc
        .allow_any
        .iter()
        .map(|b| (owner(&b.namespace, &mut view), b.tenant.clone()))
        .collect();
    let sources: Vec<(usize, &str)> = sources.iter().map(|(i, t)| (*i, t.as_str())).collect();
    leaks(spec, &mut view, &sources, Some(center));
    // The namespace's own ALLOW_ANY: everything outside the registry.
    if out.outbound_traffic_policy == Some(OutboundTrafficPolicy::AllowAny) {
        let to = outside_node(spec, &mut view);
        view.add((center, to), EdgeKind::Leak, None, "ALLOW_ANY", None);
    }
    view.legend.push(format!(
        "namespace {ns}: its egress (edges out) and every source whose egress reaches it (edges in); no self-edge for all of itself"
    ));
    view.legend.push("red: around the egress entries (ALLOW_ANY: pods by IP address; unknownSource: allow); dashed red: exclusions; blue: workload exceptions; [audit]: nothing blocked".to_owned());
    view
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn render(view: &View, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for l in &view.legend {
                let _ = writeln!(out, "  %% {l}");
            }
            for (i, n) in view.nodes.iter().enumerate() {
                let label = mermaid_text(&n.label);
                let _ = match n.shape {
                    Shape::Any => writeln!(out, "  n{i}((\"{label}\"))"),
                    Shape::External => writeln!(out, "  n{i}>\"{label}\"]"),
                    Shape::Leak => writeln!(out, "  n{i}{{{{\"{label}\"}}}}"),
                    Shape::Tenant { .. } | Shape::Outside => writeln!(out, "  n{i}[\"{label}\"]"),
                };
            }
            let mut styles = Vec::new();
            for (k, e) in view.edges.iter().enumerate() {
                let arrow = match e.kind {
                    EdgeKind::Allow | EdgeKind::Leak => "-->",
                    EdgeKind::Except | EdgeKind::Workload => "-.->",
                };
                let _ = writeln!(
                    out,
                    "  n{} {arrow}|\"{}\"| n{}",
                    e.from,
                    mermaid_text(&edge_label(e)),
                    e.to
                );
                match e.kind {
                    EdgeKind::Except | EdgeKind::Leak => {
                        styles.push(format!("  linkStyle {k} stroke:#d33,color:#d33"))
                    }
                    EdgeKind::Workload => {
                        styles.push(format!("  linkStyle {k} stroke:#36c,color:#36c"))
                    }
                    EdgeKind::Allow => {}
                }
            }
            for s in styles {
                out.push_str(&s);
                out.push('\n');
            }
            let class = |pred: &dyn Fn(&Shape) -> bool| -> Vec<String> {
                view.nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| pred(&n.shape))
                    .map(|(i, _)| format!("n{i}"))
                    .collect()
            };
            let outside = class(&|s| matches!(s, Shape::Outside | Shape::Any | Shape::External));
            if !outside.is_empty() {
                out.push_str("  classDef outside stroke-dasharray: 4 4\n");
                let _ = writeln!(out, "  class {} outside", outside.join(","));
            }
            let audit = class(&|s| matches!(s, Shape::Tenant { audit: true }));
            if !audit.is_empty() {
                out.push_str("  classDef audit stroke:#d80,stroke-dasharray: 6 3\n");
                let _ = writeln!(out, "  class {} audit", audit.join(","));
            }
            let leak = class(&|s| matches!(s, Shape::Leak));
            if !leak.is_empty() {
                out.push_str("  classDef leak stroke:#d33,color:#d33\n");
                let _ = writeln!(out, "  class {} leak", leak.join(","));
            }
        }
        GraphFormat::Dot => {
            out.push_str("digraph tenant_egress {\n  rankdir=LR;\n  node [shape=box];\n");
            for l in &view.legend {
                let _ = writeln!(out, "  // {l}");
            }
            for (i, n) in view.nodes.iter().enumerate() {
                let attrs = match n.shape {
                    Shape::Tenant { audit: false } => "",
                    Shape::Tenant { audit: true } => ", style=dashed, color=orange",
                    Shape::Outside => ", style=dashed",
                    Shape::Any => ", shape=ellipse, style=dashed",
                    Shape::External => ", shape=cds, style=dashed",
                    Shape::Leak => ", shape=hexagon, color=red, fontcolor=red",
                };
                let _ = writeln!(out, "  n{i} [label=\"{}\"{attrs}];", dot_text(&n.label));
            }
            for e in &view.edges {
                let style = match e.kind {
                    EdgeKind::Allow => "",
                    EdgeKind::Except => ", style=dashed, color=red, fontcolor=red",
                    EdgeKind::Workload => ", style=dotted, color=blue, fontcolor=blue",
                    EdgeKind::Leak => ", color=red, fontcolor=red, penwidth=2",
                };
                let _ = writeln!(
                    out,
                    "  n{} -> n{} [label=\"{}\"{style}];",
                    e.from,
                    e.to,
                    dot_text(&edge_label(e))
                );
            }
            out.push_str("}\n");
        }
    }
    out
}

/// The tenant graph (the default view). With `whole_only`, edges that reach only single
/// services of a tenant or namespace are left out and counted in their source's label
/// (`+ services of 3 more`): the overview of who reaches whom as a whole.
pub fn render_tenants(spec: &PolicySpec, format: GraphFormat, whole_only: bool) -> String {
    let mut view = tenants_view(spec);
    if whole_only {
        collapse_services(&mut view);
    }
    render(&view, format)
}

/// Drops the edges that import only single services of a tenant or namespace (not exclusions,
/// not leaks) and says in each source's label how many destinations they went to.
fn collapse_services(view: &mut View) {
    let mut dropped: BTreeMap<usize, std::collections::BTreeSet<usize>> = BTreeMap::new();
    let nodes = &view.nodes;
    view.edges.retain(|e| {
        let to_namespace = nodes
            .get(e.to)
            .is_some_and(|n| matches!(n.shape, Shape::Tenant { .. } | Shape::Outside));
        let services_only = e.ports.iter().all(|(_, h)| !h.all);
        let drop =
            to_namespace && services_only && matches!(e.kind, EdgeKind::Allow | EdgeKind::Workload);
        if drop {
            dropped.entry(e.from).or_default().insert(e.to);
        }
        !drop
    });
    for (from, to) in dropped {
        if let Some(n) = view.nodes.get_mut(from) {
            let _ = write!(n.label, " (+ services of {} more)", to.len());
        }
    }
    view.legend.push("edges to single services of a tenant are left out: each source's label counts their destinations (+ services of N more)".to_owned());
}

/// One namespace with its edges in and out (`--namespace`).
pub fn render_namespace(spec: &PolicySpec, ns: &str, format: GraphFormat) -> String {
    render(&namespace_view(spec, ns), format)
}

/// Nodes and edges of a rendering, counted from its text (for tests and the size comparison
/// in the docs): Mermaid `nI[...]` lines and arrows, or Graphviz node and `->` lines.
pub fn count(text: &str) -> (usize, usize) {
    let mut nodes = 0;
    let mut edges = 0;
    for line in text.lines().map(str::trim) {
        // Node ids are `n<digits>`.
        if !line.starts_with('n') || !line.chars().nth(1).is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        if line.contains("-->") || line.contains("-.->") || line.contains(" -> ") {
            edges += 1;
        } else {
            nodes += 1;
        }
    }
    (nodes, edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> PolicySpec {
        tenant_egress_core::validate::validate_value(v).unwrap().0
    }

    fn doc() -> PolicySpec {
        spec(serde_json::json!({
            "apiVersion": "tenant-egress/v1",
            "unknownSource": "allow",
            "sharedNamespaces": ["istio-system"],
            "tenants": [
                {"name": "prod", "namespaces": ["prod", "prod-eu"],
                 "egress": [
                    {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./*", "uat/cockroachdb.uat.svc.cluster.local"]},
                    {"hosts": ["./*", "istio-system/*", "~/evil.example.com", "*/api.example.com",
                               "*/b.example.com", "*/*.c.example.com", "*/db.dev.svc.cluster.local"]}],
                 "workloads": [{"name": "batman", "selector": {"app": "batman"},
                                "egress": [{"hosts": ["dev/*"]}]}]},
                {"name": "uat", "namespaces": ["uat"], "mode": "audit", "egress": [{"hosts": ["./*", "istio-system/*"]}]},
                {"name": "dev", "namespaces": ["dev"], "outboundTrafficPolicy": "ALLOW_ANY",
                 "egress": [{"hosts": ["*/*"]}]}
            ]
        }))
    }

    #[test]
    fn tenants_view_groups_collapses_and_shows_the_leaks() {
        let m = render_tenants(&doc(), GraphFormat::Mermaid, false);
        // Tenants as nodes, namespaces in the label; audit marked.
        assert!(m.contains("  n0[\"prod: prod, prod-eu\"]\n"), "{m}");
        assert!(m.contains("  n1[\"uat [audit]\"]\n"), "{m}");
        // prod reaches all of itself: no self-edge.
        assert!(!m.contains("n0 -->|\"26257/TCP; other ports\"| n0"), "{m}");
        assert!(
            !m.lines()
                .any(|l| l.starts_with("  n0 --") && l.ends_with("| n0")),
            "{m}"
        );
        // Three external hosts: one node, counted; the dev service goes to dev.
        assert!(m.contains(">\"external hosts\"]"), "{m}");
        assert!(m.contains("|\"other ports: 3 hosts\"|"), "{m}");
        assert!(
            m.contains("-->|\"26257/TCP: cockroachdb.uat.svc.cluster.local\"| n1"),
            "{m}"
        );
        assert!(
            m.contains("|\"other ports: db.dev.svc.cluster.local\"| n2"),
            "{m}"
        );
        assert!(
            m.contains("|\"except other ports: evil.example.com\"|"),
            "{m}"
        );
        // The exception's catch-all also serves the tenant's port (Istio's merge).
        assert!(
            m.contains("|\"batman only: 26257/TCP; other ports\"|"),
            "{m}"
        );
        // The leaks, in red.
        assert!(
            m.contains("{{\"outside the registry: any IP, pods of every namespace\"}}"),
            "{m}"
        );
        assert!(m.contains("-->|\"ALLOW_ANY\"|"), "{m}");
        assert!(m.contains("-->|\"unknownSource: allow\"|"), "{m}");
        assert!(m.contains("classDef audit"), "{m}");
        assert!(m.contains("istio-system (shared)"), "{m}");
        let (nodes, edges) = count(&m);
        assert_eq!((nodes, edges), (8, 10), "{m}");
        let d = render_tenants(&doc(), GraphFormat::Dot, false);
        assert_eq!(count(&d), (nodes, edges), "{d}");
        assert!(d.contains("shape=hexagon, color=red"), "{d}");
        assert_eq!(render_tenants(&doc(), GraphFormat::Dot, false), d);
        // Whole destinations only: prod's single services of uat and dev become a count.
        let w = render_tenants(&doc(), GraphFormat::Mermaid, true);
        assert!(
            w.contains("  n0[\"prod: prod, prod-eu (+ services of 2 more)\"]\n"),
            "{w}"
        );
        assert!(!w.contains("cockroachdb.uat.svc.cluster.local"), "{w}");
        assert!(
            w.contains("|\"batman only: 26257/TCP; other ports\"| n2"),
            "{w}"
        );
        assert!(w.contains("|\"other ports: 3 hosts\"|"), "{w}");
        assert_eq!(count(&w), (8, 8), "{w}");
    }

    #[test]
    fn namespace_view_has_its_edges_in_and_out_only() {
        let m = render_namespace(&doc(), "uat", GraphFormat::Mermaid);
        assert!(m.contains("  n0[\"uat (tenant uat) [audit]\"]\n"), "{m}");
        // Out: istio-system (itself needs no edge).
        assert!(m.contains("  n0 -->|\"all ports\"| n1\n"), "{m}");
        assert!(!m.contains("| n0\n  n0 -->|\"all ports\"| n0"), "{m}");
        assert!(!m.contains("  n0 -->|\"all ports\"| n0\n"), "{m}");
        // In: prod and prod-eu on 26257 for the one service; dev by */* and by ALLOW_ANY.
        assert!(m.contains("[\"prod (tenant prod)\"]"), "{m}");
        assert!(m.contains("[\"prod-eu (tenant prod)\"]"), "{m}");
        assert!(
            m.contains("-->|\"26257/TCP: cockroachdb.uat.svc.cluster.local\"| n0"),
            "{m}"
        );
        assert!(m.contains("-->|\"any port\"| n0"), "{m}");
        assert!(m.contains("-->|\"ALLOW_ANY\"| n0"), "{m}");
        assert!(m.contains("-->|\"unknownSource: allow\"| n0"), "{m}");
        // Nothing about edges between others.
        assert!(!m.contains("external hosts"), "{m}");
        let dev = render_namespace(&doc(), "dev", GraphFormat::Dot);
        assert!(dev.contains("label=\"ALLOW_ANY\", color=red"), "{dev}");
        assert!(dev.contains("outside the registry"), "{dev}");
    }
}
