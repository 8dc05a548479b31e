// Under wasm32 these run through wasm-bindgen-test (scripts/test-wasm.sh): every `#[test]`
// here becomes a `#[wasm_bindgen_test]` there.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

use super::*;

fn errors(v: Value) -> Vec<ValidationError> {
    match validate_value(v) {
        Ok(_) => panic!("document unexpectedly valid"),
        Err(e) => e.errors,
    }
}

/// The warnings of a document whose other namespaces are all declared shared: most tests here
/// are about other warnings than the typo one ([`warn_unowned_namespaces`]).
fn warnings(mut v: Value) -> Vec<Warning> {
    if let Ok((spec, _)) = validate_value(v.clone()) {
        let shared: Vec<String> = unowned_namespaces(&spec).into_keys().collect();
        if let Some(o) = v.as_object_mut() {
            o.insert("sharedNamespaces".into(), json!(shared));
        }
    }
    match validate_value(v) {
        Ok((_, w)) => w,
        Err(e) => panic!("document unexpectedly invalid: {e}"),
    }
}

fn tenant(egress: Value) -> Value {
    json!({"apiVersion": "tenant-egress/v1",
           "tenants": [{"name": "t", "namespaces": ["t"], "egress": egress}]})
}

#[test]
fn minimal_document_gets_safe_defaults() {
    let (spec, w) = validate_value(json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "prod", "namespaces": ["prod"]}]
    }))
    .unwrap();
    assert_eq!(spec.mode, crate::spec::Mode::Enforce);
    assert_eq!(spec.cluster_domain, "cluster.local");
    assert_eq!(spec.unknown_source, crate::spec::UnknownSource::Deny);
    assert_eq!(spec.deny_status, 403);
    assert_eq!(
        spec.tenants[0].outbound_traffic_policy,
        crate::spec::OutboundTrafficPolicy::RegistryOnly
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].message.contains("reach nothing"));
}

#[test]
fn unknown_fields_are_all_listed_with_their_place() {
    let e = errors(json!({
        "apiVersion": "tenant-egress/v1", "mdoe": "audit",
        "tenants": [{"name": "t", "namespaces": ["t"], "egres": [],
                     "egress": [{"hosts": ["./*"], "prot": {"number": 1}}],
                     "workloads": [{"name": "w", "selector": {"a": "b"}, "egress": [{"hosts": ["./*"], "x": 1}]}]}]
    }));
    let got: Vec<(String, String)> = e
        .iter()
        .map(|e| match &e.kind {
            ErrorKind::UnknownField { field, .. } => (e.path.clone(), field.clone()),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("(document)".into(), "mdoe".into()),
            ("tenants[0]".into(), "egres".into()),
            ("tenants[0].egress[0]".into(), "prot".into()),
            ("tenants[0].workloads[0].egress[0]".into(), "x".into()),
        ]
    );
    assert!(e[0]
        .to_string()
        .contains("expected one of: apiVersion, mode"));
}

#[test]
fn missing_required_fields() {
    let e = errors(json!({"tenants": [{"namespaces": ["a"]}]}));
    let kinds: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        kinds,
        vec![
            "(document): missing required field \"apiVersion\"",
            "tenants[0]: missing required field \"name\""
        ]
    );
}

#[test]
fn every_type_error_is_listed() {
    let e = errors(
        json!({"apiVersion": 1, "mode": "block", "denyStatus": 403.5,
                          "tenants": [{"name": "t", "namespaces": "t",
                                       "egress": [{"hosts": ["./*", 7], "port": {"number": "80"}}],
                                       "workloads": [{"name": "w", "selector": {"app": 1}}]},
                                      "not-a-tenant"]}),
    );
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        text,
        vec![
            "apiVersion: expected a string, found an integer",
            "mode: \"block\" is not one of: enforce, audit",
            "denyStatus: expected an integer, found a number",
            "tenants[0].namespaces: expected a list of strings, found a string",
            "tenants[0].egress[0].port.number: expected an integer, found a string",
            "tenants[0].egress[0].hosts[1]: expected a string, found an integer",
            "tenants[0].workloads[0].selector.app: expected a string (quote numbers and booleans), found an integer",
            "tenants[1]: expected a mapping, found a string",
        ]
    );
}

#[test]
fn type_errors_name_their_path() {
    let e = errors(json!({"apiVersion": "tenant-egress/v1", "mode": "block",
                          "tenants": []}));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "mode");
    assert!(e[0].to_string().contains("enforce"), "{}", e[0]);
    let e = errors(json!({"apiVersion": "tenant-egress/v1",
                          "tenants": [{"name": "t", "namespaces": "t"}]}));
    assert_eq!(e[0].path, "tenants[0].namespaces");
}

#[test]
fn every_semantic_error_is_collected() {
    let e = errors(json!({
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
    }));
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    let has = |path: &str, needle: &str| {
        assert!(
            text.iter()
                .any(|t| t.starts_with(&format!("{path}: ")) && t.contains(needle)),
            "no error at {path} containing {needle:?} in:\n{}",
            text.join("\n")
        )
    };
    has("apiVersion", "tenant-egress/v1");
    has("clusterDomain", "empty label");
    has("denyStatus", "400..=599");
    has("tenants[0].name", "\"Prod\"");
    has("tenants[0].namespaces[1]", "bad_ns");
    has("tenants[0].egress[0].hosts[0]", "namespace/dnsName");
    has("tenants[0].egress[0].hosts[1]", "short name");
    has("tenants[0].egress[0].hosts[2]", "left-most");
    has("tenants[0].egress[0].hosts[3]", "left-most");
    has("tenants[0].egress[0].hosts[4]", "IP address");
    has("tenants[0].egress[0].hosts[5]", "at most 63");
    has("tenants[0].egress[0].hosts[6]", "at most 253");
    has("tenants[0].egress[1].port.number", "outside 1..65535");
    has("tenants[0].egress[2].port.protocol", "QUIC");
    has("tenants[0].egress[2].hosts", "at least one host");
    has(
        "tenants[0].egress[3].port.number",
        "already used by tenants[0].egress[2]",
    );
    has("tenants[0].egress[4]", "second egress entry without a port");
    has("tenants[0].workloads[0].selector", "empty");
    has(
        "tenants[0].workloads[1].name",
        "already used by tenants[0].workloads[0].name",
    );
    has(
        "tenants[0].workloads[2].selector",
        "tenants[0].workloads[1].selector",
    );
    has("tenants[0].workloads[3].selector", "bad key!");
    has("tenants[0].workloads[3].selector.k", "start and end");
    has(
        "tenants[1].namespaces[0]",
        "already claimed by tenants[0].namespaces[0]",
    );
    has("tenants[2].name", "already used by tenants[1].name");
    has("tenants[2].namespaces", "at least one namespace");
    assert_eq!(text.len(), 25, "{}", text.join("\n"));
}

#[test]
fn duplicates_and_shadows_are_warnings() {
    let w = warnings(tenant(json!([{"hosts": [
        "test/*", "test/a.com", "./*", "./*", "*/*.foo.com", "ns/a.b.foo.com", "*/*.b.foo.com",
        "*/x.example.com", "ns/x.example.com", "~test/*"
    ]}])));
    let text: Vec<String> = w.iter().map(|w| w.to_string()).collect();
    let has = |path: &str, needle: &str| {
        assert!(
            text.iter()
                .any(|t| t.starts_with(&format!("{path}: ")) && t.contains(needle)),
            "no warning at {path} containing {needle:?} in:\n{}",
            text.join("\n")
        )
    };
    has("tenants[0].egress[0].hosts[1]", "covered by \"test/*\"");
    has(
        "tenants[0].egress[0].hosts[3]",
        "duplicates tenants[0].egress[0].hosts[2]",
    );
    has(
        "tenants[0].egress[0].hosts[5]",
        "covered by \"*/*.b.foo.com\"",
    );
    has(
        "tenants[0].egress[0].hosts[6]",
        "covered by \"*/*.foo.com\"",
    );
    has(
        "tenants[0].egress[0].hosts[8]",
        "covered by \"*/x.example.com\"",
    );
    // The exclusion is not an import, and `./*` duplicates are reported once.
    assert_eq!(text.len(), 5, "{}", text.join("\n"));
}

#[test]
fn star_star_with_others_is_one_warning() {
    let w = warnings(tenant(json!([{"hosts": ["*/*", "a/*", "b/x.y.com"]}])));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].message.contains("other 2 entries"));
}

#[test]
fn port_listener_next_to_catch_all_warns() {
    let w = warnings(tenant(json!([
        {"hosts": ["./*"]},
        {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["*/db.shared.svc.cluster.local"]}
    ])));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "tenants[0].egress[1]");
    assert!(w[0]
        .message
        .contains("on port 26257 only this entry's hosts apply"));
}

#[test]
fn non_overlapping_selectors_are_fine() {
    let (_, w) = validate_value(json!({
        "apiVersion": "tenant-egress/v1",
        "sharedNamespaces": ["x", "y"],
        "tenants": [{"name": "t", "namespaces": ["t"], "egress": [{"hosts": ["./*"]}],
                     "workloads": [
                        {"name": "a", "selector": {"app": "a"}, "egress": [{"hosts": ["x/*"]}]},
                        {"name": "b", "selector": {"app": "b", "tier": "web"}, "egress": [{"hosts": ["y/*"]}]}]}]
    }))
    .unwrap();
    // Only the destination end's note on label-only exceptions, one each.
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter().all(|w| w.message.contains("by labels only")),
        "{w:?}"
    );
}

#[test]
fn syntax_errors_are_reported_not_panicked() {
    let e = validate_json(b"{\"apiVersion\": ").unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(e.errors[0].to_string().contains("not valid JSON"));
    let e = validate_json(b"[1, 2]").unwrap_err();
    assert_eq!(
        e.errors[0].to_string(),
        "(document): expected a mapping, found a list"
    );
}

#[test]
fn large_listener_shadow_check() {
    // 100,000 exact hosts plus one wildcard (the check is hash-based, not pairwise).
    let mut hosts: Vec<String> = (0..100_000)
        .map(|i| format!("ns{}/svc{i}.example.com", i % 100))
        .collect();
    hosts.push("*/*.example.com".into());
    // Every exact host is reported as covered by the wildcard, exactly once.
    let w = warnings(tenant(json!([{ "hosts": hosts }])));
    assert_eq!(w.len(), 100_000);
    assert!(w.iter().all(|w| w.message.contains("*/*.example.com")));
}

#[test]
fn unknown_fields_do_not_hide_other_errors() {
    let e = errors(json!({
        "apiVersion": "tenant-egress/v1",
        "tenants": [{"name": "t", "namespaces": ["t"], "egres": [],
                     "egress": [{"hosts": ["nonsense"]}]}]
    }));
    let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text[0].starts_with("tenants[0]: unknown field \"egres\""));
    assert!(text[1].starts_with("tenants[0].egress[0].hosts[0]: \"nonsense\""));
}

fn with_exception(tenant_egress: Value, exception_egress: Value) -> Value {
    json!({"apiVersion": "tenant-egress/v1",
           "tenants": [{"name": "prod", "namespaces": ["prod"], "egress": tenant_egress,
                        "workloads": [{"name": "batman", "selector": {"app": "batman"},
                                       "egress": exception_egress}]}]})
}

#[test]
fn an_exception_redeclaring_a_port_with_another_protocol_is_refused() {
    // The policy: the exception's pods would lose TCP to prod's database.
    let e = errors(with_exception(
        json!([
            {"port": {"number": 26257, "protocol": "TCP", "name": "crdb"}, "hosts": ["./*"]},
            {"hosts": ["./*", "istio-system/*"]}
        ]),
        json!([{"port": {"number": 26257, "protocol": "HTTP", "name": "http-crdb"}, "hosts": ["logmonkey/*"]}]),
    ));
    let text: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "tenants[0].workloads[0].egress[0].port: port 26257 is declared TCP by the tenant \
             (tenants[0].egress[0]) and HTTP here; a workload exception must use the tenant's \
             protocol, or omit it"
        ]
    );
    // The tenant's protocol, or none, is fine.
    for port in [
        json!({"number": 26257, "protocol": "TCP"}),
        json!({"number": 26257}),
    ] {
        validate_value(with_exception(
            json!([{"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./*"]}, {"hosts": ["./*"]}]),
            json!([{"port": port, "hosts": ["logmonkey/*"]}]),
        ))
        .unwrap();
    }
    // A tenant port declared without a protocol must stay so.
    let e = errors(with_exception(
        json!([{"port": {"number": 8080}, "hosts": ["./*"]}]),
        json!([{"port": {"number": 8080, "protocol": "GRPC"}, "hosts": ["x/*"]}]),
    ));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].to_string().contains(
            "declared without a protocol by the tenant (tenants[0].egress[0]) and GRPC here"
        ),
        "{}",
        e[0]
    );
}

#[test]
fn an_exception_may_not_close_a_catch_all_port_to_tcp() {
    let tenant = json!([{"hosts": ["./*"]}]);
    let e = errors(with_exception(
        tenant.clone(),
        json!([{"port": {"number": 9200, "protocol": "HTTP"}, "hosts": ["logging/*"]}]),
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "tenants[0].workloads[0].egress[0].port.protocol");
    let msg = e[0].to_string();
    assert!(msg.contains("port 9200 is not declared by the tenant, so its catch-all (tenants[0].egress[0]) serves it to TCP"), "{msg}");
    assert!(msg.contains("Omit the protocol"), "{msg}");
    // TCP-capable protocols, or none, keep what the catch-all gave.
    for proto in [json!("TCP"), json!("TLS"), json!("HTTPS"), json!("MONGO")] {
        validate_value(with_exception(
            tenant.clone(),
            json!([{"port": {"number": 9200, "protocol": proto}, "hosts": ["logging/*"]}]),
        ))
        .unwrap();
    }
    // Without a tenant catch-all the port served nothing: any protocol adds.
    validate_value(with_exception(
        json!([{"port": {"number": 80, "protocol": "HTTP"}, "hosts": ["./*"]}]),
        json!([{"port": {"number": 9200, "protocol": "HTTP"}, "hosts": ["logging/*"]}]),
    ))
    .unwrap();
}

#[test]
fn exclusions_in_an_exception_are_refused() {
    let e = errors(with_exception(
        json!([{"hosts": ["./*", "*/*.example.com"]}]),
        json!([{"hosts": ["x/*", "~/secret.example.com"]}]),
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "tenants[0].workloads[0].egress[0].hosts[1]");
    assert!(
        e[0].to_string().contains("a workload exception only adds"),
        "{}",
        e[0]
    );
    // In the tenant's egress an exclusion is fine.
    validate_value(with_exception(
        json!([{"hosts": ["./*", "*/*.example.com", "~/secret.example.com"]}]),
        json!([{"hosts": ["x/*"]}]),
    ))
    .unwrap();
}

#[test]
fn protocols_are_typed_and_http_proxy_is_refused() {
    let e = errors(tenant(json!([
        {"port": {"number": 80, "protocol": "HTTP_PROXY"}, "hosts": ["./*"]},
        {"port": {"number": 81, "protocol": "http"}, "hosts": ["./*"]},
        {"port": {"number": 82, "protocol": 7}, "hosts": ["./*"]}
    ])));
    let text: Vec<String> = e.iter().map(ToString::to_string).collect();
    // A wrongly typed protocol stops the later passes (like every type error).
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text[0]
        .starts_with("tenants[0].egress[1].port.protocol: protocol \"http\" is not one of HTTP"));
    assert_eq!(
        text[1],
        "tenants[0].egress[2].port.protocol: expected a string, found an integer"
    );
    let e = errors(tenant(json!([
        {"port": {"number": 80, "protocol": "HTTP_PROXY"}, "hosts": ["./*"]},
        {"port": {"number": 81, "protocol": "QUIC"}, "hosts": ["nonsense"]}
    ])));
    let text: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:?}");
    assert!(text[0].starts_with("tenants[0].egress[1].port.protocol: protocol \"QUIC\""));
    assert!(text[1].starts_with(
        "tenants[0].egress[0].port.protocol: protocol HTTP_PROXY is Istio's explicit HTTP proxy"
    ));
    assert!(text[2].starts_with("tenants[0].egress[1].hosts[0]: \"nonsense\""));
}

#[test]
fn own_namespace_covers_as_istio_says_for_one_namespace_only() {
    let doc = |namespaces: Value, hosts: Value| {
        json!({"apiVersion": "tenant-egress/v1",
               "tenants": [{"name": "bar", "namespaces": namespaces, "egress": [{"hosts": hosts}]}]})
    };
    let w = warnings(doc(json!(["bar"]), json!(["./*", "bar/a.com"])));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        w[0].to_string(),
        "tenants[0].egress[0].hosts[1]: \"bar/a.com\" is already covered by \"./*\" (tenants[0].egress[0].hosts[0])"
    );
    // `./*` and `bar/*` are the same for this tenant: the later one is reported, once.
    let w = warnings(doc(json!(["bar"]), json!(["./*", "bar/*"])));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "tenants[0].egress[0].hosts[1]");
    let w = warnings(doc(json!(["bar"]), json!(["bar/a.com", "./*"])));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "tenants[0].egress[0].hosts[0]");
    // For a tenant with several namespaces `.` is a different one in each: nothing is covered
    // in every namespace.
    assert!(warnings(doc(json!(["bar", "baz"]), json!(["./*", "bar/a.com"]))).is_empty());
    assert!(warnings(doc(json!(["bar", "baz"]), json!(["./*", "bar/*"]))).is_empty());
    // `*/...` covers in every namespace.
    let w = warnings(doc(
        json!(["bar", "baz"]),
        json!(["*/*.a.com", "./x.a.com"]),
    ));
    assert_eq!(w.len(), 1, "{w:?}");
}

#[test]
fn the_port_warning_appears_only_when_a_host_is_lost() {
    // Everything the catch-all reaches is repeated on the port: nothing to say.
    assert!(warnings(tenant(json!([
        {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./*", "istio-system/*", "*/db.shared.svc.cluster.local"]},
        {"hosts": ["./*", "istio-system/*"]},
    ])))
    .is_empty());
    // Covered, not repeated literally: `*/*.example.com` covers `*/api.example.com`.
    assert!(warnings(tenant(json!([
        {"port": {"number": 443, "protocol": "TLS"}, "hosts": ["*/*.example.com", "t/*"]},
        {"hosts": ["*/api.example.com", "./*"]},
    ])))
    .is_empty());
    // Lost: only the lost hosts are named.
    let w = warnings(tenant(json!([
        {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./*"]},
        {"hosts": ["./*", "istio-system/*", "~/evil.example.com"]},
    ])));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "tenants[0].egress[0]");
    assert!(
        w[0].message
            .contains("so \"istio-system/*\" cannot be reached on port 26257"),
        "{}",
        w[0]
    );
    // In an exception, the tenant's hosts on the port count, and the tenant's own loss is
    // reported once, on the tenant.
    let w = warnings(with_exception(
        json!([{"port": {"number": 9090}, "hosts": ["./*"]}, {"hosts": ["./*", "istio-system/*"]}]),
        json!([{"port": {"number": 9090}, "hosts": ["monitoring/*"]}, {"hosts": ["logs/*", "./*"]}]),
    ));
    // (Leaving out the destination end's note on a label-only exception.)
    let text: Vec<String> = w
        .iter()
        .filter(|w| !w.message.contains("by labels only"))
        .map(ToString::to_string)
        .collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text[0].starts_with("tenants[0].egress[0]: on port 9090 only this entry's hosts apply"));
    assert!(
        text[0].contains("so \"istio-system/*\" cannot"),
        "{}",
        text[0]
    );
    assert!(text[1].starts_with("tenants[0].workloads[0].egress[0]: on port 9090 only this entry's hosts (and the tenant's for port 9090) apply"));
    assert!(text[1].contains("so \"logs/*\" cannot"), "{}", text[1]);
}

#[test]
fn exception_errors_come_in_document_order() {
    let e = errors(with_exception(
        json!([{"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./*"]}, {"hosts": ["./*"]}]),
        json!([
            {"port": {"number": 26257, "protocol": "HTTP"}, "hosts": ["x/*"]},
            {"port": {"number": 9200, "protocol": "GRPC"}, "hosts": ["~/y.example.com"]},
        ]),
    ));
    let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "tenants[0].workloads[0].egress[0].port",
            "tenants[0].workloads[0].egress[1].port.protocol",
            "tenants[0].workloads[0].egress[1].hosts[0]",
        ]
    );
}

#[test]
fn unowned_namespaces_are_likely_typos_grouped_per_namespace() {
    let doc = |shared: Value| {
        json!({"apiVersion": "tenant-egress/v1", "sharedNamespaces": shared,
               "tenants": [
                 {"name": "prod", "namespaces": ["prod"],
                  "egress": [{"hosts": ["./*", "istio-sytem/*", "logmonkey/*"]}]},
                 {"name": "uat", "namespaces": ["uat"],
                  "egress": [{"hosts": ["./*", "istio-sytem/*", "*/db.logmonkey.svc.cluster.local"]}],
                  "workloads": [{"name": "w", "selector": {"app": "w"},
                                 "egress": [{"hosts": ["istio-sytem/x.istio-sytem.svc.cluster.local"]}]}]}]})
    };
    let (spec, w) = validate_value(doc(json!(["istio-system"]))).unwrap();
    // Not among the warnings every load computes (the filter's): the CLI adds them.
    assert!(
        w.iter().all(|w| !w.message.contains("sharedNamespaces")),
        "{w:?}"
    );
    let w = lint(&spec);
    let texts: Vec<String> = w.iter().map(ToString::to_string).collect();
    // One warning per namespace, at its first place, naming the others and the likely name.
    assert_eq!(
        texts,
        [
            "tenants[0].egress[0].hosts[1]: namespace \"istio-sytem\" is owned by no tenant and not declared \
             in sharedNamespaces: did you mean \"istio-system\"? If it is shared on purpose, add it \
             to sharedNamespaces; also named at tenants[1].egress[0].hosts[1], \
             tenants[1].workloads[0].egress[0].hosts[0]",
            "tenants[0].egress[0].hosts[2]: namespace \"logmonkey\" is owned by no tenant and not declared in \
             sharedNamespaces: a typo? If it is shared on purpose, add it to sharedNamespaces; also named at \
             tenants[1].egress[0].hosts[2]",
        ],
        "{texts:#?}"
    );
    // Declared shared: silent. A shared namespace a tenant owns is pointless; a bad one an error.
    let (_, w) = validate_value(doc(json!([
        "istio-system",
        "istio-sytem",
        "logmonkey",
        "prod"
    ])))
    .unwrap();
    // (Beside the two-ends note on the label-only exception, which is not about namespaces.)
    let w: Vec<_> = w
        .into_iter()
        .filter(|w| !w.message.starts_with("an exception by labels only"))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "sharedNamespaces[3]");
    assert!(w[0]
        .message
        .contains("owned by a tenant (tenants[0].namespaces[0])"));
    let e = errors(doc(json!(["Istio"])));
    assert_eq!(e[0].path, "sharedNamespaces[0]");
}

#[test]
fn an_fqdn_in_another_namespace_than_its_prefix_never_matches() {
    let (spec, _) = validate_value(json!({
        "apiVersion": "tenant-egress/v1", "sharedNamespaces": ["logmonkey", "logmonky", "c"],
        "tenants": [{"name": "a", "namespaces": ["a", "b"], "egress": [{"hosts": [
            "logmonkey/logcatcher.logmonky.svc.cluster.local",
            "logmonkey/logcatcher.logmonkey.svc.cluster.local",
            "./db.c.svc.cluster.local",
            "./db.b.svc.cluster.local",
            "*/db.logmonky.svc.cluster.local",
            "logmonkey/api.example.com"
        ]}]}]
    }))
    .unwrap();
    let w = lint(&spec);
    let texts: Vec<String> = w.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        [
            "tenants[0].egress[0].hosts[0]: \"logmonkey/logcatcher.logmonky.svc.cluster.local\" names a \
             service of namespace \"logmonky\", but its prefix selects namespace \"logmonkey\": Istio looks \
             the host up only there, so it never matches. One of the two is a typo",
            "tenants[0].egress[0].hosts[2]: \"./db.c.svc.cluster.local\" names a service of namespace \"c\", \
             but its prefix selects namespaces a, b: Istio looks the host up only there, so it never \
             matches. One of the two is a typo",
        ],
        "{texts:#?}"
    );
}

/// Pass 2's hand-written decoder (validate/decode.rs) against serde's derived one, on
/// documents that use every field, every enum value and every default.
#[test]
fn decode_matches_serde() {
    let mut docs = vec![
        json!({"apiVersion": API_VERSION, "tenants": []}),
        json!({
            "apiVersion": API_VERSION, "mode": "audit", "clusterDomain": "corp.example",
            "unknownSource": "allow", "denyStatus": 451, "gateways": "enforce",
            "denyBody": "full", "sharedNamespaces": ["istio-system", "logs"],
            "trustDomains": ["cluster.local", "old.example"],
            "clusterNetworks": ["10.96.0.0/12", "fd00::/8"],
            "tenants": [{
                "name": "a", "namespaces": ["a1", "a2"], "mode": "enforce",
                "outboundTrafficPolicy": "ALLOW_ANY",
                "egress": [
                    {"hosts": ["./*", "~/x.example.com"]},
                    {"port": {"number": 8080, "protocol": "HTTP", "name": "web"}, "hosts": ["b/*"]},
                    {"port": {"number": 9000}, "hosts": ["*/svc.b.svc.cluster.local"]}
                ],
                "workloads": [{
                    "name": "w", "selector": {"app": "x", "tier": "y"},
                    "egress": [{"port": {"number": 443, "protocol": "TLS"}, "hosts": ["*/*.example.com"]}]
                }]
            }, {
                "name": "b", "namespaces": ["b"], "mode": "audit",
                "outboundTrafficPolicy": "REGISTRY_ONLY", "egress": [],
                "workloads": [{"name": "v", "selector": {"k": ""}},
                              {"name": "sa", "serviceAccounts": ["batman"]}],
                "inbound": [{"namespace": "istio-system", "serviceAccounts": ["ingress"]},
                            {"namespace": "monitoring"}]
            }]
        }),
        json!({"apiVersion": API_VERSION, "unknownSource": "deny", "gateways": "passthrough",
               "denyBody": "terse",
               "tenants": [{"name": "c", "namespaces": ["c"]}]}),
        // The sharded distribution's fields (`crate::shard`).
        json!({"apiVersion": API_VERSION, "tenants": [],
               "delegatedNamespaces": ["p1", "p2"]}),
        json!({"apiVersion": API_VERSION, "tenants": [{"name": "c", "namespaces": ["c"]}],
               "knownNamespaces": "d e"}),
    ];
    let file: crate::vectors::VectorFile =
        serde_json::from_str(crate::vectors::VECTORS_JSON).unwrap();
    docs.extend(file.policies.into_values());
    for doc in docs {
        let by_serde: PolicySpec = serde_json::from_value(doc.clone()).unwrap();
        let by_hand = decode::policy(doc).expect("decodes");
        assert_eq!(by_hand, by_serde);
    }
}

/// A shape pass 1 lets through only by a bug is an error, never a panic.
#[test]
fn decode_refuses_what_it_cannot_read() {
    assert_eq!(
        decode::policy(json!({"apiVersion": 1, "tenants": []})),
        None
    );
    assert_eq!(decode::policy(json!({"apiVersion": API_VERSION})), None);
    assert_eq!(decode::policy(json!([])), None);
}

/// The sharded distribution's fields: `delegatedNamespaces` lists namespace names no tenant of
/// the document owns; `knownNamespaces` is one string of namespace names separated by single
/// spaces.
#[test]
fn shard_fields_name_namespaces() {
    let paths = |v: Value| -> Vec<String> {
        errors(v)
            .iter()
            .map(|e| format!("{}: {}", e.path, e.kind))
            .collect()
    };
    let (spec, _) = validate_value(json!({"apiVersion": API_VERSION, "tenants": [],
        "delegatedNamespaces": ["p1"], "knownNamespaces": "a b-2 c"}))
    .unwrap();
    assert_eq!(spec.known_namespaces, "a b-2 c");
    let got = paths(json!({"apiVersion": API_VERSION,
        "tenants": [{"name": "p", "namespaces": ["p1"], "egress": [{"hosts": ["./*"]}]}],
        "delegatedNamespaces": ["p1", "Bad"], "knownNamespaces": "a  B"}));
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[0].starts_with("delegatedNamespaces[0]: namespace \"p1\" is delegated"),
        "{got:#?}"
    );
    assert!(got[1].starts_with("delegatedNamespaces[1]:"), "{got:#?}");
    assert!(got[2].starts_with("knownNamespaces:"), "{got:#?}");
    assert!(
        got[3].starts_with("knownNamespaces:") && got[3].contains("\"B\""),
        "{got:#?}"
    );
}

/// The destination shard's fields: `destinationShard` names a namespace the document's tenants
/// own; only there may an egress entry have no hosts; `tenantDirectory` needs it, parses, and
/// agrees with the tenants listed in full; `serves` entries are DNS names or wildcards.
#[test]
fn destination_shard_fields_are_checked() {
    let paths = |v: Value| -> Vec<String> {
        errors(v)
            .iter()
            .map(|e| format!("{}: {}", e.path, e.kind))
            .collect()
    };
    let p = json!({"name": "p", "namespaces": ["p1"], "egress": [{"hosts": []}],
                   "serves": ["db.example.com", "*.example.org"]});
    // A valid destination shard: empty hosts, a directory naming p and another tenant.
    let ok = json!({"apiVersion": API_VERSION, "tenants": [p], "destinationShard": "p1",
        "tenantDirectory": "p;;p1;* q;audit;q1,q2;5432/TCP,*"});
    let (spec, _) = validate_value(ok.clone()).unwrap();
    let policy = crate::Policy::from_spec(&spec).unwrap();
    assert_eq!(
        policy.tenant_name(1),
        Some("q"),
        "the directory's own tenant is compiled"
    );
    // Without destinationShard: no empty hosts, no directory.
    let mut plain = ok.clone();
    plain.as_object_mut().unwrap().remove("destinationShard");
    let got = paths(plain);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("tenants[0].egress[0].hosts: hosts is empty"),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with("tenantDirectory: is set without destinationShard"),
        "{got:#?}"
    );
    // An unowned shard namespace, a bad record, a bad serves entry.
    let mut bad = ok.clone();
    bad["destinationShard"] = json!("q1");
    bad["tenantDirectory"] = json!("p;;p1;* q;sometimes;q1;*");
    bad["tenants"][0]["serves"] = json!(["10.0.0.1", "a.*.example.com"]);
    let got = paths(bad);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[0].starts_with("tenants[0].serves[0]: serves \"10.0.0.1\""),
        "{got:#?}"
    );
    assert!(got[1].starts_with("tenants[0].serves[1]:"), "{got:#?}");
    assert!(
        got[2].contains("namespace \"q1\" is this destination shard's"),
        "{got:#?}"
    );
    assert!(
        got[3].starts_with("tenantDirectory: record 1 (\"q;sometimes;q1;*\") has a mode"),
        "{got:#?}"
    );
    // A namespace of two tenants: twice in the directory, or of another full tenant.
    let mut contra = ok;
    contra["tenantDirectory"] = json!("p;;p1;* q;;q1,q1;* r;;p1;*");
    let got = paths(contra);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with(
            "tenantDirectory[1]: namespace \"q1\" is already claimed by tenantDirectory[1]"
        ),
        "{got:#?}"
    );
    assert!(
        got[1].starts_with(
            "tenantDirectory[2]: namespace \"p1\" is already claimed by tenantDirectory[0]"
        ),
        "{got:#?}"
    );
}
