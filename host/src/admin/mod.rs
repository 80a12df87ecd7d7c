//! The admin REST API, following Kafka Connect's paths, bodies and state names. This
//! first slice serves `GET /`, `GET /connectors[?expand=status|info]`,
//! `GET /connectors/{name}`, `GET /connectors/{name}/status`, `GET /health` and
//! `GET /metrics`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

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
}

/// Kafka Connect's error body: `{"error_code": status, "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn not_found(message: String) -> Self {
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
        .route("/connectors", get(list_connectors))
        .route("/connectors/{name}", get(connector_info))
        .route("/connectors/{name}/status", get(connector_status))
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

fn info(plan: &ConnectorPlan) -> Value {
    let options = &plan.plugin.description.options;
    let mut config: BTreeMap<String, String> = plan
        .plugin_config
        .iter()
        .map(|(key, value)| {
            let secret = options.iter().any(|option| option.name == *key && option.secret);
            (key.clone(), if secret { "[hidden]".to_owned() } else { value.clone() })
        })
        .collect();
    config.insert("name".into(), plan.config.name.clone());
    config.insert("connector.class".into(), plan.config.plugin.clone());
    config.insert("tasks.max".into(), plan.task_count().to_string());
    if let Some(topic) = &plan.config.topic {
        config.insert("topic".into(), topic.clone());
    }
    if !plan.config.topics.is_empty() {
        config.insert("topics".into(), plan.config.topics.join(","));
    }
    json!({
        "name": plan.config.name,
        "config": config,
        "tasks": (0..plan.task_count()).map(|task| json!({"connector": plan.config.name, "task": task})).collect::<Vec<_>>(),
        "type": plan.kind(),
    })
}

async fn list_connectors(State(state): State<AdminState>, Query(query): Query<HashMap<String, String>>) -> Json<Value> {
    let expand: Vec<&str> = query.get("expand").map(|expand| expand.split(',').collect()).unwrap_or_default();
    if expand.is_empty() {
        return Json(json!(state.connectors.keys().collect::<Vec<_>>()));
    }
    let mut expanded = serde_json::Map::new();
    for (name, plan) in state.connectors.iter() {
        let mut entry = serde_json::Map::new();
        if expand.contains(&"status") {
            entry.insert("status".into(), json!(state.status.get(name)));
        }
        if expand.contains(&"info") {
            entry.insert("info".into(), info(plan));
        }
        expanded.insert(name.clone(), Value::Object(entry));
    }
    Json(Value::Object(expanded))
}

async fn connector_info(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    state
        .connectors
        .get(&name)
        .map(|plan| Json(info(plan)))
        .ok_or_else(|| ApiError::not_found(format!("Connector {name} not found")))
}

async fn connector_status(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    state
        .status
        .get(&name)
        .map(|status| Json(json!(status)))
        .ok_or_else(|| ApiError::not_found(format!("Connector {name} not found")))
}
