//! Where the edge may open a connection: resolve once, check every address, connect to
//! exactly the address checked.
//!
//! Every upstream hop goes through [`Reach::resolve_checked`]: a forward-mode origin,
//! a reverse route's origin, the `parent`, and each origin redirect. A name is resolved
//! once; every address it resolves to must pass (one bad address refuses the name, so a
//! resolver that mixes a public and a loopback answer cannot steer the edge); the
//! caller then connects to the returned `SocketAddr` and never resolves again, so a
//! second, different DNS answer (rebinding) never reaches a socket.
//!
//! What passes depends on who vouched for the hop ([`Grant`]):
//! * [`Grant::Named`]: the operator wrote this host into the config (a route's origin,
//!   the parent). Any address it resolves to is fine, loopback included, except one of
//!   this edge's own listening sockets (that is a loop, not an origin).
//! * [`Grant::AllowList`]: only `[edge.forward].allow` admits the host (forward and
//!   transparent modes, redirects to another host). The name or address must match a
//!   rule, and each resolved address must lie outside the never-reach set — loopback,
//!   link-local (169.254.0.0/16 with the cloud metadata address, fe80::/10),
//!   unspecified, multicast and broadcast, private and shared ranges (10/8,
//!   172.16/12, 192.168/16, 100.64/10, fc00::/7), and this host's own interface
//!   addresses — unless an address or network rule of the allow list contains it
//!   (the operator named it explicitly). A name rule (`*.cameras.example`) never
//!   vouches for where the name points.
//!
//! The check itself ([`Reach::check`]) is pure: the shell passes the resolved
//! addresses and which of them are local to this host. It also spots a request that
//! already passed through this edge ([`loops_through`]), by the instance token every
//! `Via` entry of ours carries.
//!
//! What it does not: decide the route (`routing` does) or bound connect time (the
//! RTSP client does).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mediagate_config::{DestinationRule, HostPattern};

/// Who vouches for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// The operator named this host in the config (a route's origin, the parent).
    Named,
    /// Only the forward allow list admits it.
    AllowList,
}

/// Why the edge will not connect somewhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReachError {
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    #[error("{host} is not in this edge's destination list")]
    NotAllowed { host: String },
    #[error("{host} resolves to {addr}, which this edge never connects to ({why})")]
    NeverReach {
        host: String,
        addr: SocketAddr,
        why: &'static str,
    },
}

/// One resolved address and whether it belongs to this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub ip: IpAddr,
    pub local: bool,
}

/// The destination policy of one edge (replaced whole on reload with the settings).
#[derive(Debug, Clone, Default)]
pub(crate) struct Reach {
    allow: Vec<DestinationRule>,
    /// The edge's listening sockets (an unspecified IP means every local address).
    listeners: Vec<SocketAddr>,
}

impl Reach {
    pub fn new(allow: Vec<DestinationRule>, listeners: Vec<SocketAddr>) -> Self {
        Self { allow, listeners }
    }

    /// The same policy, knowing the sockets the edge really listens on (port 0 in the
    /// config becomes the bound port).
    pub fn with_listeners(&self, listeners: Vec<SocketAddr>) -> Self {
        Self {
            allow: self.allow.clone(),
            listeners,
        }
    }

    /// Whether the allow list admits `host` on `port` by name or address (before any
    /// resolution).
    pub fn admits_name(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|r| r.matches(host, port))
    }

    /// Checks every address `host` resolved to and returns the one to connect to.
    /// `addrs` must not be empty.
    pub fn check(
        &self,
        host: &str,
        port: u16,
        grant: Grant,
        addrs: &[Resolved],
    ) -> Result<SocketAddr, ReachError> {
        if grant == Grant::AllowList && !self.admits_name(host, port) {
            return Err(ReachError::NotAllowed {
                host: host.to_owned(),
            });
        }
        let Some(first) = addrs.first() else {
            return Err(ReachError::Resolve {
                host: host.to_owned(),
                why: "no address".into(),
            });
        };
        for a in addrs {
            let addr = SocketAddr::new(a.ip, port);
            let refuse = |why| ReachError::NeverReach {
                host: host.to_owned(),
                addr,
                why,
            };
            if a.local && self.is_listener(addr) {
                return Err(refuse("this edge's own listener"));
            }
            if grant == Grant::Named || self.names_explicitly(a.ip, port) {
                continue;
            }
            if let Some(why) = never_reach(a.ip) {
                return Err(refuse(why));
            }
            if a.local {
                return Err(refuse("an address of this host"));
            }
        }
        Ok(SocketAddr::new(first.ip, port))
    }

    fn is_listener(&self, addr: SocketAddr) -> bool {
        self.listeners.iter().any(|l| {
            l.port() == addr.port() && (l.ip().is_unspecified() || canonical(l.ip()) == addr.ip())
        })
    }

    /// An address or network rule of the allow list contains `ip` (with `port`).
    fn names_explicitly(&self, ip: IpAddr, port: u16) -> bool {
        self.allow.iter().any(|r| {
            matches!(r.host(), HostPattern::Network(net) if net.contains(ip))
                && r.ports().is_none_or(|p| p.contains(port))
        })
    }

    /// Resolves `host` (a name or an address literal), checks every answer, and
    /// returns the one address to connect to.
    pub async fn resolve_checked(
        &self,
        host: &str,
        port: u16,
        grant: Grant,
    ) -> Result<SocketAddr, ReachError> {
        if grant == Grant::AllowList && !self.admits_name(host, port) {
            // Not even asked of the resolver: the name itself is not allowed.
            return Err(ReachError::NotAllowed {
                host: host.to_owned(),
            });
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ips: Vec<IpAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| ReachError::Resolve {
                    host: host.to_owned(),
                    why: e.to_string(),
                })?
                .map(|a| a.ip())
                .collect(),
        };
        let resolved: Vec<Resolved> = ips
            .into_iter()
            .map(|ip| {
                let ip = canonical(ip);
                Resolved {
                    ip,
                    local: is_local_address(ip),
                }
            })
            .collect();
        self.check(host, port, grant, &resolved)
    }
}

/// IPv4-mapped IPv6 addresses checked as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an address of this host: binding to it succeeds only then (no
/// `IP_FREEBIND`). One cheap syscall pair per connect, and no interface list to keep
/// fresh.
fn is_local_address(ip: IpAddr) -> bool {
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Why `ip` is in the never-reach set, if it is.
pub(crate) fn never_reach(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => never_reach_v4(v4),
        IpAddr::V6(v6) => never_reach_v6(v6),
    }
}

fn never_reach_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip.is_unspecified() || o[0] == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_link_local() {
        "link-local, where cloud metadata services answer"
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        "multicast or broadcast"
    } else if ip.is_private() {
        "a private range no rule names"
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        "the shared address space no rule names"
    } else {
        return None;
    })
}

fn never_reach_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if (first & 0xffc0) == 0xfe80 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if (first & 0xfe00) == 0xfc00 {
        "a private range no rule names"
    } else {
        return None;
    })
}

/// The `Via` entry of this edge instance: `RTSP/1.0 <name>;mg-id=<token>` (a
/// `via-extension` of RFC 7826 §20.2.3). The token is random per process, so two edges
/// on one host with one host name still tell each other apart.
pub(crate) fn via_entry(name: &str, token: &str) -> String {
    format!("RTSP/1.0 {name};mg-id={token}")
}

/// The answer to a request that looped back: `508 Loop Detected`. RFC 7826 registers
/// no status for loops; 508 is the HTTP one (RFC 5842 §7.2) and, being a 5xx, tells
/// the client the fault is in the proxies' configuration, not in its request (an
/// RTSP client that does not know 508 treats it as 500, RFC 7826 §8.1.1).
pub(crate) fn loop_detected() -> mediagate_rtsp::Response {
    let status = mediagate_rtsp::StatusCode::from_u16(508)
        .unwrap_or(mediagate_rtsp::StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = mediagate_rtsp::Response::new(mediagate_rtsp::Version::Rtsp1_0, status);
    r.reason = "Loop Detected (this request already passed through this edge; check the parent and forward settings)".into();
    r
}

/// Whether any of a request's `Via` values carries this instance's token: the request
/// already passed through this edge and forwarding it again would loop.
pub(crate) fn loops_through<'a>(mut vias: impl Iterator<Item = &'a str>, token: &str) -> bool {
    let needle = format!("mg-id={token}");
    vias.any(|v| {
        v.split(',')
            .flat_map(|entry| entry.split(';').skip(1))
            .any(|param| param.trim().eq_ignore_ascii_case(&needle))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(allow: &[&str]) -> Reach {
        Reach::new(
            allow.iter().map(|r| r.parse().unwrap()).collect(),
            vec!["0.0.0.0:8554".parse().unwrap()],
        )
    }

    fn remote(ip: &str) -> Resolved {
        Resolved {
            ip: ip.parse().unwrap(),
            local: false,
        }
    }

    fn local(ip: &str) -> Resolved {
        Resolved {
            ip: ip.parse().unwrap(),
            local: true,
        }
    }

    #[test]
    fn a_name_rule_does_not_vouch_for_where_the_name_points() {
        let r = reach(&["*.test"]);
        let ok = r.check("cam.test", 554, Grant::AllowList, &[remote("203.0.113.7")]);
        assert_eq!(ok, Ok("203.0.113.7:554".parse().unwrap()));
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("10.1.2.3", "private"),
            ("192.168.1.1", "private"),
            ("172.20.0.1", "private"),
            ("100.64.0.1", "shared"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("fd00::1", "private"),
            ("::ffff:127.0.0.1", "loopback"),
            ("ff02::1", "multicast"),
        ] {
            let e = r
                .check("evil.test", 554, Grant::AllowList, &[remote(ip)])
                .unwrap_err();
            assert!(
                matches!(&e, ReachError::NeverReach { why: w, .. } if w.contains(why)),
                "{ip}: {e}"
            );
        }
    }

    #[test]
    fn one_bad_answer_among_good_ones_refuses_the_name() {
        let r = reach(&["*.test"]);
        let e = r
            .check(
                "mixed.test",
                554,
                Grant::AllowList,
                &[remote("203.0.113.7"), remote("127.0.0.1")],
            )
            .unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:554"), "{e}");
    }

    #[test]
    fn an_address_rule_names_a_private_network_explicitly() {
        let r = reach(&["*.test", "10.77.2.0/24:554"]);
        assert!(r
            .check("cam.test", 554, Grant::AllowList, &[remote("10.77.2.2")])
            .is_ok());
        assert!(r
            .check("10.77.2.2", 554, Grant::AllowList, &[remote("10.77.2.2")])
            .is_ok());
        // The network rule names port 554 only.
        assert!(r
            .check("cam.test", 8554, Grant::AllowList, &[remote("10.77.2.2")])
            .is_err());
        assert!(r
            .check("cam.test", 554, Grant::AllowList, &[remote("10.77.3.2")])
            .is_err());
    }

    #[test]
    fn the_allow_list_applies_before_any_address() {
        let r = reach(&["cam.example"]);
        assert_eq!(
            r.check(
                "other.example",
                554,
                Grant::AllowList,
                &[remote("203.0.113.7")]
            ),
            Err(ReachError::NotAllowed {
                host: "other.example".into()
            })
        );
    }

    #[test]
    fn a_host_the_operator_named_may_be_anywhere_but_this_edge_itself() {
        let r = reach(&[]);
        assert!(r
            .check("127.0.0.1", 9554, Grant::Named, &[local("127.0.0.1")])
            .is_ok());
        assert!(r
            .check("origin.lan", 554, Grant::Named, &[remote("10.0.0.5")])
            .is_ok());
        let e = r
            .check("127.0.0.1", 8554, Grant::Named, &[local("127.0.0.1")])
            .unwrap_err();
        assert!(e.to_string().contains("own listener"), "{e}");
        // A remote host with the same port is not us.
        assert!(r
            .check("origin.lan", 8554, Grant::Named, &[remote("10.0.0.5")])
            .is_ok());
    }

    #[test]
    fn this_hosts_addresses_need_an_explicit_rule() {
        let r = reach(&["*.test"]);
        let e = r
            .check("me.test", 554, Grant::AllowList, &[local("203.0.113.9")])
            .unwrap_err();
        assert!(e.to_string().contains("an address of this host"), "{e}");
        let r = reach(&["*.test", "203.0.113.9"]);
        assert!(r
            .check("me.test", 554, Grant::AllowList, &[local("203.0.113.9")])
            .is_ok());
        // ... but never its own listener, rule or not.
        assert!(r
            .check("me.test", 8554, Grant::AllowList, &[local("203.0.113.9")])
            .is_err());
    }

    #[tokio::test]
    async fn literals_are_checked_without_a_resolver_and_names_through_it() {
        let r = reach(&["*.test", "localhost"]);
        let e = r
            .resolve_checked("localhost", 554, Grant::AllowList)
            .await
            .unwrap_err();
        assert!(matches!(e, ReachError::NeverReach { .. }), "{e}");
        let e = r
            .resolve_checked("[::1]", 554, Grant::AllowList)
            .await
            .unwrap_err();
        assert!(matches!(e, ReachError::NotAllowed { .. }), "{e}");
        assert_eq!(
            r.resolve_checked("127.0.0.1", 9, Grant::Named).await,
            Ok("127.0.0.1:9".parse().unwrap())
        );
    }

    #[test]
    fn our_via_token_marks_a_loop_and_others_do_not() {
        let ours = via_entry("edge1", "abc123");
        assert_eq!(ours, "RTSP/1.0 edge1;mg-id=abc123");
        assert!(loops_through([ours.as_str()].into_iter(), "abc123"));
        let chain = format!("RTSP/1.0 child;mg-id=fff, {ours}");
        assert!(loops_through([chain.as_str()].into_iter(), "abc123"));
        assert!(!loops_through(
            ["RTSP/1.0 edge1;mg-id=abc1234", "1.0 cache (mg-id=abc123)"].into_iter(),
            "abc123"
        ));
        assert!(!loops_through(std::iter::empty(), "abc123"));
    }
}
