//! The block-style YAML of a generated object, written directly: serde-saphyr's text byte for
//! byte (a property test and every golden hold it to that), without its cost per scalar, which
//! was most of `generate`'s time on a 100,000-rule policy (about 90 instructions per byte).
//!
//! It writes only what it is sure of and hands the rest back ([`Unsupported`]), and
//! [`super::Writer`] then renders the whole document with serde-saphyr:
//! - a string is written plain only when no YAML reader can take it for anything else (see
//!   [`plain`]); `*`-led host names are double-quoted as serde-saphyr quotes them; any other
//!   single-line string is rendered by serde-saphyr on its own (the quoting rules stay there);
//! - a multi-line string, a key that is not [`plain`], a float, a sequence directly inside a
//!   sequence, or a document that is not a mapping are left to serde-saphyr whole.
//!
//! Layout, as serde-saphyr writes it: two-space indentation; a sequence under a key at the
//! key's own indentation (`key:\n- item`); a mapping in a sequence item starts on the dash's
//! line; empty collections as `{}` and `[]`.
//!
//! A [`Value::Shared`] subtree (a shard every plugin of a tenant carries, the `knownNamespaces`
//! or tenant directory every shard carries) is written once per place it can sit in (its
//! indentation, after a key or a dash) and copied from then on.

use std::collections::HashMap;
use std::rc::Rc;

use indexmap::IndexMap;

use super::Value;

/// What this writer leaves to serde-saphyr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unsupported;

type Result<T = ()> = std::result::Result<T, Unsupported>;

/// Writes documents, keeping the text of each shared subtree it wrote.
#[derive(Debug, Default)]
pub(super) struct Emitter {
    /// (subtree address, indentation, after a dash) -> the subtree (kept alive, so the address
    /// stays its own) and its text from just after the key's `:` or the dash.
    texts: HashMap<(usize, usize, bool), (Rc<Value>, String)>,
    /// How many times a shared subtree's text was copied (for the tests).
    pub(super) copied: usize,
}

impl Emitter {
    /// Appends `value` as one document to `out`; on [`Unsupported`], `out` may hold part of it
    /// (the caller cuts it back).
    pub(super) fn document(&mut self, out: &mut String, value: &Value) -> Result {
        match value {
            Value::Mapping(m) if !m.is_empty() => self.entries(out, m, 0),
            Value::Shared(inner) => self.document(out, inner),
            _ => Err(Unsupported),
        }
    }

    fn entries(&mut self, out: &mut String, m: &IndexMap<String, Value>, indent: usize) -> Result {
        for (key, value) in m {
            pad(out, indent);
            self.entry(out, key, value, indent)?;
        }
        Ok(())
    }

    /// `key: value` from the key on.
    fn entry(&mut self, out: &mut String, key: &str, value: &Value, indent: usize) -> Result {
        if !plain(key) {
            return Err(Unsupported);
        }
        out.push_str(key);
        out.push(':');
        self.after_key(out, value, indent)
    }

    /// A mapping entry's value, from just after the key's `:`.
    fn after_key(&mut self, out: &mut String, value: &Value, indent: usize) -> Result {
        match value {
            Value::Shared(inner) => self.shared(out, inner, indent, false),
            Value::Mapping(m) if !m.is_empty() => {
                out.push('\n');
                self.entries(out, m, indent + 2)
            }
            Value::Sequence(items) if !items.is_empty() => {
                out.push('\n');
                for item in items {
                    pad(out, indent);
                    out.push('-');
                    self.after_dash(out, item, indent)?;
                }
                Ok(())
            }
            other => {
                out.push(' ');
                scalar(out, other)?;
                out.push('\n');
                Ok(())
            }
        }
    }

    /// A sequence item, from just after its dash (at `indent`).
    fn after_dash(&mut self, out: &mut String, value: &Value, indent: usize) -> Result {
        match value {
            Value::Shared(inner) => self.shared(out, inner, indent, true),
            Value::Mapping(m) if !m.is_empty() => {
                out.push(' ');
                for (i, (key, value)) in m.iter().enumerate() {
                    if i > 0 {
                        pad(out, indent + 2);
                    }
                    self.entry(out, key, value, indent + 2)?;
                }
                Ok(())
            }
            Value::Sequence(items) if !items.is_empty() => Err(Unsupported),
            other => {
                out.push(' ');
                scalar(out, other)?;
                out.push('\n');
                Ok(())
            }
        }
    }

    fn shared(&mut self, out: &mut String, inner: &Rc<Value>, indent: usize, dash: bool) -> Result {
        let key = (Rc::as_ptr(inner) as usize, indent, dash);
        if let Some((_, text)) = self.texts.get(&key) {
            out.push_str(text);
            self.copied += 1;
            return Ok(());
        }
        let start = out.len();
        if dash {
            self.after_dash(out, inner, indent)?;
        } else {
            self.after_key(out, inner, indent)?;
        }
        let text = out.get(start..).unwrap_or_default().to_owned();
        self.texts.insert(key, (inner.clone(), text));
        Ok(())
    }
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A scalar (or an empty collection) as serde-saphyr writes it in a block.
fn scalar(out: &mut String, value: &Value) -> Result {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => out.push_str(&u.to_string()),
            (None, Some(i)) => out.push_str(&i.to_string()),
            // Floats: serde-saphyr's spelling is its own.
            (None, None) => return Err(Unsupported),
        },
        Value::String(s) => string(out, s)?,
        Value::Mapping(m) if m.is_empty() => out.push_str("{}"),
        Value::Sequence(items) if items.is_empty() => out.push_str("[]"),
        _ => return Err(Unsupported),
    }
    Ok(())
}

fn string(out: &mut String, s: &str) -> Result {
    if plain(s) {
        out.push_str(s);
        return Ok(());
    }
    // `*/host`, `*.suffix`: `*` opens an alias in YAML, so the string is double-quoted, and
    // nothing in it needs an escape.
    if s.strip_prefix('*')
        .is_some_and(|rest| rest.bytes().all(plain_byte))
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return Ok(());
    }
    if s.contains(['\n', '\r']) {
        return Err(Unsupported);
    }
    // Anything else as serde-saphyr writes it alone (a single-line scalar reads the same there
    // as after a key or a dash).
    let text = super::to_string(&s).map_err(|_| Unsupported)?;
    match text.strip_suffix('\n') {
        Some(line) if !line.contains('\n') => {
            out.push_str(line);
            Ok(())
        }
        _ => Err(Unsupported),
    }
}

fn plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'*')
}

/// Whether `s` can be written plain, as key or value, in any YAML reader (1.1, as kubectl's,
/// or 1.2): it starts with a letter (so no number, date, `.inf`, indicator or document marker)
/// or with `./` (Istio's own-namespace hosts), holds only letters, digits and `.-_/*` (no
/// space, `:` or `#`), and is not a word YAML 1.1 reads as a boolean or null (`yes`, `on`, `n`,
/// ... in any case), nor `nan`/`inf`, which some readers take for floats.
pub(super) fn plain(s: &str) -> bool {
    const WORDS: [&str; 11] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
    ];
    let b = s.as_bytes();
    let led = b.first().is_some_and(u8::is_ascii_alphabetic) || b.starts_with(b"./");
    led && b.iter().all(|&c| plain_byte(c)) && !WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}
