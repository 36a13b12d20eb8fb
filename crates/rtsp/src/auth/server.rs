//! Server side: produce `WWW-Authenticate` challenges and verify `Authorization` values
//! against a credential lookup, with stateless nonces.
//!
//! Implements the server duties of RFC 7616 §3.3-§3.5 (challenge, verifying `response`,
//! `stale=true` for an expired nonce with a correct digest, checking `uri` against the
//! request per §3.4.6) and of RFC 7617 (Basic), as RTSP uses them (RFC 2326 §12.5,
//! RFC 7826 §19.1). Digests and passwords are compared in constant time.
//!
//! What it does not: remember nonces or nonce counts (so a response can be replayed
//! until its nonce expires: keep [`AuthenticatorConfig::nonce_lifetime_secs`] short),
//! `-sess` algorithms, `auth-int`, rate limiting, or read a clock (pass `now`). Proxy
//! authentication (407) uses the same values under the `Proxy-` header names.

use sha2::{Digest, Sha256};

use super::basic::parse_basic;
use super::digest::{digest_ha1, digest_response, Algorithm, DigestResponse, Qop};
use super::nonce::{constant_time_eq, NonceKey};
use super::syntax::{parse_credentials, AuthData, AuthParam, Challenge, MAX_PARAM_VALUE_LEN};
use super::uri_match::same_resource;

/// Which `qop` forms the server offers and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QopPolicy {
    /// Offer `qop="auth"` and require it.
    Auth,
    /// Offer `qop="auth"` but also accept the RFC 2069 form without `qop`, which
    /// live555-based and other older RTSP clients send regardless of the offer.
    #[default]
    AuthOrLegacy,
    /// Offer no `qop` (as gst-rtsp-server does) and accept only the RFC 2069 form.
    Legacy,
}

/// Server authentication settings.
#[derive(Clone)]
pub struct AuthenticatorConfig {
    /// Protection space shown to users; part of every `HA1`.
    pub realm: String,
    /// Digest algorithms to offer, strongest first (RFC 7616 §3.7); may be empty when
    /// only Basic is wanted.
    pub algorithms: Vec<Algorithm>,
    /// `qop` handling.
    pub qop: QopPolicy,
    /// Offer and accept Basic. Off by default: it sends the password in the clear.
    pub allow_basic: bool,
    /// Key for nonces, at least 16 bytes of secret randomness; servers that share it
    /// accept each other's nonces.
    pub secret: Vec<u8>,
    /// How long a nonce is accepted before the client is asked to retry with a fresh
    /// one (`stale=true`).
    pub nonce_lifetime_secs: u64,
}

impl std::fmt::Debug for AuthenticatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatorConfig")
            .field("realm", &self.realm)
            .field("algorithms", &self.algorithms)
            .field("qop", &self.qop)
            .field("allow_basic", &self.allow_basic)
            .field("secret", &"<redacted>")
            .field("nonce_lifetime_secs", &self.nonce_lifetime_secs)
            .finish()
    }
}

impl AuthenticatorConfig {
    /// Digest with SHA-256 and MD5, `qop` optional, no Basic, 5-minute nonces.
    pub fn new(realm: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            realm: realm.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            qop: QopPolicy::default(),
            allow_basic: false,
            secret: secret.into(),
            nonce_lifetime_secs: 300,
        }
    }
}

/// A configuration the authenticator refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// The realm cannot be written into a header.
    #[error("auth realm is not usable: it must be 1 to 2048 bytes without control characters")]
    InvalidRealm,
    /// The secret is too short to resist guessing.
    #[error("auth secret is {0} bytes; use at least 16 random bytes")]
    ShortSecret(usize),
    /// Neither Digest nor Basic is enabled, so nobody could log in.
    #[error("auth offers no scheme: list at least one Digest algorithm or allow Basic")]
    NoScheme,
    /// The same algorithm is listed twice.
    #[error("auth algorithm {0} is listed twice")]
    DuplicateAlgorithm(&'static str),
    /// Nonces would expire at once.
    #[error("auth nonce lifetime must be at least 1 second")]
    ZeroLifetime,
}

/// What the server knows about a user.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The plain password.
    Password(String),
    /// Precomputed `HA1 = H(user:realm:password)` per algorithm, lowercase hex (see
    /// [`digest_ha1`]). Basic logins are checked by hashing the offered password.
    Ha1 {
        /// `HA1` with MD5.
        md5: Option<String>,
        /// `HA1` with SHA-256.
        sha256: Option<String>,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a request was refused; answer with 401 and fresh challenges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DenyReason {
    /// No `Authorization` header.
    #[error("no credentials were sent")]
    NoCredentials,
    /// The header could not be parsed.
    #[error("credentials are malformed: {0}")]
    Malformed(String),
    /// A scheme we do not offer.
    #[error("authentication scheme `{0}` is not offered")]
    SchemeNotOffered(String),
    /// The response is for another realm.
    #[error("credentials are for realm `{0}`, not ours")]
    WrongRealm(String),
    /// A Digest algorithm we did not offer.
    #[error("Digest algorithm {0} was not offered")]
    AlgorithmNotOffered(&'static str),
    /// A `qop` form we did not offer (including its absence under [`QopPolicy::Auth`]).
    #[error("Digest qop `{0}` was not offered")]
    QopNotOffered(&'static str),
    /// The digest was computed for a different resource than the request's.
    #[error("Digest uri `{digest_uri}` does not match the request URI `{request_uri}`")]
    UriMismatch {
        /// The `uri` field.
        digest_uri: String,
        /// The request line's URI.
        request_uri: String,
    },
    /// The nonce was not issued by us for this realm (forged, altered or from another
    /// server secret).
    #[error("the nonce was not issued by this server")]
    InvalidNonce,
    /// The lookup does not know the user.
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// The user exists but has no `HA1` for the algorithm used.
    #[error("user `{0}` has no credential for Digest {1}")]
    NoSecretForAlgorithm(String, &'static str),
    /// The password or digest is wrong.
    #[error("wrong password for user `{0}`")]
    WrongPassword(String),
}

/// Outcome of [`Authenticator::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this user.
    Ok(String),
    /// The digest was right but the nonce expired: re-challenge with
    /// `challenges(now, true)` so the client retries without asking its user.
    Stale,
    /// Refused: re-challenge with `challenges(now, false)`.
    Denied(DenyReason),
}

/// Clock skew tolerated between servers sharing a secret, for nonces from the future.
const MAX_FUTURE_SKEW_SECS: u64 = 60;

/// Challenge producer and credential verifier for one realm.
#[derive(Debug, Clone)]
pub struct Authenticator {
    config: AuthenticatorConfig,
    nonces: NonceKey,
}

impl Authenticator {
    /// Checks the configuration.
    pub fn new(config: AuthenticatorConfig) -> Result<Self, AuthConfigError> {
        if config.realm.is_empty()
            || config.realm.len() > MAX_PARAM_VALUE_LEN
            || AuthParam::quoted("realm", &config.realm).is_err()
        {
            return Err(AuthConfigError::InvalidRealm);
        }
        if config.secret.len() < 16 {
            return Err(AuthConfigError::ShortSecret(config.secret.len()));
        }
        if config.algorithms.is_empty() && !config.allow_basic {
            return Err(AuthConfigError::NoScheme);
        }
        for (i, a) in config.algorithms.iter().enumerate() {
            if config.algorithms[..i].contains(a) {
                return Err(AuthConfigError::DuplicateAlgorithm(a.as_str()));
            }
        }
        if config.nonce_lifetime_secs == 0 {
            return Err(AuthConfigError::ZeroLifetime);
        }
        let nonces = NonceKey::new(&config.secret);
        Ok(Self { config, nonces })
    }

    /// The configuration in use.
    pub fn config(&self) -> &AuthenticatorConfig {
        &self.config
    }

    /// The challenges for a 401, one per `WWW-Authenticate` header (many RTSP clients
    /// read only one challenge per header), strongest first, Basic last.
    pub fn challenges(&self, now_unix_secs: u64, stale: bool) -> Vec<Challenge> {
        let realm = &self.config.realm;
        let nonce = self.nonces.issue(realm, now_unix_secs);
        let mut out = Vec::new();
        for a in &self.config.algorithms {
            let mut params = vec![
                AuthParam::quoted("realm", realm),
                AuthParam::quoted("nonce", &nonce),
                AuthParam::token("algorithm", a.as_str()),
            ];
            if self.config.qop != QopPolicy::Legacy {
                params.push(AuthParam::quoted("qop", "auth"));
            }
            if stale {
                params.push(AuthParam::token("stale", "true"));
            }
            // Realm was checked in `new` and the nonce is base64url, so these cannot
            // fail; collecting keeps this total without unwrap.
            if let Ok(params) = params.into_iter().collect::<Result<Vec<_>, _>>() {
                if let Ok(c) = Challenge::new("Digest", AuthData::Params(params)) {
                    out.push(c);
                }
            }
        }
        if self.config.allow_basic {
            if let Ok(realm) = AuthParam::quoted("realm", realm) {
                if let Ok(c) = Challenge::new("Basic", AuthData::Params(vec![realm])) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// [`Self::challenges`] rendered as header values.
    pub fn challenge_values(&self, now_unix_secs: u64, stale: bool) -> Vec<String> {
        self.challenges(now_unix_secs, stale)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Verifies the `Authorization` value (if any) of a request with `method` and
    /// `request_uri` (as on the request line). `lookup` maps a user name to its secret.
    pub fn verify<F>(
        &self,
        authorization: Option<&str>,
        method: &str,
        request_uri: &str,
        now_unix_secs: u64,
        lookup: F,
    ) -> Verdict
    where
        F: FnOnce(&str) -> Option<Secret>,
    {
        let Some(value) = authorization else {
            return Verdict::Denied(DenyReason::NoCredentials);
        };
        let credentials = match parse_credentials(value) {
            Ok(c) => c,
            Err(e) => return Verdict::Denied(DenyReason::Malformed(e.to_string())),
        };
        if credentials.is_scheme("Digest") && !self.config.algorithms.is_empty() {
            match DigestResponse::from_credentials(&credentials) {
                Ok(r) => self.verify_digest(&r, method, request_uri, now_unix_secs, lookup),
                Err(e) => Verdict::Denied(DenyReason::Malformed(e.to_string())),
            }
        } else if credentials.is_scheme("Basic") && self.config.allow_basic {
            match parse_basic(&credentials) {
                Ok((user, password)) => self.verify_basic(user, &password, lookup),
                Err(e) => Verdict::Denied(DenyReason::Malformed(e.to_string())),
            }
        } else {
            Verdict::Denied(DenyReason::SchemeNotOffered(
                credentials.scheme().to_owned(),
            ))
        }
    }

    fn verify_digest<F>(
        &self,
        r: &DigestResponse,
        method: &str,
        request_uri: &str,
        now: u64,
        lookup: F,
    ) -> Verdict
    where
        F: FnOnce(&str) -> Option<Secret>,
    {
        let deny = Verdict::Denied;
        if r.realm != self.config.realm {
            return deny(DenyReason::WrongRealm(r.realm.clone()));
        }
        let algorithm = r.effective_algorithm();
        if !self.config.algorithms.contains(&algorithm) {
            return deny(DenyReason::AlgorithmNotOffered(algorithm.as_str()));
        }
        let qop_ok = matches!(
            (r.qop, self.config.qop),
            (Some(Qop::Auth), QopPolicy::Auth | QopPolicy::AuthOrLegacy)
                | (None, QopPolicy::AuthOrLegacy | QopPolicy::Legacy)
        );
        if !qop_ok {
            return deny(DenyReason::QopNotOffered(
                r.qop.map_or("(none)", Qop::as_str),
            ));
        }
        if !same_resource(&r.uri, request_uri) {
            return deny(DenyReason::UriMismatch {
                digest_uri: r.uri.clone(),
                request_uri: request_uri.to_owned(),
            });
        }
        let Some(issued_at) = self.nonces.issued_at(&self.config.realm, &r.nonce) else {
            return deny(DenyReason::InvalidNonce);
        };
        let ha1 = match lookup(&r.username) {
            None => return deny(DenyReason::UnknownUser(r.username.clone())),
            Some(Secret::Password(p)) => digest_ha1(algorithm, &r.username, &r.realm, &p),
            Some(Secret::Ha1 { md5, sha256 }) => {
                let stored = match algorithm {
                    Algorithm::Md5 => md5,
                    Algorithm::Sha256 => sha256,
                };
                match stored {
                    Some(h) => h.to_ascii_lowercase(),
                    None => {
                        return deny(DenyReason::NoSecretForAlgorithm(
                            r.username.clone(),
                            algorithm.as_str(),
                        ))
                    }
                }
            }
        };
        let expected = digest_response(algorithm, &ha1, &r.nonce, r.qop_auth(), method, &r.uri);
        let got = r.response.to_ascii_lowercase();
        if !constant_time_eq(expected.as_bytes(), got.as_bytes()) {
            return deny(DenyReason::WrongPassword(r.username.clone()));
        }
        // Only after the digest checks out: RFC 7616 §3.3 sets stale=true only for a
        // correct digest with an old nonce, which lets the client retry silently.
        let too_old = now.saturating_sub(issued_at) > self.config.nonce_lifetime_secs;
        let from_future = issued_at > now.saturating_add(MAX_FUTURE_SKEW_SECS);
        if too_old || from_future {
            return Verdict::Stale;
        }
        Verdict::Ok(r.username.clone())
    }

    fn verify_basic<F>(&self, user: String, password: &str, lookup: F) -> Verdict
    where
        F: FnOnce(&str) -> Option<Secret>,
    {
        let matches = match lookup(&user) {
            None => return Verdict::Denied(DenyReason::UnknownUser(user)),
            // Hash both sides so the comparison time does not reveal the length.
            Some(Secret::Password(p)) => constant_time_eq(
                &Sha256::digest(p.as_bytes()),
                &Sha256::digest(password.as_bytes()),
            ),
            Some(Secret::Ha1 { md5, sha256 }) => {
                let realm = &self.config.realm;
                match (sha256, md5) {
                    (Some(h), _) => constant_time_eq(
                        h.to_ascii_lowercase().as_bytes(),
                        digest_ha1(Algorithm::Sha256, &user, realm, password).as_bytes(),
                    ),
                    (None, Some(h)) => constant_time_eq(
                        h.to_ascii_lowercase().as_bytes(),
                        digest_ha1(Algorithm::Md5, &user, realm, password).as_bytes(),
                    ),
                    (None, None) => false,
                }
            }
        };
        if matches {
            Verdict::Ok(user)
        } else {
            Verdict::Denied(DenyReason::WrongPassword(user))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123";

    fn auth(configure: impl FnOnce(&mut AuthenticatorConfig)) -> Authenticator {
        let mut c = AuthenticatorConfig::new("mediagate", SECRET);
        configure(&mut c);
        Authenticator::new(c).expect("valid config")
    }

    #[test]
    fn config_is_checked() {
        let base = AuthenticatorConfig::new("r", SECRET);
        let with = |f: &dyn Fn(&mut AuthenticatorConfig)| {
            let mut c = base.clone();
            f(&mut c);
            Authenticator::new(c).err()
        };
        assert_eq!(with(&|_| {}), None);
        assert_eq!(
            with(&|c| c.realm = String::new()),
            Some(AuthConfigError::InvalidRealm)
        );
        assert_eq!(
            with(&|c| c.realm = "a\nb".into()),
            Some(AuthConfigError::InvalidRealm)
        );
        assert_eq!(
            with(&|c| c.secret = b"short".to_vec()),
            Some(AuthConfigError::ShortSecret(5))
        );
        assert_eq!(
            with(&|c| c.algorithms.clear()),
            Some(AuthConfigError::NoScheme)
        );
        assert_eq!(
            with(&|c| {
                c.algorithms.clear();
                c.allow_basic = true;
            }),
            None
        );
        assert_eq!(
            with(&|c| c.algorithms = vec![Algorithm::Md5, Algorithm::Md5]),
            Some(AuthConfigError::DuplicateAlgorithm("MD5"))
        );
        assert_eq!(
            with(&|c| c.nonce_lifetime_secs = 0),
            Some(AuthConfigError::ZeroLifetime)
        );
        assert!(!format!("{base:?}").contains("0123456789"));
    }

    #[test]
    fn challenges_follow_the_configuration() {
        let nonce = NonceKey::new(SECRET).issue("mediagate", 1000);
        let a = auth(|c| c.allow_basic = true);
        assert_eq!(
            a.challenge_values(1000, false),
            vec![
                format!(
                    r#"Digest realm="mediagate", nonce="{nonce}", algorithm=SHA-256, qop="auth""#
                ),
                format!(r#"Digest realm="mediagate", nonce="{nonce}", algorithm=MD5, qop="auth""#),
                r#"Basic realm="mediagate""#.to_owned(),
            ]
        );
        let legacy = auth(|c| {
            c.qop = QopPolicy::Legacy;
            c.algorithms = vec![Algorithm::Md5];
        });
        assert_eq!(
            legacy.challenge_values(1000, true),
            vec![format!(
                r#"Digest realm="mediagate", nonce="{nonce}", algorithm=MD5, stale=true"#
            )]
        );
    }

    #[test]
    fn refuses_missing_malformed_and_unoffered_schemes() {
        let a = auth(|_| {});
        let v = |h: Option<&str>| a.verify(h, "DESCRIBE", "/", 0, |_| None);
        assert_eq!(v(None), Verdict::Denied(DenyReason::NoCredentials));
        assert!(matches!(
            v(Some("Digest realm=\"x")),
            Verdict::Denied(DenyReason::Malformed(_))
        ));
        assert!(matches!(
            v(Some(r#"Digest realm="mediagate""#)),
            Verdict::Denied(DenyReason::Malformed(m)) if m.contains("`username` is missing")
        ));
        assert_eq!(
            v(Some("Basic dTpw")),
            Verdict::Denied(DenyReason::SchemeNotOffered("Basic".into()))
        );
        assert_eq!(
            v(Some("Bearer abc")),
            Verdict::Denied(DenyReason::SchemeNotOffered("Bearer".into()))
        );
    }

    #[test]
    fn basic_checks_password_and_stored_ha1() {
        let a = auth(|c| c.allow_basic = true);
        // "u:p" and "u:x".
        let good = Some("Basic dTpw");
        let bad = Some("Basic dTp4");
        let password = |_: &str| Some(Secret::Password("p".into()));
        assert_eq!(
            a.verify(good, "OPTIONS", "*", 0, password),
            Verdict::Ok("u".into())
        );
        assert_eq!(
            a.verify(bad, "OPTIONS", "*", 0, password),
            Verdict::Denied(DenyReason::WrongPassword("u".into()))
        );
        let ha1 = |_: &str| {
            Some(Secret::Ha1 {
                md5: Some(digest_ha1(Algorithm::Md5, "u", "mediagate", "p").to_uppercase()),
                sha256: None,
            })
        };
        assert_eq!(
            a.verify(good, "OPTIONS", "*", 0, ha1),
            Verdict::Ok("u".into())
        );
        assert_eq!(
            a.verify(bad, "OPTIONS", "*", 0, ha1),
            Verdict::Denied(DenyReason::WrongPassword("u".into()))
        );
        assert_eq!(
            a.verify(good, "OPTIONS", "*", 0, |_| None),
            Verdict::Denied(DenyReason::UnknownUser("u".into()))
        );
        assert!(matches!(
            a.verify(Some("Basic dXNlcg=="), "OPTIONS", "*", 0, password),
            Verdict::Denied(DenyReason::Malformed(_))
        ));
    }
}
