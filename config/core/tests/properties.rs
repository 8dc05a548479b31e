//! Property tests of the invariants the decision relies on.
// proptest needs OS randomness, which wasm32-unknown-unknown lacks: native only.
#![cfg(not(target_arch = "wasm32"))]
// Test code: a failed unwrap is a failed test, not a dead proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/policies.rs"]
mod policies;

use proptest::prelude::*;
use tenant_egress_core::authority::{parse_authority, parse_authority_reference, HostKind};
use tenant_egress_core::listeners::{self, SidecarEgress};
use tenant_egress_core::pattern::HostEntry;
use tenant_egress_core::spec::EgressSpec;
use tenant_egress_core::validate::ErrorKind;
use tenant_egress_core::{Decision, Policy, PolicySpec, Protocol, Reason, Request, Source, Target};

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

    /// The fast parser answers exactly as the reference parser, errors included, on
    /// near-valid input (bytes of the authority alphabet and a few that are not).
    #[test]
    fn fast_authority_parser_is_the_reference(
        raw in prop::collection::vec(prop::sample::select(b"aZ9_-.:[]@ \xc3".to_vec()), 0..40)
    ) {
        prop_assert_eq!(parse_authority(&raw), parse_authority_reference(&raw));
    }

    /// The same at the length limits (63-byte labels, 253-byte names, with or without a
    /// trailing dot, a port, an all-digit last label).
    #[test]
    fn fast_authority_parser_is_the_reference_at_the_limits(
        labels in prop::collection::vec(58usize..66, 1..6),
        dot in any::<bool>(),
        digits in any::<bool>(),
        port in proptest::option::of(prop::sample::select(vec!["80", "0", "65536", "8a", ""])),
    ) {
        let mut raw = labels.iter().map(|&n| "b".repeat(n)).collect::<Vec<_>>().join(".");
        if digits { raw.push_str(".123"); }
        if dot { raw.push('.'); }
        if let Some(p) = port { raw.push(':'); raw.push_str(p); }
        prop_assert_eq!(parse_authority(raw.as_bytes()), parse_authority_reference(raw.as_bytes()));
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

    /// Decisions are total over arbitrary request inputs, and an allow always names the rule
    /// that allowed it.
    #[test]
    fn decide_is_total_and_names_its_rule(
        authority in proptest::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        cluster in proptest::option::of("[a-zA-Z|0-9.*]{0,40}"),
        ns in proptest::option::of("[a-z]{0,5}"),
        tcp in any::<bool>(),
    ) {
        let (policy, _) = Policy::from_json(br#"{"apiVersion": "tenant-egress/v1", "tenants": [
            {"name": "t", "namespaces": ["t"], "egress": [{"hosts": ["./*", "*/*.example.com", "~/bad.example.com"]}]}]}"#).unwrap();
        let req = Request {
            source: Source { namespace: ns.as_deref(), labels: &[] },
            target: Target {
                authority: authority.as_deref(),
                cluster: cluster.as_deref(),
                protocol: if tcp { Protocol::Tcp } else { Protocol::Http },
                ..Target::default()
            },
        };
        let d = policy.decide(&req);
        // unknownSource is deny and the tenant REGISTRY_ONLY: only an import allows.
        prop_assert_eq!(d.allowed, d.reason == Reason::Allowed, "{:?}", d);
        if d.allowed {
            let rule = policy.rule(d.rule.unwrap()).unwrap();
            prop_assert!(rule.path.starts_with("tenants[0].egress[0].hosts["), "{:?}", rule);
        }
    }
}

/// The requests a pod in `ns` with `labels` makes to every probe destination, port and
/// protocol, each with the decision.
fn decisions(
    policy: &Policy,
    ns: &str,
    labels: &[(&str, &str)],
) -> Vec<((String, String, u16, Protocol), Decision)> {
    let mut out = Vec::new();
    for (host, dest_ns) in policies::destinations() {
        for &port in policies::PROBE_PORTS {
            for protocol in [Protocol::Http, Protocol::Tcp] {
                let authority = format!("{host}:{port}");
                let cluster = format!("outbound|{port}||{host}");
                let d = policy.decide(&Request {
                    source: Source {
                        namespace: Some(ns),
                        labels,
                    },
                    target: Target {
                        // A plaintext connection has no authority (no SNI).
                        authority: (protocol == Protocol::Http).then_some(authority.as_bytes()),
                        cluster: Some(&cluster),
                        destination_namespace: Some(&dest_ns),
                        protocol,
                        ..Target::default()
                    },
                });
                out.push(((host.clone(), dest_ns.clone(), port, protocol), d));
            }
        }
    }
    out
}

/// Validates a generated document. An invalid one must be invalid only for what the generator
/// draws freely in exceptions (a conflicting protocol, an exclusion).
fn valid(doc: &serde_json::Value) -> Option<(Policy, PolicySpec)> {
    match tenant_egress_core::validate::validate_value(doc.clone()) {
        Ok((spec, _)) => Some((Policy::from_spec(&spec).unwrap(), spec)),
        Err(e) => {
            for err in &e.errors {
                assert!(
                    matches!(
                        err.kind,
                        ErrorKind::ProtocolRedeclared { .. }
                            | ErrorKind::ClosesTcp { .. }
                            | ErrorKind::ExceptionExclusion(_)
                    ) && err.path.starts_with("tenants[0].workloads["),
                    "the generator made an unexpected error: {err}\n{doc:#}"
                );
            }
            None
        }
    }
}

fn tenant_namespaces(spec: &PolicySpec) -> Vec<String> {
    spec.tenants[0].namespaces.clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// A workload exception only adds: a pod it selects may reach, over HTTP and TCP, at least
    /// everything its namespace's other pods may.
    #[test]
    fn an_exception_never_removes_access(doc in policies::policy()) {
        let Some((policy, spec)) = valid(&doc) else { return Ok(()) };
        for ns in tenant_namespaces(&spec) {
            let plain = decisions(&policy, &ns, &[]);
            for w in &spec.tenants[0].workloads {
                let labels: Vec<(&str, &str)> = w.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let with = decisions(&policy, &ns, &labels);
                for ((req, tenant), (_, exception)) in plain.iter().zip(&with) {
                    prop_assert!(
                        !tenant.allowed || exception.allowed,
                        "exception {} removes {:?} from {}: tenant {:?}, exception {:?}\n{:#}",
                        w.name, req, ns, tenant, exception, doc
                    );
                }
            }
        }
    }

    /// The compiled index decides as the listener model says (the merge, then Istio's
    /// selectServices on the listener for the port, TCP closed on HTTP-only ports), and names
    /// the most specific entry by `Specificity`, the first in document order among equals.
    #[test]
    fn the_index_agrees_with_the_listener_model(doc in policies::policy()) {
        let Some((policy, spec)) = valid(&doc) else { return Ok(()) };
        let tenant = &spec.tenants[0];
        let mut sources = vec![(None, Vec::new())];
        for (i, w) in tenant.workloads.iter().enumerate() {
            sources.push((Some(i), w.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
        }
        for ns in tenant_namespaces(&spec) {
            for (w, labels) in &sources {
                let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let exception: &[EgressSpec] = w.map_or(&[], |w| &tenant.workloads[w].egress);
                let model = SidecarEgress::merged(&tenant.egress, exception);
                let plan = listeners::merge(&tenant.egress, exception);
                for ((host, dest_ns, port, protocol), d) in decisions(&policy, &ns, &labels) {
                    let admits = model.admits(Some(port), protocol, &ns, &host, &dest_ns);
                    prop_assert_eq!(d.allowed, admits, "{} {:?} {} {}:{} ({}): {:?}\n{:#}", ns, w, protocol_name(protocol), host, port, dest_ns, d, doc);
                    if !matches!(d.reason, Reason::Allowed | Reason::Excluded) {
                        continue;
                    }
                    // The entries of the listener for the port, in document (= rule) order.
                    let applied = plan.on_port(Some(port)).unwrap();
                    let mut candidates = Vec::new();
                    for r in &applied.entries {
                        let (owner, list) = match (r.origin, w) {
                            (listeners::Origin::Tenant, _) => ("tenants[0]".to_owned(), &tenant.egress),
                            (listeners::Origin::Exception, Some(w)) => (format!("tenants[0].workloads[{w}]"), &tenant.workloads[*w].egress),
                            (listeners::Origin::Exception, None) => unreachable!(),
                        };
                        for (h, raw) in list[r.index].hosts.iter().enumerate() {
                            let e: HostEntry = raw.parse().unwrap();
                            let path = format!("{owner}.egress[{}].hosts[{h}]", r.index);
                            if e.exclude == (d.reason == Reason::Excluded) && e.selects(&ns, &host, &dest_ns) {
                                candidates.push((e, path));
                            }
                        }
                    }
                    let order = |p: &String| candidates.iter().position(|(_, q)| q == p);
                    let best = candidates
                        .iter()
                        .max_by_key(|(e, p)| (e.specificity(), std::cmp::Reverse(order(p))))
                        .map(|(_, p)| p.clone());
                    let named = d.rule.and_then(|r| policy.rule(r)).map(|r| r.path.clone());
                    prop_assert_eq!(named, best, "{} {:?} {}:{} ({}): {:?}\n{:#}", ns, w, host, port, dest_ns, d, doc);
                }
            }
        }
    }

    /// `coverers` lists exactly the entries `covers` accepts, and `covers` is the subset
    /// relation on what entries select.
    #[test]
    fn coverers_are_exactly_what_covers_accepts(
        a in host_entry(), b in host_entry(), own in prop::option::of("[ab]"),
    ) {
        let own = own.as_deref();
        prop_assert_eq!(b.covers(&a, own), a.coverers(own).contains(&b), "{} {} {:?}", a, b, own);
        if b.covers(&a, own) {
            if let Some(src) = own {
                for (host, dest_ns) in policies::destinations() {
                    prop_assert!(!a.selects(src, &host, &dest_ns) || b.selects(src, &host, &dest_ns));
                }
            }
        }
    }
}

fn host_entry() -> impl Strategy<Value = HostEntry> {
    (
        any::<bool>(),
        prop::sample::select(vec!["*", ".", "a", "b"]),
        prop::sample::select(vec![
            "*",
            "api.example.com",
            "x.api.example.com",
            "*.example.com",
            "*.api.example.com",
            "*.com",
            "svc.a.svc.cluster.local",
            "*.a.svc.cluster.local",
        ]),
    )
        .prop_map(|(x, ns, h)| {
            format!("{}{ns}/{h}", if x { "~" } else { "" })
                .parse()
                .unwrap()
        })
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Http => "http",
        Protocol::Tcp => "tcp",
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
