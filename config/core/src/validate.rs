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

use crate::listeners::{self, Conflict, PortProtocol, UnknownProtocol};
use crate::name::{self, NameError};
use crate::network::{Cidr, CidrError};
use crate::pattern::{HostEntry, HostEntryError, HostPattern, NsSelector};
use crate::spec::{
    EgressSpec, OutboundTrafficPolicy, PolicySpec, TenantSpec, WorkloadSpec, API_VERSION,
};

mod identity;
pub use identity::refused_gateways;

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
    /// A delegated namespace (sharded fallback) that a tenant of the same document owns: the
    /// proxy would stand aside where this very document decides.
    #[error(
        "namespace \"{0}\" is delegated to its own plugin but owned by {1} in this document; \
         a fallback plugin's document lists no tenant of the namespaces it delegates"
    )]
    DelegatedOwned(String, Path),
    /// `destinationShard` names a namespace no tenant of the document owns.
    #[error(
        "namespace \"{0}\" is this destination shard's, but no tenant of the document owns it; \
         a destination shard is generated for a tenant namespace (tenant-egress generate)"
    )]
    DestinationShardUnowned(String),
    /// A `tenantDirectory` that does not parse, or contradicts the document's tenants.
    #[error("{0}")]
    TenantDirectory(String),
    /// A `serves` entry that is not a DNS name (or a `*.` wildcard).
    #[error("serves \"{0}\", which is not a DNS name or a \"*.\" wildcard: {1}")]
    Served(String, NameError),
    /// A tenant without namespaces.
    #[error("a tenant needs at least one namespace")]
    NoNamespaces,
    /// Port out of range.
    #[error("port {0} is outside 1..65535")]
    Port(i64),
    /// Unknown protocol.
    #[error(transparent)]
    Protocol(#[from] UnknownProtocol),
    /// `HTTP_PROXY`: Istio's explicit proxy listener.
    #[error("protocol HTTP_PROXY is Istio's explicit HTTP proxy listener, which serves every destination port at once; tenant-egress scopes egress per destination port and cannot enforce it: declare the destination port with HTTP, or omit the protocol")]
    HttpProxy,
    /// A workload exception redeclares a tenant port with another protocol.
    #[error("port {port} is declared {} by the tenant ({tenant}) and {protocol} here; a workload exception must use the tenant's protocol, or omit it", declared(.tenant_protocol))]
    ProtocolRedeclared {
        /// The port.
        port: u16,
        /// The tenant's protocol.
        tenant_protocol: Option<PortProtocol>,
        /// The tenant's entry declaring the port.
        tenant: Path,
        /// The exception's protocol.
        protocol: PortProtocol,
    },
    /// A workload exception closes a port the tenant's catch-all serves to TCP.
    #[error("port {port} is not declared by the tenant, so its catch-all ({catch_all}) serves it to TCP as well as HTTP; declared {protocol} here, it would close port {port} to TCP for these pods. Omit the protocol, use a TCP-capable one (TCP, TLS, HTTPS, MONGO), or declare port {port} in the tenant's egress")]
    ClosesTcp {
        /// The port.
        port: u16,
        /// The tenant's catch-all entry.
        catch_all: Path,
        /// The exception's HTTP-only protocol.
        protocol: PortProtocol,
    },
    /// A `~` exclusion in a workload exception.
    #[error("\"{0}\" is an exclusion, but a workload exception only adds to the tenant's egress; put the exclusion in the tenant's egress (it applies to these pods too), or remove it")]
    ExceptionExclusion(String),
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
    /// A bad CIDR in `clusterNetworks`.
    #[error("\"{0}\" {1}")]
    Cidr(String, CidrError),
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

fn declared(p: &Option<PortProtocol>) -> String {
    match p {
        Some(p) => p.to_string(),
        None => "without a protocol".to_owned(),
    }
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
    /// A port protocol ([`PortProtocol`]). A bad one is reported and removed, so that the
    /// checks of meaning still run on the rest (as for an unknown field).
    Protocol,
    StrList,
    /// A list of integers, each in a range.
    IntList(i64, i64),
    /// A mapping of strings to strings (label selectors).
    StrMap,
    List(&'static Obj),
    Object(&'static Obj),
}

/// Fields of one object: (name, kind, required).
struct Obj(&'static [(&'static str, Kind, bool)]);

static PORT: Obj = Obj(&[
    ("number", Kind::Int(i64::MIN, i64::MAX), true),
    ("protocol", Kind::Protocol, false),
    ("name", Kind::Str, false),
]);
static EGRESS: Obj = Obj(&[
    ("port", Kind::Object(&PORT), false),
    ("hosts", Kind::StrList, true),
    ("hostIndex", Kind::IntList(0, u32::MAX as i64), false),
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
    ("index", Kind::Int(0, u32::MAX as i64), false),
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
    ("serves", Kind::StrList, false),
]);
static POLICY: Obj = Obj(&[
    ("apiVersion", Kind::Str, true),
    ("mode", Kind::Enum(MODES), false),
    ("clusterDomain", Kind::Str, false),
    ("clusterNetworks", Kind::StrList, false),
    ("unknownSource", Kind::Enum(&["deny", "allow"]), false),
    ("denyStatus", Kind::Int(0, 65535), false),
    ("denyBody", Kind::Enum(&["terse", "full"]), false),
    ("sharedNamespaces", Kind::StrList, false),
    ("gateways", Kind::Enum(&["passthrough", "enforce"]), false),
    ("tenants", Kind::List(&TENANT), true),
    ("delegatedNamespaces", Kind::StrList, false),
    ("knownNamespaces", Kind::Str, false),
    ("destinationShard", Kind::Str, false),
    ("tenantDirectory", Kind::Str, false),
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

/// What to do with a value after [`check_kind`].
#[derive(PartialEq, Eq)]
enum Keep {
    Yes,
    /// Reported, and recoverable: remove it and check the rest.
    Drop,
}

/// Checks one value against its kind, reporting every problem.
fn check_kind(v: &mut Value, kind: Kind, path: &str, errors: &mut Vec<ValidationError>) -> Keep {
    match kind {
        Kind::Protocol => match v.as_str().map(str::parse::<PortProtocol>) {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                errors.push(ValidationError {
                    path: path.to_owned(),
                    kind: ErrorKind::Protocol(e),
                });
                return Keep::Drop;
            }
            None => mismatch(path, "a string", v, errors),
        },
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
        Kind::IntList(lo, hi) => {
            let ok = v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|n| n.as_i64().is_some_and(|n| (lo..=hi).contains(&n)))
            });
            if !ok {
                mismatch(
                    path,
                    &format!("a list of integers in {lo}..={hi}"),
                    v,
                    errors,
                );
                return Keep::Drop;
            }
        }
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
    Keep::Yes
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
        let checked = map
            .get_mut(*name)
            .map(|value| check_kind(value, *kind, &join(path, name), errors));
        match checked {
            Some(Keep::Drop) => {
                map.remove(*name);
            }
            Some(Keep::Yes) => {}
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
    // Pass 1 removes the unknown fields (and bad protocols) it reports, so passes 2 and 3
    // still see the rest.
    let mut errors = Vec::new();
    check_object(&mut v, &POLICY, "", &mut errors);
    if !errors.iter().all(|e| {
        matches!(
            e.kind,
            ErrorKind::UnknownField { .. } | ErrorKind::Protocol(_)
        )
    }) {
        return Err(InvalidPolicy {
            errors,
            warnings: Vec::new(),
        });
    }
    // Pass 2: the shape is right, so decoding cannot fail; should it, say so rather than panic.
    let Some(spec) = decode::policy(v) else {
        errors.push(ValidationError {
            path: "(document)".into(),
            kind: ErrorKind::Type(
                "the document passed the shape checks but does not decode (a tenant-egress bug)"
                    .into(),
            ),
        });
        return Err(InvalidPolicy {
            errors,
            warnings: Vec::new(),
        });
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

/// Whether this build computes warnings. They are for the people writing a policy (the CLI
/// prints them); they change no decision, so the filter builds the core without the
/// `warnings` feature and every warning-only pass below compiles away, which keeps the
/// shipped module under its size budget (tests/tests/artifact.rs). Errors are always checked.
pub(crate) const WARNINGS: bool = cfg!(feature = "warnings");

struct Checker {
    errors: Vec<ValidationError>,
    warnings: Vec<Warning>,
    /// A destination shard (`destinationShard`) keeps every egress entry, for its port, but
    /// only the hosts it can decide: an entry may be left with none.
    empty_hosts_ok: bool,
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
        empty_hosts_ok: !spec.destination_shard.is_empty(),
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
    check_cluster_networks(&mut c, spec);
    if WARNINGS && spec.tenants.is_empty() && spec.delegated_namespaces.is_empty() {
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
        identity::check_inbound(&mut c, &tp, tenant, spec);
        for (i, host) in tenant.serves.iter().enumerate() {
            if let Err(e) = crate::pattern::parse_served(host) {
                c.err(
                    format!("{tp}.serves[{i}]"),
                    ErrorKind::Served(host.clone(), e),
                );
            }
        }
        let namespaces: Vec<&str> = tenant
            .namespaces
            .iter()
            .filter(|ns| name::check_namespace(ns).is_ok())
            .map(String::as_str)
            .collect();
        let tenant_scope = Scope {
            namespaces: &namespaces,
            tenant: None,
        };
        // The tenant's hosts, parsed once: its exceptions' checks compare against them.
        let tenant_hosts = check_listeners(&mut c, &tp, &tenant.egress, tenant_scope);
        if WARNINGS && tenant.egress.is_empty() {
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
            check_listeners(
                &mut c,
                &wp,
                &wl.egress,
                Scope {
                    namespaces: &namespaces,
                    tenant: Some(TenantScope {
                        path: &tp,
                        egress: &tenant.egress,
                        hosts: &tenant_hosts,
                    }),
                },
            );
            if WARNINGS && wl.egress.is_empty() {
                c.warn(
                    format!("{wp}.egress"),
                    "no egress entries: this exception adds nothing to the tenant's egress",
                );
            }
        }
    }
    check_shared_namespaces(&mut c, spec, &claimed);
    check_shard_fields(&mut c, spec, &claimed);
    identity::check_document(&mut c, spec);
    (c.errors, c.warnings)
}

/// Authoring-time warnings on a valid document, on top of [`check_meaning`]'s: likely typos
/// (a namespace no tenant owns and `sharedNamespaces` does not declare, grouped per namespace;
/// a service FQDN in another namespace than its prefix selects). The CLI reports them with
/// the rest; the filter does not compute them (they change no decision, and the module stays
/// small).
pub fn lint(spec: &PolicySpec) -> Vec<Warning> {
    let mut c = Checker {
        errors: Vec::new(),
        warnings: Vec::new(),
        empty_hosts_ok: false,
    };
    let claimed: HashMap<&str, String> = spec
        .tenants
        .iter()
        .enumerate()
        .flat_map(|(t, tenant)| {
            tenant
                .namespaces
                .iter()
                .enumerate()
                .map(move |(n, ns)| (ns.as_str(), format!("tenants[{t}].namespaces[{n}]")))
        })
        .collect();
    warn_unowned_namespaces(&mut c, spec, &claimed);
    c.warnings
}

/// `sharedNamespaces`: valid names, each once, none owned by a tenant.
fn check_shared_namespaces(c: &mut Checker, spec: &PolicySpec, claimed: &HashMap<&str, String>) {
    let mut seen: HashMap<&str, usize> = HashMap::default();
    for (i, ns) in spec.shared_namespaces.iter().enumerate() {
        let path = format!("sharedNamespaces[{i}]");
        if let Err(e) = name::check_namespace(ns) {
            c.err(&path, ErrorKind::Namespace(ns.clone(), e));
        } else if !WARNINGS {
            continue;
        } else if let Some(prev) = seen.insert(ns, i) {
            c.warn(
                path,
                format!("\"{ns}\" duplicates sharedNamespaces[{prev}]"),
            );
        } else if let Some(owner) = claimed.get(ns.as_str()) {
            c.warn(
                path,
                format!(
                    "namespace \"{ns}\" is owned by a tenant ({owner}); listing it as shared changes nothing"
                ),
            );
        }
    }
}

/// Every namespace the hosts name that no tenant owns and `sharedNamespaces` does not declare,
/// with the places naming it, in document order. A host names a namespace by its `ns/` (or
/// `~ns/`) prefix, and by the namespace label of a service FQDN (`db.ns.svc.<clusterDomain>`).
///
/// Validation warns about each (a likely typo: `istio-sytem/*`); `import` declares them shared
/// (the Sidecars it reads name them on purpose).
pub fn unowned_namespaces(spec: &PolicySpec) -> BTreeMap<String, Vec<Path>> {
    unowned_namespaces_of(spec, &parsed_hosts(spec))
}

/// [`unowned_namespaces`] over the document's [`parsed_hosts`].
fn unowned_namespaces_of(spec: &PolicySpec, hosts: &[HostAt<'_>]) -> BTreeMap<String, Vec<Path>> {
    let owned: std::collections::HashSet<&str> = spec
        .tenants
        .iter()
        .flat_map(|t| t.namespaces.iter().map(String::as_str))
        .chain(spec.shared_namespaces.iter().map(String::as_str))
        .collect();
    let svc_suffix = format!(".svc.{}", spec.cluster_domain.to_ascii_lowercase());
    let mut out: BTreeMap<String, Vec<Path>> = BTreeMap::new();
    let mut add = |ns: &str, at: &HostAt<'_>| {
        if !owned.contains(ns) {
            let path = at.path();
            let places = out.entry(ns.to_owned()).or_default();
            if places.last() != Some(&path) {
                places.push(path);
            }
        }
    };
    for at in hosts {
        if let NsSelector::Named(n) = &at.parsed.namespace {
            add(n, at);
        }
        // `*/db.shared.svc...` names `shared` by its FQDN alone. Under a prefix, a different
        // FQDN namespace is the contradiction warned about on its own.
        if at.parsed.namespace == NsSelector::Any {
            if let Some(ns) = fqdn_namespace(&at.parsed, &svc_suffix) {
                add(ns, at);
            }
        }
    }
    out
}

/// One host of the document's egress lists that parses ([`parsed_hosts`]).
struct HostAt<'a> {
    tenant: &'a TenantSpec,
    /// Tenant, workload exception (if any), egress entry and host indices.
    t: usize,
    w: Option<usize>,
    e: usize,
    h: usize,
    raw: &'a str,
    parsed: HostEntry,
}

impl HostAt<'_> {
    /// `tenants[t].egress[e].hosts[h]` or `tenants[t].workloads[w].egress[e].hosts[h]`: built
    /// only for the hosts a message names.
    fn path(&self) -> Path {
        let (t, e, h) = (self.t, self.e, self.h);
        match self.w {
            Some(w) => format!("tenants[{t}].workloads[{w}].egress[{e}].hosts[{h}]"),
            None => format!("tenants[{t}].egress[{e}].hosts[{h}]"),
        }
    }
}

/// Every host of the document's egress lists that parses, in document order, with its tenant
/// and its place. Authoring-time walks only.
fn parsed_hosts(spec: &PolicySpec) -> Vec<HostAt<'_>> {
    let mut out = Vec::new();
    for (t, tenant) in spec.tenants.iter().enumerate() {
        let lists = std::iter::once((None, &tenant.egress)).chain(
            tenant
                .workloads
                .iter()
                .enumerate()
                .map(|(w, wl)| (Some(w), &wl.egress)),
        );
        for (w, egress) in lists {
            for (e, entry) in egress.iter().enumerate() {
                for (h, raw) in entry.hosts.iter().enumerate() {
                    if let Ok(parsed) = raw.parse::<HostEntry>() {
                        out.push(HostAt {
                            tenant,
                            t,
                            w,
                            e,
                            h,
                            raw: raw.as_str(),
                            parsed,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The namespace label of an entry's service FQDN, if its dnsName is one.
fn fqdn_namespace<'a>(e: &'a HostEntry, svc_suffix: &str) -> Option<&'a str> {
    let HostPattern::Exact(h) = &e.host else {
        return None;
    };
    name::service_namespace(h.as_bytes(), svc_suffix.as_bytes())
        .and_then(|ns| std::str::from_utf8(ns).ok())
}

/// The likely typos: one warning per unowned, undeclared namespace (however many hosts name
/// it), and one per host whose service FQDN lies in another namespace than its prefix selects.
fn warn_unowned_namespaces(c: &mut Checker, spec: &PolicySpec, claimed: &HashMap<&str, String>) {
    // Sorted, so that of two equally close names the guess is always the same.
    let mut known: Vec<&str> = claimed
        .keys()
        .copied()
        .chain(spec.shared_namespaces.iter().map(String::as_str))
        .collect();
    known.sort_unstable();
    known.dedup();
    let hosts = parsed_hosts(spec);
    for (ns, places) in unowned_namespaces_of(spec, &hosts) {
        let Some((first, rest)) = places.split_first() else {
            continue;
        };
        let guess = closest(&ns, &known)
            .map(|k| format!("did you mean \"{k}\"?"))
            .unwrap_or_else(|| "a typo?".to_owned());
        let also = match rest.len() {
            0 => String::new(),
            1..=3 => format!("; also named at {}", rest.join(", ")),
            n => format!(
                "; also named at {} and {} more place{}",
                rest.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                n - 3,
                if n - 3 == 1 { "" } else { "s" }
            ),
        };
        c.warn(
            first.clone(),
            format!(
                "namespace \"{ns}\" is owned by no tenant and not declared in sharedNamespaces: {guess} \
                 If it is shared on purpose, add it to sharedNamespaces{also}"
            ),
        );
    }
    let svc_suffix = format!(".svc.{}", spec.cluster_domain.to_ascii_lowercase());
    for at in &hosts {
        let Some(fqdn_ns) = fqdn_namespace(&at.parsed, &svc_suffix) else {
            continue;
        };
        let selected: Vec<&str> = match &at.parsed.namespace {
            NsSelector::Any => continue,
            NsSelector::Named(n) => vec![n.as_str()],
            NsSelector::Own => at.tenant.namespaces.iter().map(String::as_str).collect(),
        };
        if selected.contains(&fqdn_ns) {
            continue;
        }
        let raw = at.raw;
        c.warn(
            at.path(),
            format!(
                "\"{raw}\" names a service of namespace \"{fqdn_ns}\", but its prefix selects \
                 {}: Istio looks the host up only there, so it never matches. One of the two is a \
                 typo",
                match selected.as_slice() {
                    [one] => format!("namespace \"{one}\""),
                    many => format!("namespaces {}", many.join(", ")),
                }
            ),
        );
    }
}

/// The known name a typo of `ns` could be (the nearest; the first of equals).
fn closest<'a>(ns: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(ns, k), *k))
        // One edit in a short name, two in a long one: `istio-sytem`, `logmonky`; not `ns` for `t`.
        .filter(|(d, k)| *d > 0 && *d <= if k.len() >= 8 { 2 } else { 1 } && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (namespace names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// `delegatedNamespaces` and `knownNamespaces` (sharded distribution, `crate::shard`): names
/// of namespaces (`knownNamespaces` one string of them, separated by single spaces), and no
/// delegated namespace is one this document decides.
fn check_shard_fields(c: &mut Checker, spec: &PolicySpec, claimed: &HashMap<&str, String>) {
    for (i, ns) in spec.delegated_namespaces.iter().enumerate() {
        let path = format!("delegatedNamespaces[{i}]");
        if let Err(e) = name::check_namespace(ns) {
            c.err(path, ErrorKind::Namespace(ns.clone(), e));
        } else if let Some(owner) = claimed.get(ns.as_str()) {
            c.err(path, ErrorKind::DelegatedOwned(ns.clone(), owner.clone()));
        }
    }
    let shard = spec.destination_shard.as_str();
    if !shard.is_empty() {
        if let Err(e) = name::check_namespace(shard) {
            c.err(
                "destinationShard",
                ErrorKind::Namespace(shard.to_owned(), e),
            );
        } else if !claimed.contains_key(shard) {
            c.err(
                "destinationShard",
                ErrorKind::DestinationShardUnowned(shard.to_owned()),
            );
        }
    }
    if !spec.tenant_directory.is_empty() {
        check_directory(c, spec, claimed);
    }
    // Split on the single space only: any other whitespace is part of a (refused) name.
    let known = &spec.known_namespaces;
    for ns in known
        .split(' ')
        .filter(|ns| !known.is_empty() || !ns.is_empty())
    {
        if let Err(e) = name::check_namespace(ns) {
            c.err("knownNamespaces", ErrorKind::Namespace(ns.to_owned(), e));
        }
    }
}

/// `tenantDirectory` (a destination shard's every tenant, `crate::shard::tenant_directory`):
/// only in a destination shard; every record parses and names a valid tenant name and
/// namespaces, and no namespace belongs to two tenants (a record for a tenant listed in full
/// is that tenant: compiling skips it).
fn check_directory(c: &mut Checker, spec: &PolicySpec, claimed: &HashMap<&str, String>) {
    let path = "tenantDirectory";
    if spec.destination_shard.is_empty() {
        c.err(
            path,
            ErrorKind::TenantDirectory(
                "is set without destinationShard: only a destination shard lists the other tenants this way"
                    .to_owned(),
            ),
        );
    }
    let records = match crate::shard::parse_directory(&spec.tenant_directory) {
        Ok(r) => r,
        Err(e) => {
            c.err(path, ErrorKind::TenantDirectory(e.to_string()));
            return;
        }
    };
    let mut listed: HashMap<&str, String> = HashMap::default();
    for (i, d) in records.iter().enumerate() {
        let rp = format!("{path}[{i}]");
        check_name(c, &rp, &d.name);
        let full = spec.tenants.iter().any(|t| t.name == d.name);
        for ns in &d.namespaces {
            if let Err(e) = name::check_namespace(ns) {
                c.err(&rp, ErrorKind::Namespace(ns.clone(), e));
            } else if let Some(prev) = listed.insert(ns, rp.clone()) {
                c.err(&rp, ErrorKind::NamespaceClaimed(ns.clone(), prev));
            } else if let (false, Some(prev)) = (full, claimed.get(ns.as_str())) {
                c.err(&rp, ErrorKind::NamespaceClaimed(ns.clone(), prev.clone()));
            }
        }
    }
}

/// `clusterNetworks`: every CIDR parses, and ALLOW_ANY tenants are warned about when the policy
/// declares none (their passthroughs can then reach any ClusterIP or pod IP by address).
fn check_cluster_networks(c: &mut Checker, spec: &PolicySpec) {
    for (i, cidr) in spec.cluster_networks.iter().enumerate() {
        if let Err(e) = cidr.parse::<Cidr>() {
            c.err(
                format!("clusterNetworks[{i}]"),
                ErrorKind::Cidr(cidr.clone(), e),
            );
        }
    }
    let mut allow_any = String::new();
    for t in &spec.tenants {
        if t.outbound_traffic_policy == OutboundTrafficPolicy::AllowAny {
            if !allow_any.is_empty() {
                allow_any.push_str(", ");
            }
            allow_any.push_str(&t.name);
        }
    }
    if !WARNINGS {
        return;
    }
    if spec.cluster_networks.is_empty() && !allow_any.is_empty() {
        c.warn(
            "clusterNetworks",
            format!(
                "not set, and tenant(s) {allow_any} use ALLOW_ANY: their passthroughs reach any \
                 ClusterIP or pod IP. List the Service and pod CIDRs (kubectl cluster-info dump | \
                 grep -Eo -- '--(service-cluster-ip-range|cluster-cidr)=[^\"]*' | sort -u)"
            ),
        );
    }
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

/// The tenant an egress list belongs to: its namespaces (what `.` stands for) and, for a
/// workload exception, the tenant's own egress.
#[derive(Clone, Copy)]
struct Scope<'a> {
    /// The tenant's (valid) namespaces.
    namespaces: &'a [&'a str],
    /// `Some` when checking a workload exception of the tenant.
    tenant: Option<TenantScope<'a>>,
}

/// The tenant of a workload exception being checked.
#[derive(Clone, Copy)]
struct TenantScope<'a> {
    /// `tenants[t]`.
    path: &'a str,
    /// Its egress entries.
    egress: &'a [EgressSpec],
    /// The hosts of each of those entries that parse, as [`check_listeners`] returned them
    /// for the tenant (so an exception's checks do not parse them again).
    hosts: &'a [Vec<HostEntry>],
}

impl Scope<'_> {
    /// Whether `wider` covers `e` for a source in every namespace of the tenant (for a tenant
    /// with several namespaces, `.` is a different namespace in each).
    fn covers(&self, wider: &HostEntry, e: &HostEntry) -> bool {
        match self.namespaces {
            [] => wider.covers(e, None),
            all => all.iter().all(|ns| wider.covers(e, Some(ns))),
        }
    }

    /// The entries of `index` (entry -> first index) that cover `e`, by hash lookups.
    fn covering(
        &self,
        e: &HostEntry,
        index: &HashMap<&HostEntry, usize>,
    ) -> Vec<(HostEntry, usize)> {
        e.coverers(self.namespaces.first().copied())
            .into_iter()
            .filter_map(|w| index.get(&w).copied().map(|k| (w, k)))
            .filter(|(w, _)| self.covers(w, e))
            .collect()
    }
}

/// Checks one egress list; returns, per entry, the hosts that parse.
fn check_listeners(
    c: &mut Checker,
    owner: &str,
    egress: &[EgressSpec],
    scope: Scope<'_>,
) -> Vec<Vec<HostEntry>> {
    let mut ports: HashMap<i64, String> = HashMap::default();
    let mut catch_all: Option<String> = None;
    let mut parsed: Vec<Vec<HostEntry>> = Vec::with_capacity(egress.len());
    // What a workload exception's ports would take away, reported at the entry at fault (in
    // document order, as everything else).
    let mut conflicts = exception_conflicts(owner, egress, scope);
    conflicts.sort_by_key(|(e, _)| *e);
    let mut conflicts = conflicts.into_iter().peekable();
    for (e, entry) in egress.iter().enumerate() {
        let ep = format!("{owner}.egress[{e}]");
        while let Some((_, err)) = conflicts.next_if(|(i, _)| *i == e) {
            c.errors.push(err);
        }
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
                if port.protocol == Some(PortProtocol::HttpProxy) {
                    c.err(format!("{ep}.port.protocol"), ErrorKind::HttpProxy);
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
        if entry.hosts.is_empty() && !c.empty_hosts_ok {
            c.err(format!("{ep}.hosts"), ErrorKind::NoHosts);
        }
        parsed.push(check_hosts(c, &ep, &entry.hosts, scope));
    }
    if WARNINGS {
        warn_lost_on_ports(c, owner, egress, &parsed, scope);
    }
    parsed
}

/// The errors of [`listeners::exception_conflicts`] for a workload exception's `egress`, each
/// with the index of the exception entry at fault.
fn exception_conflicts(
    owner: &str,
    egress: &[EgressSpec],
    scope: Scope<'_>,
) -> Vec<(usize, ValidationError)> {
    let Some(TenantScope {
        path: tenant_path,
        egress: tenant,
        ..
    }) = scope.tenant
    else {
        return Vec::new();
    };
    listeners::exception_conflicts(tenant, egress)
        .into_iter()
        .map(|conflict| match conflict {
            Conflict::Protocol {
                port,
                exception,
                tenant,
                tenant_protocol,
                protocol,
            } => (
                exception,
                ValidationError {
                    path: format!("{owner}.egress[{exception}].port"),
                    kind: ErrorKind::ProtocolRedeclared {
                        port,
                        tenant_protocol,
                        tenant: format!("{tenant_path}.egress[{tenant}]"),
                        protocol,
                    },
                },
            ),
            Conflict::ClosesTcp {
                port,
                exception,
                catch_all,
                protocol,
            } => (
                exception,
                ValidationError {
                    path: format!("{owner}.egress[{exception}].port.protocol"),
                    kind: ErrorKind::ClosesTcp {
                        port,
                        catch_all: format!("{tenant_path}.egress[{catch_all}]"),
                        protocol,
                    },
                },
            ),
        })
        .collect()
}

/// Warns about each port entry on which hosts of its list's catch-all are lost: Istio exposes
/// on a port only the listener declaring it, never the catch-all too. Silent when the port
/// entry (with, for an exception, the tenant's hosts on that port) covers them all, so that
/// the warning means something.
fn warn_lost_on_ports(
    c: &mut Checker,
    owner: &str,
    egress: &[EgressSpec],
    parsed: &[Vec<HostEntry>],
    scope: Scope<'_>,
) {
    let (plan, origin, tenant_hosts) = match scope.tenant {
        Some(tenant) => (
            listeners::merge(tenant.egress, egress),
            listeners::Origin::Exception,
            tenant.hosts,
        ),
        None => (
            listeners::merge(egress, &[]),
            listeners::Origin::Tenant,
            parsed,
        ),
    };
    let hosts_of = |r: &listeners::EntryRef| -> &[HostEntry] {
        let list = match r.origin {
            listeners::Origin::Tenant => tenant_hosts,
            listeners::Origin::Exception => parsed,
        };
        list.get(r.index).map(Vec::as_slice).unwrap_or(&[])
    };
    let Some(all) = plan
        .catch_all
        .as_ref()
        .and_then(|a| a.entries.iter().find(|r| r.origin == origin))
    else {
        return;
    };
    let catch_all_imports: Vec<&HostEntry> = hosts_of(all).iter().filter(|e| !e.exclude).collect();
    let mut found: Vec<(usize, String)> = Vec::new();
    for (port, applied) in &plan.ports {
        let Some(declaring) = applied
            .entries
            .iter()
            .find(|r| r.origin == origin && r.index != all.index)
        else {
            continue; // this list does not declare the port: its catch-all applies there
        };
        let mut on_port: HashMap<&HostEntry, usize> = HashMap::default();
        for (i, e) in applied
            .entries
            .iter()
            .flat_map(|r| hosts_of(r).iter())
            .filter(|e| !e.exclude)
            .enumerate()
        {
            on_port.entry(e).or_insert(i);
        }
        let lost: Vec<&HostEntry> = catch_all_imports
            .iter()
            .copied()
            .filter(|e| scope.covering(e, &on_port).is_empty())
            .collect();
        if lost.is_empty() {
            continue;
        }
        const SHOWN: usize = 5;
        let mut names: Vec<String> = lost
            .iter()
            .take(SHOWN)
            .map(|e| format!("\"{e}\""))
            .collect();
        if lost.len() > SHOWN {
            names.push(format!("{} more", lost.len() - SHOWN));
        }
        let tenant_too = if scope.tenant.is_some() {
            format!(" (and the tenant's for port {port})")
        } else {
            String::new()
        };
        found.push((
            declaring.index,
            format!(
                "on port {port} only this entry's hosts{tenant_too} apply, not those of the portless \
                 {owner}.egress[{}], so {} cannot be reached on port {port}: Istio exposes on each port \
                 the hosts of the listener declaring it, else the catch-all's; repeat here those port \
                 {port} must also reach",
                all.index,
                names.join(", ")
            ),
        ));
    }
    // In document order, as every other message.
    found.sort_by_key(|(i, _)| *i);
    for (i, message) in found {
        c.warn(format!("{owner}.egress[{i}]"), message);
    }
}

/// Parses every host (errors), then looks for duplicates and shadowed entries (warnings)
/// with hash lookups, so a listener with 100,000 hosts is checked in linear time. Returns the
/// hosts that parse.
fn check_hosts(c: &mut Checker, ep: &str, hosts: &[String], scope: Scope<'_>) -> Vec<HostEntry> {
    let mut parsed: Vec<(usize, HostEntry)> = Vec::with_capacity(hosts.len());
    for (h, raw) in hosts.iter().enumerate() {
        match raw.parse::<HostEntry>() {
            Ok(entry) => {
                if entry.exclude && scope.tenant.is_some() {
                    c.err(
                        format!("{ep}.hosts[{h}]"),
                        ErrorKind::ExceptionExclusion(raw.clone()),
                    );
                }
                parsed.push((h, entry));
            }
            Err(e) => c.err(format!("{ep}.hosts[{h}]"), ErrorKind::Host(raw.clone(), e)),
        }
    }
    if !WARNINGS {
        return parsed.into_iter().map(|(_, e)| e).collect();
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
    // Shadowed imports: an entry already covered by another one of the same listener.
    let imports: Vec<&(usize, HostEntry)> = parsed.iter().filter(|(_, e)| !e.exclude).collect();
    let star = HostEntry {
        exclude: false,
        namespace: NsSelector::Any,
        host: HostPattern::All,
    };
    if let Some(star) = seen.get(&star) {
        if imports.len() > 1 {
            c.warn(
                format!("{ep}.hosts[{star}]"),
                format!(
                    "\"*/*\" imports every host; the other {} entries of {ep} add nothing",
                    imports.len() - 1
                ),
            );
        }
        return parsed.into_iter().map(|(_, e)| e).collect();
    }
    for (h, e) in &imports {
        if seen.get(e) != Some(h) {
            continue; // a duplicate, reported above
        }
        // The most specific cover names it (the one the filter would name); of two entries
        // that cover each other (`./*` and `bar/*` in tenant bar) only the later is reported.
        let by = scope
            .covering(e, &seen)
            .into_iter()
            .filter(|(w, k)| w != e && !(k > h && scope.covers(e, w)))
            .max_by_key(|(w, k)| (w.specificity(), std::cmp::Reverse(*k)));
        if let Some((_, w)) = by {
            let wider = hosts.get(w).map(String::as_str).unwrap_or("");
            c.warn(
                format!("{ep}.hosts[{h}]"),
                format!("\"{e}\" is already covered by \"{wider}\" ({ep}.hosts[{w}])"),
            );
        }
    }
    parsed.into_iter().map(|(_, e)| e).collect()
}

mod decode;

#[cfg(test)]
mod tests;
