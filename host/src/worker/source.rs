//! A source plugin as a task's input: each `poll` is a batch, and the source's
//! position after it is the batch's checkpoint (stored with its records).
//!
//! A retriable poll error (provider unreachable, a malformed answer) is retried with
//! backoff on the same instance; a throttle the source reports pauses polling until
//! the provider's window resets; an empty poll waits as long as the source asked;
//! items the source marks as unconvertible are failed records of the batch.

use std::time::{Duration, Instant, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use wasm_connect_protocol::{DEAD_LETTER_REASON_HEADER, decode, time::format_rfc3339};

use super::TaskError;
use super::backoff::Backoff;
use super::dead_letters::Stage;
use super::engine::{Batch, Checkpoint, FailedRecord};
use super::plugin::TaskPlugin;
use super::task::{TaskContext, pause};
use crate::capabilities::Throttle;
use crate::runtime::bindings::source::SourceBase;
use crate::runtime::{PluginFailure, PollOutcome, SourceInstance};
use crate::telemetry::{State, Throttled};

/// Longest wait between retries of a failed poll.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// What the source asked for after its last poll.
#[derive(Default)]
enum Then {
    /// Poll again at once.
    #[default]
    Poll,
    /// The poll was empty: wait this long first.
    Idle(Duration),
    /// The provider throttles the source: wait until its window resets.
    Throttled(Throttle),
    /// The source will never produce again.
    Finished,
}

/// A source plugin's polls.
pub struct SourceInput {
    plugin: TaskPlugin<SourceBase>,
    topic: String,
    retry: Backoff,
    retrying: bool,
    then: Then,
}

impl SourceInput {
    /// Opens the plugin at the connector's stored position.
    pub async fn open(task: &TaskContext) -> Result<Self, TaskError> {
        let topic = task.plan.config.topic.clone().expect("a source plan has a topic");
        let position = task.worker.transport.source_position(&task.plan.config.name).await?;
        let config = task.plan.plugin_config.clone();
        let plugin = TaskPlugin::open(task, move |instance: &mut SourceInstance| instance.open(&config, position.as_deref())).await?;
        Ok(Self { plugin, topic, retry: task.backoff(MAX_RETRY_DELAY), retrying: false, then: Then::Poll })
    }

    /// The next poll's batch; None when the task was stopped first.
    pub async fn next(&mut self, task: &TaskContext, cancel: &CancellationToken) -> Result<Option<Batch>, TaskError> {
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let batch_size = task.plan.config.batch_size;
            let outcome = match self.plugin.call(task, "poll", move |instance| instance.poll(batch_size)).await? {
                Ok(outcome) => outcome,
                Err(PluginFailure::Retriable(message)) => {
                    let message = task.redact(&message);
                    let delay = self.retry.next_delay();
                    task.metrics().poll_retry(&task.labels, &message, delay);
                    task.show(State::Running, Some(format!("retrying the poll: {message}")));
                    self.retrying = true;
                    if !pause(cancel, delay).await {
                        return Ok(None);
                    }
                    continue;
                }
                Err(failure) => return Err(failure.into()),
            };
            if self.retrying {
                self.retrying = false;
                self.retry.reset();
                task.show(State::Running, None);
            }
            let batch = split(&outcome, &self.topic, task)?;
            if !batch.records.is_empty() {
                task.metrics().records_polled(&task.labels, &batch.records);
            }
            self.then = if outcome.finished {
                Then::Finished
            } else if let Some(throttle) = outcome.throttle {
                Then::Throttled(throttle)
            } else if batch.records.is_empty() {
                Then::Idle(Duration::from_millis(u64::from(outcome.idle_millis).clamp(5, 5_000)))
            } else {
                Then::Poll
            };
            return Ok(Some(batch));
        }
    }

    /// Whether the source asked to be polled again at once after its last batch.
    pub fn goes_on_at_once(&self) -> bool {
        matches!(self.then, Then::Poll)
    }

    /// Waits as the source asked after the batch was delivered; false when the task
    /// was stopped first (or the source finished, and then the task was stopped).
    pub async fn rest(&mut self, task: &TaskContext, cancel: &CancellationToken) -> bool {
        match std::mem::take(&mut self.then) {
            Then::Poll => true,
            Then::Idle(idle) => pause(cancel, idle).await,
            Then::Throttled(throttle) => wait_out(task, throttle, cancel).await,
            Then::Finished => {
                tracing::info!(connector = %task.identity.connector, "The source has nothing more to produce; the task stays idle.");
                cancel.cancelled().await;
                false
            }
        }
    }
}

/// Holds a throttled source until its provider's window resets, showing it in status
/// and metrics meanwhile; false when cancelled first.
async fn wait_out(task: &TaskContext, throttle: Throttle, cancel: &CancellationToken) -> bool {
    let reason = task.redact(&throttle.reason);
    let resume_in = throttle.until.saturating_duration_since(Instant::now());
    let until_ms = throttle.until_wall.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
    task.metrics().source_throttled(&task.labels, &reason, resume_in);
    let shown = Throttled { reason, until: format_rfc3339(until_ms) };
    let status = &task.worker.status;
    status.set_task_throttled(&task.identity.connector, task.identity.task, Some(shown));
    let resumed = pause(cancel, resume_in).await;
    status.set_task_throttled(&task.identity.connector, task.identity.task, None);
    task.metrics().source_resumed(&task.labels);
    resumed
}

/// A poll's batch: the records for the topic, those the source marked unconvertible
/// (with their redacted reasons), and the position after them.
fn split(outcome: &PollOutcome, topic: &str, task: &TaskContext) -> Result<Batch, TaskError> {
    let mut batch = Batch { records: Vec::new(), failed: Vec::new(), checkpoint: Checkpoint::Position(outcome.position.clone()) };
    let views = decode(&outcome.batch).map_err(|error| PluginFailure::InvalidOutput(error.to_string()))?;
    for (index, view) in views.into_iter().enumerate() {
        let mut record = view.to_owned();
        if record.topic.is_empty() {
            record.topic = topic.to_owned();
        }
        record.partition = None;
        record.offset = None;
        if let Some(position) = record.headers.iter().position(|(name, _)| name == DEAD_LETTER_REASON_HEADER) {
            let (_, reason) = record.headers.remove(position);
            let reason = task.redact(&String::from_utf8_lossy(reason.as_deref().unwrap_or_default()));
            batch.failed.push(FailedRecord { index: index as u32, record, reason, stage: Stage::TaskPoll });
            continue;
        }
        if record.topic != topic {
            return Err(PluginFailure::InvalidOutput(format!(
                "record for topic {:?}, but this connector writes to {topic:?} only",
                record.topic
            ))
            .into());
        }
        batch.records.push(record);
    }
    Ok(batch)
}
