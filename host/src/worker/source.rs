//! The source loop: poll the plugin for a batch, hand the batch and the new source
//! position to the transport, wait until both are durable, poll again. One batch is in
//! flight at a time, so a slow transport slows its own source and nothing queues up.
//!
//! A retriable poll error (provider unreachable, a malformed answer) is retried with
//! backoff on the same instance; a throttle the source reports pauses polling until
//! the provider's window resets; items the source marks as unconvertible go to the
//! dead-letter topic before the batch's position is stored, so nothing is lost.

use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use wasm_connect_protocol::{DEAD_LETTER_REASON_HEADER, Record, decode, time::format_rfc3339};

use super::dead_letters::{DeadLetters, Stage};
use super::outage::{OutageReport, SEND_PATIENCE};
use super::{ConnectorPlan, TaskError, WorkerContext, call_plugin};
use crate::capabilities::Throttle;
use crate::runtime::{PluginFailure, PollOutcome, SourceInstance, TaskAccess, TaskIdentity};
use crate::telemetry::{State, TaskLabels, Throttled, payload_bytes};
use crate::transport::RecordProducer;

/// Longest wait between retries of a failed poll.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// How long a stopping source still waits for the transport to take its batch in
/// flight; after that the batch comes again from the stored position at the next start.
const STOP_GRACE: Duration = Duration::from_secs(10);

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
    let access = TaskAccess { grants: plan.grants.clone(), secrets: plan.secrets.clone().into(), metrics: Some(context.metrics.clone()) };
    let (runtime, plugin, task_identity, config) =
        (context.runtime.clone(), plan.plugin.clone(), identity.clone(), plan.plugin_config.clone());
    let ((), opened) = call_plugin((), move |_| -> Result<SourceInstance, PluginFailure> {
        let mut instance = SourceInstance::new(&runtime, &plugin, task_identity, access)?;
        instance.open(&config, position.as_deref())?;
        Ok(instance)
    })
    .await?;
    let mut instance = opened?;
    let mut producer = context.transport.producer(&plan.config.name).await?;
    let mut dead_letters = DeadLetters::default();
    let batch_size = plan.config.batch_size;
    let mut retry_delay = context.restart_backoff;
    let mut retrying = false;
    let mut outage = OutageReport::default();
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let started = Instant::now();
        let (returned, outcome) = call_plugin(instance, move |instance| instance.poll(batch_size)).await?;
        instance = returned;
        context.metrics.plugin_call(identity, "poll", started.elapsed());
        context.metrics.plugin_memory(&labels, instance.memory_bytes());
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(PluginFailure::Retriable(message)) => {
                let message = plan.redact(&message);
                context.metrics.poll_retry(&labels, &message, retry_delay);
                context.status.set_task(&identity.connector, identity.task, State::Running, Some(format!("retrying the poll: {message}")));
                retrying = true;
                if !pause(cancel, retry_delay).await {
                    return Ok(());
                }
                retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY).min(context.max_restart_backoff);
                continue;
            }
            Err(failure) => return Err(failure.into()),
        };
        if retrying {
            retrying = false;
            retry_delay = context.restart_backoff;
            context.status.set_task(&identity.connector, identity.task, State::Running, None);
        }
        let records = split_dead_letters(&outcome, &topic, plan)?;
        for (record, reason) in records.dead {
            context.metrics.record_failed(&labels);
            if !plan.tolerates_errors() {
                return Err(TaskError::Intolerable(PluginFailure::BadRecord { index: 0, reason }));
            }
            dead_letters.send(context, plan, identity, record, &reason, Stage::TaskPoll).await?;
        }
        let count = records.live.len();
        if count > 0 {
            context.metrics.records_polled(&labels, &records.live);
        }
        if count > 0 || outcome.position.is_some() {
            let bytes = payload_bytes(&records.live);
            if !send_watched(context, identity, producer.as_mut(), records.live, outcome.position, &mut outage, cancel).await? {
                return Ok(());
            }
            context.metrics.records_produced(&labels, count, bytes);
        }
        if outcome.finished {
            tracing::info!(connector = %identity.connector, "The source has nothing more to produce; the task stays idle.");
            cancel.cancelled().await;
            return Ok(());
        }
        if let Some(throttle) = outcome.throttle {
            if !wait_out(context, plan, identity, &labels, throttle, cancel).await {
                return Ok(());
            }
        } else if count == 0 {
            let idle = Duration::from_millis(u64::from(outcome.idle_millis).clamp(5, 5_000));
            if !pause(cancel, idle).await {
                return Ok(());
            }
        }
    }
}

/// Hands a batch and its position to the transport and waits until both are durable;
/// while that takes longer than a healthy cluster would, the task shows the outage.
/// False when the task was stopped and the batch was not taken within `STOP_GRACE`.
async fn send_watched(
    context: &WorkerContext,
    identity: &TaskIdentity,
    producer: &mut dyn RecordProducer,
    records: Vec<Record>,
    position: Option<String>,
    outage: &mut OutageReport,
    cancel: &CancellationToken,
) -> Result<bool, TaskError> {
    let started = Instant::now();
    let sending = producer.send(records, position);
    tokio::pin!(sending);
    let mut give_up_at = None;
    loop {
        tokio::select! {
            sent = &mut sending => {
                outage.update(context, identity, None);
                sent?;
                return Ok(true);
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if started.elapsed() >= SEND_PATIENCE {
            let reason = crate::transport::kafka::last_client_error()
                .unwrap_or_else(|| "the cluster has not acknowledged the last batch".to_owned());
            outage.update(context, identity, Some((started.elapsed(), reason)));
        }
        if cancel.is_cancelled() && Instant::now() >= *give_up_at.get_or_insert_with(|| Instant::now() + STOP_GRACE) {
            tracing::warn!(
                connector = %identity.connector, task = identity.task,
                "The task stopped before the Kafka cluster took its last batch; the batch is produced again from the stored position at the next start."
            );
            return Ok(false);
        }
    }
}

/// Sleeps for `delay`; false when cancelled first.
async fn pause(cancel: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Holds a throttled source until its provider's window resets, showing it in status
/// and metrics meanwhile; false when cancelled first.
async fn wait_out(
    context: &WorkerContext,
    plan: &ConnectorPlan,
    identity: &TaskIdentity,
    labels: &TaskLabels,
    throttle: Throttle,
    cancel: &CancellationToken,
) -> bool {
    let reason = plan.redact(&throttle.reason);
    let resume_in = throttle.until.saturating_duration_since(Instant::now());
    let until_ms = throttle.until_wall.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
    context.metrics.source_throttled(labels, &reason, resume_in);
    let shown = Throttled { reason, until: format_rfc3339(until_ms) };
    context.status.set_task_throttled(&identity.connector, identity.task, Some(shown));
    let resumed = pause(cancel, resume_in).await;
    context.status.set_task_throttled(&identity.connector, identity.task, None);
    context.metrics.source_resumed(labels);
    resumed
}

/// A poll's records: those for the topic, and those the source marked unconvertible
/// with their (redacted) reasons.
struct SplitRecords {
    live: Vec<Record>,
    dead: Vec<(Record, String)>,
}

fn split_dead_letters(outcome: &PollOutcome, topic: &str, plan: &ConnectorPlan) -> Result<SplitRecords, TaskError> {
    let mut split = SplitRecords { live: Vec::new(), dead: Vec::new() };
    for view in decode(&outcome.batch).map_err(|error| PluginFailure::InvalidOutput(error.to_string()))? {
        let mut record = view.to_owned();
        if record.topic.is_empty() {
            record.topic = topic.to_owned();
        }
        record.partition = None;
        record.offset = None;
        if let Some(position) = record.headers.iter().position(|(name, _)| name == DEAD_LETTER_REASON_HEADER) {
            let (_, reason) = record.headers.remove(position);
            let reason = plan.redact(&String::from_utf8_lossy(reason.as_deref().unwrap_or_default()));
            split.dead.push((record, reason));
            continue;
        }
        if record.topic != topic {
            return Err(PluginFailure::InvalidOutput(format!(
                "record for topic {:?}, but this connector writes to {topic:?} only",
                record.topic
            ))
            .into());
        }
        split.live.push(record);
    }
    Ok(split)
}
