//! Who may publish where (`[[edge.publish]]`), pure: the longest rule whose path
//! covers the published path decides by the publisher's address; a path no rule
//! covers may be published from loopback only (the built-in default, so that
//! `mediagate run` never opens an ingest to the network).
//!
//! A rule with `users` asks the publisher to log in as one of them after its address
//! passed: the verdict then carries the [`Access`] the viewer login code checks.
//!
//! What it does not: check a login (the shell does, with `login`) or answer the
//! publisher.

use std::net::IpAddr;

use mediagate_config::{Access, Located, OnBusy, PublishRule};

/// The edge's publish rules, longest path first.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublishRules {
    rules: Vec<PublishRule>,
}

/// What the rules say about one publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It may publish; a busy path is handled as `on_busy` says.
    Allowed(OnBusy),
    /// Its address may publish, once it logged in as a user `Access` admits.
    LoginFirst(OnBusy, Access),
    /// Its address is not allowed for this path.
    Forbidden,
}

impl PublishRules {
    pub fn new(rules: &[PublishRule]) -> Self {
        let mut rules = rules.to_vec();
        rules.sort_by_key(|r| std::cmp::Reverse(r.path.get().path().len()));
        Self { rules }
    }

    pub fn check(&self, path: &str, from: IpAddr) -> Verdict {
        let rule = self
            .rules
            .iter()
            .find(|r| r.path.get().strip_path_prefix(path).is_some());
        let (allowed, on_busy) = match rule {
            Some(r) if r.admits(from) && r.requires_login() => {
                return Verdict::LoginFirst(r.on_busy, login_access(r));
            }
            Some(r) => (r.admits(from), r.on_busy),
            None => (
                PublishRule {
                    path: mediagate_config::Located::new("/".parse().expect("a valid path prefix")),
                    clients: mediagate_config::loopback_networks(),
                    on_busy: OnBusy::Refuse,
                    users: Vec::new(),
                }
                .admits(from),
                OnBusy::Refuse,
            ),
        };
        if allowed {
            Verdict::Allowed(on_busy)
        } else {
            Verdict::Forbidden
        }
    }
}

/// The viewer-login form of a rule's `users`: the address was checked already, and
/// `"*"` (any user who logs in) is an access without a user list.
fn login_access(rule: &PublishRule) -> Access {
    let any = rule.users.iter().any(|u| u == "*");
    Access {
        clients: Vec::new(),
        authenticate: Some(Located::new(true)),
        users: if any { Vec::new() } else { rule.users.clone() },
        groups: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> PublishRules {
        let cfg = mediagate_config::parse_config(text).expect("valid test config");
        PublishRules::new(&cfg.edge.publish)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn with_no_rule_only_loopback_publishes() {
        let r = rules("");
        assert_eq!(
            r.check("/a", ip("127.0.0.1")),
            Verdict::Allowed(OnBusy::Refuse)
        );
        assert_eq!(r.check("/a", ip("::1")), Verdict::Allowed(OnBusy::Refuse));
        assert_eq!(
            r.check("/a", ip("::ffff:127.0.0.1")),
            Verdict::Allowed(OnBusy::Refuse)
        );
        assert_eq!(r.check("/a", ip("192.0.2.1")), Verdict::Forbidden);
    }

    #[test]
    fn the_longest_rule_decides_on_whole_segments() {
        let r = rules(
            r#"
            [[edge.publish]]
            path = "/live"
            clients = ["10.0.0.0/8"]
            on_busy = "replace"
            [[edge.publish]]
            path = "/live/closed"
            clients = []
            "#,
        );
        assert_eq!(
            r.check("/live/cam", ip("10.1.2.3")),
            Verdict::Allowed(OnBusy::Replace)
        );
        assert_eq!(
            r.check("/live/cam", ip("127.0.0.1")),
            Verdict::Forbidden,
            "a rule replaces the loopback default for its paths"
        );
        assert_eq!(
            r.check("/live/closed/x", ip("10.1.2.3")),
            Verdict::Forbidden
        );
        assert_eq!(
            r.check("/lively", ip("10.1.2.3")),
            Verdict::Forbidden,
            "not under /live: the default applies"
        );
        assert_eq!(
            r.check("/lively", ip("127.0.0.1")),
            Verdict::Allowed(OnBusy::Refuse)
        );
    }

    #[test]
    fn users_ask_for_a_login_after_the_address() {
        let r = rules(
            r#"
            [edge.auth]
            users_file = "/etc/mediagate/users"
            [[edge.publish]]
            path = "/live"
            clients = ["10.0.0.0/8"]
            users = ["enc", "cam"]
            [[edge.publish]]
            path = "/any"
            users = ["*"]
            on_busy = "replace"
            "#,
        );
        assert_eq!(r.check("/live/x", ip("192.0.2.1")), Verdict::Forbidden);
        let Verdict::LoginFirst(OnBusy::Refuse, a) = r.check("/live/x", ip("10.0.0.1")) else {
            panic!("a login is asked");
        };
        assert!(a.requires_login());
        assert!(a.admits_user("enc", &[]) && a.admits_user("cam", &[]));
        assert!(!a.admits_user("other", &[]));
        let Verdict::LoginFirst(OnBusy::Replace, a) = r.check("/any/x", ip("127.0.0.1")) else {
            panic!("a login is asked");
        };
        assert!(a.requires_login() && a.admits_user("whoever", &[]));
        assert_eq!(
            r.check("/other", ip("127.0.0.1")),
            Verdict::Allowed(OnBusy::Refuse),
            "no rule: loopback, no login"
        );
    }
}
