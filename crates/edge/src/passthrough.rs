//! Origin authentication pass-through: when a rule has no origin credentials of its
//! own and the origin answers `401`, its challenge reaches the viewer, and the viewer's
//! `Authorization` reaches the origin (RFC 2326 §12.5; RFC 7235 §2: a proxy forwards
//! `WWW-Authenticate` and `Authorization` unchanged).
//!
//! Credentials are never cached, logged or reused for another viewer. That rules out
//! splitting: the hub's one origin session would have to authenticate its own SETUP
//! and PLAY (and every reconnect) with some viewer's credentials after that viewer
//! answered, and a Digest answer cannot even be recomputed for another request without
//! the password. So a viewer that authenticates to the origin gets its own origin
//! session, opened by its own DESCRIBE on the connection that then carries its SETUP,
//! PLAY and PAUSE, each with the `Authorization` the viewer sent on that request (the
//! on-demand passthrough of `vod`, whatever the stream's kind). A stream that the
//! origin serves without credentials is still split as before; only the streams that
//! ask are served per viewer.
//!
//! Digest: the viewer computes its response for the URI it requested (the edge's);
//! origins that check `uri` against their own request line (RFC 7616 §3.4.6) accept
//! that only where the two agree, as in forward mode; gst-rtsp-server and most cameras
//! do not check. Basic always works, and crosses the network in clear.
//!
//! What it does not: pass challenges for a rule whose own edge login uses the same
//! header (`access` asking for a login with 401: `Authorization` is then the edge's),
//! forward the viewer's keep-alives (the origin session's own keep-alives carry no
//! credentials), or record the origin user anywhere.

use std::net::SocketAddr;
use std::sync::Arc;

use mediagate_rtsp::{Request, Response, StatusCode};

use crate::auth::LoginKind;
use crate::rtsp_client::ClientError;
use crate::session::error;
use crate::settings::ViewerSettings;
use crate::source::client_error;
use crate::upstream::{self, UpstreamTarget};
use crate::vod::{VodIo, VodSession};

/// Origin sessions one viewer connection may hold between DESCRIBE and SETUP, so a
/// viewer cannot make the edge open origin connections without end.
pub(crate) const MAX_PENDING: usize = 4;

/// The target for `url` when its origin challenges are the viewer's to answer: the
/// rule names no origin credentials and does not use `Authorization` for an edge login.
pub(crate) fn target(
    settings: &ViewerSettings,
    url: &str,
    local: SocketAddr,
    original_dst: Option<SocketAddr>,
) -> Option<UpstreamTarget> {
    let target = settings.router.resolve(url, local, original_dst).ok()?;
    if target.credentials.is_some() {
        return None;
    }
    match settings.router.access_for(url, local, original_dst) {
        Some((access, LoginKind::Origin)) if access.requires_login() => None,
        _ => Some(target),
    }
}

/// The viewer's own `Authorization`, if it sent one.
pub(crate) fn authorization(req: &Request) -> Option<&str> {
    req.headers.get("Authorization")
}

/// DESCRIBEs `target` with the viewer's `authorization` on a connection of its own
/// and, when the origin accepts, starts the viewer's origin session on it. A refusal
/// is the viewer's answer: a `401` carries the origin's challenges.
pub(crate) async fn describe(
    target: &UpstreamTarget,
    authorization: Option<&str>,
    io: VodIo,
) -> Result<VodSession, Response> {
    match upstream::describe_with(target, authorization, None).await {
        Ok((client, described)) => Ok(VodSession::start(
            client,
            Arc::new(described),
            target.url.to_string(),
            io,
            true,
        )),
        Err(ClientError::Challenged { status, challenges }) => {
            let mut r = error(status, "the origin asks for your credentials");
            for c in challenges {
                r.headers.append("WWW-Authenticate", c);
            }
            Err(r)
        }
        Err(e) => Err(client_error(&e)),
    }
}

/// True when a hub's refusal means the origin wants credentials.
pub(crate) fn is_challenge(r: &Response) -> bool {
    r.status == StatusCode::UNAUTHORIZED
}
