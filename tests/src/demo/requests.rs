//! The demo's requests: what each source sends, what demo/policy/ says must happen, and
//! what did happen.
//!
//! Each row names a source sidecar, the `Host` header(s) and the expected outcome. Running a
//! row checks three things against each other:
//! - the table's expectation;
//! - the policy's own answer: the core's decision ([`tenant_egress_core::Policy::decide`]) for
//!   the request as the filter sees it, with the cluster Envoy routes it to
//!   ([`EnvoyConfig::route`](crate::EnvoyConfig::route)) — so the table cannot silently drift
//!   from `demo/policy/`;
//! - what the running Envoys did: the status, the `x-tenant-egress-denied` header and body,
//!   which mesh upstream answered (`x-upstream`), and the filter's own verdict read from the
//!   sidecar's counters (`tenant_egress.allowed`, `.denied.<reason>`, `.audit_denied.<reason>`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use tenant_egress_core::{Policy, Reason, Request, Source, Target};

use super::ends::ConnectionResult;
use super::topology::{sidecar, sidecar_config, Ports, INTERNET, WASM_RELATIVE};
use crate::assertions::DENIAL_MARKER;
use crate::envoy::{admin_stats, stat};
use crate::http::{try_raw_http1, Response};

/// The response header naming the reason of a denial.
pub const DENIED_HEADER: &str = "x-tenant-egress-denied";

/// How long to wait for the filter to count a request (it adds its counters to Envoy's stats
/// every 250 ms).
pub const COUNTER_WAIT: Duration = Duration::from_secs(3);

/// An outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reached the upstream.
    Allow,
    /// Blocked by the filter (its local reply) for this reason.
    Deny(Reason),
    /// Reached the upstream; the filter counted what enforce mode would deny (audit mode).
    Audit(Reason),
}

impl Outcome {
    /// `ALLOW`, `DENY`, `AUDIT`.
    pub fn decision(&self) -> &'static str {
        match self {
            Outcome::Allow => "ALLOW",
            Outcome::Deny(_) => "DENY",
            Outcome::Audit(_) => "AUDIT",
        }
    }

    pub fn reason(&self) -> Option<Reason> {
        match *self {
            Outcome::Allow => None,
            Outcome::Deny(r) | Outcome::Audit(r) => Some(r),
        }
    }

    /// Whether the request reaches an upstream.
    pub fn reaches_upstream(&self) -> bool {
        !matches!(self, Outcome::Deny(_))
    }

    /// The outcome of a decision of the core.
    pub fn of(d: &tenant_egress_core::Decision) -> Outcome {
        match (d.allowed, d.enforced) {
            (true, _) => Outcome::Allow,
            (false, true) => Outcome::Deny(d.reason),
            (false, false) => Outcome::Audit(d.reason),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) => write!(f, "{} {r}", self.decision()),
            None => f.write_str(self.decision()),
        }
    }
}

/// One request of the table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// The sidecar (source identity) it is sent through.
    pub source: &'static str,
    /// Its `Host` header(s) (HTTP/1.1; more than one to show a repeated authority).
    pub hosts: &'static [&'static str],
    /// What demo/policy/ says must happen.
    pub expect: Outcome,
}

const fn row(source: &'static str, hosts: &'static [&'static str], expect: Outcome) -> Row {
    Row {
        source,
        hosts,
        expect,
    }
}

use Outcome::{Allow, Audit, Deny};
use Reason::{AuthorityMismatch, Excluded, MalformedAuthority, NotAllowed, NotInRegistry};

/// The demo's requests.
pub const TABLE: [Row; 24] = [
    // prod: enforce, REGISTRY_ONLY, its own namespace only.
    row("prod", &["cockroachdb:26257"], Allow),
    row("prod", &["api.prod.svc.cluster.local:8080"], Allow),
    row(
        "prod",
        &["cockroachdb.uat.svc.cluster.local:26257"],
        Deny(NotAllowed),
    ),
    row("prod", &["cockroachdb.dev:26257"], Deny(NotAllowed)),
    row("prod", &["logcatcher.logmonkey:80"], Deny(NotAllowed)),
    row("prod", &["www.example.com"], Deny(NotAllowed)),
    row("prod", &["downloads.example.org"], Deny(NotInRegistry)),
    // Host spoofing: a service's name on a port its route table does not have. Envoy finds no
    // virtual host and passes the request through to whatever address was dialled.
    row(
        "prod",
        &["cockroachdb.prod.svc.cluster.local:8080"],
        Deny(AuthorityMismatch),
    ),
    // Two Host headers: Envoy would show the filter only the first one.
    row(
        "prod",
        &["cockroachdb", "cockroachdb.uat"],
        Deny(MalformedAuthority),
    ),
    // batman-app in prod: prod's egress plus the workload exception.
    row(
        "prod-batman",
        &["logcatcher.logmonkey.svc.cluster.local"],
        Allow,
    ),
    row("prod-batman", &["cockroachdb:26257"], Allow),
    row("prod-batman", &["cockroachdb.uat:26257"], Deny(NotAllowed)),
    // uat: its own sidecar keeps it to its own namespace. (The both-ends table shows uat's pod
    // skipping this sidecar, refused by prod's database sidecar instead.)
    row("uat", &["cockroachdb:26257"], Allow),
    row("uat", &["cockroachdb.prod:26257"], Deny(NotAllowed)),
    // staging: audit mode -- nothing blocked, denials counted.
    row("staging", &["cockroachdb.prod:26257"], Audit(NotAllowed)),
    row("staging", &["downloads.example.org"], Audit(NotInRegistry)),
    // dev: ALLOW_ANY; uat's services but, on 26257, only its own database.
    row("dev", &["cockroachdb:26257"], Allow),
    row("dev", &["api.uat:8080"], Allow),
    row("dev", &["cockroachdb.uat:26257"], Deny(NotAllowed)),
    row("dev", &["en.example.com"], Allow),
    row("dev", &["secret.example.com"], Deny(Excluded)),
    row("dev", &["downloads.example.org"], Allow),
    row(
        "dev",
        &["cockroachdb.prod.svc.cluster.local:8080"],
        Deny(AuthorityMismatch),
    ),
    // A proxy without NAMESPACE metadata: fail closed.
    row("nometa", &["api.prod:8080"], Deny(Reason::UnknownSource)),
];

/// What each reason in the table means, for the legend under it.
pub fn explain_reason(r: Reason) -> &'static str {
    match r {
        Reason::NotAllowed => "no egress rule of the caller's tenant imports the destination",
        Reason::NotInRegistry => {
            "outside the service registry (passthrough) and the tenant is REGISTRY_ONLY"
        }
        Reason::AuthorityMismatch => {
            "Host spoofing: a mesh service's name, but no route for that port, so Envoy \
             passed it through"
        }
        Reason::MalformedAuthority => {
            "more than one Host header (Envoy would show the filter only the first)"
        }
        Reason::Excluded => "an exclusion (\"~/secret.example.com\") wins over \"*/*.example.com\"",
        Reason::UnknownSource => "the proxy has no NAMESPACE metadata, so no tenant: fail closed",
        Reason::NoPeerIdentity => {
            "no client certificate (plaintext): the destination cannot tell who is calling"
        }
        _ => "see README.md, \"Decisions and reason codes\"",
    }
}

/// Where Envoy sends a row's request, per the sidecar's route table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The cluster (`outbound|P||host` or `PassthroughCluster`).
    pub cluster: String,
    /// The cluster's `istio.services` namespace.
    pub namespace: Option<String>,
    /// The mesh upstream that answers if the request is let through (`x-upstream`).
    pub upstream: String,
}

impl Row {
    /// The route Envoy takes for this row (by its first Host, the one Envoy routes on).
    pub fn route(&self) -> Route {
        let sc = sidecar(self.source).unwrap_or_else(|| panic!("no sidecar {}", self.source));
        match sidecar_config(sc, "", WASM_RELATIVE).route(None, self.hosts[0]) {
            Some(r) => Route {
                cluster: r.cluster(),
                namespace: Some(r.namespace.clone()),
                upstream: r.label(),
            },
            None => Route {
                cluster: tenant_egress_core::authority::PASSTHROUGH_CLUSTER.into(),
                namespace: None,
                upstream: INTERNET.into(),
            },
        }
    }

    /// What the policy says: the core's decision for this request as the filter sees it on a
    /// sidecar whose outbound listener is 127.0.0.1:`listener` (the original destination of a
    /// passed-through request, as there is no iptables).
    pub fn policy_outcome(&self, policy: &Policy, listener: u16) -> Outcome {
        let sc = sidecar(self.source).unwrap_or_else(|| panic!("no sidecar {}", self.source));
        let route = self.route();
        // As the filter: the original destination is read for a passed-through request only.
        let passthrough = route.cluster == tenant_egress_core::authority::PASSTHROUGH_CLUSTER;
        let address = passthrough.then(|| format!("127.0.0.1:{listener}"));
        let first = self.hosts[0];
        let d = policy.decide(&Request {
            source: Source {
                namespace: sc.namespace,
                labels: sc.labels,
            },
            target: Target {
                authority: Some(first.as_bytes()),
                authority_repeated: self.hosts.iter().any(|h| *h != first),
                cluster: Some(&route.cluster),
                destination_namespace: route.namespace.as_deref(),
                destination_address: address.as_deref(),
                ..Target::default()
            },
        });
        Outcome::of(&d)
    }

    /// The request as sent.
    pub fn describe(&self) -> String {
        match self.hosts {
            [one] => one.to_string(),
            many => format!("{} Hosts: {}", many.len(), many.join(", ")),
        }
    }
}

/// One row, run.
#[derive(Clone, Debug)]
pub struct RowResult {
    pub row: Row,
    pub route: Route,
    /// The policy's answer (the core).
    pub policy: Outcome,
    /// What the filter counted, or why that could not be told.
    pub counted: Result<Outcome, String>,
    pub response: Response,
    /// Everything that was not as expected; empty: the row passed.
    pub problems: Vec<String>,
}

impl RowResult {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The filter's counters of one sidecar (`tenant_egress.*`, without the prefix).
pub(crate) fn filter_counters(admin: u16) -> std::io::Result<BTreeMap<String, u64>> {
    let stats = admin_stats(admin)?;
    Ok(stats
        .keys()
        .filter_map(|k| {
            let short = k.strip_prefix("wasmcustom.").unwrap_or(k);
            let name = short.strip_prefix("tenant_egress.")?;
            Some((name.to_string(), stat(&stats, short)?))
        })
        .collect())
}

/// The requests (or connections) counted under `prefix`: `""` for HTTP requests at the
/// caller's end, `"connections."` for its network filter, `"inbound.connections."` at the
/// destination's.
fn total(c: &BTreeMap<String, u64>, prefix: &str) -> u64 {
    ["allowed", "denied", "audit_denied"]
        .iter()
        .map(|k| c.get(&format!("{prefix}{k}")).copied().unwrap_or(0))
        .sum()
}

/// Waits (bounded) for the filter to count one more request than `before` under `prefix` (see
/// [`total`]); returns its verdict and the counters now.
pub(crate) fn counted_since(
    before: &BTreeMap<String, u64>,
    admin: u16,
    prefix: &str,
) -> std::io::Result<(Result<Outcome, String>, BTreeMap<String, u64>)> {
    let deadline = Instant::now() + COUNTER_WAIT;
    let after = loop {
        let after = filter_counters(admin)?;
        if total(&after, prefix) > total(before, prefix) {
            break after;
        }
        if Instant::now() > deadline {
            return Ok((Err("the filter counted nothing".into()), after));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let delta: BTreeMap<&str, u64> = after
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?, v)))
        .map(|(k, v)| {
            (
                k,
                v.saturating_sub(before.get(&format!("{prefix}{k}")).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, d)| *d != 0)
        .collect();
    if total(&after, prefix).saturating_sub(total(before, prefix)) != 1 {
        return Ok((
            Err(format!(
                "counters moved by more than one request: {delta:?}"
            )),
            after,
        ));
    }
    if delta.contains_key("allowed") {
        return Ok((Ok(Outcome::Allow), after));
    }
    for (outcome, make) in [
        ("denied", Outcome::Deny as fn(Reason) -> Outcome),
        ("audit_denied", Outcome::Audit),
    ] {
        if delta.contains_key(outcome) {
            let prefix = format!("{outcome}.");
            let reasons: Vec<Reason> = delta
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter_map(|r| Reason::from_code(&r.replace('_', "-")))
                .collect();
            return Ok((
                match reasons[..] {
                    [r] => Ok(make(r)),
                    _ => Err(format!("unexpected counters {delta:?}")),
                },
                after,
            ));
        }
    }
    Ok((Err(format!("unexpected counters {delta:?}")), after))
}

/// Everything the demo sends, run: the request table, then the both-ends connections.
#[derive(Clone, Debug)]
pub struct Report {
    pub requests: Vec<RowResult>,
    pub connections: Vec<ConnectionResult>,
}

impl Report {
    /// Whether every request and connection behaved as expected.
    pub fn ok(&self) -> bool {
        self.requests.iter().all(RowResult::ok) && self.connections.iter().all(|c| c.ok())
    }

    /// How many requests and connections were sent.
    pub fn len(&self) -> usize {
        self.requests.len() + self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends the request table ([`TABLE`]) and the both-ends connections
/// ([`CONNECTIONS`](super::ends::CONNECTIONS)) to the demo running on `ports` and checks each
/// (see the module docs). An I/O error means the demo is not (or not fully) running.
pub fn run(policy: &Policy, ports: &Ports) -> std::io::Result<Report> {
    Ok(Report {
        requests: run_requests(policy, ports)?,
        connections: super::ends::run(policy, ports)?,
    })
}

/// Sends every row of [`TABLE`] to the demo running on `ports` and checks it (see the module
/// docs). An I/O error means the demo is not (or not fully) running.
pub fn run_requests(policy: &Policy, ports: &Ports) -> std::io::Result<Vec<RowResult>> {
    let mut last: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut out = Vec::new();
    for row in TABLE {
        let sp = ports
            .sidecar(row.source)
            .unwrap_or_else(|| panic!("no ports for sidecar {}", row.source));
        let before = match last.remove(row.source) {
            Some(c) => c,
            None => filter_counters(sp.admin)?,
        };
        let mut request = String::from("GET / HTTP/1.1\r\n");
        for h in row.hosts {
            request.push_str(&format!("Host: {h}\r\n"));
        }
        request.push_str("User-Agent: tenant-egress-demo\r\nConnection: close\r\n\r\n");
        let response = try_raw_http1(sp.listener, request.as_bytes())?;
        let (counted, after) = counted_since(&before, sp.admin, "")?;
        last.insert(row.source, after);
        let route = row.route();
        let policy_says = row.policy_outcome(policy, sp.listener);
        let mut problems = Vec::new();
        if policy_says != row.expect {
            problems.push(format!(
                "the table expects {} but demo/policy/ says {policy_says} \
                 (tenant_egress_core); fix the table or the policy",
                row.expect
            ));
        }
        match &counted {
            Err(why) => problems.push(why.clone()),
            Ok(c) if *c != row.expect => {
                problems.push(format!("expected {}, the filter counted {c}", row.expect))
            }
            Ok(_) => {}
        }
        let denied = response.header(DENIED_HEADER);
        let upstream = response.header("x-upstream");
        match row.expect {
            Outcome::Deny(reason) => {
                let marker = format!("{DENIAL_MARKER} ({reason})");
                if response.status != policy.deny_status()
                    || denied != Some(reason.as_str())
                    || !response.body.starts_with(&marker)
                    || upstream.is_some()
                {
                    problems.push(format!(
                        "expected the filter's {} ({reason}) but got status {}, \
                         {DENIED_HEADER}: {denied:?}, x-upstream: {upstream:?}",
                        policy.deny_status(),
                        response.status
                    ));
                }
            }
            Outcome::Allow | Outcome::Audit(_) => {
                if response.status != 200
                    || denied.is_some()
                    || upstream != Some(route.upstream.as_str())
                {
                    problems.push(format!(
                        "expected 200 from {} but got status {}, {DENIED_HEADER}: {denied:?}, \
                         x-upstream: {upstream:?}",
                        route.upstream, response.status
                    ));
                }
            }
        }
        out.push(RowResult {
            row,
            route,
            policy: policy_says,
            counted,
            response,
            problems,
        });
    }
    Ok(out)
}

/// Both tables as `scripts/demo.sh` prints them, with their legends and, for failed rows, what
/// went wrong; the last line says whether every request and connection behaved as the policy
/// says.
pub fn format_report(report: &Report) -> String {
    let mut out = format_table(&report.requests);
    out.push('\n');
    out += &super::ends::format_connections(&report.connections);
    let failed = report.requests.iter().filter(|r| !r.ok()).count()
        + report.connections.iter().filter(|r| !r.ok()).count();
    if failed == 0 {
        out += &format!(
            "\nall {} requests behaved as demo/policy/ says\n",
            report.len()
        );
    } else {
        out += &format!(
            "\n{failed} of {} requests did not behave as expected\n",
            report.len()
        );
    }
    out
}

/// The request table with its legend and, for failed rows, what went wrong.
pub fn format_table(results: &[RowResult]) -> String {
    let header = [
        "source",
        "request (Host header)",
        "decision",
        "status",
        "reason",
        "answered by",
        "check",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = results
        .iter()
        .map(|r| {
            let (decision, reason) = match &r.counted {
                Ok(o) => (
                    o.decision().to_string(),
                    o.reason().map_or("-".into(), |x| x.to_string()),
                ),
                Err(_) => ("?".into(), "?".into()),
            };
            let answered = match r.response.header("x-upstream") {
                Some(u) => u.to_string(),
                None if r.response.header(DENIED_HEADER).is_some() => {
                    "the filter (local reply)".into()
                }
                None => "-".into(),
            };
            [
                r.row.source.to_string(),
                r.row.describe(),
                decision,
                r.response.status.to_string(),
                reason,
                answered,
                if r.ok() { "ok" } else { "FAIL" }.to_string(),
            ]
        })
        .collect();
    let table = super::TextTable::new(&header, &rows);
    let line = |cells: &[String]| table.line(cells);
    let mut out = table.head(&header);
    let mut prev = None;
    for (r, cells) in results.iter().zip(&rows) {
        if prev.is_some_and(|p| p != r.row.source) {
            out.push('\n');
        }
        prev = Some(r.row.source);
        out += &line(cells);
    }
    out += "\ndecision and reason: the filter's own counters for each request (/stats).\n";
    out += &format!("  {:<20} reached the upstream\n", "ALLOW");
    out += &format!(
        "  {:<20} 403 from the filter, reason in the {DENIED_HEADER} header and the body\n",
        "DENY"
    );
    out += &format!(
        "  {:<20} reached the upstream, counted as audit_denied (tenant staging is in audit mode)\n",
        "AUDIT"
    );
    let mut listed: Vec<Reason> = Vec::new();
    for r in results.iter().filter_map(|r| r.row.expect.reason()) {
        if !listed.contains(&r) {
            listed.push(r);
            out += &format!("  {:<20} {}\n", r.as_str(), explain_reason(r));
        }
    }
    for (i, r) in results.iter().enumerate().filter(|(_, r)| !r.ok()) {
        out += &format!(
            "FAIL #{} {} Host {:?}: {}\n     got status {}, body: {:?}\n",
            i + 1,
            r.row.source,
            r.row.hosts,
            r.problems.join("; "),
            r.response.status,
            r.response.body.lines().next().unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::committed_policy as policy;

    #[test]
    fn the_table_is_what_the_policy_says() {
        let policy = policy();
        let disagree: Vec<String> = TABLE
            .iter()
            .filter(|r| r.policy_outcome(&policy, 15201) != r.expect)
            .map(|r| {
                format!(
                    "{} {:?}: {}",
                    r.source,
                    r.hosts,
                    r.policy_outcome(&policy, 15201)
                )
            })
            .collect();
        assert!(disagree.is_empty(), "{disagree:#?}");
    }

    #[test]
    fn a_row_that_contradicts_the_policy_is_caught() {
        let policy = policy();
        let wrong = row("prod", &["cockroachdb.uat:26257"], Allow);
        assert_eq!(wrong.policy_outcome(&policy, 15201), Deny(NotAllowed));
        let wrong = row("staging", &["cockroachdb.prod:26257"], Allow);
        assert_eq!(wrong.policy_outcome(&policy, 15206), Audit(NotAllowed));
    }

    #[test]
    fn routes_follow_the_sidecars_route_tables() {
        let r = |source: &'static str, hosts: &'static [&'static str]| {
            row(source, hosts, Allow).route()
        };
        assert_eq!(
            r("prod", &["cockroachdb:26257"]).upstream,
            "cockroachdb.prod:26257"
        );
        assert_eq!(
            r("dev", &["cockroachdb:26257"]).upstream,
            "cockroachdb.dev:26257"
        );
        assert_eq!(r("dev", &["en.example.com"]).upstream, "*.example.com:80");
        assert_eq!(
            r("dev", &["en.example.com"]).namespace.as_deref(),
            Some("istio-system")
        );
        let spoof = r("prod", &["cockroachdb.prod.svc.cluster.local:8080"]);
        assert_eq!(
            (spoof.cluster.as_str(), spoof.upstream.as_str()),
            ("PassthroughCluster", INTERNET)
        );
    }
}
