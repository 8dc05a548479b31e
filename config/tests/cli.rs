//! The `tenant-egress` command as a user runs it: exit codes, messages, JSON.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-egress");

const POLICY: &str = r#"
apiVersion: tenant-egress/v1
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
            && err.contains("tenants[0].egress[0].hosts[2]: \"./*\" duplicates"),
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
        "tenants[0].egress[0].hosts[0]: \"foo\" is not of the form namespace/dnsName",
        "tenants[0].egress[0].hosts[1]",
        "tenants[0].egress[0].port.number: port 0 is outside 1..65535",
        "tenants[1].namespaces[0]: namespace \"x\" is already claimed by tenants[0].namespaces[0]",
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
