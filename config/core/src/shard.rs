//! Sharded distribution: the part of a policy one namespace's sidecars need.
//!
//! A sidecar decides only for its own namespace (the source is the proxy's `NAMESPACE` node
//! metadata, read once per configuration), so it needs only the tenant owning that namespace,
//! the document-wide settings, and the names of the namespaces the whole policy knows (Istio's
//! short names `svc.ns` resolve only for those: `policy/resolve.rs: expand_alias`). That is
//! [`shard_for`]: a valid policy document in its own right, whose decisions for a source in
//! `namespace` equal the whole policy's (`tests/shard_equivalence.rs` proves it over the
//! vectors and random policies).
//!
//! Namespaces no tenant owns are decided by one small mesh-wide [`fallback`] document: no
//! tenants (so `unknownSource` decides), and the tenant namespaces listed as
//! `delegatedNamespaces`, where it stands aside because the namespace's own shard decides.
//!
//! The destination end decides with the CALLER's rules, so its shard is cut the other way
//! ([`destination_shard_for`]): every tenant, but of each only the rules that can name a host
//! the namespace serves.

use std::collections::BTreeSet;

use crate::listeners::PortProtocol;
use crate::pattern::{self, HostEntry, HostPattern, NsSelector};
use crate::spec::{EgressSpec, Mode, PolicySpec, PortSpec, TenantSpec, WorkloadSpec};

/// Every namespace `spec` names, as compiling it records them (`policy/compile.rs`): its
/// tenants', those its hosts name (`ns/...`), its `knownNamespaces` and
/// `sharedNamespaces`; sorted.
fn named_namespaces(spec: &PolicySpec) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in &spec.tenants {
        out.extend(tenant_named(t));
    }
    out.extend(
        spec.known_namespaces
            .split(' ')
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned),
    );
    out.extend(spec.shared_namespaces.iter().cloned());
    out
}

/// The namespaces one tenant names: its own, and those its hosts name.
fn tenant_named(t: &TenantSpec) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = t.namespaces.iter().cloned().collect();
    let egress = t
        .egress
        .iter()
        .chain(t.workloads.iter().flat_map(|w| w.egress.iter()));
    out.extend(egress.flat_map(named_in));
    out
}

/// The namespaces one egress entry's hosts name.
fn named_in(e: &EgressSpec) -> impl Iterator<Item = String> + '_ {
    e.hosts.iter().filter_map(|h| {
        // Only a named prefix (`ns/`, `~ns/`) can name one: an entry whose prefix is `*`, `.`
        // or a bare `~` names none whether or not it parses, so it needs no parse (most
        // entries are `*/...`).
        let (ns, _) = h.split_once('/')?;
        if matches!(ns.strip_prefix('~').unwrap_or(ns), "" | "*" | ".") {
            return None;
        }
        match h.parse::<HostEntry>().ok()?.namespace {
            NsSelector::Named(ns) => Some(ns),
            NsSelector::Any | NsSelector::Own => None,
        }
    })
}

/// The shard of `spec` for sidecars in `namespace`: the document-wide settings, the tenant
/// owning `namespace` (whole: its rules, exceptions and namespaces) or no tenant at all, and
/// as `knownNamespaces` every namespace the whole policy names.
pub fn shard_for(spec: &PolicySpec, namespace: &str) -> PolicySpec {
    Sharder::new(spec).shard_for(namespace)
}

/// [`shard_for`] for many namespaces of one policy: the namespaces the whole policy names are
/// gathered once.
pub struct Sharder<'a> {
    spec: &'a PolicySpec,
    /// `knownNamespaces`: every namespace the whole policy names, sorted. The same in every
    /// shard (a shard's own namespaces among them, which compiling records once), so the
    /// generated plugins all carry one string.
    known: String,
}

impl<'a> Sharder<'a> {
    /// Reads `spec` once.
    pub fn new(spec: &'a PolicySpec) -> Self {
        let named: Vec<String> = named_namespaces(spec).into_iter().collect();
        Sharder {
            spec,
            known: named.join(" "),
        }
    }

    /// See [`shard_for`].
    pub fn shard_for(&self, namespace: &str) -> PolicySpec {
        let owner = self
            .spec
            .tenants
            .iter()
            .position(|t| t.namespaces.iter().any(|ns| ns == namespace));
        let tenants: Vec<_> = owner
            .and_then(|t| Some((t, self.spec.tenants.get(t)?)))
            .map(|(i, t)| TenantSpec {
                index: u32::try_from(i).ok(),
                ..t.clone()
            })
            .into_iter()
            .collect();
        PolicySpec {
            tenants,
            known_namespaces: self.known.clone(),
            ..header(self.spec)
        }
    }
}

/// The hosts the pods of `namespace` can serve, as the destination end's shard for it sees
/// them: its Kubernetes services (`*.<namespace>.svc.<clusterDomain>`) and what its tenant
/// declares in `serves` (ServiceEntry hosts whose `workloadSelector` picks its pods; Istio
/// selects workloads only in the ServiceEntry's own namespace). THE definition: the shard keeps
/// the rules that overlap these, and the filter refuses any other host
/// (`Policy::inbound_service`).
pub fn served_by(spec: &PolicySpec, namespace: &str) -> Vec<HostPattern> {
    let mut out = vec![HostPattern::Suffix(format!(
        ".{namespace}.svc.{}",
        spec.cluster_domain
            .trim_end_matches('.')
            .to_ascii_lowercase()
    ))];
    let owner = spec
        .tenants
        .iter()
        .find(|t| t.namespaces.iter().any(|n| n == namespace));
    if let Some(t) = owner {
        out.extend(
            t.serves
                .iter()
                .filter_map(|h| pattern::parse_served(h).ok()),
        );
    }
    out
}

/// The destination end's shard for the sidecars of `namespace` (a tenant namespace; `None`
/// otherwise): the document-wide settings; in full, the owner and every tenant with a host
/// that can select a host [`served_by`] `namespace`, each keeping every egress entry and
/// workload exception (their ports decide which listener applies) but only such hosts; the
/// owner's `inbound` and `serves`; every tenant in the `tenantDirectory` (a caller is known by
/// its namespace and decided in its tenant's mode, whichever tenant it is);
/// `destinationShard` set. `None` also for a document that already is a destination shard.
///
/// Why that decides as the whole policy for every host the namespace serves: at the destination
/// the destination namespace is this one, so an entry `other/...` never selects, and `./...`
/// selects only for callers in this namespace, i.e. the owner's; any other entry that selects a
/// served host overlaps the served patterns, and is kept. Entries that select nothing a
/// decision here can see change no decision, and which entry names a decision is the most
/// specific SELECTING one (`pattern::Specificity`). `tests/shard_equivalence.rs` checks it.
pub fn destination_shard_for(spec: &PolicySpec, namespace: &str) -> Option<PolicySpec> {
    DestinationSharder::new(spec).shard_for(namespace)
}

/// The `tenantDirectory` of a destination shard: every tenant of `spec`, one record each,
/// separated by single spaces. A record is `name;mode;namespaces;listeners`: `mode` empty (the
/// document's), `enforce` or `audit`; the namespaces comma-separated; the tenant's own egress
/// entries in order, comma-separated, each `*` (the catch-all) or `number` or `number/PROTOCOL`.
/// That is all a decision needs of a caller tenant none of whose hosts the shard carries: its
/// namespaces name it, its mode says whether a denial is enforced, and its listeners say
/// which entry a `not-allowed` names (`tenants[t].egress[e]`, "port 5432"). Port names decide
/// nothing and are left out.
pub fn tenant_directory(spec: &PolicySpec) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for t in &spec.tenants {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&t.name);
        out.push(';');
        out.push_str(match t.mode {
            None => "",
            Some(Mode::Enforce) => "enforce",
            Some(Mode::Audit) => "audit",
        });
        out.push(';');
        out.push_str(&t.namespaces.join(","));
        out.push(';');
        for (i, e) in t.egress.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match &e.port {
                None => out.push('*'),
                Some(p) => {
                    let _ = write!(out, "{}", p.number);
                    if let Some(proto) = p.protocol {
                        out.push('/');
                        out.push_str(proto.as_str());
                    }
                }
            }
        }
    }
    out
}

/// A `tenantDirectory` record that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {index} (\"{record}\") {why}")]
pub struct DirectoryError {
    /// The record's position (0-based).
    pub index: usize,
    /// The record as written.
    pub record: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Parses a `tenantDirectory` ([`tenant_directory`]) into tenants without hosts: each egress
/// entry keeps its port and has no hosts. Names are checked by validation, as a tenant's.
pub fn parse_directory(s: &str) -> Result<Vec<TenantSpec>, DirectoryError> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    // Plain loops: the filter links this, and every combinator costs module bytes.
    for (index, record) in s.split(' ').enumerate() {
        let fail = |why| DirectoryError {
            index,
            record: record.to_owned(),
            why,
        };
        let mut parts = record.split(';');
        let (Some(name), Some(mode), Some(namespaces), Some(listeners), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(fail("is not name;mode;namespaces;listeners"));
        };
        let mode = match mode {
            "" => None,
            "enforce" => Some(Mode::Enforce),
            "audit" => Some(Mode::Audit),
            _ => return Err(fail("has a mode other than enforce, audit or empty")),
        };
        let mut egress = Vec::new();
        for l in listeners.split(',').filter(|_| !listeners.is_empty()) {
            let mut port = None;
            if l != "*" {
                let (number, protocol) = match l.split_once('/') {
                    Some((n, p)) => (n, Some(p)),
                    None => (l, None),
                };
                let Some(number) = number.parse::<u16>().ok().filter(|n| *n > 0) else {
                    return Err(fail("has a port that is not 1..=65535"));
                };
                let protocol = match protocol.map(str::parse::<PortProtocol>) {
                    None => None,
                    Some(Ok(p)) => Some(p),
                    Some(Err(_)) => return Err(fail("has an unknown port protocol")),
                };
                port = Some(PortSpec {
                    number: i64::from(number),
                    protocol,
                    name: None,
                });
            }
            egress.push(EgressSpec {
                port,
                hosts: Vec::new(),
                host_index: Vec::new(),
            });
        }
        out.push(TenantSpec {
            // The directory lists every tenant of the whole policy, in its order.
            index: u32::try_from(index).ok(),
            name: name.to_owned(),
            namespaces: namespaces.split(',').map(str::to_owned).collect(),
            mode,
            outbound_traffic_policy: Default::default(),
            egress,
            workloads: Vec::new(),
            inbound: Vec::new(),
            serves: Vec::new(),
        });
    }
    Ok(out)
}

/// The tenants of a destination shard's `tenantDirectory` that `tenants` does not list in
/// full (compiled after them); empty when it does not parse (validation refuses that).
pub(crate) fn directory_only(spec: &PolicySpec) -> Vec<TenantSpec> {
    let mut out = parse_directory(&spec.tenant_directory).unwrap_or_default();
    out.retain(|d| !spec.tenants.iter().any(|t| t.name == d.name));
    out
}

/// Where one `hosts` entry is in the document: tenant, list (0 the tenant's egress, `w + 1`
/// workload exception `w`), entry, host. Sorted, they are in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct HostRef {
    tenant: u32,
    list: u32,
    entry: u32,
    host: u32,
    /// Index of its parsed form in [`DestinationSharder::parsed`].
    id: u32,
}

/// [`destination_shard_for`] for many namespaces of one policy: every host entry is parsed once
/// and filed by the only namespaces whose shard it can belong to, so a shard looks at its own
/// candidates, not at every rule (100,000 rules, 1,500 namespaces).
pub struct DestinationSharder<'a> {
    spec: &'a PolicySpec,
    parsed: Vec<HostEntry>,
    /// `ns/...` entries, and `*/...` entries that can only name services of `ns`.
    by_namespace: std::collections::HashMap<String, Vec<HostRef>>,
    /// `*/...` entries that can name a service of any namespace (`*/*`, `*/*.svc.<domain>`).
    everywhere: Vec<HostRef>,
    /// `*/...` entries that name no Kubernetes service: only a tenant's `serves` can select them.
    external: Vec<HostRef>,
    /// `./...` entries, per tenant.
    own: Vec<Vec<HostRef>>,
    /// The same `tenantDirectory` in every shard, built once.
    directory: String,
}

impl<'a> DestinationSharder<'a> {
    /// Parses and files every host entry of `spec` once.
    pub fn new(spec: &'a PolicySpec) -> Self {
        let domain = spec
            .cluster_domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let svc_suffix = format!(".svc.{domain}");
        let mut me = DestinationSharder {
            spec,
            parsed: Vec::new(),
            by_namespace: Default::default(),
            everywhere: Vec::new(),
            external: Vec::new(),
            own: vec![Vec::new(); spec.tenants.len()],
            directory: tenant_directory(spec),
        };
        let idx = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        for (t, tenant) in spec.tenants.iter().enumerate() {
            let lists =
                std::iter::once(&tenant.egress).chain(tenant.workloads.iter().map(|w| &w.egress));
            for (l, list) in lists.enumerate() {
                for (e, entry) in list.iter().enumerate() {
                    for (h, raw) in entry.hosts.iter().enumerate() {
                        let Ok(parsed) = raw.parse::<HostEntry>() else {
                            continue;
                        };
                        let at = HostRef {
                            tenant: idx(t),
                            list: idx(l),
                            entry: idx(e),
                            host: idx(h),
                            id: idx(me.parsed.len()),
                        };
                        match &parsed.namespace {
                            NsSelector::Named(n) => {
                                me.by_namespace.entry(n.clone()).or_default().push(at)
                            }
                            NsSelector::Own => {
                                if let Some(own) = me.own.get_mut(t) {
                                    own.push(at);
                                }
                            }
                            NsSelector::Any => {
                                match service_namespace_of(&parsed.host, &svc_suffix) {
                                    Reach::One(ns) => {
                                        me.by_namespace.entry(ns).or_default().push(at)
                                    }
                                    Reach::All => me.everywhere.push(at),
                                    Reach::None => me.external.push(at),
                                }
                            }
                        }
                        me.parsed.push(parsed);
                    }
                }
            }
        }
        me
    }

    /// See [`destination_shard_for`]. `None` too for a document that already is a destination
    /// shard: its other tenants are only in its directory, and cutting it again would lose them.
    pub fn shard_for(&self, namespace: &str) -> Option<PolicySpec> {
        let spec = self.spec;
        if !spec.destination_shard.is_empty() {
            return None;
        }
        let owner = spec
            .tenants
            .iter()
            .position(|t| t.namespaces.iter().any(|n| n == namespace))?;
        let served = served_by(spec, namespace);
        let mut candidates: Vec<HostRef> = self
            .by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .chain(&self.everywhere)
            .chain(self.own.get(owner).into_iter().flatten())
            .copied()
            .collect();
        // Only a `serves` declaration (more than the Kubernetes suffix) can select an external name.
        if served.len() > 1 {
            candidates.extend(&self.external);
        }
        candidates.retain(|at| {
            self.parsed.get(at.id as usize).is_some_and(|h| {
                let ns = match &h.namespace {
                    NsSelector::Any => true,
                    NsSelector::Own => at.tenant as usize == owner,
                    NsSelector::Named(n) => n == namespace,
                };
                ns && served.iter().any(|s| s.overlaps(&h.host))
            })
        });
        candidates.sort_unstable();
        let mut full: Vec<usize> = candidates.iter().map(|at| at.tenant as usize).collect();
        full.push(owner);
        full.sort_unstable();
        full.dedup();
        let mut kept = candidates.into_iter().peekable();
        let mut tenants = Vec::with_capacity(full.len());
        for t in full {
            let Some(tenant) = spec.tenants.get(t) else {
                continue;
            };
            let is_owner = t == owner;
            let mut keep = |l: usize, egress: &[EgressSpec]| -> Vec<EgressSpec> {
                egress
                    .iter()
                    .enumerate()
                    .map(|(e, entry)| {
                        let mut hosts = Vec::new();
                        let mut host_index = Vec::new();
                        while let Some(at) = kept.next_if(|at| {
                            (at.tenant as usize, at.list as usize, at.entry as usize) == (t, l, e)
                        }) {
                            if let Some(h) = entry.hosts.get(at.host as usize) {
                                hosts.push(h.clone());
                                host_index.push(at.host);
                            }
                        }
                        // The first hosts kept in place need no index.
                        if host_index.iter().enumerate().all(|(i, &h)| h as usize == i) {
                            host_index.clear();
                        }
                        EgressSpec {
                            port: entry.port.clone(),
                            hosts,
                            host_index,
                        }
                    })
                    .collect()
            };
            let egress = keep(0, &tenant.egress);
            let workloads = tenant
                .workloads
                .iter()
                .enumerate()
                .map(|(w, wl)| WorkloadSpec {
                    name: wl.name.clone(),
                    selector: wl.selector.clone(),
                    service_accounts: wl.service_accounts.clone(),
                    egress: keep(w + 1, &wl.egress),
                })
                .collect();
            tenants.push(TenantSpec {
                index: u32::try_from(t).ok(),
                name: tenant.name.clone(),
                namespaces: tenant.namespaces.clone(),
                mode: tenant.mode,
                outbound_traffic_policy: tenant.outbound_traffic_policy,
                egress,
                workloads,
                inbound: if is_owner {
                    tenant.inbound.clone()
                } else {
                    Vec::new()
                },
                serves: if is_owner {
                    tenant.serves.clone()
                } else {
                    Vec::new()
                },
            });
        }
        Some(PolicySpec {
            tenants,
            destination_shard: namespace.to_owned(),
            tenant_directory: self.directory.clone(),
            ..header(spec)
        })
    }
}

/// Which namespaces' Kubernetes services a dnsName can select.
enum Reach {
    /// Only those of this namespace (`svc.ns.svc.<domain>`, `*.ns.svc.<domain>`).
    One(String),
    /// Any namespace's (`*`, `*.svc.<domain>`, `*.<domain>`).
    All,
    /// None: an external name.
    None,
}

/// [`Reach`] of `host`, given `svc_suffix` = `.svc.<clusterDomain>`: it overlaps
/// `*.<ns>.svc.<domain>` (see [`served_by`]) for exactly the namespaces it says.
fn service_namespace_of(host: &HostPattern, svc_suffix: &str) -> Reach {
    let name = match host {
        HostPattern::All => return Reach::All,
        HostPattern::Exact(h) => h.as_str(),
        HostPattern::Suffix(s) if svc_suffix.ends_with(s.as_str()) => return Reach::All,
        HostPattern::Suffix(s) => s.as_str(),
    };
    match name
        .strip_suffix(svc_suffix)
        .and_then(|rest| rest.rsplit('.').next())
    {
        Some(ns) if !ns.is_empty() && ns != "*" => Reach::One(ns.to_owned()),
        _ => Reach::None,
    }
}

/// The mesh-wide fallback: the document-wide settings, no tenant, and every tenant namespace
/// delegated to its own shard (a tenant namespace outside a staged rollout is then left alone,
/// as it is without sharding).
pub fn fallback(spec: &PolicySpec) -> PolicySpec {
    PolicySpec {
        tenants: Vec::new(),
        delegated_namespaces: spec
            .tenants
            .iter()
            .flat_map(|t| t.namespaces.iter().cloned())
            .collect(),
        known_namespaces: String::new(),
        destination_shard: String::new(),
        tenant_directory: String::new(),
        ..header(spec)
    }
}

/// The document-wide settings of `spec`, with no tenant.
fn header(spec: &PolicySpec) -> PolicySpec {
    PolicySpec {
        api_version: spec.api_version.clone(),
        mode: spec.mode,
        cluster_domain: spec.cluster_domain.clone(),
        unknown_source: spec.unknown_source,
        deny_status: spec.deny_status,
        deny_body: spec.deny_body,
        shared_namespaces: spec.shared_namespaces.clone(),
        cluster_networks: spec.cluster_networks.clone(),
        gateways: spec.gateways,
        trust_domains: spec.trust_domains.clone(),
        tenants: Vec::new(),
        delegated_namespaces: Vec::new(),
        known_namespaces: String::new(),
        destination_shard: String::new(),
        tenant_directory: String::new(),
    }
}
