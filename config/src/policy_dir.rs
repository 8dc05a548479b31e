//! The policy as a directory: an authoring format for a policy many teams edit.
//!
//! ```text
//! policy/
//!   settings.yaml        the document-wide fields (apiVersion, mode, unknownSource, ...)
//!   tenants/
//!     prod.yaml          one tenant: name (optional), namespaces, egress, workloads, ...
//!     uat.yaml
//! ```
//!
//! A CODEOWNERS file can then give each team its own tenant file (`/policy/tenants/prod.yaml
//! @org/prod-team`) and the platform team `settings.yaml`. Because ownership follows the path,
//! a tenant file holds the tenant its name says: `tenants/prod.yaml` is tenant `prod` (its
//! `name` may be left out; a different one is an error), so the team owning `prod.yaml` cannot
//! define tenant `uat`. Claiming another team's namespace is caught as in one file (a namespace
//! belongs to one tenant), and the message names both files.
//!
//! The directory is merged here into the one document the core validates and the filter
//! receives (settings, then `tenants:` in file-name order); [`Origin::Dir`] keeps which file
//! each tenant came from, so every error and warning names the file and the path in it. The
//! filter never sees the directory.
//!
//! Fail closed: a file in `tenants/` that is not read would silently drop a tenant (its
//! namespaces would become unknown sources), so anything there but `*.yaml`, `*.yml`, `*.json`
//! and dotfiles is an error, as is a subdirectory.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use tenant_egress_core::PolicySpec;

use crate::load::{FileError, Input, LoadError};
use crate::locate::{Origin, SourceFile};
use crate::yaml::{self, Value};

/// The stem of the settings file (`settings.yaml`, `.yml` or `.json`).
pub const SETTINGS: &str = "settings";
/// The directory of the tenant files.
pub const TENANTS: &str = "tenants";
/// The extensions a policy file may have.
pub const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// A policy directory as read: the merged document and where each part came from.
#[derive(Debug)]
pub struct Merged {
    /// The whole document: the settings' fields in their order, then `tenants`.
    pub value: Value,
    /// The files, to map paths of the whole document back to them.
    pub origin: Origin,
}

fn policy_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

fn hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The entries of a directory, sorted by name (the merged order must not depend on the file
/// system's).
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, LoadError> {
    let read_error = |error| LoadError::Read {
        input: dir.display().to_string(),
        error,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Reads one file as a YAML (or JSON) value, keeping the order of its mappings.
fn parse(name: &str, text: &str) -> Result<Value, FileError> {
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        yaml::from_str(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|message| FileError {
        file: name.to_owned(),
        path: "(document)".to_owned(),
        line: None,
        message,
    })
}

/// The line of a top-level field of a file.
fn line_of(file: &SourceFile, field: &str) -> Option<u32> {
    file.places().line(field)
}

/// Reads the policy directory `dir` and merges it into one document. Every problem with the
/// layout or a file's syntax is reported, each naming its file; an unreadable file or
/// directory is an I/O error.
pub fn read(dir: &Path) -> Result<Merged, LoadError> {
    let input = dir.display().to_string();
    let mut errors: Vec<FileError> = Vec::new();
    // `path` is the place in the file (`(document)` for the file as a whole).
    let layout = |file: &Path, path: &str, line, message: String| FileError {
        file: file.display().to_string(),
        path: path.to_owned(),
        line,
        message,
    };

    let top = entries(dir)?;
    let settings: Vec<&PathBuf> = top
        .iter()
        .filter(|(name, path)| {
            Path::new(name).file_stem().and_then(|s| s.to_str()) == Some(SETTINGS)
                && policy_extension(path)
        })
        .map(|(_, path)| path)
        .collect();
    let settings_path = match settings.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(LoadError::Files {
                input: input.clone(),
                errors: vec![layout(
                    dir,
                    "(directory)",
                    None,
                    format!(
                        "no {SETTINGS}.yaml: a policy directory holds {SETTINGS}.yaml (the \
                         document-wide fields: apiVersion, mode, unknownSource, ...) and \
                         {TENANTS}/<name>.yaml (one tenant each)"
                    ),
                )],
            })
        }
        more => {
            return Err(LoadError::Files {
                input: input.clone(),
                errors: vec![layout(
                    dir,
                    "(directory)",
                    None,
                    format!(
                        "{} settings files ({}); keep one",
                        more.len(),
                        more.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )],
            })
        }
    };

    let settings_text = Input::File(settings_path.clone()).read()?;
    // The whole directory is read under one file's limit: the merged document is what the
    // limit protects.
    let mut total = settings_text.len();
    let settings_file = SourceFile::new(settings_path.display().to_string(), None, &settings_text);
    let mut document: IndexMap<String, Value> = IndexMap::new();
    match parse(&settings_file.name, &settings_text) {
        Ok(Value::Mapping(m)) => document = m,
        Ok(Value::Null) => {} // an empty file: every field defaulted (apiVersion is missing)
        Ok(_) => errors.push(layout(
            &settings_path,
            "(document)",
            None,
            "the settings file holds one mapping of document-wide fields".to_owned(),
        )),
        Err(e) => errors.push(e),
    }
    if document.contains_key(TENANTS) {
        errors.push(layout(
            &settings_path,
            TENANTS,
            line_of(&settings_file, TENANTS),
            format!(
                "`{TENANTS}:` does not belong in the settings of a policy directory: each \
                 tenant is its own file, {TENANTS}/<name>.yaml"
            ),
        ));
    }

    let tenants_dir = dir.join(TENANTS);
    let mut tenant_values = Vec::new();
    let mut tenant_files = Vec::new();
    if tenants_dir.is_dir() {
        for (name, path) in entries(&tenants_dir)? {
            if hidden(&name) {
                continue;
            }
            if path.is_dir() {
                errors.push(layout(
                    &path,
                    "(directory)",
                    None,
                    format!(
                        "a directory in {TENANTS}/: tenant files are not read from \
                         subdirectories (a tenant there would be silently dropped)"
                    ),
                ));
                continue;
            }
            if !policy_extension(&path) {
                errors.push(layout(
                    &path,
                    "(document)",
                    None,
                    format!(
                        "not a tenant file: {TENANTS}/ holds <tenant>.yaml (or .yml, .json) \
                         files only; a file left unread would drop its tenant silently"
                    ),
                ));
                continue;
            }
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = Input::File(path.clone()).read()?;
            total = total.saturating_add(text.len());
            if total > yaml::MAX_INPUT_BYTES {
                return Err(LoadError::Files {
                    input,
                    errors: vec![layout(
                        dir,
                        "(directory)",
                        None,
                        format!(
                            "the policy's files hold more than {} bytes, the limit of one policy",
                            yaml::MAX_INPUT_BYTES
                        ),
                    )],
                });
            }
            let file = SourceFile::new(path.display().to_string(), Some(stem.clone()), &text);
            match parse(&file.name, &text) {
                Ok(Value::Mapping(mut tenant)) => {
                    match tenant.get("name") {
                        None => {
                            // The file's name is the tenant's: written first, as a tenant reads.
                            tenant.shift_insert(0, "name".to_owned(), Value::String(stem.clone()));
                        }
                        Some(Value::String(n)) if *n == stem => {}
                        Some(other) => errors.push(layout(
                            &path,
                            "name",
                            line_of(&file, "name"),
                            format!(
                                "the tenant is named {} but its file is {TENANTS}/{stem}.*: a \
                                 tenant file holds the tenant it is named after (ownership of \
                                 the file is ownership of the tenant); rename one of them, or \
                                 leave `name` out",
                                serde_json::to_string(&other.to_json())
                                    .unwrap_or_else(|_| "?".to_owned())
                            ),
                        )),
                    }
                    tenant_values.push(Value::Mapping(tenant));
                    tenant_files.push(file);
                }
                Ok(_) => errors.push(layout(
                    &path,
                    "(document)",
                    None,
                    "a tenant file holds one tenant: a mapping (name, namespaces, egress, ...)"
                        .to_owned(),
                )),
                Err(e) => errors.push(e),
            }
        }
    } else if tenants_dir.exists() {
        errors.push(layout(
            &tenants_dir,
            "(directory)",
            None,
            format!("{TENANTS} is not a directory"),
        ));
    }
    if !errors.is_empty() {
        return Err(LoadError::Files { input, errors });
    }
    document.insert(TENANTS.to_owned(), Value::Sequence(tenant_values));
    Ok(Merged {
        value: Value::Mapping(document),
        origin: Origin::Dir {
            settings: settings_file,
            tenants_dir: tenants_dir.display().to_string(),
            tenants: tenant_files,
        },
    })
}

/// Why a policy cannot be written as a directory.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The directory exists and holds something: writing into it would merge with (or
    /// leave behind) files that are not this policy's.
    #[error("{0} exists and is not empty; a policy directory is written new (remove it, or name another)")]
    NotEmpty(PathBuf),
    /// A tenant's name cannot be a file name, or two tenants share one.
    #[error("tenant {0:?} cannot be written as {TENANTS}/{0}.yaml: {1}")]
    TenantName(String, String),
    /// The YAML writer failed.
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
    /// Serializing the spec failed (a bug: every spec serializes).
    #[error("cannot serialize the policy: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing failed.
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// The files of `spec` as a policy directory, each a relative path and its text:
/// `settings.yaml` (with `settings_header` on top) and one `tenants/<name>.yaml` per tenant
/// (with `tenant_header(name)`).
pub fn files(
    spec: &PolicySpec,
    settings_header: &str,
    tenant_header: impl Fn(&str) -> String,
) -> Result<Vec<(PathBuf, String)>, WriteError> {
    let mut out = Vec::with_capacity(spec.tenants.len() + 1);
    let mut settings = Value::from_serialize(spec)?;
    if let Value::Mapping(m) = &mut settings {
        m.shift_remove(TENANTS);
    }
    out.push((
        PathBuf::from(format!("{SETTINGS}.yaml")),
        format!("{settings_header}{}", yaml::to_string(&settings)?),
    ));
    let mut seen = std::collections::HashSet::new();
    for tenant in &spec.tenants {
        // A file name must not leave the directory or collide: the core's name rule (a DNS
        // label) guarantees both.
        if let Err(e) = tenant_egress_core::name::check_label(&tenant.name) {
            return Err(WriteError::TenantName(tenant.name.clone(), e.to_string()));
        }
        if !seen.insert(tenant.name.as_str()) {
            return Err(WriteError::TenantName(
                tenant.name.clone(),
                "two tenants have this name".to_owned(),
            ));
        }
        let value = Value::from_serialize(tenant)?;
        out.push((
            Path::new(TENANTS).join(format!("{}.yaml", tenant.name)),
            format!(
                "{}{}",
                tenant_header(&tenant.name),
                yaml::to_string(&value)?
            ),
        ));
    }
    Ok(out)
}

/// Writes `files` ([`files`]) under `dir`, which must not exist or be empty.
pub fn write_new(dir: &Path, files: &[(PathBuf, String)]) -> Result<(), WriteError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e| WriteError::Io(p, e)
    };
    if dir.exists() {
        let mut it = std::fs::read_dir(dir).map_err(io(dir))?;
        if it.next().is_some() {
            return Err(WriteError::NotEmpty(dir.to_owned()));
        }
    }
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: tenant-egress/v1
unknownSource: allow
tenants:
  - name: uat
    namespaces: [uat]
    egress: [{hosts: [\"./*\"]}]
  - name: prod
    namespaces: [prod, prod-2]
    mode: audit
    egress: [{hosts: [\"./*\", \"uat/*\"]}]
";

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("policy-dir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_spec_written_as_a_directory_reads_back_the_same() {
        let spec = crate::load::parse_policy("p.yaml", POLICY).unwrap().spec;
        let files = files(&spec, "# settings\n", |n| format!("# tenant {n}\n")).unwrap();
        let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(
            names,
            ["settings.yaml", "tenants/uat.yaml", "tenants/prod.yaml"]
        );
        assert!(files[0].1.starts_with("# settings\n") && !files[0].1.contains("tenants"));
        let dir = temp("round-trip");
        write_new(&dir, &files).unwrap();
        let loaded = crate::load::load_policy(&dir).unwrap();
        assert!(loaded.is_dir());
        // File-name order: prod before uat; otherwise the same document.
        let mut expected = spec.clone();
        expected.tenants.reverse();
        assert_eq!(loaded.spec, expected);
        // Never over files that are there.
        let e = write_new(&dir, &files).unwrap_err();
        assert!(matches!(e, WriteError::NotEmpty(_)), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tenant_names_that_are_not_file_names_are_refused() {
        let mut spec = crate::load::parse_policy("p.yaml", POLICY).unwrap().spec;
        spec.tenants[0].name = "../etc".into();
        let e = files(&spec, "", |_| String::new()).unwrap_err();
        assert!(matches!(e, WriteError::TenantName(..)), "{e}");
        spec.tenants[0].name = "prod".into();
        let e = files(&spec, "", |_| String::new()).unwrap_err();
        assert!(e.to_string().contains("two tenants have this name"), "{e}");
    }

    #[test]
    fn the_merged_document_keeps_the_settings_order_then_the_tenants() {
        let dir = temp("order");
        std::fs::create_dir_all(dir.join(TENANTS)).unwrap();
        std::fs::write(
            dir.join("settings.yml"),
            "unknownSource: allow\napiVersion: tenant-egress/v1\n",
        )
        .unwrap();
        std::fs::write(dir.join("tenants/b.json"), "{\"namespaces\": [\"b\"]}").unwrap();
        std::fs::write(dir.join("tenants/a.yaml"), "namespaces: [a]\nname: a\n").unwrap();
        let merged = read(&dir).unwrap();
        let json = serde_json::to_string(&merged.value).unwrap();
        assert_eq!(
            json,
            r#"{"unknownSource":"allow","apiVersion":"tenant-egress/v1","tenants":[{"namespaces":["a"],"name":"a"},{"name":"b","namespaces":["b"]}]}"#
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
