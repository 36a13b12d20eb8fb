//! Viewer authentication and per-rule access, sans-IO: who may watch through the edge.
//!
//! [`EdgeAuth::check`] takes a request, the viewer's address, the rule's
//! [`Access`], how to ask for a login ([`LoginKind`]) and the time, and says
//! [`Gate::Allow`], [`Gate::Deny`] (a response: 403, or a 401/407 with fresh
//! challenges) or [`Gate::CheckPassword`]: Basic credentials whose password must be
//! checked slowly (Argon2id, or an LDAP bind) off the async threads by the shell, which
//! then calls [`EdgeAuth::finish_password`]. Forward mode asks with
//! `407`/`Proxy-Authenticate` and reads `Proxy-Authorization` (RFC 2326 §12.26, RFC 7235
//! §3.2); routes and transparent mode ask with `401`/`WWW-Authenticate` and read
//! `Authorization` (RFC 7235 §3.1), since the viewer believes it talks to the origin.
//!
//! Schemes: Digest (SHA-256 and MD5, `qop=auth` or RFC 2069, stateless nonces from
//! `mediagate_rtsp::auth`) for users-file entries that hold an `HA1`; Basic when the
//! config allows it or LDAP is configured, checked against the Argon2id hash or by
//! binding. See `mediagate_ops::users` for why Digest cannot use the Argon2 hash.
//!
//! What it does not: read files, talk to LDAP, keep state per connection (the shell
//! remembers a Basic login it verified, keyed by the exact header value), or look at
//! origin credentials: the viewer's `Authorization` toward the edge is consumed here
//! and never forwarded (pass-through applies only to rules without edge logins).

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use mediagate_config::{Access, EdgeAuth as AuthConfig, LdapConfig};
use mediagate_ops::users::UsersFile;
use mediagate_rtsp::auth::{
    parse_basic, parse_credentials, Algorithm, Authenticator, AuthenticatorConfig, QopPolicy,
    Secret, Verdict,
};
use mediagate_rtsp::{Request, Response, StatusCode};

use crate::session::error;

/// How the edge asks a viewer to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginKind {
    /// Forward proxying: 407, `Proxy-Authenticate`, `Proxy-Authorization`.
    Proxy,
    /// Routes (reverse) and transparent mode: 401, `WWW-Authenticate`, `Authorization`.
    Origin,
}

impl LoginKind {
    pub fn status(self) -> StatusCode {
        match self {
            LoginKind::Proxy => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            LoginKind::Origin => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn challenge_header(self) -> &'static str {
        match self {
            LoginKind::Proxy => "Proxy-Authenticate",
            LoginKind::Origin => "WWW-Authenticate",
        }
    }

    pub fn credentials_header(self) -> &'static str {
        match self {
            LoginKind::Proxy => "Proxy-Authorization",
            LoginKind::Origin => "Authorization",
        }
    }
}

/// A logged-in viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub user: String,
    pub groups: Vec<String>,
}

/// Where a Basic password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordBackend {
    /// The users file's Argon2id hash.
    UsersFile,
    /// A simple bind to the LDAP directory.
    Ldap,
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Gate {
    /// Serve it; the viewer logged in as this principal, if the rule asked.
    Allow(Option<Principal>),
    /// Answer with this and serve nothing.
    Deny(Response),
    /// Answer with this (403) and serve nothing: `user` logged in, but the rule's
    /// lists leave it out (named in its `DENIED` record).
    NotAllowed { user: String, resp: Response },
    /// Check `password` with `backend` (slow), then [`EdgeAuth::finish_password`].
    CheckPassword {
        backend: PasswordBackend,
        user: String,
        password: String,
    },
}

/// The edge's login settings and users, as of the last start or reload.
#[derive(Debug)]
pub(crate) struct EdgeAuth {
    authenticator: Option<Authenticator>,
    users: Option<Arc<UsersFile>>,
    ldap: Option<LdapConfig>,
    basic: bool,
}

/// One nonce key per process: a reload keeps the nonces players already hold valid.
fn nonce_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).unwrap_or_else(|e| panic!("getrandom failed: {e}"));
        s
    })
}

impl EdgeAuth {
    /// `users`: the users file as read (None when none is configured, or when it could
    /// not be read: then nobody logs in through it).
    pub fn new(cfg: &AuthConfig, users: Option<Arc<UsersFile>>) -> Self {
        let ldap = cfg.ldap.as_ref().map(|l| l.get().clone());
        // LDAP can only check a password it is given, so configuring it allows Basic.
        let basic = *cfg.basic.get() || ldap.is_some();
        let mut ac = AuthenticatorConfig::new(cfg.realm.get().clone(), nonce_secret().to_vec());
        // Digest only when someone could use it: players prefer Digest whenever it is
        // offered, so offering it to a file of Basic-only users would lock them out.
        let digest_users = users.as_ref().is_some_and(|f| {
            f.users()
                .iter()
                .any(|u| u.ha1_md5.is_some() || u.ha1_sha256.is_some())
        });
        ac.algorithms = if digest_users {
            vec![Algorithm::Sha256, Algorithm::Md5]
        } else {
            Vec::new()
        };
        ac.qop = QopPolicy::AuthOrLegacy;
        ac.allow_basic = basic;
        ac.nonce_lifetime_secs = cfg.nonce_lifetime.get().as_secs().max(1);
        let authenticator = match Authenticator::new(ac) {
            Ok(a) => Some(a),
            Err(e) => {
                // No scheme (no users file with a Digest HA1, no Basic) or a realm
                // check-config refuses: every login fails closed. Silent when nothing
                // is configured, as on every edge without logins.
                if cfg.has_backend() {
                    tracing::warn!(
                        error = %e,
                        "edge auth: nobody can log in (no user has a Digest HA1 and basic = false?)"
                    );
                }
                None
            }
        };
        Self {
            authenticator,
            users,
            ldap,
            basic,
        }
    }

    pub fn ldap(&self) -> Option<&LdapConfig> {
        self.ldap.as_ref()
    }

    pub fn users(&self) -> Option<&Arc<UsersFile>> {
        self.users.as_ref()
    }

    /// Decides about `req` from `client` under `access`. `remembered`: a Basic login
    /// this connection already verified, with the exact header value it came in.
    pub fn check(
        &self,
        req: &Request,
        client: IpAddr,
        access: &Access,
        kind: LoginKind,
        now_unix_secs: u64,
        remembered: Option<(&str, &Principal)>,
    ) -> Gate {
        if !access.admits_client(client) {
            return Gate::Deny(error(
                StatusCode::FORBIDDEN,
                "this stream is not available from your address",
            ));
        }
        if !access.requires_login() {
            return Gate::Allow(None);
        }
        let Some(auth) = &self.authenticator else {
            return Gate::Deny(error(
                StatusCode::FORBIDDEN,
                "logins are not available on this edge",
            ));
        };
        let value = req.headers.get(kind.credentials_header());
        if let (Some(v), Some((known, p))) = (value, remembered) {
            if v == known {
                return authorize(access, p.clone());
            }
        }
        let Some(value) = value else {
            return Gate::Deny(self.challenge(auth, kind, now_unix_secs, false));
        };
        let basic = parse_credentials(value)
            .ok()
            .filter(|c| c.is_scheme("Basic"))
            .and_then(|c| parse_basic(&c).ok());
        if let Some((user, password)) = basic {
            if !self.basic {
                return Gate::Deny(self.challenge(auth, kind, now_unix_secs, false));
            }
            let backend = if self.users.as_ref().is_some_and(|u| u.get(&user).is_some()) {
                PasswordBackend::UsersFile
            } else if self.ldap.is_some() {
                PasswordBackend::Ldap
            } else {
                tracing::info!(user = %user, "edge login refused: unknown user");
                return Gate::Deny(self.challenge(auth, kind, now_unix_secs, false));
            };
            return Gate::CheckPassword {
                backend,
                user,
                password,
            };
        }
        let users = self.users.clone();
        let verdict = auth.verify(
            Some(value),
            req.method.as_str(),
            &req.uri,
            now_unix_secs,
            |name| {
                let u = users.as_ref()?.get(name)?;
                Some(Secret::Ha1 {
                    md5: u.ha1_md5.clone(),
                    sha256: u.ha1_sha256.clone(),
                })
            },
        );
        match verdict {
            Verdict::Ok(user) => {
                let groups = self
                    .users
                    .as_ref()
                    .and_then(|u| u.get(&user))
                    .map(|u| u.groups.clone())
                    .unwrap_or_default();
                authorize(access, Principal { user, groups })
            }
            Verdict::Stale => Gate::Deny(self.challenge(auth, kind, now_unix_secs, true)),
            Verdict::Denied(why) => {
                tracing::info!(reason = %why, "edge login refused");
                Gate::Deny(self.challenge(auth, kind, now_unix_secs, false))
            }
        }
    }

    /// After the shell checked a Basic password: `groups` is `Some` when it was right.
    pub fn finish_password(
        &self,
        user: String,
        groups: Option<Vec<String>>,
        access: &Access,
        kind: LoginKind,
        now_unix_secs: u64,
    ) -> Gate {
        let Some(auth) = &self.authenticator else {
            return Gate::Deny(error(StatusCode::FORBIDDEN, "logins are not available"));
        };
        match groups {
            Some(groups) => authorize(access, Principal { user, groups }),
            None => {
                tracing::info!(user = %user, "edge login refused: wrong password");
                Gate::Deny(self.challenge(auth, kind, now_unix_secs, false))
            }
        }
    }

    fn challenge(&self, auth: &Authenticator, kind: LoginKind, now: u64, stale: bool) -> Response {
        let mut r = error(kind.status(), "log in to watch this stream");
        for v in auth.challenge_values(now, stale) {
            r.headers.append(kind.challenge_header(), v);
        }
        r
    }
}

/// The rule's user and group lists, after a successful login.
fn authorize(access: &Access, p: Principal) -> Gate {
    if access.admits_user(&p.user, &p.groups) {
        return Gate::Allow(Some(p));
    }
    tracing::info!(user = %p.user, "edge login accepted but not allowed on this rule");
    // 403, not a new challenge: the login was right; a person must pick another user.
    Gate::NotAllowed {
        user: p.user,
        resp: error(StatusCode::FORBIDDEN, "your user may not watch this stream"),
    }
}

/// Checks a Basic password against the users file (Argon2id): the user's groups when
/// right. Slow on purpose; call it from a blocking thread.
pub(crate) fn check_file_password(
    users: &UsersFile,
    user: &str,
    password: &str,
) -> Option<Vec<String>> {
    let u = users.get(user)?;
    u.check_password(password).then(|| u.groups.clone())
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
