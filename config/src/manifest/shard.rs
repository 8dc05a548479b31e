//! Sharded distribution (`generate --shard namespace`, the default) and the object size limit.
//!
//! One plugin per tenant namespace carries only that namespace's shard of the policy
//! ([`tenant_egress_core::shard::shard_for`]), so a sidecar's VM compiles one tenant, and no
//! object grows with the cluster. Namespaces no tenant owns are decided by a small mesh-wide
//! fallback plugin in the root namespace ([`tenant_egress_core::shard::fallback`]): its document
//! has no tenant (`unknownSource` decides) and lists the tenant namespaces as
//! `delegatedNamespaces`, where the filter stands aside (`tenant_egress.fallback_skipped`), so a
//! pod that gets both plugins has its requests decided once, by its namespace's plugin.

use tenant_egress_core::shard::{fallback, Sharder};
use tenant_egress_core::spec::PolicySpec;

use super::{plugin_namespaces, to_value, Doc, GenerateError, Options, WasmScope, TENANT_LABEL};
use crate::yaml::Value;

/// How the policy is distributed to the sidecars (`generate --shard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shard {
    /// One plugin per tenant namespace with only its tenant, plus a mesh-wide fallback for
    /// namespaces no tenant owns (the default).
    Namespace,
    /// One plugin (per `--wasm-scope`) carrying the whole policy: small policies, or clusters
    /// that want one object.
    None,
}

/// The default `--max-object-bytes`: what `kubectl apply` (client-side) can store in its
/// `last-applied-configuration` annotation (all annotations of an object: 256 KiB).
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 256 * 1024;
/// The largest `--max-object-bytes`: etcd's default request limit (1.5 MiB), above which the
/// API server refuses the object whatever the client.
pub const ETCD_MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Where one plugin goes and what it carries.
pub(crate) struct Placement {
    /// Its namespace.
    pub namespace: String,
    /// Its `pluginConfig` (a policy document).
    pub config: Value,
    /// Extra labels: the tenant of a shard.
    pub labels: Vec<(&'static str, String)>,
    /// Whether this is the mesh-wide fallback of a sharded set.
    pub fallback: bool,
}

/// The plugins to emit: with `--shard none`, the whole policy in every plugin namespace;
/// sharded, the fallback in the root namespace (unless `--wasm-scope namespace`) and each
/// tenant namespace's shard.
pub(crate) fn placements(
    spec: &PolicySpec,
    opts: &Options,
) -> Result<Vec<Placement>, GenerateError> {
    if opts.wasm.shard == Shard::None {
        let config = to_value(spec)?;
        return Ok(plugin_namespaces(spec, opts)?
            .into_iter()
            .map(|ns| Placement {
                namespace: ns.to_owned(),
                config: config.clone(),
                labels: Vec::new(),
                fallback: false,
            })
            .collect());
    }
    // Refuses what it refuses unsharded (`--wasm-namespaces` without `--wasm-scope namespace`: a
    // staged rollout must not start the mesh-wide fallback).
    plugin_namespaces(spec, opts)?;
    // The shards go where a namespace-scoped plugin goes (all tenant namespaces, or the
    // `--wasm-namespaces` of a staged rollout).
    let mut per_ns = opts.clone();
    per_ns.wasm.scope = WasmScope::Namespace;
    let namespaces = plugin_namespaces(spec, &per_ns)?;
    let mut out = Vec::with_capacity(namespaces.len() + 1);
    if opts.wasm.scope == WasmScope::Mesh {
        out.push(Placement {
            namespace: opts.root_namespace.clone(),
            config: to_value(&fallback(spec))?,
            labels: Vec::new(),
            fallback: true,
        });
    }
    let sharder = Sharder::new(spec);
    for ns in namespaces {
        let shard = sharder.shard_for(ns);
        let labels = shard
            .tenants
            .first()
            .map(|t| vec![(TENANT_LABEL, t.name.clone())])
            .unwrap_or_default();
        out.push(Placement {
            namespace: ns.to_owned(),
            config: to_value(&shard)?,
            labels,
            fallback: false,
        });
    }
    Ok(out)
}

/// Refuses output the API server (or `kubectl apply`) would refuse: any object whose JSON is
/// over `max` bytes. Names the object, its tenant and its size.
pub(crate) fn check_sizes(docs: &[Doc], max: usize) -> Result<(), GenerateError> {
    if !(1..=ETCD_MAX_OBJECT_BYTES).contains(&max) {
        return Err(GenerateError::Option(format!(
            "--max-object-bytes {max} is not in 1..={ETCD_MAX_OBJECT_BYTES} (etcd refuses objects over 1.5 MiB)"
        )));
    }
    for doc in docs {
        let size = serde_json::to_vec(&doc.value)
            .map_err(|e| GenerateError::Serialize(e.to_string()))?
            .len();
        if size <= max {
            continue;
        }
        let json = doc.value.to_json();
        let field = |p: &str| json.pointer(p).and_then(|v| v.as_str()).unwrap_or("?");
        let tenant = json
            .pointer("/metadata/labels")
            .and_then(|l| l.get(TENANT_LABEL))
            .and_then(|v| v.as_str());
        let delegated = json
            .pointer("/spec/pluginConfig/delegatedNamespaces")
            .and_then(|d| d.as_array())
            .map(Vec::len);
        let whose = match (tenant, delegated) {
            (Some(t), _) => format!("tenant \"{t}\" alone"),
            (None, Some(n)) => format!("the mesh-wide fallback's list of {n} tenant namespaces"),
            (None, None) => "the whole policy (--shard none)".to_owned(),
        };
        return Err(GenerateError::Policy(format!(
            "{} {}/{} is {size} bytes ({:.1} KiB), over the limit of {max} bytes: {whose} does not \
             fit one object. Client-side `kubectl apply` keeps a copy in a 256 KiB annotation and \
             etcd refuses objects over 1.5 MiB. {}",
            field("/kind"),
            field("/metadata/namespace"),
            field("/metadata/name"),
            size as f64 / 1024.0,
            match tenant {
                Some(_) => "Split the tenant into smaller tenants, or raise the limit up to \
                            1572864 with --max-object-bytes and apply with `kubectl apply \
                            --server-side` (no annotation copy)",
                None => "Use the default --shard namespace (one object per tenant namespace), or \
                         raise the limit up to 1572864 with --max-object-bytes and apply with \
                         `kubectl apply --server-side`",
            }
        )));
    }
    Ok(())
}

/// The destination end's plugins (`--ends both|destination`): one per tenant namespace,
/// whatever `--wasm-scope`, each with the whole policy.
pub(crate) fn inbound_placements(
    spec: &PolicySpec,
    _opts: &Options,
) -> Result<Vec<Placement>, GenerateError> {
    let config = to_value(spec)?;
    Ok(spec
        .tenants
        .iter()
        .flat_map(|t| t.namespaces.iter())
        .map(|ns| Placement {
            namespace: ns.clone(),
            config: config.clone(),
            labels: Vec::new(),
            fallback: false,
        })
        .collect())
}
