//! A stream processor as a task's last stage: it takes the batch the transforms left,
//! returns its results in the batch's place, and turns the batch's input offsets into
//! a checkpoint that also holds the state changes, which the topic output stores in
//! the same atomic write as the results. A restarted task takes its state back from
//! the last checkpoint, so every result is emitted once.
//!
//! An empty batch (the input was idle) runs the processor's wall-clock timers.

use wasm_connect_protocol::Record;

use super::TaskError;
use super::dead_letters::{DeadLetters, Stage};
use super::engine::{Batch, Checkpoint, FailedRecord};
use super::task::TaskContext;
use crate::processing::{Processed, Processor, build_processor, wall_clock_ms};
use crate::runtime::PluginFailure;
use crate::transport::ProcessorCheckpoint;

/// The processor of one task, with its state.
pub struct ProcessorStage {
    /// Taken while a batch runs on a blocking thread.
    processor: Option<Box<dyn Processor>>,
}

impl ProcessorStage {
    /// Builds the connector's processor and gives it back the state of `partitions`.
    pub async fn open(task: &TaskContext, partitions: &[i32]) -> Result<Self, TaskError> {
        let transport = task.worker.transport.name();
        if transport != "embedded" {
            // Restarting cannot help: the task fails and says what to change.
            return Err(PluginFailure::BadConfig(crate::transport::processors_unsupported(transport).to_string()).into());
        }
        let name = &task.plan.plugin.description.name;
        let mut processor = build_processor(name, &task.plan.plugin_config).map_err(|problems| {
            let problems: Vec<String> = problems.into_iter().map(|(key, message)| format!("config.{key}: {message}")).collect();
            PluginFailure::BadConfig(problems.join("; "))
        })?;
        let entries = task.worker.transport.processor_state(&task.plan.config.name, Some(partitions)).await?;
        let restored = entries.len();
        let processor = tokio::task::spawn_blocking(move || processor.restore(entries).map(|()| processor))
            .await
            .map_err(|error| PluginFailure::Fatal(format!("restoring the processor's state failed in the host: {error}")))?
            .map_err(|reason| PluginFailure::Fatal(format!("the processor's stored state cannot be read: {reason}")))?;
        tracing::info!(
            connector = %task.identity.connector, task = task.identity.task, partitions = partitions.len(), keys = restored,
            "The processor took back its state."
        );
        Ok(Self { processor: Some(processor) })
    }

    /// Runs the batch's records (none: only the timers) through the processor. Late
    /// records go to the dead-letter topic at once; records it could not use join the
    /// batch's failed records.
    pub async fn process(&mut self, task: &TaskContext, batch: Batch, dead_letters: &mut DeadLetters) -> Result<Batch, TaskError> {
        let Batch { records, mut failed, checkpoint } = batch;
        let offsets = match checkpoint {
            Checkpoint::Offsets(offsets) => offsets,
            other => return Err(PluginFailure::Fatal(format!("a processor's batch came with the checkpoint {other:?}")).into()),
        };
        let mut processor =
            self.processor.take().ok_or_else(|| PluginFailure::Fatal("the processor was lost in an earlier batch".to_owned()))?;
        let idle = records.is_empty() && offsets.is_empty();
        let (processor, processed, state) = tokio::task::spawn_blocking(move || {
            let mut processed = Processed::default();
            let now = wall_clock_ms();
            // Wall-clock timers fire only while the input is idle (a poll brought nothing,
            // not a batch the transforms emptied): a backlog (a restart after downtime)
            // moves stream time instead, and closing its windows by the wall clock would
            // make the rest of their records late.
            if idle {
                processor.fire_timers(now, &mut processed);
            } else {
                processor.process(records, now, &mut processed);
            }
            let state = processor.take_changes();
            (processor, processed, state)
        })
        .await
        .map_err(|error| PluginFailure::Fatal(format!("the processor's thread failed: {error}")))?;
        self.processor = Some(processor);
        let Processed { records, failed: refused, late } = processed;
        let type_name = task.plan.plugin.description.name.clone();
        for (index, (record, reason)) in refused.into_iter().enumerate() {
            let stage = Stage::Transformation { type_name: type_name.clone() };
            failed.push(FailedRecord { index: index as u32, record, reason: task.redact(&reason), stage });
        }
        for (record, reason) in late {
            dead_letters.divert(task, record, task.redact(&reason), Stage::Transformation { type_name: type_name.clone() }).await?;
        }
        let topic = task.plan.config.topic.clone().unwrap_or_default();
        let records: Vec<Record> = records.into_iter().map(|record| Record { topic: topic.clone(), ..record }).collect();
        Ok(Batch { records, failed, checkpoint: Checkpoint::Processed(ProcessorCheckpoint { offsets, state }) })
    }
}
