//! Replays the committed seed corpora through the fuzz invariants on the ordinary (stable)
//! toolchain, without libFuzzer: every file under `corpus/<target>/` is one input of that target.
//! A crash libFuzzer finds is kept there too (`corpus/<target>/crash-<what-it-broke>`), so it is
//! replayed here and seeds every later run.
//!
//! `cargo test -- --ignored regenerate_seed_corpora` rewrites the seeds derived from
//! `config/core/testdata/vectors.json`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use tenant_egress_core::vectors;
use tenant_egress_fuzz::input::{encode_vector_case, gen_request_of, DecideInput, PolicySource};
use tenant_egress_fuzz::{
    check_authority, check_cluster, check_decide, check_inbound, check_policy,
};

const TARGETS: &[&str] = &["policy", "authority", "cluster", "decide", "inbound"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn run(target: &str, data: &[u8]) {
    match target {
        "policy" => {
            let _ = check_policy(data);
        }
        "authority" => check_authority(data),
        "cluster" => {
            if let Ok(s) = std::str::from_utf8(data) {
                check_cluster(s);
            }
        }
        "decide" => {
            // libfuzzer-sys decodes with `arbitrary_take_rest`, which for this input is
            // `arbitrary`.
            if let Ok(input) = DecideInput::arbitrary_take_rest(Unstructured::new(data)) {
                check_decide(&input);
            }
        }
        "inbound" => check_inbound(data),
        other => panic!("unknown target {other}"),
    }
}

#[test]
fn seed_corpora_hold_the_invariants() {
    let mut total = 0;
    for target in TARGETS {
        let inputs = files(&root().join("corpus").join(target));
        assert!(!inputs.is_empty(), "corpus/{target} holds no input");
        for path in &inputs {
            let data = fs::read(path).unwrap();
            let result = std::panic::catch_unwind(|| run(target, &data));
            assert!(result.is_ok(), "{target}: {} fails", path.display());
        }
        total += inputs.len();
    }
    assert!(total >= 100, "only {total} seed inputs");
}

/// The `decide` seeds decode to exactly the vector requests they were written from. A seed that
/// is missing or stale after a change to vectors.json is reported, not an error (seeds only
/// guide the fuzzer): `cargo test -- --ignored regenerate_seed_corpora` refreshes them.
#[test]
fn vector_seeds_decode_to_their_request() {
    let file = vectors::load().unwrap();
    let names: Vec<&String> = file.policies.keys().collect();
    let mut stale = Vec::new();
    for case in &file.cases {
        let idx = names.iter().position(|n| **n == case.policy).unwrap();
        let bytes = encode_vector_case(idx, &case.request);
        let input = DecideInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert_eq!(input.policy, PolicySource::Vector(idx), "{}", case.name);
        assert_eq!(input.requests.len(), 1, "{}", case.name);
        assert_eq!(
            input.requests[0],
            gen_request_of(&case.request),
            "{}",
            case.name
        );
        let committed = root().join("corpus/decide").join(&case.name);
        if fs::read(&committed).ok().as_deref() != Some(bytes.as_slice()) {
            stale.push(case.name.as_str());
        }
    }
    if !stale.is_empty() {
        println!(
            "note: {} decide seed(s) missing or stale ({}); refresh with \
             `cargo test -- --ignored regenerate_seed_corpora` in fuzz/",
            stale.len(),
            stale.join(", ")
        );
    }
}

/// Every input decodes, whatever it is: the empty input and a prefix of a seed included.
#[test]
fn any_bytes_decode() {
    for data in [&b""[..], &[1], &[2, 255, 255], &[1; 64], &[255; 300]] {
        let input = DecideInput::arbitrary_take_rest(Unstructured::new(data)).unwrap();
        check_decide(&input);
    }
}

/// The grammar produces mostly valid documents (otherwise `decide` would only test
/// validation).
#[test]
fn grammar_policies_are_mostly_valid() {
    let mut valid = 0;
    let mut total = 0;
    for seed in 0u32..400 {
        let data: Vec<u8> = (0..256u32)
            .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 97) >> 7) as u8)
            .collect();
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&data);
        let input = DecideInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert!(matches!(input.policy, PolicySource::Grammar(_)));
        total += 1;
        if check_policy(&input.policy_document()).is_some() {
            valid += 1;
        }
    }
    assert!(
        valid * 2 >= total,
        "only {valid} of {total} grammar policies are valid"
    );
}

fn file_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Rewrites the seeds derived from the vectors (run by hand after changing vectors.json).
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn regenerate_seed_corpora() {
    let file = vectors::load().unwrap();
    let names: Vec<&String> = file.policies.keys().collect();
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), data).unwrap();
    };
    for (name, doc) in &file.policies {
        write(
            "policy",
            &format!("vector-{name}.json"),
            &serde_json::to_vec_pretty(doc).unwrap(),
        );
    }
    let mut seen_authority = BTreeSet::new();
    let mut seen_cluster = BTreeSet::new();
    for case in &file.cases {
        let idx = names.iter().position(|n| **n == case.policy).unwrap();
        write(
            "decide",
            &case.name,
            &encode_vector_case(idx, &case.request),
        );
        if let Some(a) = &case.request.authority {
            if seen_authority.insert(a.clone()) {
                write("authority", &file_name(&case.name), a.as_bytes());
            }
        }
        if let Some(c) = &case.request.cluster {
            if seen_cluster.insert(c.clone()) {
                write("cluster", &file_name(&case.name), c.as_bytes());
            }
        }
    }
}
