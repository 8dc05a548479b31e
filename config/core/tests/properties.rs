//! Property tests of the invariants the decision relies on.
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use tenant_egress_core::authority::{parse_authority, HostKind};
use tenant_egress_core::{Policy, Protocol, Request, Source, Target};

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
            prop_assert!(h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b)));
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

/// A spelling of `host` as a client may send it: any case per letter, an optional trailing dot,
/// an optional port.
fn spelling(host: &str, case_mask: &[bool], dot: bool, port: Option<u16>) -> String {
    let mut s: String = host
        .chars()
        .zip(case_mask.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect();
    if dot {
        s.push('.');
    }
    if let Some(p) = port {
        s.push_str(&format!(":{p}"));
    }
    s
}

proptest! {
    /// Issue 15: for every excluded host, every spelling (case, trailing dot, any port, with or
    /// without leading zeros) is denied on every path: a routed exact or wildcard cluster, a
    /// passthrough to an external or an in-cluster address, no cluster at all (the TLS
    /// `on_new_connection` pass), over HTTP and TCP/TLS, for ALLOW_ANY and REGISTRY_ONLY tenants.
    #[test]
    fn an_exclusion_holds_on_every_spelling_and_path(
        labels in prop::collection::vec(label(), 1..3),
        case_mask in prop::collection::vec(any::<bool>(), 1..8),
        dot in any::<bool>(),
        port in proptest::option::of(1u16..),
        zeros in 0usize..3,
        dest_port in 1u16..,
        allow_any in any::<bool>(),
        networks in any::<bool>(),
    ) {
        let parent = "example.com";
        let host = format!("{}.{parent}", labels.join(".")).to_ascii_lowercase();
        let mut doc = serde_json::json!({
            "apiVersion": "tenant-egress/v1",
            "tenants": [{"name": "t", "namespaces": ["t"],
                "outboundTrafficPolicy": if allow_any { "ALLOW_ANY" } else { "REGISTRY_ONLY" },
                "egress": [{"hosts": ["*/*", format!("*/*.{parent}"), format!("~/{host}")]}]}]
        });
        if networks {
            doc["clusterNetworks"] = serde_json::json!(["10.96.0.0/12", "10.244.0.0/16"]);
        }
        let (policy, _) = Policy::from_json(doc.to_string().as_bytes()).unwrap();
        let mut authority = spelling(&host, &case_mask, dot, port);
        if zeros > 0 && port.is_some() {
            // `host:0080`: never port 80 to Envoy; malformed here, so denied either way.
            let at = authority.rfind(':').unwrap() + 1;
            authority.insert_str(at, &"0".repeat(zeros));
        }
        let exact = format!("outbound|{dest_port}||{host}");
        let wildcard = format!("outbound|{dest_port}||*.{parent}");
        let external = format!("93.184.216.34:{dest_port}");
        let inside = format!("10.96.3.4:{dest_port}");
        let paths: [(Option<&str>, Option<&str>); 7] = [
            (Some(&exact), None),
            (Some(&wildcard), None),
            (Some("PassthroughCluster"), Some(&external)),
            (Some("PassthroughCluster"), Some(&inside)),
            (Some("PassthroughCluster"), None),
            (None, Some(&external)),
            (None, None),
        ];
        for (cluster, address) in paths {
            for protocol in [Protocol::Http, Protocol::Tcp] {
                let d = policy.decide(&Request {
                    source: Source { namespace: Some("t"), labels: &[] },
                    target: Target {
                        authority: Some(authority.as_bytes()),
                        cluster,
                        destination_address: address,
                        protocol,
                        ..Target::default()
                    },
                });
                prop_assert!(!d.allowed, "{authority:?} via {cluster:?} to {address:?} ({protocol:?}) allowed: {d:?}");
                if zeros == 0 {
                    prop_assert_eq!(d.reason.as_str(), "excluded", "{:?} via {:?} to {:?}", authority, cluster, address);
                }
            }
        }
    }
}
