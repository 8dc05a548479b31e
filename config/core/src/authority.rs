//! Strict, allocation-free parsing of the request-time inputs that name a destination:
//! the HTTP `:authority`, Istio's upstream cluster name and the original destination address.
//!
//! Everything here fails closed: anything that is not plainly well formed is an error, and the
//! decision turns every error into a denial. The authority rules follow RFC 3986 §3.2.2 and
//! RFC 9110 §7.2 narrowed to what a destination can be: a DNS name or an IP literal, and an
//! optional port. Userinfo (`user@host`, deprecated by RFC 9110 §4.2.4), percent-encoding,
//! control bytes (CVE-2019-9900's NUL) and a comma (Envoy joins repeated `Host` headers with one)
//! never reach the matcher.
//!
//! The grammar, decided against what Envoy routes:
//! - **Labels** are letters, digits, hyphens and underscores. Envoy routes a `Host` with an
//!   underscore (`foo_bar.example.org`) like any other, and under `ALLOW_ANY` it passes through
//!   to wherever the application connected; refusing it would only deny reachable names. No
//!   policy host can contain `_` (Istio's Sidecar grammar is DNS-1123), so accepting it cannot
//!   make a name match, or miss, an entry it otherwise would not.
//! - **Single labels** (`intranet`, `localhost`) are names like any other. Whether one is a
//!   Kubernetes short name is Envoy's route table's call, never a guess from the name's shape.
//! - **Ports**: Envoy never reads the `Host` port as a number when it routes. Its route table
//!   compares `host:port` literally, or, with `ignore_port_in_host_matching` (which Istio sets),
//!   drops everything after the last `:` (`HeaderUtility::getPortStart`). So `:00080` is not
//!   port 80 to Envoy, and the decision never takes its port from the `Host` when the routed
//!   cluster or the original destination says where the bytes go. The parser accepts only the
//!   canonical spelling: 1 to 5 digits, no leading zero, 1..=65535; anything else is
//!   `malformed-authority`. The host is what precedes the port's `:`, as in Envoy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::name::{label_shapes_ok, HostName, MAX_LABEL_LEN, MAX_NAME_LEN};

/// What kind of host an authority names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A DNS name.
    Dns,
    /// An IPv4 or IPv6 literal.
    Ip,
}

/// A parsed, normalized authority: lowercase host without trailing dot, and the port if given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority {
    /// Lowercase DNS name without trailing dot, or the IP in canonical text form (IPv6 without
    /// brackets).
    pub host: HostName,
    /// DNS name or IP literal.
    pub kind: HostKind,
    /// The port, when the authority carried one.
    pub port: Option<u16>,
    /// The address, when the host is an IP literal.
    pub ip: Option<IpAddr>,
}

/// Why an authority was refused. Every variant denies with reason `malformed-authority`; the
/// variant is kept for logs and `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedAuthority {
    /// Empty authority or empty host.
    #[error("empty host")]
    Empty,
    /// Repeated `:authority`/`Host` header (RFC 9112 §3.2: a request with more than one Host
    /// line must be rejected).
    #[error("repeated :authority/host header")]
    Repeated,
    /// Not valid UTF-8 / not ASCII.
    #[error("non-ASCII bytes")]
    NonAscii,
    /// A byte outside the DNS/IP alphabet: whitespace, control bytes, `@`, `%`, `,`...
    #[error("forbidden byte 0x{0:02x}")]
    ForbiddenByte(u8),
    /// Over 253 characters, or a label over 63.
    #[error("name too long")]
    TooLong,
    /// Empty label, or a label starting/ending with '-'.
    #[error("bad DNS label")]
    BadLabel,
    /// The last label is all digits but the whole is not a dotted-quad IPv4 address.
    #[error("numeric name that is not an IPv4 address")]
    BadIpv4,
    /// `[...]` that is not an IPv6 address, or a missing bracket.
    #[error("bad IPv6 literal")]
    BadIpv6,
    /// More than one ':' outside brackets.
    #[error("extra ':'")]
    ExtraColon,
    /// Port empty, not decimal, with a leading zero, 0, or over 65535.
    #[error("bad port")]
    BadPort,
}

/// Parses an authority (`host`, `host:port`, `1.2.3.4:80`, `[::1]:80`) strictly.
///
/// The request path's common case, a DNS name with an optional port, is checked and lowercased
/// straight into the result, without allocating or copying the name twice
/// ([`parse_dns_authority`]). Any
/// input that pass does not accept outright (an error, an IP literal, a bracket) is parsed
/// again by the reference parser, [`parse_authority_reference`], which names the exact error
/// and handles the IP forms: so the accepted language and every error are the reference's, and
/// only the good names are fast.
pub fn parse_authority(raw: &[u8]) -> Result<Authority, MalformedAuthority> {
    match parse_dns_authority(raw) {
        Some(a) => Ok(a),
        None => parse_authority_reference(raw),
    }
}

/// The fast parse of `name[.][:port]`: one branch-free pass folds the name to lowercase into
/// the [`HostName`] and checks its alphabet (the compiler vectorizes it), then a walk over its
/// few labels checks their shape (the rules of [`check_reg_name`]). Without allocating, and
/// building the result in place. `None` for anything it does not accept, including names
/// whose last label is all digits (an IPv4 literal, or an error): the caller then asks the
/// reference parser. Never accepts what the reference refuses, and when it accepts, returns
/// what the reference would (`tests`, `tests/properties.rs` and the fuzz target check both).
#[inline]
fn parse_dns_authority(raw: &[u8]) -> Option<Authority> {
    // The host is what precedes the first ':' (a second one is an error: see the port below).
    let end = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    let host = raw.get(..end)?;
    let name = host.strip_suffix(b".").unwrap_or(host);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut out = Authority {
        host: HostName::empty(),
        kind: HostKind::Dns,
        port: None,
        ip: None,
    };
    let mut ok = true;
    for (d, &b) in out.host.bytes_mut().iter_mut().zip(name) {
        *d = fold_lower(b);
        ok &= is_label_byte(b) | (b == b'.');
    }
    if !ok {
        return None;
    }
    if !label_shapes_ok(name) {
        return None;
    }
    out.port = match raw.get(end..) {
        Some([]) | None => None,
        // `parse_port` takes digits only, so a second ':' fails here too.
        Some([b':', port @ ..]) => Some(parse_port(port).ok()?),
        Some(_) => return None,
    };
    out.host.set_len(name.len())?;
    Some(out)
}

/// ASCII lowercase without a branch (`to_ascii_lowercase` as arithmetic, which vectorizes).
#[inline(always)]
fn fold_lower(b: u8) -> u8 {
    b | (u8::from(b.wrapping_sub(b'A') < 26) << 5)
}

/// [`LABEL_BYTE`] as arithmetic (a table lookup does not vectorize).
#[inline(always)]
fn is_label_byte(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10) | (b == b'-') | (b == b'_')
}

/// The reference parser: each rule checked in turn, so that a refused authority names its
/// first fault. [`parse_authority`] answers exactly as this does (`tests` and the fuzz target
/// hold the two to each other).
pub fn parse_authority_reference(raw: &[u8]) -> Result<Authority, MalformedAuthority> {
    if raw.is_empty() {
        return Err(MalformedAuthority::Empty);
    }
    if !raw.is_ascii() {
        return Err(MalformedAuthority::NonAscii);
    }
    if raw.first() == Some(&b'[') {
        return parse_bracketed(raw);
    }
    let (host, port) = match memchr_colon(raw) {
        None => (raw, None),
        Some(i) => {
            let (h, rest) = raw.split_at(i);
            let port = rest.get(1..).unwrap_or(&[]);
            if memchr_colon(port).is_some() {
                return Err(MalformedAuthority::ExtraColon);
            }
            (h, Some(parse_port(port)?))
        }
    };
    let (host, ip) = parse_reg_name(host)?;
    let kind = if ip.is_some() {
        HostKind::Ip
    } else {
        HostKind::Dns
    };
    Ok(Authority {
        host,
        kind,
        port,
        ip,
    })
}

fn memchr_colon(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b':')
}

/// A canonical decimal port 1..=65535: at most 5 digits, no sign, no spaces, no leading zero
/// (`00080` is not port 80 to Envoy's route table; see the module docs).
pub fn parse_port(s: &[u8]) -> Result<u16, MalformedAuthority> {
    if s.is_empty() || s.len() > 5 || s.first() == Some(&b'0') || !s.iter().all(u8::is_ascii_digit)
    {
        return Err(MalformedAuthority::BadPort);
    }
    let mut v: u32 = 0;
    for &d in s {
        v = v * 10 + u32::from(d - b'0');
    }
    match u16::try_from(v) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(MalformedAuthority::BadPort),
    }
}

fn parse_bracketed(raw: &[u8]) -> Result<Authority, MalformedAuthority> {
    let close = raw
        .iter()
        .position(|&b| b == b']')
        .ok_or(MalformedAuthority::BadIpv6)?;
    let inner = raw.get(1..close).ok_or(MalformedAuthority::BadIpv6)?;
    let rest = raw.get(close + 1..).unwrap_or(&[]);
    let port = match rest {
        [] => None,
        [b':', port @ ..] => Some(parse_port(port)?),
        _ => return Err(MalformedAuthority::BadIpv6),
    };
    // Only hex digits, ':' and '.' (embedded IPv4) are valid inside; this also refuses zone
    // identifiers (`%25eth0`) outright.
    if !inner
        .iter()
        .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
    {
        return Err(MalformedAuthority::BadIpv6);
    }
    let text = std::str::from_utf8(inner).map_err(|_| MalformedAuthority::BadIpv6)?;
    let ip: Ipv6Addr = text.parse().map_err(|_| MalformedAuthority::BadIpv6)?;
    Ok(Authority {
        host: ip_text(IpAddr::V6(ip))?,
        kind: HostKind::Ip,
        port,
        ip: Some(IpAddr::V6(ip)),
    })
}

/// Writes an IP in canonical text form into a [`HostName`] without allocating.
fn ip_text(ip: IpAddr) -> Result<HostName, MalformedAuthority> {
    use std::io::Write;
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{ip}").map_err(|_| MalformedAuthority::TooLong)?;
    let len = usize::try_from(cursor.position()).map_err(|_| MalformedAuthority::TooLong)?;
    HostName::lower(buf.get(..len).unwrap_or(&[])).ok_or(MalformedAuthority::TooLong)
}

/// Bytes allowed in a label: ASCII letters, digits, '-' and '_' (see the module docs).
static LABEL_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    t
};

/// Checks one DNS name (labels of letters, digits, hyphens, underscores; 1..=63 per label; <= 253; the
/// trailing dot already removed by the caller) and returns whether the last label is all
/// digits. One branch-light pass accepts every good name; only a bad one takes the label-by-label
/// path that names the first error (empty or hyphen-edged label, then too long, then the first
/// forbidden byte).
fn check_reg_name(host: &[u8]) -> Result<bool, MalformedAuthority> {
    if host.is_empty() || host.len() > MAX_NAME_LEN {
        return reg_name_error(host);
    }
    let mut bad = false;
    let mut label_len = 0usize;
    let mut prev = b'.';
    let mut digits = true;
    for &b in host {
        if b == b'.' {
            bad |= label_len == 0 || prev == b'-';
            label_len = 0;
            digits = true;
        } else {
            bad |= !LABEL_BYTE[usize::from(b)] || (label_len == 0 && b == b'-');
            label_len += 1;
            digits &= b.is_ascii_digit();
        }
        prev = b;
        bad |= label_len > MAX_LABEL_LEN;
    }
    bad |= label_len == 0 || prev == b'-';
    if bad {
        return reg_name_error(host);
    }
    Ok(digits)
}

/// The precise error for a name [`check_reg_name`] refused (cold path).
#[cold]
fn reg_name_error(host: &[u8]) -> Result<bool, MalformedAuthority> {
    if host.is_empty() {
        return Err(MalformedAuthority::Empty);
    }
    if host.len() > MAX_NAME_LEN {
        return Err(MalformedAuthority::TooLong);
    }
    let mut last: &[u8] = &[];
    for label in host.split(|&b| b == b'.') {
        if label.is_empty() || label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return Err(MalformedAuthority::BadLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(MalformedAuthority::TooLong);
        }
        if let Some(&b) = label.iter().find(|b| !LABEL_BYTE[usize::from(**b)]) {
            return Err(MalformedAuthority::ForbiddenByte(b));
        }
        last = label;
    }
    Ok(last.iter().all(u8::is_ascii_digit))
}

/// A DNS name (letters, digits, hyphens, underscores; 1..=63 per label; <= 253; one trailing
/// dot) or a
/// dotted-quad IPv4 literal. Folds to lowercase.
fn parse_reg_name(host: &[u8]) -> Result<(HostName, Option<IpAddr>), MalformedAuthority> {
    let had_dot = host.last() == Some(&b'.');
    let host = host.strip_suffix(b".").unwrap_or(host);
    if check_reg_name(host)? {
        // RFC 3986 §3.2.2: a host that looks like an IPv4 address must be one. Rust's parser
        // accepts only four decimal octets without leading zeros, so `010.1.1.1`, `1.1.1` and
        // `0x7f.1` style spellings that some resolvers accept are refused here. A trailing dot
        // on an address (`1.2.3.4.`) is not an address either.
        if had_dot {
            return Err(MalformedAuthority::BadIpv4);
        }
        let text = std::str::from_utf8(host).map_err(|_| MalformedAuthority::BadIpv4)?;
        let ip: Ipv4Addr = text.parse().map_err(|_| MalformedAuthority::BadIpv4)?;
        return Ok((ip_text(IpAddr::V4(ip))?, Some(IpAddr::V4(ip))));
    }
    let name = HostName::lower(host).ok_or(MalformedAuthority::TooLong)?;
    Ok((name, None))
}

// === Cluster names ===

/// What Envoy routed the request to, from `xds.cluster_name`.
// The host is held inline on purpose: boxing it would allocate on every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster<'a> {
    /// `outbound|PORT|SUBSET|HOST`: a service (or ServiceEntry) in the registry.
    Outbound {
        /// The service port.
        port: u16,
        /// The DestinationRule subset (often empty).
        subset: &'a str,
        /// The service host, lowercase; may be a wildcard ServiceEntry host (`*.wikipedia.org`).
        host: HostName,
    },
    /// Istio's `PassthroughCluster`: ORIGINAL_DST, the address the application dialled; also
    /// [`DYNAMIC_DNS_CLUSTER`].
    Passthrough,
    /// Istio's `BlackHoleCluster`: nowhere (REGISTRY_ONLY's catch-all).
    BlackHole,
    /// `InboundPassthroughCluster*` or `inbound|...`: inbound traffic, never expected in an
    /// outbound filter.
    Inbound,
}

impl Cluster<'_> {
    /// The same cluster without the borrowed DestinationRule subset (which no decision reads),
    /// to keep a parsed cluster beyond the name's lifetime ([`crate::policy::RoutedCluster`]).
    pub fn into_owned(self) -> Cluster<'static> {
        match self {
            Cluster::Outbound { port, host, .. } => Cluster::Outbound {
                port,
                subset: "",
                host,
            },
            Cluster::Passthrough => Cluster::Passthrough,
            Cluster::BlackHole => Cluster::BlackHole,
            Cluster::Inbound => Cluster::Inbound,
        }
    }
}

/// Why a cluster name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadCluster {
    /// Looks like `outbound|...` but does not parse.
    #[error("malformed outbound cluster name")]
    Malformed,
    /// A cluster name this filter does not know (not created by Istio's outbound builder).
    #[error("unrecognized cluster name")]
    Unrecognized,
}

/// Istio's ORIGINAL_DST catch-all cluster.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";

/// The catch-all cluster of `outboundTrafficPolicy: ALLOW_ANY_DYNAMIC_DNS` (Istio 1.31, from its
/// release notes; not replayed from a real dump): virtual host `allow_any_dynamic_dns`, a
/// dynamic forward proxy that resolves the Host and connects there. Decided as
/// [`Cluster::Passthrough`]: an unknown destination outside the registry, allowed only for
/// ALLOW_ANY tenants, and a Host naming a mesh service (which Istio would have routed to the
/// service's own cluster, had the Sidecar imported it) is `authority-mismatch`.
pub const DYNAMIC_DNS_CLUSTER: &str = "AllowAnyDynamicDNSCluster";

/// Prefix of Istio's outbound service clusters.
pub const OUTBOUND_PREFIX: &str = "outbound|";

/// Parses an Istio cluster name (`pilot/pkg/model/service.go: BuildSubsetKey`).
pub fn parse_cluster(name: &str) -> Result<Cluster<'_>, BadCluster> {
    match name {
        PASSTHROUGH_CLUSTER | DYNAMIC_DNS_CLUSTER => return Ok(Cluster::Passthrough),
        "BlackHoleCluster" => return Ok(Cluster::BlackHole),
        _ => {}
    }
    if name.starts_with("InboundPassthroughCluster") || name.starts_with("inbound|") {
        return Ok(Cluster::Inbound);
    }
    let Some(rest) = name.strip_prefix(OUTBOUND_PREFIX) else {
        return Err(BadCluster::Unrecognized);
    };
    // `PORT|SUBSET|HOST`: split on bytes (str::split's searcher costs more than the parse).
    let b = rest.as_bytes();
    let Some(p1) = b.iter().position(|&c| c == b'|') else {
        return Err(BadCluster::Malformed);
    };
    let after = b.get(p1 + 1..).unwrap_or(&[]);
    let Some(p2) = after.iter().position(|&c| c == b'|') else {
        return Err(BadCluster::Malformed);
    };
    let (port, subset) = (
        rest.get(..p1).unwrap_or(""),
        rest.get(p1 + 1..p1 + 1 + p2).unwrap_or(""),
    );
    let host = rest.get(p1 + 2 + p2..).unwrap_or("");
    if host.as_bytes().contains(&b'|') {
        return Err(BadCluster::Malformed);
    }
    let port = parse_port(port.as_bytes()).map_err(|_| BadCluster::Malformed)?;
    let host = outbound_host(host.as_bytes())?;
    Ok(Cluster::Outbound { port, subset, host })
}

/// The HOST of an outbound cluster `outbound|PORT|SUBSET|HOST` (or of Istio's SNI for it,
/// [`crate::inbound`]), lowercased without its trailing dot: a DNS name, or a ServiceEntry's
/// left-most wildcard (`*.wikipedia.org`).
pub(crate) fn outbound_host(bytes: &[u8]) -> Result<HostName, BadCluster> {
    let body = bytes.strip_prefix(b"*.").unwrap_or(bytes);
    let trimmed_body = body.strip_suffix(b".").unwrap_or(body);
    // Validate only (no copy); an all-digit last label would be an IPv4 literal, not a name.
    if check_reg_name(trimmed_body) != Ok(false) {
        return Err(BadCluster::Malformed);
    }
    let trimmed = bytes.strip_suffix(b".").unwrap_or(bytes);
    HostName::lower(trimmed).ok_or(BadCluster::Malformed)
}

/// Parses an original-destination address (`ip:port` or `[v6]:port`), as Envoy reports
/// `destination.address`.
pub fn parse_socket_addr(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    // Under wasm32 these run through wasm-bindgen-test (scripts/test-wasm.sh): every `#[test]`
    // here becomes a `#[wasm_bindgen_test]` there.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn ok(s: &str) -> (String, HostKind, Option<u16>) {
        let a = parse_authority(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        (a.host.as_str().to_owned(), a.kind, a.port)
    }

    fn bad(s: &[u8]) -> MalformedAuthority {
        match parse_authority(s) {
            Ok(a) => panic!("{:?} parsed as {a:?}", String::from_utf8_lossy(s)),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_names_ips_and_ports() {
        assert_eq!(
            ok("Foo.Example.COM"),
            ("foo.example.com".into(), HostKind::Dns, None)
        );
        assert_eq!(
            ok("foo.example.com."),
            ("foo.example.com".into(), HostKind::Dns, None)
        );
        assert_eq!(ok("foo:8080"), ("foo".into(), HostKind::Dns, Some(8080)));
        assert_eq!(ok("foo.:65535"), ("foo".into(), HostKind::Dns, Some(65535)));
        assert_eq!(
            ok("10.0.0.1:80"),
            ("10.0.0.1".into(), HostKind::Ip, Some(80))
        );
        assert_eq!(ok("[::1]:443"), ("::1".into(), HostKind::Ip, Some(443)));
        assert_eq!(
            ok("[2001:DB8::1]"),
            ("2001:db8::1".into(), HostKind::Ip, None)
        );
        assert_eq!(ok("a-b.c1"), ("a-b.c1".into(), HostKind::Dns, None));
        // Underscores and single labels: Envoy routes them (see the module docs).
        assert_eq!(
            ok("Foo_Bar.example.org"),
            ("foo_bar.example.org".into(), HostKind::Dns, None)
        );
        assert_eq!(
            ok("_dmarc.x.org"),
            ("_dmarc.x.org".into(), HostKind::Dns, None)
        );
        assert_eq!(
            ok("localhost:8080"),
            ("localhost".into(), HostKind::Dns, Some(8080))
        );
        assert_eq!(ok("a:10"), ("a".into(), HostKind::Dns, Some(10)));
        let max = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(max.len(), 253);
        assert_eq!(ok(&max).0, max);
    }

    #[test]
    fn refuses_every_malformed_class() {
        use MalformedAuthority as M;
        assert_eq!(bad(b""), M::Empty);
        assert_eq!(bad(b":80"), M::Empty);
        assert_eq!(bad(b"."), M::Empty);
        assert_eq!(bad(b"user@host"), M::ForbiddenByte(b'@'));
        assert_eq!(bad(b"user:pw@host"), M::BadPort);
        assert_eq!(bad(b"ho%73t"), M::ForbiddenByte(b'%'));
        assert_eq!(bad(b"a b"), M::ForbiddenByte(b' '));
        assert_eq!(bad(b"a\tb"), M::ForbiddenByte(b'\t'));
        assert_eq!(bad(b"a\0b.com"), M::ForbiddenByte(0));
        assert_eq!(bad(b"a.com\r\n"), M::ForbiddenByte(b'\r'));
        assert_eq!(bad(b"a.example,b.example"), M::ForbiddenByte(b','));
        assert_eq!(bad(b"a.example/x"), M::ForbiddenByte(b'/'));
        assert_eq!(bad("b\u{fc}cher.de".as_bytes()), M::NonAscii);
        assert_eq!(bad(b"a..b"), M::BadLabel);
        assert_eq!(bad(b"a.com.."), M::BadLabel);
        assert_eq!(bad(b"-a.com"), M::BadLabel);
        assert_eq!(bad(b"a-.com"), M::BadLabel);
        assert_eq!(bad(&[b'a'; 64]), M::TooLong);
        assert_eq!(
            bad(["a".repeat(63).as_str(); 4].join(".").as_bytes()),
            M::TooLong
        );
        assert_eq!(bad(b"1.2.3"), M::BadIpv4);
        assert_eq!(bad(b"1.2.3.256"), M::BadIpv4);
        assert_eq!(bad(b"01.2.3.4"), M::BadIpv4);
        assert_eq!(bad(b"1.2.3.4."), M::BadIpv4);
        assert_eq!(bad(b"foo.123"), M::BadIpv4);
        assert_eq!(bad(b"[::1"), M::BadIpv6);
        assert_eq!(bad(b"[::1]x"), M::BadIpv6);
        assert_eq!(bad(b"[fe80::1%25eth0]"), M::BadIpv6);
        assert_eq!(bad(b"[zz::1]"), M::BadIpv6);
        assert_eq!(bad(b"::1"), M::ExtraColon);
        assert_eq!(bad(b"a:1:2"), M::ExtraColon);
        assert_eq!(bad(b"a:"), M::BadPort);
        assert_eq!(bad(b"a:0"), M::BadPort);
        assert_eq!(bad(b"a:65536"), M::BadPort);
        assert_eq!(bad(b"a:+80"), M::BadPort);
        assert_eq!(bad(b"a:080080"), M::BadPort);
        assert_eq!(bad(b"a: 80"), M::BadPort);
        // Envoy never reads `00080` as port 80 when it routes; neither do we.
        assert_eq!(bad(b"a:00080"), M::BadPort);
        assert_eq!(bad(b"a:080"), M::BadPort);
        assert_eq!(bad(b"a:00"), M::BadPort);
        assert_eq!(bad(b"[::1]:0443"), M::BadPort);
    }

    #[test]
    fn the_branch_free_byte_rules_are_the_tables() {
        for b in 0..=255u8 {
            assert_eq!(is_label_byte(b), LABEL_BYTE[usize::from(b)], "{b:#04x}");
            assert_eq!(fold_lower(b), b.to_ascii_lowercase(), "{b:#04x}");
        }
    }

    #[test]
    fn the_fast_parser_is_the_reference() {
        let max = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        let over = format!("{max}e");
        let mut inputs: Vec<Vec<u8>> = [
            "",
            ".",
            "..",
            ":",
            ":80",
            "a",
            "a.",
            "a..",
            ".a",
            "a:80",
            "a.:80",
            "a.:",
            "a:8:0",
            "A-B.c_D:65535",
            "-a",
            "a-",
            "a-.b",
            "a.-b",
            "1.2.3.4",
            "1.2.3.4.",
            "1.2.3.4:80",
            "a.123",
            "123.a",
            "[::1]:80",
            "a]",
            "a[",
            "a b",
            "a\u{e9}",
            "a:\u{e9}",
            "a:080",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        for s in [&max, &over] {
            for suffix in ["", ".", ":80", ".:80", "..", ".:"] {
                inputs.push(format!("{s}{suffix}").into_bytes());
            }
        }
        inputs.push(format!("{}.x", "a".repeat(64)).into_bytes());
        inputs.push(vec![b'a', 0, b'b']);
        for raw in &inputs {
            assert_eq!(
                parse_authority(raw),
                parse_authority_reference(raw),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(
            parse_dns_authority(max.as_bytes()).is_some(),
            "the fast path"
        );
        assert!(parse_dns_authority(format!("{max}.:80").as_bytes()).is_some());
    }

    #[test]
    fn cluster_names() {
        let c = parse_cluster("outbound|8080||helloworld.foo.svc.cluster.local").unwrap();
        assert_eq!(
            c,
            Cluster::Outbound {
                port: 8080,
                subset: "",
                host: HostName::lower(b"helloworld.foo.svc.cluster.local").unwrap()
            }
        );
        assert!(matches!(
            parse_cluster("outbound|443|v1|*.Wikipedia.org"),
            Ok(Cluster::Outbound {
                port: 443,
                subset: "v1",
                ..
            })
        ));
        assert_eq!(
            parse_cluster("PassthroughCluster"),
            Ok(Cluster::Passthrough)
        );
        assert_eq!(
            parse_cluster("AllowAnyDynamicDNSCluster"),
            Ok(Cluster::Passthrough)
        );
        assert_eq!(parse_cluster("BlackHoleCluster"), Ok(Cluster::BlackHole));
        assert_eq!(
            parse_cluster("InboundPassthroughCluster"),
            Ok(Cluster::Inbound)
        );
        assert_eq!(parse_cluster("inbound|80||"), Ok(Cluster::Inbound));
        for bad in [
            "outbound|0||a.b",
            "outbound|80||",
            "outbound|80|a.b",
            "outbound|80||a.b|x",
            "outbound|80||a b.c",
            "outbound|80||10.0.0.1",
            "outbound|http||a.b",
            "outbound|080||a.b",
        ] {
            assert_eq!(parse_cluster(bad), Err(BadCluster::Malformed), "{bad}");
        }
        assert_eq!(
            parse_cluster("my-static-cluster"),
            Err(BadCluster::Unrecognized)
        );
        assert_eq!(parse_cluster(""), Err(BadCluster::Unrecognized));
    }
}
