//! Istio manifests from a policy, and back.
//!
//! The policy is the one source: [`generate`] turns it into the `Sidecar`s that scope Istio's
//! configuration exactly as the filter enforces (see [`sidecar`]), plus the `WasmPlugin`
//! ([`wasmplugin`]) or `EnvoyFilter` ([`envoyfilter`]) that loads the filter with the same policy
//! as its configuration. [`import`] reads existing Sidecars into a policy; [`graph`] draws who may
//! reach whom.
//!
//! Everything here is pure: documents in, documents (as [`serde_yaml::Value`], which keeps field
//! order) out; the CLI does the I/O. Output is deterministic: tenants and namespaces in document
//! order, listeners port-scoped by port then the catch-all, fixed names.

pub mod envoyfilter;
pub mod graph;
pub mod import;
pub mod sidecar;
pub mod wasmplugin;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_yaml::Value;

use tenant_egress_core::spec::{Mode, PolicySpec};

/// This build's version (stamped into headers and the default image tag).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Label every generated object carries, so `kubectl get -l` finds them.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "tenant-egress";
/// Label naming the tenant a Sidecar was generated for.
pub const TENANT_LABEL: &str = "tenant-egress/tenant";
/// Label naming the workload exception a Sidecar was generated for.
pub const WORKLOAD_LABEL: &str = "tenant-egress/workload";
/// Istio's default config root namespace (`meshConfig.rootNamespace`).
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";
/// Name of every namespace-wide (selector-less) Sidecar, as in Istio's documentation.
pub const DEFAULT_SIDECAR_NAME: &str = "default";
/// Name of the WasmPlugin / EnvoyFilter objects, and the plugin's `root_id`.
pub const PLUGIN_NAME: &str = "tenant-egress";
/// Name (and root id) of the NETWORK plugin. The filter learns its kind from Envoy, whatever the
/// root id, but it must differ from [`PLUGIN_NAME`]: Envoy gives filters with the same VM, root id
/// and configuration one root context, which serves one kind (`filter/src/root.rs`).
pub const NETWORK_PLUGIN_NAME: &str = "tenant-egress-tcp";
/// The filter's Envoy stats prefix (`tenant_egress.allowed`, `tenant_egress.denied.*`).
pub const STATS_PREFIX: &str = "tenant_egress";
/// Where the `file://` and EnvoyFilter set-ups expect the module inside the proxy container.
pub const DEFAULT_LOCAL_WASM: &str = "/var/local/lib/wasm/tenant_egress_filter.wasm";

/// The image `--url` defaults to: the filter of this very version, as a Wasm OCI image.
pub fn default_wasm_url() -> String {
    format!("oci://ghcr.io/tenant-egress/tenant-egress-filter:{VERSION}")
}

/// Which documents to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Sidecars plus the WasmPlugin (the default).
    Default,
    /// Only the Sidecars.
    Sidecars,
    /// Only the WasmPlugin(s).
    WasmPlugin,
    /// Only the EnvoyFilter(s): the alternative to the WasmPlugin, never emitted with it.
    EnvoyFilter,
}

/// Where the filter is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmScope {
    /// One object in the root namespace: every sidecar in the mesh loads the filter.
    Mesh,
    /// One object in each tenant namespace.
    Namespace,
}

/// `WasmPlugin.failStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailStrategy {
    /// Requests fail while the plugin cannot run (Envoy `FAIL_CLOSED`).
    FailClose,
    /// Requests bypass the plugin while it cannot run.
    FailOpen,
    /// A new VM is started after a fatal error (Envoy `FAIL_RELOAD`).
    FailReload,
}

impl FailStrategy {
    /// The WasmPlugin spelling.
    pub fn wasm_plugin(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSE",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }

    /// The Envoy `PluginConfig.failure_policy` spelling.
    pub fn envoy(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSED",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// What the Sidecars of a tenant in `audit` mode look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditSidecars {
    /// `*/*`: Istio blocks nothing new, so audit mode really lets everything through while the
    /// filter reports what enforcement would deny (the safe roll-out default).
    Open,
    /// The same scoped Sidecars as in enforce mode (Istio then already blocks what they hide).
    Scoped,
}

/// How to load the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmOptions {
    /// `oci://`, `https://`, `http://` or `file://` URL of the module.
    pub url: String,
    /// Expected SHA-256 of the module (64 lowercase hex digits).
    pub sha256: Option<String>,
    /// `IfNotPresent` or `Always` (unset: Istio's default).
    pub image_pull_policy: Option<String>,
    /// What happens while the plugin cannot run.
    pub fail_strategy: FailStrategy,
    /// Mesh-wide or per namespace.
    pub scope: WasmScope,
}

impl Default for WasmOptions {
    fn default() -> Self {
        WasmOptions {
            url: default_wasm_url(),
            sha256: None,
            image_pull_policy: None,
            fail_strategy: FailStrategy::FailClose,
            scope: WasmScope::Mesh,
        }
    }
}

/// Everything `generate` can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Which documents.
    pub selection: Selection,
    /// Istio's config root namespace.
    pub root_namespace: String,
    /// Also emit a selector-less Sidecar in the root namespace (the default for namespaces no
    /// tenant owns).
    pub emit_root_default: bool,
    /// Namespaces every pod under the root default may reach besides its own.
    pub shared_namespaces: Vec<String>,
    /// Filter loading.
    pub wasm: WasmOptions,
    /// Sidecars of tenants in audit mode.
    pub audit_sidecars: AuditSidecars,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            selection: Selection::Default,
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_owned(),
            emit_root_default: false,
            shared_namespaces: Vec::new(),
            wasm: WasmOptions::default(),
            audit_sidecars: AuditSidecars::Open,
        }
    }
}

/// The kind of a generated document (also the file it goes to with `--out DIR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DocKind {
    /// `networking.istio.io/v1` Sidecar.
    Sidecar,
    /// `extensions.istio.io/v1alpha1` WasmPlugin.
    WasmPlugin,
    /// `networking.istio.io/v1alpha3` EnvoyFilter.
    EnvoyFilter,
}

impl DocKind {
    /// File stem used with `--out DIR`.
    pub fn file_stem(self) -> &'static str {
        match self {
            DocKind::Sidecar => "sidecars",
            DocKind::WasmPlugin => "wasmplugin",
            DocKind::EnvoyFilter => "envoyfilter",
        }
    }
}

/// One generated Kubernetes object.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// Which kind (and file).
    pub kind: DocKind,
    /// Comment lines printed above the document in YAML (without `# `).
    pub comment: Vec<String>,
    /// The object, field order preserved.
    pub value: Value,
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generated {
    /// The documents, in output order.
    pub docs: Vec<Doc>,
    /// Things the user should know (printed to stderr as `note: ...`).
    pub notes: Vec<String>,
}

/// Why the manifests cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// A bad command-line option value.
    #[error("{0}")]
    Option(String),
    /// The policy cannot be expressed as Istio objects.
    #[error("{0}")]
    Policy(String),
    /// Serialization failed (a bug).
    #[error("cannot serialize a manifest: {0}")]
    Serialize(String),
}

/// Object metadata as generated.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Metadata {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl Metadata {
    pub(crate) fn new(name: &str, namespace: &str, extra: &[(&str, &str)]) -> Self {
        let mut labels = BTreeMap::new();
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
        for (k, v) in extra {
            labels.insert((*k).to_owned(), (*v).to_owned());
        }
        Metadata {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            labels,
        }
    }
}

pub(crate) fn to_value<T: Serialize>(v: &T) -> Result<Value, GenerateError> {
    serde_yaml::to_value(v).map_err(|e| GenerateError::Serialize(e.to_string()))
}

/// The effective mode of tenant `t`.
pub(crate) fn tenant_mode(spec: &PolicySpec, t: usize) -> Mode {
    spec.tenants
        .get(t)
        .and_then(|t| t.mode)
        .unwrap_or(spec.mode)
}

fn check_options(spec: &PolicySpec, opts: &Options) -> Result<(), GenerateError> {
    tenant_egress_core::name::check_namespace(&opts.root_namespace).map_err(|e| {
        GenerateError::Option(format!(
            "--root-namespace \"{}\" is not a namespace name: {e}",
            opts.root_namespace
        ))
    })?;
    for ns in &opts.shared_namespaces {
        tenant_egress_core::name::check_namespace(ns).map_err(|e| {
            GenerateError::Option(format!(
                "--shared-namespaces: \"{ns}\" is not a namespace name: {e}"
            ))
        })?;
    }
    if !opts.shared_namespaces.is_empty() && !opts.emit_root_default {
        return Err(GenerateError::Option(
            "--shared-namespaces only shapes the root-namespace default; add --emit-root-default"
                .into(),
        ));
    }
    for tenant in &spec.tenants {
        if tenant.namespaces.contains(&opts.root_namespace) {
            return Err(GenerateError::Policy(format!(
                "tenant \"{}\" owns namespace \"{}\", Istio's root namespace: a selector-less Sidecar \
                 there is the default for every namespace without its own Sidecar, and a WasmPlugin \
                 there applies mesh-wide. Leave the root namespace out of the tenants (use \
                 --emit-root-default for the mesh default), or pass the real root with --root-namespace",
                tenant.name, opts.root_namespace
            )));
        }
        for w in &tenant.workloads {
            if w.name == DEFAULT_SIDECAR_NAME {
                return Err(GenerateError::Policy(format!(
                    "tenant \"{}\": workload exception \"{DEFAULT_SIDECAR_NAME}\" would have the same \
                     Sidecar name as the namespace default; rename the exception",
                    tenant.name
                )));
            }
        }
    }
    Ok(())
}

/// Generates the manifests for a validated policy.
pub fn generate(spec: &PolicySpec, opts: &Options) -> Result<Generated, GenerateError> {
    check_options(spec, opts)?;
    let mut out = Generated::default();
    let (sidecars, wasm, envoy) = match opts.selection {
        Selection::Default => (true, true, false),
        Selection::Sidecars => (true, false, false),
        Selection::WasmPlugin => (false, true, false),
        Selection::EnvoyFilter => (false, false, true),
    };
    if sidecars {
        sidecar::generate(spec, opts, &mut out)?;
    }
    if wasm {
        wasmplugin::generate(spec, opts, &mut out)?;
    }
    if envoy {
        envoyfilter::generate(spec, opts, &mut out)?;
    }
    Ok(out)
}

/// The header comment of a generated file.
pub fn header(source: &str, command: &str) -> String {
    format!(
        "# Generated by tenant-egress {VERSION} from {source}; do not edit.\n\
         # Regenerate with: {command}\n"
    )
}

/// Renders documents as one multi-document YAML stream with the header on top.
pub fn render_yaml(header: &str, docs: &[&Doc]) -> Result<String, GenerateError> {
    let mut out = String::from(header);
    for doc in docs {
        out.push_str("---\n");
        for line in &doc.comment {
            if line.is_empty() {
                out.push_str("#\n");
            } else {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
        }
        let text = serde_yaml::to_string(&doc.value)
            .map_err(|e| GenerateError::Serialize(e.to_string()))?;
        out.push_str(&text);
    }
    Ok(out)
}

/// Renders documents as one `v1` `List` (what `kubectl apply -f` accepts as JSON).
pub fn render_json(docs: &[&Doc]) -> Result<String, GenerateError> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct List<'a> {
        api_version: &'static str,
        kind: &'static str,
        items: Vec<&'a Value>,
    }
    let list = List {
        api_version: "v1",
        kind: "List",
        items: docs.iter().map(|d| &d.value).collect(),
    };
    let mut text =
        serde_json::to_string_pretty(&list).map_err(|e| GenerateError::Serialize(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Selection::Default => "sidecars+wasmplugin",
            Selection::Sidecars => "sidecars",
            Selection::WasmPlugin => "wasmplugin",
            Selection::EnvoyFilter => "envoyfilter",
        })
    }
}

/// Checks a `--sha256` value: 64 lowercase hex digits, as the WasmPlugin CRD requires.
pub fn check_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "\"{s}\" is not a SHA-256 digest: expected 64 lowercase hex digits (sha256sum prints it)"
        ))
    }
}

/// The URL scheme of a module location (`oci` when there is none, as Istio assumes).
pub fn url_scheme(url: &str) -> &str {
    match url.split_once("://") {
        Some((scheme, _)) => scheme,
        None => "oci",
    }
}

/// Checks a `--url` value against what Istio accepts (`oci`, `file`, `http`, `https`) and the
/// digest in an `@sha256:` reference against `--sha256`.
pub fn check_url(url: &str, sha256: Option<&str>) -> Result<(), String> {
    if url.is_empty() {
        return Err("the module URL is empty".into());
    }
    let scheme = url_scheme(url);
    if !matches!(scheme, "oci" | "file" | "http" | "https") {
        return Err(format!(
            "URL scheme \"{scheme}://\" is not one Istio loads Wasm from (oci://, file://, https://, http://)"
        ));
    }
    if scheme == "file" && !url.starts_with("file:///") {
        return Err(format!(
            "\"{url}\" is not an absolute file URL; write file:///path/inside/the/proxy/container.wasm"
        ));
    }
    if let (Some((_, digest)), Some(sum)) = (url.rsplit_once("@sha256:"), sha256) {
        if digest != sum {
            return Err(format!(
                "the URL pins digest sha256:{digest} but --sha256 is {sum}; Istio requires them to agree"
            ));
        }
    }
    Ok(())
}
