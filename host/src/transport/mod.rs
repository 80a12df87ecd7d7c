//! Where records live between sources and sinks, behind one interface: a Kafka
//! cluster (`kafka`), or durable topics in SQLite under `data_dir` (`embedded`).
//! Workers rely on the same semantics from both: ordered partitions, offsets, a
//! committed position per sink connector, and source positions stored with batches.

mod embedded;
pub mod kafka;

use std::time::Duration;

use async_trait::async_trait;
use wasm_connect_protocol::Record;

pub use embedded::EmbeddedTransport;
pub use kafka::KafkaTransport;

/// A transport failure; workers retry or fail the task.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The embedded store failed.
    #[error("embedded store: {0}")]
    Embedded(#[from] rusqlite::Error),
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A sink connector's consumer group still has members, so its offsets cannot be
    /// changed from outside.
    #[error(
        "the consumer group {0} still has members (a task of another host, or one that went away and whose session has not timed out yet); try again once the group is empty"
    )]
    GroupNotEmpty(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A result of a transport operation.
pub type TransportResult<T> = Result<T, TransportError>;

/// Which part of a sink connector's topics a task reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskShare {
    /// This task's number.
    pub task: u32,
    /// How many tasks share the topics.
    pub tasks: u32,
}

/// The two transports behind one interface.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Creates the topics that do not exist yet.
    async fn ensure_topics(&self, topics: &[String]) -> TransportResult<()>;
    /// The source position stored last for `connector`.
    async fn source_position(&self, connector: &str) -> TransportResult<Option<String>>;
    /// A producer for `connector` (a source's records, a task's dead letters).
    async fn producer(&self, connector: &str) -> TransportResult<Box<dyn RecordProducer>>;
    /// The producer of a source connector's task, which stores each batch's records
    /// with the position after them, atomically. On Kafka it is transactional, and
    /// opening it fences an older instance of the task (on another host, say): open it
    /// before the position is read.
    async fn source_producer(&self, connector: &str) -> TransportResult<Box<dyn RecordProducer>> {
        self.producer(connector).await
    }
    /// A consumer in the connector's group, for one task's share of `topics`.
    async fn consumer(&self, connector: &str, topics: &[String], share: TaskShare) -> TransportResult<Box<dyn RecordConsumer>>;
    /// A stream processor task's consumer: always the same partitions of `topics` for
    /// the same share (those whose number modulo `share.tasks` is `share.task`), so that
    /// the task's state and its fencing go with them. It commits nothing itself: the
    /// offsets go with the task's output in [`RecordProducer::send_processed`].
    async fn processor_consumer(&self, connector: &str, topics: &[String], share: TaskShare) -> TransportResult<Box<dyn RecordConsumer>> {
        self.consumer(connector, topics, share).await
    }
    /// Stops every earlier task of a stream processor from writing, before its tasks
    /// start (a task left running after a change of `tasks_max`, or a crashed one's
    /// open transaction, would otherwise write under the state a new task restores).
    /// On Kafka it fences every transactional id of the connector.
    async fn fence_processor(&self, connector: &str, topics: &[String]) -> TransportResult<()> {
        let _ = (connector, topics);
        Ok(())
    }
    /// A stream processor task's producer, whose [`RecordProducer::send_processed`]
    /// stores results, state changes and input offsets atomically. On Kafka it is
    /// transactional, under an id of the connector's task: opening it fences an older
    /// instance of the same task and aborts what that one left open, so it is opened
    /// before the task reads its offsets and its state.
    async fn processor_producer(&self, connector: &str, share: TaskShare, topics: &[String]) -> TransportResult<Box<dyn RecordProducer>> {
        let _ = (share, topics);
        self.producer(connector).await
    }
    /// The committed offsets of a sink connector's group: the next offset to read, per
    /// partition of `topics` that has one.
    async fn committed_offsets(&self, connector: &str, topics: &[String]) -> TransportResult<Vec<PartitionOffset>>;
    /// Changes a sink connector's committed offsets while none of its tasks runs:
    /// each given partition is set (`offset: None` removes that partition's).
    async fn alter_committed_offsets(&self, connector: &str, changes: Vec<PartitionOffsetChange>) -> TransportResult<()>;
    /// Forgets a sink connector's committed offsets in `topics` while none of its
    /// tasks runs: it reads them from the beginning when it runs again.
    async fn reset_committed_offsets(&self, connector: &str, topics: &[String]) -> TransportResult<()>;
    /// Sets a source connector's position (`None` removes it: the source starts over).
    async fn set_source_position(&self, connector: &str, position: Option<&str>) -> TransportResult<()>;
    /// Every topic (or only `only`, if it exists) with its partitions' offsets, for
    /// the topic tools.
    async fn describe_topics(&self, only: Option<&str>) -> TransportResult<Vec<TopicDescription>>;
    /// A reader of `topic` (all partitions, or only `partition`) from `start` on,
    /// outside any consumer group: it commits nothing.
    async fn reader(&self, topic: &str, partition: Option<i32>, start: StartAt) -> TransportResult<Box<dyn TopicReader>>;
    /// A stream processor's state as last checkpointed, in the input partitions
    /// `partitions` (None: all), every store of the connector.
    async fn processor_state(&self, connector: &str, partitions: Option<&[i32]>) -> TransportResult<Vec<StateEntry>> {
        let _ = (connector, partitions);
        Err(processors_unsupported(&format!("the {} transport", self.name())))
    }
    /// A page of a stream processor's checkpointed state, filtered and ordered by
    /// store, key and partition in the store itself (the admin API's state query).
    async fn query_processor_state(&self, connector: &str, query: StateQuery) -> TransportResult<StatePage> {
        let _ = (connector, query);
        Err(processors_unsupported(&format!("the {} transport", self.name())))
    }
    /// Forgets a stream processor's state and its committed offsets in `topics`
    /// atomically, while none of its tasks runs: it is rebuilt from the input.
    async fn clear_processor_state(&self, connector: &str, topics: &[String]) -> TransportResult<()> {
        let _ = (connector, topics);
        Err(processors_unsupported(&format!("the {} transport", self.name())))
    }
    /// A short name for logs: `kafka` or `embedded`.
    fn name(&self) -> &'static str;
}

/// Why a transport cannot run stream processors.
pub fn processors_unsupported(what: &str) -> TransportError {
    TransportError::Other(format!("{what} cannot keep a stream processor's state"))
}

/// One change to a stream processor's state, checkpointed with the batch that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The processor's store the key belongs to (its changelog on Kafka).
    pub store: String,
    /// The input partition the state belongs to: it moves with that partition.
    pub partition: i32,
    /// The key.
    pub key: Vec<u8>,
    /// The new value; None deletes the key.
    pub value: Option<Vec<u8>>,
}

/// One key of a stream processor's state, as last checkpointed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// The processor's store.
    pub store: String,
    /// The input partition it belongs to.
    pub partition: i32,
    /// The key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

/// Which of a stream processor's state entries to read, and which page of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateQuery {
    /// Only this store.
    pub store: Option<String>,
    /// Only keys starting with these bytes (the whole key with `exact`).
    pub key: Option<Vec<u8>>,
    /// `key` is the whole key, not a prefix.
    pub exact: bool,
    /// Entries to skip, in (store, key, partition) order.
    pub offset: usize,
    /// The most entries to return.
    pub limit: usize,
}

/// A page of state entries and how many the query matches in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatePage {
    /// How many entries match the query.
    pub total: usize,
    /// The page, in (store, key, partition) order.
    pub entries: Vec<StateEntry>,
}

impl StatePage {
    /// The page `query` asks for out of `entries` (a whole state read into memory).
    pub fn of(mut entries: Vec<StateEntry>, query: &StateQuery) -> Self {
        entries.retain(|entry| {
            query.store.as_ref().is_none_or(|store| *store == entry.store)
                && query.key.as_ref().is_none_or(|key| if query.exact { entry.key == *key } else { entry.key.starts_with(key) })
        });
        entries.sort_by(|a, b| (&a.store, &a.key, a.partition).cmp(&(&b.store, &b.key, b.partition)));
        let total = entries.len();
        let entries = entries.into_iter().skip(query.offset).take(query.limit).collect();
        Self { total, entries }
    }
}

/// What a stream processor's batch moves forward, stored in one atomic checkpoint
/// with the batch's output records: the next input offsets and the state changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessorCheckpoint {
    /// The next offset to read of each input partition the batch read.
    pub offsets: Vec<PartitionOffset>,
    /// The state changes the batch made, in order.
    pub state: Vec<StateChange>,
}

/// A topic and the offsets of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicDescription {
    /// The topic.
    pub name: String,
    /// Its partitions, by number.
    pub partitions: Vec<PartitionRange>,
}

/// The offsets one partition holds: `start` is the first still there, `end` the next
/// one to be written (so `end - start` records, `end` = Kafka's high watermark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PartitionRange {
    /// The partition.
    pub partition: i32,
    /// The first offset still held.
    pub start: i64,
    /// The offset the next record gets.
    pub end: i64,
}

/// Where a topic reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the first record still held.
    Beginning,
    /// After the last record: only what is written from now on.
    End,
    /// At this offset (or the first one held after it).
    Offset(i64),
}

/// Reads a topic's records in offset order per partition, for the topic tools.
#[async_trait]
pub trait TopicReader: Send {
    /// Up to `max` records after those returned so far, waiting up to `wait` for some.
    async fn next(&mut self, max: usize, wait: Duration) -> TransportResult<Vec<Record>>;
    /// True once every partition has been read up to the end offset it had when the
    /// reader started.
    fn caught_up(&self) -> bool;
}

/// A committed offset: the next one a sink connector reads in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to read.
    pub offset: i64,
}

/// A change to one partition's committed offset; `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsetChange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The new next offset to read, or none.
    pub offset: Option<i64>,
}

/// Writes records to topics.
#[async_trait]
pub trait RecordProducer: Send {
    /// Appends `records` (each to its own topic) and then stores `position` for the
    /// connector; returns once both are durable.
    async fn send(&mut self, records: Vec<Record>, position: Option<String>) -> TransportResult<()>;
    /// Appends a stream processor's `records` and stores `checkpoint` (the connector's
    /// committed input offsets and state changes) atomically: after a crash either
    /// all of it is there or none.
    async fn send_processed(&mut self, records: Vec<Record>, checkpoint: ProcessorCheckpoint) -> TransportResult<()> {
        let _ = (records, checkpoint);
        Err(processors_unsupported("this producer"))
    }
}

/// Reads records of a connector's topics, in order per partition.
#[async_trait]
pub trait RecordConsumer: Send {
    /// Up to `max` records after the last ones returned, waiting up to `wait` for some.
    async fn poll(&mut self, max: usize, wait: Duration) -> TransportResult<Vec<Record>>;
    /// Marks everything before `next` (the next offset to read of each partition, as
    /// [`next_offsets`] gives them for a delivered batch) as done for the connector.
    async fn commit(&mut self, next: &[PartitionOffset]) -> TransportResult<()>;
    /// Records in this consumer's partitions after its read positions (the consumer
    /// lag); on Kafka, one watermark request per assigned partition.
    async fn lag(&mut self) -> TransportResult<u64>;
    /// How many partitions the consumer reads now (none while its group rebalances).
    fn assigned_partitions(&self) -> usize;
    /// The partition numbers the consumer reads now (of any of its topics).
    fn partition_numbers(&self) -> Vec<i32> {
        Vec::new()
    }
    /// Records the consumer jumped over since the last call because the transport no
    /// longer held them (Kafka's retention removed them before they were read).
    fn skipped_by_offset_reset(&mut self) -> u64 {
        0
    }
    /// How long, and why, the transport has been out of reach, while it is.
    fn outage(&self) -> Option<(Duration, String)> {
        None
    }
    /// Commits synchronously what was marked done, before the consumer goes away.
    async fn close(&mut self) -> TransportResult<()>;
}

/// The next offset to read per topic-partition after `records`.
pub fn next_offsets(records: &[Record]) -> Vec<PartitionOffset> {
    let mut next: Vec<PartitionOffset> = Vec::new();
    for record in records {
        let (Some(partition), Some(offset)) = (record.partition, record.offset) else { continue };
        match next.iter_mut().find(|entry| entry.topic == record.topic && entry.partition == partition) {
            Some(entry) => entry.offset = entry.offset.max(offset + 1),
            None => next.push(PartitionOffset { topic: record.topic.clone(), partition, offset: offset + 1 }),
        }
    }
    next
}

/// Kafka's default partitioner for keyed records (murmur2, positive, modulo), so that
/// both transports put a key in the same partition.
pub fn partition_for_key(key: Option<&[u8]>, partitions: u32, round_robin: &mut u32) -> i32 {
    match key {
        Some(key) => ((murmur2(key) & 0x7fff_ffff) % partitions) as i32,
        None => {
            *round_robin = round_robin.wrapping_add(1);
            (*round_robin % partitions) as i32
        }
    }
}

fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut hash = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("four bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^ (hash >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn a_state_page_is_filtered_ordered_and_cut_as_the_embedded_store_does() {
        let entry = |store: &str, partition, key: &str| StateEntry {
            store: store.into(),
            partition,
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
        };
        let entries = vec![
            entry("windows", 1, "device-2"),
            entry("stream-time", 0, "0"),
            entry("windows", 0, "device-10"),
            entry("windows", 3, "device-1"),
            entry("windows", 0, "device-1"),
            entry("windows", 2, "sensor-1"),
        ];
        let keys =
            |page: &StatePage| page.entries.iter().map(|e| (String::from_utf8(e.key.clone()).unwrap(), e.partition)).collect::<Vec<_>>();
        let query = StateQuery { store: Some("windows".into()), key: Some(b"device-1".to_vec()), exact: false, offset: 0, limit: 2 };
        let page = StatePage::of(entries.clone(), &query);
        assert_eq!((page.total, keys(&page)), (3, vec![("device-1".into(), 0), ("device-1".into(), 3)]));
        let page = StatePage::of(entries.clone(), &StateQuery { offset: 2, ..query.clone() });
        assert_eq!((page.total, keys(&page)), (3, vec![("device-10".into(), 0)]));
        let page = StatePage::of(entries.clone(), &StateQuery { exact: true, ..query });
        assert_eq!(page.total, 2);
        let all = StatePage::of(entries, &StateQuery { limit: 100, ..StateQuery::default() });
        assert_eq!(all.entries.first().map(|e| e.store.as_str()), Some("stream-time"));
        assert_eq!(all.total, 6);
    }

    #[test]
    fn next_offsets_takes_the_highest_per_partition() {
        let record = |topic: &str, partition, offset| Record {
            topic: topic.into(),
            partition: Some(partition),
            offset: Some(offset),
            ..Record::default()
        };
        let records = [record("a", 0, 5), record("a", 1, 2), record("a", 0, 7), record("b", 0, 0)];
        let next = |topic: &str, partition, offset| PartitionOffset { topic: topic.into(), partition, offset };
        assert_eq!(next_offsets(&records), vec![next("a", 0, 8), next("a", 1, 3), next("b", 0, 1)]);
    }
}
