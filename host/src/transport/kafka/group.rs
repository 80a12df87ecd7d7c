//! A sink task's consumer: a member of its connector's consumer group.
//!
//! Every call that may wait on a broker runs on a blocking thread, never on the async
//! threads that also serve the admin API: polling (which also runs the rebalance and
//! commit callbacks), the commits of a stopping task, watermark requests, and the
//! consumer's own close when it is dropped.
//!
//! Offsets: once the sink acknowledged a batch its offsets are stored and committed, and
//! the task waits for the broker's answer (up to `COMMIT_ANSWER_WAIT`) before it takes
//! the next batch. So after a crash, at most the batch the sink was writing is
//! delivered again. Before a rebalance takes partitions away and when the task stops,
//! what was acknowledged is committed too; a stopping task then leaves the group.

use std::sync::atomic::{AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use wasm_connect_protocol::Record;

use super::client::{log_client_line, report_client_error};
use super::owned_record;
use crate::transport::{RecordConsumer, TransportError, TransportResult, next_offsets};

/// How long a poll waits for the broker to confirm the previous batch's commit.
const COMMIT_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long a stopping task tries to commit what its sink acknowledged.
const CLOSE_COMMIT_WAIT: Duration = Duration::from_secs(10);
/// How long a stopping task waits for the other members of its group in this process
/// that stop with it to make their last commits, before it leaves.
const SIBLINGS_WAIT: Duration = Duration::from_secs(3);
/// How long a stopping task waits for its partitions to be revoked before it leaves.
const LEAVE_WAIT: Duration = Duration::from_secs(2);
/// How long a watermark request (for the consumer lag) may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);

/// One sink task's member of its connector's group.
pub(super) struct KafkaConsumer {
    /// Shared with the blocking threads that poll, commit and ask for watermarks;
    /// taken by `drop`.
    consumer: Option<Arc<BaseConsumer<GroupMember>>>,
    /// A commit the broker has not answered within `COMMIT_ANSWER_WAIT` (its blocking
    /// thread still waits): no other is sent meanwhile, the next carries its offsets.
    commit_in_flight: Option<tokio::task::JoinHandle<KafkaResult<()>>>,
    /// This member's group, and the group's other members in this process.
    group: String,
    siblings: Arc<Siblings>,
    /// Still counted among the group's members here (until `close` or drop).
    counted: bool,
}

/// The members of each consumer group in this process, and how many of them have made
/// their last commit. A member that leaves starts a rebalance, during which some
/// brokers refuse commits: so a stopping member leaves only once the members that stop
/// with it (the tasks of a stopped connector, or of a stopping host) have committed,
/// or after `SIBLINGS_WAIT`.
#[derive(Default)]
pub(super) struct Siblings {
    /// Group -> (members, members that made their last commit).
    groups: Mutex<HashMap<String, (usize, usize)>>,
    changed: Condvar,
}

impl Siblings {
    fn joined(&self, group: &str) {
        self.groups.lock().expect("siblings lock").entry(group.to_owned()).or_default().0 += 1;
    }

    /// Counts this member's last commit, then waits until every member of the group
    /// here has made theirs (or `SIBLINGS_WAIT` passed).
    fn committed_and_wait(&self, group: &str) {
        let mut groups = self.groups.lock().expect("siblings lock");
        if let Some(counts) = groups.get_mut(group) {
            counts.1 += 1;
        }
        self.changed.notify_all();
        let _ = self.changed.wait_timeout_while(groups, SIBLINGS_WAIT, |groups| groups.get(group).is_some_and(|(members, committed)| committed < members));
    }

    /// Forgets a member that left (`committed`: after `committed_and_wait`).
    fn left(&self, group: &str, committed: bool) {
        let mut groups = self.groups.lock().expect("siblings lock");
        if let Some(counts) = groups.get_mut(group) {
            counts.0 = counts.0.saturating_sub(1);
            if committed {
                counts.1 = counts.1.saturating_sub(1);
            }
            if counts.0 == 0 {
                groups.remove(group);
            }
        }
        self.changed.notify_all();
    }
}

impl KafkaConsumer {
    /// Joins `group` (which `config` names) and subscribes to `topics`.
    pub(super) fn join(config: &ClientConfig, topics: &[String], group: String, siblings: Arc<Siblings>) -> TransportResult<Self> {
        let consumer: BaseConsumer<GroupMember> = config.create_with_context(GroupMember::default())?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        siblings.joined(&group);
        Ok(Self { consumer: Some(Arc::new(consumer)), commit_in_flight: None, group, siblings, counted: true })
    }

    fn member(&self) -> &Arc<BaseConsumer<GroupMember>> {
        self.consumer.as_ref().expect("the consumer is taken only when dropped")
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // librdkafka's close leaves the group (or, for a static member, does not) and
        // may wait for an unreachable broker: never on an async thread. Everything
        // acknowledged was committed by `close` before.
        if self.counted {
            self.siblings.left(&self.group, false);
        }
        // The last holder closes it: this thread, or a blocking one still polling.
        if let Some(consumer) = self.consumer.take() {
            let _ = std::thread::Builder::new().name("kafka-consumer-close".into()).spawn(move || drop(consumer));
        }
    }
}

/// The context of a sink task's consumer: reports as every client does, commits what
/// was acknowledged before partitions are taken away, and keeps what the broker
/// answered to commits and why the cluster cannot be reached.
#[derive(Default)]
struct GroupMember {
    /// Since when, and why, the cluster cannot be reached (cleared by the next answer to
    /// a commit or a watermark request).
    outage: Mutex<Option<(Instant, String)>>,
    /// Records jumped over by offset resets since the task last asked.
    skipped: AtomicU64,
}

impl GroupMember {
    fn reached(&self) {
        *self.outage.lock().expect("outage lock") = None;
    }

    fn unreachable(&self, reason: String) {
        let mut outage = self.outage.lock().expect("outage lock");
        match outage.as_mut() {
            Some((_, last)) => *last = reason,
            None => *outage = Some((Instant::now(), reason)),
        }
    }
}

/// librdkafka moved a partition's read position because the broker no longer holds
/// the offset it was at: records removed by retention (or a truncated log) before the
/// sink read them are jumped over; a log that now ends before the position (a broker
/// that lost acknowledged records) is read again from its start.
#[derive(Debug, PartialEq, Eq)]
struct OffsetReset<'a> {
    partition: &'a str,
    from: i64,
    to: i64,
}

impl<'a> OffsetReset<'a> {
    /// Reads librdkafka's line: `TOPIC [N]: offset reset (at offset 105 (leader epoch
    /// 0), broker 1) to cached BEGINNING offset offset 3180 (leader epoch -1): ...`.
    fn parse(message: &'a str) -> Option<Self> {
        let (partition, rest) = message.split_once(": offset reset (at offset ")?;
        let number = |text: &str| -> Option<i64> {
            let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let from = number(rest)?;
        let (_, target) = rest.split_once(") to ")?;
        let (_, after) = target.split_once("offset ")?;
        let to = number(after.trim_start_matches("offset "))?;
        Some(Self { partition: partition.rsplit("]: ").next().unwrap_or(partition), from, to })
    }

    /// Logs what the reset means for the sink; returns the records jumped over.
    fn report(&self) -> u64 {
        let Self { partition, from, to } = self;
        if to > from {
            tracing::warn!(
                partition, from, to,
                "The broker no longer holds records this sink had not read yet (removed by retention, or a truncated log): {} records were skipped and will not reach the sink.",
                to - from
            );
            (to - from) as u64
        } else {
            tracing::warn!(
                partition, from, to,
                "The broker's log ends before this sink's position (a broker that lost acknowledged records, or a topic deleted and made again): it is read again from its first offset."
            );
            0
        }
    }
}

/// Errors that mean the cluster cannot be reached for now: the task waits for it
/// (and says so) rather than failing.
fn is_outage(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL
    )
}

impl ClientContext for GroupMember {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        if let Some(reset) = OffsetReset::parse(message) {
            self.skipped.fetch_add(reset.report(), Ordering::Relaxed);
        }
        log_client_line(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // A single closed connection is no outage (librdkafka reconnects); every broker
        // down, or a refused login, is.
        if let Some(code) = error.rdkafka_error_code()
            && code != RDKafkaErrorCode::BrokerTransportFailure
            && is_outage(code)
        {
            self.unreachable(format!("{code}: {reason}"));
        }
        report_client_error(&error, reason);
    }
}

impl ConsumerContext for GroupMember {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // As Kafka Connect does: the partitions' next owner starts right after what
        // this task's sink acknowledged.
        if matches!(rebalance, Rebalance::Revoke(_))
            && let Err(error) = commit_acknowledged(consumer)
        {
            tracing::warn!(%error, "The offsets of acknowledged batches could not be committed before a rebalance; their records will be delivered again.");
        }
    }
}

/// Commits the offsets stored for acknowledged batches in the current assignment, and
/// waits for the answer.
fn commit_acknowledged(consumer: &BaseConsumer<GroupMember>) -> KafkaResult<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// A poll on a blocking thread: up to `max` records, waiting up to `wait` for the first.
fn poll_blocking(consumer: &BaseConsumer<GroupMember>, max: usize, wait: Duration) -> TransportResult<Vec<Record>> {
    let mut records = Vec::new();
    let mut timeout = wait;
    while records.len() < max {
        match take(consumer, timeout)? {
            Some(record) => records.push(record),
            None => break,
        }
        // Once something arrived, only take what is already buffered.
        timeout = Duration::ZERO;
    }
    Ok(records)
}

/// One record, if one arrives within `timeout`. Errors that mean the cluster is out
/// of reach are noted (the task goes on waiting); others fail the task.
fn take(consumer: &BaseConsumer<GroupMember>, timeout: Duration) -> TransportResult<Option<Record>> {
    match consumer.poll(timeout) {
        None => Ok(None),
        // A record may come from what was fetched before an outage: it says nothing
        // about the cluster now.
        Some(Ok(message)) => Ok(Some(owned_record(&message))),
        Some(Err(KafkaError::MessageConsumption(code))) if is_outage(code) => {
            consumer.context().unreachable(format!("{code}"));
            Ok(None)
        }
        Some(Err(error)) => Err(error.into()),
    }
}

/// Commits what was acknowledged. While the group rebalances (some brokers refuse
/// commits all along), the task's partitions are paused and the rebalance served until
/// the commit goes through or the partitions were revoked (their revoke commits), so
/// that a rebalance repeats at most the batch in hand, not all a task read meanwhile.
fn commit_through_rebalance(consumer: &BaseConsumer<GroupMember>) -> KafkaResult<()> {
    let rebalancing = |result: &KafkaResult<()>| {
        matches!(result, Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::IllegalGeneration)))
    };
    let mut result = commit_acknowledged(consumer);
    if !rebalancing(&result) {
        return result;
    }
    let Ok(paused) = consumer.assignment() else { return result };
    let _ = consumer.pause(&paused);
    let deadline = Instant::now() + COMMIT_ANSWER_WAIT;
    // Records already fetched before the pause still come out of a poll: each
    // partition is set back to the first of them, to be read again.
    let mut rewind: HashMap<(String, i32), i64> = HashMap::new();
    while rebalancing(&result) && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            rewind.entry((message.topic().to_owned(), message.partition())).or_insert(message.offset());
        }
        result = commit_acknowledged(consumer);
    }
    // The pause outlives a revoke (librdkafka keeps the application's pause flag across
    // unassign and assign): lift it from every partition paused here.
    let _ = consumer.resume(&paused);
    // What is still assigned (the same partitions, or those of a new generation) reads on.
    if let Ok(assigned) = consumer.assignment() {
        for ((topic, partition), offset) in &rewind {
            if assigned.find_partition(topic, *partition).is_some() {
                let _ = consumer.seek(topic, *partition, Offset::Offset(*offset), Duration::from_secs(5));
            }
        }
        let _ = consumer.resume(&assigned);
    }
    result
}

/// Commits what was acknowledged as the task stops, waiting out a rebalance under way
/// (whose revoke commits for the partitions taken away) for up to `CLOSE_COMMIT_WAIT`.
fn commit_before_leaving(consumer: &BaseConsumer<GroupMember>) -> KafkaResult<()> {
    let deadline = Instant::now() + CLOSE_COMMIT_WAIT;
    loop {
        match commit_acknowledged(consumer) {
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::IllegalGeneration | RDKafkaErrorCode::UnknownMemberId,
            )) if Instant::now() < deadline => {
                // Records fetched meanwhile are not acknowledged: never committed.
                let _ = consumer.poll(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

/// Leaves the group, so that its partitions go to the other members at once. A static
/// member sends no LeaveGroup when it is closed (KIP-345: that is what lets a host
/// restarted after a crash take its partitions back), but does when it unsubscribes.
fn leave_group(consumer: &BaseConsumer<GroupMember>) {
    consumer.unsubscribe();
    let deadline = Instant::now() + LEAVE_WAIT;
    // The revoke runs in a poll; the LeaveGroup goes out once it is done.
    while Instant::now() < deadline && consumer.assignment().is_ok_and(|assignment| assignment.count() > 0) {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    let _ = consumer.poll(Duration::from_millis(200));
}

fn joined<T>(result: Result<T, tokio::task::JoinError>) -> TransportResult<T> {
    result.map_err(|error| TransportError::Other(error.to_string()))
}

impl KafkaConsumer {
    /// Commits the stored offsets and waits for the answer, up to `COMMIT_ANSWER_WAIT`.
    /// A failed commit fails nothing: the next one carries the same offsets, and after
    /// a crash the batch is delivered again.
    async fn commit_stored(&mut self) {
        if let Some(previous) = &self.commit_in_flight {
            if !previous.is_finished() {
                return;
            }
            self.commit_in_flight = None;
        }
        let consumer = self.member().clone();
        let mut committing = tokio::task::spawn_blocking(move || commit_through_rebalance(&consumer));
        let result = match tokio::time::timeout(COMMIT_ANSWER_WAIT, &mut committing).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => {
                tracing::error!(%error, "A commit's thread failed; the next commit carries its offsets.");
                return;
            }
            Err(_elapsed) => {
                self.commit_in_flight = Some(committing);
                tracing::warn!(
                    "The Kafka cluster has not answered a commit within {} s; the task goes on, and the next commit carries these offsets.",
                    COMMIT_ANSWER_WAIT.as_secs()
                );
                return;
            }
        };
        let context = self.member().context();
        match result {
            Ok(()) => context.reached(),
            Err(error) => {
                if let Some(code) = error.rdkafka_error_code().filter(|code| is_outage(*code)) {
                    context.unreachable(format!("committing offsets failed: {code}"));
                }
                tracing::warn!(%error, "The offsets of an acknowledged batch could not be committed; the next commit carries them, and after a crash the batch is delivered again.");
            }
        }
    }
}

#[async_trait]
impl RecordConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> TransportResult<Vec<Record>> {
        let consumer = self.member().clone();
        // Dropped when the task is cancelled: what it fetched was not acknowledged, so
        // nothing is committed past it.
        joined(tokio::task::spawn_blocking(move || poll_blocking(&consumer, max, wait)).await)?
    }

    async fn commit(&mut self, records: &[Record]) -> TransportResult<()> {
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, next) in next_offsets(records) {
            offsets.add_partition_offset(&topic, partition, Offset::Offset(next))?;
        }
        match self.member().store_offsets(&offsets) {
            Ok(()) => {
                self.commit_stored().await;
                Ok(())
            }
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
        let consumer = self.member().clone();
        let measured = tokio::task::spawn_blocking(move || -> TransportResult<u64> {
            let positions = consumer.position()?;
            let mut lag = 0;
            for element in positions.elements() {
                // A partition not read from yet has no position: its lag shows once it has.
                let Offset::Offset(position) = element.offset() else { continue };
                match consumer.fetch_watermarks(element.topic(), element.partition(), WATERMARK_TIMEOUT) {
                    Ok((_, high)) => {
                        consumer.context().reached();
                        lag += (high - position).max(0) as u64;
                    }
                    Err(error) => {
                        if let Some(code) = error.rdkafka_error_code().filter(|code| is_outage(*code)) {
                            consumer.context().unreachable(format!("no answer to a watermark request: {code}"));
                        }
                        return Err(error.into());
                    }
                }
            }
            Ok(lag)
        });
        joined(measured.await).map_err(|error| TransportError::Other(format!("measuring the consumer lag failed: {error}")))?
    }

    fn skipped_by_offset_reset(&mut self) -> u64 {
        self.member().context().skipped.swap(0, Ordering::Relaxed)
    }

    fn outage(&self) -> Option<(Duration, String)> {
        self.member().context().outage.lock().expect("outage lock").as_ref().map(|(since, reason)| (since.elapsed(), reason.clone()))
    }

    async fn close(&mut self) -> TransportResult<()> {
        let (consumer, group, siblings) = (self.member().clone(), self.group.clone(), self.siblings.clone());
        // From here the closing thread counts this member out of its group.
        self.counted = false;
        let committing = tokio::task::spawn_blocking(move || -> KafkaResult<()> {
            let committed = commit_before_leaving(&consumer);
            siblings.committed_and_wait(&group);
            leave_group(&consumer);
            siblings.left(&group, true);
            committed
        });
        match tokio::time::timeout(CLOSE_COMMIT_WAIT + SIBLINGS_WAIT + LEAVE_WAIT + Duration::from_secs(1), committing).await {
            Ok(result) => match joined(result)? {
                Ok(()) => Ok(()),
                Err(error) => {
                    tracing::warn!(%error, "The offsets of the last acknowledged batch could not be committed as the task stopped; it will be delivered again.");
                    Ok(())
                }
            },
            Err(_elapsed) => {
                tracing::warn!(
                    "The Kafka cluster did not answer the last commit within {} s as the task stopped; the last acknowledged batch will be delivered again.",
                    CLOSE_COMMIT_WAIT.as_secs()
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetReset;

    #[test]
    fn offset_resets_are_read_from_librdkafkas_lines() {
        let skipped = "flights [0]: offset reset (at offset 105 (leader epoch 0), broker 1) to cached BEGINNING offset offset 3180 (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(OffsetReset::parse(skipped), Some(OffsetReset { partition: "flights [0]", from: 105, to: 3180 }));
        assert_eq!(OffsetReset::parse(skipped).unwrap().report(), 3075);
        let rewound = "[thrd:main]: iot [3]: offset reset (at offset 5000, broker 1) to BEGINNING offset 0: fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(OffsetReset::parse(rewound), Some(OffsetReset { partition: "iot [3]", from: 5000, to: 0 }));
        assert_eq!(OffsetReset::parse(rewound).unwrap().report(), 0);
        assert_eq!(OffsetReset::parse("Consumer group session timed out"), None);
    }
}
