//! The management HTTP API: JSON under `/api/v1`, Prometheus metrics at `/metrics`, and
//! its own OpenAPI 3.1 document at `/openapi.json` (`openapi.json` beside this file,
//! kept in step with the router by a test).
//!
//! What it does: binds `[admin] listen` when the process starts and serves on its own
//! OS thread with a one-thread tokio runtime, at most [`MAX_IN_FLIGHT`] requests at once
//! and [`MAX_BODY_BYTES`] per body, so an API flood costs at most that one thread and
//! never slows the roles' runtime or the relay's forwarding threads. Work a request
//! asks of a role (its picture, ending a session, a drain) runs on the roles' runtime,
//! bounded by [`ROLE_ANSWER_WAIT`]. With `[admin] tls_cert`/`tls_key` it speaks HTTPS
//! only (`tls`), and with `client_ca` every client must present a certificate from
//! that CA (mutual TLS). Access: with a token, every request must carry
//! `Authorization: Bearer TOKEN` (else 401); with client certificates, the handshake
//! has authenticated the client; with neither, only loopback peers are served (else
//! 403), and the config refuses a reachable address. Every error is a JSON object
//! `{"error": "..."}` saying what was wrong.
//!
//! The live dashboard page at `/` and its event stream are in `dashboard`.
//!
//! What it does not: reload itself (the binary hands in a [`ReloadHook`]).

mod dashboard;
mod routes;
#[cfg(test)]
mod tests;
mod tls;

pub use dashboard::{EVENT_PERIOD, MAX_EVENT_CLIENTS, MAX_LISTED};
pub use tls::AdminTls;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

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
    /// The bearer token; `None` serves loopback peers only unless client
    /// certificates are required.
    pub token: Option<String>,
    /// HTTPS, and mutual TLS when it has a client CA.
    pub tls: Option<AdminTls>,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("listen", &self.listen)
            .field("listen_is_default", &self.listen_is_default)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
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
    /// The TLS files are unusable.
    #[error("cannot set up TLS for the admin API: {0}")]
    Tls(String),
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
        let tls = match &options.tls {
            Some(files) if !options.listen.is_empty() => {
                Some(tls::server_config(files).map_err(AdminError::Tls)?)
            }
            _ => None,
        };
        let client_certs = options.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let mut listeners = Vec::new();
        for &addr in &options.listen {
            match bind(addr) {
                Ok(l) => listeners.push(l),
                Err(source)
                    if options.listen_is_default
                        && source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    // Info, not warn: several instances on one host (or a test suite)
                    // make this routine, and only the first can have the default.
                    tracing::info!(
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
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let app = routes::router(routes::Shared::new(
            roles,
            metrics,
            reload,
            options.token,
            client_certs,
            stop_rx.clone(),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AdminError::Thread)?;
        std::thread::Builder::new()
            .name("mediagate-admin".into())
            .spawn(move || runtime.block_on(serve(listeners, app, tls, stop_rx)))
            .map_err(AdminError::Thread)?;
        let scheme = if client_certs {
            "https (client certificates required)"
        } else if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        for addr in &bound {
            tracing::info!("admin API: listening on {addr}, {scheme}");
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

/// The peer's address, whether the connection is plain or TLS (axum's own
/// `SocketAddr` connect info only covers its plain TCP listener).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

async fn serve(
    listeners: Vec<TcpListener>,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
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
            .into_make_service_with_connect_info::<PeerAddr>();
        let mut stop = stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        match &tls {
            None => {
                tasks.spawn(async move {
                    let served = axum::serve(listener, app).with_graceful_shutdown(stopped);
                    if let Err(e) = served.await {
                        tracing::error!("admin API: serving stopped: {e}");
                    }
                });
            }
            Some(config) => {
                let listener = match tls::TlsListener::new(listener, Arc::clone(config)) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("admin API: cannot serve a listener: {e}");
                        continue;
                    }
                };
                tasks.spawn(async move {
                    let served = axum::serve(listener, app).with_graceful_shutdown(stopped);
                    if let Err(e) = served.await {
                        tracing::error!("admin API: serving stopped: {e}");
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}
