//! Istio manifests: the committed examples are what `generate` and `graph` print, every
//! generated object passes Istio's published CRD schemas, the Sidecars admit exactly what the
//! filter allows, and `import` then `generate` gives back Sidecars that admit the same hosts.
//!
//! Schema validation runs the validators compiled from Istio's CRD schemas (pinned npm package
//! installed by scripts/fetch-istio-crds.sh, called from scripts/setup.sh) under node. It never
//! skips: without them the tests fail and say how to install them.
//!
//! `UPDATE_GOLDEN=1 cargo test -p tenant-egress-config --test manifests` rewrites the examples'
//! generated files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use proptest::prelude::*;
use serde_json::{json, Value};
use tenant_egress_config::manifest::import::{self, admitted, same_admission};
use tenant_egress_config::manifest::sidecar::Listeners;
use tenant_egress_config::manifest::{
    self, AuditSidecars, FailStrategy, Options, PluginApi, Selection, WasmScope,
};
use tenant_egress_core::pattern::{HostEntry, HostPattern, NsSelector};
use tenant_egress_core::{Policy, PolicySpec, Protocol, Request, Source, Target};

#[path = "../core/tests/support/policies.rs"]
mod policies;

const BIN: &str = env!("CARGO_BIN_EXE_tenant-egress");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("istio/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("policy.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 3,
        "expected the istio/examples/*/policy.yaml examples, found {dirs:?}"
    );
    dirs
}

fn run_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn load_spec(path: &Path) -> PolicySpec {
    tenant_egress_config::load::load_policy(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .spec
}

fn spec_of(v: Value) -> PolicySpec {
    tenant_egress_core::validate::validate_value(v)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// Generates with the library and parses the rendered YAML back (what users apply).
fn generate_docs(spec: &PolicySpec, opts: &Options) -> Vec<Value> {
    let g = manifest::generate(spec, opts).unwrap();
    let docs: Vec<&manifest::Doc> = g.docs.iter().collect();
    let yaml = manifest::render_yaml(&manifest::header("test", "test"), &docs).unwrap();
    import::documents("generated", &yaml).unwrap()
}

// === Goldens ===

fn first_difference(want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!(
                "first difference at line {}:\n  committed: {w}\n  generated: {g}",
                i + 1
            );
        }
    }
    format!(
        "one is a prefix of the other ({} vs {} lines)",
        want.lines().count(),
        got.lines().count()
    )
}

/// The example whose output is also committed in TrafficExtension form (`trafficextension.yaml`,
/// the same command as `generated.yaml` plus `--api trafficextension`, so the two files differ
/// exactly where the API does). It has TCP ports: a NETWORK plugin is in it too.
const TRAFFIC_EXTENSION_EXAMPLE: &str = "prod-uat-dev-cockroachdb";

#[test]
fn examples_match_their_committed_manifests() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    let mut traffic_extension_goldens = 0;
    for dir in examples() {
        let te = dir.ends_with(TRAFFIC_EXTENSION_EXAMPLE);
        traffic_extension_goldens += usize::from(te);
        let te_golden = (
            "trafficextension.yaml",
            &[
                "generate",
                "policy.yaml",
                "--allow-unpinned",
                "--api",
                "trafficextension",
            ][..],
        );
        for (file, args) in te.then_some(te_golden).into_iter().chain([
            // The examples show the default (tag) URL, so they say they accept it unpinned.
            (
                "generated.yaml",
                &["generate", "policy.yaml", "--allow-unpinned"][..],
            ),
            (
                "envoyfilter.yaml",
                &["generate", "policy.yaml", "--only", "envoyfilter"][..],
            ),
            ("graph.mmd", &["graph", "policy.yaml"][..]),
        ]) {
            let out = run_in(&dir, args, None);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: tenant-egress {}: {}",
                dir.display(),
                args.join(" "),
                text(&out.stderr)
            );
            let got = text(&out.stdout);
            let path = dir.join(file);
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if want != got {
                if update {
                    std::fs::write(&path, &got).unwrap();
                } else {
                    stale.push(format!(
                        "{} is stale; {}\n  regenerate: (cd {} && tenant-egress {} > {file}), or run\n  UPDATE_GOLDEN=1 cargo test -p tenant-egress-config --test manifests",
                        path.display(),
                        first_difference(&want, &got),
                        dir.display(),
                        args.join(" "),
                    ));
                }
            }
        }
    }
    assert!(stale.is_empty(), "\n{}", stale.join("\n\n"));
    assert_eq!(
        traffic_extension_goldens, 1,
        "istio/examples/{TRAFFIC_EXTENSION_EXAMPLE} is gone: pick another example for the TrafficExtension golden"
    );
}

// === Schemas ===

/// Runs the CRD-schema validators over `docs`; one error list per document.
fn schema_errors(docs: &[Value]) -> Vec<Vec<String>> {
    let crds = std::env::var_os("TENANT_EGRESS_ISTIO_CRDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/istio-crds"));
    let marker = crds.join("node_modules/@kubernetes-models/istio/package.json");
    assert!(
        marker.is_file(),
        "Istio CRD schema validators are not installed ({} is missing): run scripts/setup.sh \
         (or scripts/fetch-istio-crds.sh)",
        marker.display()
    );
    let input = std::env::temp_dir().join(format!(
        "tenant-egress-crd-docs-{}-{:?}.json",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&input, serde_json::to_vec(docs).unwrap()).unwrap();
    let out = Command::new("node")
        .arg(root().join("scripts/istio-crds/validate.mjs"))
        .arg(&crds)
        .arg(&input)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run node ({e}): install node, then run scripts/setup.sh")
        });
    let _ = std::fs::remove_file(&input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the schema validator failed: {}",
        text(&out.stderr)
    );
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), docs.len(), "{}", text(&out.stdout));
    lines
        .iter()
        .map(|l| {
            l["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// What the CRD schemas do not say: the object basics Kubernetes checks itself.
fn basics(doc: &Value) -> Result<(), String> {
    let api = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    match (api, kind) {
        ("networking.istio.io/v1", "Sidecar")
        | ("extensions.istio.io/v1alpha1", "WasmPlugin")
        | ("extensions.istio.io/v1alpha1", "TrafficExtension")
        | ("networking.istio.io/v1alpha3", "EnvoyFilter")
        | ("security.istio.io/v1", "PeerAuthentication") => {}
        other => return Err(format!("unexpected apiVersion/kind {other:?}")),
    }
    let name = doc["metadata"]["name"].as_str().unwrap_or("");
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or("");
    if !is_dns_label(name) || !is_dns_label(ns) {
        return Err(format!("metadata name {name:?} / namespace {ns:?}"));
    }
    let labels = doc["metadata"]["labels"].as_object().ok_or("no labels")?;
    if labels["app.kubernetes.io/managed-by"] != "tenant-egress" {
        return Err("missing the managed-by label".into());
    }
    for (k, v) in labels {
        let v = v.as_str().ok_or("label value not a string")?;
        if v.len() > 63 || k.len() > 253 {
            return Err(format!("label {k}={v} too long"));
        }
    }
    Ok(())
}

/// Every kind of output the generator can make.
fn all_variants() -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for dir in examples() {
        let te = dir.ends_with(TRAFFIC_EXTENSION_EXAMPLE);
        let files = [
            "generated.yaml",
            "envoyfilter.yaml",
            "trafficextension.yaml",
        ];
        for file in &files[..if te { 3 } else { 2 }] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            out.push((
                format!("{}/{file}", dir.display()),
                import::documents(file, &text).unwrap(),
            ));
        }
        let spec = load_spec(&dir.join("policy.yaml"));
        let sum = "ab".repeat(32);
        let variants: Vec<(&str, Options)> = vec![
            (
                "namespace scope, FAIL_OPEN, Always, sha256",
                Options {
                    wasm: manifest::WasmOptions {
                        scope: WasmScope::Namespace,
                        fail_strategy: FailStrategy::FailOpen,
                        image_pull_policy: Some("Always".into()),
                        sha256: Some(sum.clone()),
                        ..Default::default()
                    },
                    emit_root_default: true,
                    shared_namespaces: vec!["istio-system".into(), "monitoring".into()],
                    ..Default::default()
                },
            ),
            (
                "envoyfilter https + sha256, FAIL_RELOAD, namespace scope",
                Options {
                    selection: Selection::EnvoyFilter,
                    wasm: manifest::WasmOptions {
                        url: "https://example.com/tenant_egress_filter.wasm".into(),
                        sha256: Some(sum.clone()),
                        fail_strategy: FailStrategy::FailReload,
                        scope: WasmScope::Namespace,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "the caller's end only",
                Options {
                    ends: manifest::Ends::Source,
                    wasm: manifest::WasmOptions {
                        allow_unpinned: true,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "wasmplugin file://",
                Options {
                    selection: Selection::WasmPlugin,
                    wasm: manifest::WasmOptions {
                        url: format!("file://{}", manifest::DEFAULT_LOCAL_WASM),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "trafficextension, both ends, FAIL_CLOSE, pinned oci:// + sha256, IfNotPresent",
                Options {
                    api: PluginApi::TrafficExtension,
                    ends: manifest::Ends::Both,
                    wasm: manifest::WasmOptions {
                        url: format!(
                            "oci://registry.example.com/tenant-egress-filter@sha256:{sum}"
                        ),
                        sha256: Some(sum.clone()),
                        image_pull_policy: Some("IfNotPresent".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "trafficextension only, destination end, namespace scope, FAIL_OPEN, Always",
                Options {
                    api: PluginApi::TrafficExtension,
                    selection: Selection::WasmPlugin,
                    ends: manifest::Ends::Destination,
                    wasm: manifest::WasmOptions {
                        scope: WasmScope::Namespace,
                        fail_strategy: FailStrategy::FailOpen,
                        image_pull_policy: Some("Always".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
            (
                "trafficextension file://, FAIL_RELOAD",
                Options {
                    api: PluginApi::TrafficExtension,
                    wasm: manifest::WasmOptions {
                        url: format!("file://{}", manifest::DEFAULT_LOCAL_WASM),
                        fail_strategy: FailStrategy::FailReload,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
        ];
        for (name, opts) in variants {
            out.push((
                format!("{} ({name})", dir.display()),
                generate_docs(&spec, &opts),
            ));
        }
    }
    // Audit mode (open Sidecars), an empty tenant (`~/*`), ALLOW_ANY, exclusions.
    let spec = spec_of(json!({
        "apiVersion": "tenant-egress/v1",
        "mode": "audit",
        "tenants": [
            {"name": "a", "namespaces": ["a"], "egress": [{"hosts": ["./*"]}]},
            {"name": "b", "namespaces": ["b"], "mode": "enforce", "outboundTrafficPolicy": "ALLOW_ANY"},
            {"name": "c", "namespaces": ["c"], "mode": "enforce",
             "egress": [{"hosts": ["*/*", "~x/*"]}]}
        ]
    }));
    for audit in [AuditSidecars::Open, AuditSidecars::Scoped] {
        let opts = Options {
            audit_sidecars: audit,
            wasm: manifest::WasmOptions {
                allow_unpinned: true,
                ..Default::default()
            },
            ..Default::default()
        };
        out.push((
            format!("synthetic ({audit:?})"),
            generate_docs(&spec, &opts),
        ));
    }
    out
}

#[test]
fn every_generated_manifest_passes_istio_crd_schemas() {
    let variants = all_variants();
    let docs: Vec<Value> = variants.iter().flat_map(|(_, d)| d.clone()).collect();
    assert!(docs.len() > 40, "only {} documents", docs.len());
    let errors = schema_errors(&docs);
    let mut failures = Vec::new();
    let mut i = 0;
    let mut kinds = BTreeMap::new();
    for (name, set) in &variants {
        for doc in set {
            *kinds
                .entry(doc["kind"].as_str().unwrap_or("?").to_owned())
                .or_insert(0) += 1;
            if !errors[i].is_empty() {
                failures.push(format!(
                    "{name}: {} {}/{}: {:?}",
                    doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"], errors[i]
                ));
            }
            if let Err(e) = basics(doc) {
                failures.push(format!("{name}: {e}"));
            }
            i += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in ["Sidecar", "WasmPlugin", "EnvoyFilter", "TrafficExtension"] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} checked: {kinds:?}"
        );
    }
    // The TrafficExtensions checked carry every setting the generator writes into one.
    let te: Vec<&Value> = variants
        .iter()
        .flat_map(|(_, d)| d)
        .filter(|d| d["kind"] == "TrafficExtension")
        .collect();
    let some = |what: &str, f: &dyn Fn(&Value) -> bool| {
        assert!(
            te.iter().any(|d| f(d)),
            "no TrafficExtension with {what} was schema-checked"
        );
    };
    some("type HTTP", &|d| d["spec"]["wasm"]["type"] == "HTTP");
    some("type NETWORK on ports", &|d| {
        d["spec"]["wasm"]["type"] == "NETWORK"
            && d["spec"]["match"][0]["ports"][0]["number"].is_u64()
    });
    some("mode CLIENT", &|d| {
        d["spec"]["match"][0]["mode"] == "CLIENT"
    });
    some("mode SERVER", &|d| {
        d["spec"]["match"][0]["mode"] == "SERVER"
    });
    for fs in ["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"] {
        some(fs, &|d| d["spec"]["wasm"]["failStrategy"] == fs);
    }
    some("sha256", &|d| d["spec"]["wasm"]["sha256"].is_string());
    for policy in ["IfNotPresent", "Always"] {
        some(policy, &|d| d["spec"]["wasm"]["imagePullPolicy"] == policy);
    }
    some("file://", &|d| {
        d["spec"]["wasm"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("file:///"))
    });
    for d in &te {
        assert_eq!(d["spec"]["phase"], "EXECUTION_PHASE_AUTHZ", "{d}");
        assert!(
            d["spec"]["wasm"]["pluginConfig"]["tenants"].is_array(),
            "the policy is the pluginConfig: {d}"
        );
        assert!(
            d["spec"].get("url").is_none(),
            "a WasmPlugin field left at the top: {d}"
        );
    }
}

#[test]
fn the_schema_check_catches_broken_manifests() {
    let dir = &examples()[0];
    let spec = load_spec(&dir.join("policy.yaml"));
    let docs = generate_docs(&spec, &unpinned());
    let ef = generate_docs(
        &spec,
        &Options {
            selection: Selection::EnvoyFilter,
            ..Default::default()
        },
    );
    let sidecar = docs
        .iter()
        .find(|d| d["kind"] == "Sidecar")
        .unwrap()
        .clone();
    let wasm = docs
        .iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .unwrap()
        .clone();
    let mut broken = Vec::new();
    let mut b = sidecar.clone();
    b["spec"]["outboundTrafficPolicy"]["mode"] = json!("BOGUS");
    broken.push(("outboundTrafficPolicy.mode BOGUS", b));
    let mut b = sidecar.clone();
    b["spec"]["egress"][0]
        .as_object_mut()
        .unwrap()
        .remove("hosts");
    broken.push(("egress listener without hosts", b));
    let mut b = sidecar;
    b["spec"]["egress"][0]["captureMode"] = json!("SOMETIMES");
    broken.push(("captureMode SOMETIMES", b));
    let mut b = wasm.clone();
    b["spec"]["failStrategy"] = json!("FAIL_SOMETIMES");
    broken.push(("failStrategy FAIL_SOMETIMES", b));
    let mut b = wasm.clone();
    b["spec"]["sha256"] = json!("ABC");
    broken.push(("sha256 ABC", b));
    let mut b = wasm;
    b["spec"]["phase"] = json!("LATE");
    broken.push(("phase LATE", b));
    let mut b = ef[0].clone();
    b["spec"]["configPatches"][0]["applyTo"] = json!("EVERYTHING");
    broken.push(("applyTo EVERYTHING", b));
    let te = generate_docs(
        &spec,
        &Options {
            api: PluginApi::TrafficExtension,
            ..unpinned()
        },
    )
    .into_iter()
    .find(|d| d["kind"] == "TrafficExtension")
    .unwrap();
    let mut b = te.clone();
    b["spec"]["phase"] = json!("AUTHZ");
    broken.push(("TrafficExtension phase AUTHZ (WasmPlugin's spelling)", b));
    let mut b = te.clone();
    b["spec"].as_object_mut().unwrap().remove("wasm");
    broken.push(("TrafficExtension without wasm or lua", b));
    let mut b = te.clone();
    b["spec"]["lua"] = json!({"inlineCode": "function envoy_on_request(h) end"});
    broken.push(("TrafficExtension with wasm and lua", b));
    let mut b = te.clone();
    b["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
    b["spec"]["targetRefs"] =
        json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "g"}]);
    broken.push(("TrafficExtension with selector and targetRefs", b));
    let mut b = te.clone();
    b["spec"]["url"] = b["spec"]["wasm"]["url"].clone();
    broken.push(("TrafficExtension with a WasmPlugin-style top-level url", b));
    let mut b = te.clone();
    b["spec"]["wasm"]["url"] = json!("ftp://x/y.wasm");
    broken.push(("TrafficExtension url ftp://", b));
    let mut b = te.clone();
    b["spec"]["wasm"]["vmConfig"] =
        json!({"env": [{"name": "E", "valueFrom": "HOST", "value": "v"}]});
    broken.push(("TrafficExtension env HOST with a value", b));
    let mut b = te.clone();
    b["spec"]["targetRefs"] = json!([{"kind": "Gateway", "name": "g", "namespace": "other"}]);
    broken.push(("TrafficExtension cross-namespace targetRef", b));
    let mut b = te;
    b["spec"]["selector"] = json!({"matchLabels": {"app": "*"}});
    broken.push(("TrafficExtension wildcard label value", b));
    let docs: Vec<Value> = broken.iter().map(|(_, d)| d.clone()).collect();
    let errors = schema_errors(&docs);
    for ((what, _), errs) in broken.iter().zip(&errors) {
        assert!(
            !errs.is_empty(),
            "the schema check accepted a manifest with {what}"
        );
    }
    assert!(
        errors[0][0].contains("outboundTrafficPolicy/mode"),
        "{:?}",
        errors[0]
    );
}

// === The Sidecars admit exactly what the filter allows ===

fn probes(spec: &PolicySpec) -> (Vec<(String, String)>, Vec<u16>) {
    let mut namespaces: Vec<String> = vec!["elsewhere".into()];
    let mut hosts: Vec<(String, Option<String>)> = Vec::new();
    let mut ports: Vec<u16> = vec![443, 8443];
    let lists = spec
        .tenants
        .iter()
        .flat_map(|t| std::iter::once(&t.egress).chain(t.workloads.iter().map(|w| &w.egress)));
    for t in &spec.tenants {
        namespaces.extend(t.namespaces.iter().cloned());
    }
    for egress in lists {
        for e in egress {
            if let Some(p) = &e.port {
                ports.push(p.number as u16);
            }
            for h in &e.hosts {
                let entry: HostEntry = h.parse().unwrap();
                let ns = match &entry.namespace {
                    NsSelector::Named(n) => {
                        namespaces.push(n.clone());
                        Some(n.clone())
                    }
                    _ => None,
                };
                match &entry.host {
                    HostPattern::Exact(x) => hosts.push((x.clone(), ns)),
                    HostPattern::Suffix(s) => hosts.push((format!("probe{s}"), ns)),
                    HostPattern::All => {}
                }
            }
        }
    }
    namespaces.sort();
    namespaces.dedup();
    ports.sort_unstable();
    ports.dedup();
    let mut out = Vec::new();
    for ns in &namespaces {
        out.push((format!("probe.{ns}.svc.cluster.local"), ns.clone()));
        for (h, hns) in &hosts {
            // A named host lives in its namespace; `*`/`.` hosts are tried everywhere.
            if hns.as_ref().is_none_or(|n| n == ns) {
                out.push((h.clone(), ns.clone()));
            }
        }
    }
    out.sort();
    out.dedup();
    (out, ports)
}

fn check_sidecars_match_filter(name: &str, spec: &PolicySpec) -> usize {
    let policy = Policy::from_spec(spec).unwrap();
    let docs = generate_docs(
        spec,
        &Options {
            selection: Selection::Sidecars,
            audit_sidecars: AuditSidecars::Scoped,
            ..Default::default()
        },
    );
    let sidecars = admitted(&docs);
    let (dests, ports) = probes(spec);
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for tenant in &spec.tenants {
        for ns in &tenant.namespaces {
            let mut sources: Vec<(String, Vec<(String, String)>)> = vec![(String::new(), vec![])];
            for w in &tenant.workloads {
                let sel = w
                    .selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let mut labels: Vec<(String, String)> = w
                    .selector
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.push(("pod-template-hash".into(), "x".into()));
                sources.push((sel, labels));
            }
            for (sel, labels) in &sources {
                let listeners: &Listeners = sidecars
                    .get(&(ns.clone(), sel.clone()))
                    .unwrap_or_else(|| panic!("{name}: no Sidecar for {ns} [{sel}]"));
                let label_refs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                for (host, dest_ns) in &dests {
                    for (port, protocol) in ports
                        .iter()
                        .flat_map(|p| [(*p, Protocol::Http), (*p, Protocol::Tcp)])
                    {
                        let sidecar = listeners.admits(Some(port), protocol, ns, host, dest_ns);
                        let authority = format!("{host}:{port}");
                        let cluster = format!("outbound|{port}||{host}");
                        let d = policy.decide(&Request {
                            source: Source {
                                namespace: Some(ns),
                                labels: &label_refs,
                            },
                            target: Target {
                                // A plaintext TCP connection carries no authority (no SNI).
                                authority: (protocol == Protocol::Http)
                                    .then_some(authority.as_bytes()),
                                cluster: Some(&cluster),
                                destination_namespace: Some(dest_ns),
                                protocol,
                                ..Target::default()
                            },
                        });
                        checked += 1;
                        if d.allowed != sidecar {
                            mismatches.push(format!(
                                "{name}: from {ns} [{sel}] to {host} (namespace {dest_ns}) port {port} \
                                 {protocol:?}: filter {} ({}), Sidecar {}",
                                d.allowed,
                                d.reason.as_str(),
                                sidecar
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    checked
}

#[test]
fn generated_sidecars_admit_exactly_what_the_filter_allows() {
    let mut checked = 0;
    for dir in examples() {
        checked += check_sidecars_match_filter(
            &dir.display().to_string(),
            &load_spec(&dir.join("policy.yaml")),
        );
    }
    // Exceptions with their own catch-all next to tenant ports, exclusions on both sides,
    // exception-only ports, wildcards.
    let spec = spec_of(json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [
            {"name": "t", "namespaces": ["t1", "t2"],
             "egress": [
                {"port": {"number": 80, "protocol": "HTTP"}, "hosts": ["foo/*", "*/*.example.com"]},
                {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./db.t1.svc.cluster.local"]},
                {"hosts": ["./*", "shared/*", "~shared/secret.shared.svc.cluster.local"]}],
             "workloads": [
                {"name": "w1", "selector": {"app": "w1"},
                 "egress": [{"hosts": ["bar/*", "*/api.example.org", "*/*.example.com"]}]},
                {"name": "w2", "selector": {"app": "w2"},
                 "egress": [{"port": {"number": 9090}, "hosts": ["monitoring/*"]},
                            {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["shared/*"]},
                            {"port": {"number": 80}, "hosts": ["bar/x.bar.svc.cluster.local"]}]}]},
            {"name": "ports-only", "namespaces": ["p"],
             "egress": [{"port": {"number": 8080}, "hosts": ["t1/*"]}],
             "workloads": [{"name": "w", "selector": {"app": "w"}, "egress": [{"hosts": ["t2/*"]}]}]}
        ]
    }));
    checked += check_sidecars_match_filter("synthetic", &spec);
    assert!(checked > 1000, "only {checked} probes");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Over random valid policies whose exceptions redeclare ports and protocols, the generated
    /// Sidecars (rendered to YAML and read back) admit exactly what the filter allows, over HTTP
    /// and TCP, for every pod: the tenant's and each exception's.
    #[test]
    fn generated_sidecars_admit_what_the_filter_allows_for_random_policies(doc in policies::policy()) {
        let Ok((spec, _)) = tenant_egress_core::validate::validate_value(doc) else { return Ok(()) };
        check_sidecars_match_filter("random", &spec);
    }
}

// === Import ===

fn assert_same_sidecars(what: &str, before: &[Value], after: &[Value]) {
    let a = admitted(before);
    let b = admitted(after);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: different (namespace, selector) Sidecars"
    );
    for (key, l) in &a {
        same_admission(l, &b[key]).unwrap_or_else(|d| panic!("{what}: {key:?}: {d}"));
    }
}

/// The default options with the default (tag) URL accepted unpinned.
fn unpinned() -> Options {
    Options {
        wasm: manifest::WasmOptions {
            allow_unpinned: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn sidecar_opts() -> Options {
    Options {
        selection: Selection::Sidecars,
        ..Default::default()
    }
}

#[test]
fn import_of_generated_sidecars_round_trips() {
    for dir in examples() {
        let spec = load_spec(&dir.join("policy.yaml"));
        let g = manifest::generate(&spec, &sidecar_opts()).unwrap();
        let yaml = manifest::render_yaml("", &g.docs.iter().collect::<Vec<_>>()).unwrap();
        let first = import::documents("sidecars.yaml", &yaml).unwrap();
        let imported = import::import(&[("sidecars.yaml".into(), yaml)], "istio-system").unwrap();
        let unexpected: Vec<&String> = imported
            .warnings
            .iter()
            .filter(|w| !w.contains("root namespace"))
            .collect();
        assert!(unexpected.is_empty(), "{}: {unexpected:?}", dir.display());
        let again = generate_docs(&imported.spec, &sidecar_opts());
        assert_same_sidecars(&dir.display().to_string(), &first, &again);
        // And the imported policy is valid as it stands.
        Policy::from_spec(&imported.spec).unwrap();
    }
}

/// Sidecars as a cluster might hold them (`kubectl get sidecars -A -o yaml`).
const CLUSTER: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: Sidecar
  metadata: {name: default, namespace: prod, resourceVersion: "1"}
  spec:
    egress:
    - port: {number: 26257, protocol: TCP, name: db}
      hosts: ["./cockroachdb.prod.svc.cluster.local"]
    - hosts: ["./*", "istio-system/*"]
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
- apiVersion: networking.istio.io/v1beta1
  kind: Sidecar
  metadata: {name: batman.v2, namespace: prod}
  spec:
    workloadSelector:
      labels: {app.kubernetes.io/name: batman-app}
    egress:
    - port: {number: 26257, protocol: TCP, name: db}
      hosts: ["./cockroachdb.prod.svc.cluster.local", "uat/cockroachdb.uat.svc.cluster.local"]
    - port: {number: 9200}
      hosts: ["logging/*", "./*", "istio-system/*"]
    - hosts: ["./*", "istio-system/*", "logmonkey/logcatcher.logmonkey.svc.cluster.local"]
- apiVersion: networking.istio.io/v1alpha3
  kind: Sidecar
  metadata: {name: default, namespace: uat}
  spec:
    egress:
    - hosts: ["./*", "istio-system/*", "~/metadata.google.internal"]
    outboundTrafficPolicy: {mode: ALLOW_ANY}
- apiVersion: networking.istio.io/v1
  kind: Sidecar
  metadata: {name: ingress-only, namespace: uat}
  spec:
    workloadSelector:
      labels: {app: edge}
    egress:
    - hosts: ["./*", "istio-system/*", "~/metadata.google.internal", "*/api.example.com"]
    ingress:
    - port: {number: 9080, protocol: HTTP, name: http}
      defaultEndpoint: 127.0.0.1:8080
"#;

#[test]
fn import_then_generate_gives_back_what_the_cluster_admits() {
    let imported =
        import::import(&[("cluster.yaml".into(), CLUSTER.into())], "istio-system").unwrap();
    let warnings = imported.warnings.join("\n");
    assert!(
        warnings.contains("ingress listeners cannot be carried over"),
        "{warnings}"
    );
    let before = import::documents("cluster.yaml", CLUSTER).unwrap();
    let after = generate_docs(&imported.spec, &sidecar_opts());
    assert_same_sidecars("cluster", &before, &after);
    // The exception holds only the difference, and the names are valid.
    let prod = &imported.spec.tenants[0];
    assert_eq!(prod.name, "prod");
    assert_eq!(prod.workloads[0].name, "batman-v2");
    let hosts: Vec<&String> = prod.workloads[0]
        .egress
        .iter()
        .flat_map(|e| &e.hosts)
        .collect();
    assert_eq!(
        hosts,
        vec![
            "logging/*",
            "uat/cockroachdb.uat.svc.cluster.local",
            "logmonkey/logcatcher.logmonkey.svc.cluster.local"
        ]
    );
    assert_eq!(
        imported.spec.tenants[1].outbound_traffic_policy,
        tenant_egress_core::spec::OutboundTrafficPolicy::AllowAny
    );
    Policy::from_spec(&imported.spec).unwrap();
}

const ACCIDENTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: ["./*", "istio-system/*", "monitoring/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: gw, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  egress: [{hosts: ["*/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./*", "istio-system/*", "payments/*", "foo", "bar/10.0.0.1"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: forgot-egress, namespace: shop}
spec:
  workloadSelector: {labels: {app: cron}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrower, namespace: shop}
spec:
  workloadSelector: {labels: {app: locked}}
  egress:
  - bind: 127.0.0.1
    port: {number: 8080}
    hosts: ["./*"]
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: lonely, namespace: batch}
spec:
  workloadSelector: {labels: {app: job}}
  egress: [{hosts: ["./*", "data/*"]}]
"#;

#[test]
fn import_warns_about_what_it_cannot_carry_or_looks_accidental() {
    let out = run_in(&std::env::temp_dir(), &["import", "-"], Some(ACCIDENTS));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for needle in [
        "warning: (stdin): document 1 is Deployment apps/v1, not a networking.istio.io Sidecar or ServiceEntry; skipped",
        "the root namespace's selector-less Sidecar is the mesh default",
        "--emit-root-default --shared-namespaces istio-system,monitoring",
        "applies only to pods of istio-system itself",
        "illegal host \"foo\"",
        "illegal host \"bar/10.0.0.1\"",
        "Sidecar shop/forgot-egress: a workload-specific Sidecar with no egress",
        "imports \"*/*\" for these pods",
        "bind cannot be carried over",
        "Sidecar shop/narrower: its catch-all listener lacks \"istio-system/*\", \"payments/*\"",
        "widens: the selected pods may also reach \"istio-system/*\", \"payments/*\"",
        "namespace batch has only workload-specific Sidecars; its other pods use the root default",
        "no outboundTrafficPolicy",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.lines().all(|l| l.starts_with("warning: ")), "{err}");
    // stdout is a valid policy.
    let policy = text(&out.stdout);
    assert!(
        policy.starts_with("# Imported by tenant-egress"),
        "{policy}"
    );
    let v: Value = tenant_egress_config::yaml::from_str(&policy).unwrap();
    let spec = spec_of(v);
    let names: Vec<&str> = spec.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["batch", "shop"]);
    // batch starts from the root default ("./*", istio-system, monitoring).
    assert_eq!(spec.tenants[0].egress[0].hosts.len(), 3);
}

// === CLI ===

#[test]
fn generate_cli_outputs_and_options() {
    let dir = &examples()[0];
    // Default: Sidecars and the WasmPlugin, never the EnvoyFilter.
    let out = run_in(dir, &["generate", "policy.yaml", "--allow-unpinned"], None);
    let s = text(&out.stdout);
    assert!(s.contains("kind: WasmPlugin") && !s.contains("kind: EnvoyFilter"));
    assert!(s.starts_with("# Generated by tenant-egress "));
    assert!(s.contains("# Regenerate with: tenant-egress generate policy.yaml --allow-unpinned\n"));
    // JSON: one List.
    let out = run_in(
        dir,
        &[
            "generate",
            "policy.yaml",
            "--format",
            "json",
            "--allow-unpinned",
        ],
        None,
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["apiVersion"].as_str(), v["kind"].as_str()),
        (Some("v1"), Some("List"))
    );
    assert!(v["items"].as_array().unwrap().len() >= 2);
    // --out DIR: one file per kind, deterministic.
    let tmp = std::env::temp_dir().join(format!("tenant-egress-manifests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = run_in(
        dir,
        &[
            "generate",
            "policy.yaml",
            "--allow-unpinned",
            "--out",
            tmp.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut files: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            "peerauthentication.yaml",
            "sidecars.yaml",
            "wasmplugin.yaml"
        ]
    );
    let sidecars = std::fs::read_to_string(tmp.join("sidecars.yaml")).unwrap();
    assert!(sidecars.contains("kind: Sidecar") && !sidecars.contains("kind: WasmPlugin"));
    // Both ends, the default, and no note about a gap: the destination end's plugins (SERVER)
    // and STRICT mTLS.
    assert!(
        !text(&out.stderr).contains("only the"),
        "{}",
        text(&out.stderr)
    );
    // The example admits no caller outside its tenants: enforced at the destination, its
    // tenants refuse their ingress gateway, and generate says so.
    assert!(
        text(&out.stderr).contains("tenants: tenant(s) default, foo have no inbound entry"),
        "{}",
        text(&out.stderr)
    );
    let plugins = std::fs::read_to_string(tmp.join("wasmplugin.yaml")).unwrap();
    assert!(plugins.contains("mode: CLIENT") && plugins.contains("mode: SERVER"));
    assert!(
        plugins.contains("pluginName: tenant-egress-inbound\n"),
        "{plugins}"
    );
    let pa = std::fs::read_to_string(tmp.join("peerauthentication.yaml")).unwrap();
    assert!(
        pa.contains("kind: PeerAuthentication") && pa.contains("mode: STRICT"),
        "{pa}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
    // The caller's end only, on purpose: said on stderr, in the output, and in the header's
    // command; the destination's only, likewise; and the PeerAuthentication opt-out.
    let out = run_in(
        dir,
        &[
            "generate",
            "policy.yaml",
            "--allow-unpinned",
            "--ends",
            "source",
        ],
        None,
    );
    let s = text(&out.stdout);
    assert!(
        s.contains("mode: CLIENT") && !s.contains("mode: SERVER"),
        "{s}"
    );
    assert!(!s.contains("kind: PeerAuthentication"));
    let gap = "only the caller's end is enforced (--ends source): a pod whose tenant switches off its own sidecar";
    assert!(
        text(&out.stderr).contains(&format!("note: {gap}")),
        "{}",
        text(&out.stderr)
    );
    assert!(
        s.contains(
            "# NOTE: only the caller's end is enforced (--ends source): a pod whose tenant switches \
             off its own\n# sidecar or its capture"
        ),
        "{s}"
    );
    assert!(!text(&out.stderr).contains("no inbound entry"));
    assert!(s.contains("# Regenerate with: tenant-egress generate policy.yaml --allow-unpinned --ends source\n"), "{s}");
    let out = run_in(
        dir,
        &[
            "generate",
            "policy.yaml",
            "--allow-unpinned",
            "--ends",
            "destination",
            "--no-peer-authentication",
        ],
        None,
    );
    let s = text(&out.stdout);
    assert!(
        !s.contains("mode: CLIENT") && s.contains("mode: SERVER"),
        "{s}"
    );
    assert!(
        s.contains("--ends destination --no-peer-authentication\n"),
        "the header's command keeps the choice: {s}"
    );
    assert!(!s.contains("kind: PeerAuthentication"));
    assert!(
        text(&out.stderr).contains("note: only the destination's end is enforced (--ends destination): destinations without a sidecar"),
        "{}",
        text(&out.stderr)
    );
    // The EnvoyFilter form is the caller's end only: asked for with the destination's end
    // alone it is refused; with both (the default) the output says what is missing.
    let out = run_in(
        dir,
        &[
            "generate",
            "policy.yaml",
            "--only",
            "envoyfilter",
            "--ends",
            "destination",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--only wasmplugin"));
    let out = run_in(
        dir,
        &["generate", "policy.yaml", "--only", "envoyfilter"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--only envoyfilter places the caller's end only"),
        "{}",
        text(&out.stderr)
    );
    // The destination end alone still checks the module is pinned (FAIL_CLOSE).
    let out = run_in(
        dir,
        &["generate", "policy.yaml", "--ends", "destination"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("refusing a FAIL_CLOSE plugin"));
    // Bad options are usage errors.
    let out = run_in(dir, &["generate", "policy.yaml", "--sha256", "ABC"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("64 lowercase hex"),
        "{}",
        text(&out.stderr)
    );
    let out = run_in(
        dir,
        &["generate", "policy.yaml", "--url", "ftp://x/y.wasm"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("ftp://"),
        "{}",
        text(&out.stderr)
    );
    let out = run_in(
        dir,
        &[
            "generate",
            "policy.yaml",
            "--url",
            "oci://r/x@sha256:aaaa",
            "--sha256",
            &"b".repeat(64),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = run_in(
        dir,
        &["generate", "policy.yaml", "--shared-namespaces", "a"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A tenant owning the root namespace is refused.
    let out = run_in(
        dir,
        &["generate", "-"],
        Some("apiVersion: tenant-egress/v1\ntenants: [{name: t, namespaces: [istio-system], egress: [{hosts: [\"./*\"]}]}]\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("root namespace"),
        "{}",
        text(&out.stderr)
    );
    // Every subcommand teaches in its --help.
    for sub in ["generate", "import", "graph"] {
        let out = run_in(dir, &[sub, "--help"], None);
        let help = text(&out.stdout);
        assert!(help.contains("Examples:"), "{sub} --help:\n{help}");
    }
    let help = text(&run_in(dir, &["generate", "--help"], None).stdout);
    assert!(help.contains(&manifest::default_wasm_url()), "{help}");
}

/// Audit must not widen what Istio scopes today: an audit tenant's Sidecars are the enforced
/// ones (workload Sidecars included) unless `--audit-sidecars open` is asked for.
#[test]
fn audit_tenants_keep_scoped_sidecars_unless_asked() {
    let spec = spec_of(json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "a", "namespaces": ["a"], "mode": "audit",
                     "outboundTrafficPolicy": "REGISTRY_ONLY",
                     "egress": [{"hosts": ["./*"]}],
                     "workloads": [{"name": "w", "selector": {"app": "w"}, "egress": [{"hosts": ["b/*"]}]}]}]
    }));
    let audit = generate_docs(&spec, &sidecar_opts());
    let mut enforced = spec.clone();
    enforced.tenants[0].mode = None;
    assert_eq!(
        audit,
        generate_docs(&enforced, &sidecar_opts()),
        "audit and enforce must generate the same Sidecars by default"
    );
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0]["spec"]["egress"][0]["hosts"][0], "./*");
    assert_eq!(
        audit[0]["spec"]["outboundTrafficPolicy"]["mode"],
        "REGISTRY_ONLY"
    );
    assert_eq!(audit[1]["metadata"]["name"], "w");
    let open = manifest::generate(
        &spec,
        &Options {
            audit_sidecars: AuditSidecars::Open,
            ..sidecar_opts()
        },
    )
    .unwrap();
    assert_eq!(open.docs.len(), 1);
    assert_eq!(
        open.docs[0].value.to_json()["spec"]["egress"][0]["hosts"][0],
        "*/*"
    );
    assert!(open.notes[0].contains("audit mode"));
}

#[test]
fn an_empty_tenant_imports_nothing_not_everything() {
    let spec = spec_of(json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "a", "namespaces": ["a"]}]
    }));
    let docs = generate_docs(&spec, &sidecar_opts());
    assert_eq!(docs[0]["spec"]["egress"], json!([{"hosts": ["~/*"]}]));
}

/// `--api trafficextension` on the command line: the same plugins as TrafficExtensions, the
/// header's command keeps the choice, an `--out` directory swaps `wasmplugin.yaml` for
/// `trafficextension.yaml` (so `kubectl apply -f DIR` never applies both forms), and it is
/// refused with `--only envoyfilter`, which emits no plugin.
#[test]
fn generate_cli_api_trafficextension() {
    let dir = examples()
        .into_iter()
        .find(|d| d.ends_with(TRAFFIC_EXTENSION_EXAMPLE))
        .unwrap();
    let tmp = std::env::temp_dir().join(format!("tenant-egress-te-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let gen = |extra: &[&str]| {
        // Both ends: the default.
        let mut args = vec!["generate", "policy.yaml", "--allow-unpinned"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", tmp.to_str().unwrap()]);
        let out = run_in(&dir, &args, None);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let mut files: Vec<String> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        (files, text(&out.stderr))
    };
    let (files, _) = gen(&[]);
    assert_eq!(
        files,
        [
            "peerauthentication.yaml",
            "sidecars.yaml",
            "wasmplugin.yaml"
        ]
    );
    let wasm_plugins = std::fs::read_to_string(tmp.join("wasmplugin.yaml")).unwrap();
    let (files, said) = gen(&["--api", "trafficextension"]);
    assert_eq!(
        files,
        [
            "peerauthentication.yaml",
            "sidecars.yaml",
            "trafficextension.yaml"
        ],
        "{said}"
    );
    assert!(
        said.contains("removed") && said.contains("wasmplugin.yaml"),
        "{said}"
    );
    let te = std::fs::read_to_string(tmp.join("trafficextension.yaml")).unwrap();
    assert!(
        te.contains("--allow-unpinned --api trafficextension\n"),
        "the header's command keeps the choice: {te}"
    );
    assert!(!te.contains("kind: WasmPlugin"), "{te}");
    // One TrafficExtension per WasmPlugin, same names and namespaces, same order.
    let names = |text: &str, kind: &str| -> Vec<(String, String)> {
        import::documents("x", text)
            .unwrap()
            .iter()
            .filter(|d| d["kind"] == kind)
            .map(|d| {
                (
                    d["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    d["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let wp = names(&wasm_plugins, "WasmPlugin");
    assert!(wp.len() >= 4, "{wp:?}");
    assert_eq!(names(&te, "TrafficExtension"), wp);
    // The module's settings moved under spec.wasm; phase, match at the top.
    let first = &import::documents("x", &te).unwrap()[0];
    assert_eq!(first["spec"]["phase"], "EXECUTION_PHASE_AUTHZ");
    assert_eq!(first["spec"]["match"][0]["mode"], "CLIENT");
    assert_eq!(first["spec"]["wasm"]["pluginName"], "tenant-egress");
    assert_eq!(first["spec"]["wasm"]["failStrategy"], "FAIL_CLOSE");
    let _ = std::fs::remove_dir_all(&tmp);
    let out = run_in(
        &dir,
        &[
            "generate",
            "policy.yaml",
            "--only",
            "envoyfilter",
            "--api",
            "trafficextension",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--only envoyfilter"),
        "{}",
        text(&out.stderr)
    );
}
