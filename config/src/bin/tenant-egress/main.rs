//! `tenant-egress`: validate, explain, generate Istio manifests from a policy, import existing
//! Sidecars into one, and graph who may reach whom.
//!
//! Exit codes: 0 success, 1 the policy is invalid (or a decision input is), 2 usage or I/O
//! error.
//!
//! This file is the command line only: clap definitions and dispatch. Loading lives in
//! [`tenant_egress_config::load`], the manifests in [`tenant_egress_config::manifest`], the
//! decision and its report in [`tenant_egress_core::explain`].

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use tenant_egress_config::load::{self, Diagnostic, Input, LoadError, Loaded, Severity};
use tenant_egress_config::manifest::{
    self, graph::GraphFormat, graph::GraphView, AuditSidecars, Ends, FailStrategy, Format,
    GenerateError, Options, PluginApi, Selection, WasmOptions, WasmScope, DEFAULT_ROOT_NAMESPACE,
};
use tenant_egress_core::cases::Case;
use tenant_egress_core::explain::{End, RequestSpec, SourceSpec};
use tenant_egress_core::inbound::parse_spiffe;
use tenant_egress_core::Protocol;

#[derive(Parser)]
#[command(
    name = "tenant-egress",
    version,
    about = "Namespace-scoped egress policy for Istio: validate, explain, generate",
    long_about = "tenant-egress keeps tenants of one Kubernetes cluster apart at request time.\n\n\
One policy document (tenants -> namespaces -> allowed destinations in Istio's own \
`namespace/dnsName` host syntax) is validated here, enforced per request by the \
tenant_egress_filter.wasm Envoy filter, and turned into the Sidecar/WasmPlugin manifests \
that scope Istio's configuration the same way.",
    after_help = "Examples:\n  \
tenant-egress validate policy.yaml\n  \
tenant-egress validate policy/    # a policy directory: settings.yaml + tenants/<name>.yaml\n  \
tenant-egress explain policy.yaml --source-namespace prod --authority cockroachdb.uat:26257 \\\n      \
--cluster 'outbound|26257||cockroachdb.uat.svc.cluster.local'\n  \
tenant-egress explain policy.yaml --batch requests.jsonl\n  \
tenant-egress reach policy.yaml --to uat\n  \
tenant-egress validate --strict policy.yaml && tenant-egress test policy.yaml cases.jsonl\n  \
tenant-egress generate policy.yaml --sha256 $DIGEST --url oci://...@sha256:$DIGEST | kubectl apply -f -\n  \
kubectl get sidecars,serviceentries -A -o yaml | tenant-egress import - > policy.yaml\n  \
tenant-egress graph policy.yaml --format mermaid"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a policy: every error with its line, path and tenant (exit 1), then the warnings
    /// (`--strict`: they fail too).
    Validate(ValidateArgs),
    /// Run policy tests: requests with the decision each must get (exit 1 on any mismatch).
    Test(TestArgs),
    /// What a namespace can reach (--from), or who can reach it (--to).
    Reach(ReachArgs),
    /// Decide one request (or a JSON Lines batch) and say why.
    Explain(ExplainArgs),
    /// Generate the Istio manifests: Sidecars, the WasmPlugins of both ends and STRICT mTLS (or
    /// the caller's end as an EnvoyFilter).
    Generate(GenerateArgs),
    /// Turn existing Istio Sidecars into a policy (one tenant per namespace).
    Import(ImportArgs),
    /// Draw which namespaces may reach which, on which ports (Mermaid or Graphviz).
    Graph(GraphArgs),
}

#[derive(Args)]
#[command(
    after_help = "Each error and warning names its line, path and tenant:\n  \
error: policy.yaml:17: tenants[3].egress[0].hosts[2] (tenant prod): ...\n\
A policy directory (settings.yaml + tenants/<name>.yaml) names the file and the\n\
path inside it:\n  \
error: policy/tenants/prod.yaml:5: egress[0].hosts[2] (tenant prod): ...\n\
The same warning in several places is printed once, naming the others.\n\n\
Exit codes: 0 valid, 1 invalid (or, with --strict, any warning), 2 unreadable.\n\n\
Examples:\n  \
tenant-egress validate policy.yaml\n  \
tenant-egress validate --strict -q policy.yaml      # in CI\n  \
tenant-egress validate policy/                      # a policy directory\n  \
tenant-egress validate --json policy.yaml | jq '.diagnostics[]'"
)]
struct ValidateArgs {
    /// Policy document (YAML or JSON; `-` for stdin), or a policy directory (README).
    policy: PathBuf,
    /// Print no warnings and no summary: only errors.
    #[arg(long, short)]
    quiet: bool,
    /// Warnings fail too (exit 1).
    #[arg(long)]
    strict: bool,
    /// Print one JSON object: {"input", "valid", "strict", "summary", "errors", "warnings",
    /// "diagnostics": [{"severity", "path", "line", "tenant", "message", "also"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(
    after_help = "CASES is JSON Lines in the `explain --batch` format, plus `expect` (and an\n\
optional `name`) on each line:\n  \
{\"name\": \"prod keeps its db\", \"expect\": \"allow\",\n   \
\"source\": {\"namespace\": \"prod\"}, \"authority\": \"cockroachdb.prod:26257\"}\n  \
{\"expect\": {\"decision\": \"deny\", \"reason\": \"not-allowed\", \"enforced\": true},\n   \
\"source\": {\"namespace\": \"prod\"}, \"authority\": \"cockroachdb.uat:26257\",\n   \
\"cluster\": \"outbound|26257||cockroachdb.uat.svc.cluster.local\"}\n\
`expect` is \"allow\", \"deny\", or any of decision, reason, enforced, tenant, rule (the\n\
path of the deciding rule, e.g. tenants[0].egress[1]); what it leaves out is not checked.\n\
Each failing case prints what was expected, what came instead, and the explanation.\n\n\
Exit codes: 0 every case passed, 1 a case failed (or could not be read), 2 unreadable input.\n\n\
Example (CI):\n  \
tenant-egress validate --strict policy.yaml && tenant-egress test policy.yaml cases.jsonl"
)]
struct TestArgs {
    /// Policy document (YAML or JSON; `-` for stdin), or a policy directory (README).
    policy: PathBuf,
    /// Test cases (JSON Lines; `-` for stdin).
    cases: PathBuf,
    /// Print one JSON object per case (JSON Lines) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(
    after_help = "--from NS: every listener of NS (port, protocol, hosts, exclusions), then each\n\
workload exception's changes, the mode and the outboundTrafficPolicy.\n\
--to NS: every source namespace (and workload exception) whose egress imports hosts\n\
of NS, on which port; then who reaches it around the egress entries: tenants in\n\
audit mode (nothing is blocked), ALLOW_ANY tenants (its pods by IP address, via\n\
PassthroughCluster) and unknownSource: allow.\n\n\
Examples:\n  \
tenant-egress reach policy.yaml --from prod\n  \
tenant-egress reach policy.yaml --to uat --json"
)]
struct ReachArgs {
    /// Policy document (YAML or JSON; `-` for stdin), or a policy directory (README).
    policy: PathBuf,
    /// What can this namespace reach?
    #[arg(
        long,
        value_name = "NS",
        required_unless_present = "to",
        conflicts_with = "to"
    )]
    from: Option<String>,
    /// Who can reach this namespace?
    #[arg(long, value_name = "NS")]
    to: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(
    after_help = "What is generated (kubectl-apply-ready, deterministic, with a header):\n  \
- per tenant namespace, a selector-less Sidecar `default` mirroring the\n    \
tenant's egress (port-scoped listeners by port, the catch-all last) and its\n    \
outboundTrafficPolicy;\n  \
- per workload exception and tenant namespace, a Sidecar named after the\n    \
exception: the namespace default PLUS the exception (Istio does not inherit;\n    \
listing only the exception would drop the isolation for those pods);\n  \
- with --emit-root-default, a selector-less Sidecar in the root namespace\n    \
(`./*` plus --shared-namespaces, REGISTRY_ONLY) for namespaces no tenant owns;\n  \
- a WasmPlugin (phase AUTHZ, outbound: the caller's end, pluginConfig = the\n    \
policy), mesh-wide in the root namespace or, with --wasm-scope namespace, one\n    \
per tenant namespace. With --only envoyfilter, the EnvoyFilter equivalent\n    \
instead (never both; the caller's end only). Its comment says how to export\n    \
the tenant_egress.* counters;\n  \
- the destination's end (--ends both, the default): per tenant namespace a\n    \
WasmPlugin on inbound traffic (match mode SERVER, phase AUTHZ) deciding on\n    \
the caller's mTLS identity, its NETWORK twin for the policy's TCP ports, and\n    \
for an enforced tenant a STRICT PeerAuthentication (Istio refuses plaintext\n    \
callers; not for tenants in audit mode; --no-peer-authentication).\n  \
With --api trafficextension (Istio 1.30+), the same plugins as TrafficExtensions.\n\n\
Tenants in audit mode get the same scoped Sidecars as enforced ones, so that\n\
audit never widens what Istio scopes today (--audit-sidecars open: `*/*`).\n\
FAIL_CLOSE (the default) needs a pinned remote module: --sha256 or an\n\
@sha256: URL, else generate refuses (or --allow-unpinned). Gateways: the\n\
filter stands aside in gateway proxies unless the policy says\n\
`gateways: enforce`. --out DIR always holds exactly this run's files.\n\n\
Examples:\n  \
tenant-egress generate policy.yaml --allow-unpinned | kubectl apply -f -\n  \
tenant-egress generate policy.yaml --sha256 $DIGEST \\\n      \
--url oci://registry.example.com/tenant-egress-filter@sha256:$DIGEST --out manifests/\n  \
tenant-egress generate policy.yaml --wasm-scope namespace --wasm-namespaces prod ...\n  \
tenant-egress generate policy.yaml --format json | kubectl apply -f -\n  \
tenant-egress generate policy.yaml --only sidecars --emit-root-default \\\n      \
--shared-namespaces istio-system,monitoring\n  \
tenant-egress generate policy.yaml --only wasmplugin \\\n      \
--url oci://registry.example.com/tenant-egress-filter@sha256:$DIGEST \\\n      \
--sha256 $DIGEST\n  \
tenant-egress generate policy.yaml --only envoyfilter \\\n      \
--url file:///var/local/lib/wasm/tenant_egress_filter.wasm"
)]
struct GenerateArgs {
    /// Policy document (YAML or JSON; `-` for stdin), or a policy directory (README).
    policy: PathBuf,
    /// `-` for stdout; a FILE ending in .yaml/.yml/.json for every object in one file; or a
    /// directory for one file per kind (sidecars.yaml, wasmplugin.yaml, envoyfilter.yaml,
    /// peerauthentication.yaml; .json
    /// with --format json). A directory always holds exactly this run's output: files an earlier
    /// run wrote that this one does not are removed (so `kubectl apply -f DIR` never applies a
    /// stale WasmPlugin next to an EnvoyFilter).
    #[arg(long, value_name = "DIR|FILE|-", default_value = "-")]
    out: PathBuf,
    /// Emit only these documents (default: Sidecars and the WasmPlugins; the EnvoyFilter only when
    /// asked for, instead of the WasmPlugin).
    #[arg(long, value_enum)]
    only: Option<Selection>,
    /// YAML (multi-document) or JSON (one `v1` `List`, which `kubectl apply -f` accepts).
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    format: Format,
    /// Istio's config root namespace (meshConfig.rootNamespace).
    #[arg(long, value_name = "NS", default_value = DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
    /// Also emit the root-namespace default Sidecar, for namespaces no tenant owns.
    #[arg(long)]
    emit_root_default: bool,
    /// Namespaces the root default also lets every pod reach (comma-separated).
    #[arg(
        long,
        value_name = "NS,...",
        value_delimiter = ',',
        requires = "emit_root_default"
    )]
    shared_namespaces: Vec<String>,
    /// Where Istio fetches the filter: oci://, https://, http:// or file:// (a path inside the
    /// proxy container). The default is this version's published Wasm OCI image.
    #[arg(long, default_value_t = manifest::default_wasm_url())]
    url: String,
    /// SHA-256 of the module (or, for oci://, of the image manifest): 64 lowercase hex digits.
    #[arg(long, value_parser = parse_sha256)]
    sha256: Option<String>,
    /// Image pull policy for oci:// and http(s):// modules (default: Istio's, IfNotPresent
    /// except for `:latest`).
    #[arg(long, value_parser = ["IfNotPresent", "Always"])]
    image_pull_policy: Option<String>,
    /// What happens to requests while the filter cannot run.
    #[arg(long, value_enum, default_value_t = FailStrategy::FailClose)]
    fail_strategy: FailStrategy,
    /// One WasmPlugin/EnvoyFilter in the root namespace (mesh), or one per tenant namespace.
    #[arg(long, value_enum, default_value_t = WasmScope::Mesh)]
    wasm_scope: WasmScope,
    /// With --wasm-scope namespace: only these tenant namespaces (a staged rollout: one
    /// namespace first, then more, then mesh-wide).
    #[arg(long, value_name = "NS,...", value_delimiter = ',')]
    wasm_namespaces: Vec<String>,
    /// Accept a remote module with no digest under FAIL_CLOSE (a demo; see --sha256).
    #[arg(long)]
    allow_unpinned: bool,
    /// `namespace`: one WasmPlugin per tenant namespace carrying only its tenant (its shard),
    /// plus a small mesh-wide fallback for namespaces no tenant owns; at the destination end,
    /// per tenant namespace every tenant's rules that can name one of its services (or a host
    /// its tenant lists in `serves`; any other host is refused: undeclared-service). `none`: the
    /// whole policy in every plugin (small policies; one object).
    #[arg(long, value_enum, default_value_t = manifest::Shard::Namespace)]
    shard: manifest::Shard,
    /// Refuse to emit any object whose JSON is larger (client-side `kubectl apply` stores a copy
    /// in a 256 KiB annotation; etcd refuses objects over 1572864 bytes, the most allowed here).
    #[arg(long, value_name = "BYTES", default_value_t = manifest::shard::DEFAULT_MAX_OBJECT_BYTES)]
    max_object_bytes: usize,
    /// Sidecars of tenants in audit mode: `scoped` (as enforced: today's scoping kept) or `open`
    /// (`*/*`: wider than any scoped Sidecar).
    #[arg(long, value_enum, default_value_t = AuditSidecars::Scoped)]
    audit_sidecars: AuditSidecars,
    /// Where the filter enforces. `both` (the default): the caller's sidecar AND the
    /// destination's, which decides on the caller's mTLS identity, so a tenant that switches off
    /// its own sidecar is still refused. One end alone is a deliberate choice, and generate
    /// says (stderr and the output) what it leaves open: `source` does not stop a caller that
    /// bypasses its own sidecar; `destination` does not guard destinations without a sidecar
    /// (outside the mesh) and refuses only after the request crossed the network.
    #[arg(long, value_enum, default_value_t = Ends::Both)]
    ends: Ends,
    /// With the destination end, do not emit the STRICT PeerAuthentication per namespace of an
    /// enforced tenant (tenants in audit mode never get one).
    #[arg(long)]
    no_peer_authentication: bool,
    /// The Istio API of the plugins: `wasmplugin` (the default, every Istio since 1.12) or
    /// `trafficextension` (Istio 1.30+, alpha: the same plugins with the module under
    /// `spec.wasm`; see the README, "Choosing --api").
    #[arg(long, value_enum, default_value_t = PluginApi::WasmPlugin)]
    api: PluginApi,
}

#[derive(Args)]
#[command(
    after_help = "Reads Sidecars and ServiceEntries as `kubectl get sidecars,serviceentries -A\n\
-o yaml` prints them (a `List`, or any multi-document YAML; other kinds are\n\
skipped with a warning) and prints the equivalent policy:\n  \
- one tenant per namespace, named after it; its selector-less Sidecar gives the\n    \
tenant's egress and outboundTrafficPolicy (unset: the mesh's, read as ALLOW_ANY);\n  \
- each workload-specific Sidecar becomes a workload exception holding only what\n    \
it adds to the namespace default, so that `generate` recreates it. When it\n    \
drops something the default has, an exception cannot say so (exceptions only\n    \
add): a warning says how the result widens;\n  \
- the root namespace's selector-less Sidecar is the mesh default: reported (with\n    \
the generate flags that recreate it), not made a tenant;\n  \
- a ServiceEntry with a workloadSelector selects pods of its own namespace,\n    \
which then serve its hosts: they go into that tenant's `serves` (the sharded\n    \
destination end refuses any other host but the namespace's Kubernetes\n    \
services, as undeclared-service). Without a selector it adds nothing;\n  \
- unknownSource: allow, so namespaces without a Sidecar stay as they are;\n  \
- mode: audit: generating and applying it changes nothing today's Sidecars do\n    \
(same names, same scoping) and the filter only reports; then enforce one\n    \
tenant at a time (README, \"Rollout on a live mesh\").\n\
Warnings (stderr, `warning: ...`) also flag what looks accidental: a workload\n\
Sidecar with no egress (Istio widens it to */*), a root-namespace Sidecar with a\n\
selector (it applies to root-namespace pods only), ingress/bind/captureMode that\n\
cannot be carried over, illegal hosts, a ServiceEntry in a namespace that gets\n\
no tenant.\n\n\
Examples:\n  \
kubectl get sidecars,serviceentries -A -o yaml | tenant-egress import - > policy.yaml\n  \
tenant-egress import prod-sidecars.yaml uat-sidecars.yaml --out policy.yaml\n  \
tenant-egress import sidecars.yaml --out policy/    # one file per tenant (CODEOWNERS)\n  \
tenant-egress import sidecars.yaml --service-cidr 10.96.0.0/12 --pod-cidr 10.244.0.0/16\n  \
tenant-egress generate policy.yaml --only sidecars | kubectl diff -f -"
)]
struct ImportArgs {
    /// Sidecar and ServiceEntry manifests (YAML, multi-document or `kind: List`; `-` for
    /// stdin).
    #[arg(required = true, value_name = "SIDECAR_YAML")]
    files: Vec<PathBuf>,
    /// Write the policy here instead of stdout: a FILE ending in .yaml/.yml/.json, or else a
    /// policy DIRECTORY (settings.yaml + tenants/<name>.yaml, one file per tenant), which must
    /// not exist yet or be empty.
    #[arg(long, value_name = "FILE|DIR", default_value = "-")]
    out: PathBuf,
    /// Istio's config root namespace (its selector-less Sidecar is the mesh default).
    #[arg(long, value_name = "NS", default_value = DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
    /// The cluster's Service CIDR (repeatable), for `clusterNetworks`:
    /// `kubectl cluster-info dump | grep -m1 service-cluster-ip-range`.
    #[arg(long = "service-cidr", value_name = "CIDR")]
    service_cidrs: Vec<String>,
    /// The cluster's pod CIDR (repeatable), for `clusterNetworks`:
    /// `kubectl cluster-info dump | grep -m1 cluster-cidr`, or the nodes' `spec.podCIDRs`.
    #[arg(long = "pod-cidr", value_name = "CIDR")]
    pod_cidrs: Vec<String>,
}

#[derive(Args)]
#[command(after_help = "Views:\n  \
tenants (default): one node per tenant (its namespaces listed), namespaces no\n    \
tenant owns, `*` (any namespace) and ONE `external hosts` node. One edge per\n    \
source, destination and kind, labelled per port (`26257/TCP`; `all ports` for a\n    \
catch-all, `other ports` next to port-scoped listeners), with the hosts when not\n    \
the whole destination (counted beyond two). Readable at 50 namespaces.\n  \
namespaces: the detailed graph, one node per namespace and per external host.\n  \
--namespace NS: NS alone with its edges out (its egress) and in (every source\n    \
whose egress reaches it), as `reach --from/--to` lists them.\n\
Red edges go around the egress entries (ALLOW_ANY: outside the registry, pods by\n\
IP address; unknownSource: allow); dashed red: exclusions; blue: workload\n\
exceptions; a tenant in audit mode is dashed and says [audit] (nothing blocked).\n\n\
Examples:\n  \
tenant-egress graph policy.yaml > egress.mmd    # paste into a ```mermaid block\n  \
tenant-egress graph policy.yaml --namespace uat --format dot | dot -Tsvg > uat.svg\n  \
tenant-egress graph policy.yaml --whole    # 50 namespaces: whole destinations only\n  \
tenant-egress graph policy.yaml --view namespaces")]
struct GraphArgs {
    /// Policy document (YAML or JSON; `-` for stdin), or a policy directory (README).
    policy: PathBuf,
    /// Mermaid flowchart or Graphviz digraph.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    format: GraphFormat,
    /// One node per tenant (readable at scale), or per namespace and host (detailed).
    #[arg(long, value_enum, default_value_t = GraphView::Tenants, conflicts_with = "namespace")]
    view: GraphView,
    /// Draw only this namespace with its edges in and out.
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Tenants view: leave out edges that reach only single services of a tenant, counting
    /// them in the source's label (who reaches whom as a whole).
    #[arg(long, conflicts_with_all = ["namespace", "view"])]
    whole: bool,
}

#[derive(Args)]
#[command(
    after_help = "Batch input (--batch FILE, `-` for stdin) is JSON Lines, one request per line:\n  \
{\"source\": {\"namespace\": \"prod\", \"labels\": {\"app\": \"web\"}}, \"authority\": \"db.uat:26257\",\n   \
\"cluster\": \"outbound|26257||db.uat.svc.cluster.local\", \"destinationNamespace\": \"uat\",\n   \
\"destinationAddress\": \"10.0.0.7:26257\"}\n\
Only source.namespace is required. At the destination end, a line says so and names the caller:\n  \
{\"at\": \"destination\", \"caller\": \"spiffe://cluster.local/ns/uat/sa/default\",\n   \
\"sni\": \"outbound_.26257_._.cockroachdb.prod.svc.cluster.local\", \"destinationNamespace\": \"prod\",\n   \
\"services\": [\"cockroachdb.prod.svc.cluster.local\"], \"protocol\": \"tcp\"}\n\
Output is one JSON object per input line, in order; a bad\n\
line yields {\"line\": N, \"error\": \"...\"} and the batch goes on."
)]
struct ExplainArgs {
    /// Policy document (YAML or JSON), or a policy directory (README).
    policy: PathBuf,
    /// Source workload namespace (the proxy's NAMESPACE node metadata).
    #[arg(long, required_unless_present_any = ["batch", "at"])]
    source_namespace: Option<String>,
    /// Source pod's service account (the proxy's SERVICE_ACCOUNT node metadata).
    #[arg(long)]
    service_account: Option<String>,
    /// Which end decides: `source` (the caller's sidecar, the default) or `destination` (the
    /// called workload's sidecar, on --caller; --destination-namespace is its namespace).
    #[arg(long, value_parser = ["source", "destination"])]
    at: Option<String>,
    /// At the destination: the caller's SPIFFE id (its certificate's URI SAN); none = plaintext.
    #[arg(long, value_name = "SPIFFE_ID")]
    caller: Option<String>,
    /// At the destination: the TLS SNI, as Istio sets it: `outbound_.<port>_.<subset>_.<fqdn>`.
    #[arg(long)]
    sni: Option<String>,
    /// At the destination: a service the inbound port serves (repeatable).
    #[arg(long = "service", value_name = "FQDN")]
    services: Vec<String>,
    /// Source pod label, repeatable: --label app=web --label tier=front.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The request's :authority (Host), e.g. `helloworld.foo:8080`.
    #[arg(long)]
    authority: Option<String>,
    /// The upstream cluster Envoy routed to, e.g. `outbound|8080||helloworld.foo.svc.cluster.local`,
    /// `PassthroughCluster`.
    #[arg(long)]
    cluster: Option<String>,
    /// Destination namespace from the cluster's `istio.services` metadata.
    #[arg(long)]
    destination_namespace: Option<String>,
    /// Original destination `IP:PORT` (used for PassthroughCluster, and to confirm an IP
    /// authority such as a ClusterIP Host).
    #[arg(long)]
    destination_address: Option<String>,
    /// Decide a TCP/TLS connection (the network filter) instead of an HTTP request; the
    /// --authority is then the TLS SNI, if any.
    #[arg(long, default_value_t = Protocol::Http, value_parser = protocol_parser())]
    protocol: Protocol,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// JSON Lines batch of requests (`-` for stdin); prints JSON Lines.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["source_namespace", "authority", "cluster"])]
    batch: Option<PathBuf>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// `--protocol`: the core's own names, parsed by the core (no mirror of the enum here).
fn protocol_parser() -> impl TypedValueParser<Value = Protocol> {
    PossibleValuesParser::new(Protocol::ALL.map(Protocol::as_str))
        .try_map(|s| s.parse::<Protocol>())
}

fn parse_sha256(s: &str) -> Result<String, String> {
    manifest::check_sha256(s).map(|()| s.to_owned())
}

/// A failure that ends the command with an exit code and a message.
struct Fail(u8, String);

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail(2, format!("error: {e}"))
    }
}

impl From<LoadError> for Fail {
    fn from(e: LoadError) -> Self {
        Fail(if e.is_io() { 2 } else { 1 }, e.to_string())
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Validate(args) => validate(&args),
        Command::Test(args) => test(&args),
        Command::Reach(args) => reach(&args),
        Command::Explain(args) => explain(&args),
        Command::Generate(args) => generate(&args),
        Command::Import(args) => import(&args),
        Command::Graph(args) => graph(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}

/// Loads the policy and prints its warnings.
fn load_policy(path: &Path) -> Result<Loaded, Fail> {
    let loaded = load::load_policy(path)?;
    print_warnings(path, &loaded);
    Ok(loaded)
}

fn print_warnings(path: &Path, loaded: &Loaded) {
    let input = Input::from_path(path).display();
    for d in loaded.diagnostics() {
        eprintln!("{}", d.to_text(&input));
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Validation's warnings, then the TCP traffic no filter decides, each with its place.
fn warnings_of(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut all = loaded.diagnostics();
    for gap in manifest::coverage::tcp_gaps(&loaded.spec) {
        all.push(loaded.extra_warning(&gap));
    }
    if let Some(gap) = manifest::coverage::gateway_gap(&loaded.spec, &loaded.warnings) {
        all.push(loaded.extra_warning(&gap));
    }
    all
}

/// Prints the TCP traffic no filter decides (`manifest::coverage::tcp_gaps`); returns how many.
fn print_tcp_gaps(path: &Path, loaded: &Loaded) -> usize {
    let gaps = manifest::coverage::tcp_gaps(&loaded.spec);
    for g in &gaps {
        if loaded.is_dir() {
            // Name the tenant's file, not the directory.
            eprintln!("{}", loaded.extra_warning(g).to_text(""));
        } else {
            eprintln!("warning: {}: {g}", path.display());
        }
    }
    gaps.len()
}

fn validate(args: &ValidateArgs) -> Result<(), Fail> {
    let input = Input::from_path(&args.policy).display();
    let result = match load::load_policy(&args.policy) {
        Err(e) if e.is_io() => return Err(e.into()),
        other => other,
    };
    if args.json {
        let (diagnostics, summary) = match &result {
            Ok(loaded) => (warnings_of(loaded), Some(loaded.policy().summary())),
            // Not YAML at all (or over a limit): one error for the whole document; the
            // parser's message says where.
            Err(e @ (LoadError::Syntax { .. } | LoadError::Compile { .. })) => {
                let message = match e {
                    LoadError::Syntax { message, .. } => message.clone(),
                    LoadError::Compile { error, .. } => error.to_string(),
                    other => other.to_string(),
                };
                (
                    vec![Diagnostic {
                        severity: Severity::Error,
                        file: None,
                        path: "(document)".to_owned(),
                        place: Default::default(),
                        message,
                        also: Vec::new(),
                    }],
                    None,
                )
            }
            Err(e) => (e.diagnostics(), None),
        };
        let count = |sev| diagnostics.iter().filter(|d| d.severity == sev).count();
        let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
        let valid = result.is_ok();
        let out = serde_json::json!({
            "input": input,
            "valid": valid,
            "strict": args.strict,
            "summary": summary,
            "errors": errors,
            "warnings": warnings,
            "diagnostics": diagnostics,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Fail(2, e.to_string()))?
        );
        let failed = !valid || (args.strict && warnings > 0);
        return if failed {
            Err(Fail(1, String::new()))
        } else {
            Ok(())
        };
    }
    let loaded = result?;
    // Counted as printed: the same warning in several places is one.
    let warnings = if args.quiet {
        load::group_count(&loaded.warnings)
            + manifest::coverage::tcp_gaps(&loaded.spec).len()
            + usize::from(manifest::coverage::gateway_gap(&loaded.spec, &loaded.warnings).is_some())
    } else {
        let all = warnings_of(&loaded);
        for d in &all {
            eprintln!("{}", d.to_text(&input));
        }
        all.len()
    };
    if args.strict && warnings > 0 {
        let mut msg = format!(
            "{input}: {} (--strict: warnings fail)",
            plural(warnings, "warning")
        );
        if args.quiet {
            msg.push_str("; run without -q to see them");
        }
        return Err(Fail(1, msg));
    }
    if !args.quiet {
        let warnings = match warnings {
            0 => String::new(),
            n => format!(", {}", plural(n, "warning")),
        };
        println!(
            "{}: valid ({}{warnings})",
            args.policy.display(),
            loaded.policy().summary()
        );
    }
    Ok(())
}

fn test(args: &TestArgs) -> Result<(), Fail> {
    let loaded = load::load_policy(&args.policy)?;
    let text = Input::from_path(&args.cases).read()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut passed, mut failed, mut bad) = (0usize, 0usize, 0usize);
    let cases_name = Input::from_path(&args.cases).display();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let case = match Case::parse(i + 1, line) {
            Ok(c) => c,
            Err(error) => {
                bad += 1;
                if args.json {
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({"line": i + 1, "error": error}),
                    )
                    .map_err(|e| Fail(2, e.to_string()))?;
                    out.write_all(b"\n")?;
                } else {
                    writeln!(out, "ERROR {cases_name}:{}: {error}", i + 1)?;
                }
                continue;
            }
        };
        let outcome = case.run(loaded.policy());
        if outcome.passed() {
            passed += 1;
        } else {
            failed += 1;
        }
        if args.json {
            let mut v = serde_json::to_value(&outcome).map_err(|e| Fail(2, e.to_string()))?;
            if let Some(o) = v.as_object_mut() {
                o.insert("passed".into(), outcome.passed().into());
            }
            serde_json::to_writer(&mut out, &v).map_err(|e| Fail(2, e.to_string()))?;
            out.write_all(b"\n")?;
        } else if !outcome.passed() {
            let text = outcome.to_text(&cases_name, case.request.source.namespace.as_deref());
            write!(out, "{text}")?;
        }
    }
    out.flush()?;
    drop(out);
    let summary = format!(
        "{}: {passed} passed, {failed} failed{}",
        cases_name,
        if bad > 0 {
            format!(", {bad} unreadable")
        } else {
            String::new()
        }
    );
    if failed > 0 || bad > 0 {
        return Err(Fail(1, summary));
    }
    if passed == 0 {
        return Err(Fail(1, format!("{cases_name}: no test cases")));
    }
    eprintln!("{summary}");
    Ok(())
}

fn reach(args: &ReachArgs) -> Result<(), Fail> {
    let loaded = load::load_policy(&args.policy)?;
    let check = |ns: &str| {
        tenant_egress_core::name::check_namespace(ns).map_err(|e| {
            Fail(
                2,
                format!("error: namespace {ns:?} is not a namespace name: {e}"),
            )
        })
    };
    let (json, text) = match (&args.from, &args.to) {
        (Some(ns), _) => {
            check(ns)?;
            let r = tenant_egress_core::reach::outgoing(&loaded.spec, ns);
            (serde_json::to_string_pretty(&r), r.to_text())
        }
        (None, Some(ns)) => {
            check(ns)?;
            let r = tenant_egress_core::reach::incoming(&loaded.spec, ns);
            (serde_json::to_string_pretty(&r), r.to_text())
        }
        (None, None) => return Err(Fail(2, "error: give --from NS or --to NS".to_owned())),
    };
    if args.json {
        println!("{}", json.map_err(|e| Fail(2, e.to_string()))?);
    } else {
        // A policy directory's paths as file and path (identity for one file).
        print!("{}", loaded.origin().rewrite(&text));
    }
    Ok(())
}

fn explain(args: &ExplainArgs) -> Result<(), Fail> {
    if let Some(batch) = &args.batch {
        // Batch output is JSON Lines only: the warnings would be noise on every run.
        let loaded = load::load_policy(&args.policy)?;
        return explain_batch(&loaded, batch);
    }
    let loaded = load_policy(&args.policy)?;
    let req = RequestSpec {
        source: SourceSpec {
            namespace: args.source_namespace.clone(),
            labels: args.labels.iter().cloned().collect(),
            service_account: args.service_account.clone(),
        },
        at: if args.at.as_deref() == Some("destination") {
            End::Destination
        } else {
            End::Source
        },
        caller: args.caller.clone(),
        sni: args.sni.clone(),
        services: args.services.clone(),
        authority: args.authority.clone(),
        authority_repeated: false,
        cluster: args.cluster.clone(),
        destination_namespace: args.destination_namespace.clone(),
        destination_address: args.destination_address.clone(),
        protocol: args.protocol,
    };
    if req.needs_port(loaded.policy()) {
        return Err(Fail(
            2,
            format!(
                "error: which port? --authority {} has none and there is no --cluster, and the \
                 source's egress depends on the port: give \
                 --authority HOST:PORT, or --cluster (the `via ...` of the 403 body, e.g. \
                 'outbound|PORT||FQDN'), or --destination-address IP:PORT",
                args.authority.as_deref().unwrap_or("")
            ),
        ));
    }
    let (decision, report) = req.report(loaded.policy());
    let assumed = req.assumed_cluster(&decision);
    let enforcement = manifest::coverage::enforcement_point(&loaded.spec, &req);
    if args.json {
        let mut value = serde_json::to_value(&report).map_err(|e| Fail(2, e.to_string()))?;
        value["enforcedBy"] = serde_json::json!(enforcement);
        if let Some(c) = &assumed {
            value["assumedCluster"] = serde_json::json!(c);
        }
        let text = serde_json::to_string_pretty(&value).map_err(|e| Fail(2, e.to_string()))?;
        println!("{text}");
    } else {
        if req.at == End::Destination {
            // The destination end knows the caller by its certificate alone.
            let caller = req
                .caller
                .as_deref()
                .and_then(|c| parse_spiffe(c.as_bytes()).ok());
            println!(
                "at:          the destination (workload namespace {}), caller {}",
                req.destination_namespace.as_deref().unwrap_or("(none)"),
                req.caller.as_deref().unwrap_or("(no client certificate)")
            );
            let text = report.to_text(caller.map(|c| c.namespace));
            print!("{}", loaded.origin().rewrite(&text));
        } else {
            let text = report.to_text(req.source.namespace.as_deref());
            print!("{}", loaded.origin().rewrite(&text));
        }
        println!("enforced by: {}", enforcement.detail);
        if let Some(c) = assumed {
            println!(
                "assumed:     cluster {c} (no --cluster given; pass the `via ...` of the 403 body to decide on the cluster Envoy chose)"
            );
        }
    }
    Ok(())
}

fn explain_batch(loaded: &Loaded, path: &Path) -> Result<(), Fail> {
    let reader: Box<dyn BufRead> = match Input::from_path(path) {
        Input::Stdin => Box::new(std::io::stdin().lock()),
        Input::File(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(&p)
                .map_err(|e| Fail(2, format!("error: cannot read {}: {e}", p.display())))?,
        )),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut bad = 0usize;
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value = match RequestSpec::from_batch_line(&line) {
            Ok(req) => serde_json::to_value(req.report(loaded.policy()).1)
                .map_err(|e| Fail(2, e.to_string()))?,
            Err(error) => {
                bad += 1;
                serde_json::json!({"line": i + 1, "error": error})
            }
        };
        serde_json::to_writer(&mut out, &value).map_err(|e| Fail(2, e.to_string()))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if bad > 0 {
        return Err(Fail(1, format!("{bad} input line(s) could not be decided")));
    }
    Ok(())
}

fn generate(args: &GenerateArgs) -> Result<(), Fail> {
    let loaded = load_policy(&args.policy)?;
    print_tcp_gaps(&args.policy, &loaded);
    let opts = Options {
        selection: args.only.unwrap_or(Selection::Default),
        root_namespace: args.root_namespace.clone(),
        emit_root_default: args.emit_root_default,
        shared_namespaces: args.shared_namespaces.clone(),
        wasm: WasmOptions {
            url: args.url.clone(),
            sha256: args.sha256.clone(),
            image_pull_policy: args.image_pull_policy.clone(),
            fail_strategy: args.fail_strategy,
            scope: args.wasm_scope,
            namespaces: args.wasm_namespaces.clone(),
            allow_unpinned: args.allow_unpinned,
            shard: args.shard,
        },
        audit_sidecars: args.audit_sidecars,
        max_object_bytes: args.max_object_bytes,
        ends: args.ends,
        peer_authentication: !args.no_peer_authentication,
        api: args.api,
    };
    if opts.ends.destination()
        && matches!(opts.selection, Selection::Default | Selection::WasmPlugin)
    {
        if let Some(gap) = manifest::coverage::gateway_gap(&loaded.spec, &loaded.warnings) {
            eprintln!("warning: {}: {gap}", args.policy.display());
        }
    }
    let generated = manifest::generate(&loaded.spec, &opts).map_err(|e| match e {
        GenerateError::Option(m) => Fail(2, format!("error: {m}")),
        other => Fail(1, format!("error: {}: {other}", args.policy.display())),
    })?;
    for note in &generated.notes {
        eprintln!("note: {note}");
    }
    let input = Input::from_path(&args.policy);
    let header = manifest::header(
        &input.label(),
        &manifest::regenerate_command(&input, &opts, args.format),
    );
    let target = manifest::output::Target::of(&args.out);
    let said = manifest::output::write(&target, args.format, &generated.docs, |docs, emit| {
        args.format.render_chunks(&header, docs, emit)
    })
    .map_err(|e| Fail(2, format!("error: {e}")))?;
    for line in said {
        eprintln!("{line}");
    }
    // The process ends here: freeing thousands of generated objects one by one would take a
    // noticeable part of a large policy's run, for nothing.
    std::mem::forget(generated);
    std::mem::forget(loaded);
    Ok(())
}

fn import(args: &ImportArgs) -> Result<(), Fail> {
    let mut inputs = Vec::with_capacity(args.files.len());
    for f in &args.files {
        let input = Input::from_path(f);
        inputs.push((input.label(), input.read()?));
    }
    let mut imported = manifest::import::import(&inputs, &args.root_namespace)
        .map_err(|e| Fail(1, format!("error: {e}")))?;
    imported.spec.cluster_networks = args
        .service_cidrs
        .iter()
        .chain(&args.pod_cidrs)
        .cloned()
        .collect();
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    let (errors, mut checks) = tenant_egress_core::validate::check_meaning(&imported.spec);
    checks.extend(tenant_egress_core::validate::lint(&imported.spec));
    for w in &checks {
        eprintln!("warning: imported policy: {w}");
    }
    let names: Vec<String> = inputs.into_iter().map(|(name, _)| name).collect();
    if let manifest::output::Target::Dir(dir) = manifest::output::Target::of(&args.out) {
        let files = imported
            .to_dir_files(&names)
            .map_err(|e| Fail(2, format!("error: {e}")))?;
        tenant_egress_config::policy_dir::write_new(&dir, &files)
            .map_err(|e| Fail(2, format!("error: {e}")))?;
        eprintln!(
            "wrote {} ({} and {} tenant file{})",
            dir.display(),
            files
                .first()
                .map(|(p, _)| p.display().to_string())
                .unwrap_or_default(),
            files.len().saturating_sub(1),
            if files.len() == 2 { "" } else { "s" }
        );
    } else {
        let text = imported
            .to_yaml(&names)
            .map_err(|e| Fail(2, format!("error: {e}")))?;
        if args.out == Path::new("-") {
            std::io::stdout().lock().write_all(text.as_bytes())?;
        } else {
            std::fs::write(&args.out, text).map_err(|e| {
                Fail(
                    2,
                    format!("error: cannot write {}: {e}", args.out.display()),
                )
            })?;
        }
    }
    if !errors.is_empty() {
        let mut msg = String::new();
        for e in &errors {
            msg.push_str(&format!("error: imported policy: {e}\n"));
        }
        msg.push_str("the imported policy does not validate; fix it before generating");
        return Err(Fail(1, msg));
    }
    Ok(())
}

fn graph(args: &GraphArgs) -> Result<(), Fail> {
    let loaded = load_policy(&args.policy)?;
    let text = match (&args.namespace, args.view) {
        (Some(ns), _) => {
            tenant_egress_core::name::check_namespace(ns).map_err(|e| {
                Fail(
                    2,
                    format!("error: namespace {ns:?} is not a namespace name: {e}"),
                )
            })?;
            manifest::overview::render_namespace(&loaded.spec, ns, args.format)
        }
        (None, GraphView::Tenants) => {
            manifest::overview::render_tenants(&loaded.spec, args.format, args.whole)
        }
        (None, GraphView::Namespaces) => {
            manifest::graph::render_namespaces(&loaded.spec, args.format)
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
