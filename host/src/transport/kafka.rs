//! The Kafka transport (librdkafka, bundled): an idempotent producer with `acks=all`
//! per source task, one consumer group per sink connector, offsets stored only after
//! the sink acknowledged a batch (`enable.auto.offset.store=false`) and committed
//! synchronously when a task stops. Source positions live in a compacted topic,
//! keyed by connector, like Kafka Connect's `offset.storage.topic`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::try_join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use wasm_connect_protocol::Record;

use super::{RecordConsumer, RecordProducer, TaskShare, Transport, TransportError, TransportResult, next_offsets};

/// How long a metadata or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A Kafka cluster.
#[derive(Clone)]
pub struct KafkaTransport {
    base: ClientConfig,
    offsets_topic: String,
}

impl KafkaTransport {
    /// Connects lazily to `bootstrap_servers` with the user's librdkafka settings.
    pub fn new(bootstrap_servers: &str, client: &BTreeMap<String, String>, offsets_topic: &str) -> Self {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", bootstrap_servers);
        for (key, value) in client {
            base.set(key, value);
        }
        Self { base, offsets_topic: offsets_topic.to_owned() }
    }

    fn producer_config(&self) -> ClientConfig {
        let mut config = self.base.clone();
        // At-least-once without duplicates from retries: not overridable.
        config.set("enable.idempotence", "true").set("acks", "all");
        config
    }

    /// Creates, in one request, those of `topics` the cluster does not have. Failures
    /// are logged, not fatal: the broker may auto-create topics, or forbid the call.
    async fn create_missing_topics(&self, topics: &[String], compacted: bool) -> TransportResult<()> {
        let config = self.base.clone();
        let wanted = topics.to_vec();
        let missing: Vec<String> = tokio::task::spawn_blocking(move || -> TransportResult<Vec<String>> {
            let probe: BaseConsumer = config.create()?;
            let metadata = probe.fetch_metadata(None, REQUEST_TIMEOUT)?;
            let existing: Vec<&str> = metadata.topics().iter().map(|topic| topic.name()).collect();
            Ok(wanted.into_iter().filter(|topic| !existing.contains(&topic.as_str())).collect())
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))??;
        if missing.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self.base.create()?;
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|topic| {
                let new_topic = NewTopic::new(topic, -1, TopicReplication::Fixed(-1));
                if compacted { new_topic.set("cleanup.policy", "compact") } else { new_topic }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
        match admin.create_topics(&new_topics, &options).await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(topic) => tracing::info!(topic, "Created topic."),
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((topic, code)) => {
                            tracing::warn!(topic, error = %code, "Topic could not be created; relying on the broker's auto-creation.")
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(topics = ?missing, %error, "Topics could not be created; relying on the broker's auto-creation."),
        }
        Ok(())
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn ensure_topics(&self, topics: &[String]) -> TransportResult<()> {
        self.create_missing_topics(topics, false).await
    }

    async fn source_position(&self, connector: &str) -> TransportResult<Option<String>> {
        self.create_missing_topics(std::slice::from_ref(&self.offsets_topic), true).await?;
        let (config, topic, connector) = (self.base.clone(), self.offsets_topic.clone(), connector.to_owned());
        tokio::task::spawn_blocking(move || read_latest_position(&config, &topic, &connector))
            .await
            .map_err(|error| TransportError::Other(error.to_string()))?
    }

    async fn producer(&self, connector: &str) -> TransportResult<Box<dyn RecordProducer>> {
        Ok(Box::new(KafkaProducer {
            producer: self.producer_config().create()?,
            offsets_topic: self.offsets_topic.clone(),
            connector: connector.to_owned(),
        }))
    }

    async fn consumer(&self, connector: &str, topics: &[String], _share: TaskShare) -> TransportResult<Box<dyn RecordConsumer>> {
        let mut config = self.base.clone();
        config
            .set("group.id", format!("wasm-connect-{connector}"))
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer<CommitOnRevoke> = config.create_with_context(CommitOnRevoke)?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Box::new(KafkaConsumer { consumer }))
    }

    fn name(&self) -> &'static str {
        "kafka"
    }
}

/// Reads the offsets topic to its end and returns the last position of `connector`.
fn read_latest_position(config: &ClientConfig, topic: &str, connector: &str) -> TransportResult<Option<String>> {
    let consumer: BaseConsumer = config.clone().set("enable.auto.commit", "false").set("group.id", "wasm-connect-offsets-reader").create()?;
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let Some(topic_metadata) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else {
        return Ok(None);
    };
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for partition in topic_metadata.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)?;
        if high > low {
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(low))?;
            ends.push((partition.id(), high));
        }
    }
    if ends.is_empty() {
        return Ok(None);
    }
    consumer.assign(&assignment)?;
    let mut latest = None;
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(TransportError::Other(format!("timed out reading source positions from topic {topic}")));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message?;
        if message.key() == Some(connector.as_bytes()) {
            latest = message.payload().map(|payload| String::from_utf8_lossy(payload).into_owned());
        }
        let (partition, offset) = (message.partition(), message.offset());
        ends.retain(|(id, high)| !(*id == partition && offset + 1 >= *high));
    }
    Ok(latest)
}

struct KafkaProducer {
    producer: FutureProducer,
    offsets_topic: String,
    connector: String,
}

fn delivery_error((error, _): (KafkaError, rdkafka::message::OwnedMessage)) -> TransportError {
    TransportError::Kafka(error)
}

#[async_trait]
impl RecordProducer for KafkaProducer {
    async fn send(&mut self, records: Vec<Record>, position: Option<String>) -> TransportResult<()> {
        let deliveries = records.iter().map(|record| {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header { key: name, value: value.as_deref() });
            }
            let mut message = FutureRecord::<[u8], [u8]>::to(&record.topic).headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
            if let Some(timestamp) = record.timestamp {
                message = message.timestamp(timestamp);
            }
            self.producer.send(message, rdkafka::util::Timeout::Never)
        });
        try_join_all(deliveries).await.map_err(delivery_error)?;
        if let Some(position) = position {
            let message = FutureRecord::to(&self.offsets_topic).key(&self.connector).payload(&position);
            self.producer.send(message, rdkafka::util::Timeout::Never).await.map_err(delivery_error)?;
        }
        Ok(())
    }
}

struct KafkaConsumer {
    consumer: StreamConsumer<CommitOnRevoke>,
}

/// Commits the offsets of every acknowledged batch, synchronously, before a rebalance
/// takes partitions away, as Kafka Connect does: their new owner then starts right
/// after them instead of re-reading whatever the periodic auto-commit had not yet
/// committed.
struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {}

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

fn owned_record(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let headers = message
        .headers()
        .map(|headers| headers.iter().map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec))).collect())
        .unwrap_or_default();
    Record {
        topic: message.topic().to_owned(),
        partition: Some(message.partition()),
        offset: Some(message.offset()),
        timestamp: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
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

    async fn close(&mut self) -> TransportResult<()> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}
