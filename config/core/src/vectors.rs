//! The shared request vectors (`config/core/testdata/vectors.json`): one corpus of
//! policy + request + expected decision, replayed natively, in wasm and through a real Envoy.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::explain::RequestSpec;
use crate::policy::Policy;

/// The vectors file embedded at build time, so every runner (native, wasm, Envoy) reads the
/// same bytes.
pub const VECTORS_JSON: &str = include_str!("../testdata/vectors.json");

/// The destination end's vectors (`config/core/testdata/inbound-vectors.json`), same format,
/// requests with `"at": "destination"`.
pub const INBOUND_VECTORS_JSON: &str = include_str!("../testdata/inbound-vectors.json");

/// Parses the embedded destination-end vectors.
pub fn load_inbound() -> Result<VectorFile, serde_json::Error> {
    serde_json::from_str(INBOUND_VECTORS_JSON)
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// What the file is.
    pub about: String,
    /// Named policy documents.
    pub policies: BTreeMap<String, serde_json::Value>,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// Which policy of [`VectorFile::policies`].
    pub policy: String,
    /// What the case pins down (and where it comes from).
    pub note: String,
    /// The request.
    pub request: RequestSpec,
    /// The expected outcome.
    pub expect: Expect,
}

/// Expected outcome; absent fields are not checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow` or `deny`.
    pub decision: String,
    /// Reason code.
    pub reason: String,
    /// Rule path.
    #[serde(default)]
    pub rule: Option<String>,
    /// Whether enforced (default: true).
    #[serde(default)]
    pub enforced: Option<bool>,
    /// Destination fields (each compared when present; `null` means "unknown").
    #[serde(default)]
    pub destination: Option<BTreeMap<String, serde_json::Value>>,
}

/// Parses the embedded vectors.
pub fn load() -> Result<VectorFile, serde_json::Error> {
    serde_json::from_str(VECTORS_JSON)
}

/// Compiles every named policy of the file.
pub fn compile_policies(file: &VectorFile) -> Result<BTreeMap<String, Policy>, String> {
    file.policies
        .iter()
        .map(|(name, doc)| {
            let bytes = serde_json::to_vec(doc).map_err(|e| format!("{name}: {e}"))?;
            Policy::from_json(&bytes)
                .map(|(p, _)| (name.clone(), p))
                .map_err(|e| format!("policy {name}: {e}"))
        })
        .collect()
}

/// Runs one case; `Err` says what differed.
pub fn check(policies: &BTreeMap<String, Policy>, case: &Case) -> Result<(), String> {
    let policy = policies
        .get(&case.policy)
        .ok_or_else(|| format!("{}: no policy {}", case.name, case.policy))?;
    let (_, report) = case.request.report(policy);
    let got = serde_json::to_value(&report).map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    let e = &case.expect;
    if report.decision != e.decision {
        diffs.push(format!("decision {} != {}", report.decision, e.decision));
    }
    if report.reason != e.reason {
        diffs.push(format!("reason {} != {}", report.reason, e.reason));
    }
    if let Some(rule) = &e.rule {
        let got_rule = report.rule.as_ref().map(|r| r.path.as_str());
        if got_rule != Some(rule.as_str()) {
            diffs.push(format!("rule {got_rule:?} != {rule}"));
        }
    }
    if report.enforced != e.enforced.unwrap_or(true) {
        diffs.push(format!("enforced {}", report.enforced));
    }
    if let Some(dest) = &e.destination {
        for (k, want) in dest {
            let have = got.get("destination").and_then(|d| d.get(k));
            if have != Some(want) {
                diffs.push(format!("destination.{k} {have:?} != {want}"));
            }
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} ({}): {}; explanation: {}",
            case.name,
            case.note,
            diffs.join(", "),
            report.explanation
        ))
    }
}

#[cfg(test)]
mod tests {
    // Under wasm32 the library's own tests run through wasm-bindgen-test (scripts/test-wasm.sh):
    // every `#[test]` in this module becomes a `#[wasm_bindgen_test]` there.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// Below this the corpus has shrunk (or a runner silently ran a part of it).
    const MIN_VECTORS: usize = 50;

    /// Replays `file`: every case must decide as it says, and the corpus must hold at least
    /// `min` cases. Logs a count line (`<arch>: N <what> over P policies, F failed`) that
    /// scripts/test-wasm.sh requires, so a wasm runner that ran nothing cannot pass.
    fn replay(file: &VectorFile, what: &str, min: usize) {
        let policies = compile_policies(file).expect("vector policies compile");
        let failures: Vec<String> = file
            .cases
            .iter()
            .filter_map(|c| check(&policies, c).err())
            .collect();
        let line = format!(
            "{}: {} {what} over {} policies, {} failed",
            std::env::consts::ARCH,
            file.cases.len(),
            policies.len(),
            failures.len()
        );
        // wasm32-unknown-unknown has no stdout: println! would print nothing there.
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::console_log!("{line}");
        #[cfg(not(target_arch = "wasm32"))]
        println!("{line}");
        assert!(
            failures.is_empty(),
            "{} of {} {what} failed:\n{}",
            failures.len(),
            file.cases.len(),
            failures.join("\n")
        );
        assert!(
            file.cases.len() >= min,
            "only {} {what} (the corpus shrank)",
            file.cases.len()
        );
    }

    /// The caller's end, native and in wasm alike.
    #[test]
    fn every_vector_decides_as_expected() {
        let file = load().expect("vectors.json parses");
        replay(&file, "request vectors", MIN_VECTORS);
    }

    /// The destination end's vectors, native and in wasm alike.
    #[test]
    fn every_inbound_vector_decides_as_expected() {
        let file = load_inbound().expect("inbound-vectors.json parses");
        replay(&file, "inbound vectors", 15);
    }

    #[test]
    fn vector_names_are_unique_and_noted() {
        let file = load().expect("vectors.json parses");
        let mut names = std::collections::BTreeSet::new();
        for c in &file.cases {
            assert!(names.insert(&c.name), "duplicate vector {}", c.name);
            assert!(!c.note.is_empty(), "{} has no note", c.name);
        }
    }
}
