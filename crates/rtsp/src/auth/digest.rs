//! Digest access authentication: typed views of the `Digest` challenge and response
//! parameters, and the hash computations shared by the client and the server.
//!
//! Implements RFC 7616 §3.3 (challenge), §3.4 (response), §3.4.1-§3.4.3 (`response`,
//! `A1`, `A2`) for the `MD5` and `SHA-256` algorithms with `qop=auth`, and the RFC 2069
//! form without `qop` (`response = H(H(A1):nonce:H(A2))`) that gst-rtsp-server, live555
//! and many cameras still use. RTSP reuses these unchanged (RFC 2326 §12.5, RFC 7826
//! §19.1), with one quirk: the `uri` field is the RTSP request URI as sent, usually
//! absolute (`rtsp://host/path`).
//!
//! What it does not: the `-sess` algorithms (their session key depends on the first
//! `cnonce`, which a stateless server cannot remember), `qop=auth-int` (needs the body),
//! `SHA-512-256`, `userhash` and RFC 8187 `username*`. Challenges using them are refused
//! with [`DigestError`] so a client can fall back to another challenge.

use md5::Md5;
use sha2::{Digest, Sha256};

use super::syntax::{AuthData, AuthParam, Challenge, Credentials, InvalidAuthValue};

/// A Digest hash algorithm supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// `MD5`, the default when a challenge names no algorithm.
    Md5,
    /// `SHA-256` (RFC 7616 §6.1).
    Sha256,
}

impl Algorithm {
    /// Parses the `algorithm` token, ignoring ASCII case (cameras send `md5`).
    pub fn from_token(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The token as RFC 7616 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lowercase hex of `H(parts joined by ':')`.
    pub fn hash_hex(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Md5 => hex_digest::<Md5>(parts),
            Algorithm::Sha256 => hex_digest::<Sha256>(parts),
        }
    }

    /// Length of a hex digest of this algorithm, in characters.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

fn hex_digest<D: Digest>(parts: &[&[u8]]) -> String {
    let mut hasher = D::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b":");
        }
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// `H(A1)` = `H(username:realm:password)` (RFC 7616 §3.4.2), in lowercase hex. Servers
/// may store this instead of the password.
pub fn digest_ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// The `qop=auth` inputs of a response: nonce count (8 hex digits, as sent) and cnonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// The `nc` value exactly as written in the header, e.g. `00000001`.
    pub nc: &'a str,
    /// The client nonce.
    pub cnonce: &'a str,
}

/// The `response` value (RFC 7616 §3.4.1) in lowercase hex.
///
/// With `qop`: `H(HA1:nonce:nc:cnonce:auth:H(method:uri))`; without (RFC 2069):
/// `H(HA1:nonce:H(method:uri))`.
pub fn digest_response(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    qop: Option<QopAuth<'_>>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hash_hex(&[method.as_bytes(), uri.as_bytes()]);
    match qop {
        Some(q) => algorithm.hash_hex(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            q.nc.as_bytes(),
            q.cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ]),
        None => algorithm.hash_hex(&[ha1.as_bytes(), nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Quality-of-protection values a response can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// `auth`: authentication only.
    Auth,
    /// `auth-int`: authentication with body integrity (recognised, not computed here).
    AuthInt,
}

impl Qop {
    /// Parses a qop token, ignoring ASCII case.
    pub fn from_token(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if token.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }

    /// The token as RFC 7616 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// The `qop` options a challenge offers; unknown options are ignored (RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QopOptions {
    /// `auth` offered.
    pub auth: bool,
    /// `auth-int` offered.
    pub auth_int: bool,
}

/// Why a challenge or credentials could not be read as Digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The scheme is not `Digest`.
    #[error("scheme `{0}` is not Digest")]
    NotDigest(String),
    /// Digest needs `name=value` parameters.
    #[error("Digest needs name=value parameters")]
    NoParams,
    /// A required parameter is missing.
    #[error("Digest parameter `{0}` is missing")]
    Missing(&'static str),
    /// The algorithm is not MD5 or SHA-256.
    #[error("Digest algorithm `{0}` is not supported (only MD5 and SHA-256)")]
    UnsupportedAlgorithm(String),
    /// The `qop` of a response is not `auth` or `auth-int`.
    #[error("Digest qop `{0}` is not supported")]
    UnsupportedQop(String),
    /// `nc` is not 8 hex digits.
    #[error("Digest nonce count `{0}` is not 8 hexadecimal digits")]
    InvalidNonceCount(String),
    /// RFC 8187 `username*` or `userhash=true`, which we do not implement.
    #[error("Digest {0} is not supported")]
    UnsupportedFeature(&'static str),
}

fn params_of(scheme: &str, is_digest: bool, data: &AuthData) -> Result<(), DigestError> {
    if !is_digest {
        return Err(DigestError::NotDigest(scheme.to_owned()));
    }
    match data {
        AuthData::Params(_) => Ok(()),
        _ => Err(DigestError::NoParams),
    }
}

fn algorithm_param(data: &AuthData) -> Result<Option<Algorithm>, DigestError> {
    match data.param("algorithm") {
        None => Ok(None),
        Some(a) => Algorithm::from_token(a)
            .map(Some)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(a.to_owned())),
    }
}

fn is_true(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A `Digest` challenge (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// Protection space; shown to users and part of `HA1`.
    pub realm: String,
    /// Server nonce, echoed in the response and hashed into it.
    pub nonce: String,
    /// Opaque server data, echoed unchanged.
    pub opaque: Option<String>,
    /// `domain` URIs, kept verbatim.
    pub domain: Option<String>,
    /// `stale=true`: the nonce expired but the credentials were right; retry silently.
    pub stale: bool,
    /// `None` when absent, which means MD5.
    pub algorithm: Option<Algorithm>,
    /// `None` when absent: the RFC 2069 form without `cnonce`/`nc`.
    pub qop: Option<QopOptions>,
    /// `charset=UTF-8` was present.
    pub charset_utf8: bool,
    /// `userhash=true` was present.
    pub userhash: bool,
}

impl DigestChallenge {
    /// A challenge for `realm` and `nonce` with nothing optional set.
    pub fn new(realm: impl Into<String>, nonce: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            nonce: nonce.into(),
            opaque: None,
            domain: None,
            stale: false,
            algorithm: None,
            qop: None,
            charset_utf8: false,
            userhash: false,
        }
    }

    /// The algorithm to use: the named one, or MD5 when none is named.
    pub fn effective_algorithm(&self) -> Algorithm {
        self.algorithm.unwrap_or(Algorithm::Md5)
    }

    /// Reads a generic challenge as Digest.
    pub fn from_challenge(challenge: &Challenge) -> Result<Self, DigestError> {
        let data = challenge.data();
        params_of(challenge.scheme(), challenge.is_scheme("Digest"), data)?;
        let qop = data.param("qop").map(|list| {
            let mut q = QopOptions::default();
            for option in list.split(',').map(str::trim) {
                match Qop::from_token(option) {
                    Some(Qop::Auth) => q.auth = true,
                    Some(Qop::AuthInt) => q.auth_int = true,
                    None => {}
                }
            }
            q
        });
        Ok(Self {
            realm: data
                .param("realm")
                .ok_or(DigestError::Missing("realm"))?
                .to_owned(),
            nonce: data
                .param("nonce")
                .ok_or(DigestError::Missing("nonce"))?
                .to_owned(),
            opaque: data.param("opaque").map(str::to_owned),
            domain: data.param("domain").map(str::to_owned),
            stale: is_true(data.param("stale")),
            algorithm: algorithm_param(data)?,
            qop,
            charset_utf8: data
                .param("charset")
                .is_some_and(|c| c.eq_ignore_ascii_case("UTF-8")),
            userhash: is_true(data.param("userhash")),
        })
    }

    /// The generic challenge, with parameters quoted as RFC 7616 §3.3 specifies.
    pub fn to_challenge(&self) -> Result<Challenge, InvalidAuthValue> {
        let mut p = vec![
            AuthParam::quoted("realm", &self.realm)?,
            AuthParam::quoted("nonce", &self.nonce)?,
        ];
        if let Some(a) = self.algorithm {
            p.push(AuthParam::token("algorithm", a.as_str())?);
        }
        if let Some(q) = self.qop {
            let list: Vec<&str> = [(q.auth, "auth"), (q.auth_int, "auth-int")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect();
            p.push(AuthParam::quoted("qop", &list.join(", "))?);
        }
        if let Some(o) = &self.opaque {
            p.push(AuthParam::quoted("opaque", o)?);
        }
        if let Some(d) = &self.domain {
            p.push(AuthParam::quoted("domain", d)?);
        }
        if self.stale {
            p.push(AuthParam::token("stale", "true")?);
        }
        if self.charset_utf8 {
            p.push(AuthParam::token("charset", "UTF-8")?);
        }
        if self.userhash {
            p.push(AuthParam::token("userhash", "true")?);
        }
        Challenge::new("Digest", AuthData::Params(p))
    }
}

/// The parameters of `Authorization: Digest ...` (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse {
    /// User name in the clear.
    pub username: String,
    /// Realm echoed from the challenge.
    pub realm: String,
    /// Nonce echoed from the challenge.
    pub nonce: String,
    /// The request URI as the client sent it on the request line.
    pub uri: String,
    /// The computed digest, hex.
    pub response: String,
    /// `None` when absent, which means MD5.
    pub algorithm: Option<Algorithm>,
    /// Client nonce (present with `qop`).
    pub cnonce: Option<String>,
    /// Echoed `opaque`.
    pub opaque: Option<String>,
    /// `None`: the RFC 2069 form.
    pub qop: Option<Qop>,
    /// Nonce count exactly as sent (8 hex digits); present with `qop`.
    pub nc: Option<String>,
}

impl DigestResponse {
    /// The algorithm used: the named one, or MD5 when none is named.
    pub fn effective_algorithm(&self) -> Algorithm {
        self.algorithm.unwrap_or(Algorithm::Md5)
    }

    /// The `qop=auth` inputs, when the response uses `qop=auth`.
    pub fn qop_auth(&self) -> Option<QopAuth<'_>> {
        match (self.qop, &self.nc, &self.cnonce) {
            (Some(Qop::Auth), Some(nc), Some(cnonce)) => Some(QopAuth { nc, cnonce }),
            _ => None,
        }
    }

    /// Reads generic credentials as a Digest response, checking that `qop` comes with
    /// `nc` and `cnonce` as RFC 7616 §3.4 requires.
    pub fn from_credentials(credentials: &Credentials) -> Result<Self, DigestError> {
        let data = credentials.data();
        params_of(credentials.scheme(), credentials.is_scheme("Digest"), data)?;
        let required = |name: &'static str| {
            data.param(name)
                .map(str::to_owned)
                .ok_or(DigestError::Missing(name))
        };
        if data.param("username").is_none() && data.param("username*").is_some() {
            return Err(DigestError::UnsupportedFeature("username* (RFC 8187)"));
        }
        if is_true(data.param("userhash")) {
            return Err(DigestError::UnsupportedFeature("userhash"));
        }
        let qop = match data.param("qop") {
            None => None,
            Some(q) => {
                Some(Qop::from_token(q).ok_or_else(|| DigestError::UnsupportedQop(q.to_owned()))?)
            }
        };
        let (cnonce, nc) = match qop {
            None => (None, None),
            Some(_) => {
                let nc = required("nc")?;
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(DigestError::InvalidNonceCount(nc));
                }
                (Some(required("cnonce")?), Some(nc))
            }
        };
        Ok(Self {
            username: required("username")?,
            realm: required("realm")?,
            nonce: required("nonce")?,
            uri: required("uri")?,
            response: required("response")?,
            algorithm: algorithm_param(data)?,
            cnonce,
            opaque: data.param("opaque").map(str::to_owned),
            qop,
            nc,
        })
    }

    /// The generic credentials, quoting exactly the fields RFC 7616 §3.4 quotes (some
    /// cameras reject `algorithm="MD5"` or an unquoted `uri`).
    pub fn to_credentials(&self) -> Result<Credentials, InvalidAuthValue> {
        let mut p = vec![
            AuthParam::quoted("username", &self.username)?,
            AuthParam::quoted("realm", &self.realm)?,
            AuthParam::quoted("nonce", &self.nonce)?,
            AuthParam::quoted("uri", &self.uri)?,
            AuthParam::quoted("response", &self.response)?,
        ];
        if let Some(a) = self.algorithm {
            p.push(AuthParam::token("algorithm", a.as_str())?);
        }
        if let Some(c) = &self.cnonce {
            p.push(AuthParam::quoted("cnonce", c)?);
        }
        if let Some(o) = &self.opaque {
            p.push(AuthParam::quoted("opaque", o)?);
        }
        if let Some(q) = self.qop {
            p.push(AuthParam::token("qop", q.as_str())?);
        }
        if let Some(nc) = &self.nc {
            p.push(AuthParam::token("nc", nc)?);
        }
        Credentials::new("Digest", AuthData::Params(p))
    }
}

#[cfg(test)]
mod tests {
    use super::super::syntax::{parse_challenges, parse_credentials};
    use super::*;

    fn challenge(value: &str) -> Result<DigestChallenge, DigestError> {
        let c = parse_challenges(&[value]).expect("syntax");
        DigestChallenge::from_challenge(&c[0])
    }

    #[test]
    fn hash_hex_matches_known_digests() {
        assert_eq!(
            Algorithm::Md5.hash_hex(&[b"abc"]),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            Algorithm::Sha256.hash_hex(&[b"abc"]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Parts are joined with ':'.
        assert_eq!(
            Algorithm::Md5.hash_hex(&[b"a", b"b"]),
            Algorithm::Md5.hash_hex(&[b"a:b"])
        );
        assert_eq!(
            Algorithm::Md5.hash_hex(&[b"x"]).len(),
            Algorithm::Md5.hex_len()
        );
        assert_eq!(
            Algorithm::Sha256.hash_hex(&[b"x"]).len(),
            Algorithm::Sha256.hex_len()
        );
    }

    #[test]
    fn algorithm_and_qop_tokens_ignore_case() {
        assert_eq!(Algorithm::from_token("md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::from_token("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_token("MD5-sess"), None);
        assert_eq!(Qop::from_token("AUTH"), Some(Qop::Auth));
        assert_eq!(Qop::from_token("auth-int"), Some(Qop::AuthInt));
        assert_eq!(Qop::from_token("conf"), None);
    }

    #[test]
    fn reads_challenge_fields() {
        let c = challenge(
            r#"Digest realm="r", qop="auth, auth-int, x-unknown", algorithm=sha-256, nonce="n", opaque="o", stale=TRUE, charset=utf-8, domain="/a /b""#,
        )
        .unwrap();
        assert_eq!(
            c,
            DigestChallenge {
                realm: "r".into(),
                nonce: "n".into(),
                opaque: Some("o".into()),
                domain: Some("/a /b".into()),
                stale: true,
                algorithm: Some(Algorithm::Sha256),
                qop: Some(QopOptions {
                    auth: true,
                    auth_int: true
                }),
                charset_utf8: true,
                userhash: false,
            }
        );
        assert_eq!(c.effective_algorithm(), Algorithm::Sha256);
        let back = DigestChallenge::from_challenge(&c.to_challenge().unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn refuses_incomplete_or_unsupported_challenges() {
        assert_eq!(
            challenge(r#"Digest nonce="n""#),
            Err(DigestError::Missing("realm"))
        );
        assert_eq!(
            challenge(r#"Digest realm="r""#),
            Err(DigestError::Missing("nonce"))
        );
        assert_eq!(
            challenge(r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#),
            Err(DigestError::UnsupportedAlgorithm("MD5-sess".into()))
        );
        assert_eq!(
            challenge(r#"Basic realm="r""#),
            Err(DigestError::NotDigest("Basic".into()))
        );
        assert_eq!(challenge("Digest abc=="), Err(DigestError::NoParams));
    }

    #[test]
    fn reads_and_writes_responses() {
        let text = r#"Digest username="u", realm="r", nonce="n", uri="rtsp://h/s", response="abc", algorithm=SHA-256, cnonce="c", opaque="o", qop=auth, nc=0000000a"#;
        let r = DigestResponse::from_credentials(&parse_credentials(text).unwrap()).unwrap();
        assert_eq!(
            r.qop_auth(),
            Some(QopAuth {
                nc: "0000000a",
                cnonce: "c"
            })
        );
        assert_eq!(r.effective_algorithm(), Algorithm::Sha256);
        assert_eq!(r.to_credentials().unwrap().to_string(), text);
    }

    #[test]
    fn refuses_malformed_responses() {
        let read = |t: &str| DigestResponse::from_credentials(&parse_credentials(t).unwrap());
        let base = r#"Digest username="u", realm="r", nonce="n", uri="/", response="x""#;
        assert!(read(base).is_ok());
        assert_eq!(
            read(&format!("{base}, qop=auth, cnonce=\"c\"")),
            Err(DigestError::Missing("nc"))
        );
        assert_eq!(
            read(&format!("{base}, qop=auth, nc=00000001")),
            Err(DigestError::Missing("cnonce"))
        );
        assert_eq!(
            read(&format!("{base}, qop=auth, nc=1, cnonce=c")),
            Err(DigestError::InvalidNonceCount("1".into()))
        );
        assert_eq!(
            read(&format!("{base}, qop=conf, nc=00000001, cnonce=c")),
            Err(DigestError::UnsupportedQop("conf".into()))
        );
        assert_eq!(
            read(&format!("{base}, userhash=true")),
            Err(DigestError::UnsupportedFeature("userhash"))
        );
        assert_eq!(
            read(
                r#"Digest username*=UTF-8''J%C3%A4s, realm="r", nonce="n", uri="/", response="x""#
            ),
            Err(DigestError::UnsupportedFeature("username* (RFC 8187)"))
        );
        assert_eq!(
            read(r#"Digest realm="r", nonce="n", uri="/", response="x""#),
            Err(DigestError::Missing("username"))
        );
    }
}
