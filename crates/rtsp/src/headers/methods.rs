//! Method lists: `Public` (RFC 2326 §12.28, RFC 7826 §18.39: methods the server
//! supports) and `Allow` (RFC 2326 §12.4, RFC 7826 §18.6: methods allowed on a resource).
//!
//! Methods are kept as the tokens received, unknown ones included (a proxy forwards
//! vendor methods such as `GET_PARAMETER` variants or live555's `REGISTER`); comparison
//! is case-sensitive as method names are (RFC 2326 §6.1). What it does not: filter the
//! list to what a proxy supports; the session layer does that.

use super::feature_tags::parse_token_list;
use crate::header_map::{HeaderError, TypedHeader};

macro_rules! method_list_header {
    ($(#[$doc:meta])* $name:ident, $wire:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name(pub Vec<String>);

        impl $name {
            /// Whether `method` is listed (case-sensitive).
            pub fn contains(&self, method: &str) -> bool {
                self.0.iter().any(|m| m == method)
            }

            /// Same list without the methods `keep` rejects (e.g. to hide methods a
            /// proxy cannot relay).
            pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Self {
                Self(self.0.iter().filter(|m| keep(m)).cloned().collect())
            }
        }

        impl TypedHeader for $name {
            const NAME: &'static str = $wire;

            fn parse_value(value: &str) -> Result<Self, HeaderError> {
                parse_token_list(Self::NAME, value, false, "methods").map($name)
            }

            fn to_value(&self) -> String {
                self.0.join(", ")
            }
        }
    };
}

method_list_header!(
    /// `Public`: methods the server supports (OPTIONS response).
    Public,
    "Public"
);
method_list_header!(
    /// `Allow`: methods allowed on the resource (405 response).
    Allow,
    "Allow"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_world_samples() {
        // live555 OPTIONS response
        let p = Public::parse_value(
            "OPTIONS, DESCRIBE, SETUP, TEARDOWN, PLAY, PAUSE, GET_PARAMETER, SET_PARAMETER",
        )
        .unwrap();
        assert_eq!(p.0.len(), 8);
        assert!(p.contains("GET_PARAMETER"));
        assert!(!p.contains("get_parameter"));
        // gst-rtsp-server, including a vendor method, no spaces
        let p = Public::parse_value("OPTIONS,DESCRIBE,ANNOUNCE,GET_PARAMETER,PAUSE,PLAY,RECORD,SETUP,SET_PARAMETER,TEARDOWN,X-VENDOR").unwrap();
        assert_eq!(p.0.last().map(String::as_str), Some("X-VENDOR"));
        let a = Allow::parse_value("SETUP, PLAY").unwrap();
        assert_eq!(a.to_value(), "SETUP, PLAY");
        assert_eq!(a.retain(|m| m != "PLAY"), Allow(vec!["SETUP".into()]));
        assert_eq!(Allow::parse_value(&a.to_value()), Ok(a));
    }

    #[test]
    fn errors_carry_offsets() {
        let e = Public::parse_value("PLAY, SET UP").unwrap_err();
        assert_eq!((e.offset, e.header), (9, "Public"));
        assert_eq!(Allow::parse_value("").unwrap_err().offset, 0);
    }
}
