//! `/connectors/...`: the connectors, their configurations (Kafka Connect's flat
//! string maps), tasks, topics and status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::{AdminState, ApiError};
use crate::worker::ConnectorPlan;

/// The connector's configuration as Kafka Connect's flat string map: `name`,
/// `connector.class`, `tasks.max`, `topic`/`topics`, `errors.*` and the plugin's own
/// keys, secret values shown as `[hidden]`.
fn flat_config(plan: &ConnectorPlan) -> BTreeMap<String, String> {
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
    let errors = &plan.config.errors;
    config.insert("errors.tolerance".into(), if plan.tolerates_errors() { "all" } else { "none" }.into());
    config.insert("errors.retry.timeout".into(), errors.retry_timeout.as_millis().to_string());
    config.insert("errors.log.enable".into(), errors.log.to_string());
    if let Some(topic) = &errors.dead_letter_topic {
        config.insert("errors.deadletterqueue.topic.name".into(), topic.clone());
    }
    config
}

fn describe(plan: &ConnectorPlan) -> Value {
    let config = flat_config(plan);
    json!({
        "name": plan.config.name,
        "config": config,
        "tasks": (0..plan.task_count()).map(|task| json!({"connector": plan.config.name, "task": task})).collect::<Vec<_>>(),
        "type": plan.kind(),
    })
}

pub(super) async fn list(State(state): State<AdminState>, Query(query): Query<HashMap<String, String>>) -> Json<Value> {
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
            entry.insert("info".into(), describe(plan));
        }
        expanded.insert(name.clone(), Value::Object(entry));
    }
    Json(Value::Object(expanded))
}

pub(super) async fn info(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    state
        .connectors
        .get(&name)
        .map(|plan| Json(describe(plan)))
        .ok_or_else(|| ApiError::not_found(format!("Connector {name} not found")))
}

pub(super) async fn status(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    state
        .status
        .get(&name)
        .map(|status| Json(json!(status)))
        .ok_or_else(|| ApiError::not_found(format!("Connector {name} not found")))
}

fn plan<'a>(state: &'a AdminState, name: &str) -> Result<&'a Arc<ConnectorPlan>, ApiError> {
    state.connectors.get(name).ok_or_else(|| ApiError::not_found(format!("Connector {name} not found")))
}

/// `GET /connectors/{name}/config`: the flat configuration map.
pub(super) async fn config(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(flat_config(plan(&state, &name)?))))
}

/// `GET /connectors/{name}/tasks`: each task with its configuration.
pub(super) async fn tasks(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let plan = plan(&state, &name)?;
    let config = flat_config(plan);
    let tasks: Vec<Value> = (0..plan.task_count())
        .map(|task| {
            let mut task_config = config.clone();
            task_config.insert("task.id".into(), task.to_string());
            json!({"id": {"connector": name, "task": task}, "config": task_config})
        })
        .collect();
    Ok(Json(json!(tasks)))
}

/// `GET /connectors/{name}/topics`: the topics the connector writes to or reads from.
pub(super) async fn topics(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let plan = plan(&state, &name)?;
    let topics: Vec<&String> = plan.config.topic.iter().chain(&plan.config.topics).collect();
    Ok(Json(json!({ name: { "topics": topics } })))
}
