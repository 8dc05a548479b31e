//! Istio's egress listeners: which egress entry applies on which port, with which protocol.
//!
//! THE listener model. The filter's compile step ([`crate::policy`]) and the Sidecar generator
//! (`tenant-egress-config`'s `manifest::sidecar`) both call [`merge`], so what the filter
//! enforces and what the generated Sidecars let Istio route cannot drift apart.
//!
//! Istio's rules, mirrored:
//! - An egress entry with a `port` is a listener for that port; the entry without one is the
//!   catch-all. On each destination port the listener declaring it applies, else the catch-all,
//!   else nothing (`pilot/pkg/model/sidecar.go: GetEgressListenerForRDS`): [`Listeners::on_port`].
//! - A port's protocol decides what Envoy builds there: an HTTP connection manager for the
//!   HTTP-only protocols ([`PortProtocol::is_http_only`]), which a raw TCP connection cannot
//!   use, a TCP proxy otherwise. The catch-all and a port without a protocol serve both.
//! - A workload exception is ADDED to its tenant's egress. Istio has no inheritance (a workload
//!   Sidecar replaces the namespace default), so the generated workload Sidecar carries the
//!   merge, and the filter enforces the same merge. [`merge`] states it once:
//!   - on every port declared by the tenant or the exception: the tenant's listener for that
//!     port (its own, else its catch-all) PLUS the exception's (likewise);
//!   - that port keeps the TENANT's declaration (protocol, name) when the tenant declares it,
//!     else the exception's;
//!   - the catch-all: the tenant's catch-all PLUS the exception's.
//!
//!   So the merge only ever adds hosts. It could still take TCP access away through a port's
//!   protocol; [`exception_conflicts`] lists those cases and validation refuses them, so an
//!   exception never removes access:
//!   - an exception may redeclare a tenant port only with the tenant's protocol, or none;
//!   - an exception may not declare an HTTP-only protocol on a port the tenant does not declare
//!     while the tenant has a catch-all (which serves that port for TCP too).
//!
//!   Validation also refuses `~` exclusions in an exception (an exception only adds; an
//!   exclusion in the tenant's egress applies to the exception's pods as well).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decision::Protocol;
use crate::pattern::HostEntry;
use crate::spec::{EgressSpec, PortSpec};

/// The protocol of an Istio `SidecarPort` (`istio/api:networking/v1alpha3/sidecar.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortProtocol {
    /// HTTP/1.1 (and h2c by upgrade): an HTTP connection manager.
    #[serde(rename = "HTTP")]
    Http,
    /// TLS the application originates: Istio proxies it as opaque TCP, routed by SNI.
    #[serde(rename = "HTTPS")]
    Https,
    /// gRPC: an HTTP/2 connection manager.
    #[serde(rename = "GRPC")]
    Grpc,
    /// HTTP/2: an HTTP connection manager.
    #[serde(rename = "HTTP2")]
    Http2,
    /// MongoDB: a TCP proxy (with Envoy's Mongo filter).
    #[serde(rename = "MONGO")]
    Mongo,
    /// Opaque TCP: a TCP proxy.
    #[serde(rename = "TCP")]
    Tcp,
    /// TLS: a TCP proxy routed by SNI.
    #[serde(rename = "TLS")]
    Tls,
    /// Istio's explicit HTTP proxy listener, which serves services on every port at once.
    /// Parsed so that validation can say why it is refused (the filter scopes egress per
    /// destination port).
    #[serde(rename = "HTTP_PROXY")]
    HttpProxy,
}

/// A port protocol that is not one of Istio's `SidecarPort` protocols.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol \"{0}\" is not one of HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS (uppercase)")]
pub struct UnknownProtocol(pub String);

impl PortProtocol {
    /// Every protocol, in Istio's documentation order.
    pub const ALL: [PortProtocol; 8] = [
        PortProtocol::Http,
        PortProtocol::Https,
        PortProtocol::Grpc,
        PortProtocol::Http2,
        PortProtocol::Mongo,
        PortProtocol::Tcp,
        PortProtocol::Tls,
        PortProtocol::HttpProxy,
    ];

    /// The name Istio (and the policy document) spells it with.
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Http => "HTTP",
            PortProtocol::Https => "HTTPS",
            PortProtocol::Grpc => "GRPC",
            PortProtocol::Http2 => "HTTP2",
            PortProtocol::Mongo => "MONGO",
            PortProtocol::Tcp => "TCP",
            PortProtocol::Tls => "TLS",
            PortProtocol::HttpProxy => "HTTP_PROXY",
        }
    }

    /// Whether Envoy builds an HTTP connection manager for it (and no TCP proxy): HTTP, HTTP2,
    /// GRPC, HTTP_PROXY. A raw TCP or TLS connection cannot use such a port.
    pub fn is_http_only(self) -> bool {
        matches!(
            self,
            PortProtocol::Http | PortProtocol::Http2 | PortProtocol::Grpc | PortProtocol::HttpProxy
        )
    }

    /// Whether a TCP or TLS connection may use a port declared with it (the opposite of
    /// [`Self::is_http_only`]). On these ports the filter runs as a NETWORK filter.
    pub fn opens_tcp(self) -> bool {
        !self.is_http_only()
    }
}

impl FromStr for PortProtocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortProtocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a listener declared with `port` (`None`: the catch-all) lets a TCP or TLS
/// connection through: the catch-all and a port without a protocol do.
pub fn opens_tcp(port: Option<&PortSpec>) -> bool {
    port.and_then(|p| p.protocol)
        .is_none_or(PortProtocol::opens_tcp)
}

/// Values by port number, in port order: a sorted `Vec`. A Sidecar declares a handful of
/// ports, so a binary search over a vector is as fast as a tree, and unlike a
/// `BTreeMap<u16, _>` (one tree implementation per value type) it costs the filter's .wasm
/// almost no code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap<L>(Vec<(u16, L)>);

impl<L> Default for PortMap<L> {
    fn default() -> Self {
        PortMap(Vec::new())
    }
}

impl<L> PortMap<L> {
    /// An empty map.
    pub fn new() -> Self {
        PortMap(Vec::new())
    }

    fn find(&self, port: u16) -> Result<usize, usize> {
        self.0.binary_search_by_key(&port, |(p, _)| *p)
    }

    /// The value of `port`.
    pub fn get(&self, port: &u16) -> Option<&L> {
        let i = self.find(*port).ok()?;
        self.0.get(i).map(|(_, l)| l)
    }

    /// Whether `port` has a value.
    pub fn contains_key(&self, port: &u16) -> bool {
        self.find(*port).is_ok()
    }

    /// Sets the value of `port`, returning the one it replaces.
    pub fn insert(&mut self, port: u16, value: L) -> Option<L> {
        match self.find(port) {
            Ok(i) => self.0.get_mut(i).map(|(_, l)| std::mem::replace(l, value)),
            Err(i) => {
                self.0.insert(i, (port, value));
                None
            }
        }
    }

    /// Whether no port has a value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many ports have a value.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The ports, ascending.
    pub fn keys(&self) -> impl Iterator<Item = &u16> {
        self.0.iter().map(|(p, _)| p)
    }

    /// (port, value) pairs, by ascending port.
    pub fn iter(&self) -> impl Iterator<Item = (&u16, &L)> {
        self.0.iter().map(|(p, l)| (p, l))
    }
}

impl<L> FromIterator<(u16, L)> for PortMap<L> {
    /// Later values of a repeated port replace earlier ones, as in a map.
    fn from_iter<I: IntoIterator<Item = (u16, L)>>(iter: I) -> Self {
        let mut m = PortMap::new();
        for (p, l) in iter {
            m.insert(p, l);
        }
        m
    }
}

impl<'a, L> IntoIterator for &'a PortMap<L> {
    type Item = (&'a u16, &'a L);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (u16, L)>, fn(&'a (u16, L)) -> (&'a u16, &'a L)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(p, l)| (p, l))
    }
}

impl<L> std::ops::Index<&u16> for PortMap<L> {
    type Output = L;
    /// Panics when `port` has no value, like a map's index (tests only).
    #[allow(clippy::panic)]
    fn index(&self, port: &u16) -> &L {
        match self.get(port) {
            Some(l) => l,
            None => panic!("no listener on port {port}"),
        }
    }
}

/// The egress listeners of one Sidecar scope: one per declared port, and the catch-all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners<L> {
    /// Port-scoped listeners, by port number.
    pub ports: PortMap<L>,
    /// The portless catch-all, if any.
    pub catch_all: Option<L>,
}

impl<L> Default for Listeners<L> {
    fn default() -> Self {
        Listeners {
            ports: PortMap::new(),
            catch_all: None,
        }
    }
}

impl<L> Listeners<L> {
    /// The listener that applies to a destination on `port`: the one declaring the port, else
    /// the catch-all (`GetEgressListenerForRDS`). An unknown port gets the catch-all.
    pub fn on_port(&self, port: Option<u16>) -> Option<&L> {
        port.and_then(|p| self.ports.get(&p))
            .or(self.catch_all.as_ref())
    }

    /// Whether there is no listener at all.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.catch_all.is_none()
    }

    /// The port listeners by port, then the catch-all (as `None`).
    pub fn iter(&self) -> impl Iterator<Item = (Option<u16>, &L)> {
        self.ports
            .iter()
            .map(|(p, l)| (Some(*p), l))
            .chain(self.catch_all.iter().map(|l| (None, l)))
    }
}

/// Which egress list an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// The tenant's own `egress`.
    Tenant,
    /// The workload exception's `egress`.
    Exception,
}

/// An egress entry by place: `egress[index]` of the tenant or of the exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryRef {
    /// Which list.
    pub origin: Origin,
    /// The index in that list.
    pub index: usize,
}

/// One listener of a [`merge`]: how its port is declared and which entries' hosts apply on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The declaration of the port (`None` for the catch-all): the tenant's when it declares the
    /// port, else the exception's.
    pub port: Option<PortSpec>,
    /// The entries whose hosts apply, the tenant's first (at most one per list).
    pub entries: Vec<EntryRef>,
}

impl Applied {
    /// The port's protocol, if declared.
    pub fn protocol(&self) -> Option<PortProtocol> {
        self.port.as_ref().and_then(|p| p.protocol)
    }

    /// Whether a TCP or TLS connection may use this listener ([`opens_tcp`]).
    pub fn opens_tcp(&self) -> bool {
        opens_tcp(self.port.as_ref())
    }
}

/// One list's listeners by entry index: the first entry declaring each port and the first
/// portless entry (validation refuses a second of either). Ports outside 1..=65535 (refused by
/// validation) are skipped.
fn by_entry(egress: &[EgressSpec]) -> Listeners<usize> {
    let mut out = Listeners::default();
    for (i, entry) in egress.iter().enumerate() {
        match &entry.port {
            Some(p) => {
                if let Some(n) = u16::try_from(p.number).ok().filter(|n| *n > 0) {
                    if !out.ports.contains_key(&n) {
                        out.ports.insert(n, i);
                    }
                }
            }
            None => {
                out.catch_all.get_or_insert(i);
            }
        }
    }
    out
}

/// The listeners of a tenant's egress PLUS a workload exception's (`exception` empty: the
/// tenant's alone). The rules are in the module documentation.
pub fn merge(tenant: &[EgressSpec], exception: &[EgressSpec]) -> Listeners<Applied> {
    let lists = [
        (Origin::Tenant, tenant, by_entry(tenant)),
        (Origin::Exception, exception, by_entry(exception)),
    ];
    let mut out = Listeners::default();
    for (_, egress, own) in &lists {
        for (&port, &declaring) in &own.ports {
            if out.ports.contains_key(&port) {
                continue; // the tenant's declaration came first
            }
            let entries = lists
                .iter()
                .filter_map(|(origin, _, l)| {
                    l.on_port(Some(port)).map(|&index| EntryRef {
                        origin: *origin,
                        index,
                    })
                })
                .collect();
            let spec = egress.get(declaring).and_then(|e| e.port.clone());
            out.ports.insert(
                port,
                Applied {
                    port: spec,
                    entries,
                },
            );
        }
    }
    let catch_alls: Vec<EntryRef> = lists
        .iter()
        .filter_map(|(origin, _, l)| {
            l.catch_all.map(|index| EntryRef {
                origin: *origin,
                index,
            })
        })
        .collect();
    if !catch_alls.is_empty() {
        out.catch_all = Some(Applied {
            port: None,
            entries: catch_alls,
        });
    }
    out
}

/// A workload exception entry that the merge could only honour by taking access away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The exception redeclares a port of the tenant with another protocol. The merged port
    /// keeps the tenant's; the exception must use it too, or omit it.
    Protocol {
        /// The port.
        port: u16,
        /// The exception's entry (index into its `egress`).
        exception: usize,
        /// The tenant's entry declaring the port.
        tenant: usize,
        /// The tenant's protocol (`None`: declared without one).
        tenant_protocol: Option<PortProtocol>,
        /// The exception's protocol.
        protocol: PortProtocol,
    },
    /// The exception declares an HTTP-only protocol on a port the tenant does not declare, while
    /// the tenant's catch-all serves that port for TCP too: the pods would lose TCP on it.
    ClosesTcp {
        /// The port.
        port: u16,
        /// The exception's entry.
        exception: usize,
        /// The tenant's catch-all entry.
        catch_all: usize,
        /// The exception's (HTTP-only) protocol.
        protocol: PortProtocol,
    },
}

/// Every way `exception`'s ports would take access away from `tenant`'s when merged (see
/// [`Conflict`]); empty when the merge only adds.
pub fn exception_conflicts(tenant: &[EgressSpec], exception: &[EgressSpec]) -> Vec<Conflict> {
    let t = by_entry(tenant);
    let mut out = Vec::new();
    for (&port, &e) in &by_entry(exception).ports {
        let Some(protocol) = exception
            .get(e)
            .and_then(|x| x.port.as_ref())
            .and_then(|p| p.protocol)
        else {
            continue; // no protocol: takes the tenant's, or serves every protocol
        };
        match t.ports.get(&port) {
            Some(&ti) => {
                let tenant_protocol = tenant
                    .get(ti)
                    .and_then(|x| x.port.as_ref())
                    .and_then(|p| p.protocol);
                if tenant_protocol != Some(protocol) {
                    out.push(Conflict::Protocol {
                        port,
                        exception: e,
                        tenant: ti,
                        tenant_protocol,
                        protocol,
                    });
                }
            }
            None => {
                if let (Some(catch_all), true) = (t.catch_all, protocol.is_http_only()) {
                    out.push(Conflict::ClosesTcp {
                        port,
                        exception: e,
                        catch_all,
                        protocol,
                    });
                }
            }
        }
    }
    out
}

/// Whether a listener with these hosts admits `host` in namespace `dest_ns` for a source in
/// `src_ns`: Istio's `selectServices`. An exclusion selecting it drops it; otherwise an import
/// selecting it admits it.
///
/// The reference semantics: the filter's compiled index is the fast form of the same rule, and
/// the tests hold the two (and the generated Sidecars) to each other.
pub fn admits(hosts: &[HostEntry], src_ns: &str, host: &str, dest_ns: &str) -> bool {
    !hosts
        .iter()
        .any(|e| e.exclude && e.selects(src_ns, host, dest_ns))
        && hosts
            .iter()
            .any(|e| !e.exclude && e.selects(src_ns, host, dest_ns))
}

/// One listener as a Sidecar writes it: its port (`None` for the catch-all) and its hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostListener {
    /// The port declaration; `None` for the catch-all.
    pub port: Option<PortSpec>,
    /// The hosts, parsed, without duplicates (first occurrence kept).
    pub hosts: Vec<HostEntry>,
}

/// The egress of one Sidecar, host by host.
pub type SidecarEgress = Listeners<HostListener>;

/// Appends the entries of `from` not yet in `into` (`seen` mirrors `into`: a linear
/// `contains` made a 24,000-host tenant quadratic).
fn push_unique<'a>(
    into: &mut Vec<HostEntry>,
    seen: &mut rustc_hash::FxHashSet<&'a HostEntry>,
    from: &'a [HostEntry],
) {
    for e in from {
        if seen.insert(e) {
            into.push(e.clone());
        }
    }
}

impl Listeners<HostListener> {
    /// A validated egress list, grouped by listener. Unparsable hosts (validation refuses them)
    /// are skipped.
    pub fn from_egress(egress: &[EgressSpec]) -> Self {
        Self::merged(egress, &[])
    }

    /// The Sidecar egress of a tenant PLUS a workload exception: [`merge`], host by host.
    pub fn merged(tenant: &[EgressSpec], exception: &[EgressSpec]) -> Self {
        // Each entry's hosts parsed once, however many listeners it applies to (a catch-all
        // applies on every port its list does not declare).
        let parse = |list: &[EgressSpec]| -> Vec<Vec<HostEntry>> {
            list.iter()
                .map(|e| e.hosts.iter().filter_map(|h| h.parse().ok()).collect())
                .collect()
        };
        let (tenant_hosts, exception_hosts) = (parse(tenant), parse(exception));
        let hosts = |a: &Applied| {
            let mut out = Vec::new();
            // Which hosts are in already; `out` keeps their order.
            let mut seen = rustc_hash::FxHashSet::default();
            for r in &a.entries {
                let list = match r.origin {
                    Origin::Tenant => &tenant_hosts,
                    Origin::Exception => &exception_hosts,
                };
                if let Some(entry) = list.get(r.index) {
                    push_unique(&mut out, &mut seen, entry);
                }
            }
            HostListener {
                port: a.port.clone(),
                hosts: out,
            }
        };
        let plan = merge(tenant, exception);
        Listeners {
            ports: plan.ports.iter().map(|(p, a)| (*p, hosts(a))).collect(),
            catch_all: plan.catch_all.as_ref().map(hosts),
        }
    }

    /// `self` (a tenant's) PLUS `extra` (an exception's), by [`merge`].
    pub fn merge(&self, extra: &Self) -> Self {
        Self::merged(&self.to_egress(), &extra.to_egress())
    }

    /// Back to the policy's egress shape (port listeners by port, then the catch-all).
    pub fn to_egress(&self) -> Vec<EgressSpec> {
        self.iter()
            .map(|(port, l)| EgressSpec {
                port: port.map(|n| {
                    l.port.clone().unwrap_or(PortSpec {
                        number: i64::from(n),
                        protocol: None,
                        name: None,
                    })
                }),
                hosts: l.hosts.iter().map(ToString::to_string).collect(),
                host_index: Vec::new(),
            })
            .collect()
    }

    /// One catch-all importing `*/*`: what Istio applies when a Sidecar has no egress.
    pub fn everything() -> Self {
        Listeners {
            ports: PortMap::new(),
            catch_all: Some(HostListener {
                port: None,
                hosts: "*/*".parse::<HostEntry>().ok().into_iter().collect(),
            }),
        }
    }

    /// What this Sidecar lets through to `host` (namespace `dest_ns`) on `port` for a source in
    /// `src_ns`: the listener for the port ([`Listeners::on_port`]), open to TCP unless its
    /// protocol is HTTP-only, admitting by [`admits`].
    pub fn admits(
        &self,
        port: Option<u16>,
        protocol: Protocol,
        src_ns: &str,
        host: &str,
        dest_ns: &str,
    ) -> bool {
        self.on_port(port).is_some_and(|l| {
            (protocol == Protocol::Http || opens_tcp(l.port.as_ref()))
                && admits(&l.hosts, src_ns, host, dest_ns)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(v: serde_json::Value) -> Vec<EgressSpec> {
        serde_json::from_value(v).unwrap()
    }

    fn show(l: &SidecarEgress) -> Vec<(Option<u16>, Option<PortProtocol>, Vec<String>)> {
        l.iter()
            .map(|(p, l)| {
                (
                    p,
                    l.port.as_ref().and_then(|p| p.protocol),
                    l.hosts.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn protocols_parse_and_classify() {
        for p in PortProtocol::ALL {
            assert_eq!(p.as_str().parse::<PortProtocol>(), Ok(p));
            assert_eq!(p.opens_tcp(), !p.is_http_only());
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
        }
        let http_only: Vec<_> = PortProtocol::ALL
            .into_iter()
            .filter(|p| p.is_http_only())
            .collect();
        use PortProtocol as P;
        assert_eq!(http_only, [P::Http, P::Grpc, P::Http2, P::HttpProxy]);
        let err = "QUIC".parse::<PortProtocol>().unwrap_err();
        assert_eq!(err, UnknownProtocol("QUIC".into()));
        assert!(err.to_string().contains("\"QUIC\" is not one of HTTP"));
        assert!("http".parse::<PortProtocol>().is_err());
        assert!(opens_tcp(None));
    }

    #[test]
    fn on_port_is_the_port_listener_else_the_catch_all() {
        let mut l: Listeners<&str> = Listeners::default();
        assert_eq!(l.on_port(Some(80)), None);
        l.ports.insert(80, "port 80");
        assert_eq!(l.on_port(Some(80)), Some(&"port 80"));
        assert_eq!(l.on_port(Some(81)), None);
        l.catch_all = Some("catch-all");
        assert_eq!(l.on_port(Some(81)), Some(&"catch-all"));
        assert_eq!(l.on_port(None), Some(&"catch-all"));
    }

    #[test]
    fn merge_adds_and_keeps_the_tenants_declaration() {
        let tenant = egress(serde_json::json!([
            {"port": {"number": 26257, "protocol": "TCP", "name": "crdb"}, "hosts": ["./cockroachdb.uat.svc.cluster.local"]},
            {"hosts": ["./*", "istio-system/*"]}
        ]));
        let exception = egress(serde_json::json!([
            {"port": {"number": 26257, "name": "other"}, "hosts": ["prod/cockroachdb.prod.svc.cluster.local"]},
            {"port": {"number": 8080, "protocol": "HTTP"}, "hosts": ["tools/*"]}
        ]));
        let plan = merge(&tenant, &exception);
        let t = |index| EntryRef {
            origin: Origin::Tenant,
            index,
        };
        let e = |index| EntryRef {
            origin: Origin::Exception,
            index,
        };
        assert_eq!(plan.ports[&26257].entries, [t(0), e(0)]);
        assert_eq!(plan.ports[&26257].protocol(), Some(PortProtocol::Tcp));
        assert_eq!(
            plan.ports[&26257]
                .port
                .as_ref()
                .and_then(|p| p.name.as_deref()),
            Some("crdb")
        );
        // An exception-only port: the tenant's catch-all plus the exception's listener, with
        // the exception's protocol.
        assert_eq!(plan.ports[&8080].entries, [t(1), e(1)]);
        assert_eq!(plan.ports[&8080].protocol(), Some(PortProtocol::Http));
        assert_eq!(plan.catch_all.as_ref().unwrap().entries, [t(1)]);
        assert!(plan.catch_all.as_ref().unwrap().opens_tcp());

        let m = SidecarEgress::merged(&tenant, &exception);
        assert_eq!(
            show(&m),
            vec![
                (
                    Some(8080),
                    Some(PortProtocol::Http),
                    vec!["./*".into(), "istio-system/*".into(), "tools/*".into()]
                ),
                (
                    Some(26257),
                    Some(PortProtocol::Tcp),
                    vec![
                        "./cockroachdb.uat.svc.cluster.local".into(),
                        "prod/cockroachdb.prod.svc.cluster.local".into()
                    ]
                ),
                (None, None, vec!["./*".into(), "istio-system/*".into()]),
            ]
        );
        // The same through the host-level form.
        let again =
            SidecarEgress::from_egress(&tenant).merge(&SidecarEgress::from_egress(&exception));
        assert_eq!(again, m);
    }

    #[test]
    fn merge_of_catch_alls_dedups() {
        let a = egress(serde_json::json!([{"hosts": ["./*", "~/evil.example.com"]}]));
        let b = egress(serde_json::json!([{"hosts": ["./*", "x/*"]}]));
        assert_eq!(
            show(&SidecarEgress::merged(&a, &b)),
            vec![(
                None,
                None,
                vec!["./*".into(), "~/evil.example.com".into(), "x/*".into()]
            )]
        );
        assert!(merge(&[], &[]).is_empty());
        // An exception's catch-all also serves the tenant's ports it does not redeclare.
        let t = egress(serde_json::json!([{"port": {"number": 80}, "hosts": ["foo/*"]}]));
        let m = merge(&t, &b);
        assert_eq!(m.ports[&80].entries.len(), 2);
        assert_eq!(m.catch_all.unwrap().entries[0].origin, Origin::Exception);
    }

    #[test]
    fn conflicts_are_exactly_the_ways_to_lose_tcp() {
        let tenant = egress(serde_json::json!([
            {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./*"]},
            {"port": {"number": 8080}, "hosts": ["./*"]},
            {"hosts": ["./*"]}
        ]));
        let exception = egress(serde_json::json!([
            {"port": {"number": 26257, "protocol": "HTTP"}, "hosts": ["logmonkey/*"]},
            {"port": {"number": 8080, "protocol": "TCP"}, "hosts": ["a/*"]},
            {"port": {"number": 9200, "protocol": "GRPC"}, "hosts": ["b/*"]},
            {"port": {"number": 9300, "protocol": "TLS"}, "hosts": ["b/*"]},
            {"port": {"number": 9400}, "hosts": ["b/*"]}
        ]));
        use PortProtocol as P;
        assert_eq!(
            exception_conflicts(&tenant, &exception),
            vec![
                Conflict::Protocol {
                    port: 8080,
                    exception: 1,
                    tenant: 1,
                    tenant_protocol: None,
                    protocol: P::Tcp
                },
                Conflict::ClosesTcp {
                    port: 9200,
                    exception: 2,
                    catch_all: 2,
                    protocol: P::Grpc
                },
                Conflict::Protocol {
                    port: 26257,
                    exception: 0,
                    tenant: 0,
                    tenant_protocol: Some(P::Tcp),
                    protocol: P::Http
                },
            ]
        );
        // The same protocol, or none, is fine; without a tenant catch-all there is nothing
        // to lose on an exception-only port.
        let ok = egress(serde_json::json!([
            {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["logmonkey/*"]},
            {"port": {"number": 8080}, "hosts": ["a/*"]}
        ]));
        assert!(exception_conflicts(&tenant, &ok).is_empty());
        let no_catch_all = egress(
            serde_json::json!([{"port": {"number": 80, "protocol": "HTTP"}, "hosts": ["./*"]}]),
        );
        let http = egress(
            serde_json::json!([{"port": {"number": 9200, "protocol": "HTTP"}, "hosts": ["b/*"]}]),
        );
        assert!(exception_conflicts(&no_catch_all, &http).is_empty());
    }

    #[test]
    fn sidecar_admission_follows_port_protocol_and_exclusions() {
        let l = SidecarEgress::from_egress(&egress(serde_json::json!([
            {"port": {"number": 80, "protocol": "HTTP"}, "hosts": ["foo/*"]},
            {"hosts": ["./*", "~./secret.t.svc.cluster.local"]}
        ])));
        let foo = "a.foo.svc.cluster.local";
        assert!(l.admits(Some(80), Protocol::Http, "t", foo, "foo"));
        assert!(!l.admits(Some(80), Protocol::Tcp, "t", foo, "foo"));
        assert!(!l.admits(Some(81), Protocol::Http, "t", foo, "foo"));
        assert!(l.admits(Some(81), Protocol::Tcp, "t", "db.t.svc.cluster.local", "t"));
        assert!(!l.admits(
            Some(81),
            Protocol::Http,
            "t",
            "secret.t.svc.cluster.local",
            "t"
        ));
        assert!(!l.admits(Some(81), Protocol::Http, "u", "db.t.svc.cluster.local", "t"));
        assert!(SidecarEgress::everything().admits(
            Some(1),
            Protocol::Tcp,
            "a",
            "x.example.com",
            ""
        ));
        assert!(!SidecarEgress::default().admits(
            Some(1),
            Protocol::Http,
            "a",
            "x.example.com",
            ""
        ));
    }
}
