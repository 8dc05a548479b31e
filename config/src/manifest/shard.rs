//! Sharded distribution (`generate --shard namespace`, the default) and the object size limit.
//!
//! One plugin per tenant namespace carries only that namespace's shard of the policy
//! ([`tenant_egress_core::shard::shard_for`]), so a sidecar's VM compiles one tenant, and no
//! object grows with the cluster. Namespaces no tenant owns are decided by a small mesh-wide
//! fallback plugin in the root namespace ([`tenant_egress_core::shard::fallback`]): its document
//! has no tenant (`unknownSource` decides) and lists the tenant namespaces as
//! `delegatedNamespaces`, where the filter stands aside (`tenant_egress.fallback_skipped`), so a
//! pod that gets both plugins has its requests decided once, by its namespace's plugin.
//!
//! The destination end ([`inbound_placements`]) is cut the other way: each tenant namespace's
//! SERVER plugins carry every tenant (the caller may be anyone's), but only the rules that can
//! name a host the namespace serves ([`tenant_egress_core::shard::destination_shard_for`]).

use std::collections::HashMap;
use std::rc::Rc;

use tenant_egress_core::shard::{fallback, DestinationSharder, Sharder};
use tenant_egress_core::spec::PolicySpec;

use super::inbound::{INBOUND_NETWORK_PLUGIN_NAME, INBOUND_PLUGIN_NAME};
use super::{plugin_namespaces, to_value, Doc, GenerateError, Options, WasmScope, TENANT_LABEL};
use crate::yaml::Value;

/// How the policy is distributed to the sidecars (`generate --shard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shard {
    /// One plugin per tenant namespace with only its tenant, plus a mesh-wide fallback for
    /// namespaces no tenant owns; at the destination end, per tenant namespace the callers' rules
    /// for its services (the default).
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
    /// Its `pluginConfig` (a policy document), shared by the placements that carry the same one
    /// and copied only into the emitted object.
    pub config: Rc<Value>,
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
        let config = Rc::new(to_value(spec)?);
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
            config: Rc::new(to_value(&fallback(spec))?),
            labels: Vec::new(),
            fallback: true,
        });
    }
    let sharder = Sharder::new(spec);
    // Every namespace of one tenant gets the same shard: built once per tenant, not once per
    // namespace (a namespace no tenant owns, in a staged rollout, gets its own).
    let mut by_tenant: HashMap<&str, Rc<Value>> = HashMap::new();
    let mut known = SharedText::default();
    let mut shard_value = |ns: &str| -> Result<Rc<Value>, GenerateError> {
        let mut shard = sharder.shard_for(ns);
        let text = std::mem::take(&mut shard.known_namespaces);
        let mut config = to_value(&shard)?;
        known.append(&mut config, "knownNamespaces", text)?;
        Ok(Rc::new(config))
    };
    for ns in namespaces {
        let owner = spec
            .tenants
            .iter()
            .find(|t| t.namespaces.iter().any(|n| n == ns));
        let config = match owner.map(|t| (t.name.as_str(), by_tenant.get(t.name.as_str()))) {
            Some((_, Some(config))) => config.clone(),
            Some((name, None)) => {
                let config = shard_value(ns)?;
                by_tenant.insert(name, config.clone());
                config
            }
            None => shard_value(ns)?,
        };
        out.push(Placement {
            namespace: ns.to_owned(),
            config,
            labels: owner
                .map(|t| vec![(TENANT_LABEL, t.name.clone())])
                .unwrap_or_default(),
            fallback: false,
        });
    }
    Ok(out)
}

/// A string field every shard carries the same (the caller end's `knownNamespaces`, the
/// destination end's `tenantDirectory`): at 100,000 rules 18 KB and 32 KB, most of each shard's
/// text. Held once and put in each shard as one shared value, so the size check and the writer
/// handle it once, not once per shard.
#[derive(Default)]
struct SharedText(Option<Rc<Value>>);

impl SharedText {
    /// Appends `key: text` to the shard `config` (serialized without it), as the shared value
    /// when `text` is the one held. The field must be the last `PolicySpec` serializes (it is
    /// for these two), so the order stays the serialization's.
    fn append(&mut self, config: &mut Value, key: &str, text: String) -> Result<(), GenerateError> {
        if text.is_empty() {
            return Ok(());
        }
        let shared = match &self.0 {
            Some(held) if matches!(&**held, Value::String(s) if *s == text) => held.clone(),
            _ => self.0.insert(Rc::new(Value::String(text))).clone(),
        };
        let Value::Mapping(m) = config else {
            return Err(GenerateError::Serialize(format!(
                "a shard is not a mapping (adding {key})"
            )));
        };
        m.insert(key.to_owned(), Value::Shared(shared));
        Ok(())
    }
}

/// The size of `value` as compact JSON, counted without building the text.
pub fn json_size(value: &Value) -> Result<usize, GenerateError> {
    JsonSizes::default().of(value)
}

/// Sizes values as compact JSON (what the API server stores), each [`Value::Shared`] subtree
/// counted once however many objects carry it: a subtree's text is the same wherever it sits.
#[derive(Default)]
struct JsonSizes {
    /// Subtree address -> (the subtree, kept alive so the address stays its own; its size).
    shared: HashMap<usize, (Rc<Value>, usize)>,
}

impl JsonSizes {
    fn of(&mut self, value: &Value) -> Result<usize, GenerateError> {
        // Compact JSON (serde_json's): no whitespace; `{"k":v,...}` and `[v,...]`.
        let separators = |n: usize| n.saturating_sub(1);
        Ok(match value {
            Value::Null => 4,
            Value::Bool(b) => {
                if *b {
                    4
                } else {
                    5
                }
            }
            Value::Number(n) => scalar_size(n)?,
            Value::String(text) => string_size(text)?,
            Value::Sequence(items) => {
                let mut n = 2 + separators(items.len());
                for item in items {
                    n += self.of(item)?;
                }
                n
            }
            Value::Mapping(m) => {
                let mut n = 2 + separators(m.len());
                for (key, item) in m {
                    // `"key":` (a key is escaped as any string).
                    n += string_size(key)? + 1 + self.of(item)?;
                }
                n
            }
            Value::Shared(inner) => {
                let key = Rc::as_ptr(inner) as usize;
                if let Some((_, n)) = self.shared.get(&key) {
                    return Ok(*n);
                }
                let n = self.of(inner)?;
                self.shared.insert(key, (inner.clone(), n));
                n
            }
        })
    }
}

/// The length of a string as JSON: quoted, and as serde_json writes it when anything in it is
/// escaped (a quote, a backslash, a control character, RFC 8259 section 7); almost nothing
/// generated is.
fn string_size(text: &str) -> Result<usize, GenerateError> {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        Ok(text.len() + 2)
    } else {
        scalar_size(text)
    }
}

/// The length of a number or a string as serde_json writes it (escapes included).
fn scalar_size<T: serde::Serialize + ?Sized>(value: &T) -> Result<usize, GenerateError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)
        .map_err(|e| GenerateError::Serialize(e.to_string()))?;
    Ok(count.0)
}

/// [`check_sizes`] on the object just pushed: for plugins that each carry the same (whole)
/// policy, so an over-large one is refused at the first, before it is copied into every
/// namespace's (on a 100,000-rule policy those copies alone would exhaust memory).
pub(crate) fn check_last(out: &super::Generated, max: usize) -> Result<(), GenerateError> {
    check_sizes(
        out.docs.last().map(std::slice::from_ref).unwrap_or(&[]),
        max,
    )
}

/// Refuses output the API server (or `kubectl apply`) would refuse: any object whose JSON is
/// over `max` bytes. Names the object, its tenant and its size.
pub(crate) fn check_sizes(docs: &[Doc], max: usize) -> Result<(), GenerateError> {
    if !(1..=ETCD_MAX_OBJECT_BYTES).contains(&max) {
        return Err(GenerateError::Option(format!(
            "--max-object-bytes {max} is not in 1..={ETCD_MAX_OBJECT_BYTES} (etcd refuses objects over 1.5 MiB)"
        )));
    }
    // A shared `pluginConfig` (or tenant directory) is counted once, not once per plugin.
    let mut sizes = JsonSizes::default();
    for doc in docs {
        let size = sizes.of(&doc.value)?;
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
        let destination = matches!(
            field("/metadata/name"),
            INBOUND_PLUGIN_NAME | INBOUND_NETWORK_PLUGIN_NAME
        );
        let whose = match (tenant, delegated) {
            _ if destination
                && json
                    .pointer("/spec/pluginConfig/destinationShard")
                    .is_some() =>
            {
                "the destination end's shard (the callers' rules for this namespace's services)"
                    .to_owned()
            }
            _ if destination => {
                "the destination end's policy (every caller tenant's rules)".to_owned()
            }
            (Some(t), _) => format!("tenant \"{t}\" alone"),
            (None, Some(n)) => format!("the mesh-wide fallback's list of {n} tenant namespaces"),
            (None, None) => "the whole policy (--shard none)".to_owned(),
        };
        let what_to_do = match tenant {
            _ if destination
                && json
                    .pointer("/spec/pluginConfig/destinationShard")
                    .is_some() =>
            {
                "Its tenants' `serves` or `*/*` rules carry most of it: narrow them, or \
                 generate --ends source"
            }
            _ if destination => {
                "The destination end decides with the callers' rules and carries the whole \
                 policy with --shard none: use the default --shard namespace, or generate \
                 --ends source"
            }
            Some(_) => "Split the tenant into smaller tenants",
            None => "Use the default --shard namespace (one object per tenant namespace)",
        };
        // Raising the limit helps only below etcd's.
        let or_raise = if max < ETCD_MAX_OBJECT_BYTES && size <= ETCD_MAX_OBJECT_BYTES {
            ", or raise the limit up to 1572864 with --max-object-bytes and apply with \
             `kubectl apply --server-side` (no annotation copy)"
        } else {
            ""
        };
        return Err(GenerateError::Policy(format!(
            "{} {}/{} is {size} bytes ({:.1} KiB), over the limit of {max} bytes: {whose} does not \
             fit one object. Client-side `kubectl apply` keeps a copy in a 256 KiB annotation and \
             etcd refuses objects over 1.5 MiB. {what_to_do}{or_raise}.",
            field("/kind"),
            field("/metadata/namespace"),
            field("/metadata/name"),
            size as f64 / 1024.0,
        )));
    }
    Ok(())
}

/// The destination end's plugins (`--ends both|destination`): one per tenant namespace,
/// whatever `--wasm-scope`. Sharded (the default), each carries its namespace's destination
/// shard ([`tenant_egress_core::shard::destination_shard_for`]): every tenant, but only the
/// callers' rules that can name a host the namespace serves (its Kubernetes services and its
/// tenant's `serves`); with `--shard none`, the whole policy.
pub(crate) fn inbound_placements(
    spec: &PolicySpec,
    opts: &Options,
) -> Result<Vec<Placement>, GenerateError> {
    enum Source<'a> {
        Whole(Rc<Value>),
        Sharded(DestinationSharder<'a>),
    }
    let source = match opts.wasm.shard {
        Shard::Namespace => Source::Sharded(DestinationSharder::new(spec)),
        Shard::None => Source::Whole(Rc::new(to_value(spec)?)),
    };
    // Every tenant namespace, or a staged rollout's `--wasm-namespaces`.
    let namespaces: Vec<&str> = match opts.wasm.scope {
        WasmScope::Mesh => spec
            .tenants
            .iter()
            .flat_map(|t| t.namespaces.iter().map(String::as_str))
            .collect(),
        WasmScope::Namespace => plugin_namespaces(spec, opts)?,
    };
    let mut directory = SharedText::default();
    namespaces
        .into_iter()
        .map(|ns| {
            let config = match &source {
                Source::Whole(whole) => whole.clone(),
                Source::Sharded(sharder) => {
                    let mut shard = sharder.shard_for(ns).ok_or_else(|| {
                        GenerateError::Option(format!(
                            "namespace \"{ns}\" belongs to no tenant: the destination end goes only to tenant namespaces"
                        ))
                    })?;
                    let text = std::mem::take(&mut shard.tenant_directory);
                    let mut config = to_value(&shard)?;
                    directory.append(&mut config, "tenantDirectory", text)?;
                    Rc::new(config)
                }
            };
            Ok(Placement {
                namespace: ns.to_owned(),
                config,
                labels: Vec::new(),
                fallback: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::manifest::{generate, DocKind, Ends, Selection};
    use indexmap::IndexMap;
    use serde_json::json;
    use tenant_egress_core::shard::{destination_shard_for, shard_for};

    fn spec() -> PolicySpec {
        let doc = json!({
            "apiVersion": "tenant-egress/v1",
            "tenants": [
                {"name": "a", "namespaces": ["a1", "a2"], "egress": [
                    {"port": {"number": 5432, "protocol": "TCP"}, "hosts": ["b/*"]},
                    {"hosts": ["./*", "*/api.example.com"]}]},
                {"name": "b", "namespaces": ["b"], "egress": [{"hosts": ["./*", "a1/*"]}],
                 "inbound": [{"namespace": "istio-system"}]}
            ]
        });
        tenant_egress_core::validate::validate_value(doc).unwrap().0
    }

    fn options(ends: Ends) -> Options {
        let mut opts = Options {
            selection: Selection::WasmPlugin,
            ends,
            ..Options::default()
        };
        opts.wasm.url = "file:///tenant_egress_filter.wasm".into();
        opts
    }

    /// (namespace, match mode, plugin type, pluginConfig) of every WasmPlugin.
    fn plugins(spec: &PolicySpec, opts: &Options) -> Vec<(String, String, String, Value)> {
        generate(spec, opts)
            .unwrap()
            .docs
            .into_iter()
            .filter(|d| d.kind == DocKind::WasmPlugin)
            .map(|d| {
                let j = d.value.to_json();
                let config = d.value.get("spec").unwrap().get("pluginConfig").unwrap();
                (
                    j["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    j["spec"]["match"][0]["mode"].as_str().unwrap().to_owned(),
                    j["spec"]["type"].as_str().unwrap().to_owned(),
                    config.clone(),
                )
            })
            .collect()
    }

    /// Each tenant namespace's SERVER plugins carry its destination shard (`--shard none`: the
    /// whole policy), while the CLIENT plugins carry the namespace's shard, or the fallback in
    /// the root namespace.
    #[test]
    fn each_end_carries_its_own_shard() {
        let spec = spec();
        let whole = to_value(&spec).unwrap();
        let fb = to_value(&fallback(&spec)).unwrap();
        let got = plugins(&spec, &options(Ends::Both));
        let mut server = Vec::new();
        for (ns, mode, kind, config) in &got {
            match mode.as_str() {
                "SERVER" => {
                    let shard = destination_shard_for(&spec, ns).unwrap();
                    assert_eq!(config, &to_value(&shard).unwrap(), "{ns} {kind}");
                    assert_eq!(shard.destination_shard, *ns);
                    server.push((ns.as_str(), kind.as_str()));
                }
                "CLIENT" if ns == "istio-system" => assert_eq!(config, &fb, "{kind}"),
                "CLIENT" => {
                    assert_eq!(config, &to_value(&shard_for(&spec, ns)).unwrap(), "{ns}");
                    assert_ne!(config, &whole, "{ns}: a shard, not the whole policy");
                }
                other => panic!("{other}"),
            }
        }
        // One HTTP and one NETWORK (port 5432) destination plugin per tenant namespace.
        assert_eq!(
            server,
            [
                ("a1", "HTTP"),
                ("a1", "NETWORK"),
                ("a2", "HTTP"),
                ("a2", "NETWORK"),
                ("b", "HTTP"),
                ("b", "NETWORK")
            ]
        );
        // b's destination shard: tenant a's rules for b's services (`b/*` on 5432) in full, and
        // every tenant in the directory; a1's: tenant b's `a1/*` and a's own `./*`.
        let b = destination_shard_for(&spec, "b").unwrap();
        assert_eq!(b.tenant_directory, "a;;a1,a2;5432/TCP,* b;;b;*");
        let hosts = |s: &PolicySpec, t: usize| -> Vec<Vec<String>> {
            s.tenants[t]
                .egress
                .iter()
                .map(|e| e.hosts.clone())
                .collect()
        };
        assert_eq!(
            hosts(&b, 0),
            [vec!["b/*".to_owned()], vec![]],
            "tenant a, at b"
        );
        assert_eq!(hosts(&b, 1), [vec!["./*".to_owned()]], "tenant b, at b");
        let a1 = destination_shard_for(&spec, "a1").unwrap();
        assert_eq!(
            hosts(&a1, 0),
            [vec![], vec!["./*".to_owned()]],
            "tenant a, at a1"
        );
        assert!(
            a1.tenants[0].egress[1].host_index.is_empty(),
            "kept in place"
        );
        assert_eq!(hosts(&a1, 1), [vec!["a1/*".to_owned()]], "tenant b, at a1");
        assert_eq!(a1.tenants[1].egress[0].host_index, [1]);
        // --shard none: the whole policy at the destination.
        let mut opts = options(Ends::Both);
        opts.wasm.shard = Shard::None;
        for (ns, mode, _, config) in plugins(&spec, &opts) {
            if mode == "SERVER" {
                assert_eq!(config, whole, "{ns}");
            }
        }
        // The source end alone: no SERVER plugin.
        let source = plugins(&spec, &options(Ends::Source));
        assert!(source.iter().all(|(_, mode, _, _)| mode == "CLIENT"));
        assert_eq!(source.len(), 2 * 4, "fallback + 3 shards, HTTP and NETWORK");
    }

    /// An over-large destination plugin is refused naming the destination end and what to do.
    #[test]
    fn an_over_large_destination_plugin_is_refused_by_name() {
        let spec = spec();
        // The limit: the largest object that is not a destination plugin.
        let all = generate(&spec, &options(Ends::Both)).unwrap();
        let size_of = |pred: &dyn Fn(&str) -> bool| {
            all.docs
                .iter()
                .filter(|d| pred(d.value.to_json()["metadata"]["name"].as_str().unwrap_or("")))
                .map(|d| json_size(&d.value).unwrap())
                .max()
                .unwrap()
        };
        let others = size_of(&|n| !n.starts_with(INBOUND_PLUGIN_NAME));
        assert!(size_of(&|n| n == INBOUND_PLUGIN_NAME) > others);
        let opts = Options {
            max_object_bytes: others,
            ..options(Ends::Both)
        };
        let e = generate(&spec, &opts).unwrap_err().to_string();
        assert!(
            e.contains("WasmPlugin a1/tenant-egress-inbound is ")
                && e.contains("the destination end's shard")
                && e.contains("generate --ends source"),
            "{e}"
        );
        let opts = Options {
            ends: Ends::Source,
            ..opts
        };
        generate(&spec, &opts).unwrap();
    }

    #[test]
    fn json_size_is_the_length_of_the_json_text() {
        let v = to_value(&spec()).unwrap();
        assert_eq!(
            json_size(&v).unwrap(),
            serde_json::to_vec(&v).unwrap().len()
        );
        // Escapes, non-ASCII, numbers, empty containers, and a shared subtree carried twice
        // (counted from the cache the second time).
        let shared = Rc::new(
            Value::from_serialize(
                &serde_json::json!({"q": "a\"b\\c\n\u{1}\u{1f}\u{7f}é", "n": [-1.5, 0, 12]}),
            )
            .unwrap(),
        );
        let v = Value::Mapping(IndexMap::from_iter([
            ("a\tb".to_owned(), Value::Shared(shared.clone())),
            (
                "e".to_owned(),
                Value::Sequence(vec![Value::Mapping(IndexMap::new()), Value::Null]),
            ),
            ("t".to_owned(), Value::Bool(true)),
            ("f".to_owned(), Value::Bool(false)),
            ("b".to_owned(), Value::Shared(shared)),
        ]));
        assert_eq!(
            json_size(&v).unwrap(),
            serde_json::to_vec(&v).unwrap().len()
        );
    }
}
