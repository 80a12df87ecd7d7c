//! Stream processors and sources on Kafka, exactly once: each task produces in
//! transactions under its own `transactional.id`. A source's transaction holds a
//! batch's records and the position after them (in the offsets topic), so a task that
//! takes over reads a position that matches what reached the topic. A processor's One transaction holds a batch's results, its state
//! changes (in the compacted changelog topics `<connector>-<store>-changelog`, in the
//! input record's partition number) and its input offsets (`send_offsets_to_transaction`),
//! so after a crash either all of it is there for `read_committed` readers or none.
//! Opening the producer fences an older instance of the same task (a zombie) and
//! aborts what it left open; a task then takes its state back by reading its
//! partitions of the changelog topics to their end.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::try_join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use wasm_connect_protocol::Record;

use super::client::fetch_metadata;
use super::{REQUEST_TIMEOUT, Reporting, delivery_error, message_of};
use crate::transport::{PartitionOffset, ProcessorCheckpoint, RecordProducer, StateChange, StateEntry, TransportError, TransportResult};

/// The header naming the connector a changelog record belongs to: two connectors'
/// changelog topics can have the same name (`a` with a store `b-c`, `a-b` with `c`).
const CONNECTOR_HEADER: &str = "wasm-connect-connector";
/// How long opening a task's producer may take: it waits for the transaction an older
/// instance left open to be aborted.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long committing or aborting a transaction may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long taking the state back may go without a record or the end of a partition.
const RESTORE_STALL: Duration = Duration::from_secs(30);
/// How long a new input topic is waited for before the task fails (and starts again).
const TOPIC_WAIT: Duration = Duration::from_secs(30);
/// The most records handed to the producer before their deliveries are awaited.
const SENDS_AT_ONCE: usize = 10_000;

/// The changelog topic of a processor's store.
pub(super) fn changelog_topic(connector: &str, store: &str) -> String {
    format!("{connector}-{store}-changelog")
}

/// The store whose changelog `topic` is, if it is one of `connector`'s.
fn store_of<'a>(connector: &str, topic: &'a str) -> Option<&'a str> {
    let store = topic.strip_prefix(connector)?.strip_prefix('-')?.strip_suffix("-changelog")?;
    (!store.is_empty()).then_some(store)
}

/// The transactional id of a processor's task (`which` its number, or `reset`): the
/// same for every instance of the task, so that the newest fences the others.
fn transactional_id(group: &str, which: &str) -> String {
    format!("{group}-{which}")
}

/// How many fencing producers are opened at once.
const FENCING_AT_ONCE: usize = 16;

/// Fences every transactional id of `connector`'s (whose consumer group is `group`):
/// those of tasks 0 to the partition count of its input topics or of its changelog
/// topics, whichever is larger (a task numbered past it never owned a partition, so
/// never wrote; the changelogs remember earlier inputs), and the reset id. Each is
/// opened (`init_transactions`, which aborts what an older instance left open) and
/// closed. An input topic that cannot be described fails it: it is tried again.
pub(super) fn fence_all(
    base: &ClientConfig,
    producer_config: &ClientConfig,
    connector: &str,
    group: &str,
    topics: &[String],
) -> TransportResult<()> {
    let probe: BaseConsumer<Reporting> = base.create_with_context(Reporting)?;
    let mut partitions = 0;
    for topic in topics {
        let count = partition_count(&probe, topic)?;
        if count == 0 {
            return Err(TransportError::Other(format!(
                "the input topic {topic} cannot be described (missing, or the cluster refused), so the processor's earlier tasks cannot be fenced yet; the task starts again"
            )));
        }
        partitions = partitions.max(count);
    }
    let metadata = fetch_metadata(&probe, None)?;
    for changelog in metadata.topics().iter().filter(|topic| topic.error().is_none() && store_of(connector, topic.name()).is_some()) {
        partitions = partitions.max(changelog.partitions().len() as i32);
    }
    let ids: Vec<String> =
        (0..partitions).map(|task| task.to_string()).chain(["reset".to_owned()]).map(|which| transactional_id(group, &which)).collect();
    for chunk in ids.chunks(FENCING_AT_ONCE) {
        std::thread::scope(|scope| -> TransportResult<()> {
            let fencing: Vec<_> = chunk
                .iter()
                .map(|id| {
                    scope.spawn(move || -> TransportResult<()> {
                        let fencer: FutureProducer<Reporting> =
                            producer_config.clone().set("transactional.id", id).create_with_context(Reporting)?;
                        let fenced = fencer.init_transactions(INIT_TIMEOUT).map_err(|error| fencing_error(id, error));
                        // Destroying a producer may wait for a broker: not here.
                        let _ = std::thread::Builder::new().name("kafka-producer-close".into()).spawn(move || drop(fencer));
                        fenced
                    })
                })
                .collect();
            for thread in fencing {
                thread.join().map_err(|_| TransportError::Other("a fencing thread failed".to_owned()))??;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Why opening the transactional id `id` failed, in words.
fn fencing_error(id: &str, error: KafkaError) -> TransportError {
    TransportError::Other(format!(
        "the transactional producer {id} could not be opened (its older instance's transaction is aborted first): {error}"
    ))
}

/// A failed transaction's error; a fenced one says who took over.
fn transaction_error(error: TransportError) -> TransportError {
    let fenced = matches!(&error, TransportError::Kafka(kafka) if kafka.rdkafka_error_code().is_some_and(is_fencing));
    if !fenced {
        return error;
    }
    fenced_error(&error)
}

/// Whether `code` says a newer instance took the transactional id over.
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(code, RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
}

/// `error` of a transaction of `producer`'s, said as a fencing when the producer was
/// fenced (librdkafka then fails what it still held with a purge, not the fencing).
fn producer_error(producer: &FutureProducer<Reporting>, error: TransportError) -> TransportError {
    match producer.client().fatal_error() {
        Some((code, _)) if is_fencing(code) => fenced_error(&error),
        _ => transaction_error(error),
    }
}

/// A transaction refused because a newer instance took the id over.
fn fenced_error(error: &TransportError) -> TransportError {
    TransportError::Other(format!(
        "the transaction was refused: a newer instance of this task took its transactional id over (the task was \
         restarted, its connector changed, or another host of the cluster took the task over), or the transaction ran \
         past transaction.timeout.ms: {error}"
    ))
}

fn joined<T>(result: Result<T, tokio::task::JoinError>) -> TransportResult<T> {
    result.map_err(|error| TransportError::Other(error.to_string()))
}

/// The partitions of `topics` a processor task reads: those whose number modulo
/// `tasks` is `task`, the same as on the embedded transport. Waits up to `TOPIC_WAIT`
/// for topics that do not exist yet.
pub(super) fn fixed_partitions(config: &ClientConfig, topics: &[String], task: u32, tasks: u32) -> TransportResult<Vec<(String, i32)>> {
    let probe: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
    let mut partitions = Vec::new();
    for topic in topics {
        let deadline = Instant::now() + TOPIC_WAIT;
        let numbers = loop {
            let numbers = partition_count(&probe, topic)?;
            if numbers > 0 {
                break numbers;
            }
            if Instant::now() >= deadline {
                return Err(TransportError::Other(format!(
                    "the input topic {topic} does not exist (or has no partitions) after {} s; the task starts again until it does",
                    TOPIC_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        partitions.extend((0..numbers).filter(|number| (*number as u32) % tasks.max(1) == task).map(|number| (topic.clone(), number)));
    }
    Ok(partitions)
}

/// How many partitions `topic` has (0: it does not exist).
fn partition_count(probe: &BaseConsumer<Reporting>, topic: &str) -> TransportResult<i32> {
    let metadata = fetch_metadata(probe, Some(topic))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|candidate| candidate.name() == topic && candidate.error().is_none())
        .map_or(0, |candidate| candidate.partitions().len() as i32))
}

/// A stream processor's or a source's task producer: every batch in one transaction.
pub(super) struct TransactionalProducer {
    /// Taken by `drop`.
    producer: Option<Arc<FutureProducer<Reporting>>>,
    /// A processor's consumer group, to which the input offsets are committed.
    group: Option<Arc<ConsumerGroupMetadata>>,
    /// A source's: the offsets topic its position goes to, under the connector's name.
    positions: Option<String>,
    /// Settings for the probes and the admin client that make changelog topics.
    base: ClientConfig,
    connector: String,
    /// The input topics: a changelog topic has as many partitions as the one with most.
    topics: Vec<String>,
    /// Changelog topics known to exist with enough partitions.
    ready: HashSet<String>,
    /// Whether a transaction was begun and neither committed nor aborted: a send given
    /// up on (the task stopped in the middle of it). Dropping the producer aborts it,
    /// rather than leaving it open until `transaction.timeout.ms`, which would hold
    /// back every `read_committed` reader of the topics it wrote to meanwhile.
    in_transaction: bool,
}

impl TransactionalProducer {
    /// Opens a producer of `connector`'s: task `task`'s, or (None) the one that clears
    /// its state while no task runs. Opening fences the older instances of the same id
    /// and aborts what they left open. `producer_config` has no transactional id yet;
    /// `group` is the connector's consumer group, to which input offsets go.
    pub(super) async fn open(
        base: ClientConfig,
        producer_config: ClientConfig,
        group: &str,
        connector: &str,
        task: Option<u32>,
        topics: &[String],
    ) -> TransportResult<Self> {
        let group_config = base.clone().set("group.id", group).clone();
        let id = transactional_id(group, &task.map_or_else(|| "reset".to_owned(), |task| task.to_string()));
        let (producer, metadata) = joined(
            tokio::task::spawn_blocking(move || -> TransportResult<_> {
                let producer: FutureProducer<Reporting> =
                    producer_config.clone().set("transactional.id", &id).create_with_context(Reporting)?;
                producer.init_transactions(INIT_TIMEOUT).map_err(|error| fencing_error(&id, error))?;
                let probe: BaseConsumer<Reporting> = group_config.create_with_context(Reporting)?;
                let metadata =
                    probe.group_metadata().ok_or_else(|| TransportError::Other("the consumer group's metadata is missing".to_owned()))?;
                Ok((producer, metadata))
            })
            .await,
        )??;
        Ok(Self {
            producer: Some(Arc::new(producer)),
            group: Some(Arc::new(metadata)),
            positions: None,
            base,
            connector: connector.to_owned(),
            topics: topics.to_vec(),
            ready: HashSet::new(),
            in_transaction: false,
        })
    }

    /// Opens the producer of `connector`'s source task, whose transactions also write
    /// its position to `offsets_topic`. Opening fences an older instance of the task (on
    /// another host, say) and aborts what it left open, so a position read after it is
    /// the one that matches what reached the topic. `group` names the ids
    /// (`<group>-0`, as a processor's first task).
    pub(super) async fn open_source(
        base: ClientConfig,
        producer_config: ClientConfig,
        group: &str,
        connector: &str,
        offsets_topic: &str,
    ) -> TransportResult<Self> {
        let id = transactional_id(group, "0");
        let producer = joined(
            tokio::task::spawn_blocking(move || -> TransportResult<_> {
                let producer: FutureProducer<Reporting> =
                    producer_config.clone().set("transactional.id", &id).create_with_context(Reporting)?;
                producer.init_transactions(INIT_TIMEOUT).map_err(|error| fencing_error(&id, error))?;
                Ok(producer)
            })
            .await,
        )??;
        Ok(Self {
            producer: Some(Arc::new(producer)),
            group: None,
            positions: Some(offsets_topic.to_owned()),
            base,
            connector: connector.to_owned(),
            topics: Vec::new(),
            ready: HashSet::new(),
            in_transaction: false,
        })
    }

    fn producer(&self) -> &Arc<FutureProducer<Reporting>> {
        self.producer.as_ref().expect("the producer is taken only when dropped")
    }

    /// Makes sure the changelog topics of the stores `changes` write to exist, compacted,
    /// with as many partitions as the input topic with most.
    async fn ensure_changelogs(&mut self, changes: &[StateChange]) -> TransportResult<()> {
        let stores: BTreeSet<&str> = changes.iter().map(|change| change.store.as_str()).collect();
        let missing: Vec<String> =
            stores.into_iter().map(|store| changelog_topic(&self.connector, store)).filter(|topic| !self.ready.contains(topic)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        for topic in &missing {
            if let Err(problem) = crate::config::check_topic_name(topic) {
                return Err(TransportError::Other(format!(
                    "a store's changelog topic would be {topic}, which Kafka cannot have ({problem}): give the connector a shorter name"
                )));
            }
        }
        let (config, inputs, asked) = (self.base.clone(), self.topics.clone(), missing.clone());
        let (wanted, absent) = joined(
            tokio::task::spawn_blocking(move || -> TransportResult<(i32, Vec<String>)> {
                let probe: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
                let mut wanted = 1;
                for topic in &inputs {
                    wanted = wanted.max(partition_count(&probe, topic)?);
                }
                let mut absent = Vec::new();
                for topic in asked {
                    if partition_count(&probe, &topic)? == 0 {
                        absent.push(topic);
                    }
                }
                Ok((wanted, absent))
            })
            .await,
        )??;
        if !absent.is_empty() {
            let admin: AdminClient<Reporting> = self.base.create_with_context(Reporting)?;
            let new_topics: Vec<NewTopic<'_>> = absent
                .iter()
                .map(|topic| NewTopic::new(topic, wanted, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact"))
                .collect();
            let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
            let created = admin.create_topics(&new_topics, &options).await;
            // Destroying a client joins its threads: never on an async thread.
            let _ = std::thread::Builder::new().name("kafka-admin-close".into()).spawn(move || drop(admin));
            for result in created? {
                match result {
                    Ok(topic) => tracing::info!(topic, partitions = wanted, "Created a changelog topic."),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        return Err(TransportError::Other(format!(
                            "the changelog topic {topic} is missing and could not be created ({code}): create it compacted with {wanted} partitions"
                        )));
                    }
                }
            }
        }
        let config = self.base.clone();
        let checked = missing.clone();
        joined(
            tokio::task::spawn_blocking(move || -> TransportResult<()> {
                let probe: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
                for topic in &checked {
                    let deadline = Instant::now() + REQUEST_TIMEOUT;
                    loop {
                        let partitions = partition_count(&probe, topic)?;
                        if partitions >= wanted {
                            break;
                        }
                        if partitions > 0 || Instant::now() >= deadline {
                            return Err(TransportError::Other(format!(
                                "the changelog topic {topic} has {partitions} partitions, fewer than the input's {wanted}: add partitions to it, or delete it (the host makes it again from the next checkpoint on, and the state starts over)"
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Ok(())
            })
            .await,
        )??;
        self.ready.extend(missing);
        Ok(())
    }

    /// Produces the batch's results and state changes within the open transaction, a
    /// bounded number at a time (a state cleared whole may be millions of tombstones).
    async fn produce(&self, records: &[Record], changes: &[StateChange]) -> TransportResult<()> {
        let producer = self.producer();
        for chunk in records.chunks(SENDS_AT_ONCE) {
            let results = chunk.iter().map(|record| producer.send(message_of(record), rdkafka::util::Timeout::Never));
            try_join_all(results).await.map_err(delivery_error)?;
        }
        for chunk in changes.chunks(SENDS_AT_ONCE) {
            let topics: Vec<String> = chunk.iter().map(|change| changelog_topic(&self.connector, &change.store)).collect();
            let state = chunk.iter().zip(&topics).map(|(change, topic)| {
                let header = Header { key: CONNECTOR_HEADER, value: Some(self.connector.as_bytes()) };
                let mut message = FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(change.partition)
                    .key(change.key.as_slice())
                    .headers(OwnedHeaders::new_with_capacity(1).insert(header));
                if let Some(value) = &change.value {
                    message = message.payload(value.as_slice());
                }
                producer.send(message, rdkafka::util::Timeout::Never)
            });
            try_join_all(state).await.map_err(delivery_error)?;
        }
        Ok(())
    }

    /// Begins a transaction.
    async fn begin(&mut self) -> TransportResult<()> {
        let producer = self.producer().clone();
        joined(tokio::task::spawn_blocking(move || producer.begin_transaction()).await)?
            .map_err(|error| producer_error(self.producer(), error.into()))?;
        self.in_transaction = true;
        Ok(())
    }

    /// Commits the transaction begun.
    async fn commit(&self) -> TransportResult<()> {
        let producer = self.producer().clone();
        joined(tokio::task::spawn_blocking(move || producer.commit_transaction(TRANSACTION_TIMEOUT)).await)?.map_err(TransportError::from)
    }

    /// Writes a source's `position` (none: a tombstone) to `offsets_topic`, in the
    /// transaction begun.
    async fn put_position(&self, offsets_topic: &str, position: Option<&str>) -> TransportResult<()> {
        let mut message = FutureRecord::<str, str>::to(offsets_topic).key(&self.connector);
        if let Some(position) = position {
            message = message.payload(position);
        }
        self.producer().send(message, rdkafka::util::Timeout::Never).await.map_err(delivery_error)?;
        Ok(())
    }

    /// Sets a source's position (none: forgets it) in a transaction of its own, as the
    /// offsets API does: opening the producer fenced any instance of the task still
    /// running, so none can write an older position after this one.
    pub(super) async fn write_position(&mut self, position: Option<&str>) -> TransportResult<()> {
        let topic = self.positions.clone().ok_or_else(|| TransportError::Other("not a source's producer".to_owned()))?;
        self.begin().await?;
        let written = async {
            self.put_position(&topic, position).await?;
            self.commit().await
        }
        .await;
        self.end(written).await
    }

    /// Ends the transaction begun: `written` tells whether it was committed; if not, it
    /// is aborted, and the error is returned.
    async fn end(&mut self, written: TransportResult<()>) -> TransportResult<()> {
        let result = match written {
            Ok(()) => Ok(()),
            Err(error) => {
                let error = producer_error(self.producer(), error);
                self.abort().await;
                Err(error)
            }
        };
        self.in_transaction = false;
        result
    }

    /// Aborts the open transaction after a failure; what it wrote is never read.
    async fn abort(&self) {
        let producer = self.producer().clone();
        // The task fails either way, and its next instance fences this one: a failed
        // abort changes nothing.
        match tokio::task::spawn_blocking(move || producer.abort_transaction(TRANSACTION_TIMEOUT)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "Aborting a task's transaction failed."),
            Err(error) => tracing::debug!(%error, "Aborting a task's transaction failed in the host."),
        }
    }
}

impl Drop for TransactionalProducer {
    fn drop(&mut self) {
        // As for every producer: destroying it may wait for a broker.
        if let Some(producer) = self.producer.take() {
            let open = self.in_transaction;
            let _ = std::thread::Builder::new().name("kafka-producer-close".into()).spawn(move || {
                if open && let Err(error) = producer.abort_transaction(TRANSACTION_TIMEOUT) {
                    // Its next instance's opening aborts it, or the transaction timeout.
                    tracing::debug!(%error, "Aborting the transaction of a task's producer given up on failed.");
                }
                drop(producer)
            });
        }
    }
}

#[async_trait]
impl RecordProducer for TransactionalProducer {
    async fn send(&mut self, records: Vec<Record>, position: Option<String>) -> TransportResult<()> {
        let Some(offsets_topic) = self.positions.clone() else {
            if position.is_some() {
                return Err(TransportError::Other("a stream processor's producer stores no source position".to_owned()));
            }
            return self.send_processed(records, ProcessorCheckpoint::default()).await;
        };
        self.begin().await?;
        let written = async {
            self.produce(&records, &[]).await?;
            if let Some(position) = &position {
                self.put_position(&offsets_topic, Some(position)).await?;
            }
            self.commit().await
        }
        .await;
        self.end(written).await
    }

    async fn send_processed(&mut self, records: Vec<Record>, checkpoint: ProcessorCheckpoint) -> TransportResult<()> {
        self.ensure_changelogs(&checkpoint.state).await?;
        self.begin().await?;
        let written = match self.produce(&records, &checkpoint.state).await {
            Ok(()) => {
                let (producer, group) = (self.producer().clone(), self.group.clone());
                let offsets = checkpoint.offsets;
                joined(
                    tokio::task::spawn_blocking(move || -> TransportResult<()> {
                        if let (false, Some(group)) = (offsets.is_empty(), group) {
                            let mut list = TopicPartitionList::new();
                            for offset in &offsets {
                                list.add_partition_offset(&offset.topic, offset.partition, Offset::Offset(offset.offset))?;
                            }
                            producer.send_offsets_to_transaction(&list, &group, TRANSACTION_TIMEOUT)?;
                        }
                        producer.commit_transaction(TRANSACTION_TIMEOUT)?;
                        Ok(())
                    })
                    .await,
                )
                .and_then(|result| result)
            }
            Err(error) => Err(error),
        };
        self.end(written).await
    }
}

/// A processor's state as its changelog topics hold it: the last value of each key in
/// `partitions` (None: all), read committed, to the end of each partition.
pub(super) fn read_state(base: &ClientConfig, connector: &str, partitions: Option<&[i32]>) -> TransportResult<Vec<StateEntry>> {
    let mut config = base.clone();
    config
        .set("group.id", "wasm-connect-state-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        // Records removed under the reader (retention on a changelog that also deletes)
        // fail the restore, rather than skipping to the end with part of the state.
        .set("auto.offset.reset", "error");
    let probe: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
    let metadata = fetch_metadata(&probe, None)?;
    let mut entries = Vec::new();
    for topic in metadata.topics().iter().filter(|topic| topic.error().is_none()) {
        let Some(store) = store_of(connector, topic.name()) else { continue };
        let numbers: Vec<i32> = topic
            .partitions()
            .iter()
            .map(|partition| partition.id())
            .filter(|number| partitions.is_none_or(|wanted| wanted.contains(number)))
            .collect();
        // A consumer per topic: the end-of-partition event names the partition only,
        // and one left over from another topic would end this one's early.
        let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
        let latest = read_changelog(&consumer, connector, topic.name(), &numbers)?;
        entries.extend(latest.into_iter().map(|((partition, key), value)| StateEntry { store: store.to_owned(), partition, key, value }));
    }
    Ok(entries)
}

/// A key of a store in one partition.
type PartitionKey = (i32, Vec<u8>);

/// The last value of each key in `numbers` of the changelog `topic`, of `connector`'s
/// records only, read by `consumer` (which reads nothing else).
fn read_changelog(
    consumer: &BaseConsumer<Reporting>,
    connector: &str,
    topic: &str,
    numbers: &[i32],
) -> TransportResult<HashMap<PartitionKey, Vec<u8>>> {
    let mut assignment = TopicPartitionList::new();
    let mut ends = Vec::new();
    for number in numbers {
        let (low, high) = consumer.fetch_watermarks(topic, *number, REQUEST_TIMEOUT)?;
        if high > low {
            assignment.add_partition_offset(topic, *number, Offset::Offset(low))?;
            ends.push((*number, high));
        }
    }
    let mut latest = HashMap::new();
    if ends.is_empty() {
        return Ok(latest);
    }
    consumer.assign(&assignment)?;
    let mut progress = Instant::now();
    while !ends.is_empty() {
        if progress.elapsed() > RESTORE_STALL {
            return Err(TransportError::Other(format!(
                "reading the changelog topic {topic} made no progress for {} s; the task starts again",
                RESTORE_STALL.as_secs()
            )));
        }
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            // The end, past any transaction markers (with read_committed, the last
            // stable offset).
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ends.retain(|(number, _)| *number != partition);
                progress = Instant::now();
                continue;
            }
            // The cluster out of reach for a while: the stall rule decides.
            Some(Err(KafkaError::MessageConsumption(code))) if super::group::is_outage(code) => continue,
            Some(message) => message?,
        };
        progress = Instant::now();
        let ours = message
            .headers()
            .and_then(|headers| headers.iter().find(|header| header.key == CONNECTOR_HEADER))
            .is_some_and(|header| header.value == Some(connector.as_bytes()));
        if let (true, Some(key)) = (ours, message.key()) {
            let slot = (message.partition(), key.to_vec());
            match message.payload() {
                Some(value) => latest.insert(slot, value.to_vec()),
                None => latest.remove(&slot),
            };
        }
        let (partition, offset) = (message.partition(), message.offset());
        ends.retain(|(number, high)| !(*number == partition && offset + 1 >= *high));
    }
    Ok(latest)
}

/// Forgets `entries` (tombstones to their changelog topics) and sets the input offsets
/// to `starts`, in one transaction of the connector's `reset` producer: after a crash
/// either both happened or neither.
pub(super) async fn clear_state(
    producer: &mut TransactionalProducer,
    entries: Vec<StateEntry>,
    starts: Vec<PartitionOffset>,
) -> TransportResult<()> {
    let state = entries
        .into_iter()
        .map(|entry| StateChange { store: entry.store, partition: entry.partition, key: entry.key, value: None })
        .collect();
    producer.send_processed(Vec::new(), ProcessorCheckpoint { offsets: starts, state }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changelog_topic_names_its_connector_and_store() {
        assert_eq!(changelog_topic("device-minutes", "windows"), "device-minutes-windows-changelog");
        assert_eq!(store_of("device-minutes", "device-minutes-windows-changelog"), Some("windows"));
        assert_eq!(store_of("device-minutes", "device-minutes-stream-time-changelog"), Some("stream-time"));
        // Another connector's, or not a changelog at all.
        assert_eq!(store_of("device", "devices-windows-changelog"), None);
        assert_eq!(store_of("device-minutes", "device-minutes--changelog"), None);
        assert_eq!(store_of("device-minutes", "device-minutes-windows"), None);
        assert_eq!(transactional_id("wasm-connect-device-minutes", "1"), "wasm-connect-device-minutes-1");
    }
}
