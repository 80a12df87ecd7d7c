//! A sink task's consumer: a member of its connector's consumer group.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use wasm_connect_protocol::Record;

use super::client::{log_client_line, report_client_error};
use super::{REQUEST_TIMEOUT, owned_record};
use crate::transport::{RecordConsumer, TransportError, TransportResult, next_offsets};


pub(super) struct KafkaConsumer {
    /// Shared with the blocking thread that asks the brokers for watermarks.
    pub(super) consumer: Arc<StreamConsumer<CommitOnRevoke>>,
}

/// Commits the offsets of every acknowledged batch, synchronously, before a rebalance
/// takes partitions away, as Kafka Connect does: their new owner then starts right
/// after them instead of re-reading whatever the periodic auto-commit had not yet
/// committed.
pub(super) struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&error, reason);
    }
}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Revoke(_)) {
            return;
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "The offsets of acknowledged batches could not be committed before a rebalance; their records will be delivered again."),
        }
    }
}

#[async_trait]
impl RecordConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> TransportResult<Vec<Record>> {
        let mut records = Vec::new();
        let mut timeout = wait;
        while records.len() < max {
            match tokio::time::timeout(timeout, self.consumer.recv()).await {
                Ok(message) => records.push(owned_record(&message?)),
                Err(_elapsed) => break,
            }
            // Once something arrived, only take what is already buffered.
            timeout = Duration::from_millis(5);
        }
        Ok(records)
    }

    async fn commit(&mut self, records: &[Record]) -> TransportResult<()> {
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, next) in next_offsets(records) {
            offsets.add_partition_offset(&topic, partition, Offset::Offset(next))?;
        }
        match self.consumer.store_offsets(&offsets) {
            Ok(()) => Ok(()),
            // A rebalance took the partition away: its new owner re-reads the batch,
            // which this sink already wrote (at-least-once, idempotent sinks).
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition)) => {
                tracing::info!("Offsets of a batch were not stored: the partition was reassigned during the write.");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn lag(&mut self) -> TransportResult<u64> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || -> TransportResult<u64> {
            let positions = consumer.position()?;
            let mut lag = 0;
            for element in positions.elements() {
                // A partition not read from yet has no position: its lag shows once it has.
                let Offset::Offset(position) = element.offset() else { continue };
                let (_, high) = consumer.fetch_watermarks(element.topic(), element.partition(), REQUEST_TIMEOUT)?;
                lag += (high - position).max(0) as u64;
            }
            Ok(lag)
        })
        .await
        .map_err(|error| TransportError::Other(format!("measuring the consumer lag failed: {error}")))?
    }

    async fn close(&mut self) -> TransportResult<()> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            // The group is rebalancing: the commit in `pre_rebalance` carries what was
            // acknowledged, or the partitions' next owner re-reads it (at least once).
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::IllegalGeneration)) => {
                tracing::info!("The group was rebalancing as the task stopped; its last batch may be delivered again.");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}

