//! Policy tests: requests with the decision they must get (`tenant-egress test POLICY CASES`).
//!
//! A case file is the `explain --batch` format (JSON Lines, one [`RequestSpec`] per line) with
//! two more fields: `expect`, the decision the request must get, and an optional `name`. So a
//! request that `explain --batch` decided can be pasted into a case file as is, and CI fails
//! when a policy change moves a decision:
//!
//! ```json
//! {"name": "prod keeps its db", "expect": "allow", "source": {"namespace": "prod"}, "authority": "db.prod:26257"}
//! {"expect": {"decision": "deny", "reason": "not-allowed"}, "source": {"namespace": "prod"}, "authority": "db.uat:26257"}
//! ```
//!
//! `expect` is `"allow"`, `"deny"`, or an object naming any of `decision`, `reason`,
//! `enforced` (false: only reported, audit mode), `tenant` and `rule` (the path of the rule that
//! decided, `tenants[0].egress[1]`); what it leaves out is not checked.

use serde::{Deserialize, Serialize};

use crate::explain::{Report, RequestSpec};
use crate::policy::Policy;

/// What a case expects. Every field is optional: only what is named is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Verdict>,
    /// The reason code (`not-allowed`, `allow-any`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the decision is enforced (false for a denial audit mode only reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced: Option<bool>,
    /// The source tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The path of the rule that decided (`tenants[0].egress[1]`, or `tenants[0].egress[1].hosts[2]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The request is let through.
    Allow,
    /// The request is denied (enforced or, in audit mode, only reported).
    Deny,
}

impl Verdict {
    /// `allow` or `deny`, as a [`Report`] says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// `expect` as written: the short `"allow"`/`"deny"`, or the object.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpectForm {
    Short(Verdict),
    Full(Expect),
}

/// One case: a name, the request and what it must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The 1-based line of the case file.
    pub line: usize,
    /// The case's `name`, if any.
    pub name: Option<String>,
    /// The request (the `explain --batch` line without `name` and `expect`).
    pub request: RequestSpec,
    /// What it must get.
    pub expect: Expect,
}

/// One field where the decision differs from the expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// `decision`, `reason`, `enforced`, `tenant` or `rule`.
    pub field: &'static str,
    /// What the case expects.
    pub expected: String,
    /// What the policy decided.
    pub actual: String,
}

/// A case's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The line of the case file.
    pub line: usize,
    /// The case's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Empty when the case passes.
    pub mismatches: Vec<Mismatch>,
    /// The decision, explained.
    pub report: Report,
}

impl Outcome {
    /// Whether the decision met the expectation.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }

    /// How a failing case reads in CI: where (`file:line`), what was expected and what came
    /// instead, and why.
    pub fn to_text(&self, file: &str, source_namespace: Option<&str>) -> String {
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let mut s = format!("FAIL {file}:{}{name}\n", self.line);
        for m in &self.mismatches {
            s.push_str(&format!(
                "  {:<9} expected {}, got {}\n",
                format!("{}:", m.field),
                m.expected,
                m.actual
            ));
        }
        for l in self.report.to_text(source_namespace).lines() {
            s.push_str("    ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

impl Case {
    /// Reads one line of a case file (`line` is its 1-based number). `expect` and
    /// `source.namespace` are required.
    pub fn parse(line: usize, text: &str) -> Result<Case, String> {
        let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let obj = v
            .as_object_mut()
            .ok_or_else(|| "a case is a JSON object".to_owned())?;
        let expect = obj.remove("expect").ok_or_else(|| {
            "missing \"expect\" (\"allow\", \"deny\" or {\"decision\": ..., \"reason\": ...})"
                .to_owned()
        })?;
        let expect = match serde_json::from_value::<ExpectForm>(expect) {
            Ok(ExpectForm::Short(v)) => Expect {
                decision: Some(v),
                ..Expect::default()
            },
            Ok(ExpectForm::Full(e)) => e,
            Err(_) => {
                return Err("\"expect\" is \"allow\", \"deny\" or an object with any of decision, reason, enforced, tenant, rule".to_owned())
            }
        };
        let name = match obj.remove("name") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => return Err("\"name\" must be a string".to_owned()),
        };
        let request = RequestSpec::from_batch_line(&v.to_string())?;
        Ok(Case {
            line,
            name,
            request,
            expect,
        })
    }

    /// Decides the request and compares.
    pub fn run(&self, policy: &Policy) -> Outcome {
        let (_, report) = self.request.report(policy);
        let mut mismatches = Vec::new();
        let mut check = |field, expected: Option<String>, actual: String| {
            if let Some(expected) = expected {
                if expected != actual {
                    mismatches.push(Mismatch {
                        field,
                        expected,
                        actual,
                    });
                }
            }
        };
        let e = &self.expect;
        check(
            "decision",
            e.decision.map(|v| v.as_str().to_owned()),
            report.decision.clone(),
        );
        check("reason", e.reason.clone(), report.reason.clone());
        check(
            "enforced",
            e.enforced.map(|b| b.to_string()),
            report.enforced.to_string(),
        );
        check(
            "tenant",
            e.tenant.clone(),
            report.tenant.clone().unwrap_or_else(|| "(none)".to_owned()),
        );
        // A rule is named by its entry or one of its hosts: `tenants[0].egress[1]` matches a
        // decision by `tenants[0].egress[1].hosts[2]`.
        if let Some(rule) = &e.rule {
            let actual = report.rule.as_ref().map(|r| r.path.as_str());
            let same = actual.is_some_and(|a| {
                a == rule
                    || a.strip_prefix(rule.as_str())
                        .is_some_and(|rest| rest.starts_with(".hosts["))
            });
            if !same {
                mismatches.push(Mismatch {
                    field: "rule",
                    expected: rule.clone(),
                    actual: actual.unwrap_or("(none)").to_owned(),
                });
            }
        }
        Outcome {
            line: self.line,
            name: self.name.clone(),
            mismatches,
            report,
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn policy() -> Policy {
        Policy::from_json(
            br#"{"apiVersion": "tenant-egress/v1",
                 "tenants": [{"name": "prod", "namespaces": ["prod"],
                              "egress": [{"hosts": ["./*", "~./secret.prod.svc.cluster.local"]}]},
                             {"name": "uat", "namespaces": ["uat"], "mode": "audit",
                              "egress": [{"hosts": ["./*"]}]}]}"#,
        )
        .unwrap()
        .0
    }

    #[test]
    fn short_and_full_expectations_pass_and_fail() {
        let p = policy();
        let ok = Case::parse(
            1,
            r#"{"name": "own db", "expect": "allow", "source": {"namespace": "prod"}, "authority": "db.prod:26257"}"#,
        )
        .unwrap();
        assert_eq!(ok.name.as_deref(), Some("own db"));
        let out = ok.run(&p);
        assert!(out.passed(), "{out:?}");

        let bad = Case::parse(
            2,
            r#"{"expect": {"decision": "allow", "reason": "allowed", "rule": "tenants[0].egress[0]"},
                "source": {"namespace": "prod"}, "authority": "secret.prod:443"}"#,
        )
        .unwrap();
        let out = bad.run(&p);
        assert!(!out.passed());
        let fields: Vec<&str> = out.mismatches.iter().map(|m| m.field).collect();
        // The exclusion is still in tenants[0].egress[0]: only decision and reason differ.
        assert_eq!(fields, ["decision", "reason"], "{out:?}");
        assert_eq!(out.mismatches[1].actual, "excluded");
        let text = out.to_text("cases.jsonl", Some("prod"));
        assert!(
            text.starts_with("FAIL cases.jsonl:2\n  decision: expected allow, got deny\n"),
            "{text}"
        );
        assert!(text.contains("    reason:      excluded"), "{text}");

        // Audit: a denial that is only reported.
        let audit = Case::parse(
            3,
            r#"{"expect": {"decision": "deny", "enforced": true}, "source": {"namespace": "uat"}, "authority": "db.prod:26257"}"#,
        )
        .unwrap()
        .run(&p);
        assert_eq!(
            audit.mismatches,
            [Mismatch {
                field: "enforced",
                expected: "true".into(),
                actual: "false".into()
            }]
        );
    }

    #[test]
    fn malformed_cases_say_what_is_wrong() {
        let e = |s: &str| Case::parse(1, s).unwrap_err();
        assert!(e(r#"{"source": {"namespace": "a"}}"#).contains("missing \"expect\""));
        assert!(e(r#"{"expect": "maybe", "source": {"namespace": "a"}}"#)
            .contains("\"allow\", \"deny\""));
        assert!(e(r#"{"expect": "allow", "source": {}}"#).contains("source.namespace"));
        assert!(
            e(r#"{"expect": "allow", "source": {"namespace": "a"}, "authorty": "x"}"#)
                .contains("authorty")
        );
        assert!(e("[1]").contains("JSON object"));
    }
}
