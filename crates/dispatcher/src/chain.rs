//! Chained relays (issue 15 item 8): which new calls go through two relays, and which
//! relays may play each part. The policy is `docs/dispatcher.md`, "Chained relays".
//!
//! What it does: holds `[[dispatcher.relay_group]]` (relay name to group) and the
//! `[[dispatcher.chain]]` rules in order, and picks the first rule an `offer` for a
//! new call matches: by the caller's address (the offer SDP's connection address,
//! session level, else the first media's), by an `ng` flag or key the proxy set, or
//! always. A rule names two groups: `first` faces the caller, `second` the callee.
//!
//! What it does not: talk to relays, order them (`select`) or keep calls (`sessions`);
//! decide anything for a call already placed (it sticks to its relays), or match the
//! callee's address (not known when the offer must be placed).

use std::collections::HashMap;
use std::net::IpAddr;

use mediagate_config::{Cidr, DispatcherConfig};
use mediagate_ng::bencode::Value;

/// The relay groups and chain rules of one dispatcher.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChainPolicy {
    group_of: HashMap<String, String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    first: String,
    second: String,
    when: When,
}

#[derive(Debug, Clone)]
enum When {
    Always,
    Caller(Vec<Cidr>),
    Flag(String),
}

/// The two groups a new call goes through, caller's side first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chain<'a> {
    /// Faces the caller: gets the offer first and the answer last.
    pub(crate) first: &'a str,
    /// Faces the callee.
    pub(crate) second: &'a str,
}

impl ChainPolicy {
    /// The policy `d` configures (already checked by `check-config`: a rule with no
    /// condition never matches here).
    pub(crate) fn from_config(d: &DispatcherConfig) -> Self {
        let group_of = d
            .relay_group
            .iter()
            .flat_map(|g| g.relays.iter().map(|r| (r.clone(), g.name.get().clone())))
            .collect();
        let rules = d
            .chain
            .iter()
            .filter_map(|c| {
                let when = if c.always {
                    When::Always
                } else if let Some(flag) = &c.flag {
                    When::Flag(flag.clone())
                } else if !c.caller.is_empty() {
                    When::Caller(c.caller.clone())
                } else {
                    return None;
                };
                Some(Rule {
                    first: c.first.get().clone(),
                    second: c.second.get().clone(),
                    when,
                })
            })
            .collect();
        Self { group_of, rules }
    }

    /// The chain of the first rule the `ng` `offer` `request` for a new call matches;
    /// `None`: one relay, as without rules.
    pub(crate) fn for_offer(&self, request: &Value) -> Option<Chain<'_>> {
        if self.rules.is_empty() {
            return None;
        }
        let caller = caller_address(request);
        self.rules
            .iter()
            .find(|r| match &r.when {
                When::Always => true,
                When::Flag(flag) => has_flag(request, flag),
                When::Caller(nets) => caller.is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
            })
            .map(|r| Chain {
                first: &r.first,
                second: &r.second,
            })
    }

    /// Whether the relay called `relay` is in `group`.
    pub(crate) fn in_group(&self, relay: &str, group: &str) -> bool {
        self.group_of.get(relay).is_some_and(|g| g == group)
    }
}

/// The offer SDP's connection address: session level, else the first media's.
fn caller_address(request: &Value) -> Option<IpAddr> {
    let sdp = request.get("sdp").and_then(Value::as_bytes)?;
    let sdp = mediagate_sdp::SessionDescription::parse(sdp).ok()?;
    let connection = sdp
        .connection()
        .or_else(|| sdp.media().first().and_then(|m| m.connection()))?;
    connection.ip()
}

/// Whether `request` has `flag` as a `flags` item (any case, as rtpengine reads flags)
/// or as a key.
fn has_flag(request: &Value, flag: &str) -> bool {
    request.get(flag).is_some()
        || request
            .get("flags")
            .and_then(Value::as_list)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .any(|f| f.trim().eq_ignore_ascii_case(flag))
}

#[cfg(test)]
mod tests {
    use mediagate_ng::bencode::dict;

    use super::*;

    fn policy(rules: &str) -> ChainPolicy {
        let text = format!(
            "[edge]\nenabled = false\n[dispatcher]\nenabled = true\nng_listen_udp = [\"127.0.0.1:2223\"]\nrelay_listen = \"0.0.0.0:25060\"\ntls_dir = \"pki\"\n[[dispatcher.relay_group]]\nname = \"pub\"\nrelays = [\"relay1\", \"relay2\"]\n[[dispatcher.relay_group]]\nname = \"priv\"\nrelays = [\"inner\"]\n{rules}"
        );
        let config = mediagate_config::parse_config(&text).unwrap();
        ChainPolicy::from_config(&config.dispatcher)
    }

    fn offer(sdp: &str, flags: &[&str]) -> Value {
        dict([
            ("command", Value::str("offer")),
            ("call-id", Value::str("c")),
            ("sdp", Value::str(sdp)),
            (
                "flags",
                Value::List(flags.iter().map(|f| Value::str(f)).collect()),
            ),
        ])
    }

    const FROM_10: &str =
        "v=0\r\no=- 1 1 IN IP4 10.1.2.3\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    const MEDIA_LEVEL_192: &str =
        "v=0\r\no=- 1 1 IN IP4 10.9.9.9\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\nc=IN IP4 192.0.2.7\r\n";

    #[test]
    fn first_matching_rule_wins_by_caller_network_flag_or_always() {
        let p = policy(
            "[[dispatcher.chain]]\nfirst = \"priv\"\nsecond = \"pub\"\ncaller = [\"10.0.0.0/8\"]\n\
             [[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\nflag = \"chain-private\"\n",
        );
        let inside = Chain {
            first: "priv",
            second: "pub",
        };
        let outside = Chain {
            first: "pub",
            second: "priv",
        };
        assert_eq!(p.for_offer(&offer(FROM_10, &[])), Some(inside));
        assert_eq!(
            p.for_offer(&offer(FROM_10, &["chain-private"])),
            Some(inside),
            "the earlier rule wins"
        );
        // The origin's address is not the media's: the media-level c= counts.
        assert_eq!(p.for_offer(&offer(MEDIA_LEVEL_192, &[])), None);
        assert_eq!(
            p.for_offer(&offer(MEDIA_LEVEL_192, &["Chain-Private"])),
            Some(outside)
        );
        let mut keyed = offer(MEDIA_LEVEL_192, &[]);
        if let Value::Dict(d) = &mut keyed {
            d.push((b"chain-private".to_vec(), Value::str("yes")));
        }
        assert_eq!(p.for_offer(&keyed), Some(outside));
        assert_eq!(p.for_offer(&offer("not sdp", &[])), None);

        let always =
            policy("[[dispatcher.chain]]\nfirst = \"pub\"\nsecond = \"priv\"\nalways = true\n");
        assert_eq!(always.for_offer(&offer("not sdp", &[])), Some(outside));
        assert!(always.in_group("relay2", "pub"));
        assert!(!always.in_group("relay2", "priv"));
        assert!(!always.in_group("other", "pub"));
    }

    #[test]
    fn no_rules_no_chain() {
        let p = ChainPolicy::default();
        assert_eq!(p.for_offer(&offer(FROM_10, &["chain-private"])), None);
    }
}
