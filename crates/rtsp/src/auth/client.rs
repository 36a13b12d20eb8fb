//! Client side: answer a 401's challenges and keep answering following requests.
//!
//! Picks the strongest challenge it can answer (Digest SHA-256, then Digest MD5, each
//! preferring `qop=auth` over the RFC 2069 form, then Basic; unknown schemes and
//! algorithms are skipped), then produces an `Authorization` value per request,
//! incrementing `nc` (RFC 7616 §3.4). A later 401 with `stale=true` switches to the new
//! nonce silently; any other 401 after we answered means the password was wrong
//! ([`ClientAuthError::CredentialsRejected`]).
//!
//! RTSP quirk (RFC 2326 §12.5): the Digest `uri` must be the request URI exactly as
//! written on the request line, usually absolute; pass that string.
//!
//! [`AcceptedSchemes`] narrows the choice: a client told to use Digest only never sends
//! the password as Basic, whatever the server offers (a server, or a man in the middle,
//! that offers only Basic gets [`ClientAuthError::NoSupportedChallenge`]).
//!
//! What it does not: generate `cnonce` (sans-IO: the caller passes fresh randomness),
//! `-sess` algorithms, `auth-int`, `userhash`, or verify `Authentication-Info`.

use super::basic::basic_credentials;
use super::digest::{
    digest_ha1, digest_response, Algorithm, DigestChallenge, DigestResponse, Qop, QopAuth,
};
use super::syntax::{
    parse_challenges, AuthSyntaxError, Challenge, InvalidAuthValue, MAX_CHALLENGES,
};

/// Why the client cannot (or should not) answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    /// Every challenge names a scheme or variant we do not implement.
    #[error("the server offers no authentication we support (it offered: {offered})")]
    NoSupportedChallenge {
        /// The schemes seen, comma-separated, for the log.
        offered: String,
    },
    /// No `WWW-Authenticate` value could be parsed.
    #[error("cannot read the server's challenge: {0}")]
    Syntax(AuthSyntaxError),
    /// The server refused our credentials; call [`ClientAuth::set_credentials`] with new
    /// ones before retrying.
    #[error("the server rejected the user name or password for realm `{realm}`")]
    CredentialsRejected {
        /// The realm of the refusing challenge.
        realm: String,
    },
    /// The user name, URI or cnonce cannot be written into a header.
    #[error(transparent)]
    InvalidValue(#[from] InvalidAuthValue),
    /// `qop=auth` needs a client nonce.
    #[error("an empty cnonce was supplied; pass fresh random text for each request")]
    EmptyCnonce,
    /// 2^32 - 1 requests on one nonce.
    #[error("the nonce count is exhausted; the server must issue a new nonce")]
    NonceCountExhausted,
}

/// Which schemes a client may answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptedSchemes {
    /// The strongest the server offers (Digest SHA-256, Digest MD5, then Basic).
    #[default]
    Any,
    /// Basic only.
    BasicOnly,
    /// Digest only: the password never leaves in a form that can be read back.
    DigestOnly,
}

/// Which scheme the client settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChosenScheme {
    /// RFC 7617 Basic.
    Basic,
    /// RFC 7616 Digest.
    Digest {
        /// Hash algorithm.
        algorithm: Algorithm,
        /// `true` for `qop=auth`, `false` for the RFC 2069 form.
        qop_auth: bool,
    },
}

#[derive(Clone)]
enum Session {
    Basic {
        realm: String,
    },
    Digest {
        challenge: DigestChallenge,
        qop_auth: bool,
        ha1: String,
        nc: u32,
    },
}

impl Session {
    fn realm(&self) -> &str {
        match self {
            Session::Basic { realm } => realm,
            Session::Digest { challenge, .. } => &challenge.realm,
        }
    }

    fn scheme(&self) -> ChosenScheme {
        match self {
            Session::Basic { .. } => ChosenScheme::Basic,
            Session::Digest {
                challenge,
                qop_auth,
                ..
            } => ChosenScheme::Digest {
                algorithm: challenge.effective_algorithm(),
                qop_auth: *qop_auth,
            },
        }
    }
}

/// Authentication state of one client towards one server.
#[derive(Clone)]
pub struct ClientAuth {
    username: String,
    password: String,
    session: Option<Session>,
    /// An `Authorization` was produced for the current challenge.
    answered: bool,
    /// The server refused these credentials; do not send them again.
    rejected: bool,
    accepted: AcceptedSchemes,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("username", &self.username)
            .field("scheme", &self.scheme())
            .field("answered", &self.answered)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

/// Ranking of a usable challenge: (scheme strength, uses qop).
type Rank = (u8, bool);

fn usable(
    challenge: &Challenge,
    username: &str,
    accepted: AcceptedSchemes,
) -> Option<(Rank, Session)> {
    if challenge.is_scheme("Basic") {
        if username.contains(':') || accepted == AcceptedSchemes::DigestOnly {
            return None;
        }
        let realm = challenge.param("realm").unwrap_or("").to_owned();
        return Some(((1, false), Session::Basic { realm }));
    }
    if accepted == AcceptedSchemes::BasicOnly {
        return None;
    }
    let digest = DigestChallenge::from_challenge(challenge).ok()?;
    let qop_auth = match digest.qop {
        None => false,
        Some(q) if q.auth => true,
        // Only auth-int or unknown options: we cannot compute those.
        Some(_) => return None,
    };
    let strength = match digest.effective_algorithm() {
        Algorithm::Sha256 => 3,
        Algorithm::Md5 => 2,
    };
    Some((
        (strength, qop_auth),
        Session::Digest {
            challenge: digest,
            qop_auth,
            ha1: String::new(),
            nc: 0,
        },
    ))
}

fn describe(challenge: &Challenge) -> String {
    match challenge.param("algorithm") {
        Some(a) if challenge.is_scheme("Digest") => format!("Digest {a}"),
        _ => challenge.scheme().to_owned(),
    }
}

impl ClientAuth {
    /// A client that will answer challenges with these credentials.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            session: None,
            answered: false,
            rejected: false,
            accepted: AcceptedSchemes::Any,
        }
    }

    /// Answers only with `accepted` schemes; challenges of other schemes are treated
    /// as unsupported.
    pub fn with_accepted(mut self, accepted: AcceptedSchemes) -> Self {
        self.accepted = accepted;
        self
    }

    /// Replaces the credentials (e.g. after asking the user again) and clears a
    /// rejection, keeping the last challenge so the next request can be answered.
    pub fn set_credentials(&mut self, username: impl Into<String>, password: impl Into<String>) {
        self.username = username.into();
        self.password = password.into();
        self.rejected = false;
        self.answered = false;
        if let Some(Session::Digest { challenge, ha1, .. }) = &mut self.session {
            *ha1 = digest_ha1(
                challenge.effective_algorithm(),
                &self.username,
                &challenge.realm,
                &self.password,
            );
        }
    }

    /// Forgets the challenge (keeps the credentials): the next request goes out without
    /// `Authorization` and the next 401 starts afresh.
    pub fn reset(&mut self) {
        self.session = None;
        self.answered = false;
        self.rejected = false;
    }

    /// The scheme in use, once a challenge was accepted.
    pub fn scheme(&self) -> Option<ChosenScheme> {
        self.session.as_ref().map(Session::scheme)
    }

    /// Takes the `WWW-Authenticate` values of a 401 and picks a challenge. `Ok` means:
    /// resend the request with [`Self::authorization`].
    ///
    /// Malformed values are skipped as long as another value holds a usable challenge.
    pub fn handle_challenge(
        &mut self,
        www_authenticate: &[&str],
    ) -> Result<ChosenScheme, ClientAuthError> {
        let mut challenges = Vec::new();
        let mut first_error = None;
        for (i, value) in www_authenticate.iter().enumerate().take(MAX_CHALLENGES) {
            match parse_challenges(&[value]) {
                Ok(list) => challenges.extend(list),
                Err(mut e) => {
                    e.value_index = i;
                    first_error.get_or_insert(e);
                }
            }
        }
        challenges.truncate(MAX_CHALLENGES);
        let mut best: Option<(Rank, Session)> = None;
        for c in &challenges {
            if let Some((rank, session)) = usable(c, &self.username, self.accepted) {
                if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                    best = Some((rank, session));
                }
            }
        }
        let Some((_, mut session)) = best else {
            return Err(match (first_error, challenges.is_empty()) {
                (Some(e), true) => ClientAuthError::Syntax(e),
                _ => ClientAuthError::NoSupportedChallenge {
                    offered: if challenges.is_empty() {
                        "nothing".to_owned()
                    } else {
                        challenges
                            .iter()
                            .map(describe)
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                },
            });
        };
        if let Session::Digest { challenge, ha1, .. } = &mut session {
            *ha1 = digest_ha1(
                challenge.effective_algorithm(),
                &self.username,
                &challenge.realm,
                &self.password,
            );
        }
        let stale = matches!(&session, Session::Digest { challenge, .. } if challenge.stale);
        let scheme = session.scheme();
        let realm = session.realm().to_owned();
        // Sticky until new credentials arrive, so an engine that retries blindly does
        // not alternate between "retry" and "rejected" with the same wrong password.
        let rejected = self.rejected || (self.answered && !stale);
        self.session = Some(session);
        self.answered = false;
        self.rejected = rejected;
        if rejected {
            return Err(ClientAuthError::CredentialsRejected { realm });
        }
        Ok(scheme)
    }

    /// The `Authorization` value for a request, or `None` before any challenge.
    /// `request_uri` is the URI exactly as on the request line; `cnonce` is fresh random
    /// text (only used with `qop=auth`).
    pub fn authorization(
        &mut self,
        method: &str,
        request_uri: &str,
        cnonce: &str,
    ) -> Result<Option<String>, ClientAuthError> {
        let Some(session) = &mut self.session else {
            return Ok(None);
        };
        if self.rejected {
            return Err(ClientAuthError::CredentialsRejected {
                realm: session.realm().to_owned(),
            });
        }
        let value = match session {
            Session::Basic { .. } => basic_credentials(&self.username, &self.password)?.to_string(),
            Session::Digest {
                challenge,
                qop_auth,
                ha1,
                nc,
            } => {
                let (next_nc, nc_text) = if *qop_auth {
                    if cnonce.is_empty() {
                        return Err(ClientAuthError::EmptyCnonce);
                    }
                    let next = nc
                        .checked_add(1)
                        .ok_or(ClientAuthError::NonceCountExhausted)?;
                    (next, Some(format!("{next:08x}")))
                } else {
                    (*nc, None)
                };
                let algorithm = challenge.effective_algorithm();
                let qop = nc_text.as_deref().map(|nc| QopAuth { nc, cnonce });
                let response =
                    digest_response(algorithm, ha1, &challenge.nonce, qop, method, request_uri);
                let value = DigestResponse {
                    username: self.username.clone(),
                    realm: challenge.realm.clone(),
                    nonce: challenge.nonce.clone(),
                    uri: request_uri.to_owned(),
                    response,
                    // Echo the server's spelling: some servers choke on an algorithm
                    // parameter they did not send.
                    algorithm: challenge.algorithm,
                    cnonce: nc_text.as_ref().map(|_| cnonce.to_owned()),
                    opaque: challenge.opaque.clone(),
                    qop: nc_text.as_ref().map(|_| Qop::Auth),
                    nc: nc_text,
                }
                .to_credentials()?
                .to_string();
                *nc = next_nc;
                value
            }
        };
        self.answered = true;
        Ok(Some(value))
    }

    /// [`Self::handle_challenge`] then [`Self::authorization`]: the value to resend the
    /// refused request with.
    pub fn respond(
        &mut self,
        www_authenticate: &[&str],
        method: &str,
        request_uri: &str,
        cnonce: &str,
    ) -> Result<String, ClientAuthError> {
        self.handle_challenge(www_authenticate)?;
        match self.authorization(method, request_uri, cnonce)? {
            Some(v) => Ok(v),
            // handle_challenge succeeded, so a session exists; report it as unsupported
            // rather than panic if that ever changes.
            None => Err(ClientAuthError::NoSupportedChallenge {
                offered: "nothing".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::syntax::parse_credentials;
    use super::*;

    fn params(value: &str) -> DigestResponse {
        DigestResponse::from_credentials(&parse_credentials(value).unwrap()).unwrap()
    }

    #[test]
    fn no_authorization_before_a_challenge() {
        let mut c = ClientAuth::new("u", "p");
        assert_eq!(c.authorization("OPTIONS", "*", "x"), Ok(None));
        assert_eq!(c.scheme(), None);
    }

    #[test]
    fn picks_the_strongest_supported_challenge() {
        let pick = |values: &[&str]| ClientAuth::new("u", "p").handle_challenge(values);
        let md5 = r#"Digest realm="r", nonce="n", algorithm=MD5, qop="auth""#;
        let sha = r#"Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth""#;
        let legacy = r#"Digest realm="r", nonce="n""#;
        let basic = r#"Basic realm="r""#;
        let digest = |algorithm, qop_auth| {
            Ok(ChosenScheme::Digest {
                algorithm,
                qop_auth,
            })
        };
        assert_eq!(pick(&[basic, md5, sha]), digest(Algorithm::Sha256, true));
        assert_eq!(pick(&[basic, md5]), digest(Algorithm::Md5, true));
        assert_eq!(pick(&[legacy, md5]), digest(Algorithm::Md5, true));
        assert_eq!(pick(&[legacy, basic]), digest(Algorithm::Md5, false));
        assert_eq!(pick(&[basic]), Ok(ChosenScheme::Basic));
        assert_eq!(
            pick(&[
                r#"Negotiate, Digest realm="r", nonce="n", algorithm=SHA-512-256, Basic realm="r""#
            ]),
            Ok(ChosenScheme::Basic)
        );
        assert_eq!(
            pick(&[
                r#"Digest realm="r", nonce="n", qop="auth-int""#,
                "Negotiate"
            ]),
            Err(ClientAuthError::NoSupportedChallenge {
                offered: "Digest, Negotiate".into()
            })
        );
        assert_eq!(
            pick(&["Digest realm=\"r"]),
            Err(ClientAuthError::Syntax(AuthSyntaxError {
                value_index: 0,
                offset: 15,
                kind: super::super::syntax::SyntaxErrorKind::UnterminatedQuotedString
            }))
        );
        // A malformed value does not hide a good one.
        assert_eq!(
            pick(&["Digest realm=\"r", md5]),
            digest(Algorithm::Md5, true)
        );
        // Basic cannot carry a user name with ':'.
        assert!(ClientAuth::new("a:b", "p")
            .handle_challenge(&[basic])
            .is_err());
    }

    #[test]
    fn nonce_count_increments_and_uri_is_passed_verbatim() {
        let mut c = ClientAuth::new("u", "p");
        c.handle_challenge(&[r#"Digest realm="r", nonce="n", qop="auth", opaque="o""#])
            .unwrap();
        let uri = "rtsp://cam:554/live?x=1";
        let first = params(&c.authorization("DESCRIBE", uri, "c1").unwrap().unwrap());
        let second = params(&c.authorization("SETUP", uri, "c2").unwrap().unwrap());
        assert_eq!(first.nc.as_deref(), Some("00000001"));
        assert_eq!(second.nc.as_deref(), Some("00000002"));
        assert_eq!(second.cnonce.as_deref(), Some("c2"));
        assert_eq!(second.uri, uri);
        assert_eq!(second.opaque.as_deref(), Some("o"));
        assert_eq!(
            second.algorithm, None,
            "absent in the challenge, so not sent"
        );
        let ha1 = digest_ha1(Algorithm::Md5, "u", "r", "p");
        let expected = digest_response(
            Algorithm::Md5,
            &ha1,
            "n",
            Some(QopAuth {
                nc: "00000002",
                cnonce: "c2",
            }),
            "SETUP",
            uri,
        );
        assert_eq!(second.response, expected);
        assert_eq!(
            c.authorization("PLAY", uri, ""),
            Err(ClientAuthError::EmptyCnonce)
        );
    }

    #[test]
    fn legacy_digest_has_no_qop_fields() {
        let mut c = ClientAuth::new("u", "p");
        let v = c
            .respond(
                &[r#"Digest realm="r", nonce="n""#],
                "DESCRIBE",
                "rtsp://h/s",
                "ignored",
            )
            .unwrap();
        let ha1 = digest_ha1(Algorithm::Md5, "u", "r", "p");
        let response = digest_response(Algorithm::Md5, &ha1, "n", None, "DESCRIBE", "rtsp://h/s");
        assert_eq!(
            v,
            format!(
                r#"Digest username="u", realm="r", nonce="n", uri="rtsp://h/s", response="{response}""#
            )
        );
    }

    #[test]
    fn stale_retries_silently_and_other_401s_reject() {
        let mut c = ClientAuth::new("u", "p");
        c.handle_challenge(&[r#"Digest realm="r", nonce="n1", qop="auth""#])
            .unwrap();
        c.authorization("DESCRIBE", "/", "c").unwrap();
        c.authorization("SETUP", "/", "c").unwrap();
        // stale=true: new nonce, nc restarts, no new password needed.
        c.handle_challenge(&[r#"Digest realm="r", nonce="n2", qop="auth", stale="TRUE""#])
            .unwrap();
        let r = params(&c.authorization("PLAY", "/", "c").unwrap().unwrap());
        assert_eq!(
            (r.nonce.as_str(), r.nc.as_deref()),
            ("n2", Some("00000001"))
        );
        // A plain 401 after answering: the password is wrong.
        assert_eq!(
            c.handle_challenge(&[r#"Digest realm="r", nonce="n3", qop="auth", stale=FALSE"#]),
            Err(ClientAuthError::CredentialsRejected { realm: "r".into() })
        );
        assert_eq!(
            c.authorization("PLAY", "/", "c"),
            Err(ClientAuthError::CredentialsRejected { realm: "r".into() })
        );
        assert_eq!(
            c.handle_challenge(&[r#"Digest realm="r", nonce="n3", qop="auth""#]),
            Err(ClientAuthError::CredentialsRejected { realm: "r".into() }),
            "stays rejected until the credentials change"
        );
        c.set_credentials("u", "better");
        let r = params(&c.authorization("PLAY", "/", "c").unwrap().unwrap());
        assert_eq!(r.nonce, "n3");
        let ha1 = digest_ha1(Algorithm::Md5, "u", "r", "better");
        let expected = digest_response(
            Algorithm::Md5,
            &ha1,
            "n3",
            Some(QopAuth {
                nc: "00000001",
                cnonce: "c",
            }),
            "PLAY",
            "/",
        );
        assert_eq!(r.response, expected);
        c.reset();
        assert_eq!(c.authorization("PLAY", "/", "c"), Ok(None));
    }

    #[test]
    fn basic_answer_and_refused_values() {
        let mut c = ClientAuth::new("Aladdin", "open sesame");
        assert_eq!(
            c.respond(&[r#"Basic realm="WallyWorld""#], "DESCRIBE", "/", "x"),
            Ok("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into())
        );
        let mut c = ClientAuth::new("u\r\nX: y", "p");
        assert!(matches!(
            c.respond(&[r#"Digest realm="r", nonce="n""#], "DESCRIBE", "/", "x"),
            Err(ClientAuthError::InvalidValue(_))
        ));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let c = ClientAuth::new("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
