//! The destination end's decision ([`crate::inbound`] describes what that end sees).
//!
//! It is the caller's decision, asked at the other end: the verified SPIFFE id gives the caller's
//! namespace (so its tenant) and service account, the SNI gives the outbound cluster the caller's
//! sidecar routed to, and [`Policy::decide_for`] answers exactly as the caller's own filter would.
//! Two things are added, each because only this end can check it: the identity must be a trusted
//! one, and the SNI must name a service this workload serves on the port the connection landed
//! on (otherwise a caller allowed to reach `api.prod` could name it while dialling the database
//! pod directly).

use super::{Policy, RoutedCluster, SourceScope, Workload};
use crate::authority::{self, HostKind};
use crate::decision::{
    Decision, Destination, DestinationKind, Detail, Reason, RuleId, RuleInfo, Target,
};
use crate::inbound::{self, BadIdentity, Inbound};
use crate::name::{HostName, NsName};
use crate::spec::{InboundSpec, Mode, PolicySpec, UnknownSource, DEFAULT_TRUST_DOMAIN};

/// One compiled `inbound` entry of a tenant.
#[derive(Debug)]
pub(super) struct Allowance {
    namespace: Box<str>,
    /// Empty: every service account of the namespace.
    service_accounts: Box<[Box<str>]>,
    rule: RuleId,
}

impl Allowance {
    fn admits(&self, namespace: &str, service_account: &str) -> bool {
        *self.namespace == *namespace
            && (self.service_accounts.is_empty()
                || self
                    .service_accounts
                    .iter()
                    .any(|s| **s == *service_account))
    }
}

/// Compiles a tenant's `inbound` entries, naming each as a rule (`tenants[t].inbound[i]`).
pub(super) fn compile_allowances(
    rules: &mut Vec<RuleInfo>,
    t: usize,
    specs: &[InboundSpec],
) -> Box<[Allowance]> {
    specs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let rule = RuleId(u32::try_from(rules.len()).unwrap_or(u32::MAX));
            let text = if a.service_accounts.is_empty() {
                format!("namespace {}, any service account", a.namespace)
            } else {
                format!(
                    "namespace {}, service accounts {}",
                    a.namespace,
                    a.service_accounts.join(", ")
                )
            };
            rules.push(RuleInfo {
                path: format!("tenants[{t}].inbound[{i}]"),
                text,
            });
            Allowance {
                namespace: a.namespace.as_str().into(),
                service_accounts: a
                    .service_accounts
                    .iter()
                    .map(|s| s.as_str().into())
                    .collect(),
                rule,
            }
        })
        .collect()
}

/// The trust domains of a spec (Istio's default when it names none).
pub(super) fn trust_domains(spec: &PolicySpec) -> Box<[Box<str>]> {
    if spec.trust_domains.is_empty() {
        return Box::new([DEFAULT_TRUST_DOMAIN.into()]);
    }
    spec.trust_domains
        .iter()
        .map(|td| td.to_ascii_lowercase().into_boxed_str())
        .collect()
}

impl Workload {
    /// Whether a pod running as `service_account` may be one this exception selects: always
    /// when the exception names no service accounts; never when the pod's is unknown.
    pub(super) fn admits_service_account(&self, service_account: Option<&str>) -> bool {
        self.service_accounts.is_empty()
            || service_account.is_some_and(|sa| self.service_accounts.iter().any(|s| **s == *sa))
    }
}

impl Policy {
    /// The SPIFFE trust domains the destination end accepts.
    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        self.trust_domains.iter().map(|t| &**t)
    }

    /// Decides one inbound request or connection at the destination. Total, like
    /// [`Policy::decide`]; the decision's tenant is the CALLER's tenant, and its mode decides
    /// whether a denial is enforced, as at the caller's end. Before the caller is known (no or
    /// a refused identity) the destination tenant's mode applies.
    ///
    /// Order: this proxy's namespace; the caller's identity (present, a SPIFFE id, trusted); a
    /// caller outside every tenant (the destination tenant's `inbound`, else `unknownSource`);
    /// the SNI (an Istio mesh SNI naming a service served here); then the caller's own decision
    /// for that service and port. The caller's end applies one view (the tenant's egress, or
    /// the one workload exception its pod matches); the destination cannot see pod labels, so it
    /// admits when the tenant's egress or ANY exception that a pod running as the caller's
    /// service account could match allows: never stricter than the caller's end.
    ///
    /// The same as [`Policy::inbound_caller`], then [`Policy::inbound_service`], then
    /// [`Policy::decide_inbound_with`]; the filter keeps the first two per distinct identity and
    /// per distinct SNI, since neither depends on the request.
    pub fn decide_inbound(&self, req: &Inbound<'_>) -> Decision {
        let caller = self.inbound_caller(req.namespace, req.peer);
        if let Caller::Decided(d) = &caller.0 {
            return *d;
        }
        let service = self.inbound_service(req.namespace, req.sni, req.services);
        self.decide_inbound_with(&caller, &service, req)
    }

    /// Everything the destination end decides from the caller's identity alone (`peer`, the
    /// verified certificate's URI SAN), given this proxy's `namespace`: the SPIFFE parse, the
    /// trust domain, the caller's tenant and, for a caller outside every tenant, the whole
    /// decision. It depends on no request, so the filter computes it once per distinct identity.
    pub fn inbound_caller(&self, namespace: Option<&str>, peer: Option<&[u8]>) -> InboundCaller {
        let local = local_namespace(namespace);
        let local_tenant = local.and_then(|ns| self.tenant_of_ns.get(ns.as_str()).copied());
        let local_mode = local_tenant
            .and_then(|t| self.tenants.get(t as usize))
            .map_or(self.mode, |t| t.mode);
        let mut d = Decision {
            allowed: false,
            enforced: local_mode == Mode::Enforce,
            reason: Reason::UnknownDestination,
            tenant: None,
            rule: None,
            destination: Destination::UNKNOWN,
            detail: None,
        };
        let decided = |d: Decision| InboundCaller(Caller::Decided(d));
        if local.is_none() {
            return decided(d);
        }
        // Who is calling.
        let Some(peer) = peer.filter(|p| !p.is_empty()) else {
            d.reason = Reason::NoPeerIdentity;
            return decided(d);
        };
        let refuse = |mut d: Decision, why: BadIdentity| {
            d.reason = Reason::UntrustedPeer;
            d.detail = Some(Detail::Identity(why));
            InboundCaller(Caller::Decided(d))
        };
        let id = match inbound::parse_spiffe(peer) {
            Ok(id) => id,
            Err(why) => return refuse(d, why),
        };
        if !self.trust_domains.iter().any(|td| **td == *id.trust_domain) {
            return refuse(d, BadIdentity::ForeignTrustDomain);
        }
        // parse_spiffe bounds both names (63 and 253 bytes): these always fit.
        let (Some(caller_ns), Some(service_account)) = (
            NsName::lower(id.namespace.as_bytes()),
            HostName::lower(id.service_account.as_bytes()),
        ) else {
            return refuse(d, BadIdentity::BadName);
        };
        let caller_tenant = self.tenant_of_ns.get(id.namespace).copied();
        d.tenant = caller_tenant;
        let Some(tenant) = caller_tenant.and_then(|t| self.tenants.get(t as usize)) else {
            let admitted = local_tenant
                .and_then(|t| self.tenants.get(t as usize))
                .and_then(|t| {
                    t.inbound
                        .iter()
                        .find(|a| a.admits(id.namespace, id.service_account))
                });
            match admitted {
                Some(a) => {
                    d.allowed = true;
                    d.reason = Reason::InboundAllowed;
                    d.rule = Some(a.rule);
                }
                None => {
                    d.reason = Reason::NoTenant;
                    d.allowed = self.unknown_source == UnknownSource::Allow;
                }
            }
            return decided(d);
        };
        InboundCaller(Caller::Tenant {
            scope: SourceScope {
                namespace: caller_ns,
                tenant: caller_tenant,
                view: 0,
            },
            enforced: tenant.mode == Mode::Enforce,
            service_account,
        })
    }

    /// Everything the destination end decides from Istio's SNI alone, given this proxy's
    /// `namespace` and the `services` its inbound cluster serves: the SNI parse, whether the
    /// service it names is served here, and the outbound cluster the caller's sidecar routed to,
    /// parsed as [`crate::authority::parse_cluster`] would parse its name (which is never
    /// written out). It depends on no request, so the filter computes it once per distinct SNI
    /// and inbound cluster.
    pub fn inbound_service(
        &self,
        namespace: Option<&str>,
        sni: Option<&[u8]>,
        services: &[&str],
    ) -> InboundService {
        // What is called: the outbound cluster the caller's sidecar routed to, from the SNI.
        let Some(sni) = sni.and_then(inbound::parse_istio_sni) else {
            return InboundService(Service::Unknown);
        };
        // Whether it lands here is checked on the SNI's host as is (Istio writes it lowercase);
        // the caller's decision validates it, as the cluster name's host.
        let raw_host = sni.host.strip_suffix('.').unwrap_or(sni.host);
        let Some(host) = HostName::lower(raw_host.as_bytes()) else {
            return InboundService(Service::Malformed);
        };
        let port = sni.port;
        let local = local_namespace(namespace);
        let lands_here = match local {
            None => false,
            Some(_) if !services.is_empty() => services.iter().any(|s| {
                s.strip_suffix('.')
                    .unwrap_or(s)
                    .eq_ignore_ascii_case(host.as_str())
            }),
            Some(ns) => self.namespace_of_fqdn(host.as_bytes()).as_str() == ns.as_str(),
        };
        // `outbound|P|S|H` longer than the longest valid one cannot be valid: refused before
        // the landing check, as an unwritable cluster name.
        let digits = match port {
            0..=9 => 1,
            10..=99 => 2,
            100..=999 => 3,
            1000..=9999 => 4,
            _ => 5,
        };
        let name_len = crate::authority::OUTBOUND_PREFIX.len()
            + digits
            + 1
            + sni.subset.len()
            + 1
            + sni.host.len();
        if name_len > inbound::CLUSTER_BUF {
            return InboundService(Service::Malformed);
        }
        let destination = Destination {
            kind: DestinationKind::Host,
            host,
            namespace: self.namespace_of_fqdn(host.as_bytes()),
            port: Some(port),
            address: None,
        };
        let (Some(namespace), true) = (local, lands_here) else {
            return InboundService(Service::Elsewhere(destination));
        };
        // A destination shard decides only the hosts it has the rules for, in its namespace.
        if let Some((shard_ns, served)) = &self.destination_shard {
            let decides =
                **shard_ns == *namespace.as_str() && served.iter().any(|p| p.covers(host.as_str()));
            if !decides {
                return InboundService(Service::Undeclared(destination));
            }
        }
        let cluster = authority::outbound_host(sni.host.as_bytes()).map(|host| {
            authority::Cluster::Outbound {
                port,
                subset: "",
                host,
            }
        });
        InboundService(Service::Here {
            routed: RoutedCluster::from_parsed(cluster),
            namespace,
        })
    }

    /// [`Policy::decide_inbound`] from a caller and a service resolved beforehand
    /// ([`Policy::inbound_caller`], [`Policy::inbound_service`], for this proxy's namespace):
    /// of `req` only the request's own inputs are read (the `:authority`, whether it repeated,
    /// the protocol). Parses the authority once, whatever the number of views asked.
    pub fn decide_inbound_with(
        &self,
        caller: &InboundCaller,
        service: &InboundService,
        req: &Inbound<'_>,
    ) -> Decision {
        let (scope, enforced, service_account) = match &caller.0 {
            Caller::Decided(d) => return *d,
            Caller::Tenant {
                scope,
                enforced,
                service_account,
            } => (scope, *enforced, service_account),
        };
        // Built only on the way out: a `Decision` carries an inline host name, and the allowed
        // path (the common one) returns `decide_parsed`'s instead.
        let refuse = |reason, destination| Decision {
            allowed: false,
            enforced,
            reason,
            tenant: scope.tenant,
            rule: None,
            destination,
            detail: None,
        };
        let (routed, local) = match &service.0 {
            Service::Unknown => return refuse(Reason::UnknownDestination, Destination::UNKNOWN),
            Service::Malformed => return refuse(Reason::MalformedCluster, Destination::UNKNOWN),
            Service::Elsewhere(destination) => return refuse(Reason::SniMismatch, *destination),
            Service::Undeclared(destination) => {
                return refuse(Reason::UndeclaredService, *destination)
            }
            Service::Here { routed, namespace } => (routed, namespace),
        };
        // An IP-literal :authority (a ClusterIP the caller dialled) is confirmed at the caller's
        // end by the original destination, which this end does not see (here it is the pod's
        // address): it cannot name another service than the SNI, so the SNI decides alone.
        let parsed = req.authority.map(authority::parse_authority);
        let ip_authority = matches!(&parsed, Some(Ok(a)) if a.kind == HostKind::Ip);
        let authority = if ip_authority { None } else { parsed.as_ref() };
        let target = Target {
            authority: if ip_authority { None } else { req.authority },
            authority_repeated: req.authority_repeated,
            // Decided on `routed`, the SNI's cluster.
            cluster: None,
            destination_namespace: Some(local.as_str()),
            destination_address: None,
            protocol: req.protocol,
        };
        let first = self.decide_parsed(scope, &target, authority, routed);
        if first.allowed {
            return first;
        }
        let Some(tenant) = scope.tenant.and_then(|t| self.tenants.get(t as usize)) else {
            return first;
        };
        let sa = service_account.as_str();
        for (w, wl) in tenant.workloads.iter().enumerate() {
            if !wl.admits_service_account(Some(sa)) {
                continue;
            }
            let view = u32::try_from(w + 1).unwrap_or(u32::MAX);
            let scope = SourceScope { view, ..*scope };
            let with = self.decide_parsed(&scope, &target, authority, routed);
            if with.allowed {
                return with;
            }
        }
        first
    }
}

/// This proxy's namespace, when it is one Kubernetes could have (a lowercase DNS label).
fn local_namespace(namespace: Option<&str>) -> Option<NsName> {
    namespace
        .filter(|ns| !ns.is_empty())
        .and_then(|ns| NsName::lower(ns.as_bytes()).filter(|n| n.as_str() == ns))
}

/// The destination end's view of a caller, from its identity alone ([`Policy::inbound_caller`]).
/// Owns its data: the filter keeps one per distinct peer identity.
#[derive(Debug, Clone, Copy)]
pub struct InboundCaller(Caller);

#[derive(Debug, Clone, Copy)]
enum Caller {
    /// Decided before the SNI: no namespace here, no or a refused identity, or a caller outside
    /// every tenant.
    Decided(Decision),
    /// A tenant's workload: decided by the SNI and the caller's own decision.
    Tenant {
        /// The caller as its own end resolves it, before any workload exception.
        scope: SourceScope,
        /// The caller tenant's mode.
        enforced: bool,
        /// For the workload exceptions by service account.
        service_account: HostName,
    },
}

impl InboundCaller {
    /// The decision, when the identity alone decides (whatever is called).
    pub fn decided(&self) -> Option<&Decision> {
        match &self.0 {
            Caller::Decided(d) => Some(d),
            Caller::Tenant { .. } => None,
        }
    }
}

/// The destination end's view of what is called, from Istio's SNI and the inbound cluster's
/// services ([`Policy::inbound_service`]). Owns its data: the filter keeps one per distinct SNI
/// and inbound cluster.
#[derive(Debug, Clone, Copy)]
pub struct InboundService(Service);

#[derive(Debug, Clone, Copy)]
enum Service {
    /// No SNI, or not Istio's mesh SNI: `unknown-destination`.
    Unknown,
    /// An SNI whose cluster name cannot be valid: `malformed-cluster`.
    Malformed,
    /// A service not served here: `sni-mismatch`, with the service as the destination.
    Elsewhere(Destination),
    /// A service served here that this destination shard has no rules for:
    /// `undeclared-service`.
    Undeclared(Destination),
    /// A service served here: the caller's outbound cluster, parsed, and this namespace.
    Here {
        routed: RoutedCluster,
        namespace: NsName,
    },
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::decision::Protocol;
    use crate::inbound::Inbound;
    use crate::{Policy, Reason};

    fn policy() -> Policy {
        Policy::from_json(
            br#"{"apiVersion": "tenant-egress/v1", "trustDomains": ["cluster.local", "old.example"],
                 "tenants": [
                   {"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}],
                    "workloads": [{"name": "batman", "serviceAccounts": ["batman"],
                                   "selector": {"app": "batman"},
                                   "egress": [{"hosts": ["logs/*"]}]},
                                  {"name": "labels-only", "selector": {"app": "robin"},
                                   "egress": [{"hosts": ["metrics/*"]}]}],
                    "inbound": [{"namespace": "istio-system", "serviceAccounts": ["istio-ingressgateway"]}]},
                   {"name": "logs", "namespaces": ["logs"], "egress": [{"hosts": ["./*"]}]},
                   {"name": "metrics", "namespaces": ["metrics"], "egress": [{"hosts": ["./*"]}]},
                   {"name": "uat", "namespaces": ["uat"], "mode": "audit", "egress": [{"hosts": ["./*"]}]},
                   {"name": "dev", "namespaces": ["dev"],
                    "egress": [{"port": {"number": 8080, "protocol": "HTTP"}, "hosts": ["prod/api.prod.svc.cluster.local"]}]}
                 ]}"#,
        )
        .unwrap()
        .0
    }

    fn at<'a>(ns: &'a str, peer: &'a str, sni: &'a str) -> Inbound<'a> {
        Inbound {
            namespace: Some(ns),
            peer: Some(peer.as_bytes()).filter(|p| !p.is_empty()),
            sni: Some(sni.as_bytes()).filter(|s| !s.is_empty()),
            protocol: Protocol::Tcp,
            ..Inbound::default()
        }
    }

    const DB: &str = "outbound_.26257_._.cockroachdb.prod.svc.cluster.local";
    const API: &str = "outbound_.8080_._.api.prod.svc.cluster.local";

    #[test]
    fn the_callers_answer_at_the_destination() {
        let p = policy();
        let d = p.decide_inbound(&at("prod", "spiffe://cluster.local/ns/prod/sa/default", DB));
        assert!(d.allowed, "{d:?}");
        assert_eq!(p.tenant_name(d.tenant.unwrap()), Some("prod"));
        // dev may reach prod's api on 8080, over HTTP only.
        let mut r = at("prod", "spiffe://cluster.local/ns/dev/sa/default", API);
        r.protocol = Protocol::Http;
        assert_eq!(p.decide_inbound(&r).reason, Reason::Allowed);
        r.protocol = Protocol::Tcp;
        assert_eq!(p.decide_inbound(&r).reason, Reason::NotAllowed);
        let d = p.decide_inbound(&at("prod", "spiffe://cluster.local/ns/dev/sa/default", DB));
        assert_eq!((d.allowed, d.reason), (false, Reason::NotAllowed));
        // uat is in audit mode: its denial is reported, not enforced (as at its own end).
        let d = p.decide_inbound(&at("prod", "spiffe://cluster.local/ns/uat/sa/default", DB));
        assert_eq!((d.allowed, d.enforced), (false, false));
    }

    #[test]
    fn identity_is_required_and_trusted() {
        let p = policy();
        assert_eq!(
            p.decide_inbound(&at("prod", "", DB)).reason,
            Reason::NoPeerIdentity
        );
        let d = p.decide_inbound(&at("prod", "spiffe://evil.example/ns/prod/sa/default", DB));
        assert_eq!(d.reason, Reason::UntrustedPeer);
        assert!(d.blocks());
        let d = p.decide_inbound(&at("prod", "spiffe://old.example/ns/prod/sa/default", DB));
        assert!(d.allowed, "a listed trust domain alias");
        let d = p.decide_inbound(&at("prod", "spiffe://cluster.local/ns/prod", DB));
        assert_eq!(d.reason, Reason::UntrustedPeer);
        let d = p.decide_inbound(&at("", "spiffe://cluster.local/ns/prod/sa/default", DB));
        assert_eq!(d.reason, Reason::UnknownDestination);
    }

    #[test]
    fn the_sni_must_name_a_service_served_here() {
        let p = policy();
        let caller = "spiffe://cluster.local/ns/dev/sa/default";
        let mut r = at("prod", caller, API);
        r.protocol = Protocol::Http;
        let services = ["cockroachdb.prod.svc.cluster.local"];
        r.services = &services;
        let d = p.decide_inbound(&r);
        assert_eq!(
            d.reason,
            Reason::SniMismatch,
            "api's SNI on the database's port"
        );
        assert!(d.blocks());
        let sni = "outbound_.8080_._.api.uat.svc.cluster.local";
        let d = p.decide_inbound(&at("prod", caller, sni));
        assert_eq!(
            d.reason,
            Reason::SniMismatch,
            "a service of another namespace"
        );
        assert_eq!(
            p.decide_inbound(&at("prod", caller, "db.prod")).reason,
            Reason::UnknownDestination
        );
        // A spoofed :authority names another service than the SNI.
        let mut r = at("prod", caller, API);
        r.protocol = Protocol::Http;
        r.authority = Some(b"cockroachdb.prod:26257");
        assert_eq!(p.decide_inbound(&r).reason, Reason::AuthorityMismatch);
        r.authority = Some(b"api.prod:8080");
        assert_eq!(p.decide_inbound(&r).reason, Reason::Allowed);
    }

    #[test]
    fn exceptions_by_service_account_and_label_only_ones() {
        let p = policy();
        let logs = "outbound_.5000_._.logcatcher.logs.svc.cluster.local";
        let d = p.decide_inbound(&at(
            "logs",
            "spiffe://cluster.local/ns/prod/sa/batman",
            logs,
        ));
        assert!(d.allowed, "{d:?}");
        assert_eq!(
            p.rule(d.rule.unwrap()).unwrap().path,
            "tenants[0].workloads[0].egress[0].hosts[0]"
        );
        let d = p.decide_inbound(&at(
            "logs",
            "spiffe://cluster.local/ns/prod/sa/default",
            logs,
        ));
        assert_eq!(d.reason, Reason::NotAllowed);
        // The label-only exception applies to every service account at the destination.
        let metrics = "outbound_.9090_._.prom.metrics.svc.cluster.local";
        let d = p.decide_inbound(&at(
            "metrics",
            "spiffe://cluster.local/ns/prod/sa/default",
            metrics,
        ));
        assert!(d.allowed);
    }

    #[test]
    fn callers_outside_every_tenant_need_an_inbound_allowance() {
        let p = policy();
        let gw = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway";
        let d = p.decide_inbound(&at("prod", gw, ""));
        assert_eq!(d.reason, Reason::InboundAllowed);
        assert_eq!(
            p.rule(d.rule.unwrap()).unwrap().path,
            "tenants[0].inbound[0]"
        );
        let other = "spiffe://cluster.local/ns/istio-system/sa/prometheus";
        assert_eq!(
            p.decide_inbound(&at("prod", other, DB)).reason,
            Reason::NoTenant
        );
        assert_eq!(
            p.decide_inbound(&at("logs", gw, DB)).reason,
            Reason::NoTenant
        );
    }
}
