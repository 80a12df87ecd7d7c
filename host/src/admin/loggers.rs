//! `/admin/loggers`: Kafka Connect's log-level endpoints, over the levels of
//! [`crate::telemetry::logging`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use serde_json::{Value, json};

use super::{ApiError, json_body};
use crate::telemetry::logging::{self, LogLevels};

fn levels() -> Result<&'static LogLevels, ApiError> {
    logging::levels().ok_or_else(|| ApiError::not_found("log levels are not managed in this process".to_owned()))
}

/// `GET /admin/loggers`: `{"root": {"level": "INFO"}, "<logger>": {"level", "last_modified"?}}`.
pub(super) async fn list() -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(levels()?.all())))
}

/// `GET /admin/loggers/{logger}`: `{"level": "..."}`, inherited from above if unset.
pub(super) async fn get(Path(logger): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"level": levels()?.get(&logger).level})))
}

/// `PUT /admin/loggers/{logger}` with `{"level": "DEBUG"}`: the loggers changed.
pub(super) async fn set(Path(logger): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let level = body
        .get("level")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("the body must be {\"level\": \"DEBUG\"} (OFF, ERROR, WARN, INFO, DEBUG or TRACE)".to_owned()))?;
    let changed = levels()?.set(&logger, level).map_err(ApiError::bad_request)?;
    tracing::info!(logger = %logger, level, "Changed a log level.");
    Ok(Json(json!(changed)))
}
