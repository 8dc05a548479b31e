//! The shipped alerts and dashboard (`istio/monitoring/`) against the metrics a real Envoy with
//! the filter exports, checked with `promtool` (Debian's `prometheus` package; scripts/setup.sh
//! installs it):
//! - the PrometheusRule's rule groups pass `promtool check rules`, and `promtool test rules`
//!   replays `alerts-test.yaml` (each alert fires when it should and stays quiet otherwise);
//! - every dashboard query parses as PromQL;
//! - every metric name the rules and the dashboard use is one the filter really exports on
//!   Envoy's `/stats/prometheus`, so a renamed counter breaks this test, not a dashboard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tenant_egress_tests::*;

fn monitoring_dir() -> PathBuf {
    workspace_root().join("istio/monitoring")
}

fn promtool() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("promtool");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "promtool not found on PATH: run scripts/setup.sh (installs Debian's prometheus package)"
    );
}

fn run_promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The PrometheusRule's `spec` (its `groups:`), as a plain Prometheus rule file: the lines
/// below `spec:` with their two spaces of indentation removed.
fn rule_file_from_prometheus_rule(text: &str) -> String {
    let mut out = String::new();
    let mut in_spec = false;
    for line in text.lines() {
        if line == "spec:" {
            in_spec = true;
            continue;
        }
        if in_spec {
            if !line.is_empty() && !line.starts_with("  ") {
                break;
            }
            out.push_str(line.strip_prefix("  ").unwrap_or(line));
            out.push('\n');
        }
    }
    assert!(
        out.starts_with("groups:"),
        "no spec.groups in the PrometheusRule"
    );
    out
}

/// `tenant_egress_*` metric names in a PromQL expression; a `__name__=~"re"` matcher is
/// returned as the regex with a leading `~`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tenant_egress_") {
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        // A quoted name is a regex (a `__name__=~` matcher, or label_replace's pattern).
        if before == Some('"') {
            let close = tail.find('"').unwrap_or(tail.len());
            out.push(format!("~{}", &tail[..close]));
            rest = &tail[close..];
        } else {
            out.push(name.to_owned());
            rest = &tail[end..];
        }
    }
    out
}

fn matches_regex(re: &str, name: &str) -> bool {
    // The only regexes used are `<prefix>.+` and `<prefix>(.+)`.
    let prefix = re.trim_end_matches(".+").trim_end_matches("(.+)");
    name.len() > prefix.len() && name.starts_with(prefix)
}

#[test]
fn alerts_and_dashboard_match_the_metrics_envoy_exports() {
    // A sidecar with the filter in enforce mode, one allowed and one denied request, so the
    // counters are live, then the Prometheus exposition of its stats.
    let policy = json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": [{"hosts": ["./*"]}]}]
    })
    .to_string();
    let envoy = EnvoyConfig::new("prod")
        .service("api", "prod", &[8080])
        .service("api", "uat", &[8080])
        .wasm_filter(&policy)
        .start();
    assert_eq!(
        get(envoy.listener_port(8080), "api.prod:8080", "/").status,
        200
    );
    assert_denied(
        &get(envoy.listener_port(8080), "api.uat:8080", "/"),
        "not-allowed",
        "prod -> api.uat",
    );
    assert!(envoy
        .wait_for_counter("tenant_egress.denied", 1, WAIT)
        .is_some());
    let exposition = envoy.admin_get("/stats/prometheus");
    let mut exported: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("tenant_egress_"))
        .map(str::to_owned)
        .collect();
    assert!(
        exported.contains("tenant_egress_denied_not_allowed"),
        "Envoy exports no tenant_egress_denied_not_allowed:\n{exposition}"
    );
    // The network filter defines the same counters under `connections` (filter/src/metrics.rs,
    // asserted against a real Envoy in tests/tests/tcp.rs).
    let connections: Vec<String> = exported
        .iter()
        .map(|n| n.replacen("tenant_egress_", "tenant_egress_connections_", 1))
        .collect();
    exported.extend(connections);

    let dir = monitoring_dir();
    let work = tenant_egress_tests::envoy::new_run_dir();

    // Rules: promtool's own syntax check, then its unit tests of the alerts.
    let rule = std::fs::read_to_string(dir.join("prometheusrule.yaml")).unwrap();
    let rules = rule_file_from_prometheus_rule(&rule);
    std::fs::write(work.join("rules.yaml"), &rules).unwrap();
    std::fs::copy(dir.join("alerts-test.yaml"), work.join("alerts-test.yaml")).unwrap();
    let checked = run_promtool(&["check", "rules", "rules.yaml"], &work);
    assert!(checked.contains("SUCCESS: 3 rules found"), "{checked}");
    let tested = run_promtool(&["test", "rules", "alerts-test.yaml"], &work);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Dashboard: every query, with Grafana's variables filled in, as a recording rule for
    // promtool to parse.
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for t in targets {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 6, "dashboard has {} queries", exprs.len());
    let mut parse = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let filled = e
            .replace("$__rate_interval", "5m")
            .replace("$namespace", ".*");
        parse.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&filled).unwrap()
        ));
    }
    std::fs::write(work.join("dashboard-rules.yaml"), &parse).unwrap();
    run_promtool(&["check", "rules", "dashboard-rules.yaml"], &work);

    // Every metric the rules and the dashboard name exists.
    let mut used: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    used.extend(rules.lines().flat_map(metric_names));
    assert!(used.len() >= 8, "found only {used:?}");
    for name in &used {
        let known = match name.strip_prefix('~') {
            Some(re) => exported.iter().any(|n| matches_regex(re, n)),
            None => exported.contains(name),
        };
        assert!(
            known,
            "{name} is used by istio/monitoring but Envoy exports no such metric; exported: {exported:?}"
        );
    }
}

#[test]
fn metric_name_extraction_finds_names_and_regexes() {
    assert_eq!(
        metric_names(r#"sum(rate(tenant_egress_denied{namespace=~"$namespace"}[5m])) > 0"#),
        vec!["tenant_egress_denied"]
    );
    assert_eq!(
        metric_names(r#"{__name__=~"tenant_egress_denied_.+", x="y"}"#),
        vec!["~tenant_egress_denied_.+"]
    );
    assert!(matches_regex(
        "tenant_egress_denied_.+",
        "tenant_egress_denied_excluded"
    ));
    assert!(!matches_regex(
        "tenant_egress_denied_.+",
        "tenant_egress_denied_"
    ));
    assert!(!matches_regex(
        "tenant_egress_denied_.+",
        "tenant_egress_allowed"
    ));
}
