//! `/connectors/...`: create, read, reconfigure, pause, resume, stop, restart and
//! delete connectors, their tasks, topics and status, in Kafka Connect's shapes and
//! status codes. Configurations are Kafka Connect's flat string maps.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::connector_config::{from_flat, string_map, to_flat, to_flat_unredacted};
use super::dto::{
    ConnectorExpansion, ConnectorInfo, ConnectorList, ConnectorTopics, CreateConnector, FlatConfig, InitialState, TaskId, TaskInfo,
};
use super::{AdminState, ApiError, json_body, query_flag};
use crate::config::ConnectorConfig;
use crate::manager::{ManagedConnector, ManagerError, TargetState};

/// Kafka Connect's connector info: `{name, config, tasks, type}`.
fn describe(connector: &ManagedConnector) -> ConnectorInfo {
    let name = &connector.config.name;
    ConnectorInfo {
        name: name.clone(),
        config: to_flat(connector),
        tasks: task_ids(connector).map(|task| TaskId { connector: name.clone(), task }).collect(),
        kind: connector.kind(),
    }
}

/// The tasks a connector has: none while stopped, as Kafka Connect shows it, and none
/// when it could not be planned (its plugin is missing, say), as its status shows.
fn task_ids(connector: &ManagedConnector) -> std::ops::Range<u32> {
    match connector.target {
        _ if connector.plan.is_err() => 0..0,
        TargetState::Stopped => 0..0,
        _ => 0..connector.task_count(),
    }
}

/// The `expand` values of a query: repeated (`expand=status&expand=info`) or comma-separated.
fn expansions(query: Option<&str>) -> Vec<String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == "expand")
        .flat_map(|(_, value)| value.replace("%2C", ",").replace("%2c", ",").split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|value| value == "status" || value == "info")
        .collect()
}

/// `GET /connectors[?expand=status|info]`.
pub(super) async fn list(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Json<ConnectorList> {
    let connectors = state.manager.connectors();
    let expand = expansions(query.as_deref());
    if expand.is_empty() && !query.as_deref().unwrap_or_default().contains("expand=") {
        return Json(ConnectorList::Names(connectors.keys().cloned().collect()));
    }
    let expanded = connectors
        .iter()
        .map(|(name, connector)| {
            let status = expand.iter().any(|value| value == "status").then(|| state.manager.status(name).ok()).flatten();
            let info = expand.iter().any(|value| value == "info").then(|| describe(connector));
            (name.clone(), ConnectorExpansion { status, info })
        })
        .collect();
    Json(ConnectorList::Expanded(expanded))
}

/// Reads a config object into the flat map, the name checked against `name`.
fn flat_config(value: &Value, name: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut flat: BTreeMap<String, String> = string_map(value, false)
        .map_err(|problems| ApiError::invalid_config(&problems))?
        .into_iter()
        .map(|(key, value)| (key, value.unwrap_or_default()))
        .collect();
    check_name(&mut flat, name)?;
    Ok(flat)
}

/// Kafka Connect's rule: a `name` in the config must match the one of the URL or body.
fn check_name(flat: &mut BTreeMap<String, String>, name: &str) -> Result<(), ApiError> {
    match flat.get("name") {
        Some(included) if included != name => Err(ApiError::bad_request(format!(
            "Connector name configuration ({included}) doesn't match connector name in the URL ({name})"
        ))),
        _ => {
            flat.insert("name".into(), name.to_owned());
            Ok(())
        }
    }
}

fn model(flat: &BTreeMap<String, String>, previous: Option<&ConnectorConfig>) -> Result<ConnectorConfig, ApiError> {
    from_flat(flat, previous).map_err(|problems| ApiError::invalid_config(&problems))
}

/// `POST /connectors` with `{"name", "config", "initial_state"?}`: 201 and the info,
/// with the connector's address in `Location`.
pub(super) async fn create(State(state): State<AdminState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body: CreateConnector = serde_json::from_value(json_body(body)?).map_err(|error| {
        ApiError::bad_request(format!(
            "the body must be a JSON object {{\"name\": ..., \"config\": {{...}}, \"initial_state\"?: RUNNING|PAUSED|STOPPED}}: {error}"
        ))
    })?;
    let target = match body.initial_state {
        None | Some(InitialState::Running) => TargetState::Running,
        Some(InitialState::Paused) => TargetState::Paused,
        Some(InitialState::Stopped) => TargetState::Stopped,
    };
    let flat = flat_config(&body.config, &body.name)?;
    let connector = state.manager.create(model(&flat, None)?, target).await?;
    let mut response = (StatusCode::CREATED, Json(describe(&connector))).into_response();
    // The name passed the connector-name alphabet, so it is a valid header value.
    if let Ok(location) = axum::http::HeaderValue::from_str(&format!("/connectors/{}", connector.config.name)) {
        response.headers_mut().insert(axum::http::header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /connectors/{name}`.
pub(super) async fn info(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<ConnectorInfo>, ApiError> {
    Ok(Json(describe(&*state.manager.connector(&name)?)))
}

/// `DELETE /connectors/{name}`: 204.
pub(super) async fn delete(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.manager.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /connectors/{name}/status`.
pub(super) async fn status(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<crate::telemetry::ConnectorStatus>, ApiError> {
    Ok(Json(state.manager.status(&name)?))
}

/// `GET /connectors/{name}/config`: the flat configuration map, secrets `[hidden]`.
pub(super) async fn config(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<FlatConfig>, ApiError> {
    Ok(Json(to_flat(&*state.manager.connector(&name)?)))
}

/// `PUT /connectors/{name}/config`: replaces the configuration, or creates the
/// connector (201); 200 with the info when it existed.
pub(super) async fn put_config(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let flat = flat_config(&json_body(body)?, &name)?;
    let previous = state.manager.connector(&name).ok();
    let config = model(&flat, previous.as_ref().map(|connector| &connector.config))?;
    let (created, connector) = state.manager.put_config(config).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(describe(&connector))).into_response())
}

/// `PATCH /connectors/{name}/config`: merges the given keys onto the configuration
/// (`null` removes a key); 200 with the info.
pub(super) async fn patch_config(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let patch = string_map(&json_body(body)?, true).map_err(|problems| ApiError::invalid_config(&problems))?;
    let existing = state.manager.connector(&name)?;
    let mut flat = to_flat_unredacted(&existing.config);
    for (key, value) in patch {
        match value {
            Some(value) => flat.insert(key, value),
            None => flat.remove(&key),
        };
    }
    check_name(&mut flat, &name)?;
    let config = model(&flat, Some(&existing.config))?;
    let (_, connector) = state.manager.put_config(config).await?;
    Ok((StatusCode::OK, Json(describe(&connector))).into_response())
}

/// `POST /connectors/{name}/restart?includeTasks=&onlyFailed=`: 204, or 202 with the
/// status when tasks are included or only failed instances are asked for.
pub(super) async fn restart(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let include_tasks = query_flag(&query, "includeTasks", false);
    let only_failed = query_flag(&query, "onlyFailed", false);
    let status = state.manager.restart(&name, include_tasks, only_failed).await?;
    if !include_tasks && !only_failed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

async fn set_target(state: &AdminState, name: &str, target: TargetState, answer: StatusCode) -> Result<StatusCode, ApiError> {
    state.manager.set_target(name, target).await?;
    Ok(answer)
}

/// `PUT /connectors/{name}/pause`: 202.
pub(super) async fn pause(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    set_target(&state, &name, TargetState::Paused, StatusCode::ACCEPTED).await
}

/// `PUT /connectors/{name}/resume`: 202.
pub(super) async fn resume(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    set_target(&state, &name, TargetState::Running, StatusCode::ACCEPTED).await
}

/// `PUT /connectors/{name}/stop`: 204.
pub(super) async fn stop(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    set_target(&state, &name, TargetState::Stopped, StatusCode::NO_CONTENT).await
}

/// Each task's flat configuration: the connector's plus `task.id`.
fn task_configs(connector: &ManagedConnector) -> Vec<(u32, BTreeMap<String, String>)> {
    let config = to_flat(connector);
    task_ids(connector)
        .map(|task| {
            let mut task_config = config.clone();
            task_config.insert("task.id".into(), task.to_string());
            (task, task_config)
        })
        .collect()
}

/// `GET /connectors/{name}/tasks`: each task with its configuration.
pub(super) async fn tasks(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Vec<TaskInfo>>, ApiError> {
    let connector = state.manager.connector(&name)?;
    let tasks = task_configs(&connector)
        .into_iter()
        .map(|(task, config)| TaskInfo { id: TaskId { connector: name.clone(), task }, config })
        .collect();
    Ok(Json(tasks))
}

/// `GET /connectors/{name}/tasks-config`: `{"<name>-<task>": config}`.
pub(super) async fn tasks_config(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<BTreeMap<String, FlatConfig>>, ApiError> {
    let connector = state.manager.connector(&name)?;
    Ok(Json(task_configs(&connector).into_iter().map(|(task, config)| (format!("{name}-{task}"), config)).collect()))
}

fn task_number(name: &str, task: &str) -> Result<u32, ApiError> {
    task.bytes().all(|byte| byte.is_ascii_digit()).then(|| task.parse().ok()).flatten().ok_or_else(|| {
        ApiError::not_found(format!("Task {} of connector {name} not found: task ids are whole numbers", super::shorten(task)))
    })
}

/// `GET /connectors/{name}/tasks/{task}/status`.
pub(super) async fn task_status(
    State(state): State<AdminState>,
    Path((name, task)): Path<(String, String)>,
) -> Result<Json<crate::telemetry::TaskStatus>, ApiError> {
    let id = task_number(&name, &task)?;
    let status = state.manager.status(&name)?;
    let task = status.tasks.into_iter().find(|task| task.id == id).ok_or(ManagerError::TaskNotFound(name, id))?;
    Ok(Json(task))
}

/// `POST /connectors/{name}/tasks/{task}/restart`: 204.
pub(super) async fn restart_task(
    State(state): State<AdminState>,
    Path((name, task)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = task_number(&name, &task)?;
    state.manager.restart_task(&name, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /connectors/{name}/topics`: the topics the connector writes to or reads from.
pub(super) async fn topics(
    State(state): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<BTreeMap<String, ConnectorTopics>>, ApiError> {
    let connector = state.manager.connector(&name)?;
    let config = &connector.config;
    let topics = config.topic.iter().chain(&config.topics).cloned().collect();
    Ok(Json(BTreeMap::from([(name, ConnectorTopics { topics })])))
}

/// `PUT /connectors/{name}/topics/reset`: 202. The topics shown are the configured
/// ones, not a record of what was used, so there is nothing to forget.
pub(super) async fn reset_topics(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    state.manager.connector(&name)?;
    Ok(StatusCode::ACCEPTED)
}
