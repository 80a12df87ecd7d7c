//! The source loop: poll the plugin for a batch, hand the batch and the new source
//! position to the transport, wait until both are durable, poll again. One batch is in
//! flight at a time, so a slow transport slows its own source and nothing queues up.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasm_connect_protocol::{Record, decode};

use super::{ConnectorPlan, TaskError, WorkerContext, call_plugin};
use crate::runtime::{PluginFailure, SourceInstance, TaskIdentity};
use crate::telemetry::TaskLabels;

/// Runs one source task until cancelled (Ok) or failed (Err).
pub async fn run(
    context: &WorkerContext,
    plan: &ConnectorPlan,
    identity: &TaskIdentity,
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    let labels = TaskLabels::from(identity);
    let topic = plan.config.topic.clone().expect("a source plan has a topic");
    let position = context.transport.source_position(&plan.config.name).await?;
    let (runtime, plugin, task_identity, config) =
        (context.runtime.clone(), plan.plugin.clone(), identity.clone(), plan.plugin_config.clone());
    let ((), opened) = call_plugin((), move |_| -> Result<SourceInstance, PluginFailure> {
        let mut instance = SourceInstance::new(&runtime, &plugin, task_identity)?;
        instance.open(&config, position.as_deref())?;
        Ok(instance)
    })
    .await?;
    let mut instance = opened?;
    let mut producer = context.transport.producer(&plan.config.name).await?;
    let batch_size = plan.config.batch_size;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let started = Instant::now();
        let (returned, outcome) = call_plugin(instance, move |instance| instance.poll(batch_size)).await?;
        instance = returned;
        context.metrics.plugin_call(identity, "poll", started.elapsed());
        context.metrics.plugin_memory(&labels, instance.memory_bytes());
        let outcome = outcome?;
        let records: Vec<Record> = decode(&outcome.batch)
            .map_err(|error| PluginFailure::InvalidOutput(error.to_string()))?
            .iter()
            .map(|view| {
                let mut record = view.to_owned();
                if record.topic.is_empty() {
                    record.topic.clone_from(&topic);
                }
                record.partition = None;
                record.offset = None;
                record
            })
            .collect();
        if let Some(foreign) = records.iter().find(|record| record.topic != topic) {
            return Err(PluginFailure::InvalidOutput(format!(
                "record for topic {:?}, but this connector writes to {topic:?} only",
                foreign.topic
            ))
            .into());
        }
        let count = records.len();
        if count > 0 {
            context.metrics.records_in(&labels, count);
        }
        if count > 0 || outcome.position.is_some() {
            producer.send(records, outcome.position).await?;
            context.metrics.records_out(&labels, count);
        }
        if outcome.finished {
            tracing::info!(connector = %identity.connector, "The source has nothing more to produce; the task stays idle.");
            cancel.cancelled().await;
            return Ok(());
        }
        if count == 0 {
            let idle = Duration::from_millis(u64::from(outcome.idle_millis).clamp(5, 5_000));
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }
}
