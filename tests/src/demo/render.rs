//! Renders the demo's files from `demo/policy/` and the [topology](super::topology):
//! `demo/sidecar-<name>.yaml` (one kit [`EnvoyConfig`](crate::EnvoyConfig) per source identity,
//! rendered standalone, and the both-ends Envoys of [`super::ends`]), `demo/mesh.yaml`,
//! `demo/docker-compose.yaml` and `demo/ports.env`.
//!
//! The YAML files are the kit's JSON bootstraps written as YAML under a comment header; the
//! policy is embedded as JSON (the filter's configuration format), converted once here from
//! `demo/policy/`, a policy directory (`settings.yaml`, `tenants/<name>.yaml`) that the config
//! crate merges into the one document the filter receives.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::ends::render_end;
use super::topology::{sidecar_config, Ports, Role, ENDS, PKI_RELATIVE, SIDECARS, WASM_RELATIVE};
use crate::standalone::upstreams_bootstrap;

/// The image docker compose runs (the same Envoy release `scripts/setup.sh` installs).
pub const ENVOY_IMAGE: &str = "envoyproxy/envoy:v1.40-latest";

/// The flags every demo Envoy runs with (natively and in compose). `--disable-hot-restart`:
/// several Envoys share one network namespace, where their hot-restart sockets would collide.
pub const ENVOY_FLAGS: [&str; 5] = ["--disable-hot-restart", "--concurrency", "1", "-l", "info"];

/// `demo/` of the workspace.
pub fn demo_dir() -> PathBuf {
    crate::workspace_root().join("demo")
}

/// A policy document (YAML) as the filter's JSON configuration: the same keys, in the same
/// order, with the same values. Refused if the core does not accept it (the filter would refuse
/// it too and, failing closed, answer every request with an error).
pub fn policy_json(policy_yaml: &str) -> Result<String, String> {
    let doc: tenant_egress_config::yaml::Value = tenant_egress_config::yaml::from_str(policy_yaml)
        .map_err(|e| format!("not valid YAML: {e}"))?;
    document_json(&doc)
}

fn document_json(doc: &tenant_egress_config::yaml::Value) -> Result<String, String> {
    let json = serde_json::to_string_pretty(doc).map_err(|e| format!("not JSON data: {e}"))?;
    tenant_egress_core::Policy::from_json(json.as_bytes()).map_err(|e| e.to_string())?;
    Ok(json)
}

/// Reads `demo/policy/` (a policy directory) merged into one document, as the filter's JSON
/// (see [`policy_json`]). The merge is the CLI's own (`tenant_egress_config::policy_dir`):
/// what `tenant-egress validate demo/policy` checks is what the sidecars embed.
pub fn read_policy(demo: &Path) -> Result<String, String> {
    let dir = demo.join("policy");
    let merged = tenant_egress_config::policy_dir::read(&dir).map_err(|e| e.to_string())?;
    document_json(&merged.value).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Every generated file of `demo/` by name, for the given ports, filter file name and
/// certificates' directory (the committed files: [`Ports::fixed`], [`WASM_RELATIVE`] and
/// [`PKI_RELATIVE`]).
pub fn render(policy_json: &str, ports: &Ports, wasm: &str, pki: &str) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for sc in &SIDECARS {
        let cfg = sidecar_config(sc, policy_json, wasm);
        let sp = ports.sidecar(sc.name).unwrap_or_else(|| {
            panic!(
                "no ports for sidecar {}: Ports does not match SIDECARS",
                sc.name
            )
        });
        let bootstrap = cfg.render_standalone(&sp, &|r| ports.upstream_port(r));
        let header = format!(
            "{}\n\
             #\n\
             {about}\n\
             #\n\
             # An Envoy configured like the OUTBOUND side of an Istio sidecar (what istiod would\n\
             # send over xDS, written down statically), rendered by the Envoy test kit\n\
             # (tests/src/config.rs, tests/src/standalone.rs) as the integration tests' sidecars are:\n\
             #   - node metadata NAMESPACE and LABELS: the source workload the filter enforces for;\n\
             #   - virtual hosts with Istio's aliases (svc, svc.ns, svc.ns.svc, the FQDN, each also\n\
             #     with :port; the bare svc only for services in the sidecar's own namespace) and the\n\
             #     ALLOW_ANY catch-all (allow_any -> PassthroughCluster);\n\
             #   - clusters outbound|PORT||HOST with Istio's istio.services metadata (the destination\n\
             #     namespace the filter checks), PassthroughCluster and BlackHoleCluster;\n\
             #   - the tenant-egress filter before the router, FAIL_CLOSED, with demo/policy/\n\
             #     (merged, as JSON) as its configuration. Istio would deliver it with a WasmPlugin\n\
             #     (ECDS).\n\
             #\n\
             # Where it differs from a real sidecar, because there is no Kubernetes and no iptables:\n\
             #   - Istio has one listener per service port and iptables hands the application's\n\
             #     connection to the one for the port it dialled. Here ONE listener on\n\
             #     127.0.0.1:{listener} holds the virtual hosts of every port, so the port the\n\
             #     application \"dialled\" is the one in its Host header.\n\
             #   - Endpoints are static (Istio uses EDS): every service's \"pods\" are one listener\n\
             #     of the mesh Envoy (demo/mesh.yaml).\n\
             #   - PassthroughCluster takes the original destination from the\n\
             #     x-envoy-original-dst-host header (no SO_ORIGINAL_DST without iptables); the\n\
             #     catch-all route defaults it to \"the internet\", 127.0.0.1:{internet}.\n\
             #\n\
             # Ports: outbound listener 127.0.0.1:{listener}, admin 127.0.0.1:{admin} (demo/ports.env).\n\
             # Run:   scripts/demo.sh (natively), or docker compose -f demo/docker-compose.yaml up.\n\
             #        The filter's filename is relative: {wasm} in Envoy's working directory.\n\
             # Try:   curl -si -H 'Host: cockroachdb.uat:26257' http://127.0.0.1:{listener}/\n\
             #        curl -s 'http://127.0.0.1:{admin}/stats?filter=tenant_egress'\n",
            generated_note(),
            about = comment_wrap(&format!("Sidecar \"{}\": {}.", sc.name, sc.about)),
            listener = sp.listener,
            admin = sp.admin,
            internet = ports.internet,
        );
        files.insert(
            format!("sidecar-{}.yaml", sc.name),
            header + &to_yaml(&bootstrap),
        );
    }

    for e in &ENDS {
        let (listener, admin) = ports.end(e.name).unwrap_or_default();
        let bootstrap = render_end(e, policy_json, ports, wasm, pki);
        let shape = match e.role {
            Role::Destination => format!(
                "# An Envoy configured like the INBOUND side of an Istio sidecar: node metadata NAMESPACE\n\
                 # (the destination's namespace) and SERVICE_ACCOUNT; one inbound listener\n\
                 # (traffic_direction: INBOUND) with tls_inspector and two filter chains, as Istio builds\n\
                 # them under PeerAuthentication PERMISSIVE:\n\
                 #   - mTLS: a DownstreamTlsContext with this pod's certificate that REQUIRES and verifies a\n\
                 #     client certificate against the mesh CA ({pki}/ca.pem);\n\
                 #   - plaintext, left in so that the filter's own refusal of it shows (under STRICT, which\n\
                 #     `tenant-egress generate` emits, Istio has no plaintext chain at all);\n\
                 # each with the tenant-egress NETWORK filter (FAIL_CLOSED, demo/policy/ as JSON) before\n\
                 # tcp_proxy to inbound|26257|| (istio.services: cockroachdb.prod.svc.cluster.local), whose\n\
                 # endpoint is the database: the mesh's cockroachdb.prod:26257 listener, 127.0.0.1:{db}.\n\
                 # The filter decides on the caller's verified SPIFFE id (connection.uri_san_peer_certificate)\n\
                 # and Istio's SNI (outbound_.26257_._.cockroachdb.prod.svc.cluster.local): would the\n\
                 # caller's own filter let it reach this service on this port?\n",
                db = ports.db_port(),
            ),
            Role::Caller { filter } => format!(
                "# An Envoy configured like the OUTBOUND TCP side of an Istio sidecar for port 26257: one\n\
                 # listener (traffic_direction: OUTBOUND) whose tcp_proxy goes to\n\
                 # outbound|26257||cockroachdb.prod.svc.cluster.local, that is over Istio's mesh mTLS (this\n\
                 # workload's certificate {pki}/{ns}-{sa}.pem, SNI\n\
                 # outbound_.26257_._.cockroachdb.prod.svc.cluster.local) to prod's database sidecar\n\
                 # (demo/sidecar-prod-db.yaml).\n\
                 # {filter}\n",
                ns = e.namespace,
                sa = e.service_account,
                filter = if filter {
                    "The tenant-egress NETWORK filter runs before tcp_proxy: the caller's own end."
                } else {
                    "NO tenant-egress filter: what a tenant gets by switching its own sidecar's filter off."
                },
            ),
        };
        let header = format!(
            "{}\n\
             #\n\
             {about}\n\
             #\n\
             {shape}\
             #\n\
             # Certificates: {pki}/ (relative to Envoy's working directory), made at demo time by\n\
             # `tenant-egress-demo certs` (scripts/demo.sh does it): a CA and one SPIFFE workload\n\
             # certificate per identity, spiffe://cluster.local/ns/<namespace>/sa/<service account>.\n\
             #\n\
             # Ports: listener 127.0.0.1:{listener}, admin 127.0.0.1:{admin} (demo/ports.env).\n\
             # Try:   curl -si -H 'Host: cockroachdb.prod:26257' http://127.0.0.1:{listener}/\n\
             #        curl -s 'http://127.0.0.1:{admin}/stats?filter=tenant_egress'\n",
            generated_note(),
            about = comment_wrap(&format!("Sidecar \"{}\": {}.", e.name, e.about)),
        );
        files.insert(
            format!("sidecar-{}.yaml", e.name),
            header + &to_yaml(&bootstrap),
        );
    }

    let mesh = upstreams_bootstrap("mesh", ports.mesh_admin, &ports.upstreams());
    let header = format!(
        "{}\n\
         #\n\
         # The mesh: one Envoy playing every upstream the demo's sidecars route to. Each service\n\
         # (the pods behind it), the external ServiceEntry's hosts and \"the internet\" (where\n\
         # PassthroughCluster sends what matches no service) are a listener on their own\n\
         # 127.0.0.1 port that answers 200 with\n\
         #   body     upstream=<label>\n\
         #   headers  x-upstream: <label>                      (which upstream answered)\n\
         #            x-upstream-authority, x-upstream-path    (what it received)\n\
         # where <label> is <svc>.<ns>:<port>, *.example.com:80 or internet. No filter here: the\n\
         # sidecars (demo/sidecar-*.yaml) are where the policy is enforced. Each listener has its\n\
         # own stat_prefix, so /stats says which upstreams were reached:\n\
         #   curl -s 'http://127.0.0.1:{}/stats?filter=downstream_rq_total'\n",
        generated_note(),
        ports.mesh_admin
    );
    files.insert("mesh.yaml".into(), header + &to_yaml(&mesh));

    files.insert("docker-compose.yaml".into(), compose());
    files.insert("ports.env".into(), ports.to_env());
    files
}

/// The committed files' render: `demo/policy/`, [`Ports::fixed`], [`WASM_RELATIVE`],
/// [`PKI_RELATIVE`].
pub fn render_committed(demo: &Path) -> Result<BTreeMap<String, String>, String> {
    Ok(render(
        &read_policy(demo)?,
        &Ports::fixed(),
        WASM_RELATIVE,
        PKI_RELATIVE,
    ))
}

/// Writes the committed files' render into `demo`; returns the names of the files it changed.
pub fn write(demo: &Path) -> Result<Vec<String>, String> {
    let mut changed = Vec::new();
    for (name, text) in render_committed(demo)? {
        let path = demo.join(&name);
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            changed.push(name);
        }
    }
    Ok(changed)
}

/// The drift check: for every generated file that differs from a fresh render (or is
/// missing), its name and where it first differs. Empty when everything is up to date.
pub fn check(demo: &Path) -> Result<Vec<(String, String)>, String> {
    let mut stale = Vec::new();
    for (name, fresh) in render_committed(demo)? {
        let path = demo.join(&name);
        match fs::read_to_string(&path) {
            Err(e) => stale.push((name, format!("cannot read it: {e}"))),
            Ok(committed) if committed != fresh => {
                stale.push((name, first_difference(&committed, &fresh)))
            }
            Ok(_) => {}
        }
    }
    Ok(stale)
}

fn first_difference(committed: &str, fresh: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (committed.lines().collect(), fresh.lines().collect());
    let n = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    format!(
        "line {}:\n  committed: {}\n  rendered:  {}",
        n + 1,
        a.get(n).copied().unwrap_or("(end of file)"),
        b.get(n).copied().unwrap_or("(end of file)")
    )
}

/// `text` as `# ` comment lines of at most 92 columns.
fn comment_wrap(text: &str) -> String {
    let mut lines = vec![String::from("#")];
    for word in text.split_whitespace() {
        let last = lines.last_mut().map(|l| (l.len(), l));
        match last {
            Some((len, l)) if len + 1 + word.len() <= 92 || len == 1 => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(format!("# {word}")),
        }
    }
    lines.join("\n")
}

fn generated_note() -> &'static str {
    "# GENERATED by `tenant-egress-demo render` (tests/src/bin/demo.rs) from demo/policy/ and\n\
     # the demo's topology (tests/src/demo/topology.rs). Do not edit: edit those and run\n\
     # `cargo run -p tenant-egress-tests --bin tenant-egress-demo -- render` (the tests fail when\n\
     # this file differs from a fresh render)."
}

fn to_yaml(v: &Value) -> String {
    // A serde_json::Value always serializes.
    tenant_egress_config::yaml::to_string(v).unwrap_or_default()
}

/// The volumes of every compose service: the configurations, and in the working directory
/// `/work` the filter and the certificates. Two mounts into an empty `/work` rather than one
/// directory with another mounted inside it, which Docker would have to create in a read-only
/// mount.
pub const COMPOSE_VOLUMES: [&str; 3] = [
    "./:/etc/envoy:ro",
    "${TENANT_EGRESS_WASM_DIR:-../target/dist}/tenant_egress_filter.wasm:/work/tenant_egress_filter.wasm:ro",
    "../target/demo/pki:/work/pki:ro",
];

/// `demo/docker-compose.yaml`: the same Envoys and files in containers.
fn compose() -> String {
    let mut services = serde_json::Map::new();
    let names = std::iter::once("mesh".to_string())
        .chain(SIDECARS.iter().map(|s| format!("sidecar-{}", s.name)))
        .chain(ENDS.iter().map(|e| format!("sidecar-{}", e.name)));
    for name in names {
        let mut command = vec!["-c".to_string(), format!("/etc/envoy/{name}.yaml")];
        command.extend(ENVOY_FLAGS.iter().map(|f| f.to_string()));
        let mut svc = json!({
            "image": ENVOY_IMAGE,
            "entrypoint": "/usr/local/bin/envoy",
            "network_mode": "host",
            "working_dir": "/work",
            "volumes": COMPOSE_VOLUMES,
            // No `restart`: compose's default is "no" (and an unquoted `no` is a boolean to
            // YAML 1.1 readers such as docker-compose 1.x).
            "command": command,
        });
        if name != "mesh" {
            svc["depends_on"] = json!(["mesh"]);
        }
        services.insert(name, svc);
    }
    format!(
        "{}\n\
         #\n\
         # The demo with the official Envoy image instead of the Envoy that scripts/setup.sh\n\
         # installs into .venv. The containers run the SAME demo/*.yaml files scripts/demo.sh runs\n\
         # natively.\n\
         #\n\
         #   scripts/setup.sh                                 # builds target/dist/tenant_egress_filter.wasm\n\
         #   docker compose -f demo/docker-compose.yaml up -d\n\
         #   scripts/demo.sh requests                         # the request table, against these containers\n\
         #   docker compose -f demo/docker-compose.yaml logs -f sidecar-prod\n\
         #   docker compose -f demo/docker-compose.yaml down\n\
         #\n\
         # network_mode: host puts the Envoys on this machine's 127.0.0.1, so every port is the same\n\
         # as in the native demo (demo/ports.env). That needs Docker Engine on Linux, or Docker\n\
         # Desktop >= 4.34 with host networking enabled. Stop a native demo first\n\
         # (scripts/demo.sh stop): both cannot hold the ports at once.\n\
         #\n\
         # Mounts: demo/ at /etc/envoy (the configurations); in /work, the working directory, the\n\
         # filter from target/dist/ (where scripts/setup.sh puts it), where the sidecars' relative\n\
         # filename {WASM_RELATIVE} finds it, and target/demo/pki/ (made by scripts/demo.sh certs)\n\
         # as {PKI_RELATIVE}. Built elsewhere (CARGO_TARGET_DIR)? Set\n\
         # TENANT_EGRESS_WASM_DIR=/path/to/the/directory/holding/tenant_egress_filter.wasm.\n\
         {}",
        generated_note(),
        to_yaml(&json!({ "services": services }))
    )
}
