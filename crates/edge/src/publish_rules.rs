//! Who may publish where (`[[edge.publish]]`), pure: the longest rule whose path
//! covers the published path decides by the publisher's address; a path no rule
//! covers may be published from loopback only (the built-in default, so that
//! `mediagate run` never opens an ingest to the network).
//!
//! What it does not: log anyone in (no user rules yet) or answer the publisher.

use std::net::IpAddr;

use mediagate_config::{OnBusy, PublishRule};

/// The edge's publish rules, longest path first.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublishRules {
    rules: Vec<PublishRule>,
}

/// What the rules say about one publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It may publish; a busy path is handled as `on_busy` says.
    Allowed(OnBusy),
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
}
