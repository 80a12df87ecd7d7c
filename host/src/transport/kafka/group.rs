//! A sink task's consumer: a member of its connector's consumer group.
//!
//! Every call that may wait on a broker runs on a blocking thread, never on the async
//! threads that also serve the admin API: polling (which also runs the rebalance and
//! commit callbacks), the commits of a stopping task, watermark requests, and the
//! consumer's own close when it is dropped.
//!
//! Only the sink task's own poll reads records: commits never poll, so no record can
//! be taken where the sink does not see it.
//!
//! Offsets: once the sink acknowledged a batch its offsets are stored and committed, and
//! the task waits for the broker's answer (up to `COMMIT_ANSWER_WAIT`) before it takes
//! the next batch. A refused commit (the group rebalances, or the coordinator is
//! unreachable) pauses the task's partitions: its polls then only serve the rebalance
//! and try the commit again, for up to `COMMIT_ANSWER_WAIT`. So after a crash, at most
//! the batch the sink was writing is delivered again (more only when commits failed for
//! longer than that). Before a rebalance takes partitions away and when the task stops,
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
use rdkafka::{Offset, TopicPartitionList};
use wasm_connect_protocol::Record;

use super::client::{log_client_line, report_client_error};
use super::owned_record;
use crate::transport::{RecordConsumer, TransportError, TransportResult, next_offsets};

/// How long a commit waits for the broker's answer, and how long a task whose commit
/// was refused holds its partitions paused while it tries again.
const COMMIT_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long one poll of a task that owes a commit serves the rebalance before it tries
/// the commit again.
const OWED_POLL: Duration = Duration::from_millis(100);
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
    /// A commit that failed and is being tried again, with the task's partitions paused.
    owed: Option<OwedCommit>,
    /// Records that came out of polls while the partitions were paused (fetched before
    /// the pause): handed to the sink once the commit went through, unless a rebalance
    /// took partitions away meanwhile (their owners read them from the commit).
    held: Vec<Record>,
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

/// A commit the broker refused or did not answer: since when, the partitions paused
/// for it, and how many revokes had happened when they were paused.
struct OwedCommit {
    since: Instant,
    paused: Vec<(String, i32)>,
    revokes: u64,
}

/// A member on its way out: counted out of its group's members here when dropped,
/// also if its thread panics.
struct Leaving {
    siblings: Arc<Siblings>,
    group: String,
    /// Counted among the members that made their last commit.
    committed: bool,
}

impl Drop for Leaving {
    fn drop(&mut self) {
        self.siblings.left(&self.group, self.committed);
    }
}

impl KafkaConsumer {
    /// Joins `group` (which `config` names) and subscribes to `topics`.
    pub(super) fn join(config: &ClientConfig, topics: &[String], group: String, siblings: Arc<Siblings>) -> TransportResult<Self> {
        let consumer: BaseConsumer<GroupMember> = config.create_with_context(GroupMember::default())?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        siblings.joined(&group);
        Ok(Self { consumer: Some(Arc::new(consumer)), commit_in_flight: None, owed: None, held: Vec::new(), group, siblings, counted: true })
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
    /// Partitions whose read position librdkafka reset, with the offset it was at: the
    /// next record read there tells how many were jumped over (librdkafka does not
    /// always log the offset it moved to).
    resets: Mutex<HashMap<(String, i32), i64>>,
    /// How many times a rebalance took this member's partitions away.
    revokes: AtomicU64,
}

impl GroupMember {
    fn reached(&self) {
        *self.outage.lock().expect("outage lock") = None;
    }

    fn is_unreachable(&self) -> bool {
        self.outage.lock().expect("outage lock").is_some()
    }

    /// Counts the records an offset reset jumped over in `record`'s partition, once the
    /// first record after it arrived.
    fn read_after_reset(&self, record: &Record) {
        let mut resets = self.resets.lock().expect("resets lock");
        if resets.is_empty() {
            return;
        }
        let (Some(partition), Some(offset)) = (record.partition, record.offset) else { return };
        if let Some(from) = resets.remove(&(record.topic.clone(), partition)) {
            let skipped = report_reset(&record.topic, partition, from, offset);
            self.skipped.fetch_add(skipped, Ordering::Relaxed);
        }
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
/// the offset it was at (`OFFSET_OUT_OF_RANGE`).
#[derive(Debug, PartialEq, Eq)]
struct OffsetReset<'a> {
    topic: &'a str,
    partition: i32,
    from: i64,
}

impl<'a> OffsetReset<'a> {
    /// Reads librdkafka's line: `TOPIC [N]: offset reset (at offset 105 (leader epoch
    /// 0), broker 1) to cached BEGINNING offset offset 3180 ...`, or (when the broker
    /// told no log start) `... to offset BEGINNING (leader epoch -1) ...`.
    fn parse(message: &'a str) -> Option<Self> {
        let (partition, rest) = message.split_once(": offset reset (at offset ")?;
        let partition = partition.rsplit("]: ").next().unwrap_or(partition);
        let (topic, number) = partition.strip_suffix(']')?.rsplit_once(" [")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(Self { topic, partition: number.parse().ok()?, from: digits.parse().ok()? })
    }
}

/// Logs what an offset reset from `from` meant, now that the first record after it
/// (at `next`) arrived; returns the records jumped over.
fn report_reset(topic: &str, partition: i32, from: i64, next: i64) -> u64 {
    if next > from {
        tracing::warn!(
            topic, partition, from, next,
            "The broker no longer holds records this sink had not read yet (removed by retention, or a truncated log): {} records were skipped and will not reach the sink.",
            next - from
        );
        (next - from) as u64
    } else {
        tracing::warn!(
            topic, partition, from, next,
            "The broker's log ends before this sink's position (a broker that lost acknowledged records, or a topic deleted and made again): it is read again from its first offset."
        );
        0
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
            self.resets.lock().expect("resets lock").insert((reset.topic.to_owned(), reset.partition), reset.from);
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
        if matches!(rebalance, Rebalance::Revoke(_)) {
            self.revokes.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = commit_acknowledged(consumer) {
                tracing::warn!(%error, "The offsets of acknowledged batches could not be committed before a rebalance; their records will be delivered again.");
            }
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
        Some(Ok(message)) => {
            let record = owned_record(&message);
            consumer.context().read_after_reset(&record);
            Ok(Some(record))
        }
        Some(Err(KafkaError::MessageConsumption(code))) if is_outage(code) => {
            consumer.context().unreachable(format!("{code}"));
            Ok(None)
        }
        // A subscribed topic not made yet (its creation runs in the background, or the
        // cluster refuses it): the task reads it once it exists.
        Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic))) => {
            tracing::warn!("A topic this sink reads does not exist yet; the task waits for it.");
            Ok(None)
        }
        Some(Err(error)) => Err(error.into()),
    }
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
    /// A refused or unanswered commit pauses the task's partitions (see `poll_owing`).
    async fn commit_stored(&mut self) {
        if let Some(previous) = &self.commit_in_flight {
            if !previous.is_finished() {
                self.owe();
                return;
            }
            self.commit_in_flight = None;
        }
        let consumer = self.member().clone();
        let mut committing = tokio::task::spawn_blocking(move || commit_acknowledged(&consumer));
        let result = match tokio::time::timeout(COMMIT_ANSWER_WAIT, &mut committing).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(KafkaError::Canceled).inspect_err(|_| tracing::error!(%error, "A commit's thread failed.")),
            Err(_elapsed) => {
                self.commit_in_flight = Some(committing);
                if self.owed.is_none() {
                    tracing::warn!("The Kafka cluster has not answered a commit within {} s; the task waits for it.", COMMIT_ANSWER_WAIT.as_secs());
                }
                self.owe();
                return;
            }
        };
        self.commit_answered(result);
    }

    fn commit_answered(&mut self, result: KafkaResult<()>) {
        let context = self.member().context();
        match result {
            Ok(()) => {
                context.reached();
                self.settle();
            }
            Err(error) => {
                let rebalancing = matches!(
                    error,
                    KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::IllegalGeneration)
                );
                if let Some(code) = error.rdkafka_error_code().filter(|code| is_outage(*code)) {
                    context.unreachable(format!("committing offsets failed: {code}"));
                }
                if self.owed.is_none() && !rebalancing {
                    tracing::warn!(%error, "The offsets of an acknowledged batch could not be committed; the task tries again before it reads on.");
                }
                self.owe();
            }
        }
    }

    /// Pauses the task's partitions until a commit goes through (or `COMMIT_ANSWER_WAIT`
    /// passed), so that a crash meanwhile repeats only the batch in hand.
    fn owe(&mut self) {
        if self.owed.is_some() {
            return;
        }
        let consumer = self.member();
        let paused = consumer.assignment().map(|assignment| partitions_of(&assignment)).unwrap_or_default();
        let _ = consumer.pause(&partition_list(&paused));
        let revokes = consumer.context().revokes.load(Ordering::Relaxed);
        self.owed = Some(OwedCommit { since: Instant::now(), paused, revokes });
    }

    /// Reads on after an owed commit went through, or was given up: lifts the pause from
    /// every partition paused for it (librdkafka keeps the pause across a rebalance) and
    /// from what is assigned now. Records held meanwhile go to the sink unless a
    /// rebalance took partitions away since (their new owners read from the commit).
    fn settle(&mut self) {
        let Some(owed) = self.owed.take() else { return };
        let consumer = self.member();
        let _ = consumer.resume(&partition_list(&owed.paused));
        if let Ok(assigned) = consumer.assignment() {
            let _ = consumer.resume(&assigned);
        }
        if consumer.context().revokes.load(Ordering::Relaxed) != owed.revokes {
            self.held.clear();
        }
    }

    /// A poll while a commit is owed: serves the rebalance (its callbacks run in polls)
    /// with the partitions paused, holds what still comes out, and tries the commit
    /// again. Returns no records until the commit went through or was given up.
    async fn poll_owing(&mut self) -> TransportResult<()> {
        if let Some(previous) = &self.commit_in_flight {
            if previous.is_finished() {
                let previous = self.commit_in_flight.take().expect("checked above");
                let result = joined(previous.await)?;
                self.commit_answered(result);
            }
        }
        let Some(owed) = &self.owed else { return Ok(()) };
        if owed.since.elapsed() >= COMMIT_ANSWER_WAIT {
            tracing::warn!(
                "No commit went through for {} s; the task reads on, and after a crash the batches since the last commit are delivered again.",
                COMMIT_ANSWER_WAIT.as_secs()
            );
            self.settle();
            return Ok(());
        }
        let consumer = self.member().clone();
        let mut held = joined(tokio::task::spawn_blocking(move || poll_blocking(&consumer, usize::MAX, OWED_POLL)).await)??;
        self.held.append(&mut held);
        if self.commit_in_flight.is_none() {
            self.commit_stored().await;
        }
        Ok(())
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements().iter().map(|element| (element.topic().to_owned(), element.partition())).collect()
}

fn partition_list(partitions: &[(String, i32)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}

#[async_trait]
impl RecordConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> TransportResult<Vec<Record>> {
        if self.owed.is_some() {
            self.poll_owing().await?;
            if self.owed.is_some() {
                return Ok(Vec::new());
            }
        }
        if !self.held.is_empty() {
            let rest = self.held.split_off(max.min(self.held.len()));
            return Ok(std::mem::replace(&mut self.held, rest));
        }
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
            let mut answered = false;
            for element in positions.elements() {
                // A partition not read from yet has no position: its lag shows once it has.
                let Offset::Offset(position) = element.offset() else { continue };
                match consumer.fetch_watermarks(element.topic(), element.partition(), WATERMARK_TIMEOUT) {
                    Ok((_, high)) => {
                        answered = true;
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
            // A task with nothing to read asks for its topic's metadata instead, so that
            // an outage it noticed also clears by itself.
            if !answered && consumer.context().is_unreachable() {
                let subscription = consumer.subscription()?;
                if let Some(element) = subscription.elements().first()
                    && consumer.fetch_metadata(Some(element.topic()), WATERMARK_TIMEOUT).is_ok()
                {
                    consumer.context().reached();
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
            let mut leaving = Leaving { siblings, group, committed: false };
            let committed = commit_before_leaving(&consumer);
            leaving.siblings.committed_and_wait(&leaving.group);
            leaving.committed = true;
            leave_group(&consumer);
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
    use super::{OffsetReset, report_reset};

    #[test]
    fn offset_resets_are_read_from_librdkafkas_lines() {
        let cached = "flights [0]: offset reset (at offset 105 (leader epoch 0), broker 1) to cached BEGINNING offset offset 3180 (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(OffsetReset::parse(cached), Some(OffsetReset { topic: "flights", partition: 0, from: 105 }));
        let logical = "[thrd:main]: iot.raw [3]: offset reset (at offset 5000 (leader epoch 2), broker 1) to offset BEGINNING (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(OffsetReset::parse(logical), Some(OffsetReset { topic: "iot.raw", partition: 3, from: 5000 }));
        assert_eq!(OffsetReset::parse("Consumer group session timed out"), None);
        assert_eq!(OffsetReset::parse("x: offset reset (at offset 12, broker 1) to END"), None);
    }

    #[test]
    fn the_first_record_after_a_reset_tells_how_many_were_skipped() {
        assert_eq!(report_reset("flights", 0, 105, 3180), 3075);
        assert_eq!(report_reset("iot", 3, 5000, 0), 0);
        assert_eq!(report_reset("iot", 3, 5000, 5000), 0);
    }
}
