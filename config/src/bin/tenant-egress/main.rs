//! `tenant-egress`: validate, explain, generate Istio manifests from a policy, import existing
//! Sidecars into one, and graph who may reach whom.
//!
//! Exit codes: 0 success, 1 the policy is invalid (or a decision input is), 2 usage or I/O
//! error.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tenant_egress_config::manifest::{
    self, graph::GraphFormat, AuditSidecars, Doc, DocKind, FailStrategy, GenerateError, Options,
    Selection, WasmOptions, WasmScope, DEFAULT_ROOT_NAMESPACE,
};
use tenant_egress_core::explain::{Report, RequestSpec, SourceSpec};
use tenant_egress_core::{InvalidPolicy, Policy, PolicySpec, Protocol, Warning};

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
tenant-egress explain policy.yaml --source-namespace prod --authority cockroachdb.uat:26257 \\\n      \
--cluster 'outbound|26257||cockroachdb.uat.svc.cluster.local'\n  \
tenant-egress explain policy.yaml --batch requests.jsonl\n  \
tenant-egress generate policy.yaml | kubectl apply -f -\n  \
kubectl get sidecars -A -o yaml | tenant-egress import - > policy.yaml\n  \
tenant-egress graph policy.yaml --format mermaid"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a policy: every error with its place (exit 1), warnings printed as `warning: ...`.
    Validate {
        /// Policy document (YAML or JSON; `-` for stdin).
        policy: PathBuf,
        /// Print nothing on success.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Decide one request (or a JSON Lines batch) and say why.
    Explain(ExplainArgs),
    /// Generate the Istio manifests: Sidecars plus the WasmPlugin (or the EnvoyFilter).
    Generate(GenerateArgs),
    /// Turn existing Istio Sidecars into a policy (one tenant per namespace).
    Import(ImportArgs),
    /// Draw which namespaces may reach which, on which ports (Mermaid or Graphviz).
    Graph(GraphArgs),
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
- a WasmPlugin (phase AUTHZ, outbound only, pluginConfig = the policy),\n    \
mesh-wide in the root namespace or, with --wasm-scope namespace, one per\n    \
tenant namespace. With --only envoyfilter, the EnvoyFilter equivalent instead\n    \
(never both). Its comment says how to export the tenant_egress.* counters.\n\n\
Tenants in audit mode get open Sidecars (`*/*`) unless --audit-sidecars scoped:\n\
a scoped Sidecar would already block in Istio what the filter only reports.\n\n\
Examples:\n  \
tenant-egress generate policy.yaml | kubectl apply -f -\n  \
tenant-egress generate policy.yaml --out manifests/\n  \
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
    /// Policy document (YAML or JSON; `-` for stdin).
    policy: PathBuf,
    /// `-` for stdout, or a directory to write one file per kind into (sidecars.yaml, wasmplugin.yaml,
    /// envoyfilter.yaml; .json with --format json).
    #[arg(long, value_name = "DIR|-", default_value = "-")]
    out: PathBuf,
    /// Emit only these documents (default: Sidecars and the WasmPlugin; the EnvoyFilter only when
    /// asked for, instead of the WasmPlugin).
    #[arg(long, value_enum)]
    only: Option<OnlyArg>,
    /// YAML (multi-document) or JSON (one `v1` `List`, which `kubectl apply -f` accepts).
    #[arg(long, value_enum, default_value_t = FormatArg::Yaml)]
    format: FormatArg,
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
    #[arg(long, value_enum, default_value_t = FailArg::Close)]
    fail_strategy: FailArg,
    /// One WasmPlugin/EnvoyFilter in the root namespace (mesh), or one per tenant namespace.
    #[arg(long, value_enum, default_value_t = ScopeArg::Mesh)]
    wasm_scope: ScopeArg,
    /// Sidecars of tenants in audit mode: `open` (`*/*`, nothing blocked) or `scoped` (as enforced).
    #[arg(long, value_enum, default_value_t = AuditArg::Open)]
    audit_sidecars: AuditArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnlyArg {
    Sidecars,
    Wasmplugin,
    Envoyfilter,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Yaml,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailArg {
    #[value(name = "FAIL_CLOSE")]
    Close,
    #[value(name = "FAIL_OPEN")]
    Open,
    #[value(name = "FAIL_RELOAD")]
    Reload,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScopeArg {
    Mesh,
    Namespace,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuditArg {
    Open,
    Scoped,
}

#[derive(Args)]
#[command(
    after_help = "Reads Sidecars as `kubectl get sidecars -A -o yaml` prints them (a `List`,\n\
or any multi-document YAML; other kinds are skipped with a warning) and prints\n\
the equivalent policy:\n  \
- one tenant per namespace, named after it; its selector-less Sidecar gives the\n    \
tenant's egress and outboundTrafficPolicy (unset: the mesh's, read as ALLOW_ANY);\n  \
- each workload-specific Sidecar becomes a workload exception holding only what\n    \
it adds to the namespace default, so that `generate` recreates it. When it\n    \
drops something the default has, an exception cannot say so (exceptions only\n    \
add): a warning says how the result widens;\n  \
- the root namespace's selector-less Sidecar is the mesh default: reported (with\n    \
the generate flags that recreate it), not made a tenant;\n  \
- unknownSource: allow, so namespaces without a Sidecar stay as they are.\n\
Warnings (stderr, `warning: ...`) also flag what looks accidental: a workload\n\
Sidecar with no egress (Istio widens it to */*), a root-namespace Sidecar with a\n\
selector (it applies to root-namespace pods only), ingress/bind/captureMode that\n\
cannot be carried over, illegal hosts.\n\n\
Examples:\n  \
kubectl get sidecars -A -o yaml | tenant-egress import - > policy.yaml\n  \
tenant-egress import prod-sidecars.yaml uat-sidecars.yaml --out policy.yaml\n  \
tenant-egress generate policy.yaml --only sidecars | kubectl diff -f -"
)]
struct ImportArgs {
    /// Sidecar manifests (YAML, multi-document or `kind: List`; `-` for stdin).
    #[arg(required = true, value_name = "SIDECAR_YAML")]
    files: Vec<PathBuf>,
    /// Write the policy here instead of stdout.
    #[arg(long, value_name = "FILE", default_value = "-")]
    out: PathBuf,
    /// Istio's config root namespace (its selector-less Sidecar is the mesh default).
    #[arg(long, value_name = "NS", default_value = DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
}

#[derive(Args)]
#[command(
    after_help = "Nodes are namespaces grouped per tenant, plus namespaces no tenant owns, `*`\n\
(any namespace) and hosts reachable from any namespace. Edges carry the ports\n\
(`26257/TCP`; `all ports` for a catch-all, `other ports` next to port-scoped\n\
listeners) and the host when it is not the whole namespace. Exclusions are red\n\
`except` edges; workload exceptions are blue `<name> only` edges.\n\n\
Examples:\n  \
tenant-egress graph policy.yaml > egress.mmd    # paste into a ```mermaid block\n  \
tenant-egress graph policy.yaml --format dot | dot -Tsvg > egress.svg"
)]
struct GraphArgs {
    /// Policy document (YAML or JSON; `-` for stdin).
    policy: PathBuf,
    /// Mermaid flowchart or Graphviz digraph.
    #[arg(long, value_enum, default_value_t = GraphFormatArg::Mermaid)]
    format: GraphFormatArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphFormatArg {
    Mermaid,
    Dot,
}

fn parse_sha256(s: &str) -> Result<String, String> {
    manifest::check_sha256(s).map(|()| s.to_owned())
}

#[derive(Args)]
#[command(
    after_help = "Batch input (--batch FILE, `-` for stdin) is JSON Lines, one request per line:\n  \
{\"source\": {\"namespace\": \"prod\", \"labels\": {\"app\": \"web\"}}, \"authority\": \"db.uat:26257\",\n   \
\"cluster\": \"outbound|26257||db.uat.svc.cluster.local\", \"destinationNamespace\": \"uat\",\n   \
\"destinationAddress\": \"10.0.0.7:26257\"}\n\
Only source.namespace is required. Output is one JSON object per input line, in order; a bad\n\
line yields {\"line\": N, \"error\": \"...\"} and the batch goes on."
)]
struct ExplainArgs {
    /// Policy document (YAML or JSON).
    policy: PathBuf,
    /// Source workload namespace (the proxy's NAMESPACE node metadata).
    #[arg(long, required_unless_present = "batch")]
    source_namespace: Option<String>,
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
    /// Original destination `IP:PORT` (used for PassthroughCluster).
    #[arg(long)]
    destination_address: Option<String>,
    /// Decide a TCP/TLS connection (the network filter) instead of an HTTP request; the
    /// --authority is then the TLS SNI, if any.
    #[arg(long, value_enum, default_value = "http")]
    protocol: ProtocolArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// JSON Lines batch of requests (`-` for stdin); prints JSON Lines.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["source_namespace", "authority", "cluster"])]
    batch: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProtocolArg {
    Http,
    Tcp,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// A failure that ends the command with an exit code and a message.
struct Fail(u8, String);

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail(2, format!("error: {e}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { policy, quiet } => validate(&policy, quiet),
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

fn read_input(path: &Path) -> Result<String, Fail> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Fail(2, format!("error: cannot read {}: {e}", path.display())))
    }
}

/// Reads a policy as JSON or YAML (JSON is YAML, but JSON errors read better from the JSON
/// parser, so JSON-looking input goes there).
fn load_value(path: &Path) -> Result<serde_json::Value, Fail> {
    let text = read_input(path)?;
    let trimmed = text.trim_start();
    let result = if trimmed.starts_with('{') {
        serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_yaml::from_str(&text).map_err(|e| format!("not valid YAML: {e}"))
    };
    result.map_err(|e| Fail(1, format!("error: {}: {e}", path.display())))
}

fn print_warnings(path: &Path, warnings: &[Warning]) {
    for w in warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
}

fn load_policy(path: &Path) -> Result<(PolicySpec, Policy, Vec<Warning>), Fail> {
    let value = load_value(path)?;
    match tenant_egress_core::validate::validate_value(value) {
        Ok((spec, warnings)) => {
            let policy = Policy::from_spec(&spec)
                .map_err(|e| Fail(1, format!("error: {}: {e}", path.display())))?;
            Ok((spec, policy, warnings))
        }
        Err(invalid) => Err(Fail(1, render_invalid(path, &invalid))),
    }
}

fn render_invalid(path: &Path, invalid: &InvalidPolicy) -> String {
    let mut out = String::new();
    for e in &invalid.errors {
        out.push_str(&format!("error: {}: {e}\n", path.display()));
    }
    for w in &invalid.warnings {
        out.push_str(&format!("warning: {}: {w}\n", path.display()));
    }
    let n = invalid.errors.len();
    out.push_str(&format!(
        "{}: invalid ({n} error{})",
        path.display(),
        if n == 1 { "" } else { "s" }
    ));
    out
}

fn validate(path: &Path, quiet: bool) -> Result<(), Fail> {
    let (_, policy, warnings) = load_policy(path)?;
    print_warnings(path, &warnings);
    if !quiet {
        println!(
            "{}: valid ({}{})",
            path.display(),
            policy.summary(),
            match warnings.len() {
                0 => String::new(),
                n => format!(", {n} warning{}", if n == 1 { "" } else { "s" }),
            }
        );
    }
    Ok(())
}

fn explain(args: &ExplainArgs) -> Result<(), Fail> {
    let (_, policy, warnings) = load_policy(&args.policy)?;
    if let Some(batch) = &args.batch {
        return explain_batch(&policy, batch);
    }
    print_warnings(&args.policy, &warnings);
    let req = RequestSpec {
        source: SourceSpec {
            namespace: args.source_namespace.clone(),
            labels: args.labels.iter().cloned().collect(),
            ..SourceSpec::default()
        },
        authority: args.authority.clone(),
        authority_repeated: false,
        cluster: args.cluster.clone(),
        destination_namespace: args.destination_namespace.clone(),
        destination_address: args.destination_address.clone(),
        protocol: match args.protocol {
            ProtocolArg::Http => Protocol::Http,
            ProtocolArg::Tcp => Protocol::Tcp,
        },
        ..RequestSpec::default()
    };
    let report = report_for(&policy, &req);
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| Fail(2, e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", render_report(&report, &req));
    }
    Ok(())
}

fn report_for(policy: &Policy, req: &RequestSpec) -> Report {
    req.report(policy).1
}

fn render_report(r: &Report, req: &RequestSpec) -> String {
    let verdict = match (r.decision.as_str(), r.enforced) {
        ("deny", false) => "DENY (audit: would be denied, let through)".to_owned(),
        (d, _) => d.to_uppercase(),
    };
    let source = format!(
        "namespace {}{}{}",
        req.source.namespace.as_deref().unwrap_or("(none)"),
        r.tenant
            .as_ref()
            .map(|t| format!(", tenant {t}"))
            .unwrap_or_default(),
        r.workload
            .as_ref()
            .map(|w| format!(", workload exception {w}"))
            .unwrap_or_default(),
    );
    let d = &r.destination;
    let destination = format!(
        "{}{} (namespace {})",
        d.host.as_deref().unwrap_or("(unknown)"),
        d.port.map(|p| format!(":{p}")).unwrap_or_default(),
        d.namespace.as_deref().unwrap_or("unknown"),
    );
    let rule = r
        .rule
        .as_ref()
        .map(|r| format!("{} \"{}\"", r.path, r.text))
        .unwrap_or_else(|| "-".to_owned());
    format!(
        "decision:    {verdict}\nreason:      {}\nsource:      {source}\ndestination: {destination}\nrule:        {rule}\nwhy:         {}\n",
        r.reason, r.explanation
    )
}

fn explain_batch(policy: &Policy, path: &Path) -> Result<(), Fail> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(path)
            .map_err(|e| Fail(2, format!("error: cannot read {}: {e}", path.display())))?;
        Box::new(std::io::BufReader::new(f))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = 0usize;
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let value = match serde_json::from_str::<RequestSpec>(&line) {
            Ok(req) if req.source.namespace.is_none() => {
                bad += 1;
                serde_json::json!({"line": i + 1, "error": "source.namespace is required"})
            }
            Ok(req) => serde_json::to_value(report_for(policy, &req))
                .map_err(|e| Fail(2, e.to_string()))?,
            Err(e) => {
                bad += 1;
                serde_json::json!({"line": i + 1, "error": e.to_string()})
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

/// The name a generated file's header cites: the policy's file name, not its full path, so the
/// output is the same wherever the command runs.
fn source_label(path: &Path) -> String {
    if path == Path::new("-") {
        return "(stdin)".to_owned();
    }
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The command that regenerates the output: the options that differ from the defaults, in a
/// fixed order.
fn regenerate_command(args: &GenerateArgs, source: &str) -> String {
    let mut cmd = if source == "(stdin)" {
        "tenant-egress generate - < POLICY".to_owned()
    } else {
        format!("tenant-egress generate {source}")
    };
    if let Some(only) = args.only {
        cmd.push_str(match only {
            OnlyArg::Sidecars => " --only sidecars",
            OnlyArg::Wasmplugin => " --only wasmplugin",
            OnlyArg::Envoyfilter => " --only envoyfilter",
        });
    }
    if args.format == FormatArg::Json {
        cmd.push_str(" --format json");
    }
    if args.root_namespace != DEFAULT_ROOT_NAMESPACE {
        cmd.push_str(&format!(" --root-namespace {}", args.root_namespace));
    }
    if args.emit_root_default {
        cmd.push_str(" --emit-root-default");
    }
    if !args.shared_namespaces.is_empty() {
        cmd.push_str(&format!(
            " --shared-namespaces {}",
            args.shared_namespaces.join(",")
        ));
    }
    if args.url != manifest::default_wasm_url() {
        cmd.push_str(&format!(" --url {}", args.url));
    }
    if let Some(sum) = &args.sha256 {
        cmd.push_str(&format!(" --sha256 {sum}"));
    }
    if let Some(p) = &args.image_pull_policy {
        cmd.push_str(&format!(" --image-pull-policy {p}"));
    }
    match args.fail_strategy {
        FailArg::Close => {}
        FailArg::Open => cmd.push_str(" --fail-strategy FAIL_OPEN"),
        FailArg::Reload => cmd.push_str(" --fail-strategy FAIL_RELOAD"),
    }
    if args.wasm_scope == ScopeArg::Namespace {
        cmd.push_str(" --wasm-scope namespace");
    }
    if args.audit_sidecars == AuditArg::Scoped {
        cmd.push_str(" --audit-sidecars scoped");
    }
    cmd
}

fn generate(args: &GenerateArgs) -> Result<(), Fail> {
    let (spec, _, warnings) = load_policy(&args.policy)?;
    print_warnings(&args.policy, &warnings);
    let opts = Options {
        selection: match args.only {
            None => Selection::Default,
            Some(OnlyArg::Sidecars) => Selection::Sidecars,
            Some(OnlyArg::Wasmplugin) => Selection::WasmPlugin,
            Some(OnlyArg::Envoyfilter) => Selection::EnvoyFilter,
        },
        root_namespace: args.root_namespace.clone(),
        emit_root_default: args.emit_root_default,
        shared_namespaces: args.shared_namespaces.clone(),
        wasm: WasmOptions {
            url: args.url.clone(),
            sha256: args.sha256.clone(),
            image_pull_policy: args.image_pull_policy.clone(),
            fail_strategy: match args.fail_strategy {
                FailArg::Close => FailStrategy::FailClose,
                FailArg::Open => FailStrategy::FailOpen,
                FailArg::Reload => FailStrategy::FailReload,
            },
            scope: match args.wasm_scope {
                ScopeArg::Mesh => WasmScope::Mesh,
                ScopeArg::Namespace => WasmScope::Namespace,
            },
        },
        audit_sidecars: match args.audit_sidecars {
            AuditArg::Open => AuditSidecars::Open,
            AuditArg::Scoped => AuditSidecars::Scoped,
        },
    };
    let generated = manifest::generate(&spec, &opts).map_err(|e| match e {
        GenerateError::Option(m) => Fail(2, format!("error: {m}")),
        other => Fail(1, format!("error: {}: {other}", args.policy.display())),
    })?;
    for note in &generated.notes {
        eprintln!("note: {note}");
    }
    let source = source_label(&args.policy);
    let ext = match args.format {
        FormatArg::Yaml => "yaml",
        FormatArg::Json => "json",
    };
    let render = |docs: &[&Doc]| -> Result<String, Fail> {
        let text = match args.format {
            FormatArg::Yaml => manifest::render_yaml(
                &manifest::header(&source, &regenerate_command(args, &source)),
                docs,
            ),
            FormatArg::Json => manifest::render_json(docs),
        };
        text.map_err(|e| Fail(2, format!("error: {e}")))
    };
    if args.out == Path::new("-") {
        let docs: Vec<&Doc> = generated.docs.iter().collect();
        let text = render(&docs)?;
        std::io::stdout().lock().write_all(text.as_bytes())?;
        return Ok(());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| {
        Fail(
            2,
            format!("error: cannot create directory {}: {e}", args.out.display()),
        )
    })?;
    for kind in [DocKind::Sidecar, DocKind::WasmPlugin, DocKind::EnvoyFilter] {
        let docs: Vec<&Doc> = generated.docs.iter().filter(|d| d.kind == kind).collect();
        if docs.is_empty() {
            continue;
        }
        let path = args.out.join(format!("{}.{ext}", kind.file_stem()));
        std::fs::write(&path, render(&docs)?)
            .map_err(|e| Fail(2, format!("error: cannot write {}: {e}", path.display())))?;
        eprintln!("wrote {} ({} objects)", path.display(), docs.len());
    }
    Ok(())
}

fn import(args: &ImportArgs) -> Result<(), Fail> {
    let mut inputs = Vec::with_capacity(args.files.len());
    for f in &args.files {
        inputs.push((source_label(f), read_input(f)?));
    }
    let imported = manifest::import::import(&inputs, &args.root_namespace)
        .map_err(|e| Fail(1, format!("error: {e}")))?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    let (errors, checks) = tenant_egress_core::validate::check_meaning(&imported.spec);
    for w in &checks {
        eprintln!("warning: imported policy: {w}");
    }
    let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
    let mut text = format!(
        "# Imported by tenant-egress {} from {}: one tenant per namespace.\n\
         # Review the warnings it printed, then: tenant-egress generate <this file>\n",
        manifest::VERSION,
        names.join(", ")
    );
    text.push_str(
        &serde_yaml::to_string(&imported.spec).map_err(|e| Fail(2, format!("error: {e}")))?,
    );
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
    let (spec, _, warnings) = load_policy(&args.policy)?;
    print_warnings(&args.policy, &warnings);
    let format = match args.format {
        GraphFormatArg::Mermaid => GraphFormat::Mermaid,
        GraphFormatArg::Dot => GraphFormat::Dot,
    };
    let text = manifest::graph::render(&spec, format);
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
