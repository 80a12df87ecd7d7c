//! A compacted topic read continuously: every record to the end first, then each new
//! one as it comes, with its position. This is how every host of a cluster follows the
//! config topic, its own writes included, so that all apply the same changes in the
//! same order, and the status topic, so that each answers for the tasks of all.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

use super::client::{Reporting, fetch_metadata};
use super::{KafkaTransport, REQUEST_TIMEOUT};
use crate::transport::{TransportError, TransportResult};

/// How long a topic that is being created is waited for at the start; after that it
/// is taken for empty, and read from its start once it exists (a broker that creates
/// topics only on first write).
const TOPIC_WAIT: Duration = Duration::from_secs(5);
/// How long the first read to the end may take.
const FIRST_READ: Duration = Duration::from_secs(60);
/// How long each poll for new records waits.
const POLL: Duration = Duration::from_millis(100);

/// One record of a followed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its key (empty when it has none).
    pub key: String,
    /// Its value; none for a tombstone.
    pub value: Option<String>,
    /// Where it is.
    pub position: Position,
    /// When it was written, in milliseconds since the epoch, by the writer's clock
    /// (or the broker's), when the record says.
    pub timestamp: Option<i64>,
}

/// Where a record is in its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
}

/// A followed topic.
pub struct Followed {
    /// Every record up to the end at the start, in the order of each partition.
    pub initial: Vec<LogRecord>,
    /// The next offset of each partition after `initial`.
    pub ends: BTreeMap<i32, i64>,
    /// Each record written after, as it comes; closed only if the follower stops.
    pub records: mpsc::UnboundedReceiver<LogRecord>,
}

impl KafkaTransport {
    /// Reads `topic`, the cluster's `role` topic (`config`, `status`), created if
    /// missing, to its end, then follows it on a thread of its own until the receiver
    /// of new records is dropped. `read_committed`: only what was committed is ever seen.
    pub async fn follow(&self, topic: &str, role: &'static str) -> TransportResult<Followed> {
        self.create_missing_topics(&[topic.to_owned()]).await?;
        let mut config = self.base.clone();
        // Assigned, never subscribed, never committed: the group only names the client.
        config
            .set("group.id", format!("{}-{role}-reader", self.cluster().group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed");
        let (ready, started) = oneshot::channel();
        let (sender, records) = mpsc::unbounded_channel();
        let topic = topic.to_owned();
        std::thread::Builder::new()
            .name(format!("{role}-follower"))
            .spawn(move || follow(&config, &topic, role, ready, sender))
            .map_err(|error| TransportError::Other(format!("cannot start the {role} topic's reader: {error}")))?;
        let (initial, ends) =
            started.await.map_err(|_| TransportError::Other(format!("the {role} topic's reader stopped before it read the topic")))??;
        Ok(Followed { initial, ends, records })
    }
}

/// What a topic held: its records, and the next offset of each partition.
pub(super) type Held = (Vec<LogRecord>, BTreeMap<i32, i64>);

fn follow(
    config: &ClientConfig,
    topic: &str,
    role: &str,
    ready: oneshot::Sender<TransportResult<Held>>,
    records: mpsc::UnboundedSender<LogRecord>,
) {
    let consumer = match read_to_end(config, topic, role) {
        Ok((consumer, held)) => {
            if ready.send(Ok(held)).is_err() {
                return;
            }
            consumer
        }
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let mut failing_since: Option<Instant> = None;
    let mut assigned = consumer.assignment().is_ok_and(|assignment| assignment.count() > 0);
    while !records.is_closed() {
        if !assigned {
            std::thread::sleep(Duration::from_secs(1));
            assigned = match topic_state(&consumer, topic) {
                Ok(TopicState::Partitions(partitions)) => assign_from_start(&consumer, topic, &partitions).is_ok(),
                _ => false,
            };
            if assigned {
                tracing::info!(topic, role, "The cluster's topic exists now; following it.");
            }
            continue;
        }
        match consumer.poll(POLL) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => failing_since = None,
            Some(Ok(message)) => {
                failing_since = None;
                if records.send(record_of(&message)).is_err() {
                    return;
                }
            }
            Some(Err(error)) => {
                // The client keeps trying by itself; say so once a minute at most.
                if failing_since.is_none_or(|since| since.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(topic, role, %error, "Reading the cluster's topic failed; what other hosts write there waits until it works again.");
                    failing_since = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// The consumer, assigned to every partition of `topic` from its start, and what it
/// read up to the end of each.
fn read_to_end(config: &ClientConfig, topic: &str, role: &str) -> TransportResult<(BaseConsumer<Reporting>, Held)> {
    let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
    let Some(partitions) = wait_for_partitions(&consumer, topic, role)? else {
        tracing::warn!(
            topic,
            role,
            "The cluster's topic does not exist (it could not be created, or the broker creates topics on first write); \
             it is taken for empty, and read from its start once it exists."
        );
        return Ok((consumer, (Vec::new(), BTreeMap::new())));
    };
    if role == "config" && partitions.len() > 1 {
        tracing::warn!(
            topic,
            partitions = partitions.len(),
            "The config topic has more than one partition: changes to one connector may be read out of order (a \
             configuration and its target state). Kafka Connect refuses this; give it one partition."
        );
    }
    let held = read_partitions(&consumer, topic, &partitions, FIRST_READ, &format!("the {role} topic"), None)?;
    Ok((consumer, held))
}

/// Assigns `consumer` (made with `enable.partition.eof`) to `partitions` of `topic`
/// from their start and reads them to their end, within `within` (`what` names the
/// topic in errors): the records in the order of each partition, and the next offset
/// of each partition after them. The consumer stays assigned.
///
/// A `read_committed` consumer's end is the first offset of the oldest transaction
/// still open: with `until` (each partition's end as a `read_uncommitted` client sees
/// it), the read goes on until every transaction begun before it ended (committed or
/// aborted), so that what was committed after an open transaction is read too.
pub(super) fn read_partitions(
    consumer: &BaseConsumer<Reporting>,
    topic: &str,
    partitions: &[i32],
    within: Duration,
    what: &str,
    until: Option<&BTreeMap<i32, i64>>,
) -> TransportResult<Held> {
    let mut records = Vec::new();
    let ends = visit_partitions(consumer, topic, partitions, within, what, until, None, |message| records.push(record_of(message)))?;
    Ok((records, ends))
}

/// [`read_partitions`], handing each message to `visit` as it is read instead of
/// keeping it: for records that are not text, or that the caller keeps only some of;
/// with `window`, only the offsets within it.
#[allow(clippy::too_many_arguments)]
pub(super) fn visit_partitions(
    consumer: &BaseConsumer<Reporting>,
    topic: &str,
    partitions: &[i32],
    within: Duration,
    what: &str,
    until: Option<&BTreeMap<i32, i64>>,
    window: Option<std::ops::Range<i64>>,
    mut visit: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> TransportResult<BTreeMap<i32, i64>> {
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    let mut pending = Vec::new();
    for &partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT)?;
        let high = until.and_then(|until| until.get(&partition).copied()).unwrap_or(high).max(high);
        let (low, high) = match &window {
            Some(window) => (low.max(window.start), high.min(window.end)),
            None => (low, high),
        };
        assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
        ends.insert(partition, high);
        if high > low {
            pending.push((partition, high));
        }
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + within;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            let open = if until.is_some() {
                " (a transaction begun before the read is still open: a task that stopped in the middle of a batch, or one on a \
                 host cut off from the cluster, until transaction.timeout.ms ends it)"
            } else {
                ""
            };
            return Err(TransportError::Other(format!("timed out reading {what} from topic {topic}{open}")));
        }
        // A partition ends where librdkafka says, past any transaction markers (with
        // `until`, once its position reached that end).
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let reached = |high: i64| position_of(consumer, topic, partition).is_some_and(|position| position >= high);
                pending.retain(|(id, high)| *id != partition || (until.is_some() && !reached(*high)));
                continue;
            }
            Some(message) => message?,
        };
        let (partition, offset) = (message.partition(), message.offset());
        let end = ends.entry(partition).or_default();
        *end = (*end).max(offset + 1);
        pending.retain(|(id, high)| !(*id == partition && offset + 1 >= *high));
        // Past the window's end (its last records compacted away): not the caller's.
        if window.as_ref().is_some_and(|window| offset >= window.end) {
            continue;
        }
        visit(&message);
    }
    Ok(ends)
}

/// The next offset `consumer` reads in `partition` of `topic`, when it has one.
fn position_of(consumer: &BaseConsumer<Reporting>, topic: &str, partition: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// The partitions of `topic`, waiting up to [`TOPIC_WAIT`] for a topic being created;
/// none if it still does not exist. A topic the broker names but cannot serve (not
/// authorised, no leader) is an error once the wait is over.
fn wait_for_partitions(consumer: &BaseConsumer<Reporting>, topic: &str, role: &str) -> TransportResult<Option<Vec<i32>>> {
    let deadline = Instant::now() + TOPIC_WAIT;
    loop {
        let state = topic_state(consumer, topic)?;
        match state {
            TopicState::Partitions(partitions) => return Ok(Some(partitions)),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            TopicState::Missing => return Ok(None),
            TopicState::Unready(reason) => {
                return Err(TransportError::Other(format!("cannot read the {role} topic {topic}: {reason}")));
            }
        }
    }
}

/// What the cluster says of a topic.
enum TopicState {
    /// It does not exist.
    Missing,
    /// Its partitions.
    Partitions(Vec<i32>),
    /// It exists but cannot be read now, and why.
    Unready(String),
}

fn topic_state(consumer: &BaseConsumer<Reporting>, topic: &str) -> TransportResult<TopicState> {
    let metadata = fetch_metadata(consumer, Some(topic))?;
    let Some(found) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else { return Ok(TopicState::Missing) };
    Ok(match found.error() {
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => TopicState::Missing,
        Some(error) => TopicState::Unready(RDKafkaErrorCode::from(error).to_string()),
        None if found.partitions().is_empty() => TopicState::Unready("it has no partitions".to_owned()),
        None => TopicState::Partitions(found.partitions().iter().map(|partition| partition.id()).collect()),
    })
}

fn assign_from_start(consumer: &BaseConsumer<Reporting>, topic: &str, partitions: &[i32]) -> TransportResult<()> {
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(())
}

fn record_of(message: &rdkafka::message::BorrowedMessage<'_>) -> LogRecord {
    LogRecord {
        key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()).unwrap_or_default(),
        value: message.payload().map(|value| String::from_utf8_lossy(value).into_owned()),
        position: Position { partition: message.partition(), offset: message.offset() },
        timestamp: message.timestamp().to_millis(),
    }
}
