//! `/connectors/{name}/offsets`: Kafka Connect's offsets shapes. A sink's partition is
//! `{"kafka_topic", "kafka_partition"}` with offset `{"kafka_offset"}` (the next to
//! read); a source's partition is `{"connector"}` with offset `{"position"}`, the
//! position string the source stored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{AdminState, ApiError, json_body};
use crate::manager::{ConnectorOffsets, OffsetsChange};
use crate::runtime::PluginKind;
use crate::transport::PartitionOffsetChange;

/// `GET /connectors/{name}/offsets`.
pub(super) async fn get(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let offsets: Vec<Value> = match state.manager.offsets(&name).await? {
        ConnectorOffsets::Sink(offsets) => offsets
            .into_iter()
            .map(|offset| {
                json!({
                    "partition": {"kafka_topic": offset.topic, "kafka_partition": offset.partition},
                    "offset": {"kafka_offset": offset.offset},
                })
            })
            .collect(),
        ConnectorOffsets::Source(position) => position
            .into_iter()
            .map(|position| json!({"partition": {"connector": name}, "offset": {"position": position}}))
            .collect(),
    };
    Ok(Json(json!({ "offsets": offsets })))
}

/// `DELETE /connectors/{name}/offsets` (connector STOPPED): forgets every offset.
pub(super) async fn reset(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    state.manager.alter_offsets(&name, OffsetsChange::Reset).await?;
    Ok(Json(json!({"message": "The offsets for this connector have been reset successfully"})))
}

/// `PATCH /connectors/{name}/offsets` (connector STOPPED) with `{"offsets": [...]}`.
pub(super) async fn alter(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let entries = body
        .get("offsets")
        .and_then(Value::as_array)
        .filter(|entries| !entries.is_empty())
        .ok_or_else(|| ApiError::bad_request("the body must be {\"offsets\": [{\"partition\": {...}, \"offset\": {...}}, ...]} with at least one entry".to_owned()))?;
    let kind = state.manager.connector(&name)?.kind();
    let change = match kind {
        PluginKind::Source => source_change(&name, entries)?,
        _ => OffsetsChange::Sink(entries.iter().map(sink_change).collect::<Result<_, _>>()?),
    };
    state.manager.alter_offsets(&name, change).await?;
    Ok(Json(json!({"message": "The offsets for this connector have been altered successfully"})))
}

fn sink_change(entry: &Value) -> Result<PartitionOffsetChange, ApiError> {
    let shape = "a sink connector's offsets look like {\"partition\": {\"kafka_topic\": \"t\", \"kafka_partition\": 0}, \"offset\": {\"kafka_offset\": 42}} (offset null removes it)";
    let partition = &entry["partition"];
    let (Some(topic), Some(number)) = (partition["kafka_topic"].as_str(), partition["kafka_partition"].as_i64()) else {
        return Err(ApiError::bad_request(shape.to_owned()));
    };
    let offset = match &entry["offset"] {
        Value::Null => None,
        offset => Some(offset["kafka_offset"].as_i64().filter(|offset| *offset >= 0).ok_or_else(|| ApiError::bad_request(shape.to_owned()))?),
    };
    let partition = i32::try_from(number).ok().filter(|number| *number >= 0).ok_or_else(|| ApiError::bad_request(shape.to_owned()))?;
    Ok(PartitionOffsetChange { topic: topic.to_owned(), partition, offset })
}

fn source_change(name: &str, entries: &[Value]) -> Result<OffsetsChange, ApiError> {
    let shape = format!(
        "a source connector has one offset: {{\"partition\": {{\"connector\": \"{name}\"}}, \"offset\": {{\"position\": \"...\"}}}} (offset null removes it)"
    );
    let [entry] = entries else { return Err(ApiError::bad_request(shape)) };
    if entry["partition"]["connector"].as_str() != Some(name) {
        return Err(ApiError::bad_request(shape));
    }
    match &entry["offset"] {
        Value::Null => Ok(OffsetsChange::Source(None)),
        offset => match offset["position"].as_str() {
            Some(position) => Ok(OffsetsChange::Source(Some(position.to_owned()))),
            None => Err(ApiError::bad_request(shape)),
        },
    }
}
