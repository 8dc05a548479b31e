//! The destination end (`generate --ends both|destination`): the same module on each tenant
//! namespace's INBOUND traffic (WasmPlugin `match: mode: SERVER`), deciding on the caller's mTLS
//! identity, and a STRICT `PeerAuthentication` per tenant namespace so that Istio refuses
//! plaintext before the filter runs (the filter denies a caller without a certificate anyway).
//!
//! Per tenant namespace, whatever `--wasm-scope`: a destination outside every tenant (istio-system,
//! monitoring) is not the policy's to guard, and a mesh-wide SERVER plugin would refuse the
//! callers such namespaces serve. A staged rollout (`--wasm-scope namespace --wasm-namespaces`)
//! places the destination end in the chosen namespaces only, as the caller's end.
//!
//! The PeerAuthentication goes only to the namespaces of tenants in `mode: enforce`: STRICT
//! refuses plaintext callers at once, which audit mode must not do (audit changes nothing); the
//! audit-mode filter counts them instead (`tenant_egress.inbound.audit_denied.no_peer_identity`),
//! so who would be refused is known before the tenant is enforced. Never PERMISSIVE: a
//! namespace-wide PERMISSIVE would override a mesh-wide STRICT the operator already has.

use serde::Serialize;

use super::shard::{check_last, inbound_placements, Shard};
use super::wasmplugin::{plugin, tcp_ports};
use super::{tenant_mode, to_value, Doc, DocKind, GenerateError, Generated, Metadata, Options};
use tenant_egress_core::spec::{Mode, PolicySpec};

/// The mode of the tenant owning `ns` (a `--wasm-namespaces` entry, checked to be a tenant's).
fn namespace_mode(spec: &PolicySpec, ns: &str) -> Mode {
    spec.tenants
        .iter()
        .position(|t| t.namespaces.iter().any(|n| n == ns))
        .map_or(spec.mode, |t| tenant_mode(spec, t))
}

/// Name (and root id) of the destination end's HTTP plugin. Not [`super::PLUGIN_NAME`]: Envoy
/// gives filters with the same VM, root id and configuration one root context, and the filter
/// learns which end it serves once per root context (`filter/src/root.rs`).
pub const INBOUND_PLUGIN_NAME: &str = "tenant-egress-inbound";
/// Name (and root id) of the destination end's NETWORK plugin.
pub const INBOUND_NETWORK_PLUGIN_NAME: &str = "tenant-egress-inbound-tcp";
/// Name of the per-namespace PeerAuthentication.
pub const PEER_AUTHENTICATION_NAME: &str = "tenant-egress-strict";
/// The PeerAuthentication `apiVersion`.
pub const PEER_AUTHENTICATION_API_VERSION: &str = "security.istio.io/v1";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeerAuthentication {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: PeerAuthenticationSpec,
}

#[derive(Serialize)]
struct PeerAuthenticationSpec {
    mtls: Mtls,
}

#[derive(Serialize)]
struct Mtls {
    mode: &'static str,
}

/// Appends the destination end's WasmPlugins (and PeerAuthentications) to `out`.
pub(crate) fn generate(
    spec: &PolicySpec,
    opts: &Options,
    out: &mut Generated,
) -> Result<(), GenerateError> {
    let placements = inbound_placements(spec, opts)?;
    let ports = tcp_ports(spec);
    let mut strict_first = true;
    for (i, at) in placements.iter().enumerate() {
        let ns = at.namespace.as_str();
        let mode = namespace_mode(spec, ns);
        let doc = plugin(INBOUND_PLUGIN_NAME, "HTTP", "SERVER", at, &[], opts)?;
        let comment = if i == 0 {
            let mut c = vec![
                "The destination end: the same filter on each tenant namespace's INBOUND HTTP. It decides".to_owned(),
                "on the caller's verified mTLS identity (spiffe://<trust domain>/ns/<ns>/sa/<sa>) whether the".to_owned(),
                "caller's own egress imports this service on this port, so a caller that switched off its own".to_owned(),
                "sidecar (sidecar.istio.io/inject: \"false\", excludeOutboundPorts, hostNetwork) is still refused.".to_owned(),
            ];
            if opts.wasm.shard == Shard::Namespace {
                c.extend([
                    "Each carries its namespace's destination shard: every tenant (tenantDirectory: namespaces,".to_owned(),
                    "mode, ports) and the callers' rules that can name a service of this namespace or a host its".to_owned(),
                    "tenant lists in `serves` (ServiceEntry hosts its pods serve); any other host is refused as".to_owned(),
                    "undeclared-service. --shard none puts the whole policy here instead.".to_owned(),
                ]);
            }
            c
        } else {
            Vec::new()
        };
        // With `--shard none` every plugin carries the same whole policy, so an over-large one
        // fails at the first, before it is copied into every namespace's. (Shards are small and
        // each its own: `generate` checks them with everything else at the end.)
        let mut push = |value, comment| {
            out.docs.push(Doc {
                kind: DocKind::WasmPlugin,
                comment,
                value,
            });
            if i == 0 && opts.wasm.shard == Shard::None {
                check_last(out, opts.max_object_bytes)?;
            }
            Ok::<(), GenerateError>(())
        };
        push(doc, comment)?;
        if !ports.is_empty() {
            let doc = plugin(
                INBOUND_NETWORK_PLUGIN_NAME,
                "NETWORK",
                "SERVER",
                at,
                &ports,
                opts,
            )?;
            let comment = if i == 0 {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                vec![
                    format!(
                        "The destination end for TCP/TLS on the policy's TCP ports ({}); inbound, Istio matches the",
                        list.join(", ")
                    ),
                    "port the workload listens on (the target port): where a Service maps another port, add it.".to_owned(),
                ]
            } else {
                Vec::new()
            };
            push(doc, comment)?;
        }
        if opts.peer_authentication && mode == Mode::Enforce {
            let doc = PeerAuthentication {
                api_version: PEER_AUTHENTICATION_API_VERSION,
                kind: "PeerAuthentication",
                metadata: Metadata::new(PEER_AUTHENTICATION_NAME, ns, &[]),
                spec: PeerAuthenticationSpec {
                    mtls: Mtls { mode: "STRICT" },
                },
            };
            let comment = if strict_first {
                strict_first = false;
                vec![
                    "STRICT mTLS in each namespace of an enforced tenant: Istio refuses plaintext callers before".to_owned(),
                    "the filter runs (--no-peer-authentication leaves mTLS to your own PeerAuthentications).".to_owned(),
                    "Tenants in audit mode get none: STRICT would refuse their plaintext callers at once; the".to_owned(),
                    "filter counts them instead (tenant_egress.inbound.audit_denied.no_peer_identity).".to_owned(),
                ]
            } else {
                Vec::new()
            };
            out.docs.push(Doc {
                kind: DocKind::PeerAuthentication,
                comment,
                value: to_value(&doc)?,
            });
        }
    }
    Ok(())
}
