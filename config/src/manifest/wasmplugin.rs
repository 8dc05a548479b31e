//! The `WasmPlugin` that loads the filter with the policy as its configuration.
//!
//! Istio marshals `pluginConfig` (a `google.protobuf.Struct`) to a JSON string and hands it to
//! the filter as its plugin configuration (`pilot/pkg/model/extensions.go: buildWasmConfig`);
//! the filter parses that string as the policy document. So `pluginConfig` IS the policy, with
//! no wrapper.

use crate::yaml::Value;
use serde::Serialize;

use super::shard::{check_last, placements, Placement, Shard};
use super::{
    check_pinned, check_sha256, check_url, plugin_namespaces, to_value, Doc, DocKind,
    GenerateError, Generated, Metadata, Options, WasmScope, NETWORK_PLUGIN_NAME, PLUGIN_NAME,
    STATS_PREFIX,
};
use tenant_egress_core::spec::{PolicySpec, PortProtocol};

/// The WasmPlugin `apiVersion`.
pub const API_VERSION: &str = "extensions.istio.io/v1alpha1";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WasmPlugin {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: WasmPluginSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmPluginSpec {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_policy: Option<String>,
    phase: &'static str,
    fail_strategy: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "match")]
    matches: Vec<Match>,
    plugin_name: &'static str,
    plugin_config: Value,
}

#[derive(Serialize)]
struct Match {
    mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortMatch>,
}

#[derive(Serialize)]
struct PortMatch {
    number: u16,
}

/// Ports on which the policy declares a TCP-capable protocol (TCP, TLS, HTTPS, MONGO:
/// [`PortProtocol::opens_tcp`]): the NETWORK plugin is attached to exactly those outbound
/// ports. Its decision needs the cluster `tcp_proxy` picks, so it must not sit on HTTP ports
/// (whose connections have none). A port without a protocol is left to the Sidecars (Istio
/// sniffs it).
pub fn tcp_ports(spec: &PolicySpec) -> Vec<u16> {
    let mut ports: Vec<u16> = spec
        .tenants
        .iter()
        .flat_map(|t| {
            t.egress
                .iter()
                .chain(t.workloads.iter().flat_map(|w| w.egress.iter()))
        })
        .filter_map(|e| e.port.as_ref())
        .filter(|p| p.protocol.is_some_and(PortProtocol::opens_tcp))
        .filter_map(|p| u16::try_from(p.number).ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The comment explaining how to make the filter's counters visible to Prometheus.
pub fn stats_comment() -> Vec<String> {
    let p = STATS_PREFIX;
    vec![
        format!("The filter counts its decisions as Envoy stats named {p}.* ({p}.allowed,"),
        format!("{p}.denied.<reason>, ...). Istio drops proxy stats outside a fixed list, and no"),
        "kubectl-apply-able object widens that list mesh-wide: it is MeshConfig, set at install time".into(),
        "(istioctl / IstioOperator / Helm values of istiod):".into(),
        "  meshConfig:".into(),
        "    defaultConfig:".into(),
        "      proxyStatsMatcher:".into(),
        format!("        inclusionPrefixes: [\"{p}\"]"),
        "or per workload, as a pod-template annotation:".into(),
        format!("  proxy.istio.io/config: '{{\"proxyStatsMatcher\":{{\"inclusionPrefixes\":[\"{p}\"]}}}}'"),
        "Proxies read it when they start: restart the pods afterwards. Prometheus then scrapes the".into(),
        format!("counters as envoy_{p}_*; to look by hand:"),
        format!("  kubectl exec POD -c istio-proxy -- pilot-agent request GET stats | grep {p}"),
    ]
}

/// The comment above the sharded set's mesh-wide fallback plugin.
fn fallback_comment(ns: &str) -> Vec<String> {
    vec![
        format!("The mesh-wide fallback (no selector in the root namespace {ns}): decides for namespaces no"),
        "tenant owns (unknownSource). Every tenant namespace is listed in delegatedNamespaces: there".into(),
        "its own plugin decides and this one stands aside (counted as tenant_egress.fallback_skipped),".into(),
        "so no request is decided twice.".into(),
    ]
}

/// One WasmPlugin: the module, on the traffic `mode` selects (`CLIENT`: the sidecar's outbound;
/// `SERVER`: its inbound), on `ports` (all when empty), as the document to emit.
///
/// The placement's configuration (the policy or its shard, already a [`Value`]) is put in after
/// the rest is converted, as a [`Value::Shared`]: converting it again, through JSON text, or
/// copying it, for each of thousands of plugins was most of `generate`'s time on a large
/// policy; shared, it is also rendered once (`yaml::Writer`).
pub(super) fn plugin(
    name: &'static str,
    kind: &'static str,
    mode: &'static str,
    at: &Placement,
    ports: &[u16],
    opts: &Options,
) -> Result<Value, GenerateError> {
    let mut doc = to_value(&plugin_shell(name, kind, mode, at, ports, opts))?;
    if let Some(config) = doc.get_mut("spec").and_then(|s| s.get_mut("pluginConfig")) {
        *config = Value::Shared(at.config.clone());
    }
    Ok(doc)
}

/// [`plugin`] with a null `pluginConfig`.
fn plugin_shell(
    name: &'static str,
    kind: &'static str,
    mode: &'static str,
    at: &Placement,
    ports: &[u16],
    opts: &Options,
) -> WasmPlugin {
    let w = &opts.wasm;
    let labels: Vec<(&str, &str)> = at.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    WasmPlugin {
        api_version: API_VERSION,
        kind: "WasmPlugin",
        metadata: Metadata::new(name, &at.namespace, &labels),
        spec: WasmPluginSpec {
            url: w.url.clone(),
            sha256: w.sha256.clone(),
            image_pull_policy: w.image_pull_policy.clone(),
            phase: "AUTHZ",
            fail_strategy: w.fail_strategy.wasm_plugin(),
            kind,
            matches: vec![Match {
                mode,
                ports: ports.iter().map(|&number| PortMatch { number }).collect(),
            }],
            plugin_name: name,
            plugin_config: Value::Null,
        },
    }
}

/// Checks the module options (digest, URL, pinning) once for the plugins of either end, and
/// notes a FAIL_CLOSE plugin while nothing is enforced.
pub(crate) fn check(
    spec: &PolicySpec,
    opts: &Options,
    out: &mut Generated,
) -> Result<(), GenerateError> {
    let w = &opts.wasm;
    if let Some(sum) = &w.sha256 {
        check_sha256(sum).map_err(GenerateError::Option)?;
    }
    check_url(&w.url, w.sha256.as_deref()).map_err(GenerateError::Option)?;
    if let Some(policy) = &w.image_pull_policy {
        if !matches!(policy.as_str(), "IfNotPresent" | "Always") {
            return Err(GenerateError::Option(format!(
                "--image-pull-policy \"{policy}\" is not IfNotPresent or Always"
            )));
        }
    }
    check_pinned(w)?;
    plugin_namespaces(spec, opts)?;
    super::note_fail_close_in_audit(spec, opts, out);
    Ok(())
}

/// Appends the WasmPlugin(s) to `out` (the options are [`check`]ed).
pub(crate) fn generate(
    spec: &PolicySpec,
    opts: &Options,
    out: &mut Generated,
) -> Result<(), GenerateError> {
    let w = &opts.wasm;
    let placements = placements(spec, opts)?;
    let namespaces: Vec<&str> = placements
        .iter()
        .filter(|p| !p.fallback)
        .map(|p| p.namespace.as_str())
        .collect();
    let mut first_shard = true;
    for (i, at) in placements.iter().enumerate() {
        let ns = &at.namespace;
        let doc = plugin(PLUGIN_NAME, "HTTP", "CLIENT", at, &[], opts)?;
        let mut comment = Vec::new();
        if at.fallback {
            comment.extend(fallback_comment(ns));
        } else if w.shard == Shard::Namespace && first_shard {
            first_shard = false;
            comment.push(format!(
                "One plugin per tenant namespace ({} of them): pluginConfig is that namespace's shard",
                namespaces.len()
            ));
            comment.push(
                "of the policy (its tenant, the document-wide settings, the names of all namespaces)."
                    .to_owned(),
            );
        }
        if i == 0 && w.shard == Shard::None {
            comment.push(match w.scope {
                WasmScope::Mesh => format!(
                    "The filter, mesh-wide (no selector in the root namespace {ns}): outbound HTTP of every sidecar."
                ),
                WasmScope::Namespace => format!(
                    "The filter, per namespace ({}): outbound HTTP of every sidecar there.",
                    namespaces.join(", ")
                ),
            });
            comment.push("pluginConfig is the policy document itself.".to_owned());
        }
        if i == 0 {
            comment.push(
                "Istio applies CLIENT plugins to gateway proxies too (a selector cannot exclude them): the filter"
                    .to_owned(),
            );
            comment.push(
                "stands aside in a gateway (node id router~...) unless the policy says `gateways: enforce`."
                    .to_owned(),
            );
            comment.push(String::new());
            comment.extend(stats_comment());
        }
        out.docs.push(Doc {
            kind: DocKind::WasmPlugin,
            comment,
            value: doc,
        });
        // With `--shard none` every plugin carries the whole policy: the first is checked.
        if w.shard == Shard::None && i == 0 {
            check_last(out, opts.max_object_bytes)?;
        }
    }
    let ports = tcp_ports(spec);
    if ports.is_empty() {
        return Ok(());
    }
    // The same module as a network filter for the TCP/TLS ports: an HTTP filter never sees a
    // database connection.
    // Every plugin, shard or fallback, sits on the whole policy's TCP ports: a tenant that
    // declares none is still decided there (by its catch-all), as under the whole policy.
    for (i, at) in placements.iter().enumerate() {
        let doc = plugin(NETWORK_PLUGIN_NAME, "NETWORK", "CLIENT", at, &ports, opts)?;
        let mut comment = Vec::new();
        if i == 0 {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            comment.push(format!(
                "The same filter as a NETWORK filter on the policy's TCP/TLS ports ({}): it decides each",
                list.join(", ")
            ));
            comment.push(
                "outbound connection (TLS by SNI as it opens, plaintext at its first byte) and closes denied ones."
                    .to_owned(),
            );
            comment.push(
                "TCP on other ports is scoped by the Sidecars only: declare a port with protocol TCP to enforce it."
                    .to_owned(),
            );
        }
        out.docs.push(Doc {
            kind: DocKind::WasmPlugin,
            comment,
            value: doc,
        });
    }
    Ok(())
}
