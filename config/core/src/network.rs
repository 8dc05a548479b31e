//! The cluster's own networks (Service and pod CIDRs), so a passthrough can tell an in-cluster
//! original destination from an external one.
//!
//! Why: under `ALLOW_ANY`, Envoy sends a request with no route (a `Host` that names no imported
//! service) to `PassthroughCluster`, i.e. to the address the application dialled. When that
//! address is another tenant's ClusterIP or pod IP, the bytes reach the other tenant although no
//! name the policy could check was involved. Only the address says so, and only if the policy
//! knows which addresses are the cluster's.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP prefix (`10.96.0.0/12`, `fd00:10:96::/112`) in canonical form: no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR was refused; each message says what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// No `/` or not `address/length`.
    #[error("is not of the form address/prefix-length (for example \"10.96.0.0/12\")")]
    NotCidr,
    /// The address part is not an IPv4 or IPv6 address.
    #[error("has an address that is not IPv4 or IPv6")]
    BadAddress,
    /// The length is not a decimal within 0..=32 (IPv4) or 0..=128 (IPv6).
    #[error("has a prefix length that is not 0..={0}")]
    BadLength(u8),
    /// Bits are set after the prefix (`10.96.0.1/12`): almost always a typo.
    #[error("has host bits set; the network is \"{0}\"")]
    HostBits(Cidr),
}

impl Cidr {
    /// Whether `ip` lies in this prefix. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a
    /// dual-stack socket reports an IPv4 peer) is compared as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, n) = octets(self.addr);
        let (ip, m) = octets(ip.to_canonical());
        n == m && masked(ip, self.prefix) == net
    }
}

/// The address's bytes (IPv4 in the first 4) and how many there are. Byte-wise masking keeps
/// the code small in wasm (no 128-bit shifts).
fn octets(ip: IpAddr) -> ([u8; 16], usize) {
    match ip {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            for (d, s) in o.iter_mut().zip(a.octets()) {
                *d = s;
            }
            (o, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// `o` with every bit after the first `prefix` cleared.
fn masked(mut o: [u8; 16], prefix: u8) -> [u8; 16] {
    let mut left = u32::from(prefix);
    for b in &mut o {
        let keep = left.min(8);
        *b &= !(0xffu8.checked_shr(keep).unwrap_or(0));
        left -= keep;
    }
    o
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.split_once('/').ok_or(CidrError::NotCidr)?;
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::BadAddress)?;
        let (bytes, n) = octets(addr);
        let max = if n == 4 { 32u8 } else { 128 };
        let mut prefix = 0u32;
        for d in len.bytes() {
            if !d.is_ascii_digit() || prefix > u32::from(max) {
                return Err(CidrError::BadLength(max));
            }
            prefix = prefix * 10 + u32::from(d - b'0');
        }
        let prefix = u8::try_from(prefix)
            .ok()
            .filter(|p| !len.is_empty() && len.len() <= 3 && *p <= max)
            .ok_or(CidrError::BadLength(max))?;
        let net = masked(bytes, prefix);
        if net != bytes {
            let network = match addr {
                IpAddr::V4(_) => {
                    let mut v4 = [0u8; 4];
                    v4.copy_from_slice(net.get(..4).unwrap_or(&[0; 4]));
                    IpAddr::V4(Ipv4Addr::from(v4))
                }
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net)),
            };
            return Err(CidrError::HostBits(Cidr {
                addr: network,
                prefix,
            }));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The compiled set of the cluster's networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterNetworks {
    cidrs: Box<[Cidr]>,
}

impl ClusterNetworks {
    /// From parsed prefixes (validation has refused bad ones).
    pub fn new(cidrs: Vec<Cidr>) -> Self {
        ClusterNetworks {
            cidrs: cidrs.into_boxed_slice(),
        }
    }

    /// Whether the policy declares any network at all.
    pub fn is_declared(&self) -> bool {
        !self.cidrs.is_empty()
    }

    /// Whether `ip` is one of the cluster's addresses. A handful of prefixes: a linear scan
    /// beats any index.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }

    /// The prefixes, for explanations.
    pub fn cidrs(&self) -> &[Cidr] {
        &self.cidrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_contains() {
        let c: Cidr = "10.96.0.0/12".parse().unwrap();
        assert!(c.contains(ip("10.96.0.1")));
        assert!(c.contains(ip("10.111.255.255")));
        assert!(!c.contains(ip("10.112.0.0")));
        assert!(!c.contains(ip("93.184.216.34")));
        assert!(c.contains(ip("::ffff:10.96.3.4")), "v4-mapped v6");
        let v6: Cidr = "fd00:10:96::/112".parse().unwrap();
        assert!(v6.contains(ip("fd00:10:96::a")));
        assert!(!v6.contains(ip("fd00:10:97::a")));
        assert!(!v6.contains(ip("10.96.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        let host: Cidr = "10.0.0.4/32".parse().unwrap();
        assert!(host.contains(ip("10.0.0.4")) && !host.contains(ip("10.0.0.5")));
        assert_eq!(c.to_string(), "10.96.0.0/12");
    }

    #[test]
    fn refuses_bad_prefixes() {
        let bad = |s: &str| s.parse::<Cidr>().unwrap_err();
        assert_eq!(bad("10.96.0.0"), CidrError::NotCidr);
        assert_eq!(bad("10.96.0/12"), CidrError::BadAddress);
        assert_eq!(bad("10.96.0.0/33"), CidrError::BadLength(32));
        assert_eq!(bad("10.96.0.0/+8"), CidrError::BadLength(32));
        assert_eq!(bad("10.96.0.0/"), CidrError::BadLength(32));
        assert_eq!(bad("::/129"), CidrError::BadLength(128));
        assert_eq!(
            bad("10.96.0.1/12").to_string(),
            "has host bits set; the network is \"10.96.0.0/12\""
        );
        assert_eq!(
            bad("fd00::1/64").to_string(),
            "has host bits set; the network is \"fd00::/64\""
        );
    }
}
