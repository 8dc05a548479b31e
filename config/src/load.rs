//! Reading a policy: a file (or stdin), or a policy directory ([`crate::policy_dir`]), to a
//! validated [`PolicySpec`] and its compiled [`Policy`], with errors that name the input (the
//! file, in a directory) and the place in it. Every subcommand that takes a policy reads it here.

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use tenant_egress_core::{InvalidPolicy, Policy, PolicyError, PolicySpec, Warning};

use crate::locate::{Origin, Place, SourceFile};
use crate::yaml::{self, YamlError};

/// Where an input comes from: a file, or stdin for `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Standard input (the path `-`).
    Stdin,
    /// A file.
    File(PathBuf),
}

impl Input {
    /// `-` is stdin, anything else a file.
    pub fn from_path(path: &Path) -> Input {
        if path == Path::new("-") {
            Input::Stdin
        } else {
            Input::File(path.to_owned())
        }
    }

    /// How messages name this input: the path as given, or `-`.
    pub fn display(&self) -> String {
        match self {
            Input::Stdin => "-".to_owned(),
            Input::File(p) => p.display().to_string(),
        }
    }

    /// How generated files name this input in their header: the file name only (so the output
    /// is the same wherever the command runs), or `(stdin)`.
    pub fn label(&self) -> String {
        match self {
            Input::Stdin => "(stdin)".to_owned(),
            Input::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }

    /// The whole input as text, refused beyond [`yaml::MAX_INPUT_BYTES`].
    pub fn read(&self) -> Result<String, LoadError> {
        let read_error = |error| LoadError::Read {
            input: self.display(),
            error,
        };
        let mut text = String::new();
        // One byte over the limit is enough to know the input is too large.
        let limit = u64::try_from(yaml::MAX_INPUT_BYTES).unwrap_or(u64::MAX) + 1;
        match self {
            Input::Stdin => std::io::stdin()
                .lock()
                .take(limit)
                .read_to_string(&mut text)
                .map_err(read_error)?,
            Input::File(p) => std::fs::File::open(p)
                .and_then(|f| f.take(limit).read_to_string(&mut text))
                .map_err(read_error)?,
        };
        if text.len() > yaml::MAX_INPUT_BYTES {
            return Err(LoadError::Syntax {
                input: self.display(),
                message: YamlError::TooLarge { size: text.len() }.to_string(),
            });
        }
        Ok(text)
    }
}

/// A policy as read: the document, the matcher compiled from it, and what validation warns.
#[derive(Debug)]
pub struct Loaded {
    /// The validated document (defaults filled in).
    pub spec: PolicySpec,
    /// The compiled matcher, compiled the first time it is asked for ([`Loaded::policy`]):
    /// `generate` and `graph` never decide a request, and compiling a 100,000-rule policy is a
    /// tenth of what `generate` costs.
    policy: OnceCell<Policy>,
    /// Validation warnings, in document order.
    pub warnings: Vec<Warning>,
    /// Where the document came from (its text, or a directory's files), read again for the
    /// places of the warnings when they are printed.
    origin: Origin,
}

impl Loaded {
    /// The compiled matcher.
    pub fn policy(&self) -> &Policy {
        self.policy
            .get_or_init(|| Policy::from_validated(&self.spec))
    }

    /// Where the document came from: maps its paths to files, lines and tenants.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Whether the policy was read from a directory (its messages name a file each).
    pub fn is_dir(&self) -> bool {
        matches!(self.origin, Origin::Dir { .. })
    }

    /// A warning found outside validation, written `PATH[ (tenant NAME)]: MESSAGE` (as
    /// `manifest::coverage::tcp_gaps` writes them), as a diagnostic with its place.
    pub fn extra_warning(&self, text: &str) -> Diagnostic {
        let (head, message) = text.split_once(": ").unwrap_or(("(document)", text));
        let path = head.split(" (").next().unwrap_or(head);
        Diagnostic::new(Severity::Warning, path, message, &self.origin)
    }

    /// The warnings as diagnostics, repeated ones grouped ([`group`]).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        if self.warnings.is_empty() {
            return Vec::new();
        }
        group(
            self.warnings
                .iter()
                .map(|w| Diagnostic::new(Severity::Warning, &w.path, &w.message, &self.origin))
                .collect(),
        )
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy is invalid.
    Error,
    /// Valid, but probably not what was meant (`validate --strict` fails on it).
    Warning,
}

/// One error or warning with its place: path, line, tenant (`validate --json` prints these).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// For a policy directory, the file (`policy/tenants/prod.yaml`); a single file's
    /// diagnostics leave it out (the input is the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The place in the document (`tenants[3].egress[0].hosts[2]`), or in the file of a
    /// directory (`egress[0].hosts[2]`).
    pub path: String,
    /// The line and tenant of `path`.
    #[serde(flatten)]
    pub place: Place,
    /// What is wrong.
    pub message: String,
    /// Other places with the same message (grouped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

impl Diagnostic {
    /// A message about `path` of the whole document, placed by `origin` (in a directory: its
    /// file, the path there, and the paths the message names rewritten alike).
    fn new(severity: Severity, path: &str, message: &str, origin: &Origin) -> Diagnostic {
        let found = origin.find(path);
        Diagnostic {
            severity,
            file: found.file,
            path: found.path,
            place: found.place,
            message: origin.rewrite(message),
            also: Vec::new(),
        }
    }

    /// How another message refers to this one's place: the path, with its file in a directory.
    fn reference(&self) -> String {
        crate::locate::reference(self.file.as_deref(), &self.path, &self.place)
    }

    /// `warning: policy.yaml:12: tenants[3].egress[0].hosts[2] (tenant prod): message`; in a
    /// directory `warning: policy/tenants/prod.yaml:5: egress[0].hosts[2] (tenant prod): ...`.
    pub fn to_text(&self, input: &str) -> String {
        let input = self.file.as_deref().unwrap_or(input);
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut s = format!(
            "{severity}: {}: {}{}: {}",
            self.place.file_line(input),
            self.path,
            self.place.tenant_suffix(),
            self.message
        );
        if !self.also.is_empty() {
            const SHOWN: usize = 3;
            let shown: Vec<&str> = self.also.iter().take(SHOWN).map(String::as_str).collect();
            s.push_str(&format!(" (also at {}", shown.join(", ")));
            if self.also.len() > SHOWN {
                s.push_str(&format!(" and {} more", self.also.len() - SHOWN));
            }
            s.push(')');
        }
        s
    }
}

/// How many warnings [`group`] leaves: the distinct messages (without reading places).
pub fn group_count(warnings: &[Warning]) -> usize {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for w in warnings {
        seen.insert(&w.message);
    }
    seen.len()
}

/// Groups diagnostics with the same severity and message (the same mistake in many places) into
/// the first, which lists the other paths in `also`. Order is kept.
pub fn group(all: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(all.len());
    for d in all {
        match out
            .iter_mut()
            .find(|o| o.severity == d.severity && o.message == d.message)
        {
            Some(first) => first.also.push(d.reference()),
            None => out.push(d),
        }
    }
    out
}

/// Why a policy cannot be read. The text names the input on every line and starts each with
/// `error: ` (or `warning: `), ready to print.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The input cannot be read (an I/O problem, not the document's).
    #[error("error: cannot read {input}: {error}")]
    Read {
        /// The input as named on the command line.
        input: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// Not YAML or JSON (the message says where), or over an input limit.
    #[error("error: {input}: {message}")]
    Syntax {
        /// The input as named on the command line.
        input: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document is not a valid policy: every error, each at its path.
    #[error("{}", invalid_text(input, &self.diagnostics()))]
    Invalid {
        /// The input as named on the command line.
        input: String,
        /// The errors and the warnings found with them.
        invalid: InvalidPolicy,
        /// Where each path is in the input (boxed: a directory's files make it large).
        origin: Box<Origin>,
    },
    /// A policy directory's files cannot be merged: its layout is wrong, or a file is not
    /// YAML (every such problem, each naming its file).
    #[error("{}", invalid_text(input, &self.diagnostics()))]
    Files {
        /// The directory as named on the command line.
        input: String,
        /// What is wrong, file by file.
        errors: Vec<FileError>,
    },
    /// The policy validates but does not compile (a limit of the matcher).
    #[error("error: {input}: {error}")]
    Compile {
        /// The input as named on the command line.
        input: String,
        /// Why.
        #[source]
        error: PolicyError,
    },
}

impl LoadError {
    /// True when the input could not be read at all (a usage or I/O problem, exit code 2), as
    /// opposed to a document that is wrong (exit code 1).
    pub fn is_io(&self) -> bool {
        matches!(self, LoadError::Read { .. })
    }

    /// For an invalid document, its errors then its warnings, each with its place (repeated
    /// warnings grouped); empty for the other failures.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let (invalid, origin) = match self {
            LoadError::Invalid {
                invalid, origin, ..
            } => (invalid, origin),
            LoadError::Files { errors, .. } => {
                return errors
                    .iter()
                    .map(|e| Diagnostic {
                        severity: Severity::Error,
                        file: Some(e.file.clone()),
                        path: e.path.clone(),
                        place: Place {
                            line: e.line,
                            tenant: None,
                        },
                        message: e.message.clone(),
                        also: Vec::new(),
                    })
                    .collect()
            }
            _ => return Vec::new(),
        };
        let errors = invalid
            .errors
            .iter()
            .map(|e| Diagnostic::new(Severity::Error, &e.path, &e.kind.to_string(), origin));
        let warnings = invalid
            .warnings
            .iter()
            .map(|w| Diagnostic::new(Severity::Warning, &w.path, &w.message, origin));
        let mut out: Vec<Diagnostic> = errors.collect();
        out.extend(group(warnings.collect()));
        out
    }
}

/// A problem with one file of a policy directory (its layout or its syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file (or directory) as messages name it.
    pub file: String,
    /// The place in the file (`name`, `tenants`), or `(document)` for the whole file.
    pub path: String,
    /// The line, when the problem has one.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// Every error and warning on a line of its own, then the count.
fn invalid_text(input: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(out, "{}", d.to_text(input));
    }
    let n = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let _ = write!(
        out,
        "{input}: invalid ({n} error{})",
        if n == 1 { "" } else { "s" }
    );
    out
}

/// Reads, validates and compiles the policy at `path`: a file, `-` for stdin, or a policy
/// directory ([`crate::policy_dir`]).
pub fn load_policy(path: &Path) -> Result<Loaded, LoadError> {
    let input = Input::from_path(path);
    if path.is_dir() {
        let merged = crate::policy_dir::read(path)?;
        return load_value(&input.display(), merged.value.to_json(), merged.origin);
    }
    let text = input.read()?;
    parse_policy(&input.display(), &text)
}

/// Validates and compiles a policy given as text; `input` names it in errors.
///
/// JSON is YAML too, but JSON errors read better from the JSON parser, so text that looks
/// like JSON (starts with `{`) goes there.
pub fn parse_policy(input: &str, text: &str) -> Result<Loaded, LoadError> {
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| LoadError::Syntax {
            input: input.to_owned(),
            message: format!("not valid JSON: {e}"),
        })?
    } else {
        yaml::from_str(text).map_err(|e| LoadError::Syntax {
            input: input.to_owned(),
            message: e.to_string(),
        })?
    };
    load_value(
        input,
        value,
        Origin::File(SourceFile::new(input, None, text)),
    )
}

/// Validates and compiles a document already read; `origin` places its paths.
fn load_value(input: &str, value: serde_json::Value, origin: Origin) -> Result<Loaded, LoadError> {
    let (spec, mut warnings) = match tenant_egress_core::validate::validate_value(value) {
        Ok(ok) => ok,
        Err(invalid) => {
            return Err(LoadError::Invalid {
                input: input.to_owned(),
                invalid,
                origin: Box::new(origin),
            })
        }
    };
    // The likely typos: authoring-time only (the filter does not compute them).
    warnings.extend(tenant_egress_core::validate::lint(&spec));
    Ok(Loaded {
        spec,
        policy: OnceCell::new(),
        warnings,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: tenant-egress/v1\n\
                          tenants:\n  - name: prod\n    namespaces: [prod]\n    egress: [{hosts: [\"./*\", \"./*\"]}]\n";

    #[test]
    fn yaml_and_json_load_alike() {
        let yaml = parse_policy("p.yaml", POLICY).unwrap();
        assert_eq!(yaml.spec.tenants[0].name, "prod");
        assert_eq!(yaml.warnings.len(), 1, "{:?}", yaml.warnings);
        let json = serde_json::to_string(&yaml.spec).unwrap();
        let again = parse_policy("p.json", &json).unwrap();
        assert_eq!(again.spec, yaml.spec);
    }

    #[test]
    fn errors_name_the_input_and_the_place() {
        let e = parse_policy("p.yaml", "apiVersion: [unclosed\n").unwrap_err();
        let text = e.to_string();
        assert!(!e.is_io());
        assert!(
            text.starts_with("error: p.yaml: not valid YAML: ") && text.contains("line"),
            "{text}"
        );

        let e = parse_policy("p.json", "{\"apiVersion\": ").unwrap_err();
        assert!(
            e.to_string().starts_with("error: p.json: not valid JSON: "),
            "{e}"
        );

        let e = parse_policy(
            "bad.yaml",
            "apiVersion: tenant-egress/v1\ntenants: [{name: Prod, namespaces: [p]}]\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("error: bad.yaml:2: tenants[0].name (tenant Prod): "),
            "{text}"
        );
        assert!(text.ends_with("bad.yaml: invalid (1 error)"), "{text}");

        let e = load_policy(Path::new("/nonexistent/policy.yaml")).unwrap_err();
        assert!(e.is_io());
        assert!(e
            .to_string()
            .starts_with("error: cannot read /nonexistent/policy.yaml: "));
    }

    #[test]
    fn an_alias_bomb_in_a_policy_is_refused() {
        let mut doc =
            String::from("apiVersion: tenant-egress/v1\nx0: &x0 [a, a, a, a, a, a, a, a]\n");
        for i in 1..9 {
            let p = i - 1;
            doc.push_str(&format!(
                "x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n"
            ));
        }
        let e = parse_policy("bomb.yaml", &doc).unwrap_err();
        assert!(matches!(e, LoadError::Syntax { .. }), "{e}");
    }

    #[test]
    fn labels_name_files_not_paths() {
        assert_eq!(
            Input::from_path(Path::new("/a/b/policy.yaml")).label(),
            "policy.yaml"
        );
        assert_eq!(Input::from_path(Path::new("-")).label(), "(stdin)");
        assert_eq!(Input::from_path(Path::new("-")), Input::Stdin);
    }
}
