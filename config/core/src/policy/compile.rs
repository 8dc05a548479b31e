//! Compile step: a validated [`PolicySpec`] becomes the per-tenant, per-workload views of
//! [`super::index`] sets, laid out by the one listener model ([`crate::listeners::merge`]).

use rustc_hash::FxHashMap;

use super::index::{Acc, HostSet, NsKey};
use super::{Listener, Policy, Tenant, View, Workload};
use crate::decision::{RuleId, RuleInfo};
use crate::listeners::{self, Applied, Listeners, Origin, PortProtocol};
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

/// One egress entry, parsed, with its rule ids.
struct Entry {
    /// The egress entry's own rule id (named when nothing on its listener matches).
    rule: RuleId,
    hosts: Vec<(HostEntry, RuleId)>,
}

/// Whether an egress entry's port protocol applies to TCP/TLS connections (kept for callers of
/// the old API; the rule is [`crate::listeners::opens_tcp`]).
pub fn opens_tcp(protocol: Option<&str>) -> bool {
    protocol
        .and_then(|p| p.parse::<PortProtocol>().ok())
        .is_none_or(PortProtocol::opens_tcp)
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
        // A destination shard's other tenants, hosts left out (`tenantDirectory`), after its own.
        let directory = crate::shard::directory_only(spec);
        for (t, ts) in spec.tenants.iter().chain(&directory).enumerate() {
            let tid = u32::try_from(t).unwrap_or(u32::MAX);
            for ns in &ts.namespaces {
                b.ns_id(ns);
                tenant_of_ns.entry(ns.as_str().into()).or_insert(tid);
            }
            // A shard's tenant is named by its place in the whole policy.
            let named = ts.index.map_or(t, |i| i as usize);
            let base = group(&mut b, named, None, &ts.egress, &mut host_rules);
            let mut views = vec![make_view(&mut b, &ts.egress, &[], &base, &[])];
            let mut workloads = Vec::with_capacity(ts.workloads.len());
            for (w, ws) in ts.workloads.iter().enumerate() {
                let extra = group(&mut b, named, Some(w), &ws.egress, &mut host_rules);
                views.push(make_view(&mut b, &ts.egress, &ws.egress, &base, &extra));
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
                inbound: super::inbound::compile_allowances(&mut b.rules, named, &ts.inbound),
            });
        }
        for ns in spec.known_namespaces.split(' ').filter(|ns| !ns.is_empty()) {
            b.ns_id(ns);
        }
        let cluster_domain = spec
            .cluster_domain
            .strip_suffix('.')
            .unwrap_or(&spec.cluster_domain)
            .to_ascii_lowercase();
        let domain_suffix = format!(".{cluster_domain}");
        let mut excludes_in_cluster = Vec::with_capacity(b.sets.len());
        for set in &b.sets {
            excludes_in_cluster.push(set.exclude.may_select_in_cluster(domain_suffix.as_bytes()));
        }
        Policy {
            mode: spec.mode,
            unknown_source: spec.unknown_source,
            gateways: spec.gateways,
            delegated: spec
                .delegated_namespaces
                .iter()
                .map(|ns| ns.as_str().into())
                .collect(),
            deny_status: spec.deny_status,
            deny_body: spec.deny_body,
            networks: super::networks_of(spec),
            excludes_in_cluster,
            pod_suffix: format!(".pod.{cluster_domain}").into(),
            svc_suffix: format!(".svc.{cluster_domain}").into(),
            cluster_domain: cluster_domain.into(),
            tenants,
            tenant_of_ns,
            ns_ids: b.ns_ids,
            sets: b.sets,
            rules: b.rules,
            host_rules,
            trust_domains: super::inbound::trust_domains(spec),
            destination_shard: (!spec.destination_shard.is_empty()).then(|| {
                let ns = spec.destination_shard.as_str();
                (ns.into(), crate::shard::served_by(spec, ns).into())
            }),
        }
    }
}

/// Parses one egress list and assigns rule ids in document order (one [`Entry`] per entry).
fn group(
    b: &mut Builder,
    t: usize,
    w: Option<usize>,
    egress: &[EgressSpec],
    host_rules: &mut usize,
) -> Vec<Entry> {
    let owner = match w {
        Some(w) => format!("tenants[{t}].workloads[{w}]"),
        None => format!("tenants[{t}]"),
    };
    let mut out = Vec::with_capacity(egress.len());
    for (e, entry) in egress.iter().enumerate() {
        let text = match entry
            .port
            .as_ref()
            .and_then(|p| u16::try_from(p.number).ok())
        {
            Some(p) => format!("port {p}"),
            None => "all ports".to_owned(),
        };
        let rule = b.rule(format!("{owner}.egress[{e}]"), text);
        let mut hosts = Vec::with_capacity(entry.hosts.len());
        for (h, raw) in entry.hosts.iter().enumerate() {
            let Ok(parsed) = raw.parse::<HostEntry>() else {
                continue;
            };
            // A destination shard keeps some hosts: named by their place in the whole policy.
            let h = entry.host_index.get(h).map_or(h, |&i| i as usize);
            let id = b.rule(format!("{owner}.egress[{e}].hosts[{h}]"), raw.clone());
            *host_rules += 1;
            hosts.push((parsed, id));
        }
        out.push(Entry { rule, hosts });
    }
    out
}

/// Compiles the listeners of the tenant's egress PLUS an exception's (empty for the tenant's
/// own view), as [`listeners::merge`] lays them out.
fn make_view(
    b: &mut Builder,
    tenant: &[EgressSpec],
    exception: &[EgressSpec],
    tenant_entries: &[Entry],
    exception_entries: &[Entry],
) -> View {
    let mut compile = |applied: &Applied| -> Listener {
        let mut hosts = Vec::new();
        let mut rule = None;
        for r in &applied.entries {
            let list = match r.origin {
                Origin::Tenant => tenant_entries,
                Origin::Exception => exception_entries,
            };
            if let Some(entry) = list.get(r.index) {
                rule.get_or_insert(entry.rule);
                hosts.extend(entry.hosts.iter().cloned());
            }
        }
        Listener {
            set: b.build_set(&hosts),
            rule: rule.unwrap_or(RuleId(0)),
            tcp: applied.opens_tcp(),
        }
    };
    let plan = listeners::merge(tenant, exception);
    Listeners {
        ports: plan.ports.iter().map(|(p, a)| (*p, compile(a))).collect(),
        catch_all: plan.catch_all.as_ref().map(compile),
    }
}
