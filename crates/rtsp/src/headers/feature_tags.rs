//! Feature-tag lists: `Require` (RFC 2326 §12.32, RFC 7826 §18.43), `Proxy-Require`
//! (§12.27 / §18.37), `Unsupported` (§12.41 / §18.55), `Supported` (RFC 7826 §18.51) and
//! `Proxy-Supported` (RFC 7826 §18.38), plus the set operations a proxy performs on them
//! (answer 551 with `Unsupported`, intersect `Proxy-Supported`).
//!
//! Feature tags are tokens compared case-sensitively (RFC 7826 §4.5 registers them as
//! given). What it does not: decide which features mediagate supports.

use super::syntax::{self, Nesting};
use crate::header_map::{HeaderError, TypedHeader};

/// Parses a comma-separated token list; `allow_empty` for the `[list]` grammars.
pub(crate) fn parse_token_list(
    header: &'static str,
    value: &str,
    allow_empty: bool,
    what: &str,
) -> Result<Vec<String>, HeaderError> {
    let span = syntax::start(header, value)?;
    let items = syntax::split_list(
        header,
        span,
        b',',
        syntax::MAX_LIST_ITEMS,
        Nesting::Quotes,
        what,
    )?;
    if items.is_empty() && !allow_empty {
        return Err(syntax::err(
            header,
            span.offset,
            format!("expected at least one of {what}"),
        ));
    }
    items
        .into_iter()
        .map(|item| syntax::expect_token(header, item, what).map(str::to_owned))
        .collect()
}

macro_rules! feature_list_header {
    ($(#[$doc:meta])* $name:ident, $wire:literal, allow_empty = $empty:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name(pub Vec<String>);

        impl $name {
            /// Whether `tag` is listed (exact, case-sensitive match).
            pub fn contains(&self, tag: &str) -> bool {
                self.0.iter().any(|t| t == tag)
            }

            /// Tags for which `supported` says no, in order (what to put in
            /// `Unsupported`).
            pub fn unsupported_by(&self, supported: impl Fn(&str) -> bool) -> Unsupported {
                Unsupported(self.0.iter().filter(|t| !supported(t)).cloned().collect())
            }
        }

        impl TypedHeader for $name {
            const NAME: &'static str = $wire;

            fn parse_value(value: &str) -> Result<Self, HeaderError> {
                parse_token_list(Self::NAME, value, $empty, "feature tags").map($name)
            }

            fn to_value(&self) -> String {
                self.0.join(", ")
            }
        }
    };
}

feature_list_header!(
    /// `Require`: features the end point must support (a proxy ignores those it does not
    /// understand, RFC 2326 §12.32).
    Require,
    "Require",
    allow_empty = false
);
feature_list_header!(
    /// `Proxy-Require`: features every proxy must support; an unsupported one is answered
    /// `551 Option Not Supported` with `Unsupported`.
    ProxyRequire,
    "Proxy-Require",
    allow_empty = false
);
feature_list_header!(
    /// `Unsupported`: the features of a Require/Proxy-Require that were not supported.
    Unsupported,
    "Unsupported",
    allow_empty = true
);
feature_list_header!(
    /// `Supported`: features the sender supports (may be empty).
    Supported,
    "Supported",
    allow_empty = true
);
feature_list_header!(
    /// `Proxy-Supported`: the intersection of features supported by the proxies on the
    /// path (may be empty).
    ProxySupported,
    "Proxy-Supported",
    allow_empty = true
);

impl ProxySupported {
    /// The list a forwarding proxy passes on: only the tags it supports itself
    /// (RFC 7826 §18.38 "MUST ... remove any feature tag(s) it does not support").
    pub fn retain_supported(&self, supported: impl Fn(&str) -> bool) -> ProxySupported {
        ProxySupported(self.0.iter().filter(|t| supported(t)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc_examples() {
        assert_eq!(
            ProxyRequire::parse_value("play.basic"),
            Ok(ProxyRequire(vec!["play.basic".into()]))
        );
        let s = Supported::parse_value("play.basic, setup.rtp.rtcp.mux,  play.scale").unwrap();
        assert_eq!(s.0, ["play.basic", "setup.rtp.rtcp.mux", "play.scale"]);
        assert_eq!(s.to_value(), "play.basic, setup.rtp.rtcp.mux, play.scale");
        assert_eq!(Supported::parse_value(""), Ok(Supported(vec![])));
        assert_eq!(Supported(vec![]).to_value(), "");
        assert!(s.contains("play.scale"));
        assert!(!s.contains("Play.Scale"));
    }

    #[test]
    fn proxy_operations() {
        let ours = |t: &str| t == "play.basic";
        let pr = ProxyRequire::parse_value("play.basic, com.example.x").unwrap();
        assert_eq!(
            pr.unsupported_by(ours),
            Unsupported(vec!["com.example.x".into()])
        );
        let ps = ProxySupported::parse_value("com.example.x,play.basic").unwrap();
        assert_eq!(
            ps.retain_supported(ours),
            ProxySupported(vec!["play.basic".into()])
        );
    }

    #[test]
    fn errors_carry_offsets() {
        assert_eq!(Require::parse_value("").unwrap_err().offset, 0);
        let e = Require::parse_value("a, b c").unwrap_err();
        assert_eq!((e.offset, e.header), (4, "Require"));
        assert_eq!(ProxyRequire::parse_value("a;b").unwrap_err().offset, 1);
        let many = vec!["a"; 65].join(",");
        assert_eq!(Supported::parse_value(&many).unwrap_err().offset, 128);
    }

    #[test]
    fn round_trips() {
        for v in ["a", "play.basic, x-1, com.example.y"] {
            let r = Require::parse_value(v).unwrap();
            assert_eq!(Require::parse_value(&r.to_value()), Ok(r));
        }
    }
}
