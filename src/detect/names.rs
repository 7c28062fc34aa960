//! Destination names and address ranges from the config: the documented
//! bypass list, OS-level channels, proxy addresses.

use std::net::IpAddr;

/// A domain name, or `*.suffix` for every name under the suffix (not the
/// suffix itself, as in TLS certificate wildcards and proxy bypass lists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainPattern {
    Exact(String),
    Under(String),
}

impl DomainPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, s.clone()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!(
                "{s:?} is not a domain name: write `host.example` or `*.example`"
            ));
        }
        Ok(if wild {
            DomainPattern::Under(name)
        } else {
            DomainPattern::Exact(name)
        })
    }

    /// `name` must already be lower case without a trailing dot.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            DomainPattern::Exact(d) => name == d,
            DomainPattern::Under(d) => is_under(name, d),
        }
    }
}

/// Is `name` a subdomain of `suffix` (not `suffix` itself)?
pub fn is_under(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// Does any pattern cover `name`?
pub fn any_matches(patterns: &[DomainPattern], name: &str) -> bool {
    patterns.iter().any(|p| p.matches(name))
}

/// An address range, `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not an address or range: write `10.0.0.1` or `10.0.0.0/8`");
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn prefix(a: &[u8], b: &[u8], bits: u8) -> bool {
            let full = (bits / 8) as usize;
            let rest = bits % 8;
            a[..full] == b[..full]
                && (rest == 0 || (a[full] ^ b[full]) & (0xffu8 << (8 - rest)) == 0)
        }
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => prefix(&n.octets(), &i.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(i)) => prefix(&n.octets(), &i.octets(), self.bits),
            (IpAddr::V4(n), IpAddr::V6(i)) => i
                .to_ipv4_mapped()
                .is_some_and(|i| prefix(&n.octets(), &i.octets(), self.bits)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_subdomains_only() {
        let p = DomainPattern::parse("*.Apple.com.").unwrap();
        assert!(p.matches("push.apple.com"));
        assert!(p.matches("a.b.apple.com"));
        assert!(!p.matches("apple.com"));
        assert!(!p.matches("notapple.com"));
        let e = DomainPattern::parse("bank.example").unwrap();
        assert!(e.matches("bank.example") && !e.matches("x.bank.example"));
        assert!(DomainPattern::parse("*.").is_err());
        assert!(DomainPattern::parse("a b.example").is_err());
    }

    #[test]
    fn ranges() {
        let c = Cidr::parse("17.0.0.0/8").unwrap();
        assert!(c.contains("17.57.144.10".parse().unwrap()));
        assert!(!c.contains("18.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:17.1.2.3".parse().unwrap()));
        let one = Cidr::parse("10.77.0.1").unwrap();
        assert!(one.contains("10.77.0.1".parse().unwrap()));
        assert!(!one.contains("10.77.0.2".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/33").unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }
}
