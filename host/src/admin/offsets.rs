//! `/connectors/{name}/offsets`: Kafka Connect's offsets shapes. A sink's partition is
//! `{"kafka_topic", "kafka_partition"}` with offset `{"kafka_offset"}` (the next to
//! read); a source's partition is `{"connector"}` with offset `{"position"}`, the
//! position string the source stored.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};

use super::dto::{
    ConnectorOffset, ConnectorOffsets as OffsetsAnswer, Message, OffsetChange, OffsetsChangeRequest, SinkOffset, SinkPartition,
    SourceOffset, SourcePartition,
};
use super::{AdminState, ApiError, json_body};
use crate::manager::{ConnectorOffsets, OffsetsChange};
use crate::runtime::PluginKind;
use crate::transport::PartitionOffsetChange;

/// `GET /connectors/{name}/offsets`.
pub(super) async fn get(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<OffsetsAnswer>, ApiError> {
    let offsets = match state.manager.offsets(&name).await? {
        ConnectorOffsets::Sink(offsets) => offsets
            .into_iter()
            .map(|offset| ConnectorOffset::Sink {
                partition: SinkPartition { kafka_topic: offset.topic, kafka_partition: offset.partition },
                offset: SinkOffset { kafka_offset: offset.offset },
            })
            .collect(),
        ConnectorOffsets::Source(position) => position
            .into_iter()
            .map(|position| ConnectorOffset::Source {
                partition: SourcePartition { connector: name.clone() },
                offset: SourceOffset { position },
            })
            .collect(),
    };
    Ok(Json(OffsetsAnswer { offsets }))
}

/// `DELETE /connectors/{name}/offsets` (connector STOPPED): forgets every offset.
pub(super) async fn reset(State(state): State<AdminState>, Path(name): Path<String>) -> Result<Json<Message>, ApiError> {
    state.manager.alter_offsets(&name, OffsetsChange::Reset).await?;
    Ok(Json(Message { message: "The offsets for this connector have been reset successfully".to_owned() }))
}

/// What a sink's and a source's offsets look like, for refusals.
const SINK_SHAPE: &str = "a sink connector's offsets look like {\"partition\": {\"kafka_topic\": \"t\", \"kafka_partition\": 0}, \"offset\": {\"kafka_offset\": 42}} (offset null removes it)";

fn source_shape(name: &str) -> String {
    format!(
        "a source connector has one offset: {{\"partition\": {{\"connector\": \"{name}\"}}, \"offset\": {{\"position\": \"...\"}}}} (offset null removes it)"
    )
}

/// `PATCH /connectors/{name}/offsets` (connector STOPPED) with `{"offsets": [...]}`.
pub(super) async fn alter(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Message>, ApiError> {
    let body: OffsetsChangeRequest = serde_json::from_value(json_body(body)?)
        .ok()
        .filter(|body: &OffsetsChangeRequest| !body.offsets.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "the body must be {{\"offsets\": [{{\"partition\": {{...}}, \"offset\": {{...}}}}, ...]}} with at least one entry: {SINK_SHAPE}; {}",
                source_shape(&name)
            ))
        })?;
    let kind = state.manager.connector(&name)?.kind();
    let change = match kind {
        PluginKind::Source => source_change(&name, body.offsets)?,
        _ => OffsetsChange::Sink(body.offsets.into_iter().map(sink_change).collect::<Result<_, _>>()?),
    };
    state.manager.alter_offsets(&name, change).await?;
    Ok(Json(Message { message: "The offsets for this connector have been altered successfully".to_owned() }))
}

fn sink_change(entry: OffsetChange) -> Result<PartitionOffsetChange, ApiError> {
    let OffsetChange::Sink { partition, offset } = entry else { return Err(ApiError::bad_request(SINK_SHAPE.to_owned())) };
    if partition.kafka_partition < 0 || offset.as_ref().is_some_and(|offset| offset.kafka_offset < 0) {
        return Err(ApiError::bad_request(SINK_SHAPE.to_owned()));
    }
    Ok(PartitionOffsetChange {
        topic: partition.kafka_topic,
        partition: partition.kafka_partition,
        offset: offset.map(|offset| offset.kafka_offset),
    })
}

fn source_change(name: &str, entries: Vec<OffsetChange>) -> Result<OffsetsChange, ApiError> {
    let [OffsetChange::Source { partition, offset }] =
        <[OffsetChange; 1]>::try_from(entries).map_err(|_| ApiError::bad_request(source_shape(name)))?
    else {
        return Err(ApiError::bad_request(source_shape(name)));
    };
    if partition.connector != name {
        return Err(ApiError::bad_request(source_shape(name)));
    }
    Ok(OffsetsChange::Source(offset.map(|offset| offset.position)))
}
