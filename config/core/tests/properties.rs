//! Property tests of the invariants the decision relies on.
// proptest needs OS randomness, which wasm32-unknown-unknown lacks: native only.
#![cfg(not(target_arch = "wasm32"))]
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use tenant_egress_core::authority::{parse_authority, HostKind};
use tenant_egress_core::{Policy, Request, Source, Target};

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?"
        .prop_filter("not all digits", |l| !l.bytes().all(|b| b.is_ascii_digit()))
}

fn dns_name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 2..5).prop_map(|ls| ls.join("."))
}

proptest! {
    /// Normalizing is idempotent: parsing the normalized form gives the same authority.
    #[test]
    fn authority_normalization_is_idempotent(name in dns_name(), dot in any::<bool>(), port in proptest::option::of(1u16..)) {
        let mut raw = name.clone();
        if dot { raw.push('.'); }
        if let Some(p) = port { raw.push_str(&format!(":{p}")); }
        let a = parse_authority(raw.as_bytes()).unwrap();
        prop_assert_eq!(a.kind, HostKind::Dns);
        prop_assert_eq!(a.host.as_str(), name.to_ascii_lowercase());
        let mut again = a.host.as_str().to_owned();
        if let Some(p) = a.port { again.push_str(&format!(":{p}")); }
        prop_assert_eq!(parse_authority(again.as_bytes()).unwrap(), a);
    }

    /// Arbitrary bytes never panic, and anything accepted is plain lowercase ASCII.
    #[test]
    fn authority_parser_is_total(raw in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(a) = parse_authority(&raw) {
            let h = a.host.as_str();
            prop_assert!(!h.is_empty());
            prop_assert!(h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b)));
        }
    }

    /// An exact rule always allows its own host, whatever the case or port of the request.
    #[test]
    fn exact_rule_allows_its_own_host(name in dns_name(), upper in any::<bool>(), port in 1u16..) {
        let host = name.to_ascii_lowercase();
        let doc = serde_json::json!({
            "apiVersion": "tenant-egress/v1",
            "tenants": [{"name": "t", "namespaces": ["t"], "egress": [{"hosts": [format!("*/{host}")]}]}]
        });
        let (policy, _) = Policy::from_json(doc.to_string().as_bytes()).unwrap();
        let authority = if upper { name.to_ascii_uppercase() } else { name.clone() };
        let cluster = format!("outbound|{port}||{host}");
        let d = policy.decide(&Request {
            source: Source { namespace: Some("t"), labels: &[] },
            target: Target {
                authority: Some(authority.as_bytes()),
                cluster: Some(&cluster),
                ..Target::default()
            },
        });
        prop_assert!(d.allowed, "{:?}", d);
        prop_assert_eq!(policy.rule(d.rule.unwrap()).unwrap().text.as_str(), format!("*/{host}"));
    }

    /// Decisions are deterministic and total over arbitrary request inputs.
    #[test]
    fn decide_is_total_and_deterministic(
        authority in proptest::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        cluster in proptest::option::of("[a-zA-Z|0-9.*]{0,40}"),
        ns in proptest::option::of("[a-z]{0,5}"),
    ) {
        let (policy, _) = Policy::from_json(br#"{"apiVersion": "tenant-egress/v1", "tenants": [
            {"name": "t", "namespaces": ["t"], "egress": [{"hosts": ["./*", "*/*.example.com", "~/bad.example.com"]}]}]}"#).unwrap();
        let req = Request {
            source: Source { namespace: ns.as_deref(), labels: &[] },
            target: Target {
                authority: authority.as_deref(),
                cluster: cluster.as_deref(),
                ..Target::default()
            },
        };
        prop_assert_eq!(policy.decide(&req), policy.decide(&req));
    }
}
