//! The `tenant-egress` command as a user runs it: exit codes, messages, JSON.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-egress");

const POLICY: &str = r#"
apiVersion: tenant-egress/v1
sharedNamespaces: [istio-system, logmonkey]
tenants:
  - name: prod
    namespaces: [prod]
    egress:
      - hosts: ["./*", "istio-system/*", "./*"]
    workloads:
      - name: batman
        selector: {app.kubernetes.io/name: batman-app}
        egress:
          - hosts: ["logmonkey/logcatcher.logmonkey.svc.cluster.local"]
  - name: uat
    namespaces: [uat]
    egress: [{hosts: ["./*"]}]
"#;

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tenant-egress-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
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

#[test]
fn validate_valid_prints_summary_and_warnings() {
    let p = write("valid.yaml", POLICY);
    let out = run(&["validate", p.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid (mode=enforce tenants=2"));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: ")
            && err.contains(
                "valid.yaml:8: tenants[0].egress[0].hosts[2] (tenant prod): \"./*\" duplicates"
            ),
        "{err}"
    );
}

#[test]
fn validate_invalid_lists_every_error_and_exits_1() {
    let p = write(
        "invalid.json",
        r#"{"apiVersion": "tenant-egress/v0", "tenants": [{"name": "a", "namespaces": ["x"], "egress": [{"hosts": ["foo", "ns/*bar.com"], "port": {"number": 0}}]}, {"name": "b", "namespaces": ["x"]}]}"#,
    );
    let out = run(&["validate", p.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        "error: ",
        "apiVersion: apiVersion is \"tenant-egress/v0\"",
        "invalid.json:1: tenants[0].egress[0].hosts[0] (tenant a): \"foo\" is not of the form namespace/dnsName",
        "tenants[0].egress[0].hosts[1] (tenant a)",
        "tenants[0].egress[0].port.number (tenant a): port 0 is outside 1..65535",
        "tenants[1].namespaces[0] (tenant b): namespace \"x\" is already claimed by tenants[0].namespaces[0]",
        "invalid (5 errors)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn validate_reports_syntax_errors() {
    let p = write("broken.yaml", "apiVersion: [unclosed\n");
    let out = run(&["validate", p.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not valid YAML"),
        "{}",
        text(&out.stderr)
    );
    let missing = run(&["validate", "/nonexistent/policy.yaml"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("cannot read /nonexistent/policy.yaml"));
}

#[test]
fn explain_human_and_json() {
    let p = write("explain.yaml", POLICY);
    let p = p.to_str().unwrap();
    let out = run(
        &[
            "explain",
            p,
            "--source-namespace",
            "prod",
            "--authority",
            "cockroachdb.uat:26257",
            "--cluster",
            "outbound|26257||cockroachdb.uat.svc.cluster.local",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(s.contains("decision:    DENY"), "{s}");
    assert!(s.contains("reason:      not-allowed"));
    assert!(s.contains("destination: cockroachdb.uat.svc.cluster.local:26257 (namespace uat)"));
    assert!(s.contains("rule:        tenants[0].egress[0] \"all ports\""));

    let out = run(
        &[
            "explain",
            p,
            "--source-namespace",
            "prod",
            "--label",
            "app.kubernetes.io/name=batman-app",
            "--authority",
            "logcatcher.logmonkey.svc.cluster.local",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["reason"], "allowed");
    assert_eq!(v["workload"], "batman");
    assert_eq!(
        v["rule"]["path"],
        "tenants[0].workloads[0].egress[0].hosts[0]"
    );
    assert_eq!(v["destination"]["namespace"], "logmonkey");
    assert_eq!(v["destination"]["port"], serde_json::Value::Null);
}

#[test]
fn explain_batch_keeps_order_and_survives_bad_lines() {
    let p = write("batch.yaml", POLICY);
    let input = concat!(
        r#"{"source": {"namespace": "uat"}, "authority": "web.uat:8080"}"#,
        "\n",
        "this is not json\n",
        "\n",
        r#"{"source": {"namespace": "prod"}, "authority": "10.0.0.1", "cluster": "PassthroughCluster", "destinationAddress": "10.0.0.1:80"}"#,
        "\n",
        r#"{"source": {}, "authority": "web.uat"}"#,
        "\n",
        r#"{"source": {"namespace": "uat"}, "authoritee": "x"}"#,
        "\n",
    );
    let out = run(
        &["explain", p.to_str().unwrap(), "--batch", "-"],
        Some(input),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "bad lines are reported in the exit code"
    );
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["destination"]["host"], "web.uat.svc.cluster.local");
    assert_eq!(lines[0]["destination"]["port"], 8080);
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].is_string());
    assert_eq!(lines[2]["decision"], "deny");
    assert_eq!(lines[2]["reason"], "not-in-registry");
    assert_eq!(lines[3]["error"], "source.namespace is required");
    assert!(lines[4]["error"].as_str().unwrap().contains("authoritee"));
}

#[test]
fn help_teaches() {
    let out = run(&["--help"], None);
    let s = text(&out.stdout);
    assert!(
        s.contains("validate") && s.contains("explain") && s.contains("Examples:"),
        "{s}"
    );
    let out = run(&["explain", "--help"], None);
    assert!(text(&out.stdout).contains("JSON Lines"));
}

/// `import` reads cluster dumps: an alias bomb (a few hundred bytes that expand to a billion
/// nodes) is refused by the YAML input limits with a message, quickly, instead of exhausting
/// memory.
#[test]
fn import_refuses_an_alias_bomb() {
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let out = run(&["import", "-"], Some(&bomb));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: (stdin): not valid YAML: ")
            && err.contains("over a limit on YAML input"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// `--protocol` takes the core's own names and nothing else.
#[test]
fn explain_protocol_values_come_from_the_core() {
    let p = write("proto.yaml", POLICY);
    let base = [
        "explain",
        p.to_str().unwrap(),
        "--source-namespace",
        "prod",
        "--cluster",
        "outbound|26257||db.uat.svc.cluster.local",
        "--json",
    ];
    for proto in ["http", "tcp"] {
        let mut args = base.to_vec();
        args.extend(["--protocol", proto]);
        let out = run(&args, None);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let mut args = base.to_vec();
    args.extend(["--protocol", "udp"]);
    let out = run(&args, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("[possible values: http, tcp]"));
}

/// A policy with likely typos, one port-scoped tenant, an ALLOW_ANY one and one in audit.
const TYPOS: &str = r#"apiVersion: tenant-egress/v1
sharedNamespaces: [istio-system, logmonkey]
clusterNetworks: [10.96.0.0/12]
tenants:
  - name: prod
    namespaces: [prod]
    egress:
      - port: {number: 26257, protocol: TCP}
        hosts: ["uat/cockroachdb.uat.svc.cluster.local"]
      - hosts:
          - ./*
          - istio-sytem/*
          - logmonkey/logcatcher.logmonky.svc.cluster.local
  - name: uat
    namespaces: [uat]
    egress:
      - hosts: ["./*", "istio-sytem/*"]
  - name: dev
    namespaces: [dev]
    mode: audit
    outboundTrafficPolicy: ALLOW_ANY
    egress: [{hosts: ["./*"]}]
"#;

#[test]
fn validate_warns_about_typos_with_lines_tenants_and_groups() {
    let p = write("typos.yaml", TYPOS);
    let p = p.to_str().unwrap();
    let out = run(&["validate", p], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    // The three likely mistakes, each tenant's TCP that only its Sidecar scopes, and the
    // tenants that would refuse their ingress gateway at the destination (placed by default).
    assert_eq!(lines.len(), 7, "{err}");
    let line = |needle: &str| -> &str {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{err}"))
    };
    assert!(line("on port 26257 only").contains(":8: tenants[0].egress[0] (tenant prod): "));
    // The same namespace in two tenants: one warning, at the first place, naming the other.
    let typo = line("istio-sytem\" is owned");
    assert!(
        typo.starts_with(&format!(
            "warning: {p}:12: tenants[0].egress[1].hosts[1] (tenant prod): namespace \"istio-sytem\" is \
             owned by no tenant and not declared in sharedNamespaces: did you mean \"istio-system\"?"
        )),
        "{err}"
    );
    assert!(
        typo.ends_with("also named at tenants[1].egress[0].hosts[1]"),
        "{err}"
    );
    assert!(
        line("names a service of namespace").starts_with(&format!(
            "warning: {p}:13: tenants[0].egress[1].hosts[2] (tenant prod): \
             \"logmonkey/logcatcher.logmonky.svc.cluster.local\" names a service of namespace \"logmonky\""
        )),
        "{err}"
    );
    assert!(
        line("raw TCP").starts_with(&format!(
            "warning: {p}:5: tenants[0] (tenant prod): raw TCP"
        )),
        "{err}"
    );
    assert!(
        line("no inbound entry").starts_with(&format!(
            "warning: {p}:4: tenants: tenant(s) prod, uat, dev have no inbound entry: enforced at \
             the destination, they refuse every caller outside the tenants, their ingress gateway"
        )),
        "{err}"
    );
    assert!(text(&out.stdout).contains("valid (mode=enforce tenants=3"));
    assert!(text(&out.stdout).contains(", 7 warnings)"));

    // --strict: warnings fail; -q: no warnings, no summary, only the verdict.
    let out = run(&["validate", "--strict", p], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("7 warnings (--strict: warnings fail)"));
    let out = run(&["validate", "-q", p], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        (String::new(), String::new())
    );
    let out = run(&["validate", "-q", "--strict", p], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !text(&out.stderr).contains("warning:"),
        "{}",
        text(&out.stderr)
    );

    // --json: one object with every diagnostic and its place.
    let out = run(&["validate", "--json", p], None);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["warnings"], 7);
    assert_eq!(v["errors"], 0);
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "tenants[0].egress[1].hosts[1]")
        .unwrap();
    assert_eq!(d["severity"], "warning");
    assert_eq!(d["line"], 12);
    assert_eq!(d["tenant"], "prod");
    assert_eq!(d["path"], "tenants[0].egress[1].hosts[1]");
    let out = run(&["validate", "--json", "--strict", p], None);
    assert_eq!(out.status.code(), Some(1));

    // An invalid document in JSON: its errors with their lines.
    let bad = write(
        "bad.yaml",
        "apiVersion: tenant-egress/v1\ntenants:\n  - name: prod\n    namespaces: [prod]\n    egress:\n      - hosts: [\"nope\"]\n",
    );
    let out = run(&["validate", "--json", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["diagnostics"][0]["severity"], "error");
    assert_eq!(v["diagnostics"][0]["line"], 6);
    assert_eq!(v["diagnostics"][0]["tenant"], "prod");
    // Not YAML: one error for the document, the parser's message saying where.
    let broken = write("broken-json.yaml", "apiVersion: [unclosed\n");
    let out = run(&["validate", "--json", broken.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["valid"].clone(), v["errors"].clone()),
        (false.into(), 1.into())
    );
    assert_eq!(v["diagnostics"][0]["path"], "(document)");
    assert!(v["diagnostics"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("not valid YAML: "));
    let out = run(&["validate", bad.to_str().unwrap()], None);
    assert!(
        text(&out.stderr).starts_with(&format!(
            "error: {}:6: tenants[0].egress[0].hosts[0] (tenant prod): \"nope\" is not of the form",
            bad.display()
        )),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn test_runs_cases_and_fails_with_a_diff() {
    let p = write("cases-policy.yaml", TYPOS);
    let p = p.to_str().unwrap();
    let good = write(
        "good.jsonl",
        concat!(
            r#"{"name": "prod reaches the uat db", "expect": "allow", "source": {"namespace": "prod"}, "authority": "cockroachdb.uat:26257"}"#,
            "\n# a comment, and a blank line\n\n",
            r#"{"expect": {"decision": "deny", "reason": "not-allowed", "enforced": true, "rule": "tenants[0].egress[1]"}, "source": {"namespace": "prod"}, "authority": "web.uat:80"}"#,
            "\n",
            r#"{"expect": {"decision": "deny", "enforced": false, "tenant": "dev"}, "source": {"namespace": "dev"}, "authority": "web.uat.svc.cluster.local:80"}"#,
            "\n"
        ),
    );
    let out = run(&["test", p, good.to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).ends_with("3 passed, 0 failed\n"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");

    let bad = write(
        "bad.jsonl",
        concat!(
            r#"{"name": "uat must not reach prod", "expect": "deny", "source": {"namespace": "uat"}, "authority": "db.uat:5432"}"#,
            "\n",
            r#"{"expect": "allow", "source": {}}"#,
            "\n"
        ),
    );
    let out = run(&["test", p, bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(
        s.starts_with(&format!(
            "FAIL {}:1 (uat must not reach prod)\n  decision: expected deny, got allow\n",
            bad.display()
        )),
        "{s}"
    );
    assert!(s.contains("    reason:      allowed\n"), "{s}");
    assert!(
        s.contains(&format!(
            "ERROR {}:2: source.namespace is required",
            bad.display()
        )),
        "{s}"
    );
    assert!(
        text(&out.stderr).contains("0 passed, 1 failed, 1 unreadable"),
        "{}",
        text(&out.stderr)
    );

    // JSON Lines: one result per case.
    let out = run(&["test", "--json", p, good.to_str().unwrap()], None);
    let results: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["passed"], true);
    assert_eq!(results[0]["report"]["decision"], "allow");
    assert_eq!(results[2]["line"], 5);
}

#[test]
fn reach_answers_from_and_to() {
    let p = write("reach.yaml", TYPOS);
    let p = p.to_str().unwrap();
    let out = run(&["reach", p, "--from", "prod"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "namespace prod: tenant prod, mode enforce, REGISTRY_ONLY\n  every pod:\n    \
         port 26257/TCP: uat/cockroachdb.uat.svc.cluster.local\n    \
         other ports: prod/*, istio-sytem/*, logmonkey/logcatcher.logmonky.svc.cluster.local\n  \
         note: REGISTRY_ONLY: destinations outside the service registry are denied\n"
    );
    // With clusterNetworks, ALLOW_ANY opens only what is outside the cluster: dev is then no
    // way into uat.
    let fenced = text(&run(&["reach", p, "--to", "uat"], None).stdout);
    assert!(!fenced.contains("ALLOW_ANY"), "{fenced}");
    let open = write(
        "reach-open.yaml",
        &TYPOS.replace("clusterNetworks: [10.96.0.0/12]\n", ""),
    );
    let p = open.to_str().unwrap();
    let out = run(&["reach", p, "--to", "uat"], None);
    let s = text(&out.stdout);
    assert!(
        s.starts_with("namespace uat (tenant uat) is reachable from:\n"),
        "{s}"
    );
    assert!(
        s.contains("  prod: port 26257/TCP: uat/cockroachdb.uat.svc.cluster.local\n"),
        "{s}"
    );
    assert!(s.contains("  uat: any port: uat/*\n"), "{s}");
    assert!(
        s.contains("  ALLOW_ANY (its pods by IP address, via PassthroughCluster): dev\n"),
        "{s}"
    );
    assert!(s.contains("  audit mode (nothing blocked): dev\n"), "{s}");

    let out = run(&["reach", p, "--to", "uat", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["owner"], "uat");
    assert_eq!(v["paths"][0]["namespace"], "prod");
    assert_eq!(v["paths"][0]["port"], 26257);
    assert_eq!(v["paths"][0]["protocol"], "TCP");
    assert_eq!(v["allowAny"][0]["namespace"], "dev");
    assert_eq!(v["audit"][0]["tenant"], "dev");
    let out = run(&["reach", p, "--from", "dev", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "audit");
    assert_eq!(v["outboundTrafficPolicy"], "ALLOW_ANY");

    let out = run(&["reach", p], None);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["reach", p, "--from", "Prod"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn explain_says_what_it_assumed_and_asks_for_a_missing_port() {
    let p = write("assume.yaml", TYPOS);
    let p = p.to_str().unwrap();
    let out = run(
        &[
            "explain",
            p,
            "--source-namespace",
            "prod",
            "--authority",
            "cockroachdb.uat:26257",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "assumed:     cluster outbound|26257||cockroachdb.uat.svc.cluster.local (no --cluster given"
        ),
        "{}",
        text(&out.stdout)
    );
    let out = run(
        &[
            "explain",
            p,
            "--source-namespace",
            "prod",
            "--authority",
            "cockroachdb.uat:26257",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["assumedCluster"],
        "outbound|26257||cockroachdb.uat.svc.cluster.local"
    );
    // With --cluster, nothing is assumed.
    let out = run(
        &[
            "explain",
            p,
            "--source-namespace",
            "prod",
            "--authority",
            "cockroachdb.uat:26257",
            "--cluster",
            "outbound|26257||cockroachdb.uat.svc.cluster.local",
        ],
        None,
    );
    assert!(!text(&out.stdout).contains("assumed:"));
    // prod's egress depends on the port: without one, explain asks for it.
    let out = run(
        &[
            "explain",
            p,
            "--source-namespace",
            "prod",
            "--authority",
            "cockroachdb.uat",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\nerror: which port?"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");
    // uat's does not (one catch-all): decided.
    let out = run(
        &[
            "explain",
            p,
            "--source-namespace",
            "uat",
            "--authority",
            "db.uat",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("decision:    ALLOW"));
}

#[test]
fn import_declares_the_namespaces_its_sidecars_name_as_shared() {
    let sidecars = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: prod}
spec:
  egress:
    - hosts: [\"./*\", \"istio-system/*\", \"*/db.shared.svc.cluster.local\"]
";
    let out = run(&["import", "-"], Some(sidecars));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let policy = text(&out.stdout);
    assert!(policy.contains("sharedNamespaces:"), "{policy}");
    let p = write("imported.yaml", &policy);
    let out = run(&["validate", "--json", p.to_str().unwrap()], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    let out = run(
        &["reach", p.to_str().unwrap(), "--to", "shared", "--json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["shared"], true, "{v}");
    assert_eq!(v["paths"][0]["hosts"][0], "*/db.shared.svc.cluster.local");
}

/// A cluster whose prod pods serve a ServiceEntry host that uat's Sidecar imports.
const SIDECARS_AND_SERVICE_ENTRIES: &str = "apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: Sidecar
  metadata: {name: default, namespace: prod}
  spec: {egress: [{hosts: [\"./*\"]}], outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
- apiVersion: networking.istio.io/v1
  kind: Sidecar
  metadata: {name: default, namespace: uat}
  spec: {egress: [{hosts: [\"./*\", \"*/db.prod.example.com\"]}], outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
- apiVersion: networking.istio.io/v1
  kind: ServiceEntry
  metadata: {name: db, namespace: prod}
  spec:
    hosts: [db.prod.example.com, \"bad host\"]
    location: MESH_INTERNAL
    ports: [{number: 80, name: http, protocol: HTTP}]
    resolution: STATIC
    workloadSelector: {labels: {app: db}}
- apiVersion: networking.istio.io/v1beta1
  kind: ServiceEntry
  metadata: {name: github, namespace: uat}
  spec: {hosts: [api.github.com], location: MESH_EXTERNAL, resolution: DNS}
";

/// `kubectl get sidecars,serviceentries -A -o yaml | tenant-egress import -`, then `generate`:
/// prod's destination plugin carries uat's rule for the host prod's pods serve, so the sharded
/// destination end decides it instead of refusing it as undeclared-service.
#[test]
fn import_fills_serves_from_service_entries_and_generate_shards_by_it() {
    let out = run(&["import", "-"], Some(SIDECARS_AND_SERVICE_ENTRIES));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("ServiceEntry prod/db: hosts[1]: illegal host \"bad host\""),
        "{err}"
    );
    assert!(!err.contains("not a networking.istio.io"), "{err}");
    let policy = text(&out.stdout);
    let p = write("imported-serves.yaml", &policy);
    let p = p.to_str().unwrap();
    let out = run(&["validate", "--json", p], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true, "{v}");
    let out = run(&["generate", p, "--allow-unpinned"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let docs: Vec<serde_json::Value> =
        tenant_egress_config::yaml::from_str_multiple(&text(&out.stdout)).unwrap();
    let inbound = |ns: &str| {
        docs.iter()
            .find(|d| {
                d["kind"] == "WasmPlugin"
                    && d["metadata"]["name"] == "tenant-egress-inbound"
                    && d["metadata"]["namespace"] == ns
            })
            .unwrap_or_else(|| panic!("no destination plugin in {ns}"))["spec"]["pluginConfig"]
            .clone()
    };
    let tenant = |cfg: &serde_json::Value, name: &str| {
        cfg["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
    };
    let prod = inbound("prod");
    assert_eq!(prod["destinationShard"], "prod", "{prod}");
    assert_eq!(
        tenant(&prod, "prod").unwrap()["serves"],
        serde_json::json!(["db.prod.example.com"]),
        "{prod}"
    );
    let uat =
        tenant(&prod, "uat").unwrap_or_else(|| panic!("uat's rule is not in prod's shard: {prod}"));
    assert_eq!(
        uat["egress"][0]["hosts"],
        serde_json::json!(["*/db.prod.example.com"]),
        "{prod}"
    );
    // uat's selector-less ServiceEntry added nothing, and prod's host is not uat's.
    let uat_shard = inbound("uat");
    assert!(
        tenant(&uat_shard, "uat").unwrap().get("serves").is_none(),
        "{uat_shard}"
    );
}

#[test]
fn graph_views_namespace_and_whole() {
    let fenced = write("graph-fenced.yaml", TYPOS);
    let m = text(&run(&["graph", fenced.to_str().unwrap()], None).stdout);
    assert!(
        m.contains("{{\"outside the registry (not clusterNetworks)\"}}"),
        "{m}"
    );
    let p = write(
        "graph.yaml",
        &TYPOS.replace("clusterNetworks: [10.96.0.0/12]\n", ""),
    );
    let p = p.to_str().unwrap();
    let out = run(&["graph", p], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let m = text(&out.stdout);
    // Tenants as nodes, audit marked, ALLOW_ANY drawn as a red edge out of the registry.
    assert!(m.contains("  n2[\"dev [audit]\"]\n"), "{m}");
    assert!(m.contains("-->|\"ALLOW_ANY\"|"), "{m}");
    assert!(
        m.contains("{{\"outside the registry: any IP, pods of every namespace\"}}"),
        "{m}"
    );
    assert!(
        m.contains("-->|\"26257/TCP: cockroachdb.uat.svc.cluster.local\"| n1"),
        "{m}"
    );
    let out = run(&["graph", p, "--whole"], None);
    let w = text(&out.stdout);
    assert!(w.contains("[\"prod (+ services of 2 more)\"]"), "{w}");
    assert!(!w.contains("cockroachdb.uat.svc.cluster.local"), "{w}");

    let out = run(&["graph", p, "--namespace", "uat", "--format", "dot"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = text(&out.stdout);
    assert!(d.starts_with("digraph tenant_egress {"), "{d}");
    assert!(d.contains("[label=\"uat (tenant uat)\"]"), "{d}");
    assert!(
        d.contains("[label=\"26257/TCP: cockroachdb.uat.svc.cluster.local\"]"),
        "{d}"
    );
    assert!(d.contains("[label=\"ALLOW_ANY\", color=red"), "{d}");
    // uat's own egress is there; prod's other edges (logmonkey) are not uat's.
    assert!(d.contains("n0 -> n1 [label=\"all ports\"];"), "{d}");
    assert!(!d.contains("logmonkey"), "{d}");

    let out = run(&["graph", p, "--view", "namespaces"], None);
    assert!(text(&out.stdout).contains("subgraph t0[\"tenant prod\"]"));
    assert_eq!(
        run(&["graph", p, "--namespace", "uat", "--whole"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["graph", p, "--namespace", "Nope"], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn explain_at_the_destination_on_the_callers_identity() {
    let policy = write("both-ends.yaml", POLICY);
    let p = policy.to_str().unwrap();
    let sni = "outbound_.26257_._.cockroachdb.prod.svc.cluster.local";
    let out = run(
        &[
            "explain",
            p,
            "--at",
            "destination",
            "--caller",
            "spiffe://cluster.local/ns/uat/sa/default",
            "--sni",
            sni,
            "--destination-namespace",
            "prod",
            "--protocol",
            "tcp",
        ],
        None,
    );
    let s = text(&out.stdout);
    assert!(s.contains("at:          the destination (workload namespace prod), caller spiffe://cluster.local/ns/uat/sa/default"), "{s}");
    assert!(
        s.contains("decision:    DENY") && s.contains("tenant uat"),
        "{s}"
    );
    let batch = format!(
        "{{\"at\": \"destination\", \"caller\": \"spiffe://cluster.local/ns/prod/sa/default\", \"sni\": \"{sni}\", \"destinationNamespace\": \"prod\", \"protocol\": \"tcp\"}}\n\
         {{\"at\": \"destination\", \"sni\": \"{sni}\", \"destinationNamespace\": \"prod\"}}\n\
         {{\"at\": \"destination\", \"caller\": \"spiffe://other.example/ns/prod/sa/default\", \"destinationNamespace\": \"prod\"}}\n\
         {{\"at\": \"destination\", \"caller\": \"spiffe://cluster.local/ns/prod/sa/default\"}}\n"
    );
    let out = run(&["explain", p, "--batch", "-"], Some(&batch));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{}", text(&out.stdout));
    assert_eq!(
        (lines[0]["decision"].as_str(), lines[0]["tenant"].as_str()),
        (Some("allow"), Some("prod"))
    );
    assert_eq!(lines[1]["reason"], "no-peer-identity");
    assert_eq!(lines[2]["reason"], "untrusted-peer");
    assert!(
        lines[3]["error"]
            .as_str()
            .unwrap()
            .contains("destinationNamespace"),
        "{}",
        lines[3]
    );
    assert_eq!(out.status.code(), Some(1));
}

// === The policy as a directory (settings.yaml + tenants/<name>.yaml) ===

/// Writes a policy directory under a fresh `name` (removed first): `settings.yaml` holding
/// `settings`, then each `(relative path, text)`.
fn write_dir(name: &str, settings: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("tenant-egress-cli-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::write(dir.join("settings.yaml"), settings).unwrap();
    for (rel, text) in files {
        std::fs::write(dir.join(rel), text).unwrap();
    }
    dir
}

/// Generated output without its header lines (they name the input: `policy.yaml` vs `dir`).
fn without_header(out: &Output) -> String {
    let all = text(&out.stdout);
    assert!(!all.is_empty(), "{}", text(&out.stderr));
    all.lines()
        .filter(|l| !l.starts_with("# Generated by ") && !l.starts_with("# Regenerate with: "))
        .collect::<Vec<_>>()
        .join("\n")
}

const DIR_SETTINGS: &str = "# document-wide\napiVersion: tenant-egress/v1\nsharedNamespaces: [istio-system, logmonkey]\nunknownSource: deny\n";
const DIR_PROD: &str = "# owned by the prod team
namespaces: [prod]
egress:
  - port: {number: 26257, protocol: TCP}
    hosts: [\"./*\"]
  - hosts: [\"./*\", \"istio-system/*\", \"uat/api.uat.svc.cluster.local\"]
workloads:
  - name: batman
    selector: {app.kubernetes.io/name: batman-app}
    egress:
      - hosts: [\"logmonkey/logcatcher.logmonkey.svc.cluster.local\"]
";
const DIR_UAT: &str =
    "name: uat\nnamespaces: [uat, uat-2]\nmode: audit\negress: [{hosts: [\"./*\"]}]\n";

/// The same policy as one file, written by hand (tenants in file-name order).
const DIR_AS_ONE_FILE: &str = "apiVersion: tenant-egress/v1
sharedNamespaces: [istio-system, logmonkey]
unknownSource: deny
tenants:
  - name: prod
    namespaces: [prod]
    egress:
      - port: {number: 26257, protocol: TCP}
        hosts: [\"./*\"]
      - hosts: [\"./*\", \"istio-system/*\", \"uat/api.uat.svc.cluster.local\"]
    workloads:
      - name: batman
        selector: {app.kubernetes.io/name: batman-app}
        egress:
          - hosts: [\"logmonkey/logcatcher.logmonkey.svc.cluster.local\"]
  - name: uat
    namespaces: [uat, uat-2]
    mode: audit
    egress: [{hosts: [\"./*\"]}]
";

#[test]
fn a_policy_directory_generates_what_the_single_file_generates() {
    let dir = write_dir(
        "dir-equal",
        DIR_SETTINGS,
        &[
            ("tenants/prod.yaml", DIR_PROD),
            ("tenants/uat.yaml", DIR_UAT),
        ],
    );
    let file = write("dir-equal.yaml", DIR_AS_ONE_FILE);
    let (dir, file) = (dir.to_str().unwrap(), file.to_str().unwrap());

    let v = run(&["validate", dir], None);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
    let f = run(&["validate", file], None);
    let summary = |o: &Output| text(&o.stdout).split_once(": ").unwrap().1.to_owned();
    assert_eq!(summary(&v), summary(&f));
    assert!(
        summary(&v).contains("tenants=2 namespaces=3"),
        "{}",
        summary(&v)
    );

    for extra in [
        &["--allow-unpinned"][..],
        &["--only", "sidecars"],
        &["--format", "json", "--allow-unpinned"],
    ] {
        let mut a = vec!["generate", dir];
        a.extend_from_slice(extra);
        let from_dir = run(&a, None);
        assert_eq!(
            from_dir.status.code(),
            Some(0),
            "{}",
            text(&from_dir.stderr)
        );
        a[1] = file;
        let from_file = run(&a, None);
        assert_eq!(
            from_file.status.code(),
            Some(0),
            "{}",
            text(&from_file.stderr)
        );
        assert_eq!(
            without_header(&from_dir),
            without_header(&from_file),
            "{extra:?}"
        );
    }
    // The header names the directory, and how to regenerate from it.
    let out = run(&["generate", dir, "--only", "sidecars"], None);
    assert!(
        text(&out.stdout)
            .contains("Regenerate with: tenant-egress generate dir-equal --only sidecars"),
        "{}",
        text(&out.stdout)
    );

    // graph, reach and explain read it alike; explain names the deciding rule's file.
    let g = |p: &str| text(&run(&["graph", p, "--format", "dot"], None).stdout);
    assert_eq!(g(dir), g(file));
    let r = |p: &str| text(&run(&["reach", p, "--to", "uat", "--json"], None).stdout);
    assert_eq!(r(dir), r(file));
    let ask = ["--source-namespace", "prod", "--authority", "db.uat:26257"];
    let e = run(&[&["explain", dir][..], &ask].concat(), None);
    let explained = text(&e.stdout);
    assert!(explained.contains("decision:    DENY"), "{explained}");
    assert!(
        explained.contains(&format!(
            "rule:        egress[0] in {dir}/tenants/prod.yaml:4 "
        )),
        "{explained}"
    );
    // Its JSON keeps the whole document's paths (what the filter logs and the 403 body names).
    let j = run(&[&["explain", dir, "--json"][..], &ask].concat(), None);
    let j: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let k = run(&[&["explain", file, "--json"][..], &ask].concat(), None);
    let k: serde_json::Value = serde_json::from_slice(&k.stdout).unwrap();
    assert_eq!(j, k);
}

#[test]
fn errors_in_a_policy_directory_name_the_file_the_line_and_the_path_in_it() {
    let dir = write_dir(
        "dir-errors",
        "apiVersion: tenant-egress/v1\nmdoe: audit\n",
        &[
            (
                "tenants/prod.yaml",
                "namespaces: [prod]\negress:\n  - hosts:\n      - ./*\n      - \"ns/*bar.com\"\n",
            ),
            ("tenants/uat.yaml", DIR_UAT),
        ],
    );
    let d = dir.to_str().unwrap();
    let out = run(&["validate", d], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: {d}/settings.yaml:1: (document): unknown field \"mdoe\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: {d}/tenants/prod.yaml:5: egress[0].hosts[1] (tenant prod): \"ns/*bar.com\""
        )),
        "{err}"
    );
    assert!(
        err.trim_end()
            .ends_with(&format!("{d}: invalid (2 errors)")),
        "{err}"
    );

    let out = run(&["validate", "--json", d], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["input"], d);
    let host = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["path"] == "egress[0].hosts[1]")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(host["file"], format!("{d}/tenants/prod.yaml"));
    assert_eq!(host["line"], 5);
    assert_eq!(host["tenant"], "prod");
    assert_eq!(host["severity"], "error");

    // Warnings name their file too, and a JSON tenant file gets lines alike.
    let dir = write_dir(
        "dir-warnings",
        DIR_SETTINGS,
        &[(
            "tenants/prod.json",
            "{\n  \"namespaces\": [\"prod\"],\n  \"egress\": [\n    {\"hosts\": [\"./*\", \"istio-sytem/*\"]}\n  ]\n}\n",
        )],
    );
    let d = dir.to_str().unwrap();
    let out = run(&["validate", "--strict", d], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "warning: {d}/tenants/prod.json:4: egress[0].hosts[1] (tenant prod): namespace \"istio-sytem\""
        )),
        "{err}"
    );
}

#[test]
fn cross_file_rules_name_both_files() {
    // uat's team claims prod's namespace.
    let dir = write_dir(
        "dir-claimed",
        DIR_SETTINGS,
        &[
            ("tenants/prod.yaml", DIR_PROD),
            (
                "tenants/uat.yaml",
                "namespaces:\n  - uat\n  - prod\negress: [{hosts: [\"./*\"]}]\n",
            ),
        ],
    );
    let d = dir.to_str().unwrap();
    let out = run(&["validate", d], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: {d}/tenants/uat.yaml:3: namespaces[1] (tenant uat): namespace \"prod\" is already \
             claimed by namespaces[0] in {d}/tenants/prod.yaml:2; a namespace belongs to at most one tenant"
        )),
        "{err}"
    );

    // Two files for one tenant (prod.yaml and prod.yml): the names collide.
    let dir = write_dir(
        "dir-collide",
        DIR_SETTINGS,
        &[
            ("tenants/prod.yaml", DIR_PROD),
            (
                "tenants/prod.yml",
                "name: prod\nnamespaces: [prod-2]\negress: [{hosts: [\"./*\"]}]\n",
            ),
        ],
    );
    let d = dir.to_str().unwrap();
    let err = text(&run(&["validate", d], None).stderr);
    assert!(
        err.contains(&format!(
            "error: {d}/tenants/prod.yml:1: name (tenant prod): name \"prod\" is already used by \
             name in {d}/tenants/prod.yaml:"
        )),
        "{err}"
    );

    // A tenant file holds the tenant it is named after: ownership of uat.yaml is not
    // ownership of tenant prod.
    let dir = write_dir(
        "dir-misnamed",
        DIR_SETTINGS,
        &[(
            "tenants/uat.yaml",
            "# uat team\nname: prod\nnamespaces: [uat]\n",
        )],
    );
    let d = dir.to_str().unwrap();
    let out = run(&["validate", "--json", d], None);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diag = &v["diagnostics"][0];
    assert_eq!(diag["file"], format!("{d}/tenants/uat.yaml"), "{v}");
    assert_eq!(
        (diag["path"].as_str(), diag["line"].as_u64()),
        (Some("name"), Some(2))
    );
    assert!(
        diag["message"]
            .as_str()
            .unwrap()
            .contains("the tenant is named \"prod\""),
        "{v}"
    );
}

#[test]
fn a_policy_directory_refuses_what_it_would_not_read() {
    // A tenant in the settings, a file tenants/ would skip, a subdirectory: each an error
    // (a tenant silently left out would make its namespaces unknown sources).
    let dir = write_dir(
        "dir-layout",
        "apiVersion: tenant-egress/v1\ntenants:\n  - {name: a, namespaces: [a]}\n",
        &[
            ("tenants/prod.yaml", DIR_PROD),
            ("tenants/uat.yaml.bak", DIR_UAT),
            ("tenants/.hidden.yaml", "not: [read"),
            ("CODEOWNERS", "/tenants/prod.yaml @prod\n"),
        ],
    );
    std::fs::create_dir_all(dir.join("tenants/more")).unwrap();
    let d = dir.to_str().unwrap();
    let out = run(&["validate", d], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: {d}/settings.yaml:2: tenants: `tenants:` does not belong"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: {d}/tenants/uat.yaml.bak: (document): not a tenant file"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "error: {d}/tenants/more: (directory): a directory in tenants/"
        )),
        "{err}"
    );
    assert!(
        !err.contains(".hidden") && !err.contains("CODEOWNERS"),
        "{err}"
    );
    assert!(
        err.trim_end()
            .ends_with(&format!("{d}: invalid (3 errors)")),
        "{err}"
    );

    // A syntax error names its file; a directory without settings says what one holds.
    let dir = write_dir(
        "dir-syntax",
        DIR_SETTINGS,
        &[("tenants/prod.yaml", "egress: [unclosed\n")],
    );
    let d = dir.to_str().unwrap();
    let err = text(&run(&["validate", d], None).stderr);
    assert!(
        err.starts_with(&format!(
            "error: {d}/tenants/prod.yaml: (document): not valid YAML: "
        )),
        "{err}"
    );
    std::fs::remove_file(dir.join("settings.yaml")).unwrap();
    let out = run(&["generate", d, "--allow-unpinned"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no settings.yaml: a policy directory holds settings.yaml"));
}

const CLUSTER_SIDECARS: &str = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: prod}
spec:
  egress:
    - port: {number: 26257, protocol: TCP, name: db}
      hosts: [\"./*\"]
    - hosts: [\"./*\", \"istio-system/*\"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: batman, namespace: prod}
spec:
  workloadSelector: {labels: {app: batman}}
  egress:
    - port: {number: 26257, protocol: TCP, name: db}
      hosts: [\"./*\"]
    - hosts: [\"./*\", \"istio-system/*\", \"logmonkey/*\"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: logmonkey}
spec:
  egress: [{hosts: [\"./*\", \"istio-system/*\"]}]
";

#[test]
fn import_writes_a_directory_that_validates_and_generates_the_same() {
    let base = std::env::temp_dir()
        .join(format!("tenant-egress-cli-{}", std::process::id()))
        .join("import-dir");
    let _ = std::fs::remove_dir_all(&base);
    let dir = base.join("policy");
    let file = base.join("policy.yaml");
    std::fs::create_dir_all(&base).unwrap();
    let (d, f) = (dir.to_str().unwrap(), file.to_str().unwrap());

    let out = run(&["import", "-", "--out", d], Some(CLUSTER_SIDECARS));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("wrote {d} (settings.yaml and 2 tenant files)")));
    let mut names: Vec<String> = std::fs::read_dir(dir.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["logmonkey.yaml", "prod.yaml"]);
    let settings = std::fs::read_to_string(dir.join("settings.yaml")).unwrap();
    assert!(
        settings.starts_with("# Imported by tenant-egress"),
        "{settings}"
    );
    assert!(!settings.contains("tenants:"), "{settings}");
    let prod = std::fs::read_to_string(dir.join("tenants/prod.yaml")).unwrap();
    assert!(
        prod.contains("name: prod\n") && prod.contains("batman"),
        "{prod}"
    );

    let out = run(&["import", "-", "--out", f], Some(CLUSTER_SIDECARS));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let v = run(&["validate", d], None);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v.stderr));
    for only in ["sidecars", "wasmplugin"] {
        let args = |p| vec!["generate", p, "--only", only, "--allow-unpinned"];
        let from_dir = run(&args(d), None);
        let from_file = run(&args(f), None);
        assert_eq!(
            from_dir.status.code(),
            Some(0),
            "{}",
            text(&from_dir.stderr)
        );
        assert_eq!(
            without_header(&from_dir),
            without_header(&from_file),
            "{only}"
        );
    }
    // The directory imported is the cluster's Sidecars again.
    let sidecars = text(&run(&["generate", d, "--only", "sidecars"], None).stdout);
    assert!(
        sidecars.contains("namespace: logmonkey") && sidecars.contains("name: batman"),
        "{sidecars}"
    );

    // Never into a directory that holds something: its files would merge with the import.
    let out = run(&["import", "-", "--out", d], Some(CLUSTER_SIDECARS));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("exists and is not empty"),
        "{}",
        text(&out.stderr)
    );
}

/// The demo's policy is a directory: it validates, and generates what the same tenants
/// written as one file (the files pasted under `tenants:`) generate.
#[test]
fn the_demo_policy_directory_validates_and_generates_as_one_file() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/policy");
    let d = demo.to_str().unwrap();
    let out = run(&["validate", d], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("tenants=5 namespaces=5"),
        "{}",
        text(&out.stdout)
    );

    let mut one = std::fs::read_to_string(demo.join("settings.yaml")).unwrap();
    one.push_str("tenants:\n");
    let mut files: Vec<_> = std::fs::read_dir(demo.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5);
    for path in files {
        let mut first = true;
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let item = first && !line.trim().is_empty() && !line.starts_with('#');
            one.push_str(if item { "  - " } else { "    " });
            one.push_str(line);
            one.push('\n');
            first &= !item;
        }
    }
    let file = write("demo-as-one-file.yaml", &one);
    let args = |p| vec!["generate", p, "--allow-unpinned"];
    let from_dir = run(&args(d), None);
    let from_file = run(&args(file.to_str().unwrap()), None);
    assert_eq!(
        from_file.status.code(),
        Some(0),
        "{}\n{one}",
        text(&from_file.stderr)
    );
    assert_eq!(without_header(&from_dir), without_header(&from_file));
}
