//! Pure: what a denial looks like to the caller and in the log. No host calls, so it is unit
//! tested natively.

use tenant_egress_core::explain::{explain, terse_why};
use tenant_egress_core::inbound::{parse_spiffe, Inbound};
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

/// Builds the reply for a blocked request: which source, which destination, and why
/// ([`reply`]).
pub fn deny_reply(
    policy: &Policy,
    d: &Decision,
    src: &SourceScope,
    cluster: Option<&str>,
) -> LocalReply {
    let mut head = String::from("source: ");
    head.push_str(&describe_source(policy, src));
    head.push_str("\ndestination: ");
    head.push_str(&describe_destination(d, cluster));
    reply(policy, d, head, src.namespace(), "", "source=", &|cmd| {
        arg(cmd, "source-namespace", src.namespace(), "");
        if d.destination.host().is_some() {
            arg(cmd, "authority", Some(&d.destination.to_string()), "");
        }
        arg(cmd, "cluster", cluster, "'");
    })
}

/// The one shape of a denial, at either end: the marker and reason, `head` (who called what),
/// then why. With `denyBody: full`, why names the rule to change; `terse` (the default) says
/// only what the caller's own request already told it, and where the full detail is: the proxy
/// log line (`denied <log_key>...`, [`log_line`] / [`inbound_log_line`]) and `tenant-egress
/// explain`, whose arguments `command` appends (the request as the filter saw it). One path
/// for both ends, so that `denyBody` means the same at each (issue 12: "as on the caller's
/// side"); `at` marks the destination's replies.
fn reply(
    policy: &Policy,
    d: &Decision,
    head: String,
    caller_namespace: Option<&str>,
    at: &str,
    log_key: &str,
    command: &dyn Fn(&mut String),
) -> LocalReply {
    let reason = d.reason.as_str();
    let mut body = String::from(BODY_MARKER);
    body.push_str(" (");
    body.push_str(reason);
    body.push_str(")\n");
    body.push_str(&head);
    body.push_str("\nwhy: ");
    match policy.deny_body() {
        DenyBody::Full => body.push_str(&explain(policy, d, caller_namespace)),
        DenyBody::Terse => body.push_str(terse_why(d.reason)),
    }
    body.push_str(at);
    body.push('\n');
    if policy.deny_body() == DenyBody::Terse {
        body.push_str("detail: in the proxy log (\"denied ");
        body.push_str(log_key);
        body.push_str("...\"), or run: tenant-egress explain POLICY");
        command(&mut body);
        body.push('\n');
    }
    LocalReply {
        status: policy.deny_status(),
        reason,
        body,
    }
}

/// ` --flag value` of the `explain` command, when there is a value; `quote` is `'` for a
/// value with shell metacharacters (`|` in a cluster name), else empty.
fn arg(cmd: &mut String, flag: &str, value: Option<&str>, quote: &str) {
    if let Some(v) = value {
        cmd.push_str(" --");
        cmd.push_str(flag);
        cmd.push(' ');
        cmd.push_str(quote);
        cmd.push_str(v);
        cmd.push_str(quote);
    }
}

/// A value the caller chose (its certificate's URI SAN, the SNI, the `:authority`) goes into
/// the pasteable command only when it is made of the characters those names are made of:
/// nothing a shell would interpret (not even `[...]`, a glob: an IPv6 `:authority` is left out,
/// which changes nothing, since the destination decides an IP-literal authority on the SNI).
fn pasteable(v: &[u8]) -> Option<&str> {
    if v.iter()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:/%".contains(b))
    {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// The reply when no policy was ever loaded in this VM (fail closed).
pub fn no_policy_reply() -> LocalReply {
    LocalReply {
        status: 403,
        reason: "no-policy",
        body: BODY_MARKER.to_owned()
            + " (no-policy)\nwhy: the tenant-egress filter has no valid policy loaded; see the proxy log\n",
    }
}

/// `namespace prod (tenant prod, workload exception batman)`.
pub fn describe_source(policy: &Policy, src: &SourceScope) -> String {
    let mut s = String::from("namespace ");
    s.push_str(src.namespace().unwrap_or("(unknown)"));
    if let Some(t) = src.tenant().and_then(|t| policy.tenant_name(t)) {
        s.push_str(" (tenant ");
        s.push_str(t);
        if let Some(w) = src
            .tenant()
            .zip(src.workload())
            .and_then(|(t, w)| policy.workload_name(t, w))
        {
            s.push_str(", workload exception ");
            s.push_str(w);
        }
        s.push(')');
    }
    s
}

/// `helloworld.foo.svc.cluster.local:80 (namespace foo) via outbound|80||helloworld...`.
pub fn describe_destination(d: &Decision, cluster: Option<&str>) -> String {
    let mut s = d.destination.to_string();
    if let Some(ns) = d.destination.namespace() {
        s.push_str(" (namespace ");
        s.push_str(ns);
        s.push(')');
    }
    if let Some(c) = cluster {
        s.push_str(" via ");
        s.push_str(c);
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
    let mut s = String::from(verb);
    kv(&mut s, "source", src.namespace().unwrap_or("-"));
    line(s, policy, d, src.tenant(), None, cluster)
}

/// The keys both ends' log lines share, after the end's own: `tenant=... destination=...
/// destination_namespace=... [workload_namespace=...] cluster=... reason=... rule=...`.
fn line(
    mut s: String,
    policy: &Policy,
    d: &Decision,
    tenant: Option<u32>,
    workload_namespace: Option<&str>,
    cluster: Option<&str>,
) -> String {
    kv(
        &mut s,
        "tenant",
        tenant.and_then(|t| policy.tenant_name(t)).unwrap_or("-"),
    );
    kv(&mut s, "destination", &d.destination.to_string());
    kv(
        &mut s,
        "destination_namespace",
        d.destination.namespace().unwrap_or("-"),
    );
    if let Some(w) = workload_namespace {
        kv(&mut s, "workload_namespace", w);
    }
    kv(&mut s, "cluster", cluster.unwrap_or("-"));
    kv(&mut s, "reason", d.reason.as_str());
    // The rule that decided: `<path> "<text>"`, or `-`.
    s.push_str(" rule=");
    match d.rule.and_then(|r| policy.rule(r)) {
        Some(r) => {
            s.push_str(&r.path);
            s.push_str(" \"");
            s.push_str(&r.text);
            s.push('"');
        }
        None => s.push('-'),
    }
    s
}

/// ` key=value`.
fn kv(s: &mut String, key: &str, value: &str) {
    s.push(' ');
    s.push_str(key);
    s.push('=');
    s.push_str(value);
}

/// The caller as the destination end knows it: `spiffe://cluster.local/ns/uat/sa/default
/// (tenant uat)`, or `(no client certificate)`.
pub fn describe_caller(policy: &Policy, d: &Decision, peer: Option<&[u8]>) -> String {
    let Some(peer) = peer else {
        return "(no client certificate)".to_owned();
    };
    let mut s = String::from_utf8_lossy(peer).into_owned();
    if let Some(t) = d.tenant.and_then(|t| policy.tenant_name(t)) {
        s.push_str(" (tenant ");
        s.push_str(t);
        s.push(')');
    }
    s
}

/// The reply for a request the destination end blocks: who called, what, why; `denyBody` as
/// at the caller's end ([`reply`]), the explain command being `explain --at destination`.
pub fn inbound_deny_reply(
    policy: &Policy,
    d: &Decision,
    req: &Inbound<'_>,
    cluster: Option<&str>,
) -> LocalReply {
    let mut head = String::from("caller: ");
    head.push_str(&describe_caller(policy, d, req.peer));
    head.push_str("\ndestination: ");
    head.push_str(&describe_destination(d, cluster));
    head.push_str(", workload in namespace ");
    head.push_str(req.namespace.unwrap_or("(unknown)"));
    let caller_ns = req
        .peer
        .and_then(|p| parse_spiffe(p).ok())
        .map(|id| id.namespace);
    reply(
        policy,
        d,
        head,
        caller_ns,
        " (decided at the destination)",
        "at destination caller=",
        &|cmd| {
            cmd.push_str(" --at destination");
            arg(cmd, "destination-namespace", req.namespace, "");
            arg(cmd, "caller", req.peer.and_then(pasteable), "");
            arg(cmd, "sni", req.sni.and_then(pasteable), "");
            for s in req.services {
                arg(cmd, "service", Some(s), "");
            }
            arg(cmd, "authority", req.authority.and_then(pasteable), "");
        },
    )
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
    let mut s = String::from(verb);
    kv(
        &mut s,
        "at destination caller",
        &peer.map_or_else(|| "-".into(), String::from_utf8_lossy),
    );
    line(
        s,
        policy,
        d,
        d.tenant,
        Some(local.namespace().unwrap_or("-")),
        cluster,
    )
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

    /// The destination end's reply honours `denyBody` exactly as the caller's end: `full` names
    /// the rule, `terse` says what the caller sent and where the detail is, with an `explain
    /// --at destination` command that reproduces the decision.
    #[test]
    fn the_destination_reply_honours_deny_body_as_the_callers_end() {
        let db = ["cockroachdb.uat.svc.cluster.local"];
        let req = Inbound {
            namespace: Some("uat"),
            peer: Some(b"spiffe://cluster.local/ns/prod/sa/batman"),
            sni: Some(b"outbound_.26257_._.cockroachdb.uat.svc.cluster.local"),
            authority: Some(b"cockroachdb.uat:26257"),
            services: &db,
            ..Inbound::default()
        };
        let cluster = Some("inbound|26257||");
        let terse = policy_with("terse");
        let d = terse.decide_inbound(&req);
        assert_eq!(d.reason.as_str(), "not-allowed");
        let r = inbound_deny_reply(&terse, &d, &req, cluster);
        assert_eq!((r.status, r.reason), (451, "not-allowed"));
        assert_eq!(
            r.body,
            "tenant-egress: request denied (not-allowed)\n\
             caller: spiffe://cluster.local/ns/prod/sa/batman (tenant prod)\n\
             destination: cockroachdb.uat.svc.cluster.local:26257 (namespace uat) via inbound|26257||, \
             workload in namespace uat\n\
             why: the egress policy of this namespace does not allow this destination \
             (decided at the destination)\n\
             detail: in the proxy log (\"denied at destination caller=...\"), or run: \
             tenant-egress explain POLICY --at destination --destination-namespace uat \
             --caller spiffe://cluster.local/ns/prod/sa/batman \
             --sni outbound_.26257_._.cockroachdb.uat.svc.cluster.local \
             --service cockroachdb.uat.svc.cluster.local --authority cockroachdb.uat:26257\n"
        );
        // The caller's end, same policy and request: the same `why`, the same shape.
        let src = terse.source_as(
            &Source {
                namespace: Some("prod"),
                labels: &[],
            },
            Some("batman"),
        );
        let caller_d = terse.decide_for(
            &src,
            &Target {
                authority: Some(b"cockroachdb.uat:26257"),
                cluster: Some("outbound|26257||cockroachdb.uat.svc.cluster.local"),
                ..Target::default()
            },
        );
        let caller = deny_reply(&terse, &caller_d, &src, None).body;
        assert!(
            caller.contains(
                "\nwhy: the egress policy of this namespace does not allow this destination\n"
            ),
            "{caller}"
        );
        // full: the rule to change, no command.
        let full = policy_with("full");
        let d = full.decide_inbound(&req);
        let body = inbound_deny_reply(&full, &d, &req, cluster).body;
        assert!(
            body.ends_with(
                "\nwhy: no host of tenants[0].egress[0] (all ports) imports \
                 cockroachdb.uat.svc.cluster.local:26257 for tenant prod; add \
                 \"uat/cockroachdb.uat.svc.cluster.local\" to tenants[0].egress[0].hosts \
                 (decided at the destination)\n"
            ),
            "{body}"
        );
        assert!(!body.contains("detail:"), "{body}");
        // A caller-chosen value with shell metacharacters never enters the command.
        let odd = Inbound {
            authority: Some(b"cockroachdb.uat:26257;id"),
            ..req
        };
        let d = terse.decide_inbound(&odd);
        let body = inbound_deny_reply(&terse, &d, &odd, cluster).body;
        assert!(!body.contains(";id"), "{body}");
        let v6 = Inbound {
            authority: Some(b"[fd00::1]:26257"),
            ..req
        };
        let d = terse.decide_inbound(&v6);
        let body = inbound_deny_reply(&terse, &d, &v6, cluster).body;
        assert!(!body.contains("--authority"), "{body}");
        assert!(
            body.contains("--service cockroachdb.uat.svc.cluster.local\n"),
            "{body}"
        );
        assert!(body.contains("--sni outbound_.26257_"), "{body}");
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
