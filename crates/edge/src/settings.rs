//! The edge settings a reload may change, and how a running edge swaps them.
//!
//! What it does: [`ViewerSettings`] gathers what viewer connections consult (routes and
//! origins with their credentials, forward and transparent rules, the client ACL,
//! session timeout, viewer limit, per-viewer backlog, the limits on connections that
//! are not viewers) and [`hub_settings`] what a live
//! hub runs with (linger, reconnect back-off, give-up). Both live behind a
//! [`Current`], which a reload replaces whole. Readers take one snapshot per request,
//! per connection or per hub, so a request never sees half of an old and half of a
//! new table, and what a session started with stays with it: a running hub keeps
//! its origin session, its linger and its back-off whatever a reload says later.
//!
//! What it does not: decide which settings may change while the edge runs (listeners
//! and the UDP port range need a restart; the edge's role says so) or re-validate
//! anything (the config crate did).

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use mediagate_config::{ClientAcl, EdgeConfig};
use mediagate_ops::users::UsersFile;

use crate::auth::EdgeAuth;

use crate::conn_out::Backlog;
use crate::hub_registry::HubSettings;
use crate::limits::ConnLimits;
use crate::routing::Router;

/// How long an upstream request may take before the origin counts as unreachable.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// What every viewer connection consults, as of the last start or reload.
#[derive(Debug, Clone)]
pub(crate) struct ViewerSettings {
    pub router: Router,
    pub acl: ClientAcl,
    pub session_timeout: Duration,
    /// A closed connection's UDP sessions go on until their timeout (`parked`).
    pub udp_sessions_outlive_connection: bool,
    pub max_viewers: usize,
    pub backlog: Backlog,
    /// Viewer logins: settings and the users file as read at start or reload.
    pub auth: Arc<EdgeAuth>,
    /// Request and idle limits of connections without a session.
    pub conn_limits: ConnLimits,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Clients exempt from `max_connections_per_client`.
    pub trusted_clients: Vec<mediagate_config::Cidr>,
    /// Who may publish streams to which paths.
    pub publish: crate::publish_rules::PublishRules,
}

impl ViewerSettings {
    /// The settings of `cfg`; `via` is this node's `Via` entry, `listeners` the
    /// sockets it listens on (upstream hops to them are refused as loops). A users
    /// file that cannot be read or parsed is logged and replaced by `previous`'s users
    /// (a reload keeps the last good file), or by none at start (logins through it
    /// fail closed).
    pub fn from_config(
        cfg: &EdgeConfig,
        via: &str,
        listeners: &[SocketAddr],
        previous: Option<&ViewerSettings>,
    ) -> Self {
        let users = cfg.auth.users_file.as_ref().and_then(|path| {
            let path = path.get();
            let read = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| UsersFile::parse(&text).map_err(|e| e.to_string()));
            match read {
                Ok(users) => {
                    tracing::info!(file = %path.display(), users = users.users().len(), "edge users file loaded");
                    Some(Arc::new(users))
                }
                Err(e) => {
                    let kept = previous.and_then(|p| p.auth.users().cloned());
                    tracing::error!(
                        file = %path.display(),
                        error = %e,
                        kept_previous = kept.is_some(),
                        "edge users file unusable"
                    );
                    kept
                }
            }
        });
        let backlog_packets = cfg.viewer_backlog_packets.get() as usize;
        Self {
            router: Router::new(cfg, via.to_owned(), UPSTREAM_TIMEOUT).with_listeners(listeners),
            acl: cfg.client_acl.clone(),
            session_timeout: cfg.session_timeout.get().get(),
            udp_sessions_outlive_connection: cfg.udp_sessions_outlive_connection,
            max_viewers: cfg.max_viewers.get() as usize,
            backlog: Backlog {
                max_media_packets: backlog_packets,
                // ~1,500 bytes per packet: the byte cap follows the packet cap.
                max_media_bytes: backlog_packets.saturating_mul(1500),
                ..Backlog::default()
            },
            auth: Arc::new(EdgeAuth::new(&cfg.auth, users)),
            conn_limits: ConnLimits {
                request_timeout: cfg.request_timeout.get(),
                idle_timeout: cfg.idle_timeout.get(),
            },
            max_connections: cfg.max_connections.get() as usize,
            max_connections_per_client: cfg.max_connections_per_client.get() as usize,
            trusted_clients: cfg.trusted_clients.clone(),
            publish: crate::publish_rules::PublishRules::new(&cfg.publish),
        }
    }
}

/// What a hub started from now on runs with.
pub(crate) fn hub_settings(cfg: &EdgeConfig) -> HubSettings {
    HubSettings {
        linger: cfg.linger.get(),
        give_up: cfg.reconnect.give_up_after.get(),
        backoff_min: cfg.reconnect.backoff_min.get().get(),
        backoff_max: cfg.reconnect.backoff_max.get().get(),
        ..HubSettings::default()
    }
}

/// A value replaced whole by a reload and read as a snapshot.
#[derive(Debug)]
pub(crate) struct Current<T>(RwLock<Arc<T>>);

impl<T> Current<T> {
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    /// The value as of now; later replacements do not change it.
    pub fn load(&self) -> Arc<T> {
        // The lock only guards a pointer copy; a poisoned lock still holds a whole Arc.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the value for every later [`Current::load`].
    pub fn store(&self, value: T) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_outlives_a_replacement() {
        let current = Current::new(1);
        let before = current.load();
        current.store(2);
        assert_eq!(*before, 1);
        assert_eq!(*current.load(), 2);
    }

    #[test]
    fn an_unusable_users_file_keeps_the_previous_one() {
        let dir = std::env::temp_dir().join(format!("mg-settings-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("users");
        let hash = "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        std::fs::write(&file, format!("alice:{hash}:staff\n")).expect("write");
        let cfg = mediagate_config::parse_config(&format!(
            "[edge.auth]\nusers_file = \"{}\"\n",
            file.display()
        ))
        .expect("valid test config");
        let first = ViewerSettings::from_config(&cfg.edge, "RTSP/1.0 test", &[], None);
        let users = |s: &ViewerSettings| s.auth.users().map(|u| u.users().len());
        assert_eq!(users(&first), Some(1));
        std::fs::write(&file, "alice:not-a-hash:\n").expect("write");
        let kept = ViewerSettings::from_config(&cfg.edge, "RTSP/1.0 test", &[], Some(&first));
        assert_eq!(users(&kept), Some(1));
        let at_start = ViewerSettings::from_config(&cfg.edge, "RTSP/1.0 test", &[], None);
        assert_eq!(users(&at_start), None);
        std::fs::write(&file, format!("bob:{hash}:\ncarol:{hash}:\n")).expect("write");
        let next = ViewerSettings::from_config(&cfg.edge, "RTSP/1.0 test", &[], Some(&kept));
        assert_eq!(users(&next), Some(2));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn settings_follow_the_config() {
        let cfg = mediagate_config::parse_config(
            "[edge]\nsession_timeout = \"15s\"\nmax_viewers = 7\nlinger = \"3s\"\n[edge.reconnect]\nbackoff_min = \"1s\"\nbackoff_max = \"9s\"\n",
        )
        .expect("valid test config");
        let v = ViewerSettings::from_config(&cfg.edge, "RTSP/1.0 test", &[], None);
        assert_eq!(v.session_timeout, Duration::from_secs(15));
        assert_eq!(v.max_viewers, 7);
        let h = hub_settings(&cfg.edge);
        assert_eq!(h.linger, Duration::from_secs(3));
        assert_eq!(h.backoff_min, Duration::from_secs(1));
        assert_eq!(h.backoff_max, Duration::from_secs(9));
    }
}
