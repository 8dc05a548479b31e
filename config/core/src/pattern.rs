//! Istio's Sidecar host grammar: `[~]namespace/dnsName`.
//!
//! Mirrors `IstioEgressListener.hosts` (`istio/api:networking/v1alpha3/sidecar.proto`) and its
//! validation (`istio/istio:pkg/config/validation/agent/validation.go`):
//! - namespace `*` is any namespace, `.` the source workload's own namespace, anything else a
//!   namespace name (a DNS-1123 label);
//! - a `~` prefix (Istio >= 1.31) turns the entry into an exclusion that wins over any import;
//!   a bare `~` means "every namespace", so `~/api.example.com` excludes that host everywhere;
//! - dnsName is an FQDN, `*` (every service of the namespace) or a left-most wildcard
//!   `*.example.com` that matches by suffix: `*.foo.com` covers `a.b.foo.com` but not
//!   `foo.com` (`pkg/config/host/name.go: SubsetOf`).
//!
//! Unlike Istio we fold names to lowercase (RFC 4343); Istio compares case-sensitively.

use std::fmt;
use std::str::FromStr;

use crate::name::{self, NameError};

/// Which namespace(s) an entry selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NsSelector {
    /// `*`: any namespace (and hosts whose namespace is unknown, such as external names).
    Any,
    /// `.`: the source workload's own namespace.
    Own,
    /// A namespace by name.
    Named(String),
}

/// Which host(s) an entry selects within its namespace(s).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `*`: every host of the namespace.
    All,
    /// An exact, lowercase FQDN without trailing dot.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com` a host must end with.
    Suffix(String),
}

/// One parsed `hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostEntry {
    /// `~` prefix: this entry excludes instead of importing.
    pub exclude: bool,
    /// The namespace part.
    pub namespace: NsSelector,
    /// The dnsName part.
    pub host: HostPattern,
}

/// Why a `hosts` entry is invalid. Each message says what would be valid instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostEntryError {
    /// Not exactly one `/`.
    #[error("is not of the form namespace/dnsName (for example \"./*\", \"istio-system/*\" or \"*/api.example.com\")")]
    NotNamespaceSlashHost,
    /// Nothing before the `/` (and no `~`).
    #[error("has an empty namespace; use \"*\" for any namespace or \".\" for the workload's own")]
    EmptyNamespace,
    /// Nothing after the `/`.
    #[error("has an empty dnsName; use \"*\" for every service of the namespace")]
    EmptyHost,
    /// The namespace is not `*`, `.` or a DNS-1123 label.
    #[error(
        "has namespace \"{0}\", which is not \"*\", \".\" or a lowercase DNS-1123 label ({1})"
    )]
    BadNamespace(String, NameError),
    /// A single-label name such as `foo` (Istio refuses short names).
    #[error("has short name \"{0}\"; hosts must be fully qualified (\"{0}.<namespace>.svc.cluster.local\")")]
    ShortName(String),
    /// An IP address instead of a name.
    #[error("names IP address \"{0}\"; Sidecar hosts are DNS names (IP destinations pass only under ALLOW_ANY)")]
    IpAddress(String),
    /// Any other problem with the dnsName.
    #[error("has dnsName \"{0}\", which is invalid: {1}")]
    BadHost(String, NameError),
}

impl FromStr for HostEntry {
    type Err = HostEntryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Exactly one `/`. Searched as a byte (`/` is ASCII, so it never splits a character):
        // cheaper than a `char` pattern, and this runs for every host of a policy.
        let slash = s.bytes().position(|b| b == b'/');
        let (ns, host) = match slash.and_then(|i| Some((s.get(..i)?, s.get(i + 1..)?))) {
            Some((ns, host)) if !host.as_bytes().contains(&b'/') => (ns, host),
            _ => return Err(HostEntryError::NotNamespaceSlashHost),
        };
        let (exclude, ns) = match ns.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, ns),
        };
        let namespace = match ns {
            // `~/host`: Istio treats the empty namespace after `~` as the wildcard namespace.
            "" if exclude => NsSelector::Any,
            "" => return Err(HostEntryError::EmptyNamespace),
            "*" => NsSelector::Any,
            "." => NsSelector::Own,
            other => {
                name::check_namespace(other)
                    .map_err(|e| HostEntryError::BadNamespace(other.to_owned(), e))?;
                NsSelector::Named(other.to_owned())
            }
        };
        let host = parse_host_pattern(host)?;
        Ok(HostEntry {
            exclude,
            namespace,
            host,
        })
    }
}

fn parse_host_pattern(host: &str) -> Result<HostPattern, HostEntryError> {
    if host.is_empty() {
        return Err(HostEntryError::EmptyHost);
    }
    if host == "*" {
        return Ok(HostPattern::All);
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if !trimmed.as_bytes().contains(&b'.') && !trimmed.as_bytes().contains(&b'*') {
        return Err(HostEntryError::ShortName(trimmed.to_owned()));
    }
    let name = match name::check_dns_name(host, true) {
        // A good DNS name is never an IP address: an IPv6 one has a ':', and an IPv4 one a
        // last label of digits, which `check_dns_name` refuses. So the IP parse below is
        // needed only to name the error of a name it refuses.
        Ok(name) => name,
        Err(e) => {
            if trimmed.parse::<std::net::IpAddr>().is_ok() {
                return Err(HostEntryError::IpAddress(trimmed.to_owned()));
            }
            return Err(HostEntryError::BadHost(host.to_owned(), e));
        }
    };
    Ok(lowercase_pattern(name))
}

/// The pattern of a name `check_dns_name` accepted: `*.rest` is the suffix `.rest`, anything
/// else exact; lowercase (one allocation).
fn lowercase_pattern(name: &str) -> HostPattern {
    match name.strip_prefix('*') {
        Some(suffix) => HostPattern::Suffix(suffix.to_ascii_lowercase()),
        None => HostPattern::Exact(name.to_ascii_lowercase()),
    }
}

/// One `serves` entry of a tenant (a host its pods serve through a ServiceEntry): an exact name,
/// a `*.` wildcard, or `*` (every host: its destination shard then carries every rule naming a
/// host in its namespace or `*`). The same dnsName grammar as a `hosts` entry's.
pub fn parse_served(host: &str) -> Result<HostPattern, NameError> {
    if host == "*" {
        return Ok(HostPattern::All);
    }
    // An IPv4 address fails on its numeric last label, an IPv6 one on its ':'.
    Ok(lowercase_pattern(name::check_dns_name(host, true)?))
}

impl HostPattern {
    /// Whether some host is selected by both patterns: the destination end's shard keeps a
    /// rule exactly when its dnsName overlaps a host the namespace serves.
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::All, _) | (_, HostPattern::All) => true,
            (HostPattern::Exact(h), p) | (p, HostPattern::Exact(h)) => p.covers(h),
            // Two label-aligned suffixes (`.a.com`, `.b.a.com`) share hosts exactly when one
            // ends with the other.
            (HostPattern::Suffix(a), HostPattern::Suffix(b)) => {
                a.ends_with(b.as_str()) || b.ends_with(a.as_str())
            }
        }
    }

    /// Whether `host` (lowercase, no trailing dot) is selected by this pattern.
    /// Used by validation and the generators; request time uses the compiled index.
    pub fn covers(&self, host: &str) -> bool {
        match self {
            HostPattern::All => true,
            HostPattern::Exact(h) => h == host,
            // `*.foo.com` covers `a.foo.com` and `a.b.foo.com`, never `foo.com`, and a wildcard
            // host (`*.b.foo.com`) only when it is at least as specific.
            HostPattern::Suffix(sfx) => host.len() > sfx.len() && host.ends_with(sfx.as_str()),
        }
    }

    /// Whether every host this pattern selects is also selected by `wider`.
    pub fn is_subset_of(&self, wider: &HostPattern) -> bool {
        match (self, wider) {
            (_, HostPattern::All) => true,
            (HostPattern::All, _) => false,
            (HostPattern::Exact(h), w) => w.covers(h),
            (HostPattern::Suffix(_), HostPattern::Exact(_)) => false,
            (HostPattern::Suffix(a), HostPattern::Suffix(b)) => {
                a == b || (a.len() > b.len() && a.ends_with(b.as_str()))
            }
        }
    }
}

impl NsSelector {
    /// Whether every namespace this selector names is also named by `self`, for a source in
    /// `own` (`None`: the source namespace is not known, so `.` equals only `.`).
    ///
    /// `*` names every namespace; `.` and `ns` name the same one exactly when the source is in
    /// `ns` (a tenant whose only namespace is `bar` has `./*` equal to `bar/*`).
    pub fn contains(&self, other: &NsSelector, own: Option<&str>) -> bool {
        match (self, other) {
            (NsSelector::Any, _) => true,
            (_, NsSelector::Any) => false,
            (NsSelector::Own, NsSelector::Own) => true,
            (NsSelector::Named(a), NsSelector::Named(b)) => a == b,
            (NsSelector::Own, NsSelector::Named(n)) | (NsSelector::Named(n), NsSelector::Own) => {
                own == Some(n.as_str())
            }
        }
    }

    /// Whether a destination in `dest_ns` falls in this selector's bucket for a source in
    /// `src_ns` (an empty `dest_ns` is an unknown namespace: only `*` selects it).
    pub fn selects(&self, src_ns: &str, dest_ns: &str) -> bool {
        match self {
            NsSelector::Any => true,
            NsSelector::Own => !dest_ns.is_empty() && dest_ns == src_ns,
            NsSelector::Named(n) => n == dest_ns,
        }
    }
}

/// How specifically an entry names a host. When several entries select one destination, the
/// most specific names it (in `explain`, logs and the denial body); among equals, the first in
/// document order (tenant before exception). Which entry that is never changes WHETHER a
/// destination is allowed: any import admits, any exclusion drops.
///
/// The order is lexicographic over the fields, least specific first (`derive(Ord)` compares
/// fields in declaration order): the dnsName first (exact, then the longest `*.suffix`, then
/// `*`), then the namespace bucket (the destination's own namespace, named or `.`, before `*`).
/// This is the order in which the compiled index probes (`policy::index`), and the order in
/// which Istio's `hostClassification.Matches` prefers an exact name to a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Specificity {
    /// The dnsName part: compared first.
    pub host: HostRank,
    /// The namespace part: breaks ties between equal dnsNames.
    pub namespace: NsRank,
}

/// The dnsName part of a [`Specificity`], least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostRank {
    /// `*`: every host of the namespace.
    All,
    /// `*.suffix`, ranked by the length of the suffix: `*.b.foo.com` beats `*.foo.com`.
    Suffix(usize),
    /// An exact name.
    Exact,
}

/// The namespace part of a [`Specificity`], least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NsRank {
    /// `*`.
    Any,
    /// A namespace by name, or `.`: the destination's own bucket.
    Namespace,
}

impl HostEntry {
    /// This entry's [`Specificity`].
    pub fn specificity(&self) -> Specificity {
        Specificity {
            host: match &self.host {
                HostPattern::All => HostRank::All,
                HostPattern::Suffix(s) => HostRank::Suffix(s.len()),
                HostPattern::Exact(_) => HostRank::Exact,
            },
            namespace: match self.namespace {
                NsSelector::Any => NsRank::Any,
                NsSelector::Own | NsSelector::Named(_) => NsRank::Namespace,
            },
        }
    }

    /// Whether this entry selects `host` (lowercase, no trailing dot) in namespace `dest_ns`
    /// for a source in `src_ns`: Istio's `selectServices` for one entry. The direction (`~`) is
    /// the caller's to apply ([`crate::listeners::admits`]).
    pub fn selects(&self, src_ns: &str, host: &str, dest_ns: &str) -> bool {
        self.namespace.selects(src_ns, dest_ns) && self.host.covers(host)
    }

    /// Whether `self` selects everything `e` selects, in the same direction (import or
    /// exclusion), for a source in `own` (`None`: any source namespace).
    ///
    /// THE "is covered by" relation: validation's shadowed-entry warnings and `import`'s
    /// comparisons both use it.
    pub fn covers(&self, e: &HostEntry, own: Option<&str>) -> bool {
        self.exclude == e.exclude
            && self.namespace.contains(&e.namespace, own)
            && e.host.is_subset_of(&self.host)
    }

    /// Every entry that [`Self::covers`] this one for a source in `own`, itself included, so
    /// that a long list can be checked with hash lookups instead of pairwise.
    pub fn coverers(&self, own: Option<&str>) -> Vec<HostEntry> {
        let mut namespaces = vec![NsSelector::Any];
        if self.namespace != NsSelector::Any {
            namespaces.push(self.namespace.clone());
        }
        match (&self.namespace, own) {
            (NsSelector::Own, Some(n)) => namespaces.push(NsSelector::Named(n.to_owned())),
            (NsSelector::Named(n), Some(o)) if n == o => namespaces.push(NsSelector::Own),
            _ => {}
        }
        let mut hosts = vec![HostPattern::All];
        let name = match &self.host {
            HostPattern::All => None,
            HostPattern::Exact(n) => {
                hosts.push(self.host.clone());
                Some(n.as_str())
            }
            HostPattern::Suffix(s) => Some(s.as_str()),
        };
        // A wildcard covers at each label boundary: `*.foo.com` and `*.com` cover `a.foo.com`
        // and `*.a.foo.com` (whose own suffix `.a.foo.com` starts at index 0).
        if let Some(name) = name {
            for (i, _) in name.match_indices('.') {
                if let Some(suffix) = name.get(i..) {
                    hosts.push(HostPattern::Suffix(suffix.to_owned()));
                }
            }
        }
        let mut out = Vec::with_capacity(namespaces.len() * hosts.len());
        for ns in &namespaces {
            for host in &hosts {
                out.push(HostEntry {
                    exclude: self.exclude,
                    namespace: ns.clone(),
                    host: host.clone(),
                });
            }
        }
        out
    }
}

impl fmt::Display for NsSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsSelector::Any => f.write_str("*"),
            NsSelector::Own => f.write_str("."),
            NsSelector::Named(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::All => f.write_str("*"),
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

impl fmt::Display for HostEntry {
    /// The canonical form: parsing it again gives the same entry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.exclude, &self.namespace) {
            // Istio documents the wildcard exclusion as `~/host`.
            (true, NsSelector::Any) => write!(f, "~/{}", self.host),
            (true, ns) => write!(f, "~{ns}/{}", self.host),
            (false, ns) => write!(f, "{ns}/{}", self.host),
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

    fn p(s: &str) -> HostEntry {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_istio_forms() {
        assert_eq!(
            p("./*"),
            HostEntry {
                exclude: false,
                namespace: NsSelector::Own,
                host: HostPattern::All
            }
        );
        assert_eq!(
            p("istio-system/*").namespace,
            NsSelector::Named("istio-system".into())
        );
        assert_eq!(
            p("*/Foo.Example.COM.").host,
            HostPattern::Exact("foo.example.com".into())
        );
        assert_eq!(
            p("*/*.example.com").host,
            HostPattern::Suffix(".example.com".into())
        );
        let excl = p("~/api.example.com");
        assert!(excl.exclude);
        assert_eq!(excl.namespace, NsSelector::Any);
        let excl = p("~prod-us2/*");
        assert!(excl.exclude);
        assert_eq!(excl.namespace, NsSelector::Named("prod-us2".into()));
    }

    #[test]
    fn rejects_what_istio_rejects() {
        use HostEntryError as E;
        let err = |s: &str| s.parse::<HostEntry>().unwrap_err();
        assert_eq!(err("foo"), E::NotNamespaceSlashHost);
        assert_eq!(err("a/b/c.com"), E::NotNamespaceSlashHost);
        assert_eq!(err("/a.com"), E::EmptyNamespace);
        assert_eq!(err("ns/"), E::EmptyHost);
        assert!(matches!(err("Prod/*"), E::BadNamespace(..)));
        assert!(matches!(err("ns/foo"), E::ShortName(_)));
        assert!(matches!(err("ns/10.0.0.1"), E::IpAddress(_)));
        assert!(matches!(err("ns/1.2.3.4"), E::IpAddress(_)));
        assert!(matches!(err("ns/*foo.com"), E::BadHost(..)));
        assert!(matches!(err("ns/foo.*.com"), E::BadHost(..)));
        assert!(matches!(
            err("ns/foo.123"),
            E::BadHost(_, NameError::NumericTld)
        ));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "./*",
            "*/*",
            "~/*",
            "~ns/*",
            "~/a.example.com",
            "ns/*.foo.com",
            "*/cockroachdb.shared.svc.cluster.local",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn wildcard_is_a_suffix_not_the_apex() {
        let w = p("*/*.foo.com").host;
        assert!(w.covers("a.foo.com"));
        assert!(w.covers("a.b.foo.com"));
        assert!(!w.covers("foo.com"));
        assert!(!w.covers("afoo.com"));
        assert!(p("*/a.foo.com").host.is_subset_of(&w));
        assert!(p("*/*.b.foo.com").host.is_subset_of(&w));
        assert!(!w.is_subset_of(&p("*/*.b.foo.com").host));
        assert!(w.is_subset_of(&HostPattern::All));
    }

    #[test]
    fn specificity_is_exact_then_longest_suffix_then_namespace_then_bucket() {
        let most_specific_last = [
            "*/*",
            "ns/*",
            "*/*.com",
            "./*.com",
            "*/*.foo.com",
            "ns/*.foo.com",
            "*/*.a.foo.com",
            "*/a.foo.com",
            "ns/a.foo.com",
        ];
        let ranks: Vec<Specificity> = most_specific_last
            .iter()
            .map(|s| p(s).specificity())
            .collect();
        for pair in ranks.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        let mut shuffled = ranks.clone();
        shuffled.reverse();
        shuffled.swap(1, 5);
        shuffled.sort();
        assert_eq!(shuffled, ranks);
        // The destination's own bucket, named or `.`, is one rank: document order decides.
        assert_eq!(p("./a.com").specificity(), p("ns/a.com").specificity());
        // A longer exact name is not more specific than a shorter one: both are exact.
        assert_eq!(p("*/a.com").specificity(), p("*/b.a.com").specificity());
        // Exclusions rank the same way.
        assert_eq!(p("~/a.com").specificity(), p("*/a.com").specificity());
    }

    #[test]
    fn covers_resolves_the_own_namespace_when_known() {
        let (own, named, any) = (p("./*"), p("bar/*"), p("*/*"));
        assert!(own.covers(&named, Some("bar")) && named.covers(&own, Some("bar")));
        assert!(!own.covers(&named, Some("baz")) && !own.covers(&named, None));
        assert!(any.covers(&own, None) && !own.covers(&any, Some("bar")));
        assert!(own.covers(&p("bar/a.com"), Some("bar")));
        assert!(!p("~bar/*").covers(&p("bar/a.com"), Some("bar")));
        assert!(p("*/*.foo.com").covers(&p("ns/*.a.foo.com"), None));
        assert!(!p("*/*.a.foo.com").covers(&p("ns/*.foo.com"), None));
    }
}
