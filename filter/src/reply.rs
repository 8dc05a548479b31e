//! Pure: what a denial looks like to the caller and in the log. No host calls, so it is unit
//! tested natively.

use tenant_egress_core::explain::{explain, terse_why};
use tenant_egress_core::inbound::parse_spiffe;
use tenant_egress_core::spec::DenyBody;
use tenant_egress_core::{Decision, Policy, SourceScope};

/// The response header naming the reason of a denial.
pub const DENIED_HEADER: &str = "x-tenant-egress-denied";

/// The first line of every denial body (a stable marker for tests and log scrapers).
pub const BODY_MARKER: &str = "tenant-egress: request denied";

/// A local reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// The reason code (value of [`DENIED_HEADER`]).
    pub reason: &'static str,
    /// Plain-text body.
    pub body: String,
}

/// Builds the reply for a blocked request: which source, which destination, and why. With
/// `denyBody: full`, why names the rule to change; `terse` (the default) says only what the
/// caller's own request already told it, and where the full detail is: the proxy log line
/// ([`log_line`]) and `tenant-egress explain`, whose `--cluster` is the `via` shown here.
pub fn deny_reply(
    policy: &Policy,
    d: &Decision,
    src: &SourceScope,
    cluster: Option<&str>,
) -> LocalReply {
    let head = format!(
        "{BODY_MARKER} ({reason})\nsource: {source}\ndestination: {dest}\n",
        reason = d.reason.as_str(),
        source = describe_source(policy, src),
        dest = describe_destination(d, cluster),
    );
    let body = match policy.deny_body() {
        DenyBody::Full => format!("{head}why: {}\n", explain(policy, d, src.namespace())),
        DenyBody::Terse => format!(
            "{head}why: {}\ndetail: in the proxy log (\"denied source=...\"), or run: {}\n",
            terse_why(d.reason),
            explain_command(d, src, cluster)
        ),
    };
    LocalReply {
        status: policy.deny_status(),
        reason: d.reason.as_str(),
        body,
    }
}

/// `tenant-egress explain POLICY --source-namespace prod --authority host:port --cluster '...'`:
/// the request as the filter saw it, ready to paste.
fn explain_command(d: &Decision, src: &SourceScope, cluster: Option<&str>) -> String {
    let mut s = "tenant-egress explain POLICY".to_owned();
    if let Some(ns) = src.namespace() {
        s.push_str(&format!(" --source-namespace {ns}"));
    }
    if d.destination.host().is_some() {
        s.push_str(&format!(" --authority {}", d.destination));
    }
    if let Some(c) = cluster {
        s.push_str(&format!(" --cluster '{c}'"));
    }
    s
}

/// The reply when no policy was ever loaded in this VM (fail closed).
pub fn no_policy_reply() -> LocalReply {
    LocalReply {
        status: 403,
        reason: "no-policy",
        body: format!(
            "{BODY_MARKER} (no-policy)\nwhy: the tenant-egress filter has no valid policy loaded; see the proxy log\n"
        ),
    }
}

/// `namespace prod (tenant prod, workload exception batman)`.
pub fn describe_source(policy: &Policy, src: &SourceScope) -> String {
    let mut s = format!("namespace {}", src.namespace().unwrap_or("(unknown)"));
    if let Some(t) = src.tenant().and_then(|t| policy.tenant_name(t)) {
        s.push_str(&format!(" (tenant {t}"));
        if let Some(w) = src
            .tenant()
            .zip(src.workload())
            .and_then(|(t, w)| policy.workload_name(t, w))
        {
            s.push_str(&format!(", workload exception {w}"));
        }
        s.push(')');
    }
    s
}

/// `helloworld.foo.svc.cluster.local:80 (namespace foo) via outbound|80||helloworld...`.
pub fn describe_destination(d: &Decision, cluster: Option<&str>) -> String {
    let mut s = d.destination.to_string();
    if let Some(ns) = d.destination.namespace() {
        s.push_str(&format!(" (namespace {ns})"));
    }
    if let Some(c) = cluster {
        s.push_str(&format!(" via {c}"));
    }
    s
}

/// One log line for a decision, key=value so it greps well.
pub fn log_line(
    verb: &str,
    policy: &Policy,
    d: &Decision,
    src: &SourceScope,
    cluster: Option<&str>,
) -> String {
    let rule = rule_text(policy, d);
    format!(
        "{verb} source={} tenant={} destination={} destination_namespace={} cluster={} reason={} rule={rule}",
        src.namespace().unwrap_or("-"),
        src.tenant().and_then(|t| policy.tenant_name(t)).unwrap_or("-"),
        d.destination,
        d.destination.namespace().unwrap_or("-"),
        cluster.unwrap_or("-"),
        d.reason.as_str(),
    )
}

/// The caller as the destination end knows it: `spiffe://cluster.local/ns/uat/sa/default
/// (tenant uat)`, or `(no client certificate)`.
pub fn describe_caller(policy: &Policy, d: &Decision, peer: Option<&[u8]>) -> String {
    let Some(peer) = peer else {
        return "(no client certificate)".to_owned();
    };
    let mut s = String::from_utf8_lossy(peer).into_owned();
    if let Some(t) = d.tenant.and_then(|t| policy.tenant_name(t)) {
        s.push_str(&format!(" (tenant {t})"));
    }
    s
}

/// The caller's namespace from its SPIFFE id, for the explanation.
fn caller_namespace(peer: Option<&[u8]>) -> Option<&str> {
    peer.and_then(|p| parse_spiffe(p).ok())
        .map(|id| id.namespace)
}

/// The reply for a request the destination end blocks: who called, what, why.
pub fn inbound_deny_reply(
    policy: &Policy,
    d: &Decision,
    local: &SourceScope,
    peer: Option<&[u8]>,
    cluster: Option<&str>,
) -> LocalReply {
    LocalReply {
        status: policy.deny_status(),
        reason: d.reason.as_str(),
        body: format!(
            "{BODY_MARKER} ({reason})\ncaller: {caller}\ndestination: {dest}, workload in namespace {local}\nwhy: {why} (decided at the destination)\n",
            reason = d.reason.as_str(),
            caller = describe_caller(policy, d, peer),
            dest = describe_destination(d, cluster),
            local = local.namespace().unwrap_or("(unknown)"),
            why = explain(policy, d, caller_namespace(peer)),
        ),
    }
}

/// One log line for a destination-end decision.
pub fn inbound_log_line(
    verb: &str,
    policy: &Policy,
    d: &Decision,
    local: &SourceScope,
    peer: Option<&[u8]>,
    cluster: Option<&str>,
) -> String {
    let rule = rule_text(policy, d);
    format!(
        "{verb} at destination caller={} tenant={} destination={} destination_namespace={} workload_namespace={} cluster={} reason={} rule={rule}",
        peer.map_or_else(|| "-".into(), String::from_utf8_lossy),
        d.tenant.and_then(|t| policy.tenant_name(t)).unwrap_or("-"),
        d.destination,
        d.destination.namespace().unwrap_or("-"),
        local.namespace().unwrap_or("-"),
        cluster.unwrap_or("-"),
        d.reason.as_str(),
    )
}

/// The rule that decided, as the log lines name it: `<path> "<text>"`, or `-`.
fn rule_text(policy: &Policy, d: &Decision) -> String {
    d.rule
        .and_then(|r| policy.rule(r))
        .map(|r| format!("{} \"{}\"", r.path, r.text))
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant_egress_core::{Source, Target};

    fn policy() -> Policy {
        policy_with("full")
    }

    fn policy_with(body: &str) -> Policy {
        let doc = format!(
            r#"{{"apiVersion": "tenant-egress/v1", "denyStatus": 451, "denyBody": "{body}",
                 "sharedNamespaces": ["logs"],
                 "tenants": [{{"name": "prod", "namespaces": ["prod"],
                              "egress": [{{"hosts": ["./*", "~uat/secret.uat.svc.cluster.local"]}}],
                              "workloads": [{{"name": "batman", "selector": {{"app": "batman"}},
                                             "egress": [{{"hosts": ["logs/*"]}}]}}]}},
                             {{"name": "uat", "namespaces": ["uat"], "egress": [{{"hosts": ["./*"]}}]}}]}}"#
        );
        Policy::from_json(doc.as_bytes()).unwrap().0
    }

    #[test]
    fn a_terse_body_names_no_rule_no_path_no_other_namespace() {
        let p = policy_with("terse");
        let src = p.source(&Source {
            namespace: Some("prod"),
            labels: &[],
        });
        let cluster = "outbound|443||secret.uat.svc.cluster.local";
        let d = p.decide_for(
            &src,
            &Target {
                authority: Some(b"secret.uat:443"),
                cluster: Some(cluster),
                ..Target::default()
            },
        );
        assert_eq!(d.reason.as_str(), "excluded");
        let r = deny_reply(&p, &d, &src, Some(cluster));
        assert_eq!(
            r.body,
            "tenant-egress: request denied (excluded)\n\
             source: namespace prod (tenant prod)\n\
             destination: secret.uat.svc.cluster.local:443 (namespace uat) via outbound|443||secret.uat.svc.cluster.local\n\
             why: the egress policy of this namespace does not allow this destination\n\
             detail: in the proxy log (\"denied source=...\"), or run: tenant-egress explain POLICY \
             --source-namespace prod --authority secret.uat.svc.cluster.local:443 \
             --cluster 'outbound|443||secret.uat.svc.cluster.local'\n"
        );
        // The full body (and the log) name the rule.
        let full = policy_with("full");
        let d = full.decide_for(
            &src,
            &Target {
                authority: Some(b"secret.uat:443"),
                cluster: Some(cluster),
                ..Target::default()
            },
        );
        let body = deny_reply(&full, &d, &src, Some(cluster)).body;
        assert!(
            body.contains("excluded by tenants[0].egress[0].hosts[1]"),
            "{body}"
        );
        assert!(log_line("denied", &p, &d, &src, Some(cluster))
            .contains("rule=tenants[0].egress[0].hosts[1]"));
    }

    #[test]
    fn denial_names_source_destination_reason_and_rule() {
        let p = policy();
        let src = p.source(&Source {
            namespace: Some("prod"),
            labels: &[("app", "batman")],
        });
        let cluster = "outbound|26257||cockroachdb.uat.svc.cluster.local";
        let d = p.decide_for(
            &src,
            &Target {
                authority: Some(b"cockroachdb.uat:26257"),
                cluster: Some(cluster),
                ..Target::default()
            },
        );
        assert!(d.blocks());
        let r = deny_reply(&p, &d, &src, Some(cluster));
        assert_eq!(r.status, 451);
        assert_eq!(r.reason, "not-allowed");
        assert!(
            r.body
                .starts_with("tenant-egress: request denied (not-allowed)\n"),
            "{}",
            r.body
        );
        assert!(r
            .body
            .contains("source: namespace prod (tenant prod, workload exception batman)"));
        assert!(r.body.contains(
            "destination: cockroachdb.uat.svc.cluster.local:26257 (namespace uat) via outbound|26257||cockroachdb.uat.svc.cluster.local"
        ));
        assert!(
            r.body.contains(
                "add \"uat/cockroachdb.uat.svc.cluster.local\" to tenants[0].egress[0].hosts"
            ),
            "{}",
            r.body
        );
        let line = log_line("denied", &p, &d, &src, Some(cluster));
        assert!(line.contains("source=prod tenant=prod"), "{line}");
        assert!(
            line.contains("reason=not-allowed rule=tenants[0].egress[0] \"all ports\""),
            "{line}"
        );
    }

    #[test]
    fn unknown_source_body() {
        let p = policy();
        let src = p.source(&Source::default());
        let d = p.decide_for(&src, &Target::default());
        let r = deny_reply(&p, &d, &src, None);
        assert_eq!(r.reason, "unknown-source");
        assert!(r.body.contains("source: namespace (unknown)"));
        assert!(r.body.contains("no NAMESPACE node metadata"));
    }
}
