//! RTSP authentication, client and server side: Basic (RFC 7617) and Digest
//! (RFC 7616 with MD5 and SHA-256 and `qop=auth`, plus the RFC 2069 form without `qop`
//! that gst-rtsp-server, live555 and many cameras use). RTSP reuses HTTP authentication
//! unchanged (RFC 2326 §12.5, RFC 7826 §19.1), except that the Digest `uri` is the RTSP
//! request URI as sent.
//!
//! * [`parse_challenges`], [`parse_credentials`], [`format_challenges`]: parse and
//!   serialise `WWW-Authenticate` / `Authorization` values (RFC 7235 §2.1), bounded and
//!   total, errors with byte offsets.
//! * [`DigestChallenge`], [`DigestResponse`], [`digest_response`] and [`parse_basic`]:
//!   typed views and the hash computations.
//! * [`ClientAuth`]: answers challenges and keeps `nc`/nonce state across requests.
//! * [`Authenticator`]: issues challenges with stateless nonces and verifies credentials
//!   against a lookup, giving a [`Verdict`].
//!
//! What it does not: I/O, clocks or randomness (callers pass `now` and `cnonce`),
//! `-sess` algorithms, `auth-int`, `userhash`, nonce replay tracking, or TLS.
//!
//! ```
//! use mediagate_rtsp::auth::{Authenticator, AuthenticatorConfig, ClientAuth, Secret, Verdict};
//!
//! let server = Authenticator::new(AuthenticatorConfig::new("cams", *b"0123456789abcdef")).unwrap();
//! let now = 1_700_000_000;
//! let challenges = server.challenge_values(now, false);
//! let challenges: Vec<&str> = challenges.iter().map(String::as_str).collect();
//!
//! let mut client = ClientAuth::new("alice", "secret");
//! let uri = "rtsp://cam.example/live";
//! let authorization = client.respond(&challenges, "DESCRIBE", uri, "k3jd8vq").unwrap();
//!
//! let verdict = server.verify(Some(&authorization), "DESCRIBE", uri, now + 1, |user| {
//!     (user == "alice").then(|| Secret::Password("secret".into()))
//! });
//! assert_eq!(verdict, Verdict::Ok("alice".into()));
//! ```

mod basic;
mod client;
mod digest;
mod nonce;
mod server;
mod syntax;
mod uri_match;

#[cfg(test)]
mod tests;

pub use basic::{basic_credentials, parse_basic, BasicError};
pub use client::{AcceptedSchemes, ChosenScheme, ClientAuth, ClientAuthError};
pub use digest::{
    digest_ha1, digest_response, Algorithm, DigestChallenge, DigestError, DigestResponse, Qop,
    QopAuth, QopOptions,
};
pub use server::{
    AuthConfigError, Authenticator, AuthenticatorConfig, DenyReason, QopPolicy, Secret, Verdict,
};
pub use syntax::{
    format_challenges, parse_challenges, parse_credentials, AuthData, AuthParam, AuthSyntaxError,
    Challenge, Credentials, InvalidAuthValue, SyntaxErrorKind, MAX_CHALLENGES, MAX_PARAMS,
    MAX_PARAM_VALUE_LEN, MAX_TOKEN_LEN, MAX_VALUE_LEN,
};
