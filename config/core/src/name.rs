//! DNS names: a stack-allocated, lowercase host buffer and the label rules shared by the
//! policy grammar, the authority parser and the cluster-name parser.
//!
//! DNS names compare case-insensitively (RFC 4343), and Istio itself matches hosts
//! case-sensitively, which is how `Secret.com` once slipped past a `secret.com` rule
//! (CVE-2021-39155). We therefore fold every name to lowercase exactly once, at the boundary,
//! into a [`HostName`], and every comparison after that is a plain byte comparison.

use std::fmt;

/// The longest DNS name we accept, in presentation form without the trailing dot
/// (RFC 1035 §2.3.4 allows 255 octets on the wire, which is 253 characters of text).
pub const MAX_NAME_LEN: usize = 253;

/// The longest DNS label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A lowercase DNS name or IP literal held inline (no heap allocation), at most
/// [`MAX_NAME_LEN`] bytes of ASCII.
///
/// Request-time code builds these from attacker-controlled input, so construction checks the
/// length and never allocates.
pub type HostName = InlineName<MAX_NAME_LEN>;

/// A lowercase namespace name held inline (a DNS label: at most 63 bytes).
pub type NsName = InlineName<MAX_LABEL_LEN>;

/// A lowercase ASCII name of at most `N` (<= 255) bytes stored inline.
#[derive(Clone, Copy)]
pub struct InlineName<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineName<N> {
    /// An empty name.
    pub const fn empty() -> Self {
        InlineName {
            len: 0,
            bytes: [0; N],
        }
    }

    /// Copies `parts` one after the other, folding ASCII letters to lowercase.
    /// Returns `None` if the result would be longer than `N` bytes or is not ASCII.
    pub fn concat_lower(parts: &[&[u8]]) -> Option<Self> {
        let mut out = Self::empty();
        let mut len = 0usize;
        for part in parts {
            let end = len.checked_add(part.len())?;
            if end > N {
                return None;
            }
            let dst = out.bytes.get_mut(len..end)?;
            for (d, s) in dst.iter_mut().zip(part.iter()) {
                if !s.is_ascii() {
                    return None;
                }
                *d = s.to_ascii_lowercase();
            }
            len = end;
        }
        out.len = u8::try_from(len).ok()?;
        Some(out)
    }

    /// The whole buffer, for a parser that folds a name straight into it (then
    /// [`Self::set_len`]). Crate-private: the caller must write lowercase ASCII only.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; N] {
        &mut self.bytes
    }

    /// Sets the length after [`Self::bytes_mut`]; `None` if over `N`.
    pub(crate) fn set_len(&mut self, len: usize) -> Option<()> {
        if len > N {
            return None;
        }
        self.len = u8::try_from(len).ok()?;
        Some(())
    }

    /// Lowercase copy of one byte string.
    pub fn lower(s: &[u8]) -> Option<Self> {
        Self::concat_lower(&[s])
    }

    /// The name's bytes (ASCII). Free, unlike [`Self::as_str`], which re-validates UTF-8: the
    /// request path compares and hashes bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `concat_lower`), so this cannot fail; the
        // fallback keeps the function total without a panic path.
        std::str::from_utf8(self.bytes.get(..usize::from(self.len)).unwrap_or(&[])).unwrap_or("")
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> PartialEq for InlineName<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl<const N: usize> Eq for InlineName<N> {}

impl<const N: usize> fmt::Debug for InlineName<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for InlineName<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a DNS name or label is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing given.
    #[error("it is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("it is {0} characters long; a DNS name has at most 253")]
    TooLong(usize),
    /// An empty label (`a..b`, or a leading dot).
    #[error("it has an empty label")]
    EmptyLabel,
    /// A label longer than [`MAX_LABEL_LEN`].
    #[error("label \"{0}\" is {1} characters long; a DNS label has at most 63")]
    LabelTooLong(String, usize),
    /// A character outside letters, digits and `-`.
    #[error("label \"{0}\" contains {1:?}; only ASCII letters, digits and '-' are allowed")]
    BadChar(String, char),
    /// A label starting or ending with `-`.
    #[error("label \"{0}\" starts or ends with '-'")]
    Hyphen(String),
    /// The last label is all digits: an IP address, or a name DNS cannot have.
    #[error("its last label is all digits (an IP address is not a host name)")]
    NumericTld,
    /// A `*` anywhere but as the whole left-most label.
    #[error("'*' is only allowed as the whole left-most label (\"*.example.com\")")]
    PartialWildcard,
}

/// Checks one DNS label (letters, digits, hyphens; 1..=63; no leading/trailing hyphen).
pub fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::LabelTooLong(label.to_owned(), label.len()));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(NameError::BadChar(label.to_owned(), c));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::Hyphen(label.to_owned()));
    }
    Ok(())
}

/// Checks a DNS name as Istio's Sidecar validation does (`pkg/config/validation/agent`):
/// labels per [`check_label`], at most 253 characters, one trailing dot allowed, and a
/// last label that is not all digits (which is how IP literals are refused). With
/// `allow_wildcard`, the left-most label may be exactly `*`.
///
/// Returns the name without its trailing dot.
pub fn check_dns_name(name: &str, allow_wildcard: bool) -> Result<&str, NameError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    let mut labels = name.split('.').peekable();
    let mut first = true;
    let mut last = "";
    while let Some(label) = labels.next() {
        let is_first = std::mem::replace(&mut first, false);
        if label == "*" && is_first && allow_wildcard {
            if labels.peek().is_none() {
                // A bare "*" is handled by the caller (it means "every service").
                return Err(NameError::PartialWildcard);
            }
            continue;
        }
        if label.contains('*') {
            return Err(NameError::PartialWildcard);
        }
        check_label(label)?;
        last = label;
    }
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NumericTld);
    }
    Ok(name)
}

/// Checks a Kubernetes namespace name: a lowercase DNS-1123 label.
pub fn check_namespace(ns: &str) -> Result<(), NameError> {
    check_label(ns)?;
    if let Some(c) = ns.chars().find(|c| c.is_ascii_uppercase()) {
        return Err(NameError::BadChar(ns.to_owned(), c));
    }
    Ok(())
}

/// The namespace of a Kubernetes service FQDN, `<svc>.<ns>.svc.<clusterDomain>` -> `ns`, given
/// `svc_suffix` = `.svc.<clusterDomain>` (lowercase). THE reading of a service name: request
/// time (the destination's namespace when the cluster carries no metadata) and validation (a
/// host entry whose FQDN contradicts its `ns/` prefix) both use it. A wildcard `*.ns.svc...`
/// names no one service: `None`.
pub fn service_namespace<'a>(host: &'a [u8], svc_suffix: &[u8]) -> Option<&'a [u8]> {
    let rest = host.strip_suffix(svc_suffix)?;
    let i = rest.iter().rposition(|&c| c == b'.')?;
    let (svc, ns) = (rest.get(..i)?, rest.get(i + 1..)?);
    (!svc.is_empty() && svc.first() != Some(&b'*') && !ns.is_empty()).then_some(ns)
}

#[cfg(test)]
mod tests {
    // Under wasm32 these run through wasm-bindgen-test (scripts/test-wasm.sh): every `#[test]`
    // here becomes a `#[wasm_bindgen_test]` there.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn host_name_folds_case_and_bounds_length() {
        let h = HostName::concat_lower(&[b"Foo.", b"BAR.svc"]).unwrap();
        assert_eq!(h.as_str(), "foo.bar.svc");
        assert!(HostName::lower(&[b'a'; 253]).is_some());
        assert!(HostName::lower(&[b'a'; 254]).is_none());
        assert!(HostName::lower("é".as_bytes()).is_none());
        assert!(HostName::empty().is_empty());
    }

    #[test]
    fn dns_names() {
        assert_eq!(check_dns_name("a.example.com.", false), Ok("a.example.com"));
        assert_eq!(check_dns_name("*.example.com", true), Ok("*.example.com"));
        assert_eq!(
            check_dns_name("*.example.com", false),
            Err(NameError::PartialWildcard)
        );
        assert_eq!(
            check_dns_name("*foo.com", true),
            Err(NameError::PartialWildcard)
        );
        assert_eq!(
            check_dns_name("foo.*.com", true),
            Err(NameError::PartialWildcard)
        );
        assert_eq!(check_dns_name("10.0.0.1", true), Err(NameError::NumericTld));
        assert_eq!(check_dns_name("a..b", false), Err(NameError::EmptyLabel));
        assert!(matches!(
            check_dns_name("-a.b", false),
            Err(NameError::Hyphen(_))
        ));
        assert!(matches!(
            check_dns_name("a_b.c", false),
            Err(NameError::BadChar(_, '_'))
        ));
        let long_label = "a".repeat(64);
        assert!(matches!(
            check_dns_name(&format!("{long_label}.com"), false),
            Err(NameError::LabelTooLong(_, 64))
        ));
        let long_name = ["abcdefghi"; 26].join(".");
        assert!(matches!(
            check_dns_name(&long_name, false),
            Err(NameError::TooLong(259))
        ));
    }

    #[test]
    fn namespaces_are_lowercase_labels() {
        assert!(check_namespace("istio-system").is_ok());
        assert!(check_namespace("Prod").is_err());
        assert!(check_namespace("a.b").is_err());
    }
}
