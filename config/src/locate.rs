//! Where a validation path is in the file: `tenants[3].egress[0].hosts[2]` -> line 17, tenant
//! `prod`.
//!
//! Validation works on the decoded document and names places by path (the core knows no YAML).
//! To point a person at the line, the text is read a second time by the same YAML parser into a
//! tree of line numbers ([`serde_saphyr::Spanned`] gives each node's place), and a path is
//! walked down that tree. JSON is YAML here too, so a `.json` policy gets lines alike.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One node of the document with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    line: u32,
    node: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// Entries with the line of their key.
    Map(Vec<(String, u32, Located)>),
    Seq(Vec<Located>),
    /// A string scalar (to read tenant names), or another scalar.
    Scalar(Option<String>),
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<Node>::deserialize(d)?;
        Ok(Located {
            line: u32::try_from(s.referenced.line()).unwrap_or(0),
            node: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A mapping key: any scalar, as text.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Node::deserialize(d)? {
            Node::Scalar(Some(s)) => Ok(Key(s)),
            _ => Ok(Key(String::new())),
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Some(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Some(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Some(v.to_string())))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Some(v.to_string())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Some(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(None))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Located>()? {
            out.push(item);
        }
        Ok(Node::Seq(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<serde_saphyr::Spanned<Key>>()? {
            let value: Located = map.next_value()?;
            let line = u32::try_from(key.referenced.line()).unwrap_or(value.line);
            out.push((key.value.0, line, value));
        }
        Ok(Node::Map(out))
    }
}

/// The places of one document: path -> line, path -> tenant name.
#[derive(Debug, Clone, Default)]
pub struct Places {
    root: Option<Located>,
}

/// One step of a path: a field or an index.
enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

/// `tenants[3].egress[0].hosts[2]` -> steps. `(document)` (and the empty path) is the root.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    if path == "(document)" {
        return out;
    }
    for part in path.split('.') {
        let (field, mut rest) = match part.find('[') {
            Some(i) => (part.get(..i).unwrap_or(""), part.get(i..).unwrap_or("")),
            None => (part, ""),
        };
        if !field.is_empty() {
            out.push(Step::Field(field));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            if let Ok(i) = inner.get(..end).unwrap_or("").parse() {
                out.push(Step::Index(i));
            }
            rest = inner.get(end + 1..).unwrap_or("");
        }
    }
    out
}

impl Places {
    /// Reads the places of `text`. Never fails: a text the parser refuses (the load reports
    /// that on its own) has no places, and messages then name paths only.
    pub fn parse(text: &str) -> Places {
        Places {
            root: crate::yaml::from_str::<Located>(text).ok(),
        }
    }

    /// The line of the deepest node of `path` that exists (a missing field is reported at its
    /// parent mapping, whose line that is). For a mapping entry, the line of its key.
    pub fn line(&self, path: &str) -> Option<u32> {
        let mut node = self.root.as_ref()?;
        let mut line = node.line;
        for step in steps(path) {
            let next = match (&node.node, step) {
                (Node::Map(entries), Step::Field(f)) => entries
                    .iter()
                    .find(|(k, _, _)| k == f)
                    .map(|(_, l, v)| (*l, v)),
                (Node::Seq(items), Step::Index(i)) => items.get(i).map(|v| (v.line, v)),
                _ => None,
            };
            match next {
                Some((l, v)) => {
                    line = l;
                    node = v;
                }
                None => break,
            }
        }
        (line > 0).then_some(line)
    }

    /// The name of the tenant a path lies in (`tenants[3]...` -> `tenants[3].name`).
    pub fn tenant(&self, path: &str) -> Option<&str> {
        let Some(Step::Index(t)) = path
            .strip_prefix("tenants")
            .filter(|r| r.starts_with('['))
            .and_then(|r| steps(r).into_iter().next())
        else {
            return None;
        };
        let Node::Map(top) = &self.root.as_ref()?.node else {
            return None;
        };
        let (_, _, tenants) = top.iter().find(|(k, _, _)| k == "tenants")?;
        let Node::Seq(items) = &tenants.node else {
            return None;
        };
        let Node::Map(fields) = &items.get(t)?.node else {
            return None;
        };
        fields
            .iter()
            .find_map(|(k, _, v)| match (&v.node, k == "name") {
                (Node::Scalar(Some(name)), true) => Some(name.as_str()),
                _ => None,
            })
    }

    /// How a message names a place: `12: tenants[3].hosts[2] (tenant prod)`, or the path alone
    /// when the line is unknown. The caller prefixes the file: `policy.yaml:12: ...`.
    pub fn describe(&self, path: &str) -> Place {
        Place {
            line: self.line(path),
            tenant: self.tenant(path).map(str::to_owned),
        }
    }
}

/// A place as [`Places::describe`] found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Place {
    /// The 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The tenant's name, when the path lies in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl Place {
    /// `policy.yaml:12` (or `policy.yaml`): the file and line prefix of a message.
    pub fn file_line(&self, input: &str) -> String {
        match self.line {
            Some(l) => format!("{input}:{l}"),
            None => input.to_owned(),
        }
    }

    /// ` (tenant prod)`, or nothing.
    pub fn tenant_suffix(&self) -> String {
        self.tenant
            .as_deref()
            .map(|t| format!(" (tenant {t})"))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: tenant-egress/v1
tenants:
  - name: prod
    namespaces: [prod]
    egress:
      - hosts:
          - ./*
          - istio-sytem/*
  - name: uat
    namespaces:
      - uat
    egress: [{hosts: [\"./*\", \"x/*\"]}]
";

    #[test]
    fn paths_map_to_lines_and_tenants() {
        let p = Places::parse(DOC);
        assert_eq!(p.line("apiVersion"), Some(1));
        assert_eq!(p.line("tenants[0]"), Some(3));
        assert_eq!(p.line("tenants[0].egress[0].hosts[1]"), Some(8));
        assert_eq!(p.line("tenants[1].namespaces[0]"), Some(11));
        assert_eq!(p.line("tenants[1].egress[0].hosts[1]"), Some(12));
        // A missing field: its parent's line; past the end: the deepest that exists.
        assert_eq!(p.line("tenants[1].workloads[0].name"), Some(9));
        assert_eq!(p.line("tenants[0].egress[0].hosts[9]"), Some(6));
        assert_eq!(p.line("(document)"), Some(1));
        assert_eq!(p.tenant("tenants[1].egress[0].hosts[1]"), Some("uat"));
        assert_eq!(p.tenant("tenants[0]"), Some("prod"));
        assert_eq!(p.tenant("apiVersion"), None);
        assert_eq!(p.tenant("tenants[7].name"), None);
        let place = p.describe("tenants[0].egress[0].hosts[1]");
        assert_eq!(place.file_line("p.yaml"), "p.yaml:8");
        assert_eq!(place.tenant_suffix(), " (tenant prod)");
    }

    #[test]
    fn json_has_lines_too_and_garbage_has_none() {
        let p = Places::parse(
            "{\n  \"apiVersion\": \"x\",\n  \"tenants\": [\n    {\"name\": \"a\"}\n  ]\n}\n",
        );
        assert_eq!(p.line("tenants[0].name"), Some(4));
        assert_eq!(p.tenant("tenants[0].namespaces"), Some("a"));
        let none = Places::parse("a: [unclosed\n");
        assert_eq!(none.line("a"), None);
        assert_eq!(none.describe("a").file_line("p"), "p");
    }
}
