//! The `EnvoyFilter` alternative for clusters without `WasmPlugin`.
//!
//! Two patches, as in Istio's own `wasm-example` (`networking/v1alpha3/envoy_filter.proto`):
//! an `EXTENSION_CONFIG` that defines the `envoy.extensions.filters.http.wasm.v3.Wasm` filter
//! (delivered by ECDS, the policy as a JSON `StringValue`), and an `HTTP_FILTER` patch that
//! inserts a reference to it before the router in every sidecar's outbound HTTP chain. Never
//! emitted together with the WasmPlugin: the filter would run twice.

use serde_json::json;

use super::{
    check_sha256, check_url, to_value, url_scheme, Doc, DocKind, GenerateError, Generated,
    Metadata, Options, WasmScope, DEFAULT_LOCAL_WASM, PLUGIN_NAME,
};
use tenant_egress_core::spec::PolicySpec;

/// The EnvoyFilter `apiVersion`.
pub const API_VERSION: &str = "networking.istio.io/v1alpha3";

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Appends the EnvoyFilter(s) to `out`.
pub(crate) fn generate(
    spec: &PolicySpec,
    opts: &Options,
    out: &mut Generated,
) -> Result<(), GenerateError> {
    let w = &opts.wasm;
    if let Some(sum) = &w.sha256 {
        check_sha256(sum).map_err(GenerateError::Option)?;
    }
    check_url(&w.url, w.sha256.as_deref()).map_err(GenerateError::Option)?;
    if matches!(url_scheme(&w.url), "http" | "https") {
        // An oci:// module is read from a file in the proxy image here (below): nothing to pin.
        super::check_pinned(w)?;
    }
    super::note_fail_close_in_audit(spec, opts, out);
    let code = match url_scheme(&w.url) {
        "http" | "https" => {
            let mut remote = json!({"http_uri": {"uri": w.url, "timeout": "30s"}});
            if let Some(sum) = &w.sha256 {
                remote["sha256"] = json!(sum);
            }
            json!({ "remote": remote })
        }
        "file" => {
            let path = w.url.strip_prefix("file://").unwrap_or(DEFAULT_LOCAL_WASM);
            json!({"local": {"filename": path}})
        }
        _ => {
            out.notes.push(format!(
                "the EnvoyFilter loads the module from {DEFAULT_LOCAL_WASM} inside the proxy container \
                 (Envoy itself cannot pull {}); mount it there (istio/wasm-image/README.md) or pass \
                 --url https://... or --url file:///...",
                w.url
            ));
            json!({"local": {"filename": DEFAULT_LOCAL_WASM}})
        }
    };
    let configuration =
        serde_json::to_string_pretty(spec).map_err(|e| GenerateError::Serialize(e.to_string()))?;
    let namespaces = super::plugin_namespaces(spec, opts)?;
    for (i, ns) in namespaces.iter().enumerate() {
        // Qualified with the namespace, as Istio recommends for names that must not collide.
        let filter_name = format!("{ns}/{PLUGIN_NAME}");
        let metadata = serde_json::to_value(Metadata::new(PLUGIN_NAME, ns, &[]))
            .map_err(|e| GenerateError::Serialize(e.to_string()))?;
        let doc = json!({
            "apiVersion": API_VERSION,
            "kind": "EnvoyFilter",
            "metadata": metadata,
            "spec": {
                "configPatches": [
                    {
                        "applyTo": "EXTENSION_CONFIG",
                        "patch": {
                            "operation": "ADD",
                            "value": {
                                "name": filter_name,
                                "typed_config": {
                                    "@type": WASM_TYPE,
                                    "config": {
                                        "name": filter_name,
                                        "root_id": PLUGIN_NAME,
                                        "vm_config": {
                                            "vm_id": PLUGIN_NAME,
                                            "runtime": "envoy.wasm.runtime.v8",
                                            "code": code,
                                        },
                                        "configuration": {
                                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                                            "value": configuration,
                                        },
                                        "failure_policy": w.fail_strategy.envoy(),
                                    }
                                }
                            }
                        }
                    },
                    {
                        "applyTo": "HTTP_FILTER",
                        "match": {
                            "context": "SIDECAR_OUTBOUND",
                            "listener": {
                                "filterChain": {
                                    "filter": {
                                        "name": "envoy.filters.network.http_connection_manager",
                                        "subFilter": {"name": "envoy.filters.http.router"}
                                    }
                                }
                            }
                        },
                        "patch": {
                            "operation": "INSERT_BEFORE",
                            "value": {
                                "name": filter_name,
                                "config_discovery": {
                                    // initial_fetch_timeout 0s: listeners wait for the filter, as
                                    // Istio does for WasmPlugins (it may be critical for security).
                                    "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                                    "type_urls": [WASM_TYPE]
                                }
                            }
                        }
                    }
                ]
            }
        });
        let mut comment = Vec::new();
        if i == 0 {
            comment.push(match w.scope {
                WasmScope::Mesh => format!(
                    "The filter via EnvoyFilter, mesh-wide (root namespace {ns}), for clusters without WasmPlugin."
                ),
                WasmScope::Namespace => {
                    "The filter via EnvoyFilter, per tenant namespace, for clusters without WasmPlugin."
                        .to_owned()
                }
            });
            comment.push(
                "Do not apply it together with the WasmPlugin: the filter would run twice.".into(),
            );
            comment.push("configuration.value is the policy document as JSON.".into());
            comment.push(String::new());
            comment.extend(super::wasmplugin::stats_comment());
        }
        out.docs.push(Doc {
            kind: DocKind::EnvoyFilter,
            comment,
            value: to_value(&doc)?,
        });
    }
    Ok(())
}
