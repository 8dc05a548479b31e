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
        let root = match text.trim_start().starts_with('{') {
            // JSON: lines are those of its tokens, found without the YAML parser (which builds
            // its events and spans for every node: on a 100,000-rule policy that second parse
            // cost as much as reading and validating it). A text the scanner does not take
            // whole is left to the YAML parser, as any other.
            true => json_places(text).or_else(|| crate::yaml::from_str::<Located>(text).ok()),
            false => crate::yaml::from_str::<Located>(text).ok(),
        };
        Places { root }
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

/// One file a policy was read from: its name as messages give it, its text, and (read on first
/// use) its places.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as messages name it (`policy/tenants/prod.yaml`).
    pub name: String,
    /// For a tenant file of a directory, the tenant it holds.
    pub tenant: Option<String>,
    text: String,
    places: std::cell::OnceCell<Places>,
}

impl SourceFile {
    /// A file named `name` holding `text`.
    pub fn new(name: impl Into<String>, tenant: Option<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            tenant,
            text: text.into(),
            places: std::cell::OnceCell::new(),
        }
    }

    /// Where each path is in this file: parsed on the first call only (a 100,000-rule policy
    /// costs a second parse, which only printing a message needs).
    pub fn places(&self) -> &Places {
        self.places.get_or_init(|| Places::parse(&self.text))
    }
}

/// Where a policy came from, to map a path of the whole document back to a file and a path in
/// it: one file (paths are the file's own), or a policy directory (`settings.yaml` holds the
/// document-wide fields, `tenants/<name>.yaml` one tenant each; `tenants[i]...` of the merged
/// document is the i-th tenant file).
#[derive(Debug, Clone)]
pub enum Origin {
    /// One file (or stdin).
    File(SourceFile),
    /// A policy directory ([`crate::policy_dir`]).
    Dir {
        /// The document-wide settings.
        settings: SourceFile,
        /// The tenants' directory as messages name it (where a path about all tenants is).
        tenants_dir: String,
        /// One file per tenant, in the merged document's order.
        tenants: Vec<SourceFile>,
    },
}

/// A path of the whole document, found in its file: what a message prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file, for a policy directory only (a single file's messages name the input).
    pub file: Option<String>,
    /// The path inside that file (`egress[0].hosts[2]`; `(document)` for its root).
    pub path: String,
    /// Its line and tenant.
    pub place: Place,
}

impl Found {
    /// How a message refers to this place in passing: the path alone for a single file, or
    /// `egress[0] in policy/tenants/prod.yaml:7` in a directory (the file is what a reader
    /// needs most there: a cross-file rule names both files).
    pub fn reference(&self) -> String {
        reference(self.file.as_deref(), &self.path, &self.place)
    }
}

/// How a message refers to a place in passing: `path`, or `path in FILE:LINE` when the place is
/// in one file of a directory ([`Found::reference`]).
pub fn reference(file: Option<&str>, path: &str, place: &Place) -> String {
    match file {
        None => path.to_owned(),
        Some(file) => format!("{path} in {}", place.file_line(file)),
    }
}

/// `tenants[3].egress[0]` -> (3, `egress[0]`); `tenants[3]` -> (3, `(document)`).
fn split_tenant(path: &str) -> Option<(usize, &str)> {
    let rest = path.strip_prefix("tenants[")?;
    let end = rest.find(']')?;
    let index = rest.get(..end)?.parse().ok()?;
    let inner = rest.get(end + 1..)?;
    let inner = inner.strip_prefix('.').unwrap_or(inner);
    Some((
        index,
        if inner.is_empty() {
            "(document)"
        } else {
            inner
        },
    ))
}

impl Origin {
    /// Where `path` (a path of the whole document) is: file, path in it, line, tenant.
    pub fn find(&self, path: &str) -> Found {
        match self {
            Origin::File(f) => Found {
                file: None,
                path: path.to_owned(),
                place: f.places().describe(path),
            },
            Origin::Dir {
                settings,
                tenants_dir,
                tenants,
            } => {
                if let Some((file, inner)) =
                    split_tenant(path).and_then(|(i, inner)| Some((tenants.get(i)?, inner)))
                {
                    let places = file.places();
                    return Found {
                        file: Some(file.name.clone()),
                        path: inner.to_owned(),
                        place: Place {
                            line: places.line(inner),
                            tenant: file.tenant.clone(),
                        },
                    };
                }
                if path == "tenants" {
                    // About the tenants as a whole (there are none): their directory.
                    return Found {
                        file: Some(tenants_dir.clone()),
                        path: "(directory)".to_owned(),
                        place: Place::default(),
                    };
                }
                Found {
                    file: Some(settings.name.clone()),
                    path: path.to_owned(),
                    place: Place {
                        line: settings.places().line(path),
                        tenant: None,
                    },
                }
            }
        }
    }

    /// A message as read for this origin: in a directory, every path of the whole document
    /// the message names (`already claimed by tenants[0].namespaces[0]`) becomes its file and
    /// path (`namespaces[0] in policy/tenants/prod.yaml:3`); a single file's messages stay as
    /// they are.
    pub fn rewrite(&self, message: &str) -> String {
        if matches!(self, Origin::File(_)) || !message.contains("tenants[") {
            return message.to_owned();
        }
        let mut out = String::with_capacity(message.len() + 32);
        let mut rest = message;
        while let Some(at) = rest.find("tenants[") {
            // Not inside a longer word (`sub_tenants[`).
            let (before, from) = rest.split_at(at);
            out.push_str(before);
            let word_start = before
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
            // At least `tenants`: the loop always moves on.
            let len = path_len(from).max("tenants".len());
            let path = from.get(..len).unwrap_or(from);
            if word_start && split_tenant(path).is_some() {
                out.push_str(&self.find(path).reference());
            } else {
                out.push_str(path);
            }
            rest = from.get(len..).unwrap_or("");
        }
        out.push_str(rest);
        out
    }
}

/// The length of the path at the start of `s`: fields (`name`), indexes (`[3]`) and dots
/// between them, ending before anything else (a trailing `.` ends a sentence, not a path).
fn path_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut end = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b) if b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-' => {
                i += 1;
                end = i;
            }
            Some(b'[') => match s.get(i + 1..).and_then(|r| r.find(']')) {
                Some(close)
                    if close > 0
                        && s.get(i + 1..i + 1 + close)
                            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit())) =>
                {
                    i += close + 2;
                    end = i;
                }
                _ => break,
            },
            Some(b'.')
                if bytes
                    .get(i + 1)
                    .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') =>
            {
                i += 1;
            }
            _ => break,
        }
    }
    end
}

/// The places of a JSON text: each node at the line its first token is on, as the YAML parser
/// places them. `None` unless the text is exactly one JSON value this scanner reads as the YAML
/// parser would (no carriage returns, no repeated key, integers that fit 64 bits, at most 128
/// levels deep): anything else is the YAML parser's to read.
fn json_places(text: &str) -> Option<Located> {
    if text.contains('\r') {
        return None;
    }
    let mut scan = JsonScan {
        text,
        pos: 0,
        line: 1,
    };
    scan.skip_space();
    let root = scan.value(0)?;
    scan.skip_space();
    (scan.pos == text.len()).then_some(root)
}

struct JsonScan<'a> {
    text: &'a str,
    pos: usize,
    line: u32,
}

impl JsonScan<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'\n' => self.line += 1,
                b' ' | b'\t' => {}
                _ => return,
            }
            self.pos += 1;
        }
    }

    /// Consumes `b` (after white space).
    fn eat(&mut self, b: u8) -> bool {
        self.skip_space();
        let found = self.peek() == Some(b);
        if found {
            self.pos += 1;
        }
        found
    }

    fn value(&mut self, depth: usize) -> Option<Located> {
        if depth > 128 {
            return None;
        }
        self.skip_space();
        let line = self.line;
        let node = match self.peek()? {
            b'{' => {
                self.pos += 1;
                let mut entries: Vec<(String, u32, Located)> = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_space();
                        let key_line = self.line;
                        let key = self.string()?;
                        if !self.eat(b':') {
                            return None;
                        }
                        let value = self.value(depth + 1)?;
                        entries.push((key, key_line, value));
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                let mut keys: Vec<&str> = entries.iter().map(|(k, _, _)| k.as_str()).collect();
                keys.sort_unstable();
                if keys.windows(2).any(|w| w.first() == w.get(1)) {
                    return None;
                }
                Node::Map(entries)
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                Node::Seq(items)
            }
            b'"' => Node::Scalar(Some(self.string()?)),
            _ => self.literal()?,
        };
        Some(Located { line, node })
    }

    /// A string token, unescaped.
    fn string(&mut self) -> Option<String> {
        let bytes = self.text.as_bytes();
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.pos;
        let mut end = start + 1;
        let mut escaped = false;
        loop {
            match *bytes.get(end)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    end += 2;
                }
                b if b < 0x20 => return None,
                _ => end += 1,
            }
        }
        self.pos = end + 1;
        if escaped {
            serde_json::from_str(self.text.get(start..=end)?).ok()
        } else {
            self.text.get(start + 1..end).map(str::to_owned)
        }
    }

    /// `true`, `false`, `null` or a number, as the YAML parser hands them to [`NodeVisitor`].
    fn literal(&mut self) -> Option<Node> {
        let rest = self.text.get(self.pos..)?;
        let len = rest
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')))
            .unwrap_or(rest.len());
        let token = rest.get(..len)?;
        self.pos += len;
        match token {
            "true" | "false" => Some(Node::Scalar(Some(token.to_owned()))),
            "null" => Some(Node::Scalar(None)),
            _ if serde_json::from_str::<serde_json::Number>(token).is_err() => None,
            _ if token.contains(['.', 'e', 'E']) => Some(Node::Scalar(None)),
            _ => {
                if let Ok(n) = token.parse::<u64>() {
                    Some(Node::Scalar(Some(n.to_string())))
                } else {
                    token
                        .parse::<i64>()
                        .ok()
                        .map(|n| Node::Scalar(Some(n.to_string())))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON scanner places every node where the YAML parser does.
    #[test]
    fn json_places_are_the_yaml_parsers() {
        let texts = [
            "{\n  \"apiVersion\": \"x\",\n  \"tenants\": [\n    {\"name\": \"a\"}\n  ]\n}\n",
            "{\"a\":\n  {\"b\": [1,\n    2.5, true, false, null, -7, 0, 1e3, \"x\\ny\\u00e9\\\"\"],\n   \"c\": {}, \"d\": []\n  },\n\n  \"tenants\"\n  :\n  [\n    {\n      \"name\": \"t\\u00e9\", \"n\": 18446744073709551615\n    }\n  ]\n}",
            "  {}  ",
            "{\"x\": [[[], {}], \"\"]}\n\n",
        ];
        for text in texts {
            let yaml = crate::yaml::from_str::<Located>(text).unwrap();
            assert_eq!(json_places(text), Some(yaml), "{text}");
        }
        // Not taken whole: left to the YAML parser.
        for text in [
            "{\"a\": 1, \"a\": 2}",
            "{\"a\": 1}\r\n",
            "{\"a\": 1} x",
            "{\"a\": 99999999999999999999}",
            "{\"a\": tru}",
            "{\"a\" 1}",
        ] {
            assert_eq!(json_places(text), None, "{text}");
        }
    }

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

    fn dir_origin() -> Origin {
        Origin::Dir {
            settings: SourceFile::new("p/settings.yaml", None, "apiVersion: x\nmode: audit\n"),
            tenants_dir: "p/tenants".into(),
            tenants: vec![
                SourceFile::new(
                    "p/tenants/dev.yaml",
                    Some("dev".into()),
                    "# dev\nnamespaces: [dev]\negress:\n  - hosts: [\"./*\"]\n",
                ),
                SourceFile::new(
                    "p/tenants/prod.yaml",
                    Some("prod".into()),
                    "name: prod\nnamespaces:\n  - prod\n  - dev\n",
                ),
            ],
        }
    }

    #[test]
    fn a_directory_maps_paths_to_files() {
        let o = dir_origin();
        let f = o.find("tenants[1].namespaces[1]");
        assert_eq!(f.file.as_deref(), Some("p/tenants/prod.yaml"));
        assert_eq!(f.path, "namespaces[1]");
        assert_eq!(f.place.line, Some(4));
        assert_eq!(f.place.tenant.as_deref(), Some("prod"));
        assert_eq!(f.reference(), "namespaces[1] in p/tenants/prod.yaml:4");
        let t = o.find("tenants[0]");
        assert_eq!((t.path.as_str(), t.place.line), ("(document)", Some(2)));
        let s = o.find("mode");
        assert_eq!(s.file.as_deref(), Some("p/settings.yaml"));
        assert_eq!((s.path.as_str(), s.place.line), ("mode", Some(2)));
        assert_eq!(o.find("tenants").file.as_deref(), Some("p/tenants"));
        // One file: paths stay the document's, and messages are not rewritten.
        let one = Origin::File(SourceFile::new("p.yaml", None, "tenants: []\n"));
        assert_eq!(one.find("tenants[0].name").file, None);
        let m = "already claimed by tenants[0].namespaces[0].";
        assert_eq!(one.rewrite(m), m);
    }

    #[test]
    fn messages_name_the_files_of_the_paths_they_cite() {
        let o = dir_origin();
        assert_eq!(
            o.rewrite("namespace \"dev\" is already claimed by tenants[0].namespaces[0]; a namespace"),
            "namespace \"dev\" is already claimed by namespaces[0] in p/tenants/dev.yaml:2; a namespace"
        );
        // A sentence's full stop, quotes and parentheses end a path; several paths each.
        assert_eq!(
            o.rewrite("see tenants[0].egress[0].hosts[0]. (tenants[1]) \"tenants[1].name\""),
            "see egress[0].hosts[0] in p/tenants/dev.yaml:4. ((document) in p/tenants/prod.yaml:1) \"name in p/tenants/prod.yaml:1\""
        );
        // Not a path of the document: left alone.
        for m in [
            "sub_tenants[0].x",
            "tenants[x]",
            "tenants[",
            "no paths",
            "tenants",
        ] {
            assert_eq!(o.rewrite(m), m);
        }
        assert_eq!(path_len("tenants[3].egress[0].hosts[2]: x"), 29);
        assert_eq!(path_len("tenants[3]."), 10);
        assert_eq!(path_len("tenants[]"), 7);
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
