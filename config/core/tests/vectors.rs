//! Replays `testdata/vectors.json` against the native build.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tenant_egress_core::vectors;

#[test]
fn every_vector_decides_as_expected() {
    let file = vectors::load().expect("vectors.json parses");
    let policies = vectors::compile_policies(&file).expect("vector policies compile");
    let failures: Vec<String> = file
        .cases
        .iter()
        .filter_map(|c| vectors::check(&policies, c).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        file.cases.len(),
        failures.join("\n")
    );
    assert!(file.cases.len() >= 50, "the corpus shrank");
}

#[test]
fn vector_names_are_unique_and_noted() {
    let file = vectors::load().unwrap();
    let mut names = std::collections::HashSet::new();
    for c in &file.cases {
        assert!(names.insert(&c.name), "duplicate vector {}", c.name);
        assert!(!c.note.is_empty(), "{} has no note", c.name);
    }
}
