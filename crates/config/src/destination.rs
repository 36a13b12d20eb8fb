//! Destination rules of the forward proxy's allow list (deny by default).
//!
//! What it does: parses one rule `HOST[:PORTS]` where HOST is a DNS name
//! (`camera.example.com`), a wildcard for every name under a domain
//! (`*.cameras.example.com`, not the domain itself), an IP address or a CIDR network
//! (`10.20.0.0/16`; IPv6 in brackets when ports follow: `[2001:db8::/32]:554`), and PORTS
//! a port or range (`554`, `8554-8560`; absent means any port). It matches a request's
//! host and port against the rule.
//!
//! What it does not: resolve names. A name rule matches only a request written with that
//! name and a network rule only a request written with an address; an engine that
//! resolves names must check the resolved address too, or DNS could steer the proxy
//! into a private network.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::cidr::Cidr;
use super::port_range::PortRange;
use super::url::parse_host_name;
use super::value_error::{check_len, quoted, InvalidValue};

/// Which hosts a destination rule covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this DNS name (lower-cased).
    Name(String),
    /// Every name that ends with `.` + this domain (lower-cased), not the domain itself.
    Subdomains(String),
    /// Every address in this network.
    Network(Cidr),
}

/// One entry of `[edge.forward].allow`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DestinationRule {
    host: HostPattern,
    ports: Option<PortRange>,
}

const FORM: &str = "write HOST[:PORTS] such as \"camera.example.com:554\", \"*.cameras.example.com\", \"10.20.0.0/16:554-8554\" or \"[2001:db8::/32]:554\"";

impl DestinationRule {
    /// The host part of the rule.
    pub fn host(&self) -> &HostPattern {
        &self.host
    }

    /// The ports the rule allows; `None` means every port.
    pub fn ports(&self) -> Option<PortRange> {
        self.ports
    }

    /// True when a request for `host` (a name, an IP address, or a bracketed IPv6
    /// address) on `port` is allowed by this rule.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.ports.is_some_and(|p| !p.contains(port)) {
            return false;
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return matches!(self.host, HostPattern::Network(net) if net.contains(ip));
        }
        let name = bare.strip_suffix('.').unwrap_or(bare).to_ascii_lowercase();
        match &self.host {
            HostPattern::Name(n) => *n == name,
            HostPattern::Subdomains(domain) => name
                .strip_suffix(domain.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::Network(_) => false,
        }
    }
}

impl FromStr for DestinationRule {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a destination rule")?;
        let bad = |why: String| {
            InvalidValue::new(format!("invalid destination {}: {why}; {FORM}", quoted(s)))
        };
        let (host_text, ports_text, bracketed) = if let Some(inner) = s.strip_prefix('[') {
            let Some((host, after)) = inner.split_once(']') else {
                return Err(bad("the '[' has no closing ']'".into()));
            };
            let ports = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("expected ':' and ports after ']'".into()))?,
                ),
            };
            (host, ports, true)
        } else if s.matches(':').count() > 1 {
            // Several colons and no brackets: an IPv6 address or network without ports.
            (s, None, false)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p), false),
                None => (s, None, false),
            }
        };
        let ports = match ports_text {
            None => None,
            Some(p) => Some(
                p.parse::<PortRange>()
                    .map_err(|e| bad(e.message().to_owned()))?,
            ),
        };
        if host_text == "*" || host_text.is_empty() {
            return Err(bad(
                "name the hosts or networks to allow; mediagate refuses to be an open proxy".into(),
            ));
        }
        let looks_like_ip = host_text.contains(':')
            || host_text.contains('/')
            || host_text.parse::<IpAddr>().is_ok()
            || bracketed;
        let host =
            if looks_like_ip {
                HostPattern::Network(
                    host_text
                        .parse::<Cidr>()
                        .map_err(|e| bad(e.message().to_owned()))?,
                )
            } else if let Some(domain) = host_text.strip_prefix("*.") {
                HostPattern::Subdomains(
                    parse_host_name(domain)
                        .ok_or_else(|| bad(format!("{} is not a valid domain", quoted(domain))))?,
                )
            } else {
                HostPattern::Name(parse_host_name(host_text).ok_or_else(|| {
                    bad(format!("{} is not a valid host name", quoted(host_text)))
                })?)
            };
        Ok(Self { host, ports })
    }
}

impl fmt::Display for DestinationRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.ports) {
            (HostPattern::Network(net), Some(_)) if net.network().is_ipv6() => {
                write!(f, "[{net}]")?
            }
            (HostPattern::Network(net), _) => write!(f, "{net}")?,
            (HostPattern::Name(n), _) => f.write_str(n)?,
            (HostPattern::Subdomains(d), _) => write!(f, "*.{d}")?,
        }
        if let Some(ports) = self.ports {
            write!(f, ":{ports}")?;
        }
        Ok(())
    }
}

string_value_serde!(
    DestinationRule,
    "a destination such as \"camera.example.com:554\""
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn rule(s: &str) -> DestinationRule {
        s.parse().unwrap()
    }

    fn err(s: &str) -> String {
        s.parse::<DestinationRule>().unwrap_err().to_string()
    }

    #[test]
    fn parses_each_form() {
        assert_eq!(
            rule("Camera.Example.com:554").host(),
            &HostPattern::Name("camera.example.com".into())
        );
        assert_eq!(
            rule("*.cams.example.com").host(),
            &HostPattern::Subdomains("cams.example.com".into())
        );
        assert_eq!(
            rule("10.20.0.0/16:554-8554").ports(),
            Some(PortRange::new(554, 8554).unwrap())
        );
        assert_eq!(
            rule("192.0.2.1").host(),
            &HostPattern::Network("192.0.2.1/32".parse().unwrap())
        );
        assert_eq!(rule("2001:db8::/32").ports(), None);
        assert_eq!(
            rule("[2001:db8::/32]:554").to_string(),
            "[2001:db8::/32]:554"
        );
        assert_eq!(rule("[::1]").to_string(), "::1/128");
    }

    #[test]
    fn rejects_with_a_reason() {
        assert!(err("*").contains("refuses to be an open proxy"));
        assert!(err(":554").contains("refuses to be an open proxy"));
        assert!(err("host:0").contains("port 0"));
        assert!(err("host:x").contains("not a port number"));
        assert!(err("10.0.0.1/8").contains("did you mean \"10.0.0.0/8\""));
        assert!(err("*.").contains("is not a valid domain"));
        assert!(err("bad_host!").contains("is not a valid host name"));
        assert!(err("[::1").contains("no closing ']'"));
        assert!(err("[::1]554").contains("expected ':' and ports"));
        assert!(err("[example.com]:554").contains("is not an IP address"));
    }

    #[test]
    fn matching() {
        let name = rule("camera.example.com:554");
        assert!(name.matches("camera.example.com", 554));
        assert!(name.matches("CAMERA.example.com.", 554));
        assert!(!name.matches("camera.example.com", 8554));
        assert!(!name.matches("other.example.com", 554));

        let wild = rule("*.cams.example.com");
        assert!(wild.matches("a.cams.example.com", 1));
        assert!(wild.matches("a.b.cams.example.com", 65535));
        assert!(
            !wild.matches("cams.example.com", 554),
            "the domain itself is not a subdomain"
        );
        assert!(!wild.matches("evilcams.example.com", 554));

        let net = rule("10.20.0.0/16:554-8554");
        assert!(net.matches("10.20.3.4", 554));
        assert!(net.matches("10.20.3.4", 8554));
        assert!(!net.matches("10.20.3.4", 8555));
        assert!(!net.matches("10.21.0.1", 554));
        assert!(!net.matches("camera.example.com", 554));

        let v6 = rule("[2001:db8::/32]:554");
        assert!(v6.matches("[2001:db8::5]", 554));
        assert!(v6.matches("2001:db8::5", 554));
        assert!(!v6.matches("[2001:db9::5]", 554));
        assert!(!name.matches("10.20.3.4", 554));
    }

    #[test]
    fn round_trips_pseudo_random_rules() {
        let mut rng = Rng::new(23);
        let hosts = [
            "cam.example.com",
            "*.example.org",
            "10.0.0.0/8",
            "192.0.2.9",
            "2001:db8::/32",
            "::1",
        ];
        for _ in 0..2_000 {
            let host = hosts[usize::try_from(rng.below(hosts.len() as u64)).unwrap()];
            let low = rng.below(60_000) + 1;
            let high = low + rng.below(100);
            let text = match rng.below(3) {
                0 => host.to_owned(),
                1 if host.contains(':') => format!("[{host}]:{low}"),
                1 => format!("{host}:{low}"),
                _ if host.contains(':') => format!("[{host}]:{low}-{high}"),
                _ => format!("{host}:{low}-{high}"),
            };
            let parsed = rule(&text);
            assert_eq!(
                parsed.to_string().parse::<DestinationRule>(),
                Ok(parsed.clone()),
                "{text}"
            );
        }
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        let mut rng = Rng::new(29);
        for _ in 0..20_000 {
            let s = rng.string_from(b"*.a1:/[]-0f", 20);
            if let Ok(r) = s.parse::<DestinationRule>() {
                let _ = r.matches(&s, 554);
            }
        }
    }
}
