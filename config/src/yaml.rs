//! YAML in and out, in one place: the limits every input is read under, the multi-document
//! reader, the writer, and the ordered [`Value`] the generated objects are built as.
//!
//! The parser is serde-saphyr: pure Rust, panic-free by design, and with a budget on what a
//! document may cost (events, nodes, depth, anchors and alias replays). `import` reads whatever
//! `kubectl get -o yaml` (or anyone) hands it, so an input is refused with an error that says
//! which limit it broke, never allowed to exhaust memory (a "billion laughs" alias bomb is a
//! few hundred bytes).
//!
//! Plain scalars resolve as Kubernetes' own YAML reader resolves them: unquoted `yes`, `on`,
//! `off` are booleans, so a selector value `on` is refused by validation with "quote numbers and
//! booleans" rather than meaning something else to kubectl. The writer quotes every string a
//! reader could take for anything but a string.

use std::rc::Rc;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;

mod emit;
mod to_value;
use serde::{Deserialize, Serialize};

/// The largest input read, in bytes. A whole cluster's `kubectl get sidecars -A -o yaml`
/// (managedFields included) is a few MiB; a policy far less.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;
/// The deepest nesting of mappings and sequences. Kubernetes objects and policies nest about
/// ten levels deep.
pub const MAX_DEPTH: usize = 64;
/// The most `*alias` references in one input. `kubectl` never writes anchors; a hand-written
/// policy may reuse a list or two.
pub const MAX_ALIASES: usize = 1_000;
/// The most parser events that alias references may replay in one input, in total: what an
/// alias bomb multiplies.
pub const MAX_ALIAS_REPLAYED_EVENTS: usize = 100_000;
/// The most nodes (scalars, mappings, sequences) in one input.
pub const MAX_NODES: usize = 2_000_000;
/// The most documents in one stream.
pub const MAX_DOCUMENTS: usize = 100_000;

/// Why a YAML input cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// Larger than [`MAX_INPUT_BYTES`].
    #[error("the input is {size} bytes; the limit is {MAX_INPUT_BYTES} bytes")]
    TooLarge {
        /// The input's size.
        size: usize,
    },
    /// Not YAML, or over a limit of the budget (the message says which, and where).
    #[error("not valid YAML: {0}")]
    Syntax(String),
    /// Writing failed (a bug: every generated value is representable).
    #[error("cannot write YAML: {0}")]
    Write(String),
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    budget.max_nodes = MAX_NODES;
    budget.max_events = MAX_NODES.saturating_mul(2);
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_recorded_anchor_events = MAX_ALIAS_REPLAYED_EVENTS;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAYED_EVENTS;
    options
}

/// The parser's message: where (line and column) and what, without its source snippet (the
/// input can be a whole cluster's dump), and for a breached budget what the limits are for.
fn syntax_error(e: &serde_saphyr::Error) -> YamlError {
    let text = e.without_snippet().to_string();
    let text = text.trim().trim_start_matches("error: ");
    let text = text.lines().next().unwrap_or_default();
    if text.contains("budget breached") {
        YamlError::Syntax(format!(
            "{text} (the input is over a limit on YAML input: at most {MAX_DEPTH} levels of \
             nesting, {MAX_ALIASES} aliases, {MAX_ALIAS_REPLAYED_EVENTS} events replayed \
             through aliases, {MAX_NODES} nodes, {MAX_DOCUMENTS} documents; anchors and aliases \
             that multiply are how a few bytes of YAML can exhaust memory)"
        ))
    } else {
        YamlError::Syntax(text.to_owned())
    }
}

fn check_size(text: &str) -> Result<(), YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError::TooLarge { size: text.len() });
    }
    Ok(())
}

/// Reads one YAML document (JSON is YAML too) under the limits.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_size(text)?;
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| syntax_error(&e))
}

/// Reads every document of a `---`-separated stream under the limits (the budget covers the
/// whole stream, not each document).
pub fn from_str_multiple<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, YamlError> {
    check_size(text)?;
    serde_saphyr::from_multiple_with_options(text, options()).map_err(|e| syntax_error(&e))
}

/// Writes one value as a YAML document (block style, two-space indentation). A single-line
/// string stays one plain or quoted scalar however long, never a folded (`>`) block: a digest
/// URL must be greppable and read as written. A multi-line string (an embedded JSON policy)
/// is a literal block (`|`), which keeps its lines as they are.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    let mut out = String::new();
    write_to(&mut out, value)?;
    Ok(out)
}

/// Appends [`to_string`]'s text to `out`.
fn write_to<T: Serialize>(out: &mut String, value: &T) -> Result<(), YamlError> {
    let options = serde_saphyr::ser_options! {
        // Folding starts above this many characters: never, for any value we write.
        folded_wrap_chars: usize::MAX / 2,
    };
    serde_saphyr::to_fmt_writer_with_options(out, value, options)
        .map_err(|e| YamlError::Write(e.to_string()))
}

/// Writes many documents as [`to_string`] does, byte for byte, through the direct writer in
/// `emit.rs` (each [`Value::Shared`] subtree written once: on a 100,000-rule policy the shards'
/// texts are most of the output, each carried by the HTTP and the NETWORK plugin of every
/// namespace of its tenant, and each ends in the same long string). A document it leaves to
/// serde-saphyr (a multi-line string, a float...) is rendered by serde-saphyr whole.
#[derive(Debug, Default)]
pub struct Writer {
    emitter: emit::Emitter,
    /// How many documents serde-saphyr rendered (for the tests).
    fallbacks: usize,
}

impl Writer {
    /// Appends `value` as one YAML document to `out`.
    pub fn write(&mut self, out: &mut String, value: &Value) -> Result<(), YamlError> {
        let start = out.len();
        match self.emitter.document(out, value) {
            Ok(()) => Ok(()),
            Err(emit::Unsupported) => {
                out.truncate(start);
                self.fallbacks += 1;
                write_to(out, value)
            }
        }
    }
}

/// A JSON-shaped tree whose mappings keep their insertion order: the generated objects read
/// `apiVersion`, `kind`, `metadata`, `spec` in that order, as Kubernetes writes them.
/// (`serde_json::Value` sorts keys unless its `preserve_order` feature is on, and that feature
/// would also change the core's validation order wherever both are built together.)
///
/// Serialized untagged (derived); deserialized by the hand-written visitor below, not by
/// `#[serde(untagged)]`, which buffers every value and tries each variant in turn, building
/// (and formatting) an error for every string that is not a null, a bool or a number: most of
/// `generate`'s time on a large policy, where every object passes through [`Value::from_serialize`].
///
/// [`Value::Shared`] holds a subtree many objects carry unchanged (a shard's `pluginConfig`
/// in the HTTP and the NETWORK plugin of each of a tenant's namespaces): it is built once,
/// cloned as a pointer, and [`Writer`] renders it once. It is the same value as the tree it
/// holds (equality, serialization, [`Value::get`], [`Value::to_json`] see through it).
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// A sequence.
    Sequence(Vec<Value>),
    /// A mapping, in insertion order.
    Mapping(IndexMap<String, Value>),
    /// A subtree shared with other values (never read from input).
    Shared(Rc<Value>),
}

impl Value {
    /// The value itself, seen through any [`Value::Shared`].
    fn resolved(&self) -> &Value {
        let mut v = self;
        while let Value::Shared(inner) = v {
            v = inner;
        }
        v
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self.resolved(), other.resolved()) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Sequence(a), Value::Sequence(b)) => a == b,
            (Value::Mapping(a), Value::Mapping(b)) => a == b,
            _ => false,
        }
    }
}

/// As `#[serde(untagged)]` would serialize it, with a shared subtree written in place.
impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.serialize(s),
            Value::String(text) => s.serialize_str(text),
            Value::Sequence(items) => items.serialize(s),
            Value::Mapping(m) => m.serialize(s),
            Value::Shared(inner) => inner.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML or JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{n} is not a JSON number")))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = IndexMap::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.insert(k, v);
        }
        Ok(Value::Mapping(out))
    }
}

impl Value {
    /// Any serializable value as an ordered tree (struct fields in declaration order): what
    /// [`Value::from_serialize_text`] gives, built directly.
    pub fn from_serialize<T: Serialize>(v: &T) -> Result<Value, serde_json::Error> {
        v.serialize(to_value::ToValue)
    }

    /// [`Value::from_serialize`] through JSON text: serde_json reads object members in
    /// document order, and the visitor keeps that order in the IndexMap. The reference the
    /// direct serializer is checked against.
    pub fn from_serialize_text<T: Serialize>(v: &T) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&serde_json::to_string(v)?)
    }

    /// The member `key` of a mapping, to change (a shared mapping is copied first).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        match self {
            Value::Mapping(m) => m.get_mut(key),
            Value::Shared(inner) => Rc::make_mut(inner).get_mut(key),
            _ => None,
        }
    }

    /// The member `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.resolved() {
            Value::Mapping(m) => m.get(key),
            _ => None,
        }
    }

    /// The same tree as a `serde_json::Value` (for inspection; key order is lost).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Sequence(items) => items.iter().map(Value::to_json).collect(),
            Value::Mapping(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Shared(inner) => inner.to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_single_line_strings_stay_on_one_line_and_multi_line_ones_are_literal() {
        let url = format!(
            "oci://registry.example.com:5000/tenant-egress-filter@sha256:{}",
            "a".repeat(64)
        );
        let doc = Value::Mapping(
            [
                ("url".to_owned(), Value::String(url.clone())),
                (
                    "json".to_owned(),
                    Value::String("{\n  \"a\": 1\n}".to_owned()),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let text = to_string(&doc).unwrap();
        assert!(text.contains(&format!("url: {url}\n")), "{text}");
        assert!(text.contains("json: |-\n"), "{text}");
        let back: Value = from_str(&text).unwrap();
        assert_eq!(back, doc);
    }

    /// A document with shared subtrees is written as [`to_string`] writes it, whatever the
    /// subtree (a mapping, an empty one, a sequence, a scalar, a multi-line string), wherever
    /// it sits, and whether it was written before or not.
    #[test]
    fn the_writer_writes_shared_subtrees_as_to_string_does() {
        let v = |json: serde_json::Value| Value::from_serialize(&json).unwrap();
        let shared: Vec<Rc<Value>> = [
            serde_json::json!({"apiVersion": "x", "tenants": [{"name": "a", "hosts": ["./*", "*/*"]}], "n": 1}),
            serde_json::json!({}),
            serde_json::json!([]),
            serde_json::json!(["yes", "no", {"a": null}]),
            serde_json::json!("on"),
            serde_json::json!("multi\nline"),
            serde_json::json!(null),
        ]
        .into_iter()
        .map(|j| Rc::new(v(j)))
        .collect();
        // One that itself ends in a shared subtree (as a destination shard ends in the tenant
        // directory), and another sharing that same subtree.
        let directory = Rc::new(Value::String("a;;a1,a2;* b;audit;b;*".to_owned()));
        let ending_in = |n: i64| {
            Rc::new(Value::Mapping(IndexMap::from_iter([
                ("n".to_owned(), Value::Number(n.into())),
                (
                    "tenantDirectory".to_owned(),
                    Value::Shared(directory.clone()),
                ),
            ])))
        };
        let mut shared = shared;
        shared.push(ending_in(1));
        shared.push(ending_in(2));
        let mut docs = Vec::new();
        for s in &shared {
            // (A serde_json::Value's keys are sorted: the order is built here.)
            let entries = |e: Vec<(&str, Value)>| {
                Value::Mapping(e.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            };
            docs.push(entries(vec![
                ("apiVersion", Value::String("v1".into())),
                ("kind", Value::String("K".into())),
                (
                    "metadata",
                    v(serde_json::json!({"name": "n", "labels": {"a": "b"}})),
                ),
                (
                    "spec",
                    entries(vec![
                        ("url", Value::String("oci://x".into())),
                        ("match", v(serde_json::json!([{"mode": "CLIENT"}]))),
                        ("pluginConfig", Value::Shared(s.clone())),
                    ]),
                ),
            ]));
            // At the top, one level down, and as the whole document.
            docs.push(Value::Mapping(IndexMap::from_iter([
                ("a".to_owned(), Value::Bool(true)),
                ("b".to_owned(), Value::Shared(s.clone())),
            ])));
            docs.push(Value::Shared(s.clone()));
            // Not at the end: written whole.
            docs.push(Value::Mapping(IndexMap::from_iter([
                ("b".to_owned(), Value::Shared(s.clone())),
                ("c".to_owned(), Value::Null),
            ])));
        }
        let mut writer = Writer::default();
        let mut out = String::new();
        let mut expected = String::new();
        // Twice: the second round is written from the cache.
        for doc in docs.iter().chain(docs.iter()) {
            writer.write(&mut out, doc).unwrap();
            expected.push_str(&to_string(doc).unwrap());
        }
        assert_eq!(out, expected);
        // The second round copied shared texts the first one wrote.
        assert!(writer.emitter.copied > 0);
        // Some went to serde-saphyr (those holding the multi-line string, those whose top is
        // not a mapping), not all (in both rounds).
        assert!(writer.fallbacks > 0 && writer.fallbacks < 2 * docs.len());
    }

    /// A shared subtree is written once and copied into every later document carrying it at
    /// the same place; a document the direct writer leaves alone is serde-saphyr's whole.
    #[test]
    fn shared_subtrees_are_copied_and_the_rest_falls_back_whole() {
        let hosts = Rc::new(
            Value::from_serialize(&serde_json::json!([
                "./*",
                "*/a.example.com",
                "10.0.0.0/8",
                "yes"
            ]))
            .unwrap(),
        );
        let doc = |name: &str| {
            Value::Mapping(IndexMap::from_iter([
                ("name".to_owned(), Value::String(name.to_owned())),
                ("hosts".to_owned(), Value::Shared(hosts.clone())),
            ]))
        };
        let mut writer = Writer::default();
        let mut out = String::new();
        let mut expected = String::new();
        for name in ["a", "b", "c"] {
            writer.write(&mut out, &doc(name)).unwrap();
            expected.push_str(&to_string(&doc(name)).unwrap());
        }
        assert_eq!(out, expected);
        assert!(
            out.contains("- \"*/a.example.com\"\n- 10.0.0.0/8\n- \"yes\"\n"),
            "{out}"
        );
        assert_eq!((writer.emitter.copied, writer.fallbacks), (2, 0));
        let multi = Value::Mapping(IndexMap::from_iter([(
            "json".to_owned(),
            Value::String("{\n  \"a\": 1\n}".to_owned()),
        )]));
        out.clear();
        writer.write(&mut out, &multi).unwrap();
        assert_eq!(out, to_string(&multi).unwrap());
        assert_eq!(writer.fallbacks, 1);
    }

    /// Any tree of the shapes generated objects take (and a few they never do) is written as
    /// serde-saphyr writes it, byte for byte: strings from an alphabet of YAML's special
    /// characters and words, keys likewise, numbers, booleans, nulls, empty and nested
    /// collections, shared subtrees.
    #[test]
    fn the_writer_matches_serde_saphyr_on_random_trees() {
        use proptest::prelude::*;
        let word = prop_oneof![
            Just(String::new()),
            prop::sample::select(vec![
                "yes",
                "No",
                "ON",
                "off",
                "y",
                "N",
                "true",
                "False",
                "null",
                "~",
                "nan",
                "Inf",
                ".inf",
                "-.5",
                "12",
                "0x1f",
                "1_000",
                "2001-12-14",
                "1:20",
                "<<",
                "=",
                "---",
                "...",
                "./*",
                "*/*",
                "*",
                "*.a.com",
                "~/a.com",
                "a: b",
                "a #b",
                "a#b",
                "- a",
                "-a",
                "?",
                "@x",
                "%p",
                "!t",
                "&a",
                "'q'",
                "\"q\"",
                "a\\b",
                " lead",
                "trail ",
                "tab\tin",
                "é",
                "x\u{1}y",
                "istio-system/*",
                "app.kubernetes.io/name",
                "10.0.0.0/8",
                "::1",
                "AUTHZ",
                "tenant-0;;a,b;5432/TCP,* t1;audit;c;*",
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z0-9./*_:# -]{1,12}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            any::<u64>().prop_map(|n| Value::Number(n.into())),
            word.clone().prop_map(Value::String),
        ];
        let tree = leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Sequence),
                prop::collection::vec((word.clone(), inner.clone()), 0..5)
                    .prop_map(|e| Value::Mapping(e.into_iter().collect())),
                inner.prop_map(|v| Value::Shared(Rc::new(v))),
            ]
        });
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 2000,
            ..Default::default()
        });
        runner
            .run(&tree, |v| {
                let doc = Value::Mapping(IndexMap::from_iter([
                    ("a".to_owned(), v.clone()),
                    ("b".to_owned(), Value::Sequence(vec![v.clone(), v])),
                ]));
                let mut writer = Writer::default();
                let mut out = String::new();
                // Twice: the second time from the shared subtrees' texts.
                writer
                    .write(&mut out, &doc)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                writer
                    .write(&mut out, &doc)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let once = to_string(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(out, format!("{once}{once}"));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn value_keeps_field_order_and_round_trips() {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Obj {
            kind: &'static str,
            api_version: &'static str,
            zeta: Vec<u16>,
            alpha: Option<bool>,
        }
        let v = Value::from_serialize(&Obj {
            kind: "Sidecar",
            api_version: "v1",
            zeta: vec![80, 443],
            alpha: None,
        })
        .unwrap();
        let Value::Mapping(m) = &v else {
            panic!("{v:?}")
        };
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["kind", "apiVersion", "zeta", "alpha"]);
        let text = to_string(&v).unwrap();
        assert!(
            text.starts_with("kind: Sidecar\napiVersion: v1\n"),
            "{text}"
        );
        let back: Value = from_str(&text).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            v.to_json(),
            serde_json::json!({"kind": "Sidecar", "apiVersion": "v1", "zeta": [80, 443], "alpha": null})
        );
    }

    /// Strings that YAML 1.1 readers (kubectl's) or 1.2 readers take for something else are
    /// written quoted, so every string reads back as the same string.
    #[test]
    fn ambiguous_strings_are_quoted() {
        let words = [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "Yes",
            "ON",
            "true",
            "False",
            "null",
            "~",
            "",
            "0777",
            "0x1f",
            "1e3",
            "12",
            "-1",
            ".5",
            ".inf",
            "-.Inf",
            ".nan",
            "1_000",
            "0o17",
            "2001-12-14",
            "*/*",
            "./*",
            "~/a.com",
            "@x",
            "a: b",
            "a #b",
            "- a",
            "'q'",
            "\"q\"",
            "multi\nline",
            " lead",
            "trail ",
            "%p",
            "!tag",
            "&a",
            "*a",
            "|",
            ">",
            "?",
            ",",
        ];
        let map: IndexMap<String, Value> = words
            .iter()
            .map(|w| ((*w).to_owned(), Value::String((*w).to_owned())))
            .collect();
        let v = Value::Mapping(map);
        let text = to_string(&v).unwrap();
        let back: Value = from_str(&text).unwrap();
        assert_eq!(back, v, "{text}");
        // Not quoted where no reader could misread it (generated files stay readable).
        assert_eq!(to_string(&"a.b-c/d").unwrap(), "a.b-c/d\n");
    }

    #[test]
    fn an_alias_bomb_is_refused_by_the_budget() {
        // "Billion laughs": nine levels of ten aliases each would expand to 10^9 strings.
        let mut doc = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(doc.len() < 1_000);
        let err = from_str::<serde_json::Value>(&doc).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, YamlError::Syntax(_)), "{msg}");
        assert!(
            msg.to_lowercase().contains("limit") || msg.contains("budget"),
            "{msg}"
        );
        // A few honest aliases are fine.
        let v: serde_json::Value = from_str("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(v, serde_json::json!({"a": [1, 2], "b": [1, 2]}));
    }

    #[test]
    fn deep_nesting_and_huge_inputs_are_refused() {
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 10),
            "]".repeat(MAX_DEPTH + 10)
        );
        assert!(matches!(
            from_str::<serde_json::Value>(&deep),
            Err(YamlError::Syntax(_))
        ));
        let huge = " ".repeat(MAX_INPUT_BYTES + 1);
        assert_eq!(
            from_str::<serde_json::Value>(&huge),
            Err(YamlError::TooLarge {
                size: MAX_INPUT_BYTES + 1
            })
        );
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = from_str::<serde_json::Value>("a: 1\nb: [2\nc: 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("not valid YAML: "), "{msg}");
        assert!(msg.contains("line"), "{msg}");
    }
}
