//! The destination (inbound) end: what a destination's sidecar knows about a request or a
//! connection, and the strict parsers for the two inputs only that end has.
//!
//! The caller's own filter runs in a pod its tenant controls, so the tenant can switch it off
//! (`sidecar.istio.io/inject: "false"`, `excludeOutboundPorts`, `hostNetwork`). The same policy is
//! therefore enforced a second time in the destination's sidecar, on what the caller cannot
//! forge there: its mTLS identity. [`crate::Policy::decide_inbound`] asks the SAME question as
//! the caller's end, with the SAME function ([`crate::Policy::decide_for`]): would the caller's
//! own filter let it reach this service on this port?
//!
//! What the destination sees (Envoy 1.40, checked in `tests/tests/both_ends.rs`):
//! - the caller's SPIFFE id, `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, from
//!   the verified client certificate (`connection.uri_san_peer_certificate`);
//! - the TLS SNI Istio's client sidecar sets on mesh mTLS, `outbound_.<port>_.<subset>_.<fqdn>`
//!   (`pilot/pkg/model/service.go: BuildDNSSrvSubsetKey`): the service and its SERVICE port;
//! - for HTTP the `:authority`;
//! - its own namespace (node metadata) and the services its inbound cluster serves
//!   (`istio.services` metadata of `inbound|<target port>||`).
//!
//! An IP-literal `:authority` (a ClusterIP) is checked against the dialled address at the
//! caller's end only; the destination never sees that address, and the SNI names the service.
//!
//! It does not see the caller's pod labels: only the namespace and the service account. So a
//! label-only workload exception is applied at the destination to every service account of the
//! tenant's namespaces (the destination must never deny what the caller's end allowed), and
//! `validate` warns that the two ends then differ.

use crate::decision::Protocol;

/// Which end of a request decides (`explain --at`, the JSON batch format).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    /// The caller's own sidecar (outbound).
    #[default]
    Source,
    /// The called workload's sidecar (inbound), on the caller's mTLS identity.
    Destination,
}

impl End {
    /// Whether this is the caller's end (the default, left out of JSON).
    pub fn is_source(&self) -> bool {
        *self == End::Source
    }
}

/// Why a peer identity was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadIdentity {
    /// Not a `spiffe://` URI.
    #[error("not a SPIFFE id")]
    NotSpiffe,
    /// A SPIFFE id whose path is not Istio's `/ns/<namespace>/sa/<service account>`.
    #[error("not an Istio workload identity (/ns/<namespace>/sa/<service account>)")]
    NotWorkload,
    /// A namespace or service account that Kubernetes would refuse.
    #[error("namespace or service account is not a DNS-1123 name")]
    BadName,
    /// A trust domain the policy does not list in `trustDomains`.
    #[error("trust domain is not trusted")]
    ForeignTrustDomain,
}

/// A parsed Istio workload identity, borrowed from the certificate's URI SAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiffeId<'a> {
    /// The trust domain (lowercase, as SPIFFE requires).
    pub trust_domain: &'a str,
    /// The caller's namespace.
    pub namespace: &'a str,
    /// The caller's service account.
    pub service_account: &'a str,
}

/// Parses `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` strictly: nothing
/// before or after, no empty or extra segments, no percent-encoding, no query or fragment. The
/// SPIFFE spec (SPIFFE-ID §2.1, §2.2) allows only lowercase letters, digits, `.`, `-`, `_` in a
/// trust domain; Kubernetes names are DNS-1123 (lowercase letters, digits, `-`, `.`).
pub fn parse_spiffe(raw: &[u8]) -> Result<SpiffeId<'_>, BadIdentity> {
    let s = std::str::from_utf8(raw).map_err(|_| BadIdentity::NotSpiffe)?;
    let rest = s.strip_prefix("spiffe://").ok_or(BadIdentity::NotSpiffe)?;
    let (td, path) = rest.split_once('/').ok_or(BadIdentity::NotWorkload)?;
    let td_ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !td_ok {
        return Err(BadIdentity::NotSpiffe);
    }
    let mut parts = path.split('/');
    let (Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(BadIdentity::NotWorkload);
    };
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 253
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !n.starts_with(['-', '.'])
            && !n.ends_with(['-', '.'])
    };
    // A namespace is a DNS label (no dots); a service account a DNS subdomain.
    if !name_ok(ns) || ns.len() > 63 || ns.contains('.') || !name_ok(sa) {
        return Err(BadIdentity::BadName);
    }
    Ok(SpiffeId {
        trust_domain: td,
        namespace: ns,
        service_account: sa,
    })
}

/// The parts of Istio's mesh-mTLS SNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IstioSni<'a> {
    /// The service port (not the target port).
    pub port: u16,
    /// The DestinationRule subset (often empty).
    pub subset: &'a str,
    /// The service host (as in the cluster name; the core validates it).
    pub host: &'a str,
}

/// Parses `outbound_.<port>_.<subset>_.<fqdn>`. `None` for anything else (a caller that is not
/// an Istio sidecar, or an SNI of the application's own TLS).
pub fn parse_istio_sni(raw: &[u8]) -> Option<IstioSni<'_>> {
    let s = std::str::from_utf8(raw).ok()?;
    let rest = s.strip_prefix("outbound_.")?;
    let (port, rest) = rest.split_once("_.")?;
    let (subset, host) = rest.split_once("_.")?;
    // Istio writes the port with `%d`: a leading zero is not its SNI (and would name the same
    // cluster under two spellings).
    if port.starts_with('0') {
        return None;
    }
    let port = crate::authority::parse_port(port.as_bytes()).ok()?;
    if host.is_empty() || subset.contains('|') || host.contains('|') {
        return None;
    }
    Some(IstioSni { port, subset, host })
}

/// The SNI Istio's client sidecar sets on mesh mTLS to the outbound cluster `outbound|P|S|H`:
/// `outbound_.P_.S_.H` (`pilot/pkg/model/service.go: BuildDNSSrvSubsetKey`). `None` for any
/// other cluster name. For tests, tools and benchmarks that play a caller.
pub fn istio_sni_for_cluster(cluster: &str) -> Option<String> {
    let rest = cluster.strip_prefix(crate::authority::OUTBOUND_PREFIX)?;
    let mut parts = rest.splitn(3, '|');
    let (port, subset, host) = (parts.next()?, parts.next()?, parts.next()?);
    Some(istio_sni(
        crate::authority::parse_port(port.as_bytes()).ok()?,
        subset,
        host,
    ))
}

/// `outbound_.<port>_.<subset>_.<host>`: the SNI of a service port (subset often empty).
pub fn istio_sni(port: u16, subset: &str, host: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{host}")
}

/// The longest outbound cluster name an SNI can name: `outbound|` + port + `|` + subset + `|`
/// + host (253). An SNI naming a longer one is `malformed-cluster`.
pub(crate) const CLUSTER_BUF: usize = 9 + 5 + 1 + 63 + 1 + 253;

/// Everything a destination's proxy knows about one inbound request or connection, borrowed.
/// Every field is optional: the decision fails closed on what is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inbound<'a> {
    /// This proxy's namespace (`NAMESPACE` node metadata): where the destination is.
    pub namespace: Option<&'a str>,
    /// The verified client certificate's URI SAN (`connection.uri_san_peer_certificate`).
    /// `None` or empty: no client certificate (plaintext).
    pub peer: Option<&'a [u8]>,
    /// The TLS SNI (`connection.requested_server_name`).
    pub sni: Option<&'a [u8]>,
    /// HTTP only: the raw `:authority`.
    pub authority: Option<&'a [u8]>,
    /// HTTP only: the authority came more than once.
    pub authority_repeated: bool,
    /// The service hosts the inbound cluster serves (`istio.services[*].host` of
    /// `inbound|<port>||`). Empty when unknown: then the SNI's service must at least live in
    /// this proxy's namespace.
    pub services: &'a [&'a str],
    /// HTTP request or TCP/TLS connection.
    pub protocol: Protocol,
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn spiffe_ids() {
        assert_eq!(
            parse_spiffe(b"spiffe://cluster.local/ns/uat/sa/default"),
            Ok(SpiffeId {
                trust_domain: "cluster.local",
                namespace: "uat",
                service_account: "default"
            })
        );
        assert_eq!(
            parse_spiffe(b"spiffe://td/ns/a/sa/b.c-d").map(|s| s.service_account),
            Ok("b.c-d")
        );
        for (bad, why) in [
            (
                &b"http://cluster.local/ns/a/sa/b"[..],
                BadIdentity::NotSpiffe,
            ),
            (b"spiffe://Cluster.local/ns/a/sa/b", BadIdentity::NotSpiffe),
            (b"spiffe:///ns/a/sa/b", BadIdentity::NotSpiffe),
            (b"spiffe://cluster.local", BadIdentity::NotWorkload),
            (
                b"spiffe://cluster.local/ns/a/sa/b/",
                BadIdentity::NotWorkload,
            ),
            (
                b"spiffe://cluster.local/ns/a/sa/b/x",
                BadIdentity::NotWorkload,
            ),
            (
                b"spiffe://cluster.local/sa/b/ns/a",
                BadIdentity::NotWorkload,
            ),
            (b"spiffe://cluster.local/ns//sa/b", BadIdentity::BadName),
            (b"spiffe://cluster.local/ns/A/sa/b", BadIdentity::BadName),
            (b"spiffe://cluster.local/ns/a.b/sa/b", BadIdentity::BadName),
            (b"spiffe://cluster.local/ns/a/sa/b%2f", BadIdentity::BadName),
            (b"spiffe://cluster.local/ns/a/sa/b?x", BadIdentity::BadName),
            (b"spiffe://cluster.local/ns/a/sa/-b", BadIdentity::BadName),
            (
                b"spiffe://cluster.local/ns/a/sa/\xff",
                BadIdentity::NotSpiffe,
            ),
        ] {
            assert_eq!(
                parse_spiffe(bad),
                Err(why),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn istio_snis() {
        assert_eq!(
            parse_istio_sni(b"outbound_.26257_._.cockroachdb.prod.svc.cluster.local"),
            Some(IstioSni {
                port: 26257,
                subset: "",
                host: "cockroachdb.prod.svc.cluster.local"
            })
        );
        assert_eq!(
            parse_istio_sni(b"outbound_.80_.v1_.api.prod.svc.cluster.local").map(|s| s.subset),
            Some("v1")
        );
        for bad in [
            &b"cockroachdb.prod.svc.cluster.local"[..],
            b"inbound_.80_._.a.b",
            b"outbound_.0_._.a.b",
            b"outbound_.0240_._.a.b",
            b"outbound_.x_._.a.b",
            b"outbound_.80_._.",
            b"outbound_.80_.a.b",
            b"outbound_.80_._.a|b",
        ] {
            assert_eq!(
                parse_istio_sni(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let cluster = "outbound|80|v1|api.prod.svc.cluster.local";
        let text = istio_sni_for_cluster(cluster).unwrap();
        let sni = parse_istio_sni(text.as_bytes()).unwrap();
        assert_eq!(
            (sni.port, sni.subset, sni.host),
            (80, "v1", "api.prod.svc.cluster.local")
        );
        assert_eq!(istio_sni_for_cluster("PassthroughCluster"), None);
    }
}
