//! Validation: every problem in a policy document, each with its place, the offending value
//! and what would be valid.
//!
//! Three passes, so that one mistake does not hide the others:
//! 1. shape and types: unknown, missing and wrongly typed fields anywhere in the tree, each
//!    with its path (a serde decoder would stop at the first, without a path);
//! 2. the decode into [`PolicySpec`], which cannot fail once pass 1 is clean;
//! 3. meaning: names, hosts, ports, selectors and cross-references, all collected.
//!
//! Mirrors Istio's Sidecar webhook (`pkg/config/validation`): malformed hosts are errors,
//! duplicated or shadowed hosts are warnings. Nothing is silently dropped.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::fmt;

use serde_json::Value;

use crate::name::{self, NameError};
use crate::pattern::{HostEntry, HostEntryError, HostPattern, NsSelector};
use crate::spec::{EgressSpec, PolicySpec, WorkloadSpec, API_VERSION};

mod identity;

/// Where in the document something is (`tenants[1].egress[0].hosts[2]`).
pub type Path = String;

/// A validation error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ValidationError {
    /// The place in the document.
    pub path: Path,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong at a place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A field this version does not know.
    #[error("unknown field \"{field}\"; expected one of: {expected}")]
    UnknownField {
        /// The unknown field.
        field: String,
        /// The fields allowed here.
        expected: String,
    },
    /// A required field is absent.
    #[error("missing required field \"{0}\"")]
    MissingField(&'static str),
    /// The value has the wrong JSON type or cannot be decoded.
    #[error("{0}")]
    Type(String),
    /// Wrong `apiVersion`.
    #[error("apiVersion is \"{0}\"; this build understands \"{API_VERSION}\"")]
    ApiVersion(String),
    /// A bad `hosts` entry.
    #[error("\"{0}\" {1}")]
    Host(String, HostEntryError),
    /// A bad namespace name.
    #[error("namespace \"{0}\" is not a lowercase DNS-1123 label: {1}")]
    Namespace(String, NameError),
    /// A bad tenant/workload/port name.
    #[error(
        "name \"{0}\" is not a lowercase DNS-1123 label (letters, digits, '-', at most 63): {1}"
    )]
    Name(String, NameError),
    /// Name used twice.
    #[error("name \"{0}\" is already used by {1}")]
    DuplicateName(String, Path),
    /// A namespace claimed twice.
    #[error(
        "namespace \"{0}\" is already claimed by {1}; a namespace belongs to at most one tenant"
    )]
    NamespaceClaimed(String, Path),
    /// A tenant without namespaces.
    #[error("a tenant needs at least one namespace")]
    NoNamespaces,
    /// Port out of range.
    #[error("port {0} is outside 1..65535")]
    Port(i64),
    /// Unknown protocol.
    #[error("protocol \"{0}\" is not one of HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS")]
    Protocol(String),
    /// Two listeners on one port.
    #[error("port {0} is already used by {1}; Istio allows one egress listener per port")]
    DuplicatePort(i64, Path),
    /// Two portless listeners.
    #[error("a second egress entry without a port (the first is {0}); Istio allows one catch-all listener")]
    SecondCatchAll(Path),
    /// An egress entry with no hosts.
    #[error(
        "hosts is empty; an egress entry needs at least one host (\"./*\" for the own namespace)"
    )]
    NoHosts,
    /// An empty workload selector without service accounts.
    #[error("selector and serviceAccounts are both empty; it would select every pod (use the tenant's egress for that)")]
    EmptySelector,
    /// A bad service account name.
    #[error("service account \"{0}\" is not a lowercase DNS-1123 subdomain")]
    ServiceAccount(String),
    /// A bad trust domain.
    #[error("trust domain \"{0}\" is not a SPIFFE trust domain (lowercase letters, digits, '.', '-', '_')")]
    TrustDomain(String),
    /// An inbound allowance for a namespace that belongs to a tenant.
    #[error("namespace \"{0}\" belongs to tenant {1}: its callers are decided by that tenant's egress, never admitted by an inbound entry")]
    InboundTenantNamespace(String, String),
    /// A label key/value Kubernetes would refuse.
    #[error("label {0:?} is not a valid Kubernetes label: {1}")]
    Label(String, &'static str),
    /// Two exceptions that can select the same pod.
    #[error("selector {0} can select the same pods as {1} ({2}); Istio leaves which Sidecar applies undefined")]
    OverlappingSelectors(String, Path, String),
    /// `denyStatus` out of range.
    #[error("denyStatus {0} is not an HTTP error status (400..=599)")]
    DenyStatus(u16),
    /// A bad `clusterDomain`.
    #[error("clusterDomain \"{0}\" is not a DNS name: {1}")]
    ClusterDomain(String, NameError),
    /// The document is not UTF-8 JSON at all.
    #[error("{0}")]
    Syntax(String),
}

/// A warning: the document is valid, but probably not what was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The place in the document.
    pub path: Path,
    /// What looks wrong.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A document that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy ({} error{}): {}", errors.len(), if errors.len() == 1 { "" } else { "s" }, first(errors))]
pub struct InvalidPolicy {
    /// Every error found, in document order.
    pub errors: Vec<ValidationError>,
    /// Warnings found on the way (may be incomplete when shape errors stopped the checks).
    pub warnings: Vec<Warning>,
}

fn first(errors: &[ValidationError]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.to_string(),
        [one, ..] => format!("{one} (and {} more)", errors.len() - 1),
    }
}

// === Pass 1: shape and types ===

/// What a field holds. A small schema of the document, so that every unknown field, missing
/// field and wrongly typed value is reported with its place, not just the first one a decoder
/// trips over.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    /// An integer in a range (the range only keeps the later decode total; meaning is checked
    /// in pass 3 with a better message).
    Int(i64, i64),
    Enum(&'static [&'static str]),
    StrList,
    /// A mapping of strings to strings (label selectors).
    StrMap,
    List(&'static Obj),
    Object(&'static Obj),
}

/// Fields of one object: (name, kind, required).
struct Obj(&'static [(&'static str, Kind, bool)]);

static PORT: Obj = Obj(&[
    ("number", Kind::Int(i64::MIN, i64::MAX), true),
    ("protocol", Kind::Str, false),
    ("name", Kind::Str, false),
]);
static EGRESS: Obj = Obj(&[
    ("port", Kind::Object(&PORT), false),
    ("hosts", Kind::StrList, true),
]);
static WORKLOAD: Obj = Obj(&[
    ("name", Kind::Str, true),
    ("selector", Kind::StrMap, false),
    ("serviceAccounts", Kind::StrList, false),
    ("egress", Kind::List(&EGRESS), false),
]);
static INBOUND: Obj = Obj(&[
    ("namespace", Kind::Str, true),
    ("serviceAccounts", Kind::StrList, false),
]);
const MODES: &[&str] = &["enforce", "audit"];
static TENANT: Obj = Obj(&[
    ("name", Kind::Str, true),
    ("namespaces", Kind::StrList, true),
    ("mode", Kind::Enum(MODES), false),
    (
        "outboundTrafficPolicy",
        Kind::Enum(&["REGISTRY_ONLY", "ALLOW_ANY"]),
        false,
    ),
    ("egress", Kind::List(&EGRESS), false),
    ("workloads", Kind::List(&WORKLOAD), false),
    ("inbound", Kind::List(&INBOUND), false),
]);
static POLICY: Obj = Obj(&[
    ("apiVersion", Kind::Str, true),
    ("mode", Kind::Enum(MODES), false),
    ("clusterDomain", Kind::Str, false),
    ("unknownSource", Kind::Enum(&["deny", "allow"]), false),
    ("denyStatus", Kind::Int(0, 65535), false),
    ("tenants", Kind::List(&TENANT), true),
    ("trustDomains", Kind::StrList, false),
]);

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn mismatch(path: &str, expected: &str, v: &Value, errors: &mut Vec<ValidationError>) {
    errors.push(ValidationError {
        path: path.to_owned(),
        kind: ErrorKind::Type(format!("expected {expected}, found {}", type_name(v))),
    });
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Checks one value against its kind, reporting every problem.
fn check_kind(v: &mut Value, kind: Kind, path: &str, errors: &mut Vec<ValidationError>) {
    match kind {
        Kind::Str if !v.is_string() => mismatch(path, "a string", v, errors),
        Kind::Int(lo, hi) => match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => {}
            Some(n) => errors.push(ValidationError {
                path: path.to_owned(),
                kind: ErrorKind::Type(format!("{n} is outside {lo}..={hi}")),
            }),
            None => mismatch(path, "an integer", v, errors),
        },
        Kind::Enum(allowed) => match v.as_str() {
            Some(s) if allowed.contains(&s) => {}
            Some(s) => errors.push(ValidationError {
                path: path.to_owned(),
                kind: ErrorKind::Type(format!("\"{s}\" is not one of: {}", allowed.join(", "))),
            }),
            None => mismatch(path, &format!("one of: {}", allowed.join(", ")), v, errors),
        },
        Kind::StrList => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_string() {
                        mismatch(&format!("{path}[{i}]"), "a string", item, errors);
                    }
                }
            }
            None => mismatch(path, "a list of strings", v, errors),
        },
        Kind::StrMap => match v.as_object() {
            Some(map) => {
                for (k, item) in map {
                    if !item.is_string() {
                        mismatch(
                            &join(path, k),
                            "a string (quote numbers and booleans)",
                            item,
                            errors,
                        );
                    }
                }
            }
            None => mismatch(path, "a mapping of label names to values", v, errors),
        },
        Kind::List(obj) => match v.as_array_mut() {
            Some(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    check_object(item, obj, &format!("{path}[{i}]"), errors);
                }
            }
            None => mismatch(path, "a list", v, errors),
        },
        Kind::Object(obj) => check_object(v, obj, path, errors),
        Kind::Str => {}
    }
}

/// Reports unknown fields (and removes them, so the later passes still see the rest),
/// missing required fields, and the kind of every known field.
fn check_object(v: &mut Value, obj: &Obj, path: &str, errors: &mut Vec<ValidationError>) {
    let place = if path.is_empty() { "(document)" } else { path };
    let Some(map) = v.as_object_mut() else {
        mismatch(place, "a mapping", v, errors);
        return;
    };
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !obj.0.iter().any(|(name, _, _)| name == k))
        .cloned()
        .collect();
    for key in unknown {
        map.remove(&key);
        let expected: Vec<&str> = obj.0.iter().map(|(name, _, _)| *name).collect();
        errors.push(ValidationError {
            path: place.to_owned(),
            kind: ErrorKind::UnknownField {
                field: key,
                expected: expected.join(", "),
            },
        });
    }
    for (name, kind, required) in obj.0 {
        match map.get_mut(*name) {
            Some(value) => check_kind(value, *kind, &join(path, name), errors),
            None if *required => errors.push(ValidationError {
                path: place.to_owned(),
                kind: ErrorKind::MissingField(name),
            }),
            None => {}
        }
    }
}

/// Decodes and validates a document given as a JSON value (YAML callers convert first).
pub fn validate_value(mut v: Value) -> Result<(PolicySpec, Vec<Warning>), InvalidPolicy> {
    // Pass 1 removes the unknown fields it reports, so passes 2 and 3 still see the rest.
    let mut errors = Vec::new();
    check_object(&mut v, &POLICY, "", &mut errors);
    if !errors
        .iter()
        .all(|e| matches!(e.kind, ErrorKind::UnknownField { .. }))
    {
        return Err(InvalidPolicy {
            errors,
            warnings: Vec::new(),
        });
    }
    // Pass 2: the shape is right, so decoding cannot fail; should it, say so rather than panic.
    let spec: PolicySpec = match serde_json::from_value(v) {
        Ok(spec) => spec,
        Err(e) => {
            errors.push(ValidationError {
                path: "(document)".into(),
                kind: ErrorKind::Type(e.to_string()),
            });
            return Err(InvalidPolicy {
                errors,
                warnings: Vec::new(),
            });
        }
    };
    let (meaning, warnings) = check_meaning(&spec);
    errors.extend(meaning);
    if errors.is_empty() {
        Ok((spec, warnings))
    } else {
        Err(InvalidPolicy { errors, warnings })
    }
}

/// Decodes and validates a JSON document.
pub fn validate_json(bytes: &[u8]) -> Result<(PolicySpec, Vec<Warning>), InvalidPolicy> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| InvalidPolicy {
        errors: vec![ValidationError {
            path: "(document)".into(),
            kind: ErrorKind::Syntax(format!("not valid JSON: {e}")),
        }],
        warnings: Vec::new(),
    })?;
    validate_value(v)
}

// === Pass 3: meaning ===

struct Checker {
    errors: Vec<ValidationError>,
    warnings: Vec<Warning>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, kind: ErrorKind) {
        self.errors.push(ValidationError {
            path: path.into(),
            kind,
        });
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Semantic checks on a decoded spec. Returns (errors, warnings).
pub fn check_meaning(spec: &PolicySpec) -> (Vec<ValidationError>, Vec<Warning>) {
    let mut c = Checker {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    if spec.api_version != API_VERSION {
        c.err(
            "apiVersion",
            ErrorKind::ApiVersion(spec.api_version.clone()),
        );
    }
    if let Err(e) = name::check_dns_name(&spec.cluster_domain, false) {
        c.err(
            "clusterDomain",
            ErrorKind::ClusterDomain(spec.cluster_domain.clone(), e),
        );
    }
    if !(400..=599).contains(&spec.deny_status) {
        c.err("denyStatus", ErrorKind::DenyStatus(spec.deny_status));
    }
    if spec.tenants.is_empty() {
        c.warn(
            "tenants",
            "no tenants: every source namespace is unknown (unknownSource decides)",
        );
    }
    let mut tenant_names: HashMap<&str, String> = HashMap::default();
    let mut claimed: HashMap<&str, String> = HashMap::default();
    for (t, tenant) in spec.tenants.iter().enumerate() {
        let tp = format!("tenants[{t}]");
        check_name(&mut c, &format!("{tp}.name"), &tenant.name);
        if let Some(prev) = tenant_names.insert(&tenant.name, format!("{tp}.name")) {
            c.err(
                format!("{tp}.name"),
                ErrorKind::DuplicateName(tenant.name.clone(), prev),
            );
        }
        if tenant.namespaces.is_empty() {
            c.err(format!("{tp}.namespaces"), ErrorKind::NoNamespaces);
        }
        for (n, ns) in tenant.namespaces.iter().enumerate() {
            let np = format!("{tp}.namespaces[{n}]");
            if let Err(e) = name::check_namespace(ns) {
                c.err(&np, ErrorKind::Namespace(ns.clone(), e));
            } else if let Some(prev) = claimed.get(ns.as_str()) {
                c.err(&np, ErrorKind::NamespaceClaimed(ns.clone(), prev.clone()));
            } else {
                claimed.insert(ns, np);
            }
        }
        check_listeners(&mut c, &tp, &tenant.egress);
        identity::check_inbound(&mut c, &tp, tenant, spec);
        if tenant.egress.is_empty() {
            c.warn(
                format!("{tp}.egress"),
                "no egress entries: this tenant's namespaces can reach nothing",
            );
        }
        let mut workload_names: HashMap<&str, String> = HashMap::default();
        let mut selectors: Vec<(String, &WorkloadSpec)> = Vec::new();
        for (w, wl) in tenant.workloads.iter().enumerate() {
            let wp = format!("{tp}.workloads[{w}]");
            check_name(&mut c, &format!("{wp}.name"), &wl.name);
            if let Some(prev) = workload_names.insert(&wl.name, format!("{wp}.name")) {
                c.err(
                    format!("{wp}.name"),
                    ErrorKind::DuplicateName(wl.name.clone(), prev),
                );
            }
            if wl.selector.is_empty() && wl.service_accounts.is_empty() {
                c.err(format!("{wp}.selector"), ErrorKind::EmptySelector);
            }
            for (k, v) in &wl.selector {
                if let Err(why) = check_label_key(k) {
                    c.err(format!("{wp}.selector"), ErrorKind::Label(k.clone(), why));
                }
                if let Err(why) = check_label_value(v) {
                    c.err(
                        format!("{wp}.selector.{k}"),
                        ErrorKind::Label(v.clone(), why),
                    );
                }
            }
            identity::check_workload(&mut c, &wp, wl);
            for (prev_path, prev) in &selectors {
                if let Some(example) = identity::exceptions_overlap(prev, wl) {
                    c.err(
                        format!("{wp}.selector"),
                        ErrorKind::OverlappingSelectors(
                            fmt_labels(&wl.selector),
                            prev_path.clone(),
                            example,
                        ),
                    );
                }
            }
            selectors.push((format!("{wp}.selector"), wl));
            check_listeners(&mut c, &wp, &wl.egress);
            if wl.egress.is_empty() {
                c.warn(
                    format!("{wp}.egress"),
                    "no egress entries: this exception adds nothing to the tenant's egress",
                );
            }
        }
    }
    identity::check_document(&mut c, spec);
    (c.errors, c.warnings)
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Two selectors can match one pod unless some key they share has different values.
pub fn selectors_overlap(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

fn check_name(c: &mut Checker, path: &str, n: &str) {
    if let Err(e) = name::check_namespace(n) {
        c.err(path, ErrorKind::Name(n.to_owned(), e));
    }
}

/// Kubernetes label key: `[prefix/]name`, prefix a DNS subdomain (<= 253), name <= 63 of
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` (apimachinery `IsQualifiedName`).
fn check_label_key(k: &str) -> Result<(), &'static str> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.is_empty()
            || p.len() > 253
            || name::check_dns_name(p, false).is_err() && !is_subdomain(p)
        {
            return Err("the prefix before '/' must be a DNS subdomain");
        }
    }
    if name.is_empty() {
        return Err("the name part is empty");
    }
    check_label_value(name)
}

fn is_subdomain(p: &str) -> bool {
    p.split('.').all(|l| name::check_label(l).is_ok()) && p == p.to_ascii_lowercase()
}

fn check_label_value(v: &str) -> Result<(), &'static str> {
    if v.len() > 63 {
        return Err("longer than 63 characters");
    }
    if v.is_empty() {
        return Ok(());
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !v.chars().all(ok_char) {
        return Err("only letters, digits, '-', '_' and '.' are allowed");
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(v.chars().next()) || !ends_ok(v.chars().last()) {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"];

fn check_listeners(c: &mut Checker, owner: &str, egress: &[EgressSpec]) {
    let mut ports: HashMap<i64, String> = HashMap::default();
    let mut catch_all: Option<String> = None;
    for (e, entry) in egress.iter().enumerate() {
        let ep = format!("{owner}.egress[{e}]");
        match &entry.port {
            Some(port) => {
                if !(1..=65535).contains(&port.number) {
                    c.err(format!("{ep}.port.number"), ErrorKind::Port(port.number));
                } else if let Some(prev) = ports.get(&port.number) {
                    c.err(
                        format!("{ep}.port.number"),
                        ErrorKind::DuplicatePort(port.number, prev.clone()),
                    );
                } else {
                    ports.insert(port.number, ep.clone());
                }
                if let Some(proto) = &port.protocol {
                    if !PROTOCOLS.contains(&proto.as_str()) {
                        c.err(
                            format!("{ep}.port.protocol"),
                            ErrorKind::Protocol(proto.clone()),
                        );
                    }
                }
                if let Some(n) = &port.name {
                    check_name(c, &format!("{ep}.port.name"), n);
                }
            }
            None => {
                if let Some(prev) = &catch_all {
                    c.err(&ep, ErrorKind::SecondCatchAll(prev.clone()));
                } else {
                    catch_all = Some(ep.clone());
                }
            }
        }
        if entry.hosts.is_empty() {
            c.err(format!("{ep}.hosts"), ErrorKind::NoHosts);
        }
        check_hosts(c, &ep, &entry.hosts);
    }
    if let Some(all) = &catch_all {
        let mut sorted: Vec<_> = ports.iter().collect();
        sorted.sort();
        for (port, path) in sorted {
            c.warn(
                path.clone(),
                format!(
                    "on port {port} only this entry's hosts apply, not those of the portless {all}: \
                     Istio exposes on each port the hosts of the listener with the most specific port; \
                     repeat any host port {port} must also reach (for example \"./*\") here"
                ),
            );
        }
    }
}

/// Parses every host (errors), then looks for duplicates and shadowed entries (warnings)
/// with hash lookups, so a listener with 100,000 hosts is checked in linear time.
fn check_hosts(c: &mut Checker, ep: &str, hosts: &[String]) {
    let mut parsed: Vec<(usize, HostEntry)> = Vec::with_capacity(hosts.len());
    for (h, raw) in hosts.iter().enumerate() {
        match raw.parse::<HostEntry>() {
            Ok(entry) => parsed.push((h, entry)),
            Err(e) => c.err(format!("{ep}.hosts[{h}]"), ErrorKind::Host(raw.clone(), e)),
        }
    }
    // Exact duplicates.
    let mut seen: HashMap<&HostEntry, usize> = HashMap::default();
    for (h, entry) in &parsed {
        if let Some(prev) = seen.get(entry) {
            c.warn(
                format!("{ep}.hosts[{h}]"),
                format!("\"{entry}\" duplicates {ep}.hosts[{prev}]"),
            );
        } else {
            seen.insert(entry, *h);
        }
    }
    // Shadowed imports: an entry already covered by a wider one in the same listener.
    let imports: Vec<&(usize, HostEntry)> = parsed.iter().filter(|(_, e)| !e.exclude).collect();
    let mut all_ns: HashMap<&NsSelector, usize> = HashMap::default();
    let mut suffixes: HashMap<(&NsSelector, &str), usize> = HashMap::default();
    for (h, e) in &imports {
        match &e.host {
            HostPattern::All => {
                all_ns.entry(&e.namespace).or_insert(*h);
            }
            HostPattern::Suffix(s) => {
                suffixes.entry((&e.namespace, s.as_str())).or_insert(*h);
            }
            HostPattern::Exact(_) => {}
        }
    }
    let any = NsSelector::Any;
    if let Some(star) = all_ns.get(&any) {
        if imports.len() > 1 {
            c.warn(
                format!("{ep}.hosts[{star}]"),
                format!(
                    "\"*/*\" imports every host; the other {} entries of {ep} add nothing",
                    imports.len() - 1
                ),
            );
        }
        return;
    }
    for (h, e) in &imports {
        let scopes: &[&NsSelector] = match e.namespace {
            NsSelector::Any => &[&any],
            _ => &[&e.namespace, &any],
        };
        let by = scopes
            .iter()
            .find_map(|scope| covering_entry(e, scope, &all_ns, &suffixes, &seen));
        if let Some(w) = by.filter(|w| w != h) {
            let wider = hosts.get(w).map(String::as_str).unwrap_or("");
            c.warn(
                format!("{ep}.hosts[{h}]"),
                format!("\"{e}\" is already covered by \"{wider}\" ({ep}.hosts[{w}])"),
            );
        }
    }
}

/// The index of an entry in `scope` that covers every host `e` selects, if any.
fn covering_entry(
    e: &HostEntry,
    scope: &NsSelector,
    all_ns: &HashMap<&NsSelector, usize>,
    suffixes: &HashMap<(&NsSelector, &str), usize>,
    seen: &HashMap<&HostEntry, usize>,
) -> Option<usize> {
    let same_scope = *scope == e.namespace;
    if !(same_scope && e.host == HostPattern::All) {
        if let Some(w) = all_ns.get(scope) {
            return Some(*w);
        }
    }
    let name = match &e.host {
        HostPattern::Exact(n) => n.as_str(),
        HostPattern::Suffix(s) => s.as_str(),
        HostPattern::All => return None,
    };
    // `*.foo.com` covers `a.foo.com`, `a.b.foo.com` and `*.b.foo.com`: probe every suffix that
    // starts at a '.', except a wildcard's own suffix within its own scope (that is itself).
    for (i, _) in name.match_indices('.') {
        if i == 0 && same_scope && matches!(e.host, HostPattern::Suffix(_)) {
            continue;
        }
        if let Some(w) = suffixes.get(&(scope, name.get(i..).unwrap_or(""))) {
            return Some(*w);
        }
    }
    if !same_scope {
        let probe = HostEntry {
            exclude: false,
            namespace: scope.clone(),
            host: e.host.clone(),
        };
        return seen.get(&probe).copied();
    }
    None
}

#[cfg(test)]
mod tests;
