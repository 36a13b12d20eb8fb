//! The API's routes, its access rule and its error shape. [`router`] registers every
//! route through one list ([`ROUTES`] records what was registered), which the tests
//! compare with `openapi.json`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::dashboard::{self, MAX_EVENT_CLIENTS};
use super::{PeerAddr, ReloadError, ReloadHook, MAX_BODY_BYTES, MAX_IN_FLIGHT, ROLE_ANSWER_WAIT};
use crate::metrics::Metrics;
use crate::role_set::{RoleSet, RoleState};

/// The OpenAPI document served at `/openapi.json`.
pub(super) const OPENAPI: &str = include_str!("openapi.json");

/// OpenMetrics text exposition, as Prometheus asks for it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a request waits for a turn when [`MAX_IN_FLIGHT`] are being handled.
const TURN_WAIT: Duration = Duration::from_secs(2);

/// What every handler shares.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) roles: Arc<RoleSet>,
    metrics: Metrics,
    reload: Option<ReloadHook>,
    token: Option<Arc<str>>,
    /// Every connection has presented a client certificate the TLS layer verified.
    client_certs: bool,
    turns: Arc<Semaphore>,
    /// Seats for open event streams ([`MAX_EVENT_CLIENTS`]).
    pub(super) event_clients: Arc<Semaphore>,
    /// Turns true when the API stops: open event streams end.
    pub(super) stop: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    pub(super) fn new(
        roles: Arc<RoleSet>,
        metrics: Metrics,
        reload: Option<ReloadHook>,
        token: Option<String>,
        client_certs: bool,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            roles,
            metrics,
            reload,
            token: token.map(Arc::from),
            client_certs,
            turns: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            event_clients: Arc::new(Semaphore::new(MAX_EVENT_CLIENTS)),
            stop,
        }
    }
}

/// Every route: method, path (OpenAPI's template syntax, which axum shares).
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/roles"),
    ("post", "/api/v1/roles/{name}/drain"),
    ("get", "/api/v1/edge/streams"),
    ("get", "/api/v1/edge/viewers"),
    ("delete", "/api/v1/edge/viewers/{id}"),
    ("get", "/api/v1/cache"),
    ("post", "/api/v1/cache/pin"),
    ("post", "/api/v1/cache/unpin"),
    ("post", "/api/v1/cache/purge"),
    ("get", "/api/v1/cache/prefetch"),
    ("post", "/api/v1/cache/prefetch"),
    ("post", "/api/v1/cache/prefetch/cancel"),
    ("get", "/api/v1/relay/calls"),
    ("delete", "/api/v1/relay/calls/{id}"),
    ("get", "/api/v1/balancer/services"),
    ("get", "/api/v1/balancer/backends"),
    ("get", "/api/v1/balancer/failover"),
    ("get", "/api/v1/dispatcher/calls"),
    ("get", "/api/v1/dispatcher/summary"),
    ("get", "/api/v1/dispatcher/sessions"),
    ("post", "/api/v1/reload"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// The handler of each route in [`ROUTES`], in the same order.
fn handler(method: &str, path: &str) -> MethodRouter<Shared> {
    let filter = match method {
        "get" => MethodFilter::GET,
        "post" => MethodFilter::POST,
        _ => MethodFilter::DELETE,
    };
    match path {
        "/" => on(filter, dashboard::page),
        "/api/v1/events" => on(filter, dashboard::events),
        "/api/v1/roles" => on(filter, list_roles),
        "/api/v1/roles/{name}/drain" => on(filter, drain_role),
        "/api/v1/edge/streams" => on(filter, |s: State<Shared>| snapshot(s, "edge", "streams")),
        "/api/v1/edge/viewers" => on(filter, |s: State<Shared>| snapshot(s, "edge", "viewers")),
        "/api/v1/edge/viewers/{id}" => on(filter, |s: State<Shared>, id: Path<String>| {
            end_session(s, "edge", "viewers", id)
        }),
        "/api/v1/cache" => on(filter, |s: State<Shared>| {
            act(s, "cache", "list", Ok(Bytes::new()))
        }),
        "/api/v1/cache/pin" => on(
            filter,
            |s: State<Shared>, b: Result<Bytes, BytesRejection>| act(s, "cache", "pin", b),
        ),
        "/api/v1/cache/unpin" => on(
            filter,
            |s: State<Shared>, b: Result<Bytes, BytesRejection>| act(s, "cache", "unpin", b),
        ),
        "/api/v1/cache/purge" => on(
            filter,
            |s: State<Shared>, b: Result<Bytes, BytesRejection>| act(s, "cache", "purge", b),
        ),
        // Listing and starting prefetches share a path; the method tells them apart.
        "/api/v1/cache/prefetch" if method == "get" => on(filter, |s: State<Shared>| {
            act(s, "cache", "prefetches", Ok(Bytes::new()))
        }),
        "/api/v1/cache/prefetch" => on(
            filter,
            |s: State<Shared>, b: Result<Bytes, BytesRejection>| act(s, "cache", "prefetch", b),
        ),
        "/api/v1/cache/prefetch/cancel" => on(
            filter,
            |s: State<Shared>, b: Result<Bytes, BytesRejection>| {
                act(s, "cache", "prefetch_cancel", b)
            },
        ),
        "/api/v1/relay/calls" => on(filter, |s: State<Shared>| snapshot(s, "relay", "calls")),
        "/api/v1/relay/calls/{id}" => on(filter, |s: State<Shared>, id: Path<String>| {
            end_session(s, "relay", "calls", id)
        }),
        "/api/v1/balancer/services" => on(filter, |s: State<Shared>| {
            snapshot(s, "balancer", "services")
        }),
        "/api/v1/balancer/backends" => on(filter, |s: State<Shared>| {
            snapshot(s, "balancer", "backends")
        }),
        "/api/v1/balancer/failover" => on(filter, |s: State<Shared>| {
            snapshot(s, "balancer", "failover")
        }),
        "/api/v1/dispatcher/calls" => on(filter, |s: State<Shared>| {
            snapshot(s, "dispatcher", "calls")
        }),
        "/api/v1/dispatcher/summary" => on(filter, |s: State<Shared>| {
            snapshot(s, "dispatcher", "summary")
        }),
        "/api/v1/dispatcher/sessions" => on(filter, |s: State<Shared>| {
            snapshot(s, "dispatcher", "sessions")
        }),
        "/api/v1/reload" => on(filter, reload),
        "/metrics" => on(filter, metrics),
        "/openapi.json" => on(filter, openapi),
        other => unreachable!("route {other} has no handler"),
    }
}

/// The API as an axum router.
pub(super) fn router(shared: Shared) -> Router {
    let mut router = Router::new();
    for &(method, path) in ROUTES {
        router = router.route(path, handler(method, path));
    }
    router
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such resource; GET /openapi.json lists the API",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this resource does not take that method; GET /openapi.json lists the API",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(shared.clone(), in_turn))
        .layer(middleware::from_fn_with_state(shared.clone(), access))
        .with_state(shared)
}

/// An error answer: its status and `{"error": message}`.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// With a token: the request must carry it (401 otherwise). Without: a client whose
/// certificate the TLS layer verified, or else a loopback peer (403 otherwise).
async fn access(
    State(shared): State<Shared>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    req: Request,
    next: Next,
) -> Response {
    let mut given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    // A browser's first request cannot carry a header: the dashboard page alone also
    // takes the token from its query (see `dashboard`).
    if given.is_none() && req.uri().path() == "/" {
        if let Some(token) = req.uri().query().and_then(dashboard::query_token) {
            given = Some([&b"Bearer "[..], &token].concat());
        }
    }
    match admit(
        shared.token.as_deref(),
        given.as_deref(),
        shared.client_certs,
        peer.ip(),
    ) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            let unauthorized = refusal.status == StatusCode::UNAUTHORIZED;
            let mut resp = refusal.into_response();
            if unauthorized {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mediagate\""),
                );
            }
            resp
        }
    }
}

/// The access rule: `authorization` is the request's header value, if any;
/// `client_certs`, whether the connection's client certificate was verified.
pub(super) fn admit(
    token: Option<&str>,
    authorization: Option<&[u8]>,
    client_certs: bool,
    peer: IpAddr,
) -> Result<(), ApiError> {
    match token {
        Some(token) => {
            let given = authorization.and_then(|v| v.strip_prefix(b"Bearer "));
            if given.is_some_and(|g| bool::from(g.ct_eq(token.as_bytes()))) {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    if given.is_some() {
                        "the bearer token is wrong"
                    } else {
                        "this API needs a token: send Authorization: Bearer TOKEN (the token of [admin] token_file)"
                    },
                ))
            }
        }
        None if !client_certs && !peer.to_canonical().is_loopback() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "without a token this API serves loopback clients only; set [admin] token_file to serve others",
        )),
        None => Ok(()),
    }
}

/// At most [`MAX_IN_FLIGHT`] requests at once; others wait [`TURN_WAIT`], then 503.
async fn in_turn(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(TURN_WAIT, shared.turns.clone().acquire_owned()).await {
        Ok(Ok(_turn)) => next.run(req).await,
        _ => {
            let mut resp = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the admin API is busy; try again shortly",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    }
}

/// A JSON body of type `T`; an empty body is `T::default()`.
fn json_body<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(e.status(), format!("cannot read the request body: {e}"))
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "the request body does not fit this request",
            _ => "the request body is not valid JSON",
        };
        ApiError::new(StatusCode::BAD_REQUEST, format!("{what}: {e}"))
    })
}

/// Runs `work` on the roles' runtime and waits at most [`ROLE_ANSWER_WAIT`].
pub(super) async fn on_roles_runtime<T: Send + 'static>(
    shared: &Shared,
    role: &str,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    let task = shared.roles.runtime().spawn(work);
    match tokio::time::timeout(ROLE_ANSWER_WAIT, task).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the {role} failed while answering; see the process log"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the {role} did not answer within {} s",
                ROLE_ANSWER_WAIT.as_secs()
            ),
        )),
    }
}

fn not_running(role: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("the {role} role is not running in this process"),
    )
}

async fn list_roles(State(shared): State<Shared>) -> Json<Value> {
    Json(roles_picture(&shared.roles))
}

/// What `GET /api/v1/roles` answers (the dashboard's pictures carry it too).
pub(super) fn roles_picture(set: &RoleSet) -> Value {
    let roles: Vec<Value> = set
        .roles()
        .map(|role| {
            let stats = role.stats();
            let state = set.state(role.name()).unwrap_or(RoleState::Running);
            let mut entry = json!({
                "name": role.name(),
                "state": state.as_str(),
                "serving": role.serving(),
                "sessions": stats.sessions,
                "unit": stats.unit,
                "max_drain_seconds": role.max_drain().as_secs_f64(),
            });
            if let RoleState::Drained(report) = state {
                entry["drain"] = json!(report);
            }
            entry
        })
        .collect();
    Value::Array(roles)
}

async fn snapshot(
    State(shared): State<Shared>,
    role_name: &'static str,
    resource: &'static str,
) -> Result<Json<Value>, ApiError> {
    let role = shared
        .roles
        .get(role_name)
        .cloned()
        .ok_or_else(|| not_running(role_name))?;
    let work = async move {
        match role.snapshot(resource) {
            Some(picture) => Some(picture.await),
            None => None,
        }
    };
    on_roles_runtime(&shared, role_name, work)
        .await?
        .map(Json)
        .ok_or_else(|| not_running(role_name))
}

async fn end_session(
    State(shared): State<Shared>,
    role_name: &'static str,
    resource: &'static str,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let role = shared
        .roles
        .get(role_name)
        .cloned()
        .ok_or_else(|| not_running(role_name))?;
    let work = {
        let id = id.clone();
        async move {
            match role.end_session(resource, &id) {
                Some(ending) => Some(ending.await),
                None => None,
            }
        }
    };
    match on_roles_runtime(&shared, role_name, work).await? {
        Some(true) => Ok(Json(json!({ "id": id, "ended": true, "reason": "admin" }))),
        Some(false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no {resource} session {id:?} is running on the {role_name}"),
        )),
        None => Err(not_running(role_name)),
    }
}

/// An action on a resource some role keeps (`GET /api/v1/cache`, `POST
/// /api/v1/cache/pin`, ...): the first role that knows the resource answers. The
/// body is passed on as JSON (`null` when empty); the role checks its shape.
async fn act(
    State(shared): State<Shared>,
    resource: &'static str,
    action: &'static str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: Value = json_body(body)?;
    let roles: Vec<Arc<dyn crate::role::Role>> = shared.roles.roles().cloned().collect();
    let work = async move {
        for role in roles {
            if let Some(answer) = role.act(resource, action, body.clone()) {
                return Some(answer.await);
            }
        }
        None
    };
    match on_roles_runtime(&shared, resource, work).await? {
        Some(Ok(answer)) => Ok(Json(answer)),
        Some(Err(refusal)) => {
            use crate::role::ActError;
            let status = match &refusal {
                ActError::BadRequest(_) => StatusCode::BAD_REQUEST,
                ActError::NotFound(_) => StatusCode::NOT_FOUND,
                ActError::Unavailable(_) => StatusCode::CONFLICT,
                ActError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(ApiError::new(status, refusal.to_string()))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no role running in this process keeps a {resource} (the edge does)"),
        )),
    }
}

/// `POST /api/v1/roles/{name}/drain`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    /// Answer once the drain has finished (200) rather than as it starts (202).
    #[serde(default)]
    wait: bool,
}

async fn drain_role(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: DrainRequest = json_body(body)?;
    let Some(draining) = shared.roles.drain(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no role {name:?} runs in this process; GET /api/v1/roles lists them"),
        ));
    };
    tracing::info!(role = %name, "admin API: draining the {name}");
    if !request.wait {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "name": name, "state": "draining" })),
        )
            .into_response());
    }
    // A drain may take the role's whole drain time: no answer deadline here.
    let report = shared
        .roles
        .runtime()
        .spawn(draining)
        .await
        .unwrap_or_default();
    Ok(Json(json!({ "name": name, "state": "drained", "drain": report })).into_response())
}

/// `POST /api/v1/reload`'s body: nothing yet, but a body that is not `{}` is refused
/// rather than ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {}

async fn reload(
    State(shared): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let _: ReloadRequest = json_body(body)?;
    let Some(hook) = shared.reload.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "config reload is not available in this build; restart mediagate to apply a changed config",
        ));
    };
    let outcome = shared
        .roles
        .runtime()
        .spawn(async move { hook().await })
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the reload failed; see the process log",
            )
        })?;
    match outcome {
        Ok(message) => Ok(Json(json!({ "reloaded": true, "message": message }))),
        Err(e @ ReloadError::Invalid(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        )),
        Err(e @ ReloadError::NotAvailable(_)) => {
            Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, e.to_string()))
        }
    }
}

async fn metrics(State(shared): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
