//! The admin REST API, following Kafka Connect's paths, bodies and state names, one
//! file per resource: `connectors` (`/connectors/...`) and `plugins`
//! (`/connector-plugins/...`); the worker-level endpoints (`/`, `/health`, `/metrics`)
//! are here. Everything is read-only so far.

mod connectors;
mod plugins;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::runtime::PluginCatalog;
use crate::telemetry::{Metrics, StatusBoard};
use crate::worker::ConnectorPlan;

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Connector and task states.
    pub status: StatusBoard,
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// The running connectors' configurations.
    pub connectors: Arc<BTreeMap<String, Arc<ConnectorPlan>>>,
    /// The loaded plugins.
    pub plugins: PluginCatalog,
}

/// Kafka Connect's error body: `{"error_code": status, "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: String) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message }
    }

    pub(crate) fn not_found(message: String) -> Self {
        Self { status: StatusCode::NOT_FOUND, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error_code": self.status.as_u16(), "message": self.message}))).into_response()
    }
}

/// The router; exposed so tests can drive it without a socket.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/connectors", get(connectors::list))
        .route("/connectors/{name}", get(connectors::info))
        .route("/connectors/{name}/status", get(connectors::status))
        .route("/connectors/{name}/config", get(connectors::config))
        .route("/connectors/{name}/tasks", get(connectors::tasks))
        .route("/connectors/{name}/topics", get(connectors::topics))
        .route("/connector-plugins", get(plugins::list))
        .route("/connector-plugins/{plugin}/config", get(plugins::config_definitions))
        .fallback(|| async { ApiError::not_found("no such endpoint; see the README for the admin API".to_owned()) })
        .with_state(state)
}

/// Binds `address` and serves until `shutdown`; returns the bound address.
pub async fn serve(address: SocketAddr, state: AdminState, shutdown: CancellationToken) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(error) = server.await {
            tracing::error!(%error, "The admin API stopped.");
        }
    });
    Ok((bound, handle))
}

async fn root() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "commit": option_env!("WASM_CONNECT_COMMIT").unwrap_or("unknown"), "kafka_cluster_id": null}))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "healthy", "message": "Worker has completed startup and is ready to handle requests."}))
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

