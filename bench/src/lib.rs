//! Benchmark fixtures for tenant-egress: a realistic policy generator and the requests that
//! exercise each path of [`Policy::decide`](tenant_egress_core::Policy::decide).
//!
//! The criterion benches live in `benches/`, the companion binaries in `src/bin/`
//! (`policy-memory`, `gen-policy`), the Envoy load benchmark in `load/`. See `bench/README.md`.
//!
//! # The generated policy
//!
//! [`generate_policy`]`(rules, seed)` returns a valid `tenant-egress/v1` document whose number
//! of host entries (every string in every `hosts` list, tenants' and workload exceptions') is
//! exactly `rules`. It looks like a large multi-tenant mesh:
//!
//! - many tenants (about one per 100 rules), each owning 1 to 3 namespaces
//!   (`tenant-<t>-a`, `-b`, `-c`); some in `audit` mode, some `ALLOW_ANY`;
//! - every egress listener starts with `./*`; the rest is a mix of exact external FQDNs
//!   (`*/api-<n>.example.com`, `*/cdn-<n>.assets.example.net`), mesh FQDNs
//!   (`ns/svc-<n>.ns.svc.cluster.local`), wildcards (`*/*.partner-<n>.example.com`, deeper
//!   `*/*.eu.partner-<n>.example.com`), namespace imports (`ns/*`) and `~` exclusions;
//! - about a third of the tenants have a port-scoped listener (5432, 6379, 9092, 26257 or
//!   27017) that repeats `./*` (a port-scoped listener is exclusive for its port), a fifth have
//!   a workload exception;
//! - the *probe tenant* `tenant-0` (source namespace [`PROBE_NAMESPACE`]) holds the entries
//!   the [`cases`] hit, plus a quarter of all rules, so that at 100,000 rules the decision
//!   really probes 25,000-entry indexes (a policy spread evenly over small tenants would not
//!   show a linear scan).
//!
//! The document is deterministic for a given `(rules, seed)` and produces no validation
//! warnings except the one Istio-semantics note per port-scoped listener.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};
use tenant_egress_core::explain::{RequestSpec, SourceSpec};

/// The policy sizes the suite measures (host entries).
pub const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

/// The seed used by the benches and the load script.
pub const DEFAULT_SEED: u64 = 0x7e11_a47e_5eed;

/// The probe tenant's first namespace: the source of every [`cases`] request.
pub const PROBE_NAMESPACE: &str = "tenant-0-a";

/// A namespace the probe tenant imports with `ns/*` (the alias cases and the load benchmark's
/// allowed service live there).
pub const IMPORTED_NAMESPACE: &str = "tenant-1-a";

/// A namespace no tenant owns and no entry names (the load benchmark's denied service).
pub const UNLISTED_NAMESPACE: &str = "unlisted";

/// The port of the probe tenant's port-scoped listener.
pub const PROBE_PORT: u16 = 5432;

/// Entries of the probe tenant that are always present (the [`cases`] depend on them).
const PROBE_CATCH_ALL: [&str; 5] = [
    "./*",
    "*/api-0.example.com",
    "*/*.partner-0.example.com",
    "~/secret.partner-0.example.com",
    "tenant-1-a/*",
];
const PROBE_PORT_HOSTS: [&str; 2] = ["./*", "*/pg-0.db.example.com"];

/// The smallest policy [`generate_policy`] can produce (the probe tenant's fixed entries plus
/// one for `tenant-1`).
pub const MIN_RULES: usize = PROBE_CATCH_ALL.len() + PROBE_PORT_HOSTS.len() + 1;

/// SplitMix64: small, fast, deterministic; good enough to shuffle a policy.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; 0 when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // n is far below 2^32 here, so the modulo bias is negligible.
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Namespaces of tenant `t`.
fn tenant_namespaces(t: usize, count: usize) -> Vec<String> {
    ["a", "b", "c"]
        .iter()
        .take(count.clamp(1, 3))
        .map(|s| format!("tenant-{t}-{s}"))
        .collect()
}

/// Generates the bulk entries of one listener: `count` host strings after its `./*`.
struct Bulk<'a> {
    rng: &'a mut Rng,
    /// Global counter: every generated name is unique across the document.
    next: &'a mut usize,
    /// Namespaces that exist (tenants' namespaces), to import or name.
    known_ns: &'a [String],
}

impl Bulk<'_> {
    /// `imported`: namespaces the listener already imports with `ns/*` (or `./*`, for a tenant
    /// with one namespace). `exclusions`: whether `~` entries may be drawn (a workload exception
    /// only adds, so validation refuses them there).
    fn fill(&mut self, out: &mut Vec<String>, count: usize, imported: &[&str], exclusions: bool) {
        // Per listener: namespaces already imported with `ns/*` (an exact entry in one of them
        // would be shadowed) and those named by an exact entry (an `ns/*` would shadow it).
        let mut imported: HashSet<String> = imported.iter().map(|s| s.to_string()).collect();
        let mut named: HashSet<String> = HashSet::new();
        for _ in 0..count {
            *self.next += 1;
            let n = *self.next;
            let ns = self
                .known_ns
                .get(self.rng.below(self.known_ns.len()))
                .cloned()
                .unwrap_or_else(|| "tenant-0-a".to_owned());
            let roll = self.rng.below(100);
            let entry = match roll {
                0..=34 => format!("*/api-{n}.example.com"),
                35..=44 => format!("*/cdn-{n}.assets.example.net"),
                45..=59 => format!("*/*.partner-{n}.example.com"),
                60..=64 => format!("*/*.eu.partner-{n}.example.com"),
                65..=84 if !imported.contains(&ns) => {
                    named.insert(ns.clone());
                    format!("{ns}/svc-{n}.{ns}.svc.cluster.local")
                }
                85..=94 if !imported.contains(&ns) && !named.contains(&ns) => {
                    imported.insert(ns.clone());
                    format!("{ns}/*")
                }
                95..=97 if exclusions => format!("~/blocked-{n}.example.com"),
                98..=99 if exclusions && !imported.contains(&ns) => {
                    // An exclusion of a namespace this listener does not import.
                    named.insert(ns.clone());
                    format!("~{ns}/internal-{n}.{ns}.svc.cluster.local")
                }
                _ => format!("*/svc-{n}.{ns}.svc.cluster.local"),
            };
            out.push(entry);
        }
    }
}

/// A realistic multi-tenant policy with exactly `rules` host entries (at least
/// [`MIN_RULES`]; smaller requests are rounded up). See the module docs for its shape.
pub fn generate_policy(rules: usize, seed: u64) -> Value {
    let rules = rules.max(MIN_RULES);
    let mut rng = Rng::new(seed);
    let mut next = 0usize;

    // Decide the tenants first (their namespaces must exist before entries name them).
    let fixed = PROBE_CATCH_ALL.len() + PROBE_PORT_HOSTS.len();
    let probe_bulk = (rules / 4).saturating_sub(fixed + 5);
    let mut remaining = rules - fixed - probe_bulk;
    let mut sizes: Vec<usize> = Vec::new();
    // A probe-tenant workload exception (5 entries) when there is room for it.
    let probe_exception = if remaining >= 50 { 5 } else { 0 };
    remaining -= probe_exception;
    while remaining > 0 {
        // Tenants of 10..=190 entries (mean 100); the last one takes what is left.
        let size = (10 + rng.below(181)).min(remaining);
        let size = if remaining - size < 10 {
            remaining
        } else {
            size
        };
        sizes.push(size);
        remaining -= size;
    }
    let tenant_count = sizes.len() + 1;
    let ns_counts: Vec<usize> = (0..tenant_count)
        .map(|t| match t {
            0 => 2,
            1 => 1,
            _ => 1 + rng.below(3),
        })
        .collect();
    let known_ns: Vec<String> = ns_counts
        .iter()
        .enumerate()
        .flat_map(|(t, &c)| tenant_namespaces(t, c))
        .collect();

    let mut tenants = Vec::with_capacity(tenant_count);

    // The probe tenant.
    let mut catch_all: Vec<String> = PROBE_CATCH_ALL.iter().map(|s| s.to_string()).collect();
    Bulk {
        rng: &mut rng,
        next: &mut next,
        known_ns: &known_ns[2..],
    }
    .fill(&mut catch_all, probe_bulk, &[IMPORTED_NAMESPACE], true);
    let mut probe = json!({
        "name": "tenant-0",
        "namespaces": tenant_namespaces(0, 2),
        "egress": [
            {"port": {"number": PROBE_PORT, "protocol": "TCP", "name": "postgres"},
             "hosts": PROBE_PORT_HOSTS},
            {"hosts": catch_all},
        ],
    });
    if probe_exception > 0 {
        probe["workloads"] = json!([{
            "name": "batch",
            "selector": {"app": "batch"},
            "egress": [{"hosts": [
                "logs/*",
                "*/reports.example.com",
                "*/*.s3.example.com",
                "*/ingest.metrics.example.com",
                "*/api.billing.example.com",
            ]}],
        }]);
    }
    tenants.push(probe);

    // Every other tenant.
    const PORTS: [u16; 5] = [5432, 6379, 9092, 26257, 27017];
    for (i, &size) in sizes.iter().enumerate() {
        let t = i + 1;
        let namespaces = tenant_namespaces(t, ns_counts.get(t).copied().unwrap_or(1));
        // `./*` is the tenant's namespace when it has only one: an entry there is covered.
        let own: Vec<&str> = match namespaces.as_slice() {
            [one] => vec![one.as_str()],
            _ => Vec::new(),
        };
        // Split `size` into catch-all, port listener and workload exception.
        let mut budget = size;
        let exception = if budget >= 30 && rng.chance(20) {
            1 + rng.below(5)
        } else {
            0
        };
        budget -= exception;
        let port_hosts = if budget >= 10 && rng.chance(33) {
            2 + rng.below(3)
        } else {
            0
        };
        budget -= port_hosts;
        let mut egress = Vec::new();
        if port_hosts > 0 {
            let mut hosts = vec!["./*".to_owned()];
            Bulk {
                rng: &mut rng,
                next: &mut next,
                known_ns: &known_ns,
            }
            .fill(&mut hosts, port_hosts - 1, &own, true);
            let port = PORTS.get(rng.below(PORTS.len())).copied().unwrap_or(5432);
            egress.push(json!({"port": {"number": port, "protocol": "TCP"}, "hosts": hosts}));
        }
        let mut hosts = vec!["./*".to_owned()];
        Bulk {
            rng: &mut rng,
            next: &mut next,
            known_ns: &known_ns,
        }
        .fill(&mut hosts, budget.saturating_sub(1), &own, true);
        egress.push(json!({ "hosts": hosts }));
        let mut tenant = json!({
            "name": format!("tenant-{t}"),
            "namespaces": namespaces,
            "egress": egress,
        });
        if rng.chance(10) {
            tenant["mode"] = json!("audit");
        }
        if rng.chance(10) {
            tenant["outboundTrafficPolicy"] = json!("ALLOW_ANY");
        }
        if exception > 0 {
            let mut hosts = Vec::new();
            Bulk {
                rng: &mut rng,
                next: &mut next,
                known_ns: &known_ns,
            }
            .fill(&mut hosts, exception, &[], false);
            tenant["workloads"] = json!([{
                "name": format!("job-{t}"),
                "selector": {"app": format!("job-{t}")},
                "egress": [{"hosts": hosts}],
            }]);
        }
        tenants.push(tenant);
    }

    // The probe exception's `logs/*` is the one namespace named that no tenant owns: shared
    // on purpose (validation would otherwise take it for a typo).
    json!({
        "apiVersion": "tenant-egress/v1",
        "mode": "enforce",
        "sharedNamespaces": if probe_exception > 0 { vec!["logs"] } else { Vec::new() },
        // As a real cluster declares them (some tenants are ALLOW_ANY).
        "clusterNetworks": ["10.96.0.0/12", "10.244.0.0/16"],
        "tenants": tenants,
    })
}

/// [`generate_policy`] serialized (what Envoy's plugin configuration carries).
pub fn generate_policy_bytes(rules: usize, seed: u64) -> Vec<u8> {
    serde_json::to_vec(&generate_policy(rules, seed)).unwrap_or_default()
}

/// The host entries of one tenant: its own and its workload exceptions'.
pub fn tenant_host_entries(t: &tenant_egress_core::spec::TenantSpec) -> usize {
    t.egress
        .iter()
        .chain(t.workloads.iter().flat_map(|w| w.egress.iter()))
        .map(|e| e.hosts.len())
        .sum()
}

/// The tenant whose host entries number closest to 100 (the generator's mean): whose shards
/// `policy-memory --shard` / `--destination-shard` and `reload --end destination` measure.
pub fn hundred_rule_tenant(
    spec: &tenant_egress_core::PolicySpec,
) -> Option<&tenant_egress_core::spec::TenantSpec> {
    spec.tenants
        .iter()
        .min_by_key(|t| tenant_host_entries(t).abs_diff(100))
}

/// Counts the host entries of a policy document (tenants' and exceptions' `hosts`).
pub fn count_host_entries(policy: &Value) -> usize {
    let egress_hosts = |owner: &Value| -> usize {
        owner["egress"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|l| l["hosts"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0)
    };
    policy["tenants"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    egress_hosts(t)
                        + t["workloads"]
                            .as_array()
                            .map_or(0, |ws| ws.iter().map(egress_hosts).sum())
                })
                .sum()
        })
        .unwrap_or(0)
}

/// One decide benchmark case: the request (owned, so a bench borrows it as a
/// [`tenant_egress_core::Request`] outside the timed loop) and the reason it must yield.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name used as the criterion function id.
    pub name: &'static str,
    /// What the case exercises.
    pub about: &'static str,
    /// The request.
    pub request: RequestSpec,
    /// The expected reason code (`allowed`, `not-allowed`, `excluded`).
    pub expect: &'static str,
}

impl Case {
    /// The source labels in the shape [`RequestSpec::as_request`] wants.
    pub fn labels(&self) -> Vec<(&str, &str)> {
        self.request
            .source
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

fn request(authority: Option<&str>, cluster: Option<&str>, dest_ns: Option<&str>) -> RequestSpec {
    RequestSpec {
        source: SourceSpec {
            namespace: Some(PROBE_NAMESPACE.to_owned()),
            labels: BTreeMap::new(),
            ..SourceSpec::default()
        },
        authority: authority.map(str::to_owned),
        cluster: cluster.map(str::to_owned),
        destination_namespace: dest_ns.map(str::to_owned),
        // Everything else (protocol HTTP, no original destination) as a plain HTTP request.
        ..RequestSpec::default()
    }
}

/// The decide cases. They hold for every policy [`generate_policy`] returns, whatever its size
/// and seed (the probe tenant's fixed entries decide them).
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "exact_hit",
            about: "exact FQDN entry; cluster + identical authority",
            request: request(
                Some("api-0.example.com"),
                Some("outbound|443||api-0.example.com"),
                None,
            ),
            expect: "allowed",
        },
        Case {
            name: "wildcard_hit",
            about: "*.partner-0.example.com; wildcard ServiceEntry cluster",
            request: request(
                Some("www.partner-0.example.com"),
                Some("outbound|443||*.partner-0.example.com"),
                None,
            ),
            expect: "allowed",
        },
        Case {
            name: "miss",
            about: "no entry: exact probe, suffix walk and ns/* probe all miss",
            request: request(
                Some("api-miss.example.com"),
                Some("outbound|443||api-miss.example.com"),
                None,
            ),
            expect: "not-allowed",
        },
        Case {
            name: "port_mismatch",
            about: "host allowed on the catch-all, requested on the port-scoped listener's port",
            request: request(
                Some("api-0.example.com:5432"),
                Some("outbound|5432||api-0.example.com"),
                None,
            ),
            expect: "not-allowed",
        },
        Case {
            name: "exclusion",
            about: "~/secret.partner-0.example.com beats *.partner-0.example.com",
            request: request(
                Some("secret.partner-0.example.com"),
                Some("outbound|443||*.partner-0.example.com"),
                None,
            ),
            expect: "excluded",
        },
        Case {
            name: "authority_only",
            about: "no cluster: short alias svc.ns:port expanded to the FQDN, ns/* import",
            request: request(Some("svc-0.tenant-1-a:8080"), None, None),
            expect: "allowed",
        },
        Case {
            name: "cluster_alias",
            about: "outbound cluster + authority alias svc.ns.svc:port + namespace metadata",
            request: request(
                Some("svc-0.tenant-1-a.svc:8080"),
                Some("outbound|8080||svc-0.tenant-1-a.svc.cluster.local"),
                Some("tenant-1-a"),
            ),
            expect: "allowed",
        },
    ]
}

/// Authorities for the parser benchmark: (name, bytes).
pub fn authorities() -> Vec<(&'static str, Vec<u8>)> {
    let long = format!(
        "{}.{}b1b.{}.{}:8443",
        "a".repeat(63),
        "b1-".repeat(20),
        "c".repeat(63),
        "example-long-tail.com"
    );
    vec![
        ("short", b"api-0.example.com".to_vec()),
        ("short_port", b"svc-0.tenant-1-a:8080".to_vec()),
        ("long", long.into_bytes()),
        ("mixed_case", b"API-0.Example.COM.".to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_egress_core::Policy;

    #[test]
    fn sizes_are_exact_and_policies_valid() {
        for rules in [10, 57, 1_000, 10_000] {
            let doc = generate_policy(rules, DEFAULT_SEED);
            assert_eq!(count_host_entries(&doc), rules);
            let bytes = serde_json::to_vec(&doc).unwrap();
            let (policy, warnings) = Policy::from_json(&bytes).unwrap();
            assert_eq!(policy.rule_count(), rules);
            // Only the per-port-listener note and the label-only exception note (the
            // generator's exceptions select by labels) are expected.
            for w in &warnings {
                assert!(
                    w.message.contains("only this entry's hosts apply")
                        || w.message.contains("an exception by labels only"),
                    "{w}"
                );
            }
            if rules >= 1_000 {
                assert!(policy.tenant_count() >= rules / 300, "{}", policy.summary());
            }
        }
    }

    #[test]
    fn deterministic_per_seed() {
        assert_eq!(generate_policy(1_000, 1), generate_policy(1_000, 1));
        assert_ne!(generate_policy(1_000, 1), generate_policy(1_000, 2));
    }

    #[test]
    fn cases_decide_as_expected_at_every_size() {
        for rules in [10, 1_000, 10_000] {
            for seed in [DEFAULT_SEED, 7] {
                let bytes = generate_policy_bytes(rules, seed);
                let (policy, _) = Policy::from_json(&bytes).unwrap();
                for case in cases() {
                    let labels = case.labels();
                    let d = policy.decide(&case.request.as_request(&labels));
                    assert_eq!(d.reason.as_str(), case.expect, "{} at {rules}", case.name);
                }
            }
        }
    }

    #[test]
    fn authorities_parse() {
        for (name, a) in authorities() {
            assert!(
                tenant_egress_core::authority::parse_authority(&a).is_ok(),
                "{name}"
            );
        }
    }
}
