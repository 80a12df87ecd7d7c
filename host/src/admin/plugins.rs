//! `/plugins/...`, what Kafka Connect cannot do: upload a plugin component while the
//! host runs (the raw component as `application/wasm`, or the first file of a
//! `multipart/form-data` body), list plugins with their versions, digests and users,
//! and remove an uploaded version no connector uses.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AdminState, ApiError};
use crate::manager::{ManagerError, Upload};
use crate::runtime::LoadedPlugin;

/// A plugin with what the host knows of it: its description, digest, origin and the
/// connectors using it.
fn describe(state: &AdminState, plugin: &LoadedPlugin) -> Value {
    let description = &plugin.description;
    let mut value = serde_json::to_value(description).unwrap_or_else(|_| json!({}));
    value["digest"] = json!(format!("sha256:{}", plugin.digest));
    value["origin"] = json!(plugin.origin);
    value["used_by"] = json!(state.manager.plugin_users(&description.name, &description.version));
    value
}

/// The component of an upload: the raw body, or the first non-empty part of a
/// multipart form.
async fn component(state: &AdminState, request: Request) -> Result<Vec<u8>, ApiError> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("").to_owned();
    let too_large = |status: StatusCode| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, format!(
                "the component is larger than plugins.max_upload_mib ({} MiB); raise it in the configuration",
                state.max_plugin_bytes >> 20
            ))
        } else {
            ApiError::new(status, "the upload could not be read".to_owned())
        }
    };
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, &()).await.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        while let Some(field) = form.next_field().await.map_err(|error| too_large(error.status()))? {
            let bytes = field.bytes().await.map_err(|error| too_large(error.status()))?;
            if !bytes.is_empty() {
                return Ok(bytes.to_vec());
            }
        }
        return Err(ApiError::bad_request("the multipart form has no file part: send the component as its first file".to_owned()));
    }
    let bytes = Bytes::from_request(request, &()).await.map_err(|rejection| too_large(rejection.status()))?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: send the component, as application/wasm or in a multipart form".to_owned(),
        ));
    }
    Ok(bytes.to_vec())
}

/// `POST /plugins`: 201 with the description of a new plugin version, 200 when the
/// same component was already there.
pub(super) async fn upload(State(state): State<AdminState>, request: Request) -> Result<Response, ApiError> {
    let bytes = component(&state, request).await?;
    let (status, plugin) = match state.manager.add_plugin(bytes).await? {
        Upload::Added(plugin) => (StatusCode::CREATED, plugin),
        Upload::Unchanged(plugin) => (StatusCode::OK, plugin),
    };
    Ok((status, Json(describe(&state, &plugin))).into_response())
}

/// `GET /plugins`: every plugin version.
pub(super) async fn list(State(state): State<AdminState>) -> Json<Value> {
    let plugins: Vec<Value> = state.manager.catalog().plugins().iter().map(|plugin| describe(&state, plugin)).collect();
    Json(json!(plugins))
}

/// `GET /plugins/{name}`: `{"name", "versions": [...]}`, oldest version first.
pub(super) async fn versions(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let versions: Vec<Value> = state
        .manager
        .catalog()
        .plugins()
        .iter()
        .filter(|plugin| plugin.description.name == name)
        .map(|plugin| describe(&state, plugin))
        .collect();
    if versions.is_empty() {
        return Err(ManagerError::PluginNotFound(name).into());
    }
    Ok(Json(json!({"name": name, "versions": versions})))
}

/// `GET /plugins/{name}/{version}`.
pub(super) async fn version(
    State(state): State<AdminState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let catalog = state.manager.catalog();
    let plugin = catalog.get(&name, &version).ok_or(ManagerError::PluginNotFound(format!("{name}@{version}")))?;
    Ok(Json(describe(&state, plugin)))
}

/// `DELETE /plugins/{name}/{version}`: 204; refused (409) while a connector uses it
/// or when it comes from `plugins.dir`.
pub(super) async fn delete_version(
    State(state): State<AdminState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.manager.delete_plugin(&name, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /plugins/{name}`: every uploaded version, each as `DELETE .../{version}`.
pub(super) async fn delete_all(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let versions: Vec<String> = state
        .manager
        .catalog()
        .plugins()
        .iter()
        .filter(|plugin| plugin.description.name == name)
        .map(|plugin| plugin.description.version.clone())
        .collect();
    if versions.is_empty() {
        return Err(ManagerError::PluginNotFound(name).into());
    }
    for version in versions {
        state.manager.delete_plugin(&name, &version).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
