//! Request-time inputs and outputs of [`crate::Policy::decide`].

use std::fmt;
use std::net::SocketAddr;

use crate::authority::{BadCluster, MalformedAuthority};
use crate::name::{HostName, NsName};

/// Everything the proxy knows about one request, borrowed from wherever it lives.
///
/// All fields are optional because a proxy may not have them; the decision fails closed on
/// whatever is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// The source workload: its namespace and pod labels (from the node metadata).
    pub source: Source<'a>,
    /// What the request says and where Envoy routed it.
    pub target: Target<'a>,
}

/// The source workload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Source<'a> {
    /// `NAMESPACE` node metadata. `None` or empty denies with `unknown-source`.
    pub namespace: Option<&'a str>,
    /// `LABELS` node metadata, as (key, value) pairs.
    pub labels: &'a [(&'a str, &'a str)],
}

/// The destination as the proxy knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The raw `:authority` bytes (HTTP/1 `Host` becomes `:authority`).
    pub authority: Option<&'a [u8]>,
    /// Set when the request carried more than one `:authority`/`host` value: Envoy hands a
    /// wasm filter only the first, so the filter enumerates the header map and reports it.
    pub authority_repeated: bool,
    /// The upstream cluster Envoy routed to (`xds.cluster_name`).
    pub cluster: Option<&'a str>,
    /// The destination service namespace from the cluster metadata (`istio.services[0].namespace`).
    pub destination_namespace: Option<&'a str>,
    /// The original destination (`destination.address`, `ip:port`).
    pub destination_address: Option<&'a str>,
    /// HTTP request (HTTP filter) or TCP/TLS connection (network filter). For a connection
    /// the `authority` is the TLS SNI, when there is one.
    pub protocol: Protocol,
}

/// What kind of traffic is being decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// An HTTP request: every egress entry applies on its port.
    #[default]
    Http,
    /// A TCP or TLS connection: entries whose port protocol is HTTP-only (HTTP, HTTP2, GRPC)
    /// do not open TCP access.
    Tcp,
}

impl Protocol {
    /// Every protocol, in the order a help text lists them.
    pub const ALL: [Protocol; 2] = [Protocol::Http, Protocol::Tcp];

    /// The spelling in JSON (`explain --batch`, the vectors) and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name that is not one of [`Protocol::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol \"{0}\" (expected http or tcp)")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}

/// A stable, kebab-case reason code. These appear in the `x-tenant-egress-denied` header, in
/// logs and in stats names, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// An egress host entry imports the destination.
    Allowed,
    /// The destination is outside the service registry and the tenant is `ALLOW_ANY`.
    AllowAny,
    /// The source namespace is missing from the proxy's metadata.
    UnknownSource,
    /// The source namespace belongs to no tenant (allowed or denied per `unknownSource`).
    NoTenant,
    /// The `:authority` is malformed, non-ASCII or repeated.
    MalformedAuthority,
    /// The cluster name looks like Istio's but does not parse.
    MalformedCluster,
    /// A cluster this filter does not enforce on (inbound, or not created by Istio).
    UnsupportedCluster,
    /// The `:authority` names a different service than the cluster Envoy routed to.
    AuthorityMismatch,
    /// Nothing identifies the destination.
    UnknownDestination,
    /// A destination outside the service registry (passthrough, IP literal) under REGISTRY_ONLY.
    NotInRegistry,
    /// Envoy routed to `BlackHoleCluster`.
    Blackhole,
    /// An `~` entry excludes the destination.
    Excluded,
    /// No egress entry imports the destination.
    NotAllowed,
    /// Destination end: the caller presented no verified client certificate (plaintext).
    NoPeerIdentity,
    /// Destination end: the caller's identity is not a SPIFFE id of a trusted domain.
    UntrustedPeer,
    /// Destination end: the TLS SNI names a service this workload does not serve here.
    SniMismatch,
    /// Destination end: a caller outside every tenant admitted by the tenant's `inbound`.
    InboundAllowed,
    /// Destination end, sharded: the SNI names a host this workload serves that its namespace's
    /// shard does not carry the rules for (not a Kubernetes service of the namespace, nor in its
    /// tenant's `serves`).
    UndeclaredService,
}

impl Reason {
    /// Every reason, for defining one counter each.
    pub const ALL: [Reason; 18] = [
        Reason::Allowed,
        Reason::AllowAny,
        Reason::UnknownSource,
        Reason::NoTenant,
        Reason::MalformedAuthority,
        Reason::MalformedCluster,
        Reason::UnsupportedCluster,
        Reason::AuthorityMismatch,
        Reason::UnknownDestination,
        Reason::NotInRegistry,
        Reason::Blackhole,
        Reason::Excluded,
        Reason::NotAllowed,
        Reason::NoPeerIdentity,
        Reason::UntrustedPeer,
        Reason::SniMismatch,
        Reason::InboundAllowed,
        Reason::UndeclaredService,
    ];

    /// The stable code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::AllowAny => "allow-any",
            Reason::UnknownSource => "unknown-source",
            Reason::NoTenant => "no-tenant",
            Reason::MalformedAuthority => "malformed-authority",
            Reason::MalformedCluster => "malformed-cluster",
            Reason::UnsupportedCluster => "unsupported-cluster",
            Reason::AuthorityMismatch => "authority-mismatch",
            Reason::UnknownDestination => "unknown-destination",
            Reason::NotInRegistry => "not-in-registry",
            Reason::Blackhole => "blackhole",
            Reason::Excluded => "excluded",
            Reason::NotAllowed => "not-allowed",
            Reason::NoPeerIdentity => "no-peer-identity",
            Reason::UntrustedPeer => "untrusted-peer",
            Reason::SniMismatch => "sni-mismatch",
            Reason::InboundAllowed => "inbound-allowed",
            Reason::UndeclaredService => "undeclared-service",
        }
    }

    /// Parses a code (for test vectors and tooling).
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }

    /// The index of this reason in [`Reason::ALL`] (for counter arrays).
    pub fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a place in the policy document (a host entry or an egress entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub(crate) u32);

/// A rule as written in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Its place, e.g. `tenants[0].egress[1].hosts[2]`.
    pub path: String,
    /// Its text, e.g. `./*`, or for an egress entry `port 26257` / `all ports`.
    pub text: String,
}

/// How the destination was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    /// A host, possibly with a namespace.
    Host,
    /// An IP address (passthrough or IP literal).
    Ip,
    /// Not known.
    Unknown,
}

/// The destination as resolved from the request, for decisions, logs and `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// What kind of destination this is.
    pub kind: DestinationKind,
    /// Lowercase FQDN (or IP); empty when unknown.
    pub host: HostName,
    /// Destination namespace; empty when unknown (external hosts).
    pub namespace: NsName,
    /// Destination port, when known.
    pub port: Option<u16>,
    /// The original destination (`destination.address`) when the decision used it and the
    /// host above is a name: a passthrough goes where the application connected, whatever the
    /// name says.
    pub address: Option<SocketAddr>,
}

impl Destination {
    pub(crate) const UNKNOWN: Destination = Destination {
        kind: DestinationKind::Unknown,
        host: HostName::empty(),
        namespace: NsName::empty(),
        port: None,
        address: None,
    };

    /// The host, or `None` when unknown.
    pub fn host(&self) -> Option<&str> {
        (!self.host.is_empty()).then(|| self.host.as_str())
    }

    /// The namespace, or `None` when unknown.
    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then(|| self.namespace.as_str())
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host() {
            Some(h) if self.kind == DestinationKind::Ip && h.contains(':') => write!(f, "[{h}]")?,
            Some(h) => f.write_str(h)?,
            None => f.write_str("(unknown)")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        match self.address {
            // IpAddr's Display, which the filter links anyway (SocketAddr's costs wasm bytes).
            Some(SocketAddr::V4(a)) => {
                write!(f, " (original destination {}:{})", a.ip(), a.port())?
            }
            Some(SocketAddr::V6(a)) => {
                write!(f, " (original destination [{}]:{})", a.ip(), a.port())?
            }
            None => {}
        }
        Ok(())
    }
}

/// Extra detail on why the destination could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Why the authority was refused.
    Authority(MalformedAuthority),
    /// Why the cluster name was refused.
    Cluster(BadCluster),
    /// The port the listener was chosen for (`not-allowed` with no listener for it).
    NoListenerForPort(Option<u16>),
    /// A TCP connection on a port whose egress entry is HTTP-only.
    HttpOnlyPort(u16),
    /// Why the caller's identity was refused (destination end).
    Identity(crate::inbound::BadIdentity),
    /// A passthrough to an in-cluster destination: its original destination lies in the
    /// policy's `clusterNetworks`, or its name is a pod's DNS name. No name the policy can verify
    /// says which namespace it is in, so only an entry importing every namespace (`*/*`) can
    /// allow it.
    InCluster,
    /// Like [`Detail::InCluster`], because the name is a pod's DNS name (`*.pod.<domain>`).
    InClusterPodName,
    /// Like [`Detail::InCluster`], and the listener also excludes something in the cluster
    /// (a `~ns/...` entry, or an in-cluster name), which an unnamed address might be.
    InClusterExcluded,
    /// A passthrough whose original destination is unknown while the policy declares
    /// `clusterNetworks`: it may be in-cluster, so it is decided as such (fail closed).
    NoOriginalDestination,
}

/// The outcome of one decision. Never allocates; names the rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What the policy says.
    pub allowed: bool,
    /// False in audit mode: a denial is reported but not enforced.
    pub enforced: bool,
    /// Why.
    pub reason: Reason,
    /// The source tenant, as an index into the policy's tenants.
    pub tenant: Option<u32>,
    /// The host entry that allowed or excluded, or for `not-allowed` the egress entry that
    /// was consulted (the place to add a host).
    pub rule: Option<RuleId>,
    /// The destination as resolved.
    pub destination: Destination,
    /// Parse detail for malformed inputs.
    pub detail: Option<Detail>,
}

impl Decision {
    /// Whether the request must be blocked (denied and enforced).
    pub fn blocks(&self) -> bool {
        !self.allowed && self.enforced
    }

    /// `allow` or `deny`.
    pub fn verdict(&self) -> &'static str {
        if self.allowed {
            "allow"
        } else {
            "deny"
        }
    }
}

#[cfg(test)]
mod tests {
    // Under wasm32 these run through wasm-bindgen-test (scripts/test-wasm.sh): every `#[test]`
    // here becomes a `#[wasm_bindgen_test]` there.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn protocol_names_round_trip_and_match_the_json_spelling() {
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert_eq!(
            "TCP".parse::<Protocol>(),
            Err(UnknownProtocol("TCP".into()))
        );
        assert_eq!(
            "udp".parse::<Protocol>().unwrap_err().to_string(),
            "unknown protocol \"udp\" (expected http or tcp)"
        );
    }
}
