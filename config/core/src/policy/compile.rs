//! Compile step: a validated [`PolicySpec`] becomes the per-tenant, per-workload views of
//! [`super::index`] sets.

use rustc_hash::FxHashMap;

use super::index::{Acc, HostSet, NsKey};
use super::{Listener, Policy, Tenant, View, Workload};
use crate::decision::{RuleId, RuleInfo};
use crate::pattern::{HostEntry, HostPattern, NsSelector};
use crate::spec::{EgressSpec, PolicySpec};

struct Builder {
    ns_ids: FxHashMap<Box<[u8]>, u32>,
    rules: Vec<RuleInfo>,
    sets: Vec<HostSet>,
}

impl Builder {
    fn ns_id(&mut self, ns: &str) -> u32 {
        let next = u32::try_from(self.ns_ids.len()).unwrap_or(u32::MAX);
        *self.ns_ids.entry(ns.as_bytes().into()).or_insert(next)
    }

    fn rule(&mut self, path: String, text: String) -> RuleId {
        let id = RuleId(u32::try_from(self.rules.len()).unwrap_or(u32::MAX));
        self.rules.push(RuleInfo { path, text });
        id
    }

    fn key(&mut self, ns: &NsSelector) -> NsKey {
        match ns {
            NsSelector::Any => NsKey::Any,
            NsSelector::Own => NsKey::Own,
            NsSelector::Named(n) => NsKey::Named(self.ns_id(n)),
        }
    }

    /// Compiles the union of several host lists into one listener.
    fn build_set(&mut self, entries: &[(HostEntry, RuleId)]) -> u32 {
        let mut import: Acc = Acc::default();
        let mut exclude: Acc = Acc::default();
        for (e, rule) in entries {
            let key = self.key(&e.namespace);
            let acc = if e.exclude { &mut exclude } else { &mut import };
            match &e.host {
                HostPattern::All => {
                    acc.all.entry(key).or_insert(*rule);
                }
                HostPattern::Exact(h) => acc
                    .exact
                    .entry(h.as_bytes().into())
                    .or_default()
                    .push((key, *rule)),
                HostPattern::Suffix(s) => acc
                    .suffix
                    .entry(s.as_bytes().into())
                    .or_default()
                    .push((key, *rule)),
            }
        }
        let set = HostSet {
            import: import.finish(),
            exclude: exclude.finish(),
        };
        let id = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        self.sets.push(set);
        id
    }
}

/// One egress list, per listener.
type Grouped = Vec<GroupedListener>;

struct GroupedListener {
    port: Option<u16>,
    /// The egress entry's rule id.
    rule: RuleId,
    /// Whether the port protocol lets TCP/TLS through (see [`opens_tcp`]).
    tcp: bool,
    hosts: Vec<(HostEntry, RuleId)>,
}

/// Whether an egress entry's port protocol applies to TCP/TLS connections. HTTP, HTTP2 and GRPC
/// ports are HTTP-only: Istio builds an HTTP connection manager for them, never a TCP proxy, so
/// they must not open raw TCP. A portless entry, or one without a protocol, applies to all.
pub fn opens_tcp(protocol: Option<&str>) -> bool {
    !matches!(protocol, Some("HTTP" | "HTTP2" | "GRPC"))
}

impl Policy {
    /// Compiles a spec that passed validation. Entries that cannot parse are skipped here, but
    /// validation has already refused any document that has one.
    pub(super) fn compile_valid(spec: &PolicySpec) -> Policy {
        let mut b = Builder {
            ns_ids: FxHashMap::default(),
            rules: Vec::new(),
            sets: Vec::new(),
        };
        let mut tenant_of_ns = FxHashMap::default();
        let mut host_rules = 0usize;
        let mut tenants = Vec::with_capacity(spec.tenants.len());
        for (t, ts) in spec.tenants.iter().enumerate() {
            let tid = u32::try_from(t).unwrap_or(u32::MAX);
            for ns in &ts.namespaces {
                b.ns_id(ns);
                tenant_of_ns.entry(ns.as_str().into()).or_insert(tid);
            }
            let base = group(&mut b, t, None, &ts.egress, &mut host_rules);
            let mut views = vec![make_view(&mut b, &[&base])];
            let mut workloads = Vec::with_capacity(ts.workloads.len());
            for (w, ws) in ts.workloads.iter().enumerate() {
                let extra = group(&mut b, t, Some(w), &ws.egress, &mut host_rules);
                views.push(make_view(&mut b, &[&base, &extra]));
                workloads.push(Workload {
                    name: ws.name.as_str().into(),
                    selector: ws
                        .selector
                        .iter()
                        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                        .collect(),
                    service_accounts: ws
                        .service_accounts
                        .iter()
                        .map(|s| s.as_str().into())
                        .collect(),
                });
            }
            tenants.push(Tenant {
                name: ts.name.as_str().into(),
                mode: ts.mode.unwrap_or(spec.mode),
                outbound: ts.outbound_traffic_policy,
                views,
                workloads,
                inbound: super::inbound::compile_allowances(&mut b.rules, t, &ts.inbound),
            });
        }
        let cluster_domain = spec
            .cluster_domain
            .strip_suffix('.')
            .unwrap_or(&spec.cluster_domain)
            .to_ascii_lowercase();
        Policy {
            mode: spec.mode,
            unknown_source: spec.unknown_source,
            deny_status: spec.deny_status,
            svc_suffix: format!(".svc.{cluster_domain}").into(),
            cluster_domain: cluster_domain.into(),
            tenants,
            tenant_of_ns,
            ns_ids: b.ns_ids,
            sets: b.sets,
            rules: b.rules,
            host_rules,
            trust_domains: super::inbound::trust_domains(spec),
        }
    }
}

/// Parses one egress list into listeners and assigns rule ids in document order.
fn group(
    b: &mut Builder,
    t: usize,
    w: Option<usize>,
    egress: &[EgressSpec],
    host_rules: &mut usize,
) -> Grouped {
    let owner = match w {
        Some(w) => format!("tenants[{t}].workloads[{w}]"),
        None => format!("tenants[{t}]"),
    };
    let mut out = Vec::with_capacity(egress.len());
    for (e, entry) in egress.iter().enumerate() {
        let port = entry
            .port
            .as_ref()
            .and_then(|p| u16::try_from(p.number).ok());
        let text = match port {
            Some(p) => format!("port {p}"),
            None => "all ports".to_owned(),
        };
        let lid = b.rule(format!("{owner}.egress[{e}]"), text);
        let tcp = entry
            .port
            .as_ref()
            .is_none_or(|p| opens_tcp(p.protocol.as_deref()));
        let mut hosts = Vec::with_capacity(entry.hosts.len());
        for (h, raw) in entry.hosts.iter().enumerate() {
            let Ok(parsed) = raw.parse::<HostEntry>() else {
                continue;
            };
            let id = b.rule(format!("{owner}.egress[{e}].hosts[{h}]"), raw.clone());
            *host_rules += 1;
            hosts.push((parsed, id));
        }
        out.push(GroupedListener {
            port,
            rule: lid,
            tcp,
            hosts,
        });
    }
    out
}

/// Builds one view from egress lists that are ADDED together (tenant + exception):
/// on each port declared by any of them, the union of what each list exposes on that port
/// (its own listener for the port, else its catch-all); the catch-all is the union of the
/// catch-alls.
fn make_view(b: &mut Builder, lists: &[&Grouped]) -> View {
    let mut ports: Vec<u16> = lists
        .iter()
        .flat_map(|g| g.iter().filter_map(|l| l.port))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let mut view = View::default();
    for port in ports {
        let mut entries = Vec::new();
        let mut first_rule = None;
        // TCP may use the port only if every list that declares it declares a TCP-capable
        // protocol (they end up in one Sidecar listener, which has one protocol).
        let mut tcp = true;
        for g in lists {
            // What one list exposes on `port`: its listener for the port, else its catch-all.
            let own = g.iter().find(|l| l.port == Some(port));
            if let Some(l) = own {
                tcp &= l.tcp;
            }
            if let Some(l) = own.or_else(|| catch_all(g)) {
                first_rule.get_or_insert(l.rule);
                entries.extend(l.hosts.iter().cloned());
            }
        }
        let set = b.build_set(&entries);
        let rule = first_rule.unwrap_or(RuleId(0));
        view.ports.push((port, Listener { set, rule, tcp }));
    }
    let mut entries = Vec::new();
    let mut first_rule = None;
    for g in lists {
        if let Some(l) = catch_all(g) {
            first_rule.get_or_insert(l.rule);
            entries.extend(l.hosts.iter().cloned());
        }
    }
    if let Some(rule) = first_rule {
        let set = b.build_set(&entries);
        view.catch_all = Some(Listener {
            set,
            rule,
            tcp: true,
        });
    }
    view
}

/// A list's portless catch-all listener.
fn catch_all(g: &Grouped) -> Option<&GroupedListener> {
    g.iter().find(|l| l.port.is_none())
}
