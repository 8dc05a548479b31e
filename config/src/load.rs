//! Reading a policy: a file (or stdin) to a validated [`PolicySpec`] and its compiled
//! [`Policy`], with errors that name the input and the place in it. Every subcommand that takes
//! a policy reads it here.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use tenant_egress_core::{InvalidPolicy, Policy, PolicyError, PolicySpec, Warning};

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
    /// The compiled matcher.
    pub policy: Policy,
    /// Validation warnings, in document order.
    pub warnings: Vec<Warning>,
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
    #[error("{}", invalid_text(input, invalid))]
    Invalid {
        /// The input as named on the command line.
        input: String,
        /// The errors and the warnings found with them.
        invalid: InvalidPolicy,
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
}

/// Every error and warning on a line of its own, then the count.
fn invalid_text(input: &str, invalid: &InvalidPolicy) -> String {
    let mut out = String::new();
    for e in &invalid.errors {
        let _ = writeln!(out, "error: {input}: {e}");
    }
    for w in &invalid.warnings {
        let _ = writeln!(out, "warning: {input}: {w}");
    }
    let n = invalid.errors.len();
    let _ = write!(
        out,
        "{input}: invalid ({n} error{})",
        if n == 1 { "" } else { "s" }
    );
    out
}

/// Reads, validates and compiles the policy at `path` (`-` for stdin).
pub fn load_policy(path: &Path) -> Result<Loaded, LoadError> {
    let input = Input::from_path(path);
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
    let (spec, warnings) =
        tenant_egress_core::validate::validate_value(value).map_err(|invalid| {
            LoadError::Invalid {
                input: input.to_owned(),
                invalid,
            }
        })?;
    let policy = Policy::from_spec(&spec).map_err(|error| LoadError::Compile {
        input: input.to_owned(),
        error,
    })?;
    Ok(Loaded {
        spec,
        policy,
        warnings,
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
            text.starts_with("error: bad.yaml: tenants[0].name: "),
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
