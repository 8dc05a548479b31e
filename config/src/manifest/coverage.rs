//! Which enforcement point decides a request once the generated manifests are applied, and
//! which TCP traffic no filter sees.
//!
//! The core decides what the policy says; whether anything acts on that verdict depends on
//! what `generate` deploys. The HTTP plugin sits on every outbound HTTP listener; the NETWORK
//! plugin only on the ports the policy declares with a TCP-capable protocol
//! ([`super::wasmplugin::tcp_ports`], the one list `generate` uses); Istio's passthrough TCP
//! chain (the `virtualOutbound` listener's, for addresses no listener claims) carries no Wasm
//! filter. What no plugin sees is scoped by the Sidecars alone, or by nothing under
//! `ALLOW_ANY`. `explain` prints [`enforcement_point`]; `validate` and `generate` print
//! [`tcp_gaps`].

use serde::Serialize;

use tenant_egress_core::authority::{parse_cluster, parse_socket_addr, Cluster};
use tenant_egress_core::explain::{End, RequestSpec};
use tenant_egress_core::spec::{OutboundTrafficPolicy, PolicySpec};
use tenant_egress_core::Protocol;

use super::inbound::{INBOUND_NETWORK_PLUGIN_NAME, INBOUND_PLUGIN_NAME};
use super::wasmplugin::tcp_ports;
use super::{NETWORK_PLUGIN_NAME, PLUGIN_NAME};

/// What acts on a decision in a cluster running `generate`'s default output (the mesh-wide
/// WasmPlugins and the Sidecars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Point {
    /// The filter as the HTTP plugin (`tenant-egress`).
    HttpPlugin,
    /// The filter as the NETWORK plugin (`tenant-egress-tcp`).
    NetworkPlugin,
    /// No filter: only what the source's Sidecar imports (and its outboundTrafficPolicy).
    SidecarOnly,
    /// Nothing at all: passthrough TCP of an `ALLOW_ANY` tenant goes out unchecked.
    Nothing,
    /// The filter at the destination end (`tenant-egress-inbound`, `-inbound-tcp`).
    DestinationPlugin,
}

/// [`Point`] with a sentence saying why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    /// The enforcement point.
    pub point: Point,
    /// Why this one, and what it means for the verdict.
    pub detail: String,
}

/// The destination port of a request, from its cluster or its original destination.
fn port_of(req: &RequestSpec) -> Option<u16> {
    match req.cluster.as_deref().map(parse_cluster) {
        Some(Ok(Cluster::Outbound { port, .. })) => Some(port),
        _ => req
            .destination_address
            .as_deref()
            .and_then(parse_socket_addr)
            .map(|a| a.port()),
    }
}

fn is_passthrough(req: &RequestSpec) -> bool {
    match req.cluster.as_deref() {
        Some(c) => matches!(parse_cluster(c), Ok(Cluster::Passthrough)),
        None => req.destination_address.is_some(),
    }
}

/// Which enforcement point decides `req` under `generate`'s default output for `spec`.
pub fn enforcement_point(spec: &PolicySpec, req: &RequestSpec) -> Enforcement {
    let ports = tcp_ports(spec);
    if req.at == End::Destination {
        let (name, what) = match req.protocol {
            Protocol::Http => (INBOUND_PLUGIN_NAME, "request"),
            Protocol::Tcp => (
                INBOUND_NETWORK_PLUGIN_NAME,
                "connection (on the policy's TCP ports)",
            ),
        };
        return Enforcement {
            point: Point::DestinationPlugin,
            detail: format!(
                "the destination end's plugin ({name}) decides this {what} on the caller's mTLS identity"
            ),
        };
    }
    let sidecar_only = |detail: String| Enforcement {
        point: Point::SidecarOnly,
        detail,
    };
    match req.protocol {
        Protocol::Http if is_passthrough(req) => Enforcement {
            point: Point::HttpPlugin,
            detail: format!(
                "the filter's HTTP plugin ({PLUGIN_NAME}) when Envoy has an HTTP listener for the \
                 port (some service in the registry uses it); otherwise the connection takes Istio's \
                 passthrough TCP chain, which carries no filter: only the Sidecar's \
                 outboundTrafficPolicy applies there"
            ),
        },
        Protocol::Http => Enforcement {
            point: Point::HttpPlugin,
            detail: format!("the filter's HTTP plugin ({PLUGIN_NAME}) decides this request"),
        },
        Protocol::Tcp if is_passthrough(req) => {
            let allow_any = req.source.namespace.as_deref().is_some_and(|ns| {
                spec.tenants.iter().any(|t| {
                    t.namespaces.iter().any(|n| n == ns)
                        && t.outbound_traffic_policy == OutboundTrafficPolicy::AllowAny
                })
            });
            if allow_any {
                Enforcement {
                    point: Point::Nothing,
                    detail: "nothing enforces this verdict: a TCP connection to an address outside \
                             the registry takes Istio's passthrough chain, which carries no filter, \
                             and the tenant is ALLOW_ANY, so Istio lets it out"
                        .to_owned(),
                }
            } else {
                sidecar_only(
                    "the filter does not see it: a TCP connection to an address outside the \
                     registry takes Istio's passthrough chain, which carries no filter; the \
                     Sidecar's outboundTrafficPolicy decides (REGISTRY_ONLY drops it)"
                        .to_owned(),
                )
            }
        }
        Protocol::Tcp => match port_of(req) {
            Some(p) if ports.contains(&p) => Enforcement {
                point: Point::NetworkPlugin,
                detail: format!(
                    "the filter's NETWORK plugin ({NETWORK_PLUGIN_NAME}) decides connections on port {p}"
                ),
            },
            Some(p) => sidecar_only(format!(
                "nothing enforces this verdict on port {p}: {}; only the source's Sidecar scoping \
                 applies. Declare port {p} with protocol TCP in the tenant's egress to have the \
                 filter decide it",
                network_ports(&ports)
            )),
            None => sidecar_only(format!(
                "unknown port (pass --cluster or --destination-address): {}; on other ports only \
                 the Sidecar scoping applies",
                network_ports(&ports)
            )),
        },
    }
}

/// Where `generate` attaches the NETWORK plugin, as a clause.
fn network_ports(ports: &[u16]) -> String {
    if ports.is_empty() {
        return "the policy declares no port with protocol TCP/TLS/HTTPS/MONGO, so generate emits \
                no NETWORK plugin"
            .to_owned();
    }
    let v: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "generate attaches the NETWORK plugin only to the ports the policy declares with protocol \
         TCP/TLS/HTTPS/MONGO ({})",
        v.join(", ")
    )
}

/// One warning per tenant whose TCP traffic the filter does not see: TCP on ports its egress
/// serves to TCP but the NETWORK plugin is not attached to, and passthrough TCP under
/// `ALLOW_ANY`.
pub fn tcp_gaps(spec: &PolicySpec) -> Vec<String> {
    let ports = tcp_ports(spec);
    let mut out = Vec::new();
    for (t, tenant) in spec.tenants.iter().enumerate() {
        let entries = tenant
            .egress
            .iter()
            .chain(tenant.workloads.iter().flat_map(|w| w.egress.iter()));
        let mut catch_all = false;
        let mut open: Vec<u16> = Vec::new();
        for e in entries {
            if e.hosts.iter().all(|h| h.starts_with('~')) {
                continue;
            }
            match &e.port {
                None => catch_all = true,
                Some(p) if tenant_egress_core::listeners::opens_tcp(Some(p)) => {
                    if let Ok(n) = u16::try_from(p.number) {
                        if !ports.contains(&n) && !open.contains(&n) {
                            open.push(n);
                        }
                    }
                }
                Some(_) => {}
            }
        }
        open.sort_unstable();
        let mut parts = Vec::new();
        if !open.is_empty() {
            let v: Vec<String> = open.iter().map(u16::to_string).collect();
            parts.push(format!(
                "port {} (declared without a protocol)",
                v.join(", ")
            ));
        }
        if catch_all {
            parts.push(if ports.is_empty() {
                "every port (its portless entry; the policy declares no TCP port, so generate emits \
                 no NETWORK plugin)"
                    .to_owned()
            } else {
                format!(
                    "every port but {} (its portless entry)",
                    ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        }
        let allow_any = tenant.outbound_traffic_policy == OutboundTrafficPolicy::AllowAny;
        if parts.is_empty() && !allow_any {
            continue;
        }
        let mut msg = format!("tenants[{t}] ({}): ", tenant.name);
        if !parts.is_empty() {
            msg.push_str(&format!(
                "raw TCP on {} is scoped by its Istio Sidecar only, the filter does not decide it \
                 (declare the port with protocol TCP or TLS to have it decided)",
                parts.join(" and ")
            ));
        }
        if allow_any {
            if !parts.is_empty() {
                msg.push_str("; ");
            }
            msg.push_str(
                "it is ALLOW_ANY: TCP to addresses outside its Sidecar goes through Istio's \
                 passthrough chain, which no filter sees",
            );
        }
        out.push(msg);
    }
    out
}
