//! A sink task's consumer: a member of its connector's consumer group. (A stream
//! processor task's consumer is one too, but reads the partitions it is given: see
//! `KafkaConsumer::assign_fixed`.)
//!
//! Every call that may wait on a broker runs on a blocking thread, never on the async
//! threads that also serve the admin API: polling (which also runs the rebalance and
//! commit callbacks), the commits of a stopping task, watermark requests, and the
//! consumer's own close when it is dropped.
//!
//! Only the sink task's own poll hands records out: commits never poll, so no record
//! can be taken where the sink does not see it. (A stopping task's last commit and its
//! leave poll to serve the rebalance and drop what they read: nothing after it is
//! stored.)
//!
//! Offsets: once the sink acknowledged a batch its offsets are stored and committed, and
//! the task waits for the broker's answer (up to `COMMIT_ANSWER_WAIT`) before it takes
//! the next batch. A refused commit (the group rebalances, or the coordinator is
//! unreachable) pauses the task's partitions: its polls then only serve the rebalance
//! and try the commit again, for up to `COMMIT_ANSWER_WAIT`. So after a crash, at most
//! the batch the sink was writing is delivered again (more only when commits failed for
//! longer than that). Before a rebalance takes partitions away and when the task stops,
//! what was acknowledged is committed too; a stopping task then leaves the group.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
use crate::transport::{PartitionOffset, RecordConsumer, TransportError, TransportResult};

/// How long a commit waits for the broker's answer, and how long a task whose commit
/// was refused holds its partitions paused while it tries again.
const COMMIT_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long an unanswered commit holds back the next one.
const ABANDON_COMMIT_AFTER: Duration = Duration::from_secs(30);
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
    /// thread still waits) and when it was sent: no other is sent meanwhile (for up to
    /// `ABANDON_COMMIT_AFTER`), the next carries its offsets.
    commit_in_flight: Option<(tokio::task::JoinHandle<KafkaResult<()>>, Instant)>,
    /// A commit that failed and is being tried again, with the task's partitions paused.
    owed: Option<OwedCommit>,
    /// Offsets were stored after the commit in flight was sent: its answer does not
    /// settle what is owed.
    unsent: bool,
    /// Records that came out of polls while the partitions were paused (fetched before
    /// the pause): handed to the sink once the commit went through, those of partitions
    /// still assigned.
    held: Vec<Record>,
    /// This member's group, and the group's other members in this process.
    group: String,
    siblings: Arc<Siblings>,
    /// Still counted among the group's members here (until `close` or drop).
    counted: bool,
    /// Reads partitions given to it (a stream processor task's), not a subscription:
    /// no rebalance, and nothing to commit or leave as it stops.
    fixed: bool,
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
        let _ = self
            .changed
            .wait_timeout_while(groups, SIBLINGS_WAIT, |groups| groups.get(group).is_some_and(|(members, committed)| committed < members));
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

/// A commit the broker refused or did not answer: since when, and the partitions paused
/// for it.
struct OwedCommit {
    since: Instant,
    paused: Vec<(String, i32)>,
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
        Ok(Self::around(consumer, group, siblings, false))
    }

    /// A member of `group` around `consumer`: counted among its members here (and
    /// subscribed), or reading `fixed` partitions.
    fn around(consumer: BaseConsumer<GroupMember>, group: String, siblings: Arc<Siblings>, fixed: bool) -> Self {
        Self {
            consumer: Some(Arc::new(consumer)),
            commit_in_flight: None,
            owed: None,
            unsent: false,
            held: Vec::new(),
            group,
            siblings,
            counted: !fixed,
            fixed,
        }
    }

    /// Reads `partitions` (topic, number) from the group's committed offsets (or where
    /// `auto.offset.reset` says), outside the group's membership: a stream processor
    /// task, whose offsets are committed by its transactions.
    pub(super) fn assign_fixed(config: &ClientConfig, partitions: &[(String, i32)], group: String) -> TransportResult<Self> {
        let consumer: BaseConsumer<GroupMember> = config.create_with_context(GroupMember::default())?;
        let mut assignment = TopicPartitionList::new();
        for (topic, partition) in partitions {
            assignment.add_partition_offset(topic, *partition, Offset::Stored)?;
        }
        consumer.assign(&assignment)?;
        Ok(Self::around(consumer, group, Arc::default(), true))
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
    outage: Mutex<Option<Outage>>,
    /// Records jumped over by offset resets since the task last asked.
    skipped: AtomicU64,
    /// Partitions whose read position librdkafka reset, and where it was: the first
    /// record read there after the reset tells how many were jumped over (librdkafka
    /// does not always log the offset it moved to).
    resets: Mutex<HashMap<(String, i32), PendingReset>>,
    /// While a commit is owed, partitions a rebalance assigns are paused at once, as
    /// those paused for it are (see `KafkaConsumer::owe`).
    pausing_assigned: AtomicBool,
    /// Partitions revoked since a poll last looked: records of theirs taken before the
    /// revoke (earlier in the same poll, or held while a commit was owed) were not
    /// acknowledged, so their next owner (maybe this task again) reads them from the
    /// commit; handing them to the sink too would write them twice. Only partitions
    /// with a stored offset count: without one nothing is committed at the revoke, and
    /// a group reading from `latest` would skip those records.
    revoked: Mutex<Vec<(String, i32)>>,
    /// Partitions this member stored an acknowledged offset for.
    stored: Mutex<HashSet<(String, i32)>>,
}

struct Outage {
    since: Instant,
    reason: String,
    /// Noticed by the client's error callback (every broker down, a refused login):
    /// any answer from the cluster, metadata included, ends it. An outage a commit
    /// found (no coordinator) ends only with a commit that goes through.
    cleared_by_metadata: bool,
}

/// An offset reset whose first record has not come yet.
struct PendingReset {
    /// The position that was out of range.
    from: i64,
    /// The last record taken since that is still below `from`: fetched before the
    /// reset (still queued), or read again from a log that now ends before `from`.
    below: Option<i64>,
}

/// A lock that a panic elsewhere does not turn into another one: these are taken in
/// librdkafka's callbacks, where a panic aborts the process.
fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GroupMember {
    /// Notes partitions a rebalance revoked (see `revoked`).
    fn note_revoked(&self, partitions: Vec<(String, i32)>) {
        let stored = locked(&self.stored);
        locked(&self.revoked).extend(partitions.into_iter().filter(|partition| stored.contains(partition)));
    }

    fn reached(&self) {
        *locked(&self.outage) = None;
    }

    /// An answer to a metadata request: ends an outage the error callback noticed.
    fn metadata_answered(&self) {
        let mut outage = locked(&self.outage);
        if outage.as_ref().is_some_and(|outage| outage.cleared_by_metadata) {
            *outage = None;
        }
    }

    fn is_unreachable(&self) -> bool {
        locked(&self.outage).is_some()
    }

    fn unreachable(&self, reason: String, cleared_by_metadata: bool) {
        let mut outage = locked(&self.outage);
        match outage.as_mut() {
            Some(outage) => {
                outage.reason = reason;
                outage.cleared_by_metadata &= cleared_by_metadata;
            }
            None => *outage = Some(Outage { since: Instant::now(), reason, cleared_by_metadata }),
        }
    }

    /// Counts the records an offset reset jumped over in `record`'s partition, once the
    /// first record after it arrived.
    fn read_after_reset(&self, record: &Record) {
        let (Some(partition), Some(offset)) = (record.partition, record.offset) else { return };
        let outcome = {
            let mut resets = locked(&self.resets);
            if resets.is_empty() {
                return;
            }
            let key = (record.topic.clone(), partition);
            let Some(pending) = resets.get_mut(&key) else { return };
            let outcome = match pending.below {
                _ if offset >= pending.from => Some(ResetOutcome::Skipped((offset - pending.from) as u64)),
                // Back to an offset already taken: the log was read again from its start.
                Some(below) if offset <= below => Some(ResetOutcome::Rewound),
                _ => {
                    pending.below = Some(offset);
                    None
                }
            };
            if outcome.is_some() {
                resets.remove(&key);
            }
            outcome
        };
        match outcome {
            Some(ResetOutcome::Skipped(skipped)) => {
                report_skipped(&record.topic, partition, offset - skipped as i64, offset);
                self.skipped.fetch_add(skipped, Ordering::Relaxed);
            }
            Some(ResetOutcome::Rewound) => report_rewound(&record.topic, partition, offset),
            None => {}
        }
    }
}

enum ResetOutcome {
    Skipped(u64),
    Rewound,
}

/// librdkafka moved a partition's read position because the broker no longer holds
/// the offset it was at (`OFFSET_OUT_OF_RANGE`).
#[derive(Debug, PartialEq, Eq)]
struct OffsetReset<'a> {
    topic: &'a str,
    partition: i32,
    from: i64,
    /// Where it moved to, when librdkafka says (a cached log start); not when it asks
    /// the broker first (`to offset BEGINNING`).
    to: Option<i64>,
}

impl<'a> OffsetReset<'a> {
    /// Reads librdkafka's line: `TOPIC [N]: offset reset (at offset 105 (leader epoch
    /// 0), broker 1) to cached BEGINNING offset offset 3180 ...`, or (when the broker
    /// told no log start) `... to offset BEGINNING (leader epoch -1) ...`.
    fn parse(message: &'a str) -> Option<Self> {
        let (partition, rest) = message.split_once(": offset reset (at offset ")?;
        let partition = partition.rsplit("]: ").next().unwrap_or(partition);
        let (topic, number) = partition.strip_suffix(']')?.rsplit_once(" [")?;
        let leading_number = |text: &str| -> Option<i64> { text.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok() };
        let to = rest
            .split_once(") to ")
            .and_then(|(_, target)| target.split_once(" offset offset ").or_else(|| target.split_once("offset ")))
            .and_then(|(_, after)| leading_number(after));
        Some(Self { topic, partition: number.parse().ok()?, from: leading_number(rest)?, to })
    }
}

fn report_skipped(topic: &str, partition: i32, from: i64, next: i64) {
    if next > from {
        tracing::warn!(
            topic,
            partition,
            from,
            next,
            "The broker no longer holds records this sink had not read yet (removed by retention, or a truncated log): {} records were skipped and will not reach the sink.",
            next - from
        );
    }
}

fn report_rewound(topic: &str, partition: i32, next: i64) {
    tracing::warn!(
        topic,
        partition,
        next,
        "The broker's log ends before this sink's position (a broker that lost acknowledged records, or a topic deleted and made again): it is read again from its first offset."
    );
}

/// Errors that mean the cluster cannot be reached for now: the task waits for it
/// (and says so) rather than failing.
pub(super) fn is_outage(code: RDKafkaErrorCode) -> bool {
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
            match reset.to {
                Some(to) if to < reset.from => report_rewound(reset.topic, reset.partition, to),
                _ => {
                    // A second reset before the first record keeps the first position.
                    let pending = PendingReset { from: reset.from, below: None };
                    locked(&self.resets).entry((reset.topic.to_owned(), reset.partition)).or_insert(pending);
                }
            }
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
            self.unreachable(format!("{code}: {reason}"), true);
        }
        report_client_error(&error, reason);
    }
}

impl ConsumerContext for GroupMember {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // As Kafka Connect does: the partitions' next owner starts right after what
        // this task's sink acknowledged.
        if let Rebalance::Revoke(revoked) = rebalance {
            {
                let mut resets = locked(&self.resets);
                for element in revoked.elements() {
                    resets.remove(&(element.topic().to_owned(), element.partition()));
                }
            }
            self.note_revoked(partitions_of(revoked));
            // Sent, not awaited: a synchronous commit waits for its answer without end,
            // and in here it would hold the task's poll (a coordinator that went away
            // during the rebalance answers only once the rebalance goes on). The
            // OffsetCommit goes out before the JoinGroup that follows, on the same
            // connection, so the coordinator takes it first.
            if consumer.assignment_lost() {
                tracing::info!(
                    "The group took this task's partitions away after its session ended; their next owner starts from the last commit."
                );
            } else {
                match consumer.commit_consumer_state(CommitMode::Async) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                    Err(error) => {
                        tracing::warn!(%error, "The offsets of acknowledged batches could not be committed before a rebalance; their records will be delivered again.")
                    }
                }
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance
            && self.pausing_assigned.load(Ordering::Relaxed)
        {
            let _ = consumer.pause(assigned);
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
/// A rebalance served meanwhile drops what was taken before it from the partitions it
/// revoked (see `GroupMember::revoked`); `held` (records taken earlier and not handed
/// out yet) is cleared of them too.
fn poll_blocking(consumer: &BaseConsumer<GroupMember>, max: usize, wait: Duration, held: &mut Vec<Record>) -> TransportResult<Vec<Record>> {
    let mut records = Vec::new();
    let mut timeout = wait;
    loop {
        let taken = if records.len() < max { take(consumer, timeout)? } else { None };
        forget_revoked(consumer.context(), &mut records, held);
        match taken {
            Some(record) => records.push(record),
            None => return Ok(records),
        }
        // Once something arrived, only take what is already buffered.
        timeout = Duration::ZERO;
    }
}

/// Drops from `records` and `held` what belongs to partitions revoked since the last look.
fn forget_revoked(member: &GroupMember, records: &mut Vec<Record>, held: &mut Vec<Record>) {
    let revoked = std::mem::take(&mut *locked(&member.revoked));
    if revoked.is_empty() {
        return;
    }
    let before = records.len() + held.len();
    let kept = |record: &Record| !revoked.iter().any(|(topic, partition)| *topic == record.topic && Some(*partition) == record.partition);
    records.retain(kept);
    held.retain(kept);
    let dropped = before - records.len() - held.len();
    if dropped > 0 {
        tracing::debug!(
            dropped,
            "Records taken before a rebalance revoked their partitions were dropped: their next owner reads them from the commit."
        );
    }
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
            consumer.context().unreachable(format!("{code}"), true);
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
    if consumer.assignment().is_ok_and(|assignment| assignment.count() > 0) {
        tracing::warn!(
            "The task's partitions were not revoked within {} s as it stopped: it closes with them still assigned, and as a static member sends no LeaveGroup then, so they go to the other members when its session ends (session.timeout.ms).",
            LEAVE_WAIT.as_secs()
        );
    }
}

fn joined<T>(result: Result<T, tokio::task::JoinError>) -> TransportResult<T> {
    result.map_err(|error| TransportError::Other(error.to_string()))
}

impl KafkaConsumer {
    /// Commits the stored offsets and waits for the answer, up to `COMMIT_ANSWER_WAIT`.
    /// A refused or unanswered commit pauses the task's partitions (see `poll_owing`).
    async fn commit_stored(&mut self) {
        if let Some((previous, sent)) = &self.commit_in_flight {
            // librdkafka waits for a commit's answer without end (while the group has no
            // coordinator, for one): one unanswered for long is left to its thread.
            if !previous.is_finished() && sent.elapsed() < ABANDON_COMMIT_AFTER {
                // Its answer will not cover the offsets stored since.
                self.unsent = true;
                self.owe();
                return;
            }
            // The commit sent now carries its offsets too.
            self.commit_in_flight = None;
        }
        self.unsent = false;
        let consumer = self.member().clone();
        let mut committing = tokio::task::spawn_blocking(move || commit_acknowledged(&consumer));
        let result = match tokio::time::timeout(COMMIT_ANSWER_WAIT, &mut committing).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(KafkaError::Canceled).inspect_err(|_| tracing::error!(%error, "A commit's thread failed.")),
            Err(_elapsed) => {
                let sent = Instant::now().checked_sub(COMMIT_ANSWER_WAIT).unwrap_or_else(Instant::now);
                self.commit_in_flight = Some((committing, sent));
                if self.owed.is_none() {
                    tracing::warn!(
                        "The Kafka cluster has not answered a commit within {} s; the task waits for it.",
                        COMMIT_ANSWER_WAIT.as_secs()
                    );
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
                // Offsets stored after this commit was sent still wait for theirs.
                if !self.unsent {
                    self.settle();
                }
            }
            Err(error) => {
                let rebalancing = matches!(
                    error,
                    KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::IllegalGeneration)
                );
                if let Some(code) = error.rdkafka_error_code().filter(|code| is_outage(*code)) {
                    context.unreachable(format!("committing offsets failed: {code}"), false);
                }
                if self.owed.is_none() && !rebalancing {
                    tracing::warn!(%error, "The offsets of an acknowledged batch could not be committed; the task tries again before it reads on.");
                }
                self.owe();
            }
        }
    }

    /// Pauses the task's partitions until a commit goes through (or `COMMIT_ANSWER_WAIT`
    /// passed), so that a crash meanwhile repeats only the batch in hand. Partitions a
    /// rebalance assigns meanwhile are paused as they come (`GroupMember::post_rebalance`).
    fn owe(&mut self) {
        if self.owed.is_some() {
            return;
        }
        let consumer = self.member();
        consumer.context().pausing_assigned.store(true, Ordering::Relaxed);
        let paused = consumer.assignment().map(|assignment| partitions_of(&assignment)).unwrap_or_default();
        let _ = consumer.pause(&partition_list(&paused));
        self.owed = Some(OwedCommit { since: Instant::now(), paused });
    }

    /// Reads on after an owed commit went through, or was given up: lifts the pause from
    /// every partition paused for it (librdkafka keeps the pause across a rebalance) and
    /// from what is assigned now. Records held meanwhile go to the sink if their
    /// partition stayed this task's through any rebalance; the others were dropped as
    /// they were revoked (`poll_blocking`), and their owners read them from the commit.
    fn settle(&mut self) {
        let Some(owed) = self.owed.take() else { return };
        let consumer = self.member();
        consumer.context().pausing_assigned.store(false, Ordering::Relaxed);
        let _ = consumer.resume(&partition_list(&owed.paused));
        let assigned = consumer.assignment().map(|assignment| partitions_of(&assignment)).unwrap_or_default();
        let _ = consumer.resume(&partition_list(&assigned));
        self.held.retain(|record| assigned.iter().any(|(topic, partition)| *topic == record.topic && Some(*partition) == record.partition));
    }

    /// A poll while a commit is owed: serves the rebalance (its callbacks run in polls)
    /// with the partitions paused, holds what still comes out (fetched before the
    /// pause), and tries the commit again. Returns no records until the commit went
    /// through or was given up.
    async fn poll_owing(&mut self, max: usize) -> TransportResult<()> {
        if self.commit_in_flight.as_ref().is_some_and(|(previous, _)| previous.is_finished()) {
            let (previous, _) = self.commit_in_flight.take().expect("checked above");
            let result = joined(previous.await)?;
            self.commit_answered(result);
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
        let (consumer, mut held) = (self.member().clone(), std::mem::take(&mut self.held));
        let (mut taken, mut held) = joined(
            tokio::task::spawn_blocking(move || poll_blocking(&consumer, max, OWED_POLL, &mut held).map(|taken| (taken, held))).await,
        )??;
        held.append(&mut taken);
        self.held = held;
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
            self.poll_owing(max).await?;
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
        joined(tokio::task::spawn_blocking(move || poll_blocking(&consumer, max, wait, &mut Vec::new())).await)?
    }

    async fn commit(&mut self, next: &[PartitionOffset]) -> TransportResult<()> {
        let mut offsets = TopicPartitionList::new();
        for PartitionOffset { topic, partition, offset } in next {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        match self.member().store_offsets(&offsets) {
            Ok(()) => {
                locked(&self.member().context().stored).extend(next.iter().map(|offset| (offset.topic.clone(), offset.partition)));
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
                            consumer.context().unreachable(format!("no answer to a watermark request: {code}"), true);
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
                    consumer.context().metadata_answered();
                }
            }
            Ok(lag)
        });
        joined(measured.await).map_err(|error| TransportError::Other(format!("measuring the consumer lag failed: {error}")))?
    }

    fn assigned_partitions(&self) -> usize {
        self.member().assignment().map_or(0, |assignment| assignment.count())
    }

    fn partition_numbers(&self) -> Vec<i32> {
        let mut numbers: Vec<i32> = self
            .member()
            .assignment()
            .map(|assignment| partitions_of(&assignment))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    }

    fn skipped_by_offset_reset(&mut self) -> u64 {
        self.member().context().skipped.swap(0, Ordering::Relaxed)
    }

    fn outage(&self) -> Option<(Duration, String)> {
        locked(&self.member().context().outage).as_ref().map(|outage| (outage.since.elapsed(), outage.reason.clone()))
    }

    async fn close(&mut self) -> TransportResult<()> {
        if self.fixed {
            return Ok(());
        }
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
    use wasm_connect_protocol::Record;

    use super::{GroupMember, OffsetReset, forget_revoked, locked};
    use rdkafka::client::ClientContext;
    use rdkafka::config::RDKafkaLogLevel;
    use std::sync::atomic::Ordering;

    #[test]
    fn offset_resets_are_read_from_librdkafkas_lines() {
        let cached = "flights [0]: offset reset (at offset 105 (leader epoch 0), broker 1) to cached BEGINNING offset offset 3180 (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(OffsetReset::parse(cached), Some(OffsetReset { topic: "flights", partition: 0, from: 105, to: Some(3180) }));
        let logical = "[thrd:main]: iot.raw [3]: offset reset (at offset 5000 (leader epoch 2), broker 1) to offset BEGINNING (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(OffsetReset::parse(logical), Some(OffsetReset { topic: "iot.raw", partition: 3, from: 5000, to: None }));
        let end = "iot [1]: offset reset (at offset 12, broker 1) to offset END (leader epoch -1): fetch failed";
        assert_eq!(OffsetReset::parse(end), Some(OffsetReset { topic: "iot", partition: 1, from: 12, to: None }));
        assert_eq!(OffsetReset::parse("Consumer group session timed out"), None);
        assert_eq!(OffsetReset::parse("no partition: offset reset (at offset 12, broker 1) to END"), None);
    }

    fn record(partition: i32, offset: i64) -> Record {
        Record {
            topic: "iot".into(),
            partition: Some(partition),
            offset: Some(offset),
            timestamp: None,
            key: None,
            value: None,
            headers: Vec::new(),
        }
    }

    fn reset(member: &GroupMember, partition: i32, from: i64) {
        let line = format!(
            "iot [{partition}]: offset reset (at offset {from} (leader epoch 0), broker 1) to offset BEGINNING (leader epoch -1): fetch failed"
        );
        member.log(RDKafkaLogLevel::Info, "OFFSET", &line);
    }

    #[test]
    fn the_first_record_after_a_reset_tells_how_many_were_skipped() {
        let member = GroupMember::default();
        // Records fetched before the reset (below it, in sequence) come first.
        reset(&member, 0, 105);
        for offset in [103, 104] {
            member.read_after_reset(&record(0, offset));
        }
        // A second reset of the same partition before its first record keeps the first position.
        reset(&member, 0, 3180);
        member.read_after_reset(&record(1, 7));
        assert_eq!(member.skipped.load(Ordering::Relaxed), 0);
        member.read_after_reset(&record(0, 3180));
        assert_eq!(member.skipped.load(Ordering::Relaxed), 3075);
        // Later records count nothing more.
        member.read_after_reset(&record(0, 3181));
        assert_eq!(member.skipped.load(Ordering::Relaxed), 3075);
        // A log read again from its start (back below what was taken) skips nothing.
        reset(&member, 2, 5000);
        for offset in [4998, 4999, 0, 1, 5000, 5001] {
            member.read_after_reset(&record(2, offset));
        }
        assert_eq!(member.skipped.load(Ordering::Relaxed), 3075);
    }

    #[test]
    fn records_of_revoked_partitions_taken_before_the_revoke_are_dropped() {
        let member = GroupMember::default();
        let (mut records, mut held) = (vec![record(0, 10), record(1, 20), record(0, 11)], vec![record(2, 5), record(1, 21)]);
        // No revoke since the last look: everything stays.
        forget_revoked(&member, &mut records, &mut held);
        assert_eq!((records.len(), held.len()), (3, 2));
        // A partition with no stored offset is not counted: nothing is committed for it
        // at the revoke, so its records stay with this task.
        locked(&member.stored).extend([("iot".to_owned(), 1), ("other".to_owned(), 0)]);
        member.note_revoked(vec![("iot".to_owned(), 1), ("other".to_owned(), 0), ("iot".to_owned(), 2)]);
        forget_revoked(&member, &mut records, &mut held);
        let offsets = |records: &[Record]| records.iter().map(|record| (record.partition, record.offset)).collect::<Vec<_>>();
        assert_eq!(offsets(&records), [(Some(0), Some(10)), (Some(0), Some(11))]);
        assert_eq!(offsets(&held), [(Some(2), Some(5))]);
        // A revoke is looked at once: records of that partition taken after it stay.
        let mut later = vec![record(1, 22)];
        forget_revoked(&member, &mut later, &mut held);
        assert_eq!(offsets(&later), [(Some(1), Some(22))]);
    }
}
