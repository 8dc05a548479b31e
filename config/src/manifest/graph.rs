//! Who may reach whom: a Mermaid or Graphviz picture of a policy (`tenant-egress graph`).
//!
//! Nodes are namespaces, grouped per tenant, plus namespaces no tenant owns, `*` (any namespace)
//! and hosts allowed from any namespace. An edge goes from each tenant namespace to each
//! destination its egress names, labelled with the ports (`26257/TCP`; `all ports` for the
//! catch-all, `other ports` when the tenant also has port-scoped listeners) and the host when it
//! is not the whole namespace. Exclusions are dashed red `except` edges; a workload exception's
//! additions are dotted blue edges labelled `<name> only`. Output is deterministic.

use std::fmt::Write as _;

use tenant_egress_core::pattern::{HostEntry, HostPattern, NsSelector};
use tenant_egress_core::spec::{EgressSpec, PolicySpec};

/// Output syntax (`graph --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Mermaid `flowchart` (renders in GitHub/GitLab Markdown).
    Mermaid,
    /// Graphviz `digraph`.
    Dot,
}

/// Which graph (`graph --view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphView {
    /// One node per tenant, external hosts collapsed ([`super::overview`]).
    Tenants,
    /// One node per namespace and per external host.
    Namespaces,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EdgeKind {
    Allow,
    Except,
    Workload,
}

#[derive(Debug)]
struct Node {
    key: String,
    label: String,
    tenant: Option<usize>,
    shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Namespace,
    Foreign,
    Any,
    Host,
}

#[derive(Debug)]
struct Edge {
    from: usize,
    to: usize,
    kind: EdgeKind,
    workload: Option<String>,
    labels: Vec<String>,
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    tenants: Vec<String>,
}

impl Graph {
    fn node(&mut self, key: String, label: String, tenant: Option<usize>, shape: Shape) -> usize {
        if let Some(i) = self.nodes.iter().position(|n| n.key == key) {
            return i;
        }
        self.nodes.push(Node {
            key,
            label,
            tenant,
            shape,
        });
        self.nodes.len() - 1
    }

    fn ns(&mut self, ns: &str) -> usize {
        self.node(format!("ns:{ns}"), ns.to_owned(), None, Shape::Foreign)
    }

    fn edge(
        &mut self,
        from: usize,
        to: usize,
        kind: EdgeKind,
        workload: Option<&str>,
        label: String,
    ) {
        let found = self.edges.iter_mut().find(|e| {
            e.from == from && e.to == to && e.kind == kind && e.workload.as_deref() == workload
        });
        match found {
            Some(e) => {
                if !e.labels.contains(&label) {
                    e.labels.push(label);
                }
            }
            None => self.edges.push(Edge {
                from,
                to,
                kind,
                workload: workload.map(str::to_owned),
                labels: vec![label],
            }),
        }
    }

    fn add_egress(
        &mut self,
        src_ns: &str,
        egress: &[EgressSpec],
        has_ports: bool,
        workload: Option<&str>,
    ) {
        let from = self.ns(src_ns);
        for entry in egress {
            let ports = match &entry.port {
                Some(p) => match &p.protocol {
                    Some(proto) => format!("{}/{proto}", p.number),
                    None => p.number.to_string(),
                },
                None if has_ports => "other ports".to_owned(),
                None => "all ports".to_owned(),
            };
            for raw in &entry.hosts {
                let Ok(e) = raw.parse::<HostEntry>() else {
                    continue;
                };
                self.add_entry(from, src_ns, &e, &ports, workload);
            }
        }
    }

    fn add_entry(
        &mut self,
        from: usize,
        src_ns: &str,
        e: &HostEntry,
        ports: &str,
        workload: Option<&str>,
    ) {
        let (to, host) = match (&e.namespace, &e.host) {
            (NsSelector::Any, HostPattern::All) => (
                self.node("any".into(), "* (any namespace)".into(), None, Shape::Any),
                None,
            ),
            (NsSelector::Any, h) => (
                self.node(
                    format!("host:{h}"),
                    format!("{h} (any namespace)"),
                    None,
                    Shape::Host,
                ),
                None,
            ),
            (NsSelector::Own, h) => (from, host_part(h)),
            (NsSelector::Named(n), h) => (self.ns(n), host_part(h)),
        };
        let _ = src_ns;
        let mut label = String::new();
        if let Some(w) = workload {
            let _ = write!(label, "{w} only: ");
        }
        if e.exclude {
            label.push_str("except ");
        }
        label.push_str(ports);
        if let Some(h) = host {
            let _ = write!(label, " {h}");
        }
        let kind = match (e.exclude, workload) {
            (true, _) => EdgeKind::Except,
            (false, Some(_)) => EdgeKind::Workload,
            (false, None) => EdgeKind::Allow,
        };
        self.edge(from, to, kind, workload, label);
    }
}

fn host_part(h: &HostPattern) -> Option<String> {
    match h {
        HostPattern::All => None,
        other => Some(other.to_string()),
    }
}

fn build(spec: &PolicySpec) -> Graph {
    let mut g = Graph::default();
    for (t, tenant) in spec.tenants.iter().enumerate() {
        g.tenants.push(tenant.name.clone());
        for ns in &tenant.namespaces {
            let i = g.ns(ns);
            if let Some(node) = g.nodes.get_mut(i) {
                node.tenant = Some(t);
                node.shape = Shape::Namespace;
            }
        }
    }
    for tenant in &spec.tenants {
        let has_ports = tenant.egress.iter().any(|e| e.port.is_some());
        for ns in &tenant.namespaces {
            g.add_egress(ns, &tenant.egress, has_ports, None);
            for w in &tenant.workloads {
                let w_ports = has_ports || w.egress.iter().any(|e| e.port.is_some());
                g.add_egress(ns, &w.egress, w_ports, Some(&w.name));
            }
        }
    }
    g
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders the detailed graph of a validated policy (`--view namespaces`): one node per
/// namespace and per host allowed from any namespace, one edge per destination.
pub fn render_namespaces(spec: &PolicySpec, format: GraphFormat) -> String {
    let g = build(spec);
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (t, name) in g.tenants.iter().enumerate() {
                let _ = writeln!(out, "  subgraph t{t}[\"tenant {}\"]", mermaid_text(name));
                for (i, n) in g
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.tenant == Some(t))
                {
                    let _ = writeln!(out, "    n{i}[\"{}\"]", mermaid_text(&n.label));
                }
                out.push_str("  end\n");
            }
            for (i, n) in g
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.tenant.is_none())
            {
                let label = mermaid_text(&n.label);
                let _ = match n.shape {
                    Shape::Any => writeln!(out, "  n{i}((\"{label}\"))"),
                    Shape::Host => writeln!(out, "  n{i}>\"{label}\"]"),
                    Shape::Namespace | Shape::Foreign => writeln!(out, "  n{i}[\"{label}\"]"),
                };
            }
            let mut styles = Vec::new();
            for (k, e) in g.edges.iter().enumerate() {
                let label = mermaid_text(&e.labels.join(", "));
                let arrow = match e.kind {
                    EdgeKind::Allow => "-->",
                    EdgeKind::Except | EdgeKind::Workload => "-.->",
                };
                let _ = writeln!(out, "  n{} {arrow}|\"{label}\"| n{}", e.from, e.to);
                match e.kind {
                    EdgeKind::Except => {
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
            let foreign: Vec<String> = g
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.tenant.is_none())
                .map(|(i, _)| format!("n{i}"))
                .collect();
            if !foreign.is_empty() {
                out.push_str("  classDef outside stroke-dasharray: 4 4\n");
                let _ = writeln!(out, "  class {} outside", foreign.join(","));
            }
        }
        GraphFormat::Dot => {
            out.push_str("digraph tenant_egress {\n  rankdir=LR;\n  node [shape=box];\n");
            for (t, name) in g.tenants.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  subgraph cluster_{t} {{\n    label=\"tenant {}\";",
                    dot_text(name)
                );
                for (i, n) in g
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.tenant == Some(t))
                {
                    let _ = writeln!(out, "    n{i} [label=\"{}\"];", dot_text(&n.label));
                }
                out.push_str("  }\n");
            }
            for (i, n) in g
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.tenant.is_none())
            {
                let shape = match n.shape {
                    Shape::Any => "ellipse",
                    Shape::Host => "cds",
                    Shape::Namespace | Shape::Foreign => "box",
                };
                let _ = writeln!(
                    out,
                    "  n{i} [label=\"{}\", shape={shape}, style=dashed];",
                    dot_text(&n.label)
                );
            }
            for e in &g.edges {
                let style = match e.kind {
                    EdgeKind::Allow => "",
                    EdgeKind::Except => ", style=dashed, color=red, fontcolor=red",
                    EdgeKind::Workload => ", style=dotted, color=blue, fontcolor=blue",
                };
                let _ = writeln!(
                    out,
                    "  n{} -> n{} [label=\"{}\"{style}];",
                    e.from,
                    e.to,
                    dot_text(&e.labels.join(", "))
                );
            }
            out.push_str("}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> PolicySpec {
        tenant_egress_core::validate::validate_value(v).unwrap().0
    }

    #[test]
    fn edges_ports_exclusions_and_exceptions() {
        let s = spec(serde_json::json!({
            "apiVersion": "tenant-egress/v1",
            "tenants": [
                {"name": "prod", "namespaces": ["prod"],
                 "egress": [
                    {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./cockroachdb.prod.svc.cluster.local"]},
                    {"hosts": ["./*", "istio-system/*", "~/evil.example.com", "*/api.example.com"]}],
                 "workloads": [{"name": "batman", "selector": {"app": "batman"},
                                "egress": [{"hosts": ["logs/*"]}]}]},
                {"name": "uat", "namespaces": ["uat"], "egress": [{"hosts": ["*/*"]}]}
            ]
        }));
        let m = render_namespaces(&s, GraphFormat::Mermaid);
        assert!(m.contains("subgraph t0[\"tenant prod\"]"), "{m}");
        assert!(
            m.contains("n0 -->|\"26257/TCP cockroachdb.prod.svc.cluster.local, other ports\"| n0"),
            "{m}"
        );
        assert!(m.contains("|\"except other ports\"|"), "{m}");
        assert!(m.contains("|\"batman only: other ports\"|"), "{m}");
        assert!(m.contains("((\"* (any namespace)\"))"), "{m}");
        assert!(m.contains("linkStyle"), "{m}");
        let d = render_namespaces(&s, GraphFormat::Dot);
        assert!(d.starts_with("digraph tenant_egress {"), "{d}");
        assert!(d.contains("style=dashed, color=red"), "{d}");
        assert!(d.contains("style=dotted, color=blue"), "{d}");
        // Deterministic.
        assert_eq!(render_namespaces(&s, GraphFormat::Dot), d);
    }
}
