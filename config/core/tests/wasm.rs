//! The policy core compiled to `wasm32-unknown-unknown` and run under Node with
//! `wasm-bindgen-test`: the request vectors and a representative set of the unit-level checks,
//! so the matcher is proven identical where it runs (32-bit `usize`, hashing, no OS).
//!
//! Run with `scripts/test-wasm.sh` (which installs the matching `wasm-bindgen-test-runner`):
//!
//! ```text
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!   cargo test -p tenant-egress-config --target wasm32-unknown-unknown --no-default-features --test wasm
//! ```
//!
//! Native `cargo test` compiles this file to nothing.
#![cfg(target_arch = "wasm32")]
// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use serde_json::json;
use tenant_egress_core::authority::{
    parse_authority, parse_cluster, BadCluster, Cluster, HostKind, MalformedAuthority,
};
use tenant_egress_core::name::{check_dns_name, HostName, NameError};
use tenant_egress_core::pattern::{HostEntry, HostEntryError, HostPattern, NsSelector};
use tenant_egress_core::validate::{validate_json, validate_value};
use tenant_egress_core::{vectors, Policy, Request, Source, Target};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

/// The vectors must run here, not be compiled out: this is the point of the file.
const MIN_VECTORS: usize = 50;

#[wasm_bindgen_test]
fn runs_as_wasm32() {
    // Integer widths differ from the native build: the matcher must not care.
    assert_eq!(std::mem::size_of::<usize>(), 4);
    assert_eq!(usize::MAX as u64, u64::from(u32::MAX));
}

#[wasm_bindgen_test]
fn every_vector_decides_as_expected() {
    let file = vectors::load().expect("vectors.json parses");
    let policies = vectors::compile_policies(&file).expect("vector policies compile");
    let failures: Vec<String> = file
        .cases
        .iter()
        .filter_map(|c| vectors::check(&policies, c).err())
        .collect();
    console_log!(
        "wasm32: {} request vectors over {} policies, {} failed",
        file.cases.len(),
        policies.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed in wasm:\n{}",
        failures.len(),
        file.cases.len(),
        failures.join("\n")
    );
    assert!(
        file.cases.len() >= MIN_VECTORS,
        "only {} vectors ran",
        file.cases.len()
    );
}

// === authority classes (mirrors src/authority.rs tests) ===

fn ok(s: &str) -> (String, HostKind, Option<u16>) {
    let a = parse_authority(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    (a.host.as_str().to_owned(), a.kind, a.port)
}

fn bad(s: &[u8]) -> MalformedAuthority {
    match parse_authority(s) {
        Ok(a) => panic!("{:?} parsed as {a:?}", String::from_utf8_lossy(s)),
        Err(e) => e,
    }
}

#[wasm_bindgen_test]
fn authority_accepts_names_ips_and_ports() {
    assert_eq!(
        ok("Foo.Example.COM"),
        ("foo.example.com".into(), HostKind::Dns, None)
    );
    assert_eq!(
        ok("foo.example.com."),
        ("foo.example.com".into(), HostKind::Dns, None)
    );
    assert_eq!(ok("foo:8080"), ("foo".into(), HostKind::Dns, Some(8080)));
    assert_eq!(ok("foo.:65535"), ("foo".into(), HostKind::Dns, Some(65535)));
    assert_eq!(
        ok("10.0.0.1:80"),
        ("10.0.0.1".into(), HostKind::Ip, Some(80))
    );
    assert_eq!(ok("[::1]:443"), ("::1".into(), HostKind::Ip, Some(443)));
    assert_eq!(
        ok("[2001:DB8::1]"),
        ("2001:db8::1".into(), HostKind::Ip, None)
    );
    assert_eq!(
        ok("[::FFFF:10.0.0.1]"),
        ("::ffff:10.0.0.1".into(), HostKind::Ip, None)
    );
    let max = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(max.len(), 253);
    assert_eq!(ok(&max).0, max);
}

#[wasm_bindgen_test]
fn authority_refuses_every_malformed_class() {
    use MalformedAuthority as M;
    assert_eq!(bad(b""), M::Empty);
    assert_eq!(bad(b":80"), M::Empty);
    assert_eq!(bad(b"user@host"), M::ForbiddenByte(b'@'));
    assert_eq!(bad(b"ho%73t"), M::ForbiddenByte(b'%'));
    assert_eq!(bad(b"a\0b.com"), M::ForbiddenByte(0));
    assert_eq!(bad(b"a.com\r\n"), M::ForbiddenByte(b'\r'));
    assert_eq!(bad(b"a.example,b.example"), M::ForbiddenByte(b','));
    assert_eq!(bad(b"under_score.com"), M::ForbiddenByte(b'_'));
    assert_eq!(bad("b\u{fc}cher.de".as_bytes()), M::NonAscii);
    assert_eq!(bad(b"a..b"), M::BadLabel);
    assert_eq!(bad(b"-a.com"), M::BadLabel);
    assert_eq!(bad(&[b'a'; 64]), M::TooLong);
    assert_eq!(
        bad(["a".repeat(63).as_str(); 4].join(".").as_bytes()),
        M::TooLong
    );
    assert_eq!(bad(b"1.2.3"), M::BadIpv4);
    assert_eq!(bad(b"01.2.3.4"), M::BadIpv4);
    assert_eq!(bad(b"1.2.3.4."), M::BadIpv4);
    assert_eq!(bad(b"[::1"), M::BadIpv6);
    assert_eq!(bad(b"[fe80::1%25eth0]"), M::BadIpv6);
    assert_eq!(bad(b"::1"), M::ExtraColon);
    assert_eq!(bad(b"a:0"), M::BadPort);
    assert_eq!(bad(b"a:65536"), M::BadPort);
    assert_eq!(bad(b"a:+80"), M::BadPort);
    assert_eq!(bad(b"a:080080"), M::BadPort);
}

// === cluster names ===

#[wasm_bindgen_test]
fn cluster_names() {
    assert_eq!(
        parse_cluster("outbound|8080||helloworld.foo.svc.cluster.local"),
        Ok(Cluster::Outbound {
            port: 8080,
            subset: "",
            host: HostName::lower(b"helloworld.foo.svc.cluster.local").unwrap()
        })
    );
    assert_eq!(
        parse_cluster("outbound|443|v1|*.Wikipedia.org."),
        Ok(Cluster::Outbound {
            port: 443,
            subset: "v1",
            host: HostName::lower(b"*.wikipedia.org").unwrap()
        })
    );
    assert_eq!(
        parse_cluster("PassthroughCluster"),
        Ok(Cluster::Passthrough)
    );
    assert_eq!(parse_cluster("BlackHoleCluster"), Ok(Cluster::BlackHole));
    assert_eq!(
        parse_cluster("InboundPassthroughCluster"),
        Ok(Cluster::Inbound)
    );
    assert_eq!(parse_cluster("inbound|80||"), Ok(Cluster::Inbound));
    for name in [
        "outbound|0||a.b",
        "outbound|65536||a.b",
        "outbound|80||",
        "outbound|80|a.b",
        "outbound|80||a.b|x",
        "outbound|80||a b.c",
        "outbound|80||10.0.0.1",
        "outbound|http||a.b",
    ] {
        assert_eq!(parse_cluster(name), Err(BadCluster::Malformed), "{name}");
    }
    assert_eq!(
        parse_cluster("my-static-cluster"),
        Err(BadCluster::Unrecognized)
    );
}

// === the host pattern grammar ===

fn entry(s: &str) -> HostEntry {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[wasm_bindgen_test]
fn host_pattern_grammar() {
    assert_eq!(
        entry("./*"),
        HostEntry {
            exclude: false,
            namespace: NsSelector::Own,
            host: HostPattern::All
        }
    );
    assert_eq!(
        entry("*/Foo.Example.COM.").host,
        HostPattern::Exact("foo.example.com".into())
    );
    assert_eq!(
        entry("*/*.example.com").host,
        HostPattern::Suffix(".example.com".into())
    );
    let excl = entry("~/api.example.com");
    assert!(excl.exclude);
    assert_eq!(excl.namespace, NsSelector::Any);
    assert_eq!(
        entry("~prod-us2/*").namespace,
        NsSelector::Named("prod-us2".into())
    );
    for s in [
        "./*",
        "*/*",
        "~/*",
        "~ns/*",
        "~/a.example.com",
        "ns/*.foo.com",
    ] {
        assert_eq!(entry(s).to_string(), s);
    }

    use HostEntryError as E;
    let err = |s: &str| s.parse::<HostEntry>().unwrap_err();
    assert_eq!(err("foo"), E::NotNamespaceSlashHost);
    assert_eq!(err("/a.com"), E::EmptyNamespace);
    assert_eq!(err("ns/"), E::EmptyHost);
    assert!(matches!(err("Prod/*"), E::BadNamespace(..)));
    assert!(matches!(err("ns/foo"), E::ShortName(_)));
    assert!(matches!(err("ns/10.0.0.1"), E::IpAddress(_)));
    assert!(matches!(err("ns/*foo.com"), E::BadHost(..)));
    assert!(matches!(err("ns/foo.*.com"), E::BadHost(..)));
    assert!(matches!(
        err("ns/foo.123"),
        E::BadHost(_, NameError::NumericTld)
    ));

    let w = entry("*/*.foo.com").host;
    assert!(w.covers("a.foo.com"));
    assert!(w.covers("a.b.foo.com"));
    assert!(!w.covers("foo.com"));
    assert!(!w.covers("afoo.com"));
    assert_eq!(check_dns_name("a.example.com.", false), Ok("a.example.com"));
    assert_eq!(
        check_dns_name("*.example.com", false),
        Err(NameError::PartialWildcard)
    );
}

// === validation ===

/// One bad document: every error is reported, each at its place (mirrors
/// `validate::tests::every_semantic_error_is_collected`).
#[wasm_bindgen_test]
fn a_bad_document_lists_every_error_with_its_path() {
    let e = validate_value(json!({
        "apiVersion": "tenant-egress/v2",
        "clusterDomain": "cluster..local",
        "denyStatus": 200,
        "tenants": [
            {"name": "Prod", "namespaces": ["prod", "bad_ns"],
             "egress": [
                {"hosts": ["foo", "ns/short", "ns/*foo.com", "ns/foo.*.com", "ns/10.0.0.1",
                           format!("ns/{}.com", "a".repeat(64)), format!("ns/{}", ["abcdefghi"; 26].join("."))]},
                {"port": {"number": 70000}, "hosts": ["./*"]},
                {"port": {"number": 80, "protocol": "QUIC"}, "hosts": []},
                {"port": {"number": 80}, "hosts": ["./*"]},
                {"hosts": ["./*"]}
             ],
             "workloads": [
                {"name": "w", "selector": {}, "egress": []},
                {"name": "w", "selector": {"app": "a"}},
                {"name": "x", "selector": {"app": "a", "tier": "web"}},
                {"name": "y", "selector": {"app": "z", "bad key!": "v", "k": "-v"}}
             ]},
            {"name": "uat", "namespaces": ["prod"]},
            {"name": "uat", "namespaces": []}
        ]
    }))
    .expect_err("the document is invalid");
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "apiVersion",
        "clusterDomain",
        "denyStatus",
        "tenants[0].name",
        "tenants[0].namespaces[1]",
        "tenants[0].egress[0].hosts[0]",
        "tenants[0].egress[0].hosts[1]",
        "tenants[0].egress[0].hosts[2]",
        "tenants[0].egress[0].hosts[3]",
        "tenants[0].egress[0].hosts[4]",
        "tenants[0].egress[0].hosts[5]",
        "tenants[0].egress[0].hosts[6]",
        "tenants[0].egress[1].port.number",
        "tenants[0].egress[2].port.protocol",
        "tenants[0].egress[2].hosts",
        "tenants[0].egress[3].port.number",
        "tenants[0].egress[4]",
        "tenants[0].workloads[0].selector",
        "tenants[0].workloads[1].name",
        "tenants[0].workloads[2].selector",
        "tenants[0].workloads[3].selector",
        "tenants[0].workloads[3].selector.k",
        "tenants[1].namespaces[0]",
        "tenants[2].name",
        "tenants[2].namespaces",
    ] {
        assert!(paths.contains(&want), "no error at {want} in {paths:?}");
    }
    assert_eq!(e.errors.len(), 25, "{e}");
    assert!(e.to_string().starts_with("invalid policy (25 errors): "));
}

#[wasm_bindgen_test]
fn syntax_and_shape_errors_are_reported_not_panicked() {
    let e = validate_json(b"{\"apiVersion\": ").unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(e.errors[0].to_string().contains("not valid JSON"));
    let e = validate_json(b"[1, 2]").unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].path, "(document)");
    let e = validate_value(json!({"tenants": [{"namespaces": ["a"]}]})).unwrap_err();
    let text: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "(document): missing required field \"apiVersion\"",
            "tenants[0]: missing required field \"name\""
        ]
    );
}

/// Validation's duplicate and shadow checks use std's `HashMap` (`RandomState`): it works on
/// wasm32-unknown-unknown (no OS randomness needed) and the warnings come out in document
/// order whatever the hash seed.
#[wasm_bindgen_test]
fn hash_maps_and_warnings_are_deterministic() {
    let mut m = HashMap::new();
    for i in 0..1000u32 {
        m.insert(format!("k{i}"), i);
    }
    assert_eq!(m.len(), 1000);
    assert_eq!(m.get("k999"), Some(&999));

    let doc = json!({"apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "t", "namespaces": ["t"], "egress": [{"hosts": [
            "test/*", "test/a.com", "./*", "./*", "*/*.foo.com", "ns/a.b.foo.com", "*/*.b.foo.com",
            "*/x.example.com", "ns/x.example.com", "~test/*"]}]}]});
    let (_, first) = validate_value(doc.clone()).unwrap();
    let paths: Vec<&str> = first.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "tenants[0].egress[0].hosts[3]",
            "tenants[0].egress[0].hosts[1]",
            "tenants[0].egress[0].hosts[5]",
            "tenants[0].egress[0].hosts[6]",
            "tenants[0].egress[0].hosts[8]",
        ]
    );
    for _ in 0..10 {
        assert_eq!(validate_value(doc.clone()).unwrap().1, first);
    }
}

/// Large policies and deep names: the suffix index's label bitmask (`u64`, capped at 63
/// labels) and the hash indexes behave as natively.
#[wasm_bindgen_test]
fn large_policy_and_deep_names() {
    let mut hosts: Vec<String> = (0..10_000)
        .map(|i| format!("*/svc{i}.example.com"))
        .collect();
    hosts.push("*/*.deep.example".into());
    let doc = json!({"apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "t", "namespaces": ["t"], "egress": [{"hosts": hosts}]}]});
    let (policy, _) = Policy::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(policy.rule_count(), 10_001);
    let decide = |authority: &str| {
        policy.decide(&Request {
            source: Source {
                namespace: Some("t"),
                labels: &[],
            },
            target: Target {
                authority: Some(authority.as_bytes()),
                ..Target::default()
            },
        })
    };
    assert!(decide("svc9999.example.com").allowed);
    assert!(decide("SVC0.Example.Com.:443").allowed);
    assert!(!decide("svc10000.example.com").allowed);
    // 100 labels: more than the bitmask has bits.
    let deep = format!("{}deep.example", "a.".repeat(100));
    assert!(deep.len() <= 253);
    assert!(decide(&deep).allowed, "{deep}");
    assert_eq!(decide("deep.example").reason.as_str(), "not-allowed");
    assert_eq!(
        decide("svc1.example.com,evil.example").reason.as_str(),
        "malformed-authority"
    );
}
