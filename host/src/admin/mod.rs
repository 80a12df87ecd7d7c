//! The admin REST API, following Kafka Connect's paths, bodies, status codes and
//! state names, one file per resource: `connectors` (`/connectors/...`), `offsets`
//! (`/connectors/{name}/offsets`), `connector_plugins` (`/connector-plugins/...`) and
//! `plugins` (`/plugins/...`, uploads), with the flat-map mapping in
//! `connector_config`; the
//! worker-level endpoints (`/`, `/health`, `/metrics`) are here. Every change is
//! submitted to the [`Manager`], which owns the running set.

mod auth;
mod browser;
mod connector_config;
mod connector_plugins;
mod connectors;
mod dto;
mod loggers;
mod offsets;
mod plugins;
mod processor_state;
mod routes;
mod server;
mod tls;
mod transforms;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::manager::{Manager, ManagerError};
use crate::telemetry::Metrics;
use crate::transport::TransportError;
pub use auth::configured_token;
pub use plugins::CONCURRENT_UPLOADS;
pub use server::{ServerLimits, bind};
pub use tls::ReloadingTls;

/// What the handlers use.
#[derive(Clone)]
pub struct AdminState {
    /// The owner of the connectors: every change goes through it.
    pub manager: Arc<Manager>,
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// Largest plugin component an upload may carry.
    pub max_plugin_bytes: usize,
    /// The bearer token every request but `GET /health` must carry, if any.
    pub token: Option<Arc<str>>,
    /// Web origins whose pages may call the API (`admin.allowed_origins`).
    pub allowed_origins: Arc<[String]>,
    /// Names the `Host` header may carry without a token (`admin.allowed_hosts`).
    pub allowed_hosts: Arc<[String]>,
    /// Time for a request's body to arrive (`admin.request_timeout`).
    pub request_timeout: std::time::Duration,
    /// Uploads read at once: each may buffer `max_plugin_bytes`.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Who this host is, for `GET /`.
    pub identity: Arc<crate::cluster::Identity>,
}

/// The most problems an error message lists: a body with thousands of bad keys gets a
/// short answer, not one as large as itself.
pub(crate) const MAX_PROBLEMS_LISTED: usize = 50;

/// A key from a request as a message shows it: at most 100 characters, control
/// characters escaped.
pub(crate) fn shorten(key: &str) -> String {
    let head: String = key.chars().take(100).flat_map(char::escape_debug).collect();
    if key.chars().count() > 100 { format!("{head}...") } else { head }
}

/// Kafka Connect's error body: `{"error_code": status, "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: String) -> Self {
        Self { status, message }
    }

    pub(crate) fn bad_request(message: String) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message }
    }

    pub(crate) fn not_found(message: String) -> Self {
        Self { status: StatusCode::NOT_FOUND, message }
    }

    /// A configuration refused with its problems, keys in Kafka Connect's flat names:
    /// the first [`MAX_PROBLEMS_LISTED`] listed, and how many more there were.
    pub(crate) fn invalid_config(problems: &[(String, String)]) -> Self {
        let mut lines: Vec<String> =
            problems.iter().take(MAX_PROBLEMS_LISTED).map(|(key, message)| format!("{}: {message}", shorten(key))).collect();
        if problems.len() > MAX_PROBLEMS_LISTED {
            lines.push(format!("... and {} more", problems.len() - MAX_PROBLEMS_LISTED));
        }
        Self::bad_request(format!(
            "Connector configuration is invalid and contains the following {} error(s):\n{}",
            problems.len(),
            lines.join("\n")
        ))
    }
}

impl From<ManagerError> for ApiError {
    fn from(error: ManagerError) -> Self {
        let status = match &error {
            ManagerError::NotFound(_) | ManagerError::TaskNotFound(..) => StatusCode::NOT_FOUND,
            ManagerError::AlreadyExists(_) | ManagerError::OwnedByFile(_) | ManagerError::WrongState(_) | ManagerError::Conflict(_) => {
                StatusCode::CONFLICT
            }
            ManagerError::PluginNotFound(_) => StatusCode::NOT_FOUND,
            ManagerError::PluginRefused(_) | ManagerError::BadOffsets(_) => StatusCode::BAD_REQUEST,
            ManagerError::Invalid(problems) => {
                let problems: Vec<(String, String)> =
                    problems.iter().map(|(key, message)| (connector_config::flat_key(key), message.clone())).collect();
                return Self::invalid_config(&problems);
            }
            ManagerError::NotStopped(_) => StatusCode::BAD_REQUEST,
            ManagerError::Transport(TransportError::GroupNotEmpty(_)) => StatusCode::CONFLICT,
            ManagerError::Store(_) | ManagerError::Transport(_) | ManagerError::PluginStorage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, message: error.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(dto::ErrorBody { error_code: self.status.as_u16(), message: self.message })).into_response()
    }
}

/// A request body as JSON, refused with Kafka Connect's error body when it is too
/// large or not JSON.
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    json_body_within(body, MAX_BODY_KEYS, &format!("a connector configuration has at most {}", connector_config::MAX_CONFIG_KEYS))
}

/// [`json_body`] with a budget of `max_keys` object keys in all (`why` says where it
/// comes from).
pub(crate) fn json_body_within(body: Result<Bytes, BytesRejection>, max_keys: usize, why: &str) -> Result<Value, ApiError> {
    let bytes = body.map_err(|rejection| unreadable_body(&rejection, || rejection.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request needs a JSON body".to_owned()));
    }
    // Counted before anything is built: a body of tens of thousands of keys costs a
    // scan, not tens of megabytes of parsed values.
    let keys = count_keys(&bytes);
    if keys > max_keys {
        return Err(ApiError::bad_request(format!("the body has {keys} keys; at most {max_keys} are read ({why})")));
    }
    serde_json::from_slice(&bytes).map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))
}

/// The most object keys a JSON body may hold in all: a configuration's keys and room
/// for the body around them (name, offsets entries...).
const MAX_BODY_KEYS: usize = connector_config::MAX_CONFIG_KEYS + 100;

/// The number of object keys in a JSON text (its `:` outside strings), counted
/// without building anything; a text that is not JSON gives some count and fails to
/// parse later.
fn count_keys(bytes: &[u8]) -> usize {
    let (mut keys, mut in_string, mut escaped) = (0, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if byte == b':' {
            keys += 1;
        }
    }
    keys
}

/// A boolean query parameter read as Kafka Connect reads it: `true` in any case is
/// true, anything else false, `default` when absent.
pub(crate) fn query_flag(query: &HashMap<String, String>, name: &str, default: bool) -> bool {
    query.get(name).map_or(default, |value| value.eq_ignore_ascii_case("true"))
}

/// The router, built from [`routes::endpoints`]; exposed so tests can drive it
/// without a socket.
pub fn router(state: AdminState) -> Router {
    let mut router = Router::new();
    let mut bodies = Vec::new();
    for endpoint in routes::endpoints(state.max_plugin_bytes) {
        let method = axum::http::Method::from_bytes(endpoint.method.as_bytes()).expect("the table's methods are valid");
        bodies.push((method, endpoint.path, endpoint.body));
        router = router.route(endpoint.path, endpoint.handler);
    }
    // With a token, a page that reaches the API through a name of its own cannot
    // present it; without one, only names the operator lists are served.
    let host_names = state.token.is_none().then(|| state.allowed_hosts.clone());
    let browser_rules = browser::BrowserRules::new(&state.allowed_origins, host_names, bodies);
    router
        .fallback(|| async { ApiError::not_found("no such endpoint; see the README or GET /openapi.json".to_owned()) })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method; see GET /openapi.json".to_owned())
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::middleware::from_fn_with_state(browser_rules, browser::guard))
        .layer(axum::middleware::from_fn_with_state(state.request_timeout, time_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// Counts and times every request by method, route pattern (never the concrete path,
/// which would carry connector names without bound) and status.
async fn count_requests(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.admin_request(method.as_str(), &route, response.status().as_u16(), started.elapsed());
    response
}

/// Gives a request's body `admin.request_timeout` to arrive: a client trickling a body
/// holds its connection no longer than that. Only the reading is timed, never the
/// handler's work, so no change is ever cut off half-way.
async fn time_limit(State(limit): State<std::time::Duration>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(DeadlineBody { inner: body, deadline: Box::pin(tokio::time::sleep(limit)), limit });
    next.run(Request::from_parts(parts, body)).await
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: std::time::Duration,
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within admin.request_timeout ({0:?})")]
struct BodyTimedOut(std::time::Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(context).is_ready() {
            return std::task::Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.limit)))));
        }
        std::pin::Pin::new(&mut this.inner).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body that could not be read, as Kafka Connect's error: 408 when it did not arrive
/// within `admin.request_timeout`, 413 when too large, 400 otherwise.
pub(crate) fn unreadable_body(rejection: &BytesRejection, too_large: impl FnOnce() -> String) -> ApiError {
    let text = rejection.body_text();
    if text.contains("admin.request_timeout") {
        return ApiError::new(StatusCode::REQUEST_TIMEOUT, text);
    }
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, too_large()),
        status => ApiError::new(status, text),
    }
}

/// `GET /openapi.json`: the OpenAPI 3 document of every endpoint.
async fn openapi(State(state): State<AdminState>) -> Json<Value> {
    Json(routes::openapi(&routes::endpoints(state.max_plugin_bytes)))
}

/// Serves the API on `listener` (bound beforehand with [`bind`]) until `shutdown`,
/// within `limits`, over TLS when `tls` is given.
pub fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    limits: ServerLimits,
    tls: Option<Arc<ReloadingTls>>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    server::serve(listener, router(state), limits, tls, shutdown)
}

async fn root(State(state): State<AdminState>) -> Json<dto::ServerInfo> {
    let identity = &state.identity;
    Json(dto::ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: option_env!("WASM_CONNECT_COMMIT").unwrap_or("unknown").to_owned(),
        kafka_cluster_id: identity.kafka_cluster_id.clone(),
        worker_id: identity.worker_id.clone(),
        group_id: identity.group_id.clone(),
        assigned_partitions: state.manager.owned_partitions(),
    })
}

/// `GET /health`: Kafka Connect's answer, plus what became of the configuration
/// file's latest version (`config_file`: its `errors` if it was not applied, the
/// `restart_required` keys if it changed host-level settings).
async fn health(State(state): State<AdminState>) -> Json<dto::Health> {
    Json(dto::Health {
        status: "healthy".to_owned(),
        message: "Worker has completed startup and is ready to handle requests.".to_owned(),
        config_file: state.manager.file_state(),
    })
}

/// `GET /metrics`: OpenMetrics for a scraper that asks for it (Prometheus does),
/// Prometheus's classic text format for everyone else (curl, promtool).
async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    let content_type =
        if openmetrics { "application/openmetrics-text; version=1.0.0; charset=utf-8" } else { "text/plain; version=0.0.4; charset=utf-8" };
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render(openmetrics)).into_response()
}

#[cfg(test)]
mod tests {
    use super::count_keys;

    #[test]
    fn keys_are_counted_outside_strings() {
        assert_eq!(count_keys(br#"{"a": 1, "b": {"c": "x:y", "d\\": "e\"f:g"}}"#), 4);
        assert_eq!(count_keys(b"[]"), 0);
        assert_eq!(count_keys(br#"{"url": "http://h:1/"}"#), 1);
    }
}
