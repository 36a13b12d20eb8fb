//! The I/O side of viewer (and publisher, through [`check`]) logins: runs the sans-IO [`auth`](crate::auth) gate for a
//! request and carries out its slow password checks (Argon2id, LDAP bind) on tokio's
//! blocking threads, so a login never stalls other viewers' requests or media.
//!
//! What it does not: decide anything (the gate does) or remember more than one Basic
//! login per connection (the last verified header value, so a player that repeats
//! its `Authorization` on every request costs one Argon2 run, not one per request).

use std::net::SocketAddr;

use mediagate_rtsp::{Request, Response, StatusCode};

use crate::auth::{check_file_password, Gate, PasswordBackend, Principal};
use crate::session::{error, Now};
use crate::settings::ViewerSettings;

/// Where a connection is, for the gate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub original_dst: Option<SocketAddr>,
}

/// Admits `req` for the stream `url` or answers with a refusal (and the user, when
/// one logged in but the rule leaves it out). `remembered` is the connection's last
/// verified Basic login, updated here.
pub(crate) async fn admit(
    settings: &ViewerSettings,
    req: &Request,
    url: &str,
    place: Place,
    remembered: &mut Option<(String, Principal)>,
) -> Result<Option<Principal>, (Response, Option<String>)> {
    let Some((access, kind)) = settings
        .router
        .access_for(url, place.local, place.original_dst)
    else {
        return Ok(None);
    };
    check(settings, req, access, kind, place.peer, remembered).await
}

/// Admits `req` from `peer` under `access` (a viewer rule's, or a publish rule's
/// users), as [`admit`] does.
pub(crate) async fn check(
    settings: &ViewerSettings,
    req: &Request,
    access: &mediagate_config::Access,
    kind: crate::auth::LoginKind,
    peer: SocketAddr,
    remembered: &mut Option<(String, Principal)>,
) -> Result<Option<Principal>, (Response, Option<String>)> {
    let now = Now::system().unix_ms / 1000;
    let auth = &settings.auth;
    let client = peer.ip();
    let gate = auth.check(
        req,
        client,
        access,
        kind,
        now,
        remembered.as_ref().map(|(h, p)| (h.as_str(), p)),
    );
    let (backend, user, password) = match gate {
        Gate::Allow(p) => return Ok(p),
        Gate::Deny(r) => return Err((r, None)),
        Gate::NotAllowed { user, resp } => return Err((resp, Some(user))),
        Gate::CheckPassword {
            backend,
            user,
            password,
        } => (backend, user, password),
    };
    let checked = match (backend, auth.users().cloned(), auth.ldap()) {
        (PasswordBackend::UsersFile, Some(users), _) => {
            let name = user.clone();
            tokio::task::spawn_blocking(move || check_file_password(&users, &name, &password))
                .await
                .map_err(|_| {
                    let r = error(StatusCode::INTERNAL_SERVER_ERROR, "the login check failed");
                    (r, None)
                })?
        }
        (PasswordBackend::Ldap, _, Some(ldap)) => {
            crate::ldap::check_password(ldap, &user, &password).await
        }
        _ => None,
    };
    match auth.finish_password(user, checked, access, kind, now) {
        Gate::Allow(Some(p)) => {
            if let Some(h) = req.headers.get(kind.credentials_header()) {
                *remembered = Some((h.to_owned(), p.clone()));
            }
            Ok(Some(p))
        }
        Gate::Allow(None) => Ok(None),
        Gate::Deny(r) => Err((r, None)),
        Gate::NotAllowed { user, resp } => Err((resp, Some(user))),
        Gate::CheckPassword { .. } => Err((
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the login check did not finish",
            ),
            None,
        )),
    }
}
