//! Basic authentication: `base64(user ":" password)` in a token68 (RFC 7617 §2).
//!
//! Passwords are encoded as UTF-8, the only charset RFC 7617 §2.1 lets a server ask for.
//! What it does not: decide whether Basic is acceptable (it sends the password in the
//! clear; see [`super::server`]) or accept user names containing `:`, which the format
//! cannot represent (RFC 7617 §2).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::syntax::{AuthData, Credentials, InvalidAuthValue};

/// Why Basic credentials could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasicError {
    /// The scheme is not `Basic`.
    #[error("scheme `{0}` is not Basic")]
    NotBasic(String),
    /// Basic credentials are a single token68.
    #[error("Basic credentials must be one base64 token")]
    NotToken68,
    /// The token is not base64.
    #[error("Basic credentials are not valid base64")]
    Base64,
    /// The decoded bytes are not UTF-8.
    #[error("Basic credentials are not UTF-8 text")]
    NotUtf8,
    /// No `:` between user and password.
    #[error("Basic credentials lack the `:` between user name and password")]
    NoColon,
}

/// Accepts tokens with or without `=` padding, since some clients strip it.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `Basic <base64(user:password)>` credentials.
pub fn basic_credentials(username: &str, password: &str) -> Result<Credentials, InvalidAuthValue> {
    if username.contains(':') {
        return Err(InvalidAuthValue {
            what: "Basic user name".into(),
            why: "it contains `:`, which Basic cannot carry",
        });
    }
    let token = STANDARD.encode(format!("{username}:{password}"));
    Credentials::new("Basic", AuthData::Token68(token))
}

/// Decodes Basic credentials into `(user, password)`.
pub fn parse_basic(credentials: &Credentials) -> Result<(String, String), BasicError> {
    if !credentials.is_scheme("Basic") {
        return Err(BasicError::NotBasic(credentials.scheme().to_owned()));
    }
    let AuthData::Token68(token) = credentials.data() else {
        return Err(BasicError::NotToken68);
    };
    // The token length is already capped by the syntax layer, so decoding is bounded.
    let bytes = LENIENT.decode(token).map_err(|_| BasicError::Base64)?;
    let text = String::from_utf8(bytes).map_err(|_| BasicError::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(BasicError::NoColon)?;
    Ok((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::syntax::parse_credentials;
    use super::*;

    #[test]
    fn rfc7617_examples() {
        // RFC 7617 §2 and §2.1.
        assert_eq!(
            basic_credentials("Aladdin", "open sesame")
                .unwrap()
                .to_string(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(
            basic_credentials("test", "123\u{a3}").unwrap().to_string(),
            "Basic dGVzdDoxMjPCow=="
        );
        let c = parse_credentials("Basic dGVzdDoxMjPCow==").unwrap();
        assert_eq!(parse_basic(&c), Ok(("test".into(), "123\u{a3}".into())));
    }

    #[test]
    fn password_may_contain_colons_and_padding_is_optional() {
        let c = parse_credentials("basic dTpwOnE").unwrap();
        assert_eq!(parse_basic(&c), Ok(("u".into(), "p:q".into())));
    }

    #[test]
    fn rejects_malformed_basic() {
        let p = |t: &str| parse_basic(&parse_credentials(t).unwrap());
        assert_eq!(p("Digest a=b"), Err(BasicError::NotBasic("Digest".into())));
        assert_eq!(p("Basic realm=x"), Err(BasicError::NotToken68));
        assert_eq!(p("Basic a"), Err(BasicError::Base64));
        assert_eq!(p("Basic /w=="), Err(BasicError::NotUtf8));
        assert_eq!(p("Basic dXNlcg=="), Err(BasicError::NoColon));
        assert!(basic_credentials("a:b", "c").is_err());
    }
}
