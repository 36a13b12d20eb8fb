//! `Session` (RFC 2326 §12.37, RFC 7826 §18.49): the session identifier with its optional
//! `timeout=` in seconds; other parameters are kept in order.
//!
//! What it does not: generate identifiers or run the keep-alive timer.

use super::param::ExtensionParam;
use super::syntax::{self, Nesting};
use crate::header_map::{HeaderError, TypedHeader};

/// Longest session identifier accepted (RFC 7826 `1*256`).
pub const MAX_SESSION_ID_LEN: usize = 256;
/// Timeout a server applies when it sends none (RFC 2326 §12.37, RFC 7826 §18.49).
pub const DEFAULT_SESSION_TIMEOUT_SECS: u64 = 60;

/// `Session: id[;timeout=delta-seconds][;param]*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Opaque identifier, compared byte for byte.
    pub id: String,
    /// Keep-alive timeout in seconds, if the server stated one.
    pub timeout: Option<u64>,
    /// Other parameters, in order (written after `timeout`).
    pub params: Vec<ExtensionParam>,
}

impl Session {
    /// A session header with just an identifier.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            timeout: None,
            params: Vec::new(),
        }
    }

    /// Same session with a timeout.
    pub fn with_timeout(mut self, secs: Option<u64>) -> Self {
        self.timeout = secs;
        self
    }

    /// The timeout to enforce: the stated one or the RFC default of 60 s.
    pub fn effective_timeout_secs(&self) -> u64 {
        self.timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT_SECS)
    }
}

/// Session ids are `ALPHA / DIGIT / "$-_.+"` by the RFCs; cameras also use `:`, `/`,
/// `=` and others, so anything visible except the list and parameter delimiters passes.
fn is_session_id_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"')
}

impl TypedHeader for Session {
    const NAME: &'static str = "Session";

    fn parse_value(value: &str) -> Result<Self, HeaderError> {
        let span = syntax::start_nonempty(Self::NAME, value, "a session identifier")?;
        let parts = syntax::split_list(
            Self::NAME,
            span,
            b';',
            syntax::MAX_PARAMS,
            Nesting::Quotes,
            "session parameters",
        )?;
        let mut parts = parts.into_iter();
        let id = parts
            .next()
            .ok_or_else(|| syntax::err(Self::NAME, span.offset, "missing session identifier"))?;
        if id.offset != span.offset {
            return Err(syntax::err(
                Self::NAME,
                span.offset,
                "missing session identifier",
            ));
        }
        if let Some(at) = id.first_bad(is_session_id_byte) {
            return Err(syntax::err(
                Self::NAME,
                at,
                "invalid character in session identifier",
            ));
        }
        if id.text.len() > MAX_SESSION_ID_LEN {
            return Err(syntax::err(
                Self::NAME,
                id.offset,
                format!("session identifier is longer than {MAX_SESSION_ID_LEN} bytes"),
            ));
        }
        let mut session = Session::new(id.text);
        for part in parts {
            let (name, value) = syntax::split_param(part);
            if name.text.eq_ignore_ascii_case("timeout") {
                if session.timeout.is_some() {
                    return Err(syntax::err(Self::NAME, name.offset, "duplicate timeout"));
                }
                let v = value.ok_or_else(|| {
                    syntax::err(Self::NAME, name.end(), "timeout needs a value in seconds")
                })?;
                session.timeout = Some(syntax::parse_uint(Self::NAME, v, "timeout")?);
            } else {
                session
                    .params
                    .push(ExtensionParam::parse(Self::NAME, part)?);
            }
        }
        Ok(session)
    }

    fn to_value(&self) -> String {
        let mut out = self.id.clone();
        if let Some(t) = self.timeout {
            out.push_str(";timeout=");
            out.push_str(&t.to_string());
        }
        for p in &self.params {
            p.write_to(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_world_samples() {
        // live555 response
        let s = Session::parse_value("3C8DE1A5;timeout=65").unwrap();
        assert_eq!(s, Session::new("3C8DE1A5").with_timeout(Some(65)));
        // GStreamer gst-rtsp-server
        let s = Session::parse_value("Xp5iDnINx6dBAI0b;timeout=60").unwrap();
        assert_eq!(s.id, "Xp5iDnINx6dBAI0b");
        // ffmpeg client request: no timeout
        let s = Session::parse_value("3C8DE1A5").unwrap();
        assert_eq!(s.effective_timeout_secs(), 60);
        // sloppy spacing, case and an unknown parameter
        let s = Session::parse_value("12345678 ; Timeout = 30 ; x-foo=bar").unwrap();
        assert_eq!(s.timeout, Some(30));
        assert_eq!(s.params, vec![ExtensionParam::new("x-foo", Some("bar"))]);
        assert_eq!(s.to_value(), "12345678;timeout=30;x-foo=bar");
    }

    #[test]
    fn rejects_malformed_with_offsets() {
        assert_eq!(Session::parse_value("").unwrap_err().offset, 0);
        assert_eq!(Session::parse_value(";timeout=5").unwrap_err().offset, 0);
        assert_eq!(Session::parse_value("ab cd").unwrap_err().offset, 2);
        assert_eq!(
            Session::parse_value("abc;timeout=x").unwrap_err().offset,
            12
        );
        assert_eq!(Session::parse_value("abc;timeout").unwrap_err().offset, 11);
        assert_eq!(
            Session::parse_value("abc;timeout=1;timeout=2")
                .unwrap_err()
                .offset,
            14
        );
        assert_eq!(Session::parse_value("a, b").unwrap_err().offset, 1);
        let long = "a".repeat(257);
        assert_eq!(Session::parse_value(&long).unwrap_err().offset, 0);
    }

    #[test]
    fn round_trips() {
        for v in [
            "a",
            "a;timeout=0",
            "a$b-c_d.e+f;timeout=18446744073709551615;x=\"q;r\"",
        ] {
            let s = Session::parse_value(v).unwrap();
            assert_eq!(s.to_value(), v);
            assert_eq!(Session::parse_value(&s.to_value()), Ok(s));
        }
    }
}
