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
///
/// A good name is accepted by one pass over its bytes ([`plain_dns_name`]); anything that
/// pass does not accept outright is checked again by the reference,
/// [`check_dns_name_reference`], which names the exact error: so the accepted language and
/// every error are the reference's, and only the good names are fast (the same split as
/// `authority::parse_authority`).
pub fn check_dns_name(name: &str, allow_wildcard: bool) -> Result<&str, NameError> {
    match plain_dns_name(name, allow_wildcard) {
        Some(n) => Ok(n),
        None => check_dns_name_reference(name, allow_wildcard),
    }
}

/// Whether `b` may appear in a label: an ASCII letter, digit or `-` (arithmetic rather than a
/// table or a `match`, so that the pass over a name vectorizes).
#[inline(always)]
fn is_ldh_byte(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10) | (b == b'-')
}

/// The fast check of [`check_dns_name`]: `Some(name without its trailing dot)` only for a name
/// the reference certainly accepts (letters, digits and `-` in labels of 1..=63 bytes with no
/// `-` at either end, at most 253 bytes, the last label not all digits, and with
/// `allow_wildcard` an optional left-most `*.`); `None` for everything else, including every
/// name the reference refuses. Never accepts what the reference refuses, and when it accepts,
/// returns what the reference would (`tests`, `tests/properties.rs` and the `authority` fuzz
/// target hold the two to each other).
#[inline]
fn plain_dns_name(name: &str, allow_wildcard: bool) -> Option<&str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let bytes = name.as_bytes();
    // `*.rest`: the reference skips the left-most `*` label when a label follows it.
    let rest = match bytes.strip_prefix(b"*.") {
        Some(rest) if allow_wildcard => rest,
        _ => bytes,
    };
    // The alphabet, and each byte folded in without a branch; `.` separates labels.
    if !rest
        .iter()
        .fold(true, |ok, &b| ok & (is_ldh_byte(b) | (b == b'.')))
    {
        return None;
    }
    // An empty `rest` is one empty label, so an empty name fails here too.
    label_shapes_ok(rest).then_some(name)
}

/// The shape of a dotted name's labels, its alphabet checked by the caller: each of 1..=63
/// bytes with no `-` at either end (RFC 1123 section 2.1), the last one not all digits (how a
/// name is told from an IPv4 address). THE label rule of both fast paths, this one and
/// `authority::parse_authority`'s.
pub(crate) fn label_shapes_ok(name: &[u8]) -> bool {
    let mut last: &[u8] = &[];
    for label in name.split(|&b| b == b'.') {
        if label.is_empty()
            || label.len() > MAX_LABEL_LEN
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
        {
            return false;
        }
        last = label;
    }
    !last.iter().all(u8::is_ascii_digit)
}

/// The reference check: each rule in turn, so that a refused name names its first fault.
/// [`check_dns_name`] answers exactly as this does.
pub fn check_dns_name_reference(name: &str, allow_wildcard: bool) -> Result<&str, NameError> {
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
    // The fast accept: lowercase letters, digits and `-`, 1..=63 bytes, no `-` at either end.
    // Anything else is checked below, which names the fault.
    let b = ns.as_bytes();
    if (1..=MAX_LABEL_LEN).contains(&b.len())
        && b.iter().fold(true, |ok, &c| {
            ok & ((c.wrapping_sub(b'a') < 26) | (c.wrapping_sub(b'0') < 10) | (c == b'-'))
        })
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
    {
        return Ok(());
    }
    check_namespace_reference(ns)
}

/// [`check_namespace`] rule by rule, naming the first fault.
fn check_namespace_reference(ns: &str) -> Result<(), NameError> {
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
    fn the_fast_name_check_is_the_reference() {
        let max = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        let over = format!("{max}e");
        let mut inputs: Vec<String> = [
            "",
            ".",
            "..",
            "*",
            "*.",
            "*.x",
            "*.x.",
            "*.*.x",
            "x.*",
            "x*.y",
            "**.x",
            "*..x",
            "a..b",
            "a.b.",
            "a.b..",
            ".a.b",
            "a",
            "a.",
            "a.123",
            "123.a",
            "1.2.3.4",
            "1.2.3.4.",
            "-a",
            "a-",
            "-a.b",
            "a-.b",
            "a.-b",
            "a.b-",
            "a-b.c-d",
            "a_b.c",
            "A.B.COM",
            "a:b",
            "::1",
            "fe80::1",
            "a b.c",
            "a\u{e9}.com",
            "*.123",
            "a.1-2",
            "0a.1b",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for s in [&max, &over] {
            for prefix in ["", "*."] {
                for suffix in ["", ".", ".."] {
                    inputs.push(format!("{prefix}{s}{suffix}"));
                }
            }
        }
        for n in [62, 63, 64] {
            inputs.push(format!("{}.com", "x".repeat(n)));
            inputs.push(format!("*.{}", "x".repeat(n)));
        }
        for name in &inputs {
            for wildcard in [false, true] {
                assert_eq!(
                    check_dns_name(name, wildcard),
                    check_dns_name_reference(name, wildcard),
                    "{name:?} wildcard={wildcard}"
                );
            }
        }
        // And the fast path does take the good names (253 bytes, a 63-byte label, `*.`).
        assert_eq!(plain_dns_name(&max, false), Some(max.as_str()));
        assert_eq!(plain_dns_name(&format!("{max}."), true), Some(max.as_str()));
        assert_eq!(plain_dns_name("*.a-1.b", true), Some("*.a-1.b"));
        assert_eq!(plain_dns_name("*.a-1.b", false), None);
    }

    #[test]
    fn the_ldh_byte_rule_is_the_reference() {
        for b in 0..=255u8 {
            assert_eq!(
                is_ldh_byte(b),
                b.is_ascii_alphanumeric() || b == b'-',
                "{b:#04x}"
            );
        }
    }

    #[test]
    fn namespaces_are_lowercase_labels() {
        assert!(check_namespace("istio-system").is_ok());
        assert!(check_namespace("Prod").is_err());
        assert!(check_namespace("a.b").is_err());
        assert_eq!(check_namespace(&"a".repeat(63)), Ok(()));
        assert!(matches!(
            check_namespace(&"a".repeat(64)),
            Err(NameError::LabelTooLong(_, 64))
        ));
        assert_eq!(check_namespace(""), Err(NameError::EmptyLabel));
        assert!(matches!(check_namespace("-a"), Err(NameError::Hyphen(_))));
        assert!(matches!(check_namespace("a-"), Err(NameError::Hyphen(_))));
        assert!(matches!(
            check_namespace("aB"),
            Err(NameError::BadChar(_, 'B'))
        ));
    }

    // proptest needs OS randomness, which wasm32-unknown-unknown lacks: native only.
    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// Near-valid names: labels mostly of the DNS alphabet (with digits and hyphens at
        /// the ends, empty labels, all-digit ones), now and then one with a byte that breaks it
        /// (upper case is fine; `*`, `_`, `:`, a space, non-ASCII are not), an optional `*.`
        /// or odd wildcard in front and a trailing dot or two: so that both answers of the
        /// fast check, and every rule's edge, come up often.
        fn dnsish() -> impl Strategy<Value = String> {
            let label = prop_oneof![
                8 => "[aZ09-]{0,4}",
                1 => "[aZ09*_: \u{e9}-]{0,4}",
            ];
            (
                prop::sample::select(vec!["", "", "*.", "*", "x*.", "*.*."]),
                prop::collection::vec(label, 1..5),
                prop::sample::select(vec!["", "", ".", ".."]),
            )
                .prop_map(|(prefix, labels, suffix)| {
                    format!("{prefix}{}{suffix}", labels.join("."))
                })
        }

        /// The same at the length limits: labels of 58..66 bytes filling a name of about 253
        /// (the last label takes the rest), with or without `*.`, an all-digit last label and
        /// a trailing dot.
        fn long_name() -> impl Strategy<Value = String> {
            (
                58usize..66,
                236usize..260,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(label, total, star, digits, dot)| {
                    let mut s = if star { "*.".to_owned() } else { String::new() };
                    let mut first = true;
                    while s.len() < total {
                        if !std::mem::take(&mut first) {
                            s.push('.');
                        }
                        let n = label.min(total.saturating_sub(s.len())).max(1);
                        s.push_str(&"b".repeat(n));
                    }
                    if digits {
                        s.push_str(".123");
                    }
                    if dot {
                        s.push('.');
                    }
                    s
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            /// The fast check answers exactly as the reference, errors included.
            #[test]
            fn the_fast_name_check_is_the_reference(name in dnsish(), wildcard in any::<bool>()) {
                prop_assert_eq!(
                    check_dns_name(&name, wildcard),
                    check_dns_name_reference(&name, wildcard)
                );
            }

            #[test]
            fn the_fast_name_check_is_the_reference_at_the_limits(
                name in long_name(),
                wildcard in any::<bool>(),
            ) {
                prop_assert_eq!(
                    check_dns_name(&name, wildcard),
                    check_dns_name_reference(&name, wildcard)
                );
            }

            /// A name the check accepts is never an IP address: the host grammar
            /// (`pattern::parse_host_pattern`) parses an IP only for a name it refuses.
            #[test]
            fn an_accepted_name_is_not_an_ip(name in "[0-9a-fA-F.:*]{1,20}", wildcard in any::<bool>()) {
                if let Ok(n) = check_dns_name(&name, wildcard) {
                    prop_assert!(n.parse::<std::net::IpAddr>().is_err(), "{n}");
                }
            }

            #[test]
            fn the_fast_namespace_check_is_the_reference(ns in dnsish()) {
                prop_assert_eq!(check_namespace(&ns), check_namespace_reference(&ns));
            }
        }
    }
}
