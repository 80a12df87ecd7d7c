//! `/admin/loggers`: Kafka Connect's log-level endpoints, over the levels of
//! [`crate::telemetry::logging`].

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;

use super::dto::LevelRequest;
use super::{ApiError, json_body};
use crate::telemetry::logging::{self, LogLevels, LoggerLevel};

fn levels() -> Result<&'static LogLevels, ApiError> {
    logging::levels().ok_or_else(|| ApiError::not_found("log levels are not managed in this process".to_owned()))
}

/// A logger from the URL, refused (404, as Kafka Connect answers for an unknown
/// logger) unless it keeps to the logger alphabet.
fn checked(logger: &str) -> Result<(), ApiError> {
    crate::names::check_logger(logger).map_err(ApiError::not_found)
}

/// `GET /admin/loggers`: `{"root": {"level": "INFO"}, "<logger>": {"level", "last_modified"?}}`.
pub(super) async fn list() -> Result<Json<BTreeMap<String, LoggerLevel>>, ApiError> {
    Ok(Json(levels()?.all()))
}

/// `GET /admin/loggers/{logger}`: `{"level": "..."}`, inherited from above if unset.
pub(super) async fn get(Path(logger): Path<String>) -> Result<Json<LoggerLevel>, ApiError> {
    checked(&logger)?;
    Ok(Json(LoggerLevel { last_modified: None, ..levels()?.get(&logger) }))
}

/// `PUT /admin/loggers/{logger}` with `{"level": "DEBUG"}`: the loggers changed.
pub(super) async fn set(Path(logger): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Json<Vec<String>>, ApiError> {
    checked(&logger)?;
    let body: LevelRequest = serde_json::from_value(json_body(body)?).map_err(|error| {
        ApiError::bad_request(format!("the body must be {{\"level\": \"DEBUG\"}} (OFF, ERROR, WARN, INFO, DEBUG or TRACE): {error}"))
    })?;
    let changed = levels()?.set(&logger, &body.level).map_err(ApiError::bad_request)?;
    tracing::info!(logger = %logger, level = %body.level, "Changed a log level.");
    Ok(Json(changed))
}
