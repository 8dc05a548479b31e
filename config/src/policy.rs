//! The compiled policy and the request-time decision.
//!
//! Compile once, decide fast: [`Policy::from_spec`] turns a validated [`PolicySpec`] into hash
//! indexes, and [`Policy::decide`] is a total function over borrowed inputs that never
//! allocates and never scans rules linearly:
//! - exact hosts are one hash probe;
//! - `*.example.com` wildcards are stored by their suffix (`.example.com`) and found by probing
//!   the request host's own suffixes at each label boundary (a reversed-label walk, bounded by
//!   the host's label count, not the rule count); a bitmask of the label counts present skips
//!   probes that cannot hit;
//! - `ns/*` is one probe keyed by namespace.
//!
//! Istio's selection order is mirrored (`pilot/pkg/model/sidecar.go: selectServices`): an
//! exclusion in the destination's namespace bucket or the `*` bucket drops the host; otherwise
//! the destination namespace's bucket is tried, then `*`. Per port, the egress listener that
//! declares the port applies, else the portless catch-all (`GetEgressListenerForRDS`).

use rustc_hash::FxHashMap;

use crate::authority::{self, Cluster, HostKind};
use crate::decision::{
    Decision, Destination, DestinationKind, Detail, Protocol, Reason, Request, RuleId, RuleInfo,
    Source, Target,
};
use crate::name::{HostName, NsName};
use crate::pattern::{HostEntry, HostPattern, NsSelector};
use crate::spec::{EgressSpec, Mode, OutboundTrafficPolicy, PolicySpec, UnknownSource};
use crate::validate::{self, InvalidPolicy, Warning};

/// A namespace selector with the namespace interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NsKey {
    Any,
    Own,
    Named(u32),
}

/// Rules that name one host (or suffix), each with the namespace bucket it belongs to.
type NsRules = Box<[(NsKey, RuleId)]>;

/// One direction (imports or exclusions) of one egress listener.
#[derive(Debug, Default)]
struct Patterns {
    exact: FxHashMap<Box<[u8]>, NsRules>,
    /// Keyed by the suffix including its leading dot (`.example.com`).
    suffix: FxHashMap<Box<[u8]>, NsRules>,
    /// Bit n set: some suffix has n labels (n >= 63 sets bit 63).
    suffix_labels: u64,
    /// `ns/*` entries.
    all: FxHashMap<NsKey, RuleId>,
}

/// Which namespace bucket the destination falls in.
#[derive(Clone, Copy)]
struct Bucket {
    ns: Option<u32>,
    own: bool,
}

impl Bucket {
    /// Whether `key` is the destination's own namespace bucket (not `*`).
    fn specific(self, key: NsKey) -> bool {
        match key {
            NsKey::Named(id) => Some(id) == self.ns,
            NsKey::Own => self.own,
            NsKey::Any => false,
        }
    }
}

impl Patterns {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffix.is_empty() && self.all.is_empty()
    }

    /// Best rule among those naming this host: the destination's own bucket beats `*`.
    fn pick(rules: &[(NsKey, RuleId)], b: Bucket) -> Option<RuleId> {
        let mut any = None;
        for (key, rule) in rules {
            if b.specific(*key) {
                return Some(*rule);
            }
            if *key == NsKey::Any && any.is_none() {
                any = Some(*rule);
            }
        }
        any
    }

    /// The most specific rule selecting `host` for a destination in bucket `b`:
    /// exact, then the longest wildcard suffix, then `ns/*`.
    fn find(&self, host: &[u8], b: Bucket) -> Option<RuleId> {
        if let Some(rules) = self.exact.get(host) {
            if let Some(r) = Self::pick(rules, b) {
                return Some(r);
            }
        }
        if self.suffix_labels != 0 {
            // Suffixes start at each '.', longest first; the label count of the suffix starting
            // at the i-th dot is (total labels - i - 1).
            let total = host.iter().filter(|&&c| c == b'.').count() + 1;
            let mut seen = 0usize;
            for (i, &c) in host.iter().enumerate() {
                if c != b'.' {
                    continue;
                }
                seen += 1;
                let labels = (total - seen).min(63);
                if self.suffix_labels & (1u64 << labels) == 0 {
                    continue;
                }
                if let Some(rules) = host.get(i..).and_then(|s| self.suffix.get(s)) {
                    if let Some(r) = Self::pick(rules, b) {
                        return Some(r);
                    }
                }
            }
        }
        if !self.all.is_empty() {
            let specific = match (b.ns, b.own) {
                (_, true) => self.all.get(&NsKey::Own),
                _ => None,
            };
            let named = b.ns.and_then(|id| self.all.get(&NsKey::Named(id)));
            if let Some(r) = named.or(specific).or_else(|| self.all.get(&NsKey::Any)) {
                return Some(*r);
            }
        }
        None
    }
}

/// One egress listener, compiled.
#[derive(Debug, Default)]
struct HostSet {
    import: Patterns,
    exclude: Patterns,
}

/// Which listener applies on which port for one source scope.
#[derive(Debug, Default)]
struct View {
    /// Sorted by port.
    ports: Vec<(u16, Listener)>,
    catch_all: Option<Listener>,
}

#[derive(Debug, Clone, Copy)]
struct Listener {
    set: u32,
    /// The egress entry to point users at for `not-allowed`.
    rule: RuleId,
    /// Whether TCP/TLS connections may use it (false when its port protocol is HTTP-only).
    tcp: bool,
}

impl View {
    fn listener(&self, port: Option<u16>) -> Option<Listener> {
        if let Some(p) = port {
            if let Ok(i) = self.ports.binary_search_by_key(&p, |(q, _)| *q) {
                return self.ports.get(i).map(|(_, l)| *l);
            }
        }
        self.catch_all
    }
}

#[derive(Debug)]
struct Tenant {
    name: Box<str>,
    mode: Mode,
    outbound: OutboundTrafficPolicy,
    /// views[0] is the tenant's own egress; views[i + 1] adds workload exception i.
    views: Vec<View>,
    workloads: Vec<Workload>,
}

#[derive(Debug)]
struct Workload {
    name: Box<str>,
    selector: Box<[(Box<str>, Box<str>)]>,
}

/// A source resolved against the policy: its namespace, tenant and the workload exception that
/// applies. Owns its data (the namespace is held inline), so the filter resolves it once per
/// configuration and keeps it: pod labels never change for the life of a proxy (Istio reads them
/// from the downward API at bootstrap).
#[derive(Debug, Clone, Copy)]
pub struct SourceScope {
    /// Empty when the proxy has no (valid) namespace: every request is then denied.
    namespace: NsName,
    tenant: Option<u32>,
    view: u32,
}

impl SourceScope {
    /// The source namespace.
    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then(|| self.namespace.as_str())
    }

    /// The tenant index.
    pub fn tenant(&self) -> Option<u32> {
        self.tenant
    }

    /// The workload exception index that applies, if any.
    pub fn workload(&self) -> Option<u32> {
        self.view.checked_sub(1)
    }
}

/// A compiled, immutable policy.
#[derive(Debug)]
pub struct Policy {
    mode: Mode,
    unknown_source: UnknownSource,
    deny_status: u16,
    cluster_domain: Box<str>,
    /// `.svc.<clusterDomain>`
    svc_suffix: Box<str>,
    tenants: Vec<Tenant>,
    tenant_of_ns: FxHashMap<Box<str>, u32>,
    /// Every namespace the policy names (tenants' and hosts'), for short-name resolution.
    ns_ids: FxHashMap<Box<[u8]>, u32>,
    sets: Vec<HostSet>,
    rules: Vec<RuleInfo>,
    host_rules: usize,
}

/// Policy loading failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The document is invalid; every error is listed.
    #[error(transparent)]
    Invalid(#[from] InvalidPolicy),
}

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

#[derive(Default)]
struct Acc {
    exact: FxHashMap<Box<[u8]>, Vec<(NsKey, RuleId)>>,
    suffix: FxHashMap<Box<[u8]>, Vec<(NsKey, RuleId)>>,
    all: FxHashMap<NsKey, RuleId>,
}

impl Acc {
    fn finish(self) -> Patterns {
        let mut suffix_labels = 0u64;
        for s in self.suffix.keys() {
            let labels = s.iter().filter(|&&c| c == b'.').count().min(63);
            suffix_labels |= 1u64 << labels;
        }
        let boxed = |m: FxHashMap<Box<[u8]>, Vec<(NsKey, RuleId)>>| {
            let mut out: FxHashMap<Box<[u8]>, NsRules> = FxHashMap::default();
            out.reserve(m.len());
            for (k, mut v) in m {
                v.dedup_by_key(|(key, _)| *key);
                out.insert(k, v.into_boxed_slice());
            }
            out
        };
        Patterns {
            exact: boxed(self.exact),
            suffix: boxed(self.suffix),
            suffix_labels,
            all: self.all,
        }
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
    /// Parses, validates and compiles a JSON policy document. On success also returns the
    /// warnings.
    pub fn from_json(bytes: &[u8]) -> Result<(Policy, Vec<Warning>), PolicyError> {
        // validate_json has run every check (check_meaning included): compile directly.
        let (spec, warnings) = validate::validate_json(bytes)?;
        Ok((Self::compile_valid(&spec), warnings))
    }

    /// Validates and compiles a decoded spec.
    pub fn from_spec(spec: &PolicySpec) -> Result<Policy, PolicyError> {
        let (errors, warnings) = validate::check_meaning(spec);
        if !errors.is_empty() {
            return Err(InvalidPolicy { errors, warnings }.into());
        }
        Ok(Self::compile_valid(spec))
    }

    /// Compiles a spec that passed validation. Entries that cannot parse are skipped here, but
    /// validation has already refused any document that has one.
    fn compile_valid(spec: &PolicySpec) -> Policy {
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
                });
            }
            tenants.push(Tenant {
                name: ts.name.as_str().into(),
                mode: ts.mode.unwrap_or(spec.mode),
                outbound: ts.outbound_traffic_policy,
                views,
                workloads,
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
        }
    }

    // === accessors ===

    /// The document-wide mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// HTTP status for denials.
    pub fn deny_status(&self) -> u16 {
        self.deny_status
    }

    /// The cluster domain (`cluster.local`).
    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    /// Number of tenants.
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// Number of host entries compiled (the "rules" of the policy).
    pub fn rule_count(&self) -> usize {
        self.host_rules
    }

    /// Number of namespaces owned by tenants.
    pub fn namespace_count(&self) -> usize {
        self.tenant_of_ns.len()
    }

    /// A tenant's name.
    pub fn tenant_name(&self, tenant: u32) -> Option<&str> {
        self.tenants.get(tenant as usize).map(|t| &*t.name)
    }

    /// A tenant's workload exception name.
    pub fn workload_name(&self, tenant: u32, workload: u32) -> Option<&str> {
        self.tenants
            .get(tenant as usize)
            .and_then(|t| t.workloads.get(workload as usize))
            .map(|w| &*w.name)
    }

    /// Where a rule is in the document and what it says.
    pub fn rule(&self, id: RuleId) -> Option<&RuleInfo> {
        self.rules.get(id.0 as usize)
    }

    /// One line describing the policy, for logs.
    pub fn summary(&self) -> String {
        let workloads: usize = self.tenants.iter().map(|t| t.workloads.len()).sum();
        format!(
            "mode={} tenants={} namespaces={} host_rules={} workload_exceptions={} listeners={} deny_status={} unknown_source={}",
            self.mode.as_str(),
            self.tenants.len(),
            self.tenant_of_ns.len(),
            self.host_rules,
            workloads,
            self.sets.len(),
            self.deny_status,
            match self.unknown_source {
                UnknownSource::Deny => "deny",
                UnknownSource::Allow => "allow",
            },
        )
    }

    // === request time ===

    /// Resolves a source: its tenant and the workload exception whose selector is a subset of
    /// the labels (validation guarantees at most one can match; the first wins regardless).
    pub fn source(&self, source: &Source<'_>) -> SourceScope {
        // A namespace longer than a DNS label cannot exist in Kubernetes: treat it as absent.
        let namespace = source
            .namespace
            .filter(|ns| !ns.is_empty())
            .and_then(|ns| NsName::lower(ns.as_bytes()).filter(|n| n.as_str() == ns));
        let tenant = namespace.and_then(|ns| self.tenant_of_ns.get(ns.as_str()).copied());
        let view = tenant
            .and_then(|t| self.tenants.get(t as usize))
            .and_then(|t| {
                t.workloads.iter().position(|w| {
                    w.selector.iter().all(|(k, v)| {
                        source
                            .labels
                            .iter()
                            .any(|(lk, lv)| *lk == &**k && *lv == &**v)
                    })
                })
            })
            .map_or(0, |w| u32::try_from(w + 1).unwrap_or(0));
        SourceScope {
            namespace: namespace.unwrap_or(NsName::empty()),
            tenant,
            view,
        }
    }

    /// Decides one request. Total: every input, however malformed, yields a decision.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        self.decide_for(&self.source(&req.source), &req.target)
    }

    /// Decides for a pre-resolved source (the filter's per-request path).
    pub fn decide_for(&self, src: &SourceScope, target: &Target<'_>) -> Decision {
        let tenant = src.tenant.and_then(|t| self.tenants.get(t as usize));
        let mode = tenant.map_or(self.mode, |t| t.mode);
        let mut d = Decision {
            allowed: false,
            enforced: mode == Mode::Enforce,
            reason: Reason::UnknownSource,
            tenant: src.tenant,
            rule: None,
            destination: Destination::UNKNOWN,
            detail: None,
        };
        if src.namespace.is_empty() {
            return d;
        }
        let src_ns = src.namespace.as_bytes();
        let Some(outside_registry) = self.resolve(src_ns, target, &mut d) else {
            return d;
        };
        let Some(tenant) = tenant else {
            d.reason = Reason::NoTenant;
            d.allowed = self.unknown_source == UnknownSource::Allow;
            return d;
        };
        if outside_registry {
            if tenant.outbound == OutboundTrafficPolicy::AllowAny {
                d.allowed = true;
                d.reason = Reason::AllowAny;
            } else {
                d.reason = Reason::NotInRegistry;
            }
            return d;
        }
        let Some(view) = tenant.views.get(src.view as usize) else {
            d.reason = Reason::NotAllowed;
            return d;
        };
        let Some(listener) = view.listener(d.destination.port) else {
            d.reason = Reason::NotAllowed;
            d.detail = Some(Detail::NoListenerForPort(d.destination.port));
            return d;
        };
        if target.protocol == Protocol::Tcp && !listener.tcp {
            d.reason = Reason::NotAllowed;
            d.rule = Some(listener.rule);
            d.detail = d.destination.port.map(Detail::HttpOnlyPort);
            return d;
        }
        let Some(set) = self.sets.get(listener.set as usize) else {
            d.reason = Reason::NotAllowed;
            return d;
        };
        let dest_ns = d.destination.namespace.as_bytes();
        let bucket = Bucket {
            ns: if dest_ns.is_empty() {
                None
            } else {
                self.ns_ids.get(dest_ns).copied()
            },
            own: !dest_ns.is_empty() && dest_ns == src_ns,
        };
        let host = d.destination.host.as_bytes();
        if !set.exclude.is_empty() {
            if let Some(rule) = set.exclude.find(host, bucket) {
                d.reason = Reason::Excluded;
                d.rule = Some(rule);
                return d;
            }
        }
        match set.import.find(host, bucket) {
            Some(rule) => {
                d.allowed = true;
                d.reason = Reason::Allowed;
                d.rule = Some(rule);
            }
            None => {
                d.reason = Reason::NotAllowed;
                d.rule = Some(listener.rule);
            }
        }
        d
    }

    /// Resolves what the request is going to into `d.destination`. Returns whether it lies
    /// outside the service registry, or `None` after setting the deny reason.
    fn resolve(&self, src_ns: &[u8], t: &Target<'_>, d: &mut Decision) -> Option<bool> {
        let fail = |d: &mut Decision, reason: Reason, detail: Option<Detail>| {
            d.reason = reason;
            d.detail = detail;
            None
        };
        if t.authority_repeated {
            let detail = Detail::Authority(authority::MalformedAuthority::Repeated);
            return fail(d, Reason::MalformedAuthority, Some(detail));
        }
        let authority = match t.authority.map(authority::parse_authority) {
            Some(Err(e)) => return fail(d, Reason::MalformedAuthority, Some(Detail::Authority(e))),
            Some(Ok(a)) => Some(a),
            None => None,
        };
        let address = t.destination_address.and_then(authority::parse_socket_addr);
        let cluster = match t
            .cluster
            .filter(|c| !c.is_empty())
            .map(authority::parse_cluster)
        {
            Some(Err(e)) => {
                let reason = match e {
                    authority::BadCluster::Malformed => Reason::MalformedCluster,
                    _ => Reason::UnsupportedCluster,
                };
                return fail(d, reason, Some(Detail::Cluster(e)));
            }
            Some(Ok(c)) => Some(c),
            None => None,
        };
        let dest = &mut d.destination;
        match cluster {
            Some(Cluster::Outbound { port, host, .. }) => {
                dest.kind = DestinationKind::Host;
                dest.host = host;
                dest.port = Some(port);
                if let Some(a) = &authority {
                    match self.consistent(src_ns, a, &dest.host) {
                        Some(Matched::Cluster) => {}
                        Some(Matched::Authority) => dest.host = a.host,
                        None => return fail(d, Reason::AuthorityMismatch, None),
                    }
                }
                // Without an authority, a wildcard ServiceEntry cluster (`*.wikipedia.org`) is
                // matched as the pattern itself: only an entry at least as wide can allow it.
                dest.namespace = self.destination_namespace(t, dest.host.as_bytes());
                Some(false)
            }
            Some(Cluster::Passthrough) => {
                if let Some(addr) = address {
                    *dest = ip_destination(addr.ip(), Some(addr.port()));
                }
                // Under ALLOW_ANY Istio sends unknown hosts to the address the app dialled. An
                // authority that names a mesh service while Envoy found no route for it means the
                // Host header is lying about where the bytes go (or the Sidecar does not import
                // it): never let a passthrough masquerade as a registry service.
                if let Some(a) = &authority {
                    if a.kind == HostKind::Dns && self.names_mesh_service(src_ns, a.host.as_bytes())
                    {
                        return fail(d, Reason::AuthorityMismatch, None);
                    }
                }
                Some(true)
            }
            Some(Cluster::BlackHole) => fail(d, Reason::Blackhole, None),
            Some(Cluster::Inbound) => fail(d, Reason::UnsupportedCluster, None),
            None => {
                let Some(a) = authority else {
                    return match address {
                        Some(addr) => {
                            *dest = ip_destination(addr.ip(), Some(addr.port()));
                            Some(true)
                        }
                        None => fail(d, Reason::UnknownDestination, None),
                    };
                };
                dest.port = a.port.or(address.map(|s| s.port()));
                if a.kind == HostKind::Ip {
                    dest.kind = DestinationKind::Ip;
                    dest.host = a.host;
                    return Some(true);
                }
                dest.kind = DestinationKind::Host;
                dest.host = self.expand_alias(src_ns, &a.host).unwrap_or(a.host);
                dest.namespace = self.destination_namespace(t, dest.host.as_bytes());
                Some(false)
            }
        }
    }

    /// The namespace from cluster metadata when the proxy has it, else from the FQDN.
    fn destination_namespace(&self, t: &Target<'_>, host: &[u8]) -> NsName {
        match t.destination_namespace.filter(|n| !n.is_empty()) {
            Some(ns) => NsName::lower(ns.as_bytes()).unwrap_or(NsName::empty()),
            None => self.namespace_of_fqdn(host),
        }
    }

    /// `<...>.<ns>.svc.<clusterDomain>` -> `ns`.
    fn namespace_of_fqdn(&self, host: &[u8]) -> NsName {
        host.strip_suffix(self.svc_suffix.as_bytes())
            .and_then(rsplit_dot)
            .filter(|(svc, _)| !svc.is_empty() && svc.first() != Some(&b'*'))
            .and_then(|(_, ns)| NsName::lower(ns))
            .unwrap_or(NsName::empty())
    }

    /// Istio's route aliases for a Kubernetes service (`pilot/pkg/networking/core/httproute.go:
    /// generateVirtualHostDomains`): `svc` in the source namespace, `svc.ns` and `svc.ns.svc`
    /// when `ns` is a namespace the policy knows. Returns the FQDN.
    fn expand_alias(&self, src_ns: &[u8], host: &HostName) -> Option<HostName> {
        let h = host.as_bytes();
        let labels = h.iter().filter(|&&c| c == b'.').count() + 1;
        let domain = self.cluster_domain.as_bytes();
        match labels {
            1 => HostName::concat_lower(&[h, b".", src_ns, b".svc.", domain]),
            2 => {
                let (_, ns) = split_dot(h)?;
                self.ns_ids.contains_key(ns).then_some(())?;
                HostName::concat_lower(&[h, b".svc.", domain])
            }
            3 => {
                let rest = h.strip_suffix(b".svc")?;
                let (_, ns) = split_dot(rest)?;
                self.ns_ids.contains_key(ns).then_some(())?;
                HostName::concat_lower(&[h, b".", domain])
            }
            _ => None,
        }
    }

    /// Whether `host` names a Kubernetes service of this cluster: an FQDN under
    /// `.svc.<clusterDomain>` or one of its short aliases.
    fn names_mesh_service(&self, src_ns: &[u8], host: &[u8]) -> bool {
        if host.ends_with(self.svc_suffix.as_bytes()) {
            return true;
        }
        HostName::lower(host)
            .and_then(|h| self.expand_alias(src_ns, &h))
            .is_some()
    }

    /// Checks that the authority names the cluster's service, and says which host to match:
    /// the cluster's FQDN, or for a wildcard cluster (`*.wikipedia.org`) the authority's host.
    fn consistent(
        &self,
        src_ns: &[u8],
        a: &authority::Authority,
        cluster_host: &HostName,
    ) -> Option<Matched> {
        if a.kind != HostKind::Dns {
            return None;
        }
        let ah = a.host.as_bytes();
        let ch = cluster_host.as_bytes();
        if let Some(sfx) = ch.strip_prefix(b"*") {
            return (ah.len() > sfx.len() && ah.ends_with(sfx)).then_some(Matched::Authority);
        }
        if ah == ch {
            return Some(Matched::Cluster);
        }
        // Short forms of a Kubernetes FQDN `svc.ns.svc.<domain>`.
        let rest = ch.strip_suffix(self.svc_suffix.as_bytes())?;
        let (svc, ns) = rsplit_dot(rest)?;
        let alias_ok = ah == rest
            || ah.strip_suffix(b".svc").is_some_and(|r| r == rest)
            || (ah == svc && ns == src_ns);
        alias_ok.then_some(Matched::Cluster)
    }
}

/// Which host [`Policy::consistent`] matched.
#[derive(Clone, Copy)]
enum Matched {
    Cluster,
    Authority,
}

/// `a.b.c` -> (`a`, `b.c`).
fn split_dot(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&c| c == b'.')?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `a.b.c` -> (`a.b`, `c`).
fn rsplit_dot(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().rposition(|&c| c == b'.')?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

fn ip_destination(ip: std::net::IpAddr, port: Option<u16>) -> Destination {
    let text = ip.to_string();
    Destination {
        kind: DestinationKind::Ip,
        host: HostName::lower(text.as_bytes()).unwrap_or(HostName::empty()),
        namespace: NsName::empty(),
        port,
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
