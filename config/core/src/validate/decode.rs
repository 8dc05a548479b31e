//! Pass 2: the decode of a shape-checked [`Value`] into a [`PolicySpec`], written out by hand.
//!
//! Why not `serde_json::from_value`: the filter carries this code into every sidecar VM, and
//! serde's derived decoders over a `Value` pull in serde_json's `Value` deserializers and,
//! through `serde::de::Unexpected`'s `Display` (its float arm), core's float formatting:
//! about 40 KB of the .wasm, for a decode that pass 1 has already made total. The derived
//! `Deserialize` stays on the spec types for Rust callers; the test
//! `decode_matches_serde` in `tests.rs` pins this decoder to it, so the two cannot drift.
//!
//! Every function returns `None` on a shape pass 1 should have refused; the caller reports
//! that as an error instead of panicking.

use serde_json::{Map, Value};

use crate::listeners::PortProtocol;
use crate::spec::{
    DenyBody, EgressSpec, Gateways, InboundSpec, Mode, OutboundTrafficPolicy, PolicySpec, PortSpec,
    TenantSpec, UnknownSource, WorkloadSpec, DEFAULT_CLUSTER_DOMAIN, DEFAULT_DENY_STATUS,
};

fn object(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn strings(v: Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => items.into_iter().map(string).collect(),
        _ => None,
    }
}

fn list<T>(v: Option<Value>, item: fn(Value) -> Option<T>) -> Option<Vec<T>> {
    match v {
        None => Some(Vec::new()),
        Some(Value::Array(items)) => items.into_iter().map(item).collect(),
        Some(_) => None,
    }
}

/// An optional field holding one of the given (wire name, value) pairs; absent = default.
fn choice<T: Copy + Default>(v: Option<Value>, names: &[(&str, T)]) -> Option<T> {
    match v {
        None => Some(T::default()),
        Some(v) => {
            let s = v.as_str()?;
            names.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
        }
    }
}

const MODES: &[(&str, Mode)] = &[("enforce", Mode::Enforce), ("audit", Mode::Audit)];

/// The whole document.
pub(super) fn policy(v: Value) -> Option<PolicySpec> {
    let mut m = object(v)?;
    Some(PolicySpec {
        api_version: string(m.remove("apiVersion")?)?,
        mode: choice(m.remove("mode"), MODES)?,
        cluster_domain: match m.remove("clusterDomain") {
            None => DEFAULT_CLUSTER_DOMAIN.to_owned(),
            Some(v) => string(v)?,
        },
        unknown_source: choice(
            m.remove("unknownSource"),
            &[
                ("deny", UnknownSource::Deny),
                ("allow", UnknownSource::Allow),
            ],
        )?,
        deny_status: match m.remove("denyStatus") {
            None => DEFAULT_DENY_STATUS,
            Some(v) => u16::try_from(v.as_i64()?).ok()?,
        },
        deny_body: choice(
            m.remove("denyBody"),
            &[("terse", DenyBody::Terse), ("full", DenyBody::Full)],
        )?,
        shared_namespaces: match m.remove("sharedNamespaces") {
            None => Vec::new(),
            Some(v) => strings(v)?,
        },
        cluster_networks: match m.remove("clusterNetworks") {
            None => Vec::new(),
            Some(v) => strings(v)?,
        },
        gateways: choice(
            m.remove("gateways"),
            &[
                ("passthrough", Gateways::Passthrough),
                ("enforce", Gateways::Enforce),
            ],
        )?,
        trust_domains: match m.remove("trustDomains") {
            None => Vec::new(),
            Some(v) => strings(v)?,
        },
        tenants: list(Some(m.remove("tenants")?), tenant)?,
        delegated_namespaces: match m.remove("delegatedNamespaces") {
            None => Vec::new(),
            Some(v) => strings(v)?,
        },
        known_namespaces: match m.remove("knownNamespaces") {
            None => String::new(),
            Some(v) => string(v)?,
        },
        destination_shard: match m.remove("destinationShard") {
            None => String::new(),
            Some(v) => string(v)?,
        },
        tenant_directory: match m.remove("tenantDirectory") {
            None => String::new(),
            Some(v) => string(v)?,
        },
    })
}

fn tenant(v: Value) -> Option<TenantSpec> {
    let mut m = object(v)?;
    Some(TenantSpec {
        index: match m.remove("index") {
            None => None,
            Some(v) => Some(u32::try_from(v.as_u64()?).ok()?),
        },
        name: string(m.remove("name")?)?,
        namespaces: strings(m.remove("namespaces")?)?,
        mode: match m.remove("mode") {
            None => None,
            v => Some(choice(v, MODES)?),
        },
        outbound_traffic_policy: choice(
            m.remove("outboundTrafficPolicy"),
            &[
                ("REGISTRY_ONLY", OutboundTrafficPolicy::RegistryOnly),
                ("ALLOW_ANY", OutboundTrafficPolicy::AllowAny),
            ],
        )?,
        egress: list(m.remove("egress"), egress)?,
        workloads: list(m.remove("workloads"), workload)?,
        inbound: list(m.remove("inbound"), inbound)?,
        serves: match m.remove("serves") {
            None => Vec::new(),
            Some(v) => strings(v)?,
        },
    })
}

fn inbound(v: Value) -> Option<InboundSpec> {
    let mut m = object(v)?;
    Some(InboundSpec {
        namespace: string(m.remove("namespace")?)?,
        service_accounts: match m.remove("serviceAccounts") {
            None => Vec::new(),
            Some(v) => strings(v)?,
        },
    })
}

fn egress(v: Value) -> Option<EgressSpec> {
    let mut m = object(v)?;
    Some(EgressSpec {
        port: match m.remove("port") {
            None => None,
            Some(v) => Some(port(v)?),
        },
        hosts: strings(m.remove("hosts")?)?,
        host_index: match m.remove("hostIndex") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect::<Option<_>>()?,
            Some(_) => return None,
        },
    })
}

fn port(v: Value) -> Option<PortSpec> {
    let mut m = object(v)?;
    Some(PortSpec {
        number: m.remove("number")?.as_i64()?,
        protocol: match m.remove("protocol") {
            None => None,
            Some(v) => Some(v.as_str()?.parse::<PortProtocol>().ok()?),
        },
        name: match m.remove("name") {
            None => None,
            Some(v) => Some(string(v)?),
        },
    })
}

fn workload(v: Value) -> Option<WorkloadSpec> {
    let mut m = object(v)?;
    Some(WorkloadSpec {
        name: string(m.remove("name")?)?,
        selector: match m.remove("selector") {
            None => Default::default(),
            Some(v) => object(v)?
                .into_iter()
                .map(|(k, v)| Some((k, string(v)?)))
                .collect::<Option<_>>()?,
        },
        service_accounts: match m.remove("serviceAccounts") {
            None => Vec::new(),
            Some(v) => strings(v)?,
        },
        egress: list(m.remove("egress"), egress)?,
    })
}
