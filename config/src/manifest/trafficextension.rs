//! The `TrafficExtension` form of the plugins (`generate --api trafficextension`), Istio 1.30+.
//!
//! Istio 1.30 added `TrafficExtension` (`extensions.istio.io/v1alpha1`) as the successor of
//! `WasmPlugin`: the same targeting (`selector` or `targetRefs`), `phase`, `priority` and
//! `match`, with the module's settings moved under `spec.wasm` (a Lua script would go under
//! `spec.lua` instead). istiod itself turns every WasmPlugin into a synthetic TrafficExtension
//! field by field (`pilot/pkg/config/kube/extensions/translate.go`); this module does the same
//! to the WasmPlugins `generate` built, so what the plugins say (phase, match, ports, fail
//! strategy, module, the policy as `pluginConfig`) is decided once, in [`super::wasmplugin`] and
//! [`super::inbound`], whichever API carries it.
//!
//! The API is alpha: the WasmPlugin stays the default until TrafficExtension is beta.
//!
//! ## `phase` spelling
//!
//! WasmPlugin's `PluginPhase` (`AUTHZ`) and TrafficExtension's `ExecutionPhase` share their
//! numbers (translate.go casts one to the other), but not their names. The spelling here is the
//! CRD of istio/api commit 196049aa496d7d80bf096f49b2796536002e6c16 (Istio 1.30,
//! `kubernetes/customresourcedefinitions.gen.yaml` and `extensions/v1alpha1/traffic_extension.proto`):
//! a top-level enum `EXECUTION_PHASE_UNSPECIFIED|AUTHN|AUTHZ|STATS`. An earlier revision of the
//! same API (a01e54cb) nested the enum in the message and spelled it `UNSPECIFIED|AUTHN|AUTHZ|STATS`,
//! and Istio's task pages still show `phase: AUTHN`: a cluster whose CRD has the other spelling
//! refuses the object at `kubectl apply` (an enum the CRD does not list), it never runs it at
//! another phase. The README says how to check and what to do.
//!
//! ## What changes in Envoy
//!
//! A TrafficExtension `ns/name` reaches Envoy as the ECDS resource
//! `extensions.istio.io/trafficextension/<ns>.<name>`, with the Wasm plugin named `<ns>.<name>`
//! (what Envoy's `wasm log <name> <root id>: ...` lines and the plugin's stats carry) and the root
//! id `pluginName` (`pilot/pkg/model/extensions.go: TrafficExtensionWrapper.buildWasmConfig`).
//! The same WasmPlugin on Istio 1.30+ is named `<ns>.<name>~istio-translated-wasmplugin`. The
//! filter keys nothing on either name: it reads its root id, which is the same in both forms.

use crate::yaml::Value;
use indexmap::IndexMap;

use super::wasmplugin::API_VERSION;
use super::{DocKind, GenerateError, Generated, Options, Selection};

/// Which Istio API carries the plugins (`generate --api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PluginApi {
    /// `WasmPlugin` (every Istio since 1.12; the default until TrafficExtension is beta).
    #[default]
    #[value(name = "wasmplugin")]
    WasmPlugin,
    /// `TrafficExtension` (Istio 1.30+, v1alpha1): the same plugins, the module under `spec.wasm`.
    #[value(name = "trafficextension")]
    TrafficExtension,
}

/// The `kind` of the objects this module emits.
pub const KIND: &str = "TrafficExtension";

/// WasmPlugin `phase` → TrafficExtension `phase`: the same enum numbers (istiod casts one to the
/// other in translate.go), the names of the CRD at istio/api 196049aa (see the module docs).
const PHASES: [(&str, &str); 4] = [
    ("UNSPECIFIED_PHASE", "EXECUTION_PHASE_UNSPECIFIED"),
    ("AUTHN", "EXECUTION_PHASE_AUTHN"),
    ("AUTHZ", "EXECUTION_PHASE_AUTHZ"),
    ("STATS", "EXECUTION_PHASE_STATS"),
];

/// WasmPlugin spec fields that stay at the top of a TrafficExtension's spec (with `phase`,
/// renamed through [`PHASES`], and the deprecated `targetRef`, which becomes `targetRefs`).
const TOP_LEVEL: [&str; 4] = ["selector", "targetRefs", "priority", "match"];

/// WasmPlugin spec fields that move under `spec.wasm` (`WasmConfig`, traffic_extension.proto).
const WASM_CONFIG: [&str; 10] = [
    "url",
    "sha256",
    "imagePullPolicy",
    "imagePullSecret",
    "verificationKey",
    "pluginConfig",
    "pluginName",
    "failStrategy",
    "vmConfig",
    "type",
];

/// The comment above the first TrafficExtension.
fn comment() -> Vec<String> {
    vec![
        "TrafficExtension (extensions.istio.io/v1alpha1, Istio 1.30+; --api trafficextension): the same plugins".to_owned(),
        "as the WasmPlugin form, the module's settings under spec.wasm. Envoy names each <ns>.<name> (ECDS".to_owned(),
        "extensions.istio.io/trafficextension/<ns>.<name>). Never leave the WasmPlugin form applied next to".to_owned(),
        "it: the filter would run twice (see the README, \"Choosing --api\").".to_owned(),
        String::new(),
    ]
}

/// With `--api trafficextension`, turns every WasmPlugin `generate` built into its
/// TrafficExtension; with the default API, changes nothing.
pub(crate) fn render(opts: &Options, out: &mut Generated) -> Result<(), GenerateError> {
    if opts.api == PluginApi::WasmPlugin {
        return Ok(());
    }
    if opts.selection == Selection::EnvoyFilter {
        return Err(GenerateError::Option(
            "--api trafficextension picks the API of the plugins, and --only envoyfilter emits an \
             EnvoyFilter instead of any plugin; drop one of the two"
                .into(),
        ));
    }
    let mut first = true;
    for doc in out
        .docs
        .iter_mut()
        .filter(|d| d.kind == DocKind::WasmPlugin)
    {
        doc.value = from_wasm_plugin(&doc.value)?;
        doc.kind = DocKind::TrafficExtension;
        if first {
            let mut lines = comment();
            lines.append(&mut doc.comment);
            doc.comment = lines;
            first = false;
        }
    }
    Ok(())
}

/// A generated object that is not the WasmPlugin this module expects: a bug in the generator.
fn bug(what: String) -> GenerateError {
    GenerateError::Serialize(format!(
        "cannot turn a WasmPlugin into a TrafficExtension: {what}"
    ))
}

/// One WasmPlugin object as the equivalent TrafficExtension, field by field as istiod's
/// translate.go maps them. A field this mapping does not know is an error, never dropped: a
/// WasmPlugin setting lost on the way would change what the plugin does.
pub fn from_wasm_plugin(wasm_plugin: &Value) -> Result<Value, GenerateError> {
    let Value::Mapping(object) = wasm_plugin else {
        return Err(bug("not a mapping".into()));
    };
    match (object.get("apiVersion"), object.get("kind")) {
        (Some(Value::String(api)), Some(Value::String(kind)))
            if api == API_VERSION && kind == "WasmPlugin" => {}
        other => return Err(bug(format!("apiVersion/kind {other:?}"))),
    }
    let metadata = object
        .get("metadata")
        .ok_or_else(|| bug("no metadata".into()))?;
    let Some(Value::Mapping(spec)) = object.get("spec") else {
        return Err(bug("no spec mapping".into()));
    };
    let mut top: IndexMap<String, Value> = IndexMap::new();
    let mut phase = None;
    let mut wasm: IndexMap<String, Value> = IndexMap::new();
    for (key, value) in spec {
        let key = key.as_str();
        if key == "phase" {
            let Value::String(p) = value else {
                return Err(bug(format!("phase {value:?}")));
            };
            let (_, te) = PHASES
                .iter()
                .find(|(wp, _)| wp == p)
                .ok_or_else(|| bug(format!("phase \"{p}\" has no TrafficExtension spelling")))?;
            phase = Some(Value::String((*te).to_owned()));
        } else if key == "targetRef" {
            // translate.go: the singular (deprecated) targetRef becomes the one entry of targetRefs.
            top.insert(
                "targetRefs".to_owned(),
                Value::Sequence(vec![value.clone()]),
            );
        } else if TOP_LEVEL.contains(&key) {
            top.insert(key.to_owned(), value.clone());
        } else if WASM_CONFIG.contains(&key) {
            wasm.insert(key.to_owned(), value.clone());
        } else {
            return Err(bug(format!(
                "spec field \"{key}\" has no TrafficExtension place"
            )));
        }
    }
    if !wasm.contains_key("url") {
        return Err(bug("no url".into()));
    }
    // The proto's field order: selector, targetRefs, phase, priority, match, then the module.
    let mut te_spec: IndexMap<String, Value> = IndexMap::new();
    for key in ["selector", "targetRefs"] {
        if let Some(v) = top.shift_remove(key) {
            te_spec.insert(key.to_owned(), v);
        }
    }
    if let Some(p) = phase {
        te_spec.insert("phase".to_owned(), p);
    }
    te_spec.extend(top);
    te_spec.insert("wasm".to_owned(), Value::Mapping(wasm));
    let mut te: IndexMap<String, Value> = IndexMap::new();
    te.insert(
        "apiVersion".to_owned(),
        Value::String(API_VERSION.to_owned()),
    );
    te.insert("kind".to_owned(), Value::String(KIND.to_owned()));
    te.insert("metadata".to_owned(), metadata.clone());
    te.insert("spec".to_owned(), Value::Mapping(te_spec));
    Ok(Value::Mapping(te))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::yaml;

    fn parse(text: &str) -> Value {
        yaml::from_str(text).unwrap()
    }

    #[test]
    fn every_wasm_plugin_field_lands_where_translate_go_puts_it() {
        let wp = parse(
            "apiVersion: extensions.istio.io/v1alpha1\n\
             kind: WasmPlugin\n\
             metadata: {name: p, namespace: n, labels: {a: b}}\n\
             spec:\n\
             \x20 url: oci://r/x@sha256:aa\n\
             \x20 sha256: aa\n\
             \x20 imagePullPolicy: Always\n\
             \x20 imagePullSecret: s\n\
             \x20 phase: STATS\n\
             \x20 priority: 7\n\
             \x20 failStrategy: FAIL_OPEN\n\
             \x20 type: NETWORK\n\
             \x20 match: [{mode: SERVER, ports: [{number: 5432}]}]\n\
             \x20 targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}\n\
             \x20 vmConfig: {env: [{name: E, value: v}]}\n\
             \x20 pluginName: root\n\
             \x20 pluginConfig: {k: [1, 2]}\n",
        );
        let te = from_wasm_plugin(&wp).unwrap();
        let want = parse(
            "apiVersion: extensions.istio.io/v1alpha1\n\
             kind: TrafficExtension\n\
             metadata: {name: p, namespace: n, labels: {a: b}}\n\
             spec:\n\
             \x20 targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: g}]\n\
             \x20 phase: EXECUTION_PHASE_STATS\n\
             \x20 priority: 7\n\
             \x20 match: [{mode: SERVER, ports: [{number: 5432}]}]\n\
             \x20 wasm:\n\
             \x20   url: oci://r/x@sha256:aa\n\
             \x20   sha256: aa\n\
             \x20   imagePullPolicy: Always\n\
             \x20   imagePullSecret: s\n\
             \x20   failStrategy: FAIL_OPEN\n\
             \x20   type: NETWORK\n\
             \x20   vmConfig: {env: [{name: E, value: v}]}\n\
             \x20   pluginName: root\n\
             \x20   pluginConfig: {k: [1, 2]}\n",
        );
        assert_eq!(te, want);
        // Field order too (the YAML users read): the value compares as an ordered map.
        assert_eq!(
            yaml::to_string(&te).unwrap(),
            yaml::to_string(&want).unwrap()
        );
    }

    #[test]
    fn each_phase_keeps_its_number() {
        for (wp, te) in [
            ("UNSPECIFIED_PHASE", "EXECUTION_PHASE_UNSPECIFIED"),
            ("AUTHN", "EXECUTION_PHASE_AUTHN"),
            ("AUTHZ", "EXECUTION_PHASE_AUTHZ"),
            ("STATS", "EXECUTION_PHASE_STATS"),
        ] {
            let doc = parse(&format!(
                "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: p}}\n\
                 spec: {{url: file:///x.wasm, phase: {wp}}}\n"
            ));
            let got = from_wasm_plugin(&doc).unwrap();
            assert_eq!(
                got.get("spec").and_then(|s| s.get("phase")),
                Some(&Value::String(te.to_owned())),
                "{wp}"
            );
        }
    }

    #[test]
    fn what_it_cannot_carry_is_an_error_not_a_silent_drop() {
        for (spec, want) in [
            ("{url: file:///x.wasm, phase: LATE}", "phase \"LATE\""),
            (
                "{url: file:///x.wasm, newField: 1}",
                "spec field \"newField\"",
            ),
            ("{phase: AUTHZ}", "no url"),
        ] {
            let doc = parse(&format!(
                "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: p}}\nspec: {spec}\n"
            ));
            let err = from_wasm_plugin(&doc).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
        let sidecar = parse(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\nspec: {}\n",
        );
        let err = from_wasm_plugin(&sidecar).unwrap_err().to_string();
        assert!(err.contains("apiVersion/kind"), "{err}");
    }
}
