// Under wasm32 these run through wasm-bindgen-test (scripts/test-wasm.sh): every `#[test]`
// here becomes a `#[wasm_bindgen_test]` there.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

use crate::{Policy, Request, Source, Target};

/// Large policies and deep names: the hash indexes and the suffix index's label bitmask
/// (`u64`, capped at 63 labels) behave the same with a 32-bit `usize` (wasm32) as natively.
#[test]
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

/// The filter's path (the cluster parsed once, `decide_routed`) decides every vector as
/// `decide_for` does.
#[test]
fn decide_routed_is_decide_for() {
    let file = crate::vectors::load().unwrap();
    let policies = crate::vectors::compile_policies(&file).unwrap();
    for case in &file.cases {
        let policy = &policies[&case.policy];
        let labels: Vec<(&str, &str)> = case
            .request
            .source
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let req = case.request.as_request(&labels);
        let src = policy.source(&req.source);
        let routed = crate::RoutedCluster::parse(req.target.cluster);
        assert_eq!(
            policy.decide_routed(&src, &req.target, &routed),
            policy.decide_for(&src, &req.target),
            "{}",
            case.name
        );
    }
}

/// The `:authority` shortcut of `decide_routed` (an authority spelling the routed cluster's
/// host is not parsed) decides as the parsed authority does: for every vector, the authority
/// replaced by its cluster's host in the spellings the shortcut takes and the near misses it
/// must leave to the parser.
#[test]
fn an_authority_naming_the_cluster_host_decides_as_parsed() {
    let file = crate::vectors::load().unwrap();
    let policies = crate::vectors::compile_policies(&file).unwrap();
    let mut shortcut = 0;
    for case in &file.cases {
        let policy = &policies[&case.policy];
        let labels: Vec<(&str, &str)> = case
            .request
            .source
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let req = case.request.as_request(&labels);
        let src = policy.source(&req.source);
        let routed = crate::RoutedCluster::parse(req.target.cluster);
        let Some(Ok(crate::authority::Cluster::Outbound { host, .. })) =
            req.target.cluster.map(crate::authority::parse_cluster)
        else {
            continue;
        };
        let h = host.as_str();
        // `RoutedCluster`'s premise: a cluster host that is not a wildcard is what the
        // authority parser makes of it.
        if !h.starts_with('*') {
            let a = crate::authority::parse_authority(h.as_bytes()).unwrap();
            assert_eq!(
                (a.host.as_str(), a.port, a.ip),
                (h, None, None),
                "{}",
                case.name
            );
        }
        let upper = h.to_ascii_uppercase();
        let spellings = [
            h.to_owned(),
            format!("{h}."),
            format!("{h}:80"),
            format!("{h}.:8080"),
            format!("{h}:65535"),
            format!("{h}:65536"),
            format!("{h}:080"),
            format!("{h}:0"),
            format!("{h}:"),
            format!("{h}:80:80"),
            format!("{h}.."),
            format!("{h}x"),
            format!("{h}.x"),
            format!("x{h}"),
            upper,
            h.trim_end_matches(|c| c != '.').to_owned(),
        ];
        for raw in &spellings {
            let target = Target {
                authority: Some(raw.as_bytes()),
                ..req.target
            };
            shortcut += usize::from(routed.is_named_by(raw.as_bytes()));
            let parsed = crate::authority::parse_authority(raw.as_bytes());
            assert_eq!(
                policy.decide_routed(&src, &target, &routed),
                policy.decide_parsed(&src, &target, Some(&parsed), &routed),
                "{}: {raw}",
                case.name
            );
        }
    }
    // The shortcut was taken (a wildcard cluster's host never takes it).
    assert!(shortcut > 0);
}
