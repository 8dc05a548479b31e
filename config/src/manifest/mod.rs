//! Istio manifests from a policy, and back.
//!
//! The policy is the one source: [`generate`] turns it into the `Sidecar`s that scope Istio's
//! configuration exactly as the filter enforces (see [`sidecar`]), plus the `WasmPlugin`
//! ([`wasmplugin`]) or `EnvoyFilter` ([`envoyfilter`]) that loads the filter with the same policy
//! as its configuration. [`import`] reads existing Sidecars into a policy; [`graph`] draws who may
//! reach whom.
//!
//! Everything here is pure: documents in, documents (as [`crate::yaml::Value`], which keeps field
//! order) out; the CLI does the I/O. Output is deterministic: tenants and namespaces in document
//! order, listeners port-scoped by port then the catch-all, fixed names.

pub mod coverage;
pub mod envoyfilter;
pub mod graph;
pub mod import;
pub mod inbound;
pub mod output;
pub mod overview;
pub mod shard;
pub mod sidecar;
pub mod trafficextension;
pub mod wasmplugin;

pub use trafficextension::PluginApi;

use std::collections::BTreeMap;
use std::fmt;

use crate::load::Input;
use crate::yaml::{self, Value};
use serde::Serialize;

use tenant_egress_core::spec::{Mode, PolicySpec};

pub use shard::Shard;

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

/// Which documents to emit (`generate --only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Selection {
    /// Sidecars plus the WasmPlugins (and the destination end's PeerAuthentications): the
    /// default, no `--only`.
    #[value(skip)]
    Default,
    /// Only the Sidecars.
    Sidecars,
    /// Only the WasmPlugins (the TrafficExtensions with `--api trafficextension`; with the
    /// destination end, its PeerAuthentications too).
    #[value(name = "wasmplugin")]
    WasmPlugin,
    /// Only the EnvoyFilter(s): the alternative to the WasmPlugin, never emitted with it.
    #[value(name = "envoyfilter")]
    EnvoyFilter,
}

/// Which end(s) of a request the filter enforces at (`generate --ends`).
///
/// Both is the default (issue 12): the caller's end alone can be switched off by the caller's
/// own tenant (`sidecar.istio.io/inject: "false"`, `excludeOutboundPorts`, `hostNetwork`), and
/// the destination's end alone does not guard destinations without a sidecar. Either end alone
/// is a choice made on purpose, and `generate` says what it leaves open ([`Ends::gap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Ends {
    /// The caller's sidecar AND the destination's: a tenant that switches off its own sidecar
    /// is still refused where it cannot tamper.
    #[default]
    Both,
    /// Only the caller's own sidecar (outbound).
    Source,
    /// Only the destination's sidecar (inbound, on the caller's mTLS identity).
    Destination,
}

impl Ends {
    /// Whether the caller's end is enforced.
    pub fn source(self) -> bool {
        matches!(self, Ends::Both | Ends::Source)
    }

    /// Whether the destination's end is enforced.
    pub fn destination(self) -> bool {
        matches!(self, Ends::Both | Ends::Destination)
    }

    /// What enforcing at this end alone leaves open (`None` for both ends).
    pub fn gap(self) -> Option<&'static str> {
        match self {
            Ends::Both => None,
            Ends::Source => Some(
                "only the caller's end is enforced (--ends source): a pod whose tenant switches off its own \
                 sidecar or its capture (sidecar.istio.io/inject: \"false\", \
                 traffic.sidecar.istio.io/excludeOutboundPorts or excludeOutboundIPRanges, hostNetwork) \
                 reaches other tenants unchecked; --ends both (the default) also refuses it at the \
                 destination, on its mTLS identity",
            ),
            Ends::Destination => Some(
                "only the destination's end is enforced (--ends destination): destinations without a \
                 sidecar (pods outside the mesh, external hosts) are not guarded, egress to them is \
                 left to the Sidecars' scoping, and a denied request is refused only after it crossed \
                 the network; --ends both (the default) also decides in the caller's own sidecar",
            ),
        }
    }
}

/// Where the filter is installed (`generate --wasm-scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WasmScope {
    /// One object in the root namespace: every sidecar in the mesh loads the filter.
    Mesh,
    /// One object in each tenant namespace.
    Namespace,
}

/// `WasmPlugin.failStrategy` (`generate --fail-strategy`, spelled as in the WasmPlugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailStrategy {
    /// Requests fail while the plugin cannot run (Envoy `FAIL_CLOSED`).
    #[value(name = "FAIL_CLOSE")]
    FailClose,
    /// Requests bypass the plugin while it cannot run.
    #[value(name = "FAIL_OPEN")]
    FailOpen,
    /// A new VM is started after a fatal error (Envoy `FAIL_RELOAD`).
    #[value(name = "FAIL_RELOAD")]
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

/// What the Sidecars of a tenant in `audit` mode look like (`generate --audit-sidecars`).
///
/// The default is `scoped`: the Sidecars of an audit tenant are the ones enforcement would
/// generate, so a migration that starts from today's Sidecars (`import`) keeps exactly their
/// scoping while the filter only reports. `open` would silently widen what Istio scopes today
/// (a REGISTRY_ONLY namespace would reach the whole mesh), so it must be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditSidecars {
    /// The same scoped Sidecars as in enforce mode: what Istio scopes does not change when a
    /// tenant goes from audit to enforce, only the filter starts blocking (the default).
    Scoped,
    /// `*/*`: Istio hides nothing from audit tenants while the filter reports what enforcement
    /// would deny. Wider than any scoped Sidecar: never the default.
    Open,
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
    /// With [`WasmScope::Namespace`]: only these tenant namespaces (a staged rollout); empty is
    /// every tenant namespace.
    pub namespaces: Vec<String>,
    /// Accept a remote module without a digest under `FAIL_CLOSE` ([`check_pinned`]).
    pub allow_unpinned: bool,
    /// One shard per tenant namespace (the default) or the whole policy per plugin.
    pub shard: Shard,
}

impl Default for WasmOptions {
    fn default() -> Self {
        WasmOptions {
            url: default_wasm_url(),
            sha256: None,
            image_pull_policy: None,
            fail_strategy: FailStrategy::FailClose,
            scope: WasmScope::Mesh,
            namespaces: Vec::new(),
            allow_unpinned: false,
            shard: Shard::Namespace,
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
    /// No generated object may be larger (its JSON, in bytes).
    pub max_object_bytes: usize,
    /// Which end(s) enforce.
    pub ends: Ends,
    /// With the destination end: a STRICT PeerAuthentication per tenant namespace.
    pub peer_authentication: bool,
    /// The Istio API of the plugins: WasmPlugin, or TrafficExtension (Istio 1.30+).
    pub api: PluginApi,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            selection: Selection::Default,
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_owned(),
            emit_root_default: false,
            shared_namespaces: Vec::new(),
            wasm: WasmOptions::default(),
            audit_sidecars: AuditSidecars::Scoped,
            max_object_bytes: shard::DEFAULT_MAX_OBJECT_BYTES,
            ends: Ends::Both,
            peer_authentication: true,
            api: PluginApi::WasmPlugin,
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
    /// `security.istio.io/v1` PeerAuthentication.
    PeerAuthentication,
    /// `extensions.istio.io/v1alpha1` TrafficExtension (`--api trafficextension`).
    TrafficExtension,
}

impl DocKind {
    /// File stem used with `--out DIR`.
    pub fn file_stem(self) -> &'static str {
        match self {
            DocKind::Sidecar => "sidecars",
            DocKind::WasmPlugin => "wasmplugin",
            DocKind::EnvoyFilter => "envoyfilter",
            DocKind::PeerAuthentication => "peerauthentication",
            DocKind::TrafficExtension => "trafficextension",
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
    Value::from_serialize(v).map_err(|e| GenerateError::Serialize(e.to_string()))
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
        wasmplugin::check(spec, opts, &mut out)?;
        if opts.ends.source() {
            wasmplugin::generate(spec, opts, &mut out)?;
        }
        if opts.ends.destination() {
            inbound::generate(spec, opts, &mut out)?;
        }
    }
    if envoy {
        // The destination end is a SERVER-mode WasmPlugin; there is no EnvoyFilter form of it.
        match opts.ends {
            Ends::Destination => {
                return Err(GenerateError::Option(
                    "--only envoyfilter places the caller's end only; the destination end \
                     (--ends destination) is generated as WasmPlugins: --only wasmplugin"
                        .into(),
                ))
            }
            Ends::Both => out.notes.push(
                "--only envoyfilter places the caller's end only: generate the destination end's \
                 WasmPlugins and PeerAuthentications with --only wasmplugin --ends destination"
                    .to_owned(),
            ),
            Ends::Source => {}
        }
        envoyfilter::generate(spec, opts, &mut out)?;
    }
    trafficextension::render(opts, &mut out)?;
    if wasm || envoy {
        if let Some(gap) = opts.ends.gap() {
            // Said on stderr and in the output itself, where a reviewer of the manifests sees it.
            out.notes.push(gap.to_owned());
            if let Some(first) = out.docs.iter_mut().find(|d| d.kind != DocKind::Sidecar) {
                let mut comment = wrap(&format!("NOTE: {gap}."), 96);
                if !first.comment.is_empty() {
                    comment.push(String::new());
                }
                comment.append(&mut first.comment);
                first.comment = comment;
            }
        }
    }
    shard::check_sizes(&out.docs, opts.max_object_bytes)?;
    Ok(out)
}

/// `text` as comment lines of at most `width` characters, broken at spaces (a longer word
/// stands on its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The output syntax of `generate` (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A multi-document YAML stream with a header comment.
    #[default]
    Yaml,
    /// One `v1` `List`, which `kubectl apply -f` accepts.
    Json,
}

impl Format {
    /// The file extension used with `--out DIR`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }

    /// Renders documents; `header` heads YAML output (JSON has no comments).
    pub fn render(self, header: &str, docs: &[&Doc]) -> Result<String, GenerateError> {
        match self {
            Format::Yaml => render_yaml(header, docs),
            Format::Json => render_json(docs),
        }
    }

    /// [`Format::render`]'s text in pieces of about [`CHUNK_BYTES`], each handed to `emit` as it
    /// is ready: a large output is written while the rest is rendered, and never held whole
    /// (200 MB for a 100,000-rule policy). `emit` gives back a buffer to fill next (one it is
    /// done with, or a new one): reusing them spares the kernel zeroing fresh pages for every
    /// piece. `emit`'s error stops the rendering.
    pub fn render_chunks<E: From<GenerateError>>(
        self,
        header: &str,
        docs: &[&Doc],
        emit: &mut dyn FnMut(Vec<u8>) -> Result<Vec<u8>, E>,
    ) -> Result<(), E> {
        /// `emit`'s buffer, emptied, to be filled next.
        fn reuse(mut next: Vec<u8>) -> Vec<u8> {
            next.clear();
            next.reserve(CHUNK_BYTES + CHUNK_BYTES / 4);
            next
        }
        match self {
            Format::Yaml => {
                let mut out = String::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
                out.push_str(header);
                let mut writer = yaml::Writer::default();
                for doc in docs {
                    write_yaml_doc(&mut out, &mut writer, doc)?;
                    if out.len() >= CHUNK_BYTES {
                        let next = reuse(emit(std::mem::take(&mut out).into_bytes())?);
                        // Empty, so valid UTF-8.
                        out = String::from_utf8(next).unwrap_or_default();
                    }
                }
                if !out.is_empty() {
                    emit(out.into_bytes())?;
                }
                Ok(())
            }
            Format::Json => {
                struct Chunks<'a, E> {
                    buf: Vec<u8>,
                    emit: &'a mut dyn FnMut(Vec<u8>) -> Result<Vec<u8>, E>,
                    failed: Option<E>,
                }
                impl<E> std::io::Write for Chunks<'_, E> {
                    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                        self.buf.extend_from_slice(bytes);
                        if self.buf.len() >= CHUNK_BYTES {
                            match (self.emit)(std::mem::take(&mut self.buf)) {
                                Ok(next) => self.buf = reuse(next),
                                Err(e) => {
                                    self.failed = Some(e);
                                    return Err(std::io::Error::other("output stopped"));
                                }
                            }
                        }
                        Ok(bytes.len())
                    }
                    fn flush(&mut self) -> std::io::Result<()> {
                        Ok(())
                    }
                }
                let mut chunks = Chunks {
                    buf: Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
                    emit,
                    failed: None,
                };
                let written = serde_json::to_writer_pretty(&mut chunks, &json_list(docs));
                if let Some(e) = chunks.failed.take() {
                    return Err(e);
                }
                written.map_err(|e| GenerateError::Serialize(e.to_string()))?;
                chunks.buf.push(b'\n');
                (chunks.emit)(chunks.buf).map(drop)
            }
        }
    }
}

/// About how many bytes of output [`Format::render_chunks`] hands on at once.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The command line value of a `clap::ValueEnum` option.
fn flag_value<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

/// The command that regenerates the output, for the header: the options that differ from the
/// defaults, in a fixed order, spelled as on the command line.
pub fn regenerate_command(input: &Input, opts: &Options, format: Format) -> String {
    let mut cmd = match input {
        Input::Stdin => "tenant-egress generate - < POLICY".to_owned(),
        Input::File(_) => format!("tenant-egress generate {}", input.label()),
    };
    let defaults = Options::default();
    let mut push = |flag: &str, value: &str| {
        cmd.push_str(" --");
        cmd.push_str(flag);
        if !value.is_empty() {
            cmd.push(' ');
            cmd.push_str(value);
        }
    };
    if opts.selection != defaults.selection {
        push("only", &flag_value(&opts.selection));
    }
    if format != Format::default() {
        push("format", &flag_value(&format));
    }
    if opts.root_namespace != defaults.root_namespace {
        push("root-namespace", &opts.root_namespace);
    }
    if opts.emit_root_default {
        push("emit-root-default", "");
    }
    if !opts.shared_namespaces.is_empty() {
        push("shared-namespaces", &opts.shared_namespaces.join(","));
    }
    let (w, dw) = (&opts.wasm, &defaults.wasm);
    if w.url != dw.url {
        push("url", &w.url);
    }
    if let Some(sum) = &w.sha256 {
        push("sha256", sum);
    }
    if let Some(p) = &w.image_pull_policy {
        push("image-pull-policy", p);
    }
    if w.fail_strategy != dw.fail_strategy {
        push("fail-strategy", &flag_value(&w.fail_strategy));
    }
    if w.scope != dw.scope {
        push("wasm-scope", &flag_value(&w.scope));
    }
    if !w.namespaces.is_empty() {
        push("wasm-namespaces", &w.namespaces.join(","));
    }
    if w.allow_unpinned {
        push("allow-unpinned", "");
    }
    if w.shard != dw.shard {
        push("shard", &flag_value(&w.shard));
    }
    if opts.audit_sidecars != defaults.audit_sidecars {
        push("audit-sidecars", &flag_value(&opts.audit_sidecars));
    }
    if opts.max_object_bytes != defaults.max_object_bytes {
        push("max-object-bytes", &opts.max_object_bytes.to_string());
    }
    if opts.ends != defaults.ends {
        push("ends", &flag_value(&opts.ends));
    }
    if !opts.peer_authentication {
        push("no-peer-authentication", "");
    }
    if opts.api != defaults.api {
        push("api", &flag_value(&opts.api));
    }
    cmd
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
    let mut writer = yaml::Writer::default();
    for doc in docs {
        write_yaml_doc(&mut out, &mut writer, doc)?;
    }
    Ok(out)
}

/// One document of [`render_yaml`]: its separator, its comment, its YAML.
fn write_yaml_doc(
    out: &mut String,
    writer: &mut yaml::Writer,
    doc: &Doc,
) -> Result<(), GenerateError> {
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
    writer
        .write(out, &doc.value)
        .map_err(|e| GenerateError::Serialize(e.to_string()))
}

/// One `v1` `List` of the documents (what `kubectl apply -f` accepts as JSON).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: Vec<&'a Value>,
}

fn json_list<'a>(docs: &[&'a Doc]) -> List<'a> {
    List {
        api_version: "v1",
        kind: "List",
        items: docs.iter().map(|d| &d.value).collect(),
    }
}

/// Renders documents as one `v1` `List` (what `kubectl apply -f` accepts as JSON).
pub fn render_json(docs: &[&Doc]) -> Result<String, GenerateError> {
    let mut text = serde_json::to_string_pretty(&json_list(docs))
        .map_err(|e| GenerateError::Serialize(e.to_string()))?;
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

/// Refuses a `FAIL_CLOSE` plugin whose module is fetched from a registry or web server by a
/// mutable reference (a tag, a URL) with no digest, unless `--allow-unpinned`.
///
/// Why: Istio fetches the module on every proxy. If the tag moves to a module this policy does
/// not fit, or the pull fails, a `FAIL_CLOSE` plugin turns every outbound request of every
/// sidecar it matches into `RBAC: access denied`. A digest makes the fetch reproducible (and
/// Istio checks it). A `file://` module is part of the proxy image and needs none.
pub fn check_pinned(w: &WasmOptions) -> Result<(), GenerateError> {
    let remote = matches!(url_scheme(&w.url), "oci" | "http" | "https");
    let pinned = w.sha256.is_some() || w.url.contains("@sha256:");
    if !remote || pinned || w.fail_strategy != FailStrategy::FailClose || w.allow_unpinned {
        return Ok(());
    }
    let repo = match w.url.strip_prefix("oci://") {
        Some(r) => format!(
            "oci://{}",
            r.rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .map_or(r, |(repo, _)| repo)
        ),
        None => w.url.clone(),
    };
    Err(GenerateError::Option(format!(
        "refusing a FAIL_CLOSE plugin loaded from \"{}\" without a digest: if that tag moves or its \
         pull fails, every outbound request of every matched sidecar fails (\"RBAC: access denied\"). \
         Pin the module: --url {repo}@sha256:<digest> --sha256 <digest> (istio/wasm-image/build.sh \
         push prints both), or load it from the proxy image with --url file:///..., or accept the \
         risk explicitly with --allow-unpinned (a demo), or --fail-strategy FAIL_OPEN (requests \
         then bypass the filter while it cannot run)",
        w.url
    )))
}

/// Notes a `FAIL_CLOSE` plugin for a policy that enforces nothing (every tenant in audit
/// mode): a module that cannot be fetched or run would then fail requests although the policy
/// only reports, which is not "audit changes nothing".
pub(crate) fn note_fail_close_in_audit(spec: &PolicySpec, opts: &Options, out: &mut Generated) {
    let all_audit = (0..spec.tenants.len()).all(|t| tenant_mode(spec, t) == Mode::Audit);
    if all_audit && opts.wasm.fail_strategy == FailStrategy::FailClose {
        out.notes.push(
            "every tenant is in audit mode but the plugin is FAIL_CLOSE: if a proxy cannot fetch or \
             run the module, its requests fail although nothing is enforced; --fail-strategy \
             FAIL_OPEN until the first tenant is enforced"
                .to_owned(),
        );
    }
}

/// The namespaces the WasmPlugin / EnvoyFilter objects go into: the root namespace (mesh), or
/// the tenant namespaces (all, or the `--wasm-namespaces` subset of a staged rollout).
pub(crate) fn plugin_namespaces<'a>(
    spec: &'a PolicySpec,
    opts: &'a Options,
) -> Result<Vec<&'a str>, GenerateError> {
    let w = &opts.wasm;
    let tenant_ns = || {
        spec.tenants
            .iter()
            .flat_map(|t| t.namespaces.iter().map(String::as_str))
    };
    match w.scope {
        WasmScope::Mesh if !w.namespaces.is_empty() => Err(GenerateError::Option(
            "--wasm-namespaces picks namespaces of a namespace-scoped plugin; add --wasm-scope namespace"
                .into(),
        )),
        WasmScope::Mesh => Ok(vec![opts.root_namespace.as_str()]),
        WasmScope::Namespace if w.namespaces.is_empty() => Ok(tenant_ns().collect()),
        WasmScope::Namespace => {
            for ns in &w.namespaces {
                if !tenant_ns().any(|t| t == ns) {
                    return Err(GenerateError::Option(format!(
                        "--wasm-namespaces: \"{ns}\" is not a namespace of any tenant; the filter only \
                         decides for tenant namespaces"
                    )));
                }
            }
            // Document order, whatever the order on the command line.
            Ok(tenant_ns().filter(|t| w.namespaces.iter().any(|n| n == t)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn regenerate_command_lists_what_differs_from_the_defaults_in_order() {
        let file = Input::File(PathBuf::from("/some/dir/policy.yaml"));
        let defaults = Options::default();
        assert_eq!(
            regenerate_command(&file, &defaults, Format::Yaml),
            "tenant-egress generate policy.yaml"
        );
        assert_eq!(
            regenerate_command(&Input::Stdin, &defaults, Format::Yaml),
            "tenant-egress generate - < POLICY"
        );
        let all = Options {
            selection: Selection::EnvoyFilter,
            root_namespace: "mesh-root".into(),
            emit_root_default: true,
            shared_namespaces: vec!["a".into(), "b".into()],
            wasm: WasmOptions {
                url: "file:///x.wasm".into(),
                sha256: Some("ab".into()),
                image_pull_policy: Some("Always".into()),
                fail_strategy: FailStrategy::FailReload,
                scope: WasmScope::Namespace,
                namespaces: vec!["p".into()],
                allow_unpinned: true,
                shard: Shard::None,
            },
            audit_sidecars: AuditSidecars::Open,
            max_object_bytes: 1000,
            ..Options::default()
        };
        assert_eq!(
            regenerate_command(&file, &all, Format::Json),
            "tenant-egress generate policy.yaml --only envoyfilter --format json \
             --root-namespace mesh-root --emit-root-default --shared-namespaces a,b \
             --url file:///x.wasm --sha256 ab --image-pull-policy Always \
             --fail-strategy FAIL_RELOAD --wasm-scope namespace --wasm-namespaces p \
             --allow-unpinned --shard none --audit-sidecars open --max-object-bytes 1000"
        );
    }

    /// The command-line names are the ones the README, scripts/demo.sh and the header use.
    #[test]
    fn option_values_keep_their_command_line_names() {
        use clap::ValueEnum;
        let names = |vs: &[Option<clap::builder::PossibleValue>]| -> Vec<String> {
            vs.iter()
                .flatten()
                .map(|p| p.get_name().to_owned())
                .collect()
        };
        let sel: Vec<_> = Selection::value_variants()
            .iter()
            .map(ValueEnum::to_possible_value)
            .collect();
        assert_eq!(names(&sel), ["sidecars", "wasmplugin", "envoyfilter"]);
        let fail: Vec<_> = FailStrategy::value_variants()
            .iter()
            .map(ValueEnum::to_possible_value)
            .collect();
        assert_eq!(names(&fail), ["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]);
        for f in FailStrategy::value_variants() {
            assert_eq!(flag_value(f), f.wasm_plugin());
        }
    }
}
