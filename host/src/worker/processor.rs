//! A stream processor as a task's last stage: it takes the batch the transforms left,
//! returns its results in the batch's place, and turns the batch's input offsets into
//! a checkpoint that also holds the state changes, which the topic output stores in
//! the same atomic write as the results. A restarted task takes its state back from
//! the last checkpoint, so every result is emitted once.
//!
//! An empty batch (the input was idle) runs the processor's wall-clock timers.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasm_connect_protocol::Record;

use super::TaskError;
use super::dead_letters::{DeadLetters, Stage};
use super::engine::{Batch, Checkpoint, FailedRecord};
use super::task::TaskContext;
use crate::processing::wasm::WasmProcessor;
use crate::processing::{Processed, Processor, build_processor, wall_clock_ms};
use crate::runtime::{PluginFailure, PluginOrigin};
use crate::transport::{ProcessorCheckpoint, StartAt, TopicReader};

/// The most records of a table topic read at once.
const TABLE_CHUNK: usize = 5_000;
/// The most chunks of a table taken in before one batch: a table written faster than
/// it is read cannot hold the input back.
const TABLE_CHUNKS_PER_BATCH: usize = 20;

/// The processor of one task, with its state.
pub struct ProcessorStage {
    /// Taken while a batch runs on a blocking thread.
    processor: Option<Box<dyn Processor>>,
    /// Readers of the processor's table topics, from their beginning.
    tables: Vec<(String, Box<dyn TopicReader>)>,
}

impl ProcessorStage {
    /// Builds the connector's processor, gives it back the state of `partitions` and
    /// reads its tables (waiting for an empty one's first records until `cancel`).
    pub async fn open(task: &TaskContext, partitions: &[i32], cancel: &CancellationToken) -> Result<Self, TaskError> {
        let plugin = &task.plan.plugin;
        let mut processor: Box<dyn Processor> = if plugin.origin == PluginOrigin::Builtin {
            build_processor(&plugin.description.name, &task.plan.plugin_config).map_err(|problems| {
                let problems: Vec<String> = problems.into_iter().map(|(key, message)| format!("config.{key}: {message}")).collect();
                PluginFailure::BadConfig(problems.join("; "))
            })?
        } else {
            let (runtime, plugin, identity, access, config) =
                (task.worker.runtime.clone(), plugin.clone(), task.identity.clone(), task.access(), task.plan.plugin_config.clone());
            tokio::task::spawn_blocking(move || WasmProcessor::new(&runtime, &plugin, identity, access, config).map(Box::new))
                .await
                .map_err(|error| PluginFailure::Fatal(format!("instantiating the processor failed in the host: {error}")))??
        };
        let entries = task.worker.transport.processor_state(&task.plan.config.name, Some(partitions)).await?;
        let restored = entries.len();
        let assigned = partitions.to_vec();
        let processor = tokio::task::spawn_blocking(move || {
            processor
                .restore(entries)
                .map_err(|reason| PluginFailure::BadConfig(format!("the processor's stored state cannot be used: {reason}")))?;
            processor.assign(&assigned, crate::processing::wall_clock_ms());
            match processor.take_failure() {
                Some(failure) => Err(failure),
                None => Ok(processor),
            }
        })
        .await
        .map_err(|error| PluginFailure::Fatal(format!("restoring the processor's state failed in the host: {error}")))??;
        tracing::info!(
            connector = %task.identity.connector, task = task.identity.task, partitions = partitions.len(), keys = restored,
            "The processor took back its state."
        );
        let mut tables = Vec::new();
        let mut wait_when_empty = Duration::ZERO;
        for table in processor.tables() {
            task.worker.transport.ensure_topics(std::slice::from_ref(&table.topic)).await?;
            let reader = task.worker.transport.reader(&table.topic, None, StartAt::Beginning).await?;
            tables.push((table.topic, reader));
            wait_when_empty = wait_when_empty.max(table.wait_when_empty);
        }
        let mut stage = Self { processor: Some(processor), tables };
        // A table is read whole before the first batch, as a GlobalKTable is; an empty
        // one is waited for a while (its source may be starting beside this task).
        let started = std::time::Instant::now();
        let mut table_records = stage.read_tables(true, cancel).await?;
        while table_records == 0 && !stage.tables.is_empty() && started.elapsed() < wait_when_empty && !cancel.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            table_records += stage.read_tables(false, cancel).await?;
        }
        if table_records == 0 && !stage.tables.is_empty() {
            let topics: Vec<&str> = stage.tables.iter().map(|(topic, _)| topic.as_str()).collect();
            tracing::warn!(
                connector = %task.identity.connector, task = task.identity.task, tables = ?topics,
                "The processor's table is empty after its wait: records are joined against nothing until it fills (is the table topic's name right?)."
            );
        }
        if !stage.tables.is_empty() {
            tracing::info!(
                connector = %task.identity.connector, task = task.identity.task, records = table_records,
                seconds = started.elapsed().as_secs_f64(), "The processor read its tables."
            );
        }
        Ok(stage)
    }

    /// Feeds the table topics' new records to the processor: all of them up to each
    /// table's end as it was when it was opened (`whole`), else what is there now, in
    /// bounded chunks. Returns how many records were read.
    async fn read_tables(&mut self, whole: bool, cancel: &CancellationToken) -> Result<usize, TaskError> {
        let mut read = 0;
        for index in 0..self.tables.len() {
            let (mut chunks, mut empty_reads) = (0, 0);
            loop {
                let (topic, reader) = &mut self.tables[index];
                // Behind the end it had when opened: keep reading, unless the task stops
                // or nothing comes for 5 s (retention removed the table's last records).
                let behind = whole && !reader.caught_up() && empty_reads < 25 && !cancel.is_cancelled();
                if !behind && chunks >= TABLE_CHUNKS_PER_BATCH {
                    break;
                }
                let wait = if behind { Duration::from_millis(200) } else { Duration::ZERO };
                let records = reader.next(TABLE_CHUNK, wait).await?;
                if records.is_empty() {
                    if !behind {
                        break;
                    }
                    empty_reads += 1;
                    continue;
                }
                empty_reads = 0;
                chunks += 1;
                read += records.len();
                let topic = topic.clone();
                self.on_thread(move |processor| processor.update_table(&topic, records))
                    .await?
                    .map_err(|reason| TaskError::from(PluginFailure::BadConfig(reason)))?;
            }
        }
        Ok(read)
    }

    /// Runs `work` on the processor on a blocking thread (it may take a while).
    async fn on_thread<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Box<dyn Processor>) -> T + Send + 'static,
    ) -> Result<T, TaskError> {
        let mut processor =
            self.processor.take().ok_or_else(|| PluginFailure::Fatal("the processor was lost in an earlier batch".to_owned()))?;
        let (processor, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut processor);
            (processor, result)
        })
        .await
        .map_err(|error| PluginFailure::Fatal(format!("the processor's thread failed: {error}")))?;
        self.processor = Some(processor);
        Ok(result)
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
        let idle = records.is_empty() && offsets.is_empty();
        if !self.tables.is_empty() {
            self.read_tables(false, &CancellationToken::new()).await?;
        }
        let (processed, state, failure) = self
            .on_thread(move |processor| {
                let mut processed = Processed::default();
                let now = wall_clock_ms();
                // The built-in processors' wall-clock timers fire only while the input is
                // idle (a poll brought nothing, not a batch the transforms emptied): a
                // backlog (a restart after downtime) moves stream time instead, and closing
                // its windows by the wall clock would make the rest of their records late.
                // A plugin's wall-clock timers also fire after each batch (it set them
                // knowing that).
                if idle {
                    processor.fire_timers(now, &mut processed);
                } else {
                    processor.process(records, now, &mut processed);
                }
                let state = processor.take_changes();
                (processed, state, processor.take_failure())
            })
            .await?;
        // A failed call's results and state changes are dropped with the batch: the
        // task starts again from the last checkpoint.
        if let Some(failure) = failure {
            return Err(failure.into());
        }
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
        let routes = self.processor.as_ref().is_some_and(|processor| processor.routes_records());
        let mut routed = Vec::with_capacity(records.len());
        for record in records {
            if !routes || record.topic.is_empty() {
                routed.push(Record { topic: topic.clone(), ..record });
                continue;
            }
            let refused = match crate::config::check_topic_name(&record.topic) {
                Err(problem) => format!("the processor routed a record to a topic it cannot have: {problem}"),
                Ok(()) if task.plan.config.topics.contains(&record.topic) => {
                    format!("the processor routed a record to {}, which it reads: its output would come back to it as input", record.topic)
                }
                Ok(()) => {
                    routed.push(record);
                    continue;
                }
            };
            let stage = Stage::Transformation { type_name: type_name.clone() };
            failed.push(FailedRecord { index: failed.len() as u32, record, reason: refused, stage });
        }
        let records = routed;
        Ok(Batch { records, failed, checkpoint: Checkpoint::Processed(ProcessorCheckpoint { offsets, state }) })
    }
}
