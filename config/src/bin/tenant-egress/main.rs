//! `tenant-egress`: validate, explain and (later) generate Istio manifests from a policy.
//!
//! Exit codes: 0 success, 1 the policy is invalid (or a decision input is), 2 usage or I/O
//! error.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tenant_egress_config::explain::{Report, RequestSpec, SourceSpec};
use tenant_egress_config::{InvalidPolicy, Policy, PolicySpec, Protocol, Warning};

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
tenant-egress explain policy.yaml --batch requests.jsonl"
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
    match tenant_egress_config::validate::validate_value(value) {
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
    let labels: Vec<(&str, &str)> = req
        .source
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let request = req.as_request(&labels);
    let decision = policy.decide(&request);
    Report::new(policy, &decision, &request.source)
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
