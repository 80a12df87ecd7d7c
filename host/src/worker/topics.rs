//! Topics as a task's input and output. A topic input is the connector's consumer:
//! a batch's checkpoint is the next offset of each partition it read, committed once
//! the output acknowledged the batch. A topic output is a producer: it stores a
//! source position, or a processor's offsets and state changes, in the same write as
//! the batch's records, and shows an outage
//! while the cluster does not take them.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasm_connect_protocol::Record;

use super::TaskError;
use super::engine::{Batch, Checkpoint};
use super::outage::{OutageReport, SEND_PATIENCE};
use super::task::TaskContext;
use crate::runtime::PluginKind;
use crate::telemetry::payload_bytes;
use crate::transport::{ProcessorCheckpoint, RecordConsumer, RecordProducer, next_offsets};

/// How long one consumer poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// How often a task measures its consumer lag.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// How often a task shows how many partitions it reads.
const ASSIGNMENT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping task still waits for the transport to take its batch in
/// flight; after that the batch comes again from the stored position at the next start.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The connector's topics, read through its consumer group.
pub struct TopicInput {
    consumer: Box<dyn RecordConsumer>,
    /// Whether an empty poll still makes a batch (an empty one): a processor's timers
    /// fire while its input is idle.
    empty_batches: bool,
    lag_measured: Instant,
    assignment_shown: Instant,
    outage: OutageReport,
}

impl TopicInput {
    /// Joins the connector's consumer group with this task's share of the partitions.
    pub async fn open(task: &TaskContext) -> Result<Self, TaskError> {
        let config = &task.plan.config;
        let empty_batches = task.plan.kind() == PluginKind::Processor;
        let transport = &task.worker.transport;
        let consumer = if empty_batches {
            transport.processor_consumer(&config.name, &config.topics, task.share).await?
        } else {
            transport.consumer(&config.name, &config.topics, task.share).await?
        };
        let long_ago = Instant::now() - LAG_INTERVAL;
        Ok(Self { consumer, empty_batches, lag_measured: long_ago, assignment_shown: long_ago, outage: OutageReport::default() })
    }

    /// The next records; None when the task was stopped first.
    pub async fn next(&mut self, task: &TaskContext, cancel: &CancellationToken) -> Result<Option<Batch>, TaskError> {
        loop {
            let records = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(None),
                records = self.consumer.poll(task.plan.config.batch_size as usize, POLL_WAIT) => records?,
            };
            if self.lag_measured.elapsed() >= LAG_INTERVAL {
                self.lag_measured = Instant::now();
                match self.consumer.lag().await {
                    Ok(lag) => task.metrics().consumer_lag(&task.labels, lag),
                    Err(error) => tracing::debug!(connector = %task.identity.connector, %error, "The consumer lag could not be measured."),
                }
            }
            if self.assignment_shown.elapsed() >= ASSIGNMENT_INTERVAL {
                self.assignment_shown = Instant::now();
                task.metrics().assigned_partitions(&task.labels, self.consumer.assigned_partitions());
            }
            self.outage.update(task, self.consumer.outage());
            let skipped = self.consumer.skipped_by_offset_reset();
            if skipped > 0 {
                task.metrics().records_skipped(&task.labels, skipped);
            }
            if records.is_empty() {
                if self.empty_batches {
                    return Ok(Some(Batch { records, failed: Vec::new(), checkpoint: Checkpoint::Offsets(Vec::new()) }));
                }
                continue;
            }
            task.metrics().records_consumed(&task.labels, &records);
            let checkpoint = Checkpoint::Offsets(next_offsets(&records));
            return Ok(Some(Batch { records, failed: Vec::new(), checkpoint }));
        }
    }

    /// Commits the offsets of a delivered batch.
    pub async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), TaskError> {
        if let Checkpoint::Offsets(offsets) = checkpoint {
            self.consumer.commit(offsets).await?;
        }
        Ok(())
    }

    /// The partition numbers the consumer reads.
    pub fn partition_numbers(&self) -> Vec<i32> {
        self.consumer.partition_numbers()
    }

    /// Commits what was acknowledged and leaves the group.
    pub async fn close(&mut self) -> Result<(), TaskError> {
        Ok(self.consumer.close().await?)
    }
}

/// The connector's topic, written through a producer.
pub struct TopicOutput {
    producer: Box<dyn RecordProducer>,
    outage: OutageReport,
    /// The last source position this output stored: an idle source that reports it
    /// again with no record costs no write (on Kafka, no transaction).
    stored_position: Option<String>,
}

impl TopicOutput {
    /// A producer for the connector (for a processor, the task's own).
    pub async fn open(task: &TaskContext) -> Result<Self, TaskError> {
        let (transport, config) = (&task.worker.transport, &task.plan.config);
        let producer = match task.plan.kind() {
            PluginKind::Processor => transport.processor_producer(&config.name, task.share, &config.topics).await?,
            _ => transport.source_producer(&config.name).await?,
        };
        Ok(Self { producer, outage: OutageReport::default(), stored_position: None })
    }

    /// Hands the batch, and the source position its checkpoint holds, to the transport
    /// and waits until both are durable; false when the task was stopped and the batch
    /// was not taken within `STOP_GRACE`.
    pub async fn deliver(
        &mut self,
        task: &TaskContext,
        records: Vec<Record>,
        checkpoint: &Checkpoint,
        cancel: &CancellationToken,
    ) -> Result<bool, TaskError> {
        let (position, processed) = match checkpoint {
            Checkpoint::Position(position) => (position.clone(), None),
            Checkpoint::Offsets(_) => (None, None),
            Checkpoint::Processed(processed) => (None, Some(processed.clone())),
        };
        let nothing_to_store = processed.as_ref().is_none_or(|processed| processed.offsets.is_empty() && processed.state.is_empty());
        if !needs_write(&records, position.as_deref(), self.stored_position.as_deref(), nothing_to_store) {
            return Ok(true);
        }
        let (count, bytes) = (records.len(), payload_bytes(&records));
        if !self.send_watched(task, records, position.clone(), processed, cancel).await? {
            return Ok(false);
        }
        if position.is_some() {
            self.stored_position = position;
        }
        task.metrics().records_produced(&task.labels, count, bytes);
        Ok(true)
    }

    /// Sends and waits; while that takes longer than a healthy cluster would, the task
    /// shows the outage.
    async fn send_watched(
        &mut self,
        task: &TaskContext,
        records: Vec<Record>,
        position: Option<String>,
        processed: Option<ProcessorCheckpoint>,
        cancel: &CancellationToken,
    ) -> Result<bool, TaskError> {
        let started = Instant::now();
        // A processor's checkpoint is never given up on: a write left running could
        // still commit after the next task read the state and offsets it changes.
        let may_give_up = processed.is_none();
        let sending = match processed {
            Some(processed) => self.producer.send_processed(records, processed),
            None => self.producer.send(records, position),
        };
        tokio::pin!(sending);
        let mut give_up_at = None;
        loop {
            tokio::select! {
                sent = &mut sending => {
                    self.outage.update(task, None);
                    sent?;
                    return Ok(true);
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            if started.elapsed() >= SEND_PATIENCE {
                let reason = crate::transport::kafka::last_client_error()
                    .unwrap_or_else(|| "the cluster has not acknowledged the last batch".to_owned());
                self.outage.update(task, Some((started.elapsed(), reason)));
            }
            if may_give_up && cancel.is_cancelled() && Instant::now() >= *give_up_at.get_or_insert_with(|| Instant::now() + STOP_GRACE) {
                tracing::warn!(
                    connector = %task.identity.connector, task = task.identity.task,
                    "The task stopped before the Kafka cluster took its last batch; the batch is produced again from the stored position at the next start."
                );
                return Ok(false);
            }
        }
    }
}

/// Whether a batch of `records` with source `position` must be written, when the
/// output last stored `stored` (a processor's checkpoint: `nothing_to_store`).
fn needs_write(records: &[Record], position: Option<&str>, stored: Option<&str>, nothing_to_store: bool) -> bool {
    !records.is_empty() || !nothing_to_store || position.is_some_and(|position| Some(position) != stored)
}

#[cfg(test)]
mod tests {
    use super::{Record, needs_write};

    #[test]
    fn an_idle_source_reporting_its_stored_position_again_writes_nothing() {
        let record = [Record::default()];
        assert!(needs_write(&record, None, None, true), "records");
        assert!(needs_write(&[], Some("7"), None, true), "a first position");
        assert!(needs_write(&[], Some("8"), Some("7"), true), "a new position");
        assert!(!needs_write(&[], Some("7"), Some("7"), true), "the stored position again");
        assert!(!needs_write(&[], None, Some("7"), true), "nothing at all");
        assert!(needs_write(&record, Some("7"), Some("7"), true), "records at the same position");
        assert!(needs_write(&[], None, None, false), "a processor's checkpoint");
    }
}
