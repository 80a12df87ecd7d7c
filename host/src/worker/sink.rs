//! A sink plugin as a task's output: a batch is delivered once the plugin's `write`
//! acknowledged it. A record the plugin refuses goes through the task's error policy
//! and the rest of the batch is written again; a retriable error retries the batch
//! with backoff for up to `errors.retry_timeout`; anything else fails the task.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasm_connect_protocol::{Record, encode};

use super::TaskError;
use super::dead_letters::{DeadLetters, Stage};
use super::plugin::TaskPlugin;
use super::task::{TaskContext, pause};
use crate::runtime::bindings::sink::SinkBase;
use crate::runtime::{PluginFailure, SinkInstance};
use crate::telemetry::State;

/// Longest wait between retries of a retriable write.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// A sink plugin's writes.
pub struct SinkOutput {
    plugin: TaskPlugin<SinkBase>,
}

impl SinkOutput {
    /// Opens the plugin with the connector's options.
    pub async fn open(task: &TaskContext) -> Result<Self, TaskError> {
        let config = task.plan.plugin_config.clone();
        let plugin = TaskPlugin::open(task, move |instance: &mut SinkInstance| instance.open(&config)).await?;
        Ok(Self { plugin })
    }

    /// Writes `pending` through the plugin; true once every record was written or
    /// went through the error policy, false when the task was stopped before that.
    pub async fn deliver(
        &mut self,
        task: &TaskContext,
        mut pending: Vec<Record>,
        dead_letters: &mut DeadLetters,
        cancel: &CancellationToken,
    ) -> Result<bool, TaskError> {
        let errors = &task.plan.config.errors;
        let mut retry = task.backoff(MAX_RETRY_DELAY);
        let mut retrying_since: Option<Instant> = None;
        let mut retries = 0;
        while !pending.is_empty() {
            let batch = encode(&pending);
            match self.plugin.call(task, "write", move |instance| instance.write(batch)).await? {
                Ok(()) => {
                    task.metrics().records_written(&task.labels, &pending);
                    if retrying_since.is_some() {
                        task.metrics().write_recovered(&task.labels, retries);
                        task.show(State::Running, None);
                    }
                    return Ok(true);
                }
                Err(PluginFailure::BadRecord { index, reason }) if (index as usize) < pending.len() => {
                    let refused = pending.remove(index as usize);
                    dead_letters.reject(task, refused, task.redact(&reason), Stage::TaskPut, index).await?;
                }
                Err(PluginFailure::Retriable(message)) => {
                    let message = task.redact(&message);
                    let since = *retrying_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= errors.retry_timeout {
                        return Err(TaskError::RetriesExhausted { timeout: errors.retry_timeout, last: message });
                    }
                    retries += 1;
                    let delay = retry.next_delay();
                    task.metrics().write_retry(&task.labels, &message, delay);
                    task.show(State::Running, Some(format!("retrying a batch since {}s ago: {message}", since.elapsed().as_secs())));
                    if !pause(cancel, delay).await {
                        return Ok(false);
                    }
                }
                Err(failure) => return Err(failure.into()),
            }
        }
        Ok(true)
    }
}
