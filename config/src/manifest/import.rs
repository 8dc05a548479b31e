//! Existing `Sidecar`s to a policy (`tenant-egress import`).
//!
//! Rules:
//! - one tenant per namespace, named after it; namespaces sorted, exceptions sorted by name;
//! - the namespace's selector-less Sidecar gives the tenant's egress and
//!   `outboundTrafficPolicy` (unset: the mesh's, assumed `ALLOW_ANY`, Istio's default);
//! - a workload-specific Sidecar becomes a workload exception whose egress is the DIFFERENCE
//!   that, merged with the tenant's egress as the filter and `generate` merge it, gives back that
//!   Sidecar's egress. Exceptions can only add: when the workload Sidecar lacks something the
//!   namespace default has, excludes more, or declares a port protocol an exception may not
//!   (`tenant_egress_core::listeners::exception_conflicts`), the result widens, and a warning
//!   says what;
//! - the root namespace's selector-less Sidecar is the mesh default: it is not turned into a
//!   tenant (the namespaces it serves are not known from Sidecars alone), but namespaces that
//!   only have workload Sidecars start from it, as Istio does;
//! - `unknownSource: allow`, so the filter leaves namespaces without a Sidecar as they are today;
//! - the `hosts` of a ServiceEntry (`networking.istio.io` v1, v1beta1, v1alpha3) with a
//!   `workloadSelector` go into the `serves` of its namespace's tenant (sorted, deduplicated):
//!   Istio selects the workloads (pods, WorkloadEntries) of a ServiceEntry only in its own
//!   namespace, so that namespace's pods serve those hosts, and the sharded destination end
//!   refuses a served host that is neither a Kubernetes service of the namespace nor in `serves`
//!   (`undeclared-service`). A ServiceEntry without a selector (external hosts, explicit
//!   `endpoints`) adds nothing; one in a namespace that gets no tenant is reported.
//!
//! Anything that cannot be carried over (ingress, bind, captureMode, egressProxy, illegal hosts,
//! a second selector-less Sidecar, other kinds) is skipped with a warning.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::sidecar::{HostListener, Listeners};
use tenant_egress_core::listeners::opens_tcp;
use tenant_egress_core::pattern::{HostEntry, NsSelector};
use tenant_egress_core::spec::{
    Gateways, Mode, OutboundTrafficPolicy, PolicySpec, PortProtocol, PortSpec, TenantSpec,
    UnknownSource, WorkloadSpec, API_VERSION, DEFAULT_CLUSTER_DOMAIN, DEFAULT_DENY_STATUS,
};

/// A YAML input could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ImportError {
    /// The input's name.
    pub source_name: String,
    /// What is wrong.
    pub message: String,
}

/// The imported policy and everything worth telling about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The policy.
    pub spec: PolicySpec,
    /// What could not be carried over exactly, or looked accidental.
    pub warnings: Vec<String>,
}

impl Imported {
    /// The policy as `import` writes it: a header naming the inputs, then the YAML document.
    pub fn to_yaml(&self, input_names: &[String]) -> Result<String, crate::yaml::YamlError> {
        let mut text = header(input_names, "this file", "here");
        text.push_str(&crate::yaml::to_string(&self.spec)?);
        Ok(text)
    }

    /// The policy as `import --out DIR` writes it: a policy directory
    /// ([`crate::policy_dir`]), the header in `settings.yaml`, each tenant in its own file.
    pub fn to_dir_files(
        &self,
        input_names: &[String],
    ) -> Result<Vec<(std::path::PathBuf, String)>, crate::policy_dir::WriteError> {
        let settings = header(input_names, "this directory", "in its tenant file");
        crate::policy_dir::files(&self.spec, &settings, |name| {
            format!(
                "# Tenant {name}, imported by tenant-egress {} (see ../settings.yaml). The file's\n\
                 # name is the tenant's; validate the whole directory, not this file alone.\n",
                super::VERSION
            )
        })
    }
}

/// The comment on top of an imported policy: where it came from, and the next steps.
fn header(input_names: &[String], this: &str, here: &str) -> String {
    format!(
        "# Imported by tenant-egress {} from {}: one tenant per namespace, in audit mode.\n\
         # Audit changes nothing: the generated Sidecars scope every namespace as its Sidecars do\n\
         # today, and the filter blocks nothing; it counts what enforcement would block, at the\n\
         # caller's end (tenant_egress.audit_denied.<reason>) and at the destination's\n\
         # (tenant_egress.inbound.audit_denied.<reason>). Next steps (README, \"Rollout on a live mesh\"):\n\
         #   1. review the warnings import printed; tenant-egress validate <{this}>\n\
         #   2. tenant-egress generate <{this}> --url oci://REPO@sha256:<d> --sha256 <d> --out manifests/\n\
         #      kubectl apply -f manifests/ (with --prune, see the README)\n\
         #   3. when a tenant's audit_denied counts only what you mean to block, give it\n\
         #      `mode: enforce` {here}, regenerate and apply; one tenant at a time (its namespaces\n\
         #      then get a STRICT PeerAuthentication: Istio refuses their plaintext callers).\n",
        super::VERSION,
        input_names.join(", ")
    )
}

/// One Sidecar as read.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarInfo {
    /// Where it came from (`file: namespace/name`).
    pub origin: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `workloadSelector.labels`, when non-empty.
    pub selector: Option<BTreeMap<String, String>>,
    /// The egress listeners as Istio applies them (an empty `egress` is `*/*`).
    pub listeners: Listeners,
    /// Whether `egress` was empty or absent.
    pub empty_egress: bool,
    /// `outboundTrafficPolicy.mode`, when set.
    pub outbound: Option<OutboundTrafficPolicy>,
}

/// One ServiceEntry with a `workloadSelector`, as read: the hosts its namespace's pods serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntryInfo {
    /// Where it came from (`file: ServiceEntry namespace/name`).
    pub origin: String,
    /// `metadata.namespace`: Istio selects its workloads in this namespace only.
    pub namespace: String,
    /// Its valid `hosts`, normalized (lowercase, no trailing dot) as `serves` holds them.
    pub hosts: Vec<String>,
}

/// Splits a YAML stream into objects, expanding `kind: List` (and `*List`) items.
pub fn documents(source_name: &str, text: &str) -> Result<Vec<Value>, ImportError> {
    let docs: Vec<Value> = crate::yaml::from_str_multiple(text).map_err(|e| ImportError {
        source_name: source_name.to_owned(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for v in docs {
        push_expanded(v, &mut out);
    }
    Ok(out)
}

fn push_expanded(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Null => {}
        Value::Object(ref o)
            if o.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && o.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = v.get("items").cloned() {
                for item in items {
                    push_expanded(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

fn is_sidecar(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Sidecar")
        && v.get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|a| a.starts_with("networking.istio.io/"))
}

fn is_service_entry(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("ServiceEntry")
        && matches!(
            v.get("apiVersion").and_then(Value::as_str),
            Some(
                "networking.istio.io/v1"
                    | "networking.istio.io/v1beta1"
                    | "networking.istio.io/v1alpha3"
            )
        )
}

/// Reads one ServiceEntry object for `serves`. Returns `None` when it gives its namespace's
/// pods no host (no `workloadSelector`), with a warning when that may matter.
pub fn parse_service_entry(
    source_name: &str,
    v: &Value,
    warnings: &mut Vec<String>,
) -> Option<ServiceEntryInfo> {
    let meta = v.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let Some(namespace) = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    else {
        warnings.push(format!(
            "{source_name}: ServiceEntry {name} has no metadata.namespace; skipped (use `kubectl get \
             serviceentries -A -o yaml`)"
        ));
        return None;
    };
    let origin = format!("{source_name}: ServiceEntry {namespace}/{name}");
    let spec = v.get("spec");
    let field = |key: &str| spec.and_then(|s| s.get(key)).filter(|f| !f.is_null());
    let raw_hosts: &[Value] = field("hosts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let has_endpoints = field("endpoints")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    // Any `workloadSelector`, even without labels: Istio then selects the namespace's workloads
    // by its (empty) labels, i.e. all of them.
    if field("workloadSelector").is_none() {
        // Explicit endpoints inside the mesh may be pods, of any namespace: their tenant then
        // serves these hosts, and import cannot tell which one from addresses.
        let mesh_internal = field("location").and_then(Value::as_str) == Some("MESH_INTERNAL");
        let addressed = field("endpoints")
            .and_then(Value::as_array)
            .is_some_and(|eps| {
                eps.iter().any(|e| {
                    e.get("address")
                        .and_then(Value::as_str)
                        .is_some_and(|a| !a.is_empty() && !a.starts_with("unix://"))
                })
            });
        if mesh_internal && addressed {
            let hosts: Vec<&str> = raw_hosts.iter().filter_map(Value::as_str).collect();
            warnings.push(format!(
                "{origin}: MESH_INTERNAL endpoints without a workloadSelector add nothing to `serves`; \
                 if they are pods of a tenant, add {hosts:?} to that tenant's `serves`, or its sharded \
                 destination plugin refuses them (undeclared-service)"
            ));
        }
        return None;
    }
    if has_endpoints {
        // Istio's validation: "only one of WorkloadSelector or Endpoints is allowed".
        warnings.push(format!(
            "{origin}: both a workloadSelector and endpoints (Istio refuses it); skipped"
        ));
        return None;
    }
    let mut hosts = Vec::new();
    for (i, raw) in raw_hosts.iter().enumerate() {
        let Some(text) = raw.as_str() else {
            warnings.push(format!(
                "{origin}: hosts[{i}]: not a string; not added to `serves`"
            ));
            continue;
        };
        match tenant_egress_core::pattern::parse_served(text) {
            // Istio's validation refuses `*` as a ServiceEntry host ("invalid host *").
            Ok(tenant_egress_core::pattern::HostPattern::All) => warnings.push(format!(
                "{origin}: hosts[{i}]: host \"*\" (Istio refuses it in a ServiceEntry); not added to \
                 `serves`"
            )),
            Ok(p) => hosts.push(p.to_string()),
            Err(e) => warnings.push(format!(
                "{origin}: hosts[{i}]: illegal host \"{text}\" {e}; not added to `serves`"
            )),
        }
    }
    Some(ServiceEntryInfo {
        origin,
        namespace: namespace.to_owned(),
        hosts,
    })
}

/// Reads one Sidecar object. Returns `None` (with a warning) when it cannot be used at all.
pub fn parse_sidecar(
    source_name: &str,
    v: &Value,
    warnings: &mut Vec<String>,
) -> Option<SidecarInfo> {
    let meta = v.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_owned();
    let Some(namespace) = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        warnings.push(format!(
            "{source_name}: Sidecar {name} has no metadata.namespace; skipped (use `kubectl get sidecars -A -o yaml`)"
        ));
        return None;
    };
    let origin = format!("{source_name}: Sidecar {namespace}/{name}");
    let empty = serde_json::Map::new();
    let spec = v.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    for (key, what) in [
        ("ingress", "ingress listeners"),
        ("inboundConnectionPool", "inboundConnectionPool"),
    ] {
        if spec.contains_key(key) {
            warnings.push(format!(
                "{origin}: {what} cannot be carried over (tenant-egress only handles egress); re-apply them separately"
            ));
        }
    }
    for key in spec.keys() {
        if !matches!(
            key.as_str(),
            "workloadSelector"
                | "egress"
                | "outboundTrafficPolicy"
                | "ingress"
                | "inboundConnectionPool"
        ) {
            warnings.push(format!("{origin}: field spec.{key} is not carried over"));
        }
    }
    let selector: Option<BTreeMap<String, String>> = spec
        .get("workloadSelector")
        .and_then(|s| s.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|l| !l.is_empty());
    let outbound = match spec.get("outboundTrafficPolicy") {
        None => None,
        Some(otp) => {
            if otp.get("egressProxy").is_some() {
                warnings.push(format!(
                    "{origin}: outboundTrafficPolicy.egressProxy cannot be carried over"
                ));
            }
            match otp.get("mode").and_then(Value::as_str) {
                // An empty mode is the proto enum's zero value.
                None | Some("REGISTRY_ONLY") => Some(OutboundTrafficPolicy::RegistryOnly),
                Some("ALLOW_ANY") => Some(OutboundTrafficPolicy::AllowAny),
                Some(other) => {
                    warnings.push(format!(
                        "{origin}: outboundTrafficPolicy.mode \"{other}\" is not REGISTRY_ONLY or ALLOW_ANY; treated as unset"
                    ));
                    None
                }
            }
        }
    };
    let mut listeners = Listeners::default();
    let raw_egress: &[Value] = spec
        .get("egress")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, l) in raw_egress.iter().enumerate() {
        let lp = format!("{origin}: egress[{i}]");
        for key in ["bind", "captureMode"] {
            if l.get(key).is_some() {
                warnings.push(format!(
                    "{lp}: {key} cannot be carried over (the generated listener uses Istio's default)"
                ));
            }
        }
        let mut hosts = Vec::new();
        for (h, raw) in l
            .get("hosts")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let Some(text) = raw.as_str() else {
                warnings.push(format!("{lp}.hosts[{h}]: not a string; skipped"));
                continue;
            };
            match text.parse::<HostEntry>() {
                Ok(e) => {
                    if !hosts.contains(&e) {
                        hosts.push(e);
                    }
                }
                Err(e) => warnings.push(format!(
                    "{lp}.hosts[{h}]: illegal host \"{text}\" {e}; skipped (Istio skips it too)"
                )),
            }
        }
        let port = l.get("port").and_then(|p| {
            let number = p.get("number").and_then(Value::as_i64)?;
            let protocol = p.get("protocol").and_then(Value::as_str).and_then(|raw| {
                raw.parse::<PortProtocol>()
                    .map_err(|e| {
                        warnings.push(format!(
                            "{lp}: {e} (Istio refuses it); imported without a protocol"
                        ))
                    })
                    .ok()
            });
            Some(PortSpec {
                number,
                protocol,
                name: p.get("name").and_then(Value::as_str).map(str::to_owned),
            })
        });
        match port {
            Some(spec) if spec.protocol == Some(PortProtocol::HttpProxy) => warnings.push(format!(
                "{lp}: an HTTP_PROXY listener (an explicit proxy serving every port) cannot be carried \
                 over: tenant-egress scopes egress per destination port; skipped"
            )),
            Some(spec) => match u16::try_from(spec.number).ok().filter(|n| *n > 0) {
                Some(n) if listeners.ports.contains_key(&n) => warnings.push(format!(
                    "{lp}: a second listener on port {n} (Istio refuses it); skipped"
                )),
                Some(n) => {
                    listeners.ports.insert(
                        n,
                        HostListener {
                            port: Some(spec),
                            hosts,
                        },
                    );
                }
                None => warnings.push(format!(
                    "{lp}: port {} is outside 1..65535; skipped",
                    spec.number
                )),
            },
            None if listeners.catch_all.is_some() => warnings.push(format!(
                "{lp}: a second listener without a port (Istio refuses it); skipped"
            )),
            None => listeners.catch_all = Some(HostListener { port: None, hosts }),
        }
    }
    let empty_egress = listeners.is_empty();
    if empty_egress {
        // Istio imports `*/*` when egress is empty.
        listeners = Listeners::everything();
    }
    Some(SidecarInfo {
        origin,
        namespace,
        name,
        selector,
        listeners,
        empty_egress,
        outbound,
    })
}

/// The entries that matter: an entry covered by another one of the same list adds nothing
/// (`./*` next to `*/*`), so it is left out of comparisons. Of entries that cover each other
/// (`./*` and `prod/*` in a Sidecar of namespace prod) the first stays. `own` is the Sidecar's
/// namespace (what `.` stands for), `None` when comparing across namespaces.
fn set<'a>(hosts: &'a [HostEntry], own: Option<&str>) -> BTreeSet<&'a HostEntry> {
    hosts
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            !hosts
                .iter()
                .enumerate()
                .any(|(j, w)| w != *e && w.covers(e, own) && !(j > *i && e.covers(w, own)))
        })
        .map(|(_, e)| e)
        .collect()
}

/// `base` entries that `want` neither lists nor covers, for a Sidecar in namespace `own`.
fn uncovered(base: &[HostEntry], want: &[HostEntry], own: &str) -> Vec<HostEntry> {
    base.iter()
        .filter(|e| !want.iter().any(|w| w == *e || w.covers(e, Some(own))))
        .cloned()
        .collect()
}

fn hosts_on(l: &Listeners, port: Option<u16>) -> &[HostEntry] {
    l.on_port(port).map_or(&[], |l| l.hosts.as_slice())
}

/// Splits off the exclusions, which a workload exception cannot carry (it only adds), with a
/// warning naming them.
fn imports_only(
    hosts: Vec<HostEntry>,
    origin: &str,
    where_: &str,
    warnings: &mut Vec<String>,
) -> Vec<HostEntry> {
    let (excl, imp): (Vec<HostEntry>, Vec<HostEntry>) = hosts.into_iter().partition(|e| e.exclude);
    if !excl.is_empty() {
        warnings.push(format!(
            "{origin}: {where_} it excludes {} beyond the namespace default; a workload exception only \
             adds, so the regenerated Sidecar does not (widens: move the exclusion to the namespace \
             default if every pod may lose it)",
            list(&excl)
        ));
    }
    imp
}

fn minus(a: &[HostEntry], b: &[HostEntry]) -> Vec<HostEntry> {
    a.iter().filter(|e| !b.contains(e)).cloned().collect()
}

fn list(hosts: &[HostEntry]) -> String {
    let v: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    v.join(", ")
}

fn changes(kept: &[HostEntry]) -> String {
    let (excl, imp): (Vec<HostEntry>, Vec<HostEntry>) =
        kept.iter().cloned().partition(|e| e.exclude);
    let mut parts = Vec::new();
    if !imp.is_empty() {
        parts.push(format!(
            "widens: the selected pods may also reach {}",
            list(&imp)
        ));
    }
    if !excl.is_empty() {
        parts.push(format!("narrows: the exclusions {} stay", list(&excl)));
    }
    parts.join("; ")
}

/// The workload exception whose merge with `tenant` gives `target` (both Sidecars of namespace
/// `ns`), when possible; otherwise the closest one, with warnings saying how the result differs.
pub fn exception_for(
    tenant: &Listeners,
    target: &Listeners,
    ns: &str,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Listeners {
    let mut e = Listeners::default();
    let tc: &[HostEntry] = tenant
        .catch_all
        .as_ref()
        .map_or(&[], |l| l.hosts.as_slice());
    match &target.catch_all {
        Some(wc) => {
            let extra = imports_only(minus(&wc.hosts, tc), origin, "on other ports", warnings);
            if !extra.is_empty() {
                e.catch_all = Some(HostListener {
                    port: None,
                    hosts: extra,
                });
            }
            let kept = uncovered(tc, &wc.hosts, ns);
            if !kept.is_empty() {
                warnings.push(format!(
                    "{origin}: its catch-all listener lacks {} of the namespace default; a workload \
                     exception can only add, so the regenerated Sidecar keeps them ({})",
                    list(&kept),
                    changes(&kept)
                ));
            }
        }
        None if !tc.is_empty() => warnings.push(format!(
            "{origin}: it has no catch-all listener but the namespace default has one; on ports it \
             does not list, the regenerated Sidecar exposes the default's {} ({})",
            list(tc),
            changes(tc)
        )),
        None => {}
    }
    let ports: BTreeSet<u16> = tenant
        .ports
        .keys()
        .chain(target.ports.keys())
        .copied()
        .collect();
    for p in ports {
        let want: &[HostEntry] = hosts_on(target, Some(p));
        let wspec = target.ports.get(&p).and_then(|l| l.port.clone());
        let (spec, base): (Option<PortSpec>, &[HostEntry]) = match tenant.ports.get(&p) {
            Some(tl) => {
                let tspec = tl.port.clone();
                let tproto = tspec.as_ref().and_then(|s| s.protocol);
                if let Some(w) = &wspec {
                    if w.protocol != tproto {
                        warnings.push(format!(
                            "{origin}: port {p} has protocol {} but the namespace default's has {}; a \
                             workload exception keeps the namespace default's, and so does the \
                             regenerated Sidecar",
                            proto(w.protocol),
                            proto(tproto)
                        ));
                    }
                }
                // Without a listener of its own for p, the exception contributes its catch-all.
                let mut undeclared: Vec<HostEntry> = tl.hosts.clone();
                for h in e.catch_all.iter().flat_map(|l| &l.hosts) {
                    if !undeclared.contains(h) {
                        undeclared.push(h.clone());
                    }
                }
                if set(&undeclared, Some(ns)) == set(want, Some(ns)) {
                    continue;
                }
                (tspec, &tl.hosts)
            }
            None => {
                let mut spec = wspec;
                if let Some(s) = spec.as_mut() {
                    if !tc.is_empty() && s.protocol.is_some_and(PortProtocol::is_http_only) {
                        warnings.push(format!(
                            "{origin}: port {p} is {} in it, but the namespace default serves port {p} \
                             from its catch-all to TCP too; a workload exception cannot close it to \
                             TCP, so the regenerated Sidecar declares port {p} without a protocol \
                             (widens: TCP to {})",
                            proto(s.protocol),
                            list(tc)
                        ));
                        s.protocol = None;
                    }
                }
                (spec, tc)
            }
        };
        let mut add = imports_only(minus(want, base), origin, &format!("on port {p}"), warnings);
        if add.is_empty() {
            add = want.iter().filter(|h| !h.exclude).cloned().collect();
        }
        let kept = uncovered(base, want, ns);
        if !kept.is_empty() {
            warnings.push(format!(
                "{origin}: on port {p} it lacks {} of the namespace default; a workload exception can \
                 only add, so the regenerated Sidecar keeps them ({})",
                list(&kept),
                changes(&kept)
            ));
        }
        if add.is_empty() {
            // Nothing to declare with (the target admits nothing on this port): the merge keeps
            // the tenant's hosts, already reported above.
            continue;
        }
        let port = spec.unwrap_or(PortSpec {
            number: i64::from(p),
            protocol: None,
            name: None,
        });
        e.ports.insert(
            p,
            HostListener {
                port: Some(port),
                hosts: add,
            },
        );
    }
    e
}

fn proto(p: Option<PortProtocol>) -> String {
    p.map_or_else(|| "(none)".to_owned(), |p| p.to_string())
}

/// Checks that two Sidecar egresses admit the same host entries on every port (those either
/// declares, and every other port through the catch-all), TCP included. The error lists the
/// differences.
pub fn same_admission(a: &Listeners, b: &Listeners) -> Result<(), String> {
    let mut diffs = Vec::new();
    let ports: BTreeSet<u16> = a.ports.keys().chain(b.ports.keys()).copied().collect();
    let mut check = |what: String, port: Option<u16>| {
        let (sx, sy) = (set(hosts_on(a, port), None), set(hosts_on(b, port), None));
        if sx != sy {
            let only_a: Vec<String> = sx.difference(&sy).map(|h| h.to_string()).collect();
            let only_b: Vec<String> = sy.difference(&sx).map(|h| h.to_string()).collect();
            diffs.push(format!(
                "{what}: only before {only_a:?}, only after {only_b:?}"
            ));
        }
        let tcp = |l: &Listeners| l.on_port(port).is_some_and(|l| opens_tcp(l.port.as_ref()));
        if tcp(a) != tcp(b) {
            diffs.push(format!(
                "{what}: TCP {} before, {} after",
                if tcp(a) { "open" } else { "closed" },
                if tcp(b) { "open" } else { "closed" }
            ));
        }
    };
    for p in ports {
        check(format!("port {p}"), Some(p));
    }
    check("other ports".into(), None);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// The listeners of every Sidecar in `docs`, keyed by (namespace, selector as `k=v,...` or
/// empty). For comparing what two sets of Sidecars admit.
pub fn admitted(docs: &[Value]) -> BTreeMap<(String, String), Listeners> {
    let mut warnings = Vec::new();
    let mut out = BTreeMap::new();
    for v in docs.iter().filter(|v| is_sidecar(v)) {
        if let Some(s) = parse_sidecar("", v, &mut warnings) {
            let sel = s
                .selector
                .as_ref()
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            out.insert((s.namespace, sel), s.listeners);
        }
    }
    out
}

fn workload_name(raw: &str, taken: &BTreeSet<String>) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_owned();
    name.truncate(55);
    name = name.trim_end_matches('-').to_owned();
    if name.is_empty() {
        name = "workload".into();
    }
    if name == super::DEFAULT_SIDECAR_NAME {
        name = "default-workload".into();
    }
    let mut candidate = name.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    candidate
}

/// Imports Sidecars (and the ServiceEntries that fill `serves`) from named YAML texts.
pub fn import(inputs: &[(String, String)], root_namespace: &str) -> Result<Imported, ImportError> {
    let mut warnings = Vec::new();
    let mut sidecars: Vec<SidecarInfo> = Vec::new();
    let mut entries: Vec<ServiceEntryInfo> = Vec::new();
    for (source_name, text) in inputs {
        for (i, v) in documents(source_name, text)?.into_iter().enumerate() {
            if is_service_entry(&v) {
                entries.extend(parse_service_entry(source_name, &v, &mut warnings));
                continue;
            }
            if !is_sidecar(&v) {
                let kind = v.get("kind").and_then(Value::as_str).unwrap_or("(no kind)");
                let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                warnings.push(format!(
                    "{source_name}: document {} is {kind} {api}, not a networking.istio.io Sidecar \
                     or ServiceEntry; skipped",
                    i + 1
                ));
                continue;
            }
            if let Some(s) = parse_sidecar(source_name, &v, &mut warnings) {
                sidecars.push(s);
            }
        }
    }
    // Namespace -> (selector-less, workload-specific), each sorted by name.
    let mut by_ns: BTreeMap<String, (Vec<SidecarInfo>, Vec<SidecarInfo>)> = BTreeMap::new();
    let mut root_default: Option<SidecarInfo> = None;
    sidecars.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for s in sidecars {
        if s.namespace == root_namespace {
            if s.selector.is_some() {
                warnings.push(format!(
                    "{}: a Sidecar with a workloadSelector in the root namespace {root_namespace} applies \
                     only to pods of {root_namespace} itself, not mesh-wide; skipped",
                    s.origin
                ));
            } else if root_default.is_some() {
                warnings.push(format!(
                    "{}: a second selector-less Sidecar in the root namespace (Istio: undefined which \
                     applies); skipped",
                    s.origin
                ));
            } else {
                let shared: Vec<String> = s
                    .listeners
                    .catch_all
                    .iter()
                    .flat_map(|l| &l.hosts)
                    .filter(|e| {
                        !e.exclude && e.host == tenant_egress_core::pattern::HostPattern::All
                    })
                    .filter_map(|e| match &e.namespace {
                        NsSelector::Named(n) => Some(n.clone()),
                        _ => None,
                    })
                    .collect();
                warnings.push(format!(
                    "{}: the root namespace's selector-less Sidecar is the mesh default for every namespace \
                     without a Sidecar of its own; it is not a tenant (those namespaces are not known from \
                     Sidecars), it is only the starting point of namespaces that have nothing but workload \
                     Sidecars. Regenerate it with `generate --emit-root-default{}`",
                    s.origin,
                    if shared.is_empty() {
                        String::new()
                    } else {
                        format!(" --shared-namespaces {}", shared.join(","))
                    }
                ));
                root_default = Some(s);
            }
            continue;
        }
        let slot = by_ns.entry(s.namespace.clone()).or_default();
        if s.selector.is_some() {
            slot.1.push(s);
        } else {
            slot.0.push(s);
        }
    }
    let mut tenants = Vec::new();
    for (ns, (defaults, workloads)) in by_ns {
        if let Err(e) = tenant_egress_core::name::check_namespace(&ns) {
            warnings.push(format!(
                "namespace \"{ns}\" is not a valid namespace name ({e}); skipped"
            ));
            continue;
        }
        for extra in defaults.iter().skip(1) {
            warnings.push(format!(
                "{}: a second selector-less Sidecar in namespace {ns} (Istio: undefined which applies); \
                 skipped, {} is used",
                extra.origin,
                defaults.first().map(|d| d.name.as_str()).unwrap_or("")
            ));
        }
        if let Some(d) = defaults.first() {
            if d.name != super::DEFAULT_SIDECAR_NAME {
                warnings.push(format!(
                    "{}: the generated namespace default is named \"{}\"; delete this one when you apply \
                     the generated Sidecars (two selector-less Sidecars in one namespace: Istio uses \
                     one of them, which is undefined): kubectl -n {ns} delete sidecar {}",
                    d.origin,
                    super::DEFAULT_SIDECAR_NAME,
                    d.name
                ));
            }
        }
        let (base, outbound) = match defaults.first().or(root_default.as_ref()) {
            Some(d) => {
                if defaults.is_empty() {
                    warnings.push(format!(
                        "namespace {ns} has only workload-specific Sidecars; its other pods use the root \
                         default {}, which becomes the tenant's egress",
                        d.origin
                    ));
                } else if d.empty_egress {
                    warnings.push(format!(
                        "{}: no egress listeners, so Istio imports \"*/*\" (every namespace); imported as such",
                        d.origin
                    ));
                }
                let outbound = d.outbound.unwrap_or_else(|| {
                    warnings.push(format!(
                        "{}: no outboundTrafficPolicy, so it follows the mesh's; imported as ALLOW_ANY \
                         (Istio's default): set it explicitly if your mesh says otherwise",
                        d.origin
                    ));
                    OutboundTrafficPolicy::AllowAny
                });
                (d.listeners.clone(), outbound)
            }
            None => {
                warnings.push(format!(
                    "namespace {ns} has only workload-specific Sidecars and there is no root default: its \
                     other pods import \"*/*\" with the mesh's outboundTrafficPolicy; imported as \"*/*\" \
                     and ALLOW_ANY"
                ));
                (Listeners::everything(), OutboundTrafficPolicy::AllowAny)
            }
        };
        let mut taken = BTreeSet::new();
        let mut exceptions = Vec::new();
        for w in &workloads {
            if w.empty_egress {
                warnings.push(format!(
                    "{}: a workload-specific Sidecar with no egress: Istio does not inherit the namespace \
                     default, it imports \"*/*\" for these pods (probably not intended); imported as such",
                    w.origin
                ));
            }
            if let Some(o) = w.outbound {
                if o != outbound {
                    warnings.push(format!(
                        "{}: outboundTrafficPolicy {} differs from the namespace's {}; a tenant has one, so \
                         the regenerated Sidecar uses {}",
                        w.origin,
                        o.as_str(),
                        outbound.as_str(),
                        outbound.as_str()
                    ));
                }
            }
            let extra = exception_for(&base, &w.listeners, &ns, &w.origin, &mut warnings);
            let name = workload_name(&w.name, &taken);
            if name != w.name {
                warnings.push(format!(
                    "{}: exception named \"{name}\" (a workload name is a DNS-1123 label, not \"default\"); \
                     delete this Sidecar when you apply the generated one (two Sidecars selecting the \
                     same pods: Istio uses one of them, which is undefined): kubectl -n {ns} delete sidecar {}",
                    w.origin, w.name
                ));
            }
            taken.insert(name.clone());
            exceptions.push(WorkloadSpec {
                name,
                selector: w.selector.clone().unwrap_or_default(),
                service_accounts: Vec::new(),
                egress: extra.to_egress(),
            });
        }
        tenants.push(TenantSpec {
            index: None,
            name: ns.clone(),
            namespaces: vec![ns],
            mode: None,
            outbound_traffic_policy: outbound,
            egress: base.to_egress(),
            workloads: exceptions,
            inbound: Vec::new(),
            serves: Vec::new(),
        });
    }
    // Each ServiceEntry's hosts to its namespace's tenant (one namespace per tenant here).
    for se in entries {
        match tenants.iter_mut().find(|t| t.namespaces.contains(&se.namespace)) {
            Some(t) => t.serves.extend(se.hosts),
            None => warnings.push(format!(
                "{}: namespace {} gets no tenant (no Sidecar of its own, or the root namespace), so \
                 the hosts its pods serve ({}) are in no `serves`; if it becomes a tenant, declare \
                 them there",
                se.origin,
                se.namespace,
                se.hosts.join(", ")
            )),
        }
    }
    for t in &mut tenants {
        t.serves.sort();
        t.serves.dedup();
    }
    let mut spec = PolicySpec {
        api_version: API_VERSION.to_owned(),
        // Audit: applying the import changes nothing today's Sidecars do (the generated
        // ones scope the same) and the filter only reports. Tenants are then enforced one
        // at a time with their own `mode`.
        mode: Mode::Audit,
        cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
        unknown_source: UnknownSource::Allow,
        deny_status: DEFAULT_DENY_STATUS,
        deny_body: Default::default(),
        shared_namespaces: Vec::new(),
        // Sidecars do not say which addresses are the cluster's: `import --service-cidr
        // --pod-cidr` (or the validate warning) fills them in.
        cluster_networks: Vec::new(),
        gateways: Gateways::Passthrough,
        tenants,
        delegated_namespaces: Vec::new(),
        known_namespaces: String::new(),
        destination_shard: String::new(),
        tenant_directory: String::new(),
        trust_domains: Vec::new(),
    };
    // The Sidecars name these on purpose today (istio-system, a shared monitoring): declared
    // shared, so that validation's typo warning is kept for what is new.
    spec.shared_namespaces = tenant_egress_core::validate::unowned_namespaces(&spec)
        .into_keys()
        .collect();
    Ok(Imported { spec, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: Value) -> Listeners {
        let mut w = Vec::new();
        let doc = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "x", "namespace": "ns"}, "spec": {"egress": v}});
        parse_sidecar("t", &doc, &mut w).unwrap().listeners
    }

    #[test]
    fn difference_round_trips_when_representable() {
        let t = l(serde_json::json!([
            {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./db.ns.svc.cluster.local"]},
            {"hosts": ["./*", "istio-system/*"]}
        ]));
        let w = l(serde_json::json!([
            {"port": {"number": 26257, "protocol": "TCP"}, "hosts": ["./db.ns.svc.cluster.local", "prod/*"]},
            {"port": {"number": 9090}, "hosts": ["./*", "istio-system/*", "monitoring/*"]},
            {"hosts": ["./*", "istio-system/*", "logs/*"]}
        ]));
        let mut warnings = Vec::new();
        let e = exception_for(&t, &w, "ns", "w", &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        same_admission(&t.merge(&e), &w).unwrap();
        // Minimal: only what the tenant lacks.
        assert_eq!(
            e.to_egress()
                .iter()
                .map(|x| x.hosts.clone())
                .collect::<Vec<_>>(),
            vec![
                vec!["monitoring/*".to_string()],
                vec!["prod/*".to_string()],
                vec!["logs/*".to_string()]
            ]
        );
    }

    #[test]
    fn dropping_hosts_widens_with_a_warning() {
        let t = l(serde_json::json!([{"hosts": ["./*", "istio-system/*", "~/evil.example.com"]}]));
        let w = l(serde_json::json!([{"hosts": ["./*"]}]));
        let mut warnings = Vec::new();
        let e = exception_for(&t, &w, "ns", "w", &mut warnings);
        assert!(e.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("widens") && warnings[0].contains("istio-system/*"));
        assert!(warnings[0].contains("narrows") && warnings[0].contains("~/evil.example.com"));
        assert!(same_admission(&t.merge(&e), &w).is_err());
    }

    #[test]
    fn exception_catch_all_must_not_leak_onto_tenant_ports() {
        // The tenant's port 80 listener is exact; the workload adds a catch-all host that it does
        // NOT want on port 80, so the exception must redeclare port 80.
        let t = l(serde_json::json!([
            {"port": {"number": 80}, "hosts": ["foo/*"]},
            {"hosts": ["./*"]}
        ]));
        let w = l(serde_json::json!([
            {"port": {"number": 80}, "hosts": ["foo/*"]},
            {"hosts": ["./*", "bar/*"]}
        ]));
        let mut warnings = Vec::new();
        let e = exception_for(&t, &w, "ns", "w", &mut warnings);
        same_admission(&t.merge(&e), &w).unwrap_or_else(|d| panic!("{d}; {warnings:?}"));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    fn import_one(default_egress: &str, workload_egress: &str) -> Imported {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: ns}}\n\
             spec:\n  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}\n  egress: {default_egress}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: w, namespace: ns}}\n\
             spec:\n  workloadSelector: {{labels: {{app: w}}}}\n  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}\n  egress: {workload_egress}\n"
        );
        let imported = import(&[("t.yaml".into(), yaml)], "istio-system").unwrap();
        // Whatever the warnings, the result is a valid policy.
        tenant_egress_core::Policy::from_spec(&imported.spec)
            .unwrap_or_else(|e| panic!("{e}: {:?}", imported.spec));
        imported
    }

    #[test]
    fn exclusions_a_workload_sidecar_adds_are_dropped_with_a_warning() {
        let i = import_one(
            r#"[{hosts: ["./*", "*/*.example.com"]}]"#,
            r#"[{hosts: ["./*", "*/*.example.com", "~/secret.example.com", "x/*"]}]"#,
        );
        let w = &i.spec.tenants[0].workloads[0];
        assert_eq!(w.egress.len(), 1);
        assert_eq!(w.egress[0].hosts, vec!["x/*".to_owned()]);
        assert!(
            i.warnings
                .iter()
                .any(|w| w.contains("excludes \"~/secret.example.com\"") && w.contains("widens")),
            "{:?}",
            i.warnings
        );
    }

    #[test]
    fn port_protocols_follow_the_exception_rules() {
        // The workload redeclares the namespace's TCP port as HTTP and declares an HTTP port
        // the namespace's catch-all serves: neither can be an exception, both are warned about.
        let i = import_one(
            r#"[{port: {number: 26257, protocol: TCP}, hosts: ["./*"]}, {hosts: ["./*"]}]"#,
            r#"[{port: {number: 26257, protocol: HTTP}, hosts: ["./*", "logmonkey/*"]},
               {port: {number: 9200, protocol: HTTP}, hosts: ["./*", "logging/*"]},
               {hosts: ["./*"]}]"#,
        );
        let w = &i.spec.tenants[0].workloads[0];
        let ports: Vec<(i64, Option<PortProtocol>)> = w
            .egress
            .iter()
            .filter_map(|e| e.port.as_ref().map(|p| (p.number, p.protocol)))
            .collect();
        assert_eq!(ports, vec![(9200, None), (26257, Some(PortProtocol::Tcp))]);
        let text = i.warnings.join("\n");
        assert!(
            text.contains("port 26257 has protocol HTTP but the namespace default's has TCP"),
            "{text}"
        );
        assert!(
            text.contains("port 9200 is HTTP in it") && text.contains("widens"),
            "{text}"
        );
    }

    const PROD_SIDECAR: &str = "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
        metadata: {name: default, namespace: prod}\n\
        spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}, egress: [{hosts: [\"./*\"]}]}\n";

    /// Imports prod's Sidecar followed by `entries` (YAML documents).
    fn import_with(entries: &str) -> Imported {
        let yaml = format!("{PROD_SIDECAR}---\n{entries}");
        let imported = import(&[("t.yaml".into(), yaml)], "istio-system").unwrap();
        tenant_egress_core::Policy::from_spec(&imported.spec)
            .unwrap_or_else(|e| panic!("{e}: {:?}", imported.spec));
        imported
    }

    fn serves(i: &Imported) -> Vec<&str> {
        i.spec.tenants[0]
            .serves
            .iter()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn a_selector_service_entry_fills_its_namespaces_serves() {
        let i = import_with(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {name: db, namespace: prod}\n\
             spec: {hosts: [db.prod.example.com, \"*.Internal.Example.com.\"], \
             workloadSelector: {labels: {app: db}}, location: MESH_INTERNAL, resolution: STATIC, \
             ports: [{number: 5432, name: tcp, protocol: TCP}]}\n\
             ---\n\
             apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\n\
             metadata: {name: db-again, namespace: prod}\n\
             spec: {hosts: [db.prod.example.com, a.prod.example.com], workloadSelector: {}}\n",
        );
        // Sorted, deduplicated, normalized as validation reads them.
        assert_eq!(
            serves(&i),
            vec![
                "*.internal.example.com",
                "a.prod.example.com",
                "db.prod.example.com"
            ]
        );
        assert!(
            i.warnings.iter().all(|w| !w.contains("ServiceEntry")),
            "{:?}",
            i.warnings
        );
    }

    #[test]
    fn a_service_entry_without_selector_adds_nothing() {
        let i = import_with(
            "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\n\
             metadata: {name: github, namespace: prod}\n\
             spec: {hosts: [api.github.com], location: MESH_EXTERNAL, resolution: DNS}\n\
             ---\n\
             apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {name: legacy, namespace: prod}\n\
             spec: {hosts: [legacy.prod.example.com], location: MESH_INTERNAL, resolution: STATIC, \
             endpoints: [{address: 10.244.1.7}]}\n",
        );
        assert!(serves(&i).is_empty(), "{:?}", serves(&i));
        // External hosts go unmentioned; mesh-internal endpoints get a note naming the hosts.
        let notes: Vec<&String> = i
            .warnings
            .iter()
            .filter(|w| w.contains("ServiceEntry"))
            .collect();
        assert_eq!(notes.len(), 1, "{:?}", i.warnings);
        assert!(
            notes[0].contains("ServiceEntry prod/legacy")
                && notes[0].contains("\"legacy.prod.example.com\"")
                && notes[0].contains("`serves`"),
            "{notes:?}"
        );
    }

    #[test]
    fn an_illegal_served_host_is_skipped_with_a_warning() {
        let i = import_with(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {name: mixed, namespace: prod}\n\
             spec: {hosts: [ok.prod.example.com, \"10.0.0.1\", \"a.*.example.com\", \"*\"], \
             workloadSelector: {labels: {app: x}}}\n",
        );
        assert_eq!(serves(&i), vec!["ok.prod.example.com"]);
        let text = i.warnings.join("\n");
        for needle in [
            "t.yaml: ServiceEntry prod/mixed: hosts[1]: illegal host \"10.0.0.1\"",
            "t.yaml: ServiceEntry prod/mixed: hosts[2]: illegal host \"a.*.example.com\"",
            "t.yaml: ServiceEntry prod/mixed: hosts[3]: host \"*\" (Istio refuses it",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn a_service_entry_outside_every_tenant_is_reported() {
        let i = import_with(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {name: cache, namespace: shared}\n\
             spec: {hosts: [cache.shared.example.com], workloadSelector: {labels: {app: cache}}}\n\
             ---\n\
             apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {name: root, namespace: istio-system}\n\
             spec: {hosts: [root.example.com], workloadSelector: {labels: {app: r}}}\n",
        );
        assert_eq!(i.spec.tenants.len(), 1);
        assert!(serves(&i).is_empty());
        let text = i.warnings.join("\n");
        for needle in [
            "ServiceEntry shared/cache: namespace shared gets no tenant",
            "(cache.shared.example.com) are in no `serves`",
            "ServiceEntry istio-system/root: namespace istio-system gets no tenant",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn a_service_entry_with_selector_and_endpoints_is_refused_as_istio_does() {
        let i = import_with(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {name: both, namespace: prod}\n\
             spec: {hosts: [both.example.com], workloadSelector: {labels: {app: x}}, \
             endpoints: [{address: 10.0.0.1}]}\n",
        );
        assert!(serves(&i).is_empty());
        assert!(
            i.warnings.iter().any(
                |w| w.contains("ServiceEntry prod/both: both a workloadSelector and endpoints")
            ),
            "{:?}",
            i.warnings
        );
    }

    #[test]
    fn the_own_namespace_is_the_sidecars_namespace() {
        // `ns/*` in a Sidecar of namespace ns is `./*`: nothing is lacking.
        let i = import_one(r#"[{hosts: ["./*"]}]"#, r#"[{hosts: ["ns/*", "x/*"]}]"#);
        assert!(
            i.warnings.iter().all(|w| !w.contains("lacks")),
            "{:?}",
            i.warnings
        );
    }
}
