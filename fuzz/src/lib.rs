//! Invariants the fuzz targets assert, shared with the replay tests (`tests/replay.rs`).
//!
//! Each `check_*` function takes one fuzz input and panics (a libFuzzer crash) when an
//! invariant of the policy core does not hold. They are plain functions so that the committed
//! corpora (crash cases included) replay under `cargo test` on the stable toolchain too, without
//! libFuzzer.
//!
//! Test code: a panic here is the finding, so `unwrap`/`assert!` are the point.
#![forbid(unsafe_code)]

pub mod input;

use std::net::IpAddr;
use std::sync::OnceLock;

use tenant_egress_core::authority::{self, Cluster, HostKind};
use tenant_egress_core::decision::Protocol;
use tenant_egress_core::explain::Report;
use tenant_egress_core::name;
use tenant_egress_core::validate;
use tenant_egress_core::{Policy, PolicyError, Reason, Request, Target};

/// `policy` target: arbitrary bytes as a policy document.
///
/// - validation never panics, and an invalid document lists at least one error, each with a
///   place;
/// - `Policy::from_json` accepts exactly the documents `validate_json` accepts (a policy that
///   validates also compiles), with the same errors and warnings;
/// - re-serializing the validated `PolicySpec` and validating that again gives the same spec
///   and the same warnings (the spec is a fixed point of decode/encode).
///
/// Returns the compiled policy when the document is valid.
pub fn check_policy(data: &[u8]) -> Option<Policy> {
    let validated = validate::validate_json(data);
    let compiled = Policy::from_json(data);
    match (validated, compiled) {
        (Ok((spec, warnings)), Ok((policy, warnings_c))) => {
            assert_eq!(
                warnings, warnings_c,
                "validate_json and from_json warn differently"
            );
            let again = Policy::from_spec(&spec).expect("a validated spec compiles");
            assert_eq!(policy.summary(), again.summary());
            let bytes = serde_json::to_vec(&spec).expect("a spec serializes");
            let (spec2, warnings2) = validate::validate_json(&bytes).unwrap_or_else(|e| {
                panic!(
                    "re-serialized spec no longer validates: {e}\n{}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_eq!(spec, spec2, "decode/encode is not a fixed point");
            assert_eq!(warnings, warnings2, "re-serialized spec warns differently");
            for w in &warnings {
                assert!(!w.path.is_empty() && !w.message.is_empty(), "{w}");
            }
            Some(policy)
        }
        (Err(e), Err(PolicyError::Invalid(e2))) => {
            assert!(!e.errors.is_empty(), "invalid with no error");
            assert_eq!(e, e2, "validate_json and from_json disagree on the errors");
            for err in &e.errors {
                assert!(!err.path.is_empty(), "error without a place: {err}");
                let _ = err.to_string();
            }
            let _ = e.to_string();
            None
        }
        (Ok(_), Err(e)) => panic!("validates but does not compile: {e}"),
        (Err(e), Ok(_)) => panic!("compiles but does not validate: {e}"),
        (Err(_), Err(e)) => panic!("unexpected policy error kind: {e}"),
    }
}

/// Whether every byte is in the authority alphabet `[A-Za-z0-9.:\-\[\]]`.
fn in_authority_alphabet(raw: &[u8]) -> bool {
    raw.iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(b))
}

/// What the policy grammar accepts as a host, with one deliberate difference: requests may
/// name hosts with underscores (Envoy routes them; no policy host can contain one, so such a
/// request only ever meets wildcards, exclusions and `ALLOW_ANY`).
fn policy_grammar_or_underscored(host: &str, wildcard: bool) -> bool {
    name::check_dns_name(host, wildcard) == Ok(host)
        || (host.contains('_') && name::check_dns_name(&host.replace('_', "u"), wildcard).is_ok())
}

/// `host[:port]`, with an IPv6 host in brackets: the normalized form of an authority.
pub fn format_authority(a: &authority::Authority) -> String {
    let host = a.host.as_str();
    let mut s = if a.kind == HostKind::Ip && host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if let Some(p) = a.port {
        s.push_str(&format!(":{p}"));
    }
    s
}

/// `authority` target: arbitrary bytes as an `:authority`.
///
/// - no panic;
/// - a byte outside `[A-Za-z0-9.:\-\[\]_]` is always refused (userinfo, percent-encoding,
///   whitespace, control bytes, commas, non-ASCII...);
/// - case never matters: the input folded to lowercase parses to exactly the same result;
/// - an accepted host is non-empty lowercase ASCII of at most 253 bytes; a DNS host is one
///   the policy grammar accepts as is (`name::check_dns_name`); an IP host is the canonical
///   text of the address;
/// - normalization is idempotent: parsing `host[:port]` (IPv6 bracketed) gives the same
///   authority, and so does a DNS host with a trailing dot;
/// - the fast parser answers exactly as the reference parser, errors included;
/// - the same bytes as a policy dnsName: `name::check_dns_name` answers exactly as
///   `name::check_dns_name_reference`, with and without the `*.` wildcard, and a name it
///   accepts is never an IP address (the host grammar parses one only to name an error).
pub fn check_authority(raw: &[u8]) {
    if let Ok(s) = std::str::from_utf8(raw) {
        for wildcard in [false, true] {
            let checked = name::check_dns_name(s, wildcard);
            assert_eq!(
                checked,
                name::check_dns_name_reference(s, wildcard),
                "the fast name check differs from the reference for {s:?} (wildcard {wildcard})"
            );
            if let Ok(n) = checked {
                assert!(n.parse::<IpAddr>().is_err(), "accepted IP address {n:?} as a name");
            }
        }
    }
    let parsed = authority::parse_authority(raw);
    assert_eq!(
        parsed,
        authority::parse_authority_reference(raw),
        "the fast parser differs from the reference for {:?}",
        String::from_utf8_lossy(raw)
    );
    if !in_authority_alphabet(raw) {
        assert!(
            parsed.is_err(),
            "accepted a byte outside [A-Za-z0-9.:-[]_]: {:?} -> {parsed:?}",
            String::from_utf8_lossy(raw)
        );
    }
    let folded = raw.to_ascii_lowercase();
    assert_eq!(
        authority::parse_authority(&folded),
        parsed,
        "case changes the result for {:?}",
        String::from_utf8_lossy(raw)
    );
    let Ok(a) = parsed else { return };
    let host = a.host.as_str();
    assert!(!host.is_empty(), "empty host accepted");
    assert!(host.len() <= name::MAX_NAME_LEN);
    assert!(
        host.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:_".contains(&b)),
        "host not lowercase ASCII: {host:?}"
    );
    assert_ne!(a.port, Some(0));
    match a.kind {
        HostKind::Dns => {
            assert!(
                policy_grammar_or_underscored(host, false),
                "accepted a DNS host the policy grammar refuses: {host:?}"
            );
            let dotted = match a.port {
                Some(p) => format!("{host}.:{p}"),
                None => format!("{host}."),
            };
            assert_eq!(authority::parse_authority(dotted.as_bytes()), Ok(a));
        }
        HostKind::Ip => {
            let ip: IpAddr = host.parse().expect("an IP host is an IP address");
            assert_eq!(ip.to_string(), host, "IP host not in canonical form");
        }
    }
    let normalized = format_authority(&a);
    assert_eq!(
        authority::parse_authority(normalized.as_bytes()),
        Ok(a),
        "normalizing is not idempotent: {:?} -> {normalized:?}",
        String::from_utf8_lossy(raw)
    );
}

/// `cluster` target: an arbitrary string as `xds.cluster_name`.
///
/// - no panic;
/// - only Istio's names are recognized: `PassthroughCluster`, `AllowAnyDynamicDNSCluster`,
///   `BlackHoleCluster` exactly,
///   `inbound|...` / `InboundPassthroughCluster...` by prefix, `outbound|...` parsed;
/// - an outbound cluster has port >= 1, a lowercase host without trailing dot that the policy
///   grammar accepts (a DNS name, or a `*.` wildcard), a subset without `|`; formatting it
///   back as `outbound|port|subset|host` parses to the same.
pub fn check_cluster(name: &str) {
    let parsed = authority::parse_cluster(name);
    match parsed {
        Ok(Cluster::Passthrough) => assert!(
            matches!(name, "PassthroughCluster" | "AllowAnyDynamicDNSCluster"),
            "{name:?} taken as passthrough"
        ),
        Ok(Cluster::BlackHole) => assert_eq!(name, "BlackHoleCluster"),
        Ok(Cluster::Inbound) => assert!(
            name.starts_with("inbound|") || name.starts_with("InboundPassthroughCluster"),
            "{name:?} taken as inbound"
        ),
        Ok(Cluster::Outbound { port, subset, host }) => {
            assert!(name.starts_with("outbound|"));
            assert!(port >= 1);
            assert!(!subset.contains('|'));
            let h = host.as_str();
            assert!(!h.is_empty() && !h.ends_with('.'), "{h:?}");
            assert!(
                !h.bytes().any(|b| b.is_ascii_uppercase()),
                "host not lowercase: {h:?}"
            );
            assert!(
                policy_grammar_or_underscored(h, true),
                "cluster host the policy grammar refuses: {h:?}"
            );
            let again = format!("outbound|{port}|{subset}|{h}");
            assert_eq!(
                authority::parse_cluster(&again),
                parsed,
                "re-formatted {again:?} parses differently"
            );
        }
        Err(_) => {
            if name.starts_with("outbound|") {
                return;
            }
            assert!(
                !matches!(name, "PassthroughCluster" | "BlackHoleCluster")
                    && !name.starts_with("inbound|")
                    && !name.starts_with("InboundPassthroughCluster"),
                "{name:?} refused"
            );
        }
    }
}

/// Whether `ns` is a namespace `Policy::source` must take as given (non-empty ASCII, at most
/// 63 bytes, no uppercase).
fn plausible_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= name::MAX_LABEL_LEN
        && ns.is_ascii()
        && !ns.bytes().any(|b| b.is_ascii_uppercase())
}

/// `decide` target, per request: `p` and `p2` are two compiles of the same document.
///
/// - no panic, and the decision is deterministic: deciding twice, or on a second compile of
///   the same document, gives the same decision;
/// - `decide` equals `decide_for` on the resolved `source()`;
/// - a source without a namespace (absent or empty) is always denied with `unknown-source`;
///   a plausible namespace is always resolved;
/// - with a resolved source, a malformed or repeated authority is always denied with
///   `malformed-authority`, and `BlackHoleCluster` is always denied with `blackhole`;
/// - the verdict agrees with the reason, and every rule a decision names exists;
/// - a TCP/TLS connection is allowed only where the same HTTP request is;
/// - the case of the authority never changes the decision;
/// - the explanation (`Report`) never panics and agrees with the decision.
pub fn check_request(p: &Policy, p2: &Policy, req: &Request<'_>) {
    let d = p.decide(req);
    assert_eq!(d, p.decide(req), "decide is not deterministic");
    assert_eq!(d, p2.decide(req), "two compiles of one document disagree");
    let scope = p.source(&req.source);
    assert_eq!(
        d,
        p.decide_for(&scope, &req.target),
        "decide != decide_for(source())"
    );

    match req.source.namespace {
        None | Some("") => assert_eq!(scope.namespace(), None),
        Some(ns) if plausible_namespace(ns) => assert_eq!(scope.namespace(), Some(ns)),
        Some(_) => {}
    }
    match scope.namespace() {
        None => {
            assert!(!d.allowed, "allowed without a source namespace: {d:?}");
            assert_eq!(d.reason, Reason::UnknownSource, "{d:?}");
        }
        Some(_) => {
            let malformed = req.target.authority_repeated
                || req
                    .target
                    .authority
                    .is_some_and(|a| authority::parse_authority(a).is_err());
            if malformed {
                assert!(!d.allowed, "malformed authority allowed: {d:?}");
                assert_eq!(d.reason, Reason::MalformedAuthority, "{d:?}");
            } else if req.target.cluster == Some("BlackHoleCluster") {
                assert!(!d.allowed, "BlackHoleCluster allowed: {d:?}");
                assert_eq!(d.reason, Reason::Blackhole, "{d:?}");
            }
        }
    }

    match d.reason {
        Reason::Allowed => {
            assert!(d.allowed);
            let rule = d.rule.expect("an allow names its rule");
            assert!(p.rule(rule).is_some());
        }
        Reason::AllowAny => assert!(d.allowed),
        Reason::NoTenant => {}
        _ => assert!(!d.allowed, "{d:?}"),
    }
    if let Some(r) = d.rule {
        assert!(p.rule(r).is_some(), "decision names a missing rule");
    }

    // A TCP/TLS connection is never allowed where the same HTTP request is not: HTTP-only
    // ports narrow TCP access, nothing widens it.
    if req.target.protocol == Protocol::Tcp && d.allowed {
        let http = Request {
            target: Target {
                protocol: Protocol::Http,
                ..req.target
            },
            ..*req
        };
        assert!(
            p.decide(&http).allowed,
            "allowed over TCP, denied over HTTP"
        );
    }

    if let Some(a) = req.target.authority {
        for folded in [a.to_ascii_uppercase(), a.to_ascii_lowercase()] {
            let other = Request {
                target: Target {
                    authority: Some(&folded),
                    ..req.target
                },
                ..*req
            };
            assert_eq!(p.decide(&other), d, "authority case changes the decision");
        }
    }

    let report = Report::new(p, &d, &req.source);
    assert_eq!(report.decision, d.verdict());
    assert_eq!(report.reason, d.reason.as_str());
    assert!(!report.explanation.is_empty());
}

/// `decide` target: a policy (from the vectors, a small grammar, or raw bytes) and a few
/// requests; see [`input::DecideInput`] and [`check_request`].
pub fn check_decide(input: &input::DecideInput) {
    if let input::PolicySource::Vector(i) = input.policy {
        // The vectors' policies are compiled (twice) once per process: most of the time then
        // goes to the requests.
        static COMPILED: OnceLock<Vec<(Policy, Policy)>> = OnceLock::new();
        let compiled = COMPILED.get_or_init(|| {
            input::vector_policies()
                .iter()
                .map(|(name, doc)| {
                    let p = check_policy(doc).unwrap_or_else(|| panic!("vector policy {name}"));
                    (p, Policy::from_json(doc).expect("compiles twice").0)
                })
                .collect()
        });
        if let Some((p, p2)) = compiled.get(i) {
            check_requests(p, p2, &input.requests);
        }
        return;
    }
    let doc = input.policy_document();
    // The document itself must obey the `policy` target's invariants.
    let Some(policy) = check_policy(&doc) else {
        return;
    };
    let (policy2, _) = Policy::from_json(&doc).expect("compiled once, compiles twice");
    check_requests(&policy, &policy2, &input.requests);
}

fn check_requests(p: &Policy, p2: &Policy, requests: &[input::GenRequest]) {
    for r in requests {
        let labels = r.labels();
        check_request(p, p2, &r.as_request(&labels));
    }
}

/// `inbound` target: the destination end's decision on arbitrary inputs (caller URI SAN, SNI,
/// `:authority`, this proxy's namespace, the inbound cluster's services), against the
/// destination-end vectors' policy. The bytes are split at 0xff into those five fields.
///
/// - never panics, deterministic, and every decision names a reason;
/// - the SPIFFE and SNI parsers are total, and what they accept re-renders to the input;
/// - no certificate: denied as `no-peer-identity` (once the proxy's namespace is known); an
///   identity that does not parse or is not trusted: denied as `untrusted-peer`;
/// - an allowed caller in a tenant is allowed by the caller's own decision: the caller's
///   namespace with the cluster the SNI names (the same question, asked at the source).
pub fn check_inbound(data: &[u8]) {
    use tenant_egress_core::inbound::{self, Inbound};
    // The vectors' policy, and every exception selector it has (the labels a caller may have).
    type Selectors = Vec<Vec<(String, String)>>;
    static POLICY: OnceLock<(Policy, Selectors)> = OnceLock::new();
    let (policy, selectors) = POLICY.get_or_init(|| {
        let file = tenant_egress_core::vectors::load_inbound().expect("inbound vectors parse");
        let doc = file.policies.values().next().expect("one policy");
        let policy = Policy::from_json(&serde_json::to_vec(doc).expect("serializes"))
            .expect("the vectors' policy compiles")
            .0;
        let mut selectors: Selectors = vec![Vec::new()];
        for t in doc["tenants"].as_array().into_iter().flatten() {
            for w in t["workloads"].as_array().into_iter().flatten() {
                let labels = w["selector"].as_object().into_iter().flatten();
                selectors.push(
                    labels
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                        .collect(),
                );
            }
        }
        (policy, selectors)
    });
    let mut parts = data.split(|&b| b == 0xff);
    let mut field = || parts.next().filter(|p| !p.is_empty());
    let (peer, sni, authority_bytes, ns, services) = (field(), field(), field(), field(), field());
    let ns = ns.and_then(|n| std::str::from_utf8(n).ok());
    let services: Vec<&str> = services
        .and_then(|s| std::str::from_utf8(s).ok())
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    for protocol in [Protocol::Http, Protocol::Tcp] {
        let req = Inbound {
            namespace: ns,
            peer,
            sni,
            authority: authority_bytes,
            authority_repeated: false,
            services: &services,
            protocol,
        };
        let d = policy.decide_inbound(&req);
        assert_eq!(d, policy.decide_inbound(&req), "not deterministic");
        let local_known = ns.is_some_and(|n| {
            policy
                .source(&tenant_egress_core::Source {
                    namespace: Some(n),
                    labels: &[],
                })
                .namespace()
                .is_some()
        });
        if !local_known {
            assert!(
                !d.allowed && d.reason == Reason::UnknownDestination,
                "{d:?}"
            );
            continue;
        }
        let Some(peer) = peer else {
            assert!(!d.allowed && d.reason == Reason::NoPeerIdentity, "{d:?}");
            continue;
        };
        let id = inbound::parse_spiffe(peer);
        if let Ok(id) = id {
            let text = format!(
                "spiffe://{}/ns/{}/sa/{}",
                id.trust_domain, id.namespace, id.service_account
            );
            assert_eq!(text.as_bytes(), peer, "a SPIFFE id that does not re-render");
        }
        let trusted = id.is_ok_and(|id| policy.trust_domains().any(|t| t == id.trust_domain));
        if !trusted {
            assert!(!d.allowed && d.reason == Reason::UntrustedPeer, "{d:?}");
            continue;
        }
        let parsed_sni = sni.and_then(inbound::parse_istio_sni);
        if let Some(s) = parsed_sni {
            let text = inbound::istio_sni(s.port, s.subset, s.host);
            assert_eq!(Some(text.as_bytes()), sni, "an SNI that does not re-render");
        }
        if d.allowed && d.reason != Reason::InboundAllowed {
            let (Ok(id), Some(s)) = (id, parsed_sni) else {
                panic!("allowed without an identity and an Istio SNI: {d:?}");
            };
            // The caller's own end, asked the same question with its tenant's egress (or an
            // exception: the destination admits when any view the caller may have allows).
            let cluster = format!("outbound|{}|{}|{}", s.port, s.subset, s.host);
            let src = Request {
                source: tenant_egress_core::Source::default(),
                target: Target {
                    authority: authority_bytes,
                    cluster: Some(&cluster),
                    destination_namespace: ns,
                    protocol,
                    ..Target::default()
                },
            };
            let allowed_somewhere = selectors.iter().any(|labels| {
                let labels: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let source = tenant_egress_core::Source {
                    namespace: Some(id.namespace),
                    labels: &labels,
                };
                let scope = policy.source_as(&source, Some(id.service_account));
                policy.decide_for(&scope, &src.target).allowed
            });
            assert!(
                allowed_somewhere,
                "the destination allowed what no pod of the caller is allowed at its own end: {d:?}"
            );
        }
    }
}
