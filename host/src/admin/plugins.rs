//! `/plugins/...`, what Kafka Connect cannot do: upload a plugin component while the
//! host runs (the raw component as `application/wasm`; no multipart form, which a
//! browser could send from another site), list plugins with their versions, digests and users,
//! and remove an uploaded version no connector uses.

use super::dto::{PluginVersion, PluginVersions};
use super::{AdminState, ApiError};
use crate::manager::{ManagerError, Upload};
use crate::runtime::LoadedPlugin;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A plugin with what the host knows of it: its description, digest, origin and the
/// connectors using it.
fn describe(state: &AdminState, plugin: &LoadedPlugin) -> PluginVersion {
    let description = &plugin.description;
    PluginVersion {
        description: description.clone(),
        digest: format!("sha256:{}", plugin.digest),
        origin: plugin.origin,
        used_by: state.manager.plugin_users(&description.name, &description.version),
    }
}

/// The most uploads read at once: each buffers up to `plugins.max_upload_mib`.
pub const CONCURRENT_UPLOADS: usize = 2;

/// `POST /plugins`: 201 with the description of a new plugin version, 200 when the
/// same component was already there; 429 while [`CONCURRENT_UPLOADS`] others are read.
pub(super) async fn upload(State(state): State<AdminState>, request: Request) -> Result<Response, ApiError> {
    let Ok(_permit) = state.uploads.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{CONCURRENT_UPLOADS} uploads are being read already; send this one when they are done"),
        ));
    };
    // The content type (application/wasm) was checked before the handler ran.
    let bytes = Bytes::from_request(request, &()).await.map_err(|rejection| {
        super::unreadable_body(&rejection, || {
            format!(
                "the component is larger than plugins.max_upload_mib ({} MiB); raise it in the configuration",
                state.max_plugin_bytes >> 20
            )
        })
    })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the body is empty: send the component as application/wasm".to_owned()));
    }
    let (status, plugin) = match state.manager.add_plugin(bytes).await? {
        Upload::Added(plugin) => (StatusCode::CREATED, plugin),
        Upload::Unchanged(plugin) => (StatusCode::OK, plugin),
    };
    Ok((status, Json(describe(&state, &plugin))).into_response())
}

/// `GET /plugins`: every plugin version.
pub(super) async fn list(State(state): State<AdminState>) -> Json<Vec<PluginVersion>> {
    Json(state.manager.catalog().plugins().iter().map(|plugin| describe(&state, plugin)).collect())
}

/// A plugin name from the URL, refused (400) unless it keeps to the name alphabet.
fn checked_name(name: &str) -> Result<(), ApiError> {
    crate::names::check_name(name).map_err(|problem| ApiError::bad_request(format!("the plugin name in the URL {problem}")))
}

/// A plugin name and version from the URL, refused (400) unless both keep to their
/// alphabets.
fn checked_version(name: &str, version: &str) -> Result<(), ApiError> {
    checked_name(name)?;
    crate::names::check_version(version).map_err(|problem| ApiError::bad_request(format!("the plugin version in the URL {problem}")))
}

/// `GET /plugins/{name}`: `{"name", "versions": [...]}`, oldest version first.
pub(super) async fn versions(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<PluginVersions>, ApiError> {
    checked_name(&name)?;
    let versions: Vec<PluginVersion> = state
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
    Ok(Json(PluginVersions { name, versions }))
}

/// `GET /plugins/{name}/{version}`.
pub(super) async fn version(
    State(state): State<AdminState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<PluginVersion>, ApiError> {
    checked_version(&name, &version)?;
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
    checked_version(&name, &version)?;
    state.manager.delete_plugin(&name, &version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /plugins/{name}`: every uploaded version, or none: refused (409) before
/// anything is removed when one of them is in use or only `plugins.dir` has the
/// plugin. Versions from `plugins.dir` stay.
pub(super) async fn delete_all(State(state): State<AdminState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    checked_name(&name)?;
    state.manager.delete_uploaded_versions(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
