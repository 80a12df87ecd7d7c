//! The sink loop: consume a batch, hand it to the plugin, and commit its offsets only
//! after the plugin acknowledged it. A refused record goes to the dead-letter topic
//! (with Kafka Connect's error headers) when errors are tolerated; a retriable error
//! retries the same batch with backoff; anything else fails the task, and the
//! restarted task re-reads from the last committed offsets.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasm_connect_protocol::{Record, encode};

use super::dead_letters::{DeadLetters, Stage};
use super::outage::OutageReport;
use super::{ConnectorPlan, TaskError, WorkerContext, call_plugin};
use crate::runtime::{PluginFailure, SinkInstance, TaskAccess, TaskIdentity};
use crate::telemetry::{State, TaskLabels};
use crate::transport::{RecordConsumer, TaskShare};

/// How long one consumer poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// How often a task measures its consumer lag.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait between retries of a retriable write.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Runs one sink task until cancelled (Ok) or failed (Err).
pub async fn run(
    context: &WorkerContext,
    plan: &ConnectorPlan,
    identity: &TaskIdentity,
    share: TaskShare,
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    let mut consumer = context.transport.consumer(&plan.config.name, &plan.config.topics, share).await?;
    let result = consume(context, plan, identity, consumer.as_mut(), cancel).await;
    // Commit what was acknowledged even when the task failed.
    let closed = consumer.close().await;
    result?;
    closed?;
    Ok(())
}

async fn consume(
    context: &WorkerContext,
    plan: &ConnectorPlan,
    identity: &TaskIdentity,
    consumer: &mut dyn RecordConsumer,
    cancel: &CancellationToken,
) -> Result<(), TaskError> {
    let labels = TaskLabels::from(identity);
    let access = TaskAccess { grants: plan.grants.clone(), secrets: plan.secrets.clone().into(), metrics: Some(context.metrics.clone()) };
    let (runtime, plugin, task_identity, config) =
        (context.runtime.clone(), plan.plugin.clone(), identity.clone(), plan.plugin_config.clone());
    let ((), opened) = call_plugin((), move |_| -> Result<SinkInstance, PluginFailure> {
        let mut instance = SinkInstance::new(&runtime, &plugin, task_identity, access)?;
        instance.open(&config)?;
        Ok(instance)
    })
    .await?;
    let mut sink = opened?;
    let mut dead_letters = DeadLetters::default();
    let mut lag_measured = Instant::now() - LAG_INTERVAL;
    let mut outage = OutageReport::default();
    loop {
        let records = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            records = consumer.poll(plan.config.batch_size as usize, POLL_WAIT) => records?,
        };
        if lag_measured.elapsed() >= LAG_INTERVAL {
            lag_measured = Instant::now();
            match consumer.lag().await {
                Ok(lag) => context.metrics.consumer_lag(&labels, lag),
                Err(error) => tracing::debug!(connector = %identity.connector, %error, "The consumer lag could not be measured."),
            }
        }
        outage.update(context, identity, consumer.outage());
        let skipped = consumer.skipped_by_offset_reset();
        if skipped > 0 {
            context.metrics.records_skipped(&labels, skipped);
        }
        if records.is_empty() {
            continue;
        }
        context.metrics.records_consumed(&labels, &records);
        let (returned, delivered) = deliver(context, plan, identity, sink, &mut dead_letters, records.clone(), cancel).await?;
        sink = returned;
        if !delivered {
            // Cancelled while retrying: leave the batch uncommitted for the next run.
            return Ok(());
        }
        consumer.commit(&records).await?;
    }
}

/// Writes `pending` through the plugin; true once every record was written or
/// dead-lettered, false when cancelled before that. Hands the instance back.
async fn deliver(
    context: &WorkerContext,
    plan: &ConnectorPlan,
    identity: &TaskIdentity,
    mut sink: SinkInstance,
    dead_letters: &mut DeadLetters,
    mut pending: Vec<Record>,
    cancel: &CancellationToken,
) -> Result<(SinkInstance, bool), TaskError> {
    let labels = TaskLabels::from(identity);
    let errors = &plan.config.errors;
    let mut retry_delay = context.restart_backoff;
    let mut retrying_since: Option<Instant> = None;
    let mut retries = 0;
    while !pending.is_empty() {
        let batch = encode(&pending);
        let started = Instant::now();
        let (returned, written) = call_plugin(sink, move |instance| instance.write(batch)).await?;
        sink = returned;
        context.metrics.plugin_call(identity, "write", started.elapsed());
        context.metrics.plugin_memory(&labels, sink.memory_bytes());
        match written {
            Ok(()) => {
                context.metrics.records_written(&labels, &pending);
                if retrying_since.is_some() {
                    context.metrics.write_recovered(&labels, retries);
                    context.status.set_task(&identity.connector, identity.task, State::Running, None);
                }
                return Ok((sink, true));
            }
            Err(PluginFailure::BadRecord { index, reason }) if (index as usize) < pending.len() => {
                let reason = plan.redact(&reason);
                let refused = pending.remove(index as usize);
                context.metrics.record_failed(&labels);
                if errors.log {
                    tracing::warn!(
                        connector = %identity.connector, task = identity.task, topic = refused.topic,
                        partition = refused.partition.unwrap_or(-1), offset = refused.offset.unwrap_or(-1), reason,
                        "The sink refused a record."
                    );
                }
                let failure = PluginFailure::BadRecord { index, reason: reason.clone() };
                if !plan.tolerates_errors() {
                    return Err(TaskError::Intolerable(failure_at(failure, &refused)));
                }
                dead_letters.send(context, plan, identity, refused, &reason, Stage::TaskPut).await?;
            }
            Err(PluginFailure::Retriable(message)) => {
                let message = plan.redact(&message);
                let since = *retrying_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= errors.retry_timeout {
                    return Err(TaskError::RetriesExhausted { timeout: errors.retry_timeout, last: message });
                }
                retries += 1;
                context.metrics.write_retry(&labels, &message, retry_delay);
                context.status.set_task(
                    &identity.connector,
                    identity.task,
                    State::Running,
                    Some(format!("retrying a batch since {}s ago: {message}", since.elapsed().as_secs())),
                );
                tokio::select! {
                    _ = cancel.cancelled() => return Ok((sink, false)),
                    _ = tokio::time::sleep(retry_delay) => {}
                }
                retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY).min(context.max_restart_backoff);
            }
            Err(failure) => return Err(failure.into()),
        }
    }
    Ok((sink, true))
}

/// A bad-record failure that says which record it was.
fn failure_at(failure: PluginFailure, record: &Record) -> PluginFailure {
    match failure {
        PluginFailure::BadRecord { index, reason } => PluginFailure::BadRecord {
            index,
            reason: format!(
                "{reason} (topic {}, partition {}, offset {})",
                record.topic,
                record.partition.unwrap_or(-1),
                record.offset.unwrap_or(-1)
            ),
        },
        other => other,
    }
}
