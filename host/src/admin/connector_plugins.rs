//! `/connector-plugins/...`: the plugins the host has loaded, in Kafka Connect's
//! shapes, with each option's definition.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::{AdminState, ApiError, query_flag};
use crate::runtime::{OptionType, PluginKind};

/// `GET /connector-plugins[?connectorsOnly=false]`: every plugin as `{class, type,
/// version}`; transforms are listed only with `connectorsOnly=false`.
pub(super) async fn list(State(state): State<AdminState>, Query(query): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let connectors_only = query_flag(&query, "connectorsOnly", true)?;
    let plugins: Vec<Value> = state
        .manager
        .catalog()
        .plugins()
        .iter()
        .filter(|plugin| !connectors_only || plugin.description.kind != PluginKind::Transform)
        .map(|plugin| {
            let description = &plugin.description;
            json!({"class": description.name, "type": description.kind, "version": description.version})
        })
        .collect();
    Ok(Json(json!(plugins)))
}

/// Kafka Connect's type names for an option.
fn connect_type(option_type: OptionType) -> &'static str {
    match option_type {
        OptionType::Integer => "LONG",
        OptionType::Float => "DOUBLE",
        OptionType::Boolean => "BOOLEAN",
        OptionType::List | OptionType::CqlContactPoints => "LIST",
        _ => "STRING",
    }
}

/// `GET /connector-plugins/{plugin}/config`: the definition of every option (`name`
/// or `name@version`).
pub(super) async fn config_definitions(State(state): State<AdminState>, Path(plugin): Path<String>) -> Result<Json<Value>, ApiError> {
    let plugin = state.manager.catalog().find(&plugin).map_err(ApiError::not_found)?;
    let definitions: Vec<Value> = plugin
        .description
        .options
        .iter()
        .map(|option| {
            json!({
                "name": option.name,
                "type": if option.secret { "PASSWORD" } else { connect_type(option.option_type) },
                "required": option.required && option.default.is_none(),
                "default_value": option.default,
                "importance": if option.required { "HIGH" } else { "MEDIUM" },
                "documentation": option.documentation,
                "group": null,
                "width": "NONE",
                "display_name": option.name,
                "dependents": [],
                "order": -1,
                // What wasm-connect adds: the declared type, grants included.
                "wasm_connect_type": option.option_type,
            })
        })
        .collect();
    Ok(Json(json!(definitions)))
}
