//! `GET /connectors/{name}/state`: a processor's state as last checkpointed, by key
//! or by key prefix, a page at a time: filtered and paged in the embedded store itself,
//! or read from the changelog topics on Kafka. Nothing in Kafka Connect or Kafka
//! Streams' REST offers this out of the box.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::dto::{ProcessorState, ProcessorStateEntry};
use super::{AdminState, ApiError};
use crate::runtime::PluginKind;
use crate::transport::{StatePage, StateQuery};

/// The most entries one page holds.
pub(super) const MAX_PAGE: usize = 1_000;
/// The furthest page start.
pub(super) const MAX_OFFSET: usize = 1 << 40;
/// The longest key or prefix asked for, in characters. Small enough that a request
/// just past it (key, prefix and store, up to 12 bytes a character percent-encoded,
/// about 28 KB) stays inside the longest URI the HTTP server reads (64 KiB) and gets
/// our 400 rather than its 414.
pub(super) const MAX_KEY_CHARS: usize = 1_024;
/// The longest store name asked for, in characters.
pub(super) const MAX_STORE_CHARS: usize = 128;

/// `GET /connectors/{name}/state[?key=K|prefix=P][&store=S][&limit=N][&offset=N]`.
pub(super) async fn get(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ProcessorState>, ApiError> {
    let connector = state.manager.connector(&name)?;
    if connector.kind() != PluginKind::Processor {
        let message = format!("connector {name} is a {}: only processors keep state", connector.kind());
        return Err(ApiError::new(StatusCode::CONFLICT, message));
    }
    let transport = &state.manager.context().transport;
    if let Some(unknown) = query.keys().find(|key| !["key", "prefix", "store", "limit", "offset"].contains(&key.as_str())) {
        let unknown = crate::names::shown(unknown);
        return Err(ApiError::bad_request(format!("unknown query parameter {unknown}; use key, prefix, store, limit or offset")));
    }
    let (key, prefix) = (query.get("key"), query.get("prefix"));
    if [key, prefix].into_iter().flatten().any(|text| text.chars().count() > MAX_KEY_CHARS) {
        return Err(ApiError::bad_request(format!("key and prefix take at most {MAX_KEY_CHARS} characters")));
    }
    if query.get("store").is_some_and(|store| store.chars().count() > MAX_STORE_CHARS) {
        return Err(ApiError::bad_request(format!("store takes at most {MAX_STORE_CHARS} characters")));
    }
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        query.get(name).map_or(Ok(default), |text| {
            text.parse().map_err(|_| ApiError::bad_request(format!("{name} must be a whole number, not {}", crate::names::shown(text))))
        })
    };
    let (limit, offset) = (number("limit", 100)?, number("offset", 0)?);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    if offset > MAX_OFFSET {
        return Err(ApiError::bad_request(format!("offset must be at most {MAX_OFFSET}")));
    }
    // A key and a prefix both apply: the key, if it starts with the prefix.
    if let (Some(key), Some(prefix)) = (key, prefix)
        && !key.starts_with(prefix.as_str())
    {
        return Ok(Json(ProcessorState { connector: name, total: 0, entries: Vec::new(), next_offset: None }));
    }
    let query = StateQuery {
        store: query.get("store").cloned(),
        exact: key.is_some(),
        key: key.or(prefix).map(|text| text.as_bytes().to_vec()),
        offset,
        limit,
    };
    let StatePage { total, entries } = transport.query_processor_state(&name, query).await.map_err(crate::manager::ManagerError::from)?;
    let page: Vec<ProcessorStateEntry> = entries
        .into_iter()
        .map(|entry| ProcessorStateEntry {
            key: String::from_utf8_lossy(&entry.key).into_owned(),
            store: entry.store,
            partition: entry.partition,
            value: serde_json::from_slice(&entry.value)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&entry.value).into_owned())),
        })
        .collect();
    let next_offset = (offset.saturating_add(page.len()) < total).then_some(offset + page.len());
    Ok(Json(ProcessorState { connector: name, total, entries: page, next_offset }))
}
