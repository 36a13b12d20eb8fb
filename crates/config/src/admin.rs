//! `[admin]`: where the management HTTP API listens and who may use it.
//!
//! What it does: declares the API's listen addresses (on by default, loopback only:
//! `["127.0.0.1:9554"]`; an empty list turns the API off), its bearer token, given
//! inline (`token`) or in a file (`token_file`, read when the process starts, so the
//! secret need not sit in the config), and TLS: a server certificate and key in PEM
//! (`tls_cert`, `tls_key`) and, for mutual TLS, the CA that client certificates must
//! chain to (`client_ca`). [`AdminToken`] checks the token's form while the file is
//! parsed and never shows it in `Debug` output.
//!
//! What it does not: read the files (the binary does at start and refuses to start when
//! it cannot), or bind anything. The cross-field rules (certificate and key together, a
//! client CA only with TLS, a non-loopback address only with a token or client
//! certificates) are in `validate`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::located::Located;
use super::net::BindAddr;
use super::value_error::{check_len, InvalidValue};

/// The API's address when the config names none.
pub const ADMIN_DEFAULT_LISTEN: &str = "127.0.0.1:9554";

/// Shortest token accepted: a guessable token on a network-facing API is worse than
/// none, because it looks like protection.
pub const ADMIN_TOKEN_MIN_LEN: usize = 16;

/// `[admin]`: the management HTTP API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// TCP addresses of the API. Empty: off. Default: `["127.0.0.1:9554"]`; when this
    /// default is taken by another process, mediagate logs it and runs without the API,
    /// whereas an address written in the file that cannot be bound stops the start.
    pub listen: Located<Vec<BindAddr>>,
    /// The bearer token every request must carry (`Authorization: Bearer TOKEN`).
    /// Without a token, only loopback peers are served. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Located<AdminToken>>,
    /// A file holding the token (surrounding whitespace ignored), read at start.
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<Located<PathBuf>>,
    /// The API's TLS certificate chain, PEM, server certificate first: with
    /// `tls_key`, the API speaks HTTPS only. Default: none (plain HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<Located<PathBuf>>,
    /// The private key of `tls_cert`, PEM (PKCS#8, PKCS#1 or SEC1). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<Located<PathBuf>>,
    /// Mutual TLS: a PEM file of CA certificates; every client must present a
    /// certificate that chains to one of them. Needs `tls_cert`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<Located<PathBuf>>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: Located::new(vec![ADMIN_DEFAULT_LISTEN
                .parse()
                .expect("the default admin address parses")]),
            token: None,
            token_file: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
        }
    }
}

impl AdminConfig {
    /// True when `listen` is the built-in default (not written in a file or on the
    /// command line), so a busy address is logged rather than an error.
    pub fn listen_is_default(&self) -> bool {
        self.listen.span().is_none() && *self.listen == *Self::default().listen
    }

    /// True when a token is configured, inline or as a file.
    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
    }

    /// True when clients must authenticate somehow: a token or client certificates.
    pub fn authenticates_clients(&self) -> bool {
        self.has_token() || self.client_ca.is_some()
    }
}

/// A bearer token: printable ASCII without spaces (it travels in an HTTP header), at
/// least [`ADMIN_TOKEN_MIN_LEN`] characters.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The secret, for comparing with a request's.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl fmt::Display for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display feeds serialisation, which must give back the same config.
        f.write_str(&self.0)
    }
}

impl FromStr for AdminToken {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "the admin token")?;
        if let Some(bad) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(InvalidValue::new(format!(
                "the admin token contains {bad:?}; use printable ASCII without spaces (it is sent in an HTTP header), for example the output of `openssl rand -hex 32`"
            )));
        }
        if s.len() < ADMIN_TOKEN_MIN_LEN {
            return Err(InvalidValue::new(format!(
                "the admin token is {} characters long; use at least {ADMIN_TOKEN_MIN_LEN}, for example the output of `openssl rand -hex 32`",
                s.len()
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

string_value_serde!(AdminToken, "a token of printable ASCII characters");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t: AdminToken = "0123456789abcdef".parse().unwrap();
        assert_eq!(t.expose(), "0123456789abcdef");
        assert_eq!(format!("{t:?}"), "AdminToken(***)");
        let e = |s: &str| s.parse::<AdminToken>().unwrap_err().to_string();
        assert!(
            e("short").contains("is 5 characters long"),
            "{}",
            e("short")
        );
        assert!(e("0123456789 abcdef").contains("contains ' '"));
        assert!(e("0123456789abcdef\u{e9}").contains("printable ASCII"));
    }

    #[test]
    fn the_default_listen_is_recognised() {
        let mut c = AdminConfig::default();
        assert!(c.listen_is_default());
        c.listen = Located::new(vec!["127.0.0.1:9555".parse().unwrap()]);
        assert!(!c.listen_is_default());
        assert!(!c.has_token());
    }
}
