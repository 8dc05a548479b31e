//! Destination resolution: what a request or connection is going to, from the routed cluster,
//! the `:authority` (or SNI) and the original destination address, with Istio's route aliases.

use std::net::{IpAddr, SocketAddr};

use super::Policy;
use crate::authority::{self, Authority, Cluster, HostKind};
use crate::decision::{Decision, Destination, DestinationKind, Detail, Reason, Target};
use crate::name::{HostName, NsName};

/// How the destination is to be decided.
pub(super) enum Route {
    /// A service or ServiceEntry host, in `d.destination`: decided by the imports. `fallback`
    /// is the passthrough the same request would be if no entry imports it (a name with no
    /// routed cluster, which under ALLOW_ANY Envoy passes through when it has no route).
    Registry { fallback: Option<Passthrough> },
    /// Where the application connected: `PassthroughCluster`, an IP literal, an address alone.
    Passthrough(Passthrough),
}

/// What is known about a passthrough.
#[derive(Clone, Copy)]
pub(super) struct Passthrough {
    /// The `Host`/SNI when it is a DNS name, in its one normalized spelling.
    pub(super) name: Option<HostName>,
    /// The original destination's IP (else an IP-literal authority's).
    pub(super) ip: Option<IpAddr>,
    /// The original destination's port (else the authority's).
    pub(super) port: Option<u16>,
    /// The original destination, shown next to a name.
    pub(super) address: Option<SocketAddr>,
    /// The name is a pod's DNS name (`*.pod.<clusterDomain>`): in-cluster whatever the address.
    pub(super) pod_name: bool,
}

/// A routed cluster name (`xds.cluster_name`) parsed once. It does not depend on the request
/// (only on the name), so the filter keeps one per distinct cluster and decides with
/// [`Policy::decide_routed`], instead of parsing the name on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedCluster {
    parsed: Option<Result<Cluster<'static>, authority::BadCluster>>,
    /// An outbound cluster whose host is what [`authority::parse_authority`] makes of that
    /// same host (a DNS name, not a wildcard): an `:authority` spelling it needs no parse.
    plain_host: bool,
}

impl RoutedCluster {
    /// Parses a cluster name; `None` or empty: no cluster.
    pub fn parse(name: Option<&str>) -> RoutedCluster {
        let parsed = name
            .filter(|c| !c.is_empty())
            .map(|c| authority::parse_cluster(c).map(Cluster::into_owned));
        RoutedCluster::new(parsed)
    }

    /// A cluster parsed by other means (the destination end reads it from Istio's SNI).
    pub(super) fn from_parsed(
        cluster: Result<Cluster<'static>, authority::BadCluster>,
    ) -> RoutedCluster {
        RoutedCluster::new(Some(cluster))
    }

    fn new(parsed: Option<Result<Cluster<'static>, authority::BadCluster>>) -> RoutedCluster {
        // Both constructors take the host from `authority::outbound_host`, which accepts what
        // the authority parser accepts as a DNS name (the same label grammar, lowercased) or a
        // `*.` wildcard: every host but a wildcard is in the parser's form (`tests` check it).
        let plain_host = matches!(&parsed, Some(Ok(Cluster::Outbound { host, .. }))
            if host.as_bytes().first() != Some(&b'*'));
        RoutedCluster { parsed, plain_host }
    }

    /// Whether the raw `:authority` is this outbound cluster's host itself, as a client that
    /// names the service by its FQDN sends it: the host, optionally with the one trailing dot
    /// and a canonical port. [`authority::parse_authority`] would accept it as a DNS name equal
    /// to the cluster's host (lowercase already, checked by the same grammar when the cluster
    /// was parsed), and the decision reads nothing else of such an authority (its port is only
    /// a claim; the cluster's says where the bytes go): so the parse is skipped.
    pub(super) fn is_named_by(&self, raw: &[u8]) -> bool {
        let Some(Ok(Cluster::Outbound { host, .. })) = &self.parsed else {
            return false;
        };
        if !self.plain_host {
            return false;
        }
        let Some(rest) = raw.strip_prefix(host.as_bytes()) else {
            return false;
        };
        let rest = rest.strip_prefix(b".").unwrap_or(rest);
        match rest {
            [] => true,
            [b':', port @ ..] => authority::parse_port(port).is_ok(),
            _ => false,
        }
    }
}

/// The request's `:authority` as the decision reads it.
#[derive(Clone, Copy)]
pub(super) enum Claim<'a> {
    /// The request carried none.
    Absent,
    /// Parsed, or refused.
    Parsed(&'a Result<Authority, authority::MalformedAuthority>),
    /// The routed outbound cluster's own host ([`RoutedCluster::is_named_by`]).
    ClusterHost,
}

impl Policy {
    /// Resolves what the request is going to into `d.destination` and says how to decide it,
    /// or `None` after setting the deny reason.
    pub(super) fn resolve(
        &self,
        src_ns: &[u8],
        t: &Target<'_>,
        claim: Claim<'_>,
        routed: &RoutedCluster,
        d: &mut Decision,
    ) -> Option<Route> {
        let fail = |d: &mut Decision, reason: Reason, detail: Option<Detail>| {
            d.reason = reason;
            d.detail = detail;
            None
        };
        if t.authority_repeated {
            let detail = Detail::Authority(authority::MalformedAuthority::Repeated);
            return fail(d, Reason::MalformedAuthority, Some(detail));
        }
        let authority = match claim {
            Claim::Parsed(Err(e)) => {
                let detail = Some(Detail::Authority(*e));
                return fail(d, Reason::MalformedAuthority, detail);
            }
            Claim::Parsed(Ok(a)) => Some(a),
            Claim::Absent | Claim::ClusterHost => None,
        };
        let address = t.destination_address.and_then(authority::parse_socket_addr);
        // By reference: a parsed cluster holds its host inline (254 bytes), copied only into
        // the decision's destination.
        let cluster = match &routed.parsed {
            Some(Err(e)) => {
                let e = *e;
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
                dest.host = *host;
                dest.port = Some(*port);
                // `Claim::ClusterHost` is the cluster's host: `consistent` would say so.
                if let Some(a) = authority {
                    match self.consistent(src_ns, a, &dest.host, address) {
                        Some(Matched::Cluster) => {}
                        Some(Matched::Authority) => dest.host = a.host,
                        None => return fail(d, Reason::AuthorityMismatch, None),
                    }
                }
                // Without an authority, a wildcard ServiceEntry cluster (`*.wikipedia.org`) is
                // matched as the pattern itself: only an entry at least as wide can allow it.
                dest.namespace = self.destination_namespace(t, dest.host.as_bytes());
                Some(Route::Registry { fallback: None })
            }
            Some(Cluster::Passthrough) => {
                // A service FQDN that Envoy found no route for: the Host is lying about where
                // the bytes go (or the Sidecar does not import it). Never let a passthrough
                // masquerade as a registry service. Only the unambiguous FQDN counts: a short
                // name (`go.dev`, `intranet`) is decided by where it goes, not by its shape.
                if authority.is_some_and(|a| self.is_service_fqdn(a)) {
                    if let Some(addr) = address {
                        *dest = ip_destination(addr.ip(), Some(addr.port()));
                    }
                    return fail(d, Reason::AuthorityMismatch, None);
                }
                Some(Route::Passthrough(self.passthrough(authority, address)))
            }
            Some(Cluster::BlackHole) => fail(d, Reason::Blackhole, None),
            Some(Cluster::Inbound) => fail(d, Reason::UnsupportedCluster, None),
            None => {
                let Some(a) = authority else {
                    return match address {
                        Some(_) => Some(Route::Passthrough(self.passthrough(None, address))),
                        None => fail(d, Reason::UnknownDestination, None),
                    };
                };
                let p = self.passthrough(Some(a), address);
                if a.kind == HostKind::Ip || p.pod_name {
                    return Some(Route::Passthrough(p));
                }
                // Where the bytes go, when known; the authority's port is only a claim.
                dest.port = address.map(|s| s.port()).or(a.port);
                dest.kind = DestinationKind::Host;
                let fqdn = self.is_service_fqdn(a);
                dest.host = self.expand_alias(src_ns, &a.host).unwrap_or(a.host);
                dest.namespace = self.destination_namespace(t, dest.host.as_bytes());
                Some(Route::Registry {
                    fallback: (!fqdn).then_some(p),
                })
            }
        }
    }

    /// What a passthrough to `address` named by `authority` is.
    fn passthrough(
        &self,
        authority: Option<&Authority>,
        address: Option<SocketAddr>,
    ) -> Passthrough {
        let name = authority
            .filter(|a| a.kind == HostKind::Dns)
            .map(|a| a.host);
        Passthrough {
            name,
            ip: address.map(|s| s.ip()).or(authority.and_then(|a| a.ip)),
            port: address.map(|s| s.port()).or(authority.and_then(|a| a.port)),
            address: address.filter(|_| name.is_some()),
            pod_name: name.is_some_and(|n| n.as_bytes().ends_with(self.pod_suffix.as_bytes())),
        }
    }

    /// Whether the authority is a Kubernetes service FQDN (`*.svc.<clusterDomain>`).
    fn is_service_fqdn(&self, a: &Authority) -> bool {
        a.kind == HostKind::Dns && a.host.as_bytes().ends_with(self.svc_suffix.as_bytes())
    }

    /// The namespace from cluster metadata when the proxy has it, else from the FQDN.
    fn destination_namespace(&self, t: &Target<'_>, host: &[u8]) -> NsName {
        match t.destination_namespace.filter(|n| !n.is_empty()) {
            Some(ns) => NsName::lower(ns.as_bytes()).unwrap_or(NsName::empty()),
            None => self.namespace_of_fqdn(host),
        }
    }

    /// `<...>.<ns>.svc.<clusterDomain>` -> `ns`.
    pub(super) fn namespace_of_fqdn(&self, host: &[u8]) -> NsName {
        crate::name::service_namespace(host, self.svc_suffix.as_bytes())
            .and_then(NsName::lower)
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

    /// Checks that the authority names the cluster's service, and says which host to match:
    /// the cluster's FQDN, or for a wildcard cluster (`*.wikipedia.org`) the authority's host.
    /// An IP authority names the routed service only when it is the address the app dialled
    /// (`address`, Envoy's `destination.address`: the ClusterIP before iptables redirected the
    /// connection): Istio lists the ClusterIP among a service's route domains
    /// (`httproute.go: generateVirtualHostDomains`) and routes a VIP listener's traffic to its
    /// service whatever the Host, so a client that uses the VIP as its Host is consistent, while an
    /// IP authority that differs from where the bytes went is spoofed.
    fn consistent(
        &self,
        src_ns: &[u8],
        a: &authority::Authority,
        cluster_host: &HostName,
        address: Option<std::net::SocketAddr>,
    ) -> Option<Matched> {
        if a.kind == HostKind::Ip {
            return address
                .filter(|addr| ip_authority_is(a, addr))
                .map(|_| Matched::Cluster);
        }
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
            || (ah == svc && ns == src_ns)
            || self.is_truncated_fqdn(ah, rest);
        alias_ok.then_some(Matched::Cluster)
    }
}

impl Policy {
    /// `svc.ns.svc.<leading labels of the cluster domain>`, e.g. `web.prod.svc.cluster` for
    /// `cluster.local`: older Istio (1.9 in the replayed dumps) listed every truncation of the
    /// FQDN's shared DNS suffix among a service's route domains, this one included.
    fn is_truncated_fqdn(&self, ah: &[u8], svc_ns: &[u8]) -> bool {
        let domain = self.cluster_domain.as_bytes();
        ah.strip_prefix(svc_ns)
            .and_then(|r| r.strip_prefix(b".svc."))
            .is_some_and(|p| {
                !p.is_empty()
                    && domain.len() > p.len()
                    && domain.starts_with(p)
                    && domain.get(p.len()) == Some(&b'.')
            })
    }
}

/// Which host [`Policy::consistent`] matched.
#[derive(Clone, Copy)]
enum Matched {
    Cluster,
    Authority,
}

/// Whether IP authority `a` is the dialled `addr`: the same IP and, when the authority has a
/// port, the same port. A portless IP is accepted on any port, as Istio routes it: it lists the
/// bare ClusterIP among the domains of every port's virtual host and matches hosts with
/// `ignore_port_in_host_matching` (1.18 and later), so the IP alone names the service.
fn ip_authority_is(a: &authority::Authority, addr: &std::net::SocketAddr) -> bool {
    a.ip == Some(addr.ip()) && a.port.is_none_or(|p| p == addr.port())
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

/// An address as a destination (the IP in canonical text form).
#[inline(never)]
pub(super) fn ip_destination(ip: IpAddr, port: Option<u16>) -> Destination {
    let text = ip.to_string();
    Destination {
        kind: DestinationKind::Ip,
        host: HostName::lower(text.as_bytes()).unwrap_or(HostName::empty()),
        namespace: NsName::empty(),
        port,
        address: None,
    }
}
