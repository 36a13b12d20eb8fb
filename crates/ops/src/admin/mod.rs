//! The management HTTP API: JSON under `/api/v1`, Prometheus metrics at `/metrics`, and
//! its own OpenAPI 3.1 document at `/openapi.json` (`openapi.json` beside this file,
//! kept in step with the router by a test).
//!
//! What it does: binds `[admin] listen` when the process starts and serves on its own
//! OS thread with a one-thread tokio runtime, at most [`MAX_IN_FLIGHT`] requests at once
//! and [`MAX_BODY_BYTES`] per body, so an API flood costs at most that one thread and
//! never slows the roles' runtime or the relay's forwarding threads. Work a request
//! asks of a role (its picture, ending a session, a drain) runs on the roles' runtime,
//! bounded by [`ROLE_ANSWER_WAIT`]. Access: with a token, every request must carry
//! `Authorization: Bearer TOKEN` (else 401); without one, only loopback peers are
//! served (else 403), and the config refuses a reachable address without a token.
//! Every error is a JSON object `{"error": "..."}` saying what was wrong.
//!
//! What it does not: TLS (no mutual TLS yet; a token over plain HTTP belongs on a
//! trusted network or behind a TLS proxy), the dashboard page, or reload itself (the
//! binary hands in a [`ReloadHook`]).

mod routes;
#[cfg(test)]
mod tests;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::role::RoleFuture;
use crate::role_set::RoleSet;

/// Requests handled at once; more wait (briefly) for a turn, then get 503.
pub const MAX_IN_FLIGHT: usize = 16;
/// Largest request body; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a request waits for a role's answer before it gets 503.
pub const ROLE_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// What `POST /api/v1/reload` calls: re-reads and applies the config, resolving to a
/// line for the operator on success. Provided by the binary, which owns the config
/// file; runs on the roles' runtime.
pub type ReloadHook =
    Arc<dyn Fn() -> RoleFuture<'static, Result<String, ReloadError>> + Send + Sync>;

/// Why a reload did not apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The new config is invalid (the message names line:column); nothing changed.
    /// Answered with 422.
    #[error("{0}")]
    Invalid(String),
    /// This process cannot reload (answered with 501).
    #[error("{0}")]
    NotAvailable(String),
}

/// Where and how the API serves, from `[admin]` with the token file read.
#[derive(Clone)]
pub struct AdminOptions {
    /// The addresses to bind.
    pub listen: Vec<SocketAddr>,
    /// The addresses are the built-in default: when one is taken, warn and serve
    /// without the API rather than fail the start.
    pub listen_is_default: bool,
    /// The bearer token; `None` serves loopback peers only.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("listen", &self.listen)
            .field("listen_is_default", &self.listen_is_default)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// An address could not be bound.
    #[error("cannot listen for the admin API on {addr}: {source} (set [admin] listen to a free address, or to [] to turn the API off)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// Its thread or runtime could not start.
    #[error("cannot start the admin API's thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The running API; dropping it stops the API (requests in flight are finished).
pub struct Admin {
    bound: Vec<SocketAddr>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("bound", &self.bound).finish()
    }
}

impl Admin {
    /// Binds the addresses and starts serving on the API's own thread. `Ok(None)`
    /// when the API is off (no address) or its default address is taken (logged).
    pub fn start(
        options: AdminOptions,
        roles: Arc<RoleSet>,
        metrics: Metrics,
        reload: Option<ReloadHook>,
    ) -> Result<Option<Self>, AdminError> {
        let mut listeners = Vec::new();
        for &addr in &options.listen {
            match bind(addr) {
                Ok(l) => listeners.push(l),
                Err(source)
                    if options.listen_is_default
                        && source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    tracing::warn!(
                        "admin API: the default address {addr} is in use (another mediagate?); running without the API. Set [admin] listen to another address to have it"
                    );
                    return Ok(None);
                }
                Err(source) => return Err(AdminError::Listen { addr, source }),
            }
        }
        if listeners.is_empty() {
            return Ok(None);
        }
        let bound: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let app = routes::router(routes::Shared::new(roles, metrics, reload, options.token));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AdminError::Thread)?;
        std::thread::Builder::new()
            .name("mediagate-admin".into())
            .spawn(move || runtime.block_on(serve(listeners, app, stop_rx)))
            .map_err(AdminError::Thread)?;
        for addr in &bound {
            tracing::info!("admin API: listening on http://{addr}");
        }
        Ok(Some(Self {
            bound,
            stop: Some(stop_tx),
        }))
    }

    /// The bound addresses (with the real port when 0 was asked).
    pub fn bound(&self) -> &[SocketAddr] {
        &self.bound
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

async fn serve(
    listeners: Vec<TcpListener>,
    app: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("admin API: cannot serve a listener: {e}");
                continue;
            }
        };
        let app = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!("admin API: serving stopped: {e}");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
