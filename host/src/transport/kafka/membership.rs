//! This host's membership in its cluster: a consumer in the group `group.id` on the
//! assignments topic, whose partitions the broker shares out among the hosts (see
//! `crate::cluster`). It reads nothing (its partitions are paused): what counts is
//! which partitions it is given and which it loses, which it hands to an [`Owner`].
//!
//! The member runs on a thread of its own, which polls it: the revoke callback runs
//! there and blocks until the owner stopped the tasks of the partitions taken away,
//! so that no task runs on two hosts across a rebalance. The group's own rebalance
//! timeout (`max.poll.interval.ms`, here `rebalance.timeout.ms`) bounds that wait.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{Reporting, fetch_metadata, log_client_line, report_client_error};
use super::{KafkaTransport, REQUEST_TIMEOUT};
use crate::cluster::Owner;
use crate::transport::{TransportError, TransportResult};

/// How long a host waits for the assignments topic to exist after asking for it.
const TOPIC_WAIT: Duration = Duration::from_secs(30);
/// How long a leaving host waits for its partitions to be revoked (its tasks are
/// stopped by then) before it closes the member.
const LEAVE_WAIT: Duration = Duration::from_secs(10);
/// How long an error of the group is not reported again, unless it changes.
const REPORT_AGAIN: Duration = Duration::from_secs(60);
/// How long one poll of the member waits.
const POLL: Duration = Duration::from_millis(200);

/// How this host takes part in its cluster's group (the `kafka.cluster` settings).
#[derive(Debug, Clone)]
pub struct MembershipSettings {
    /// `data_dir`'s host id: the member's `group.instance.id`, so that a host
    /// restarted after a crash takes its own partitions back at once.
    pub host_id: String,
    /// The host's `worker_id`: the member's `client.id`, as the broker shows it.
    pub worker_id: String,
    /// `partition.assignment.strategy`.
    pub strategy: String,
    /// `session.timeout.ms`.
    pub session_timeout_ms: u32,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u32,
    /// `rebalance.timeout.ms`.
    pub rebalance_timeout_ms: u32,
    /// `scheduled.rebalance.max.delay.ms`: when not 0, the member's session (instead
    /// of `session.timeout.ms`), and a host that stops keeps its partitions for it.
    pub return_delay_ms: u32,
}

impl MembershipSettings {
    /// How long the broker keeps a silent or closed member's partitions for it.
    fn member_session_ms(&self) -> u32 {
        if self.return_delay_ms == 0 { self.session_timeout_ms } else { self.return_delay_ms.max(self.session_timeout_ms) }
    }
}

/// The running member; [`Membership::leave`] hands its partitions to the others.
pub struct Membership {
    leaving: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KafkaTransport {
    /// Creates the assignments topic if the cluster lacks it, and answers its
    /// partition count, which every host maps tasks with.
    pub async fn assignment_partitions(&self) -> TransportResult<u32> {
        let topic = self.cluster.assignments.clone();
        if let Some(count) = self.partition_count(&topic.name).await? {
            return Ok(count);
        }
        let cannot = |error: &dyn std::fmt::Display| {
            TransportError::Other(format!(
                "cannot create the cluster's assignments topic {}: {error}; create it (compacted, {} partitions: \
                 kafka.cluster.\"assignment.storage.partitions\"), or allow this host to create topics",
                topic.name, topic.partitions
            ))
        };
        let admin: AdminClient<Reporting> = self.base.create_with_context(Reporting)?;
        let shape =
            NewTopic::new(&topic.name, topic.partitions, TopicReplication::Fixed(topic.replication)).set("cleanup.policy", "compact");
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
        match admin.create_topics([&shape], &options).await {
            // Refused: said as the broker said it.
            Ok(mut results) => match results.pop() {
                Some(Err((_, code))) if code != RDKafkaErrorCode::TopicAlreadyExists => return Err(cannot(&code)),
                Some(Ok(_)) => {
                    tracing::info!(topic = %topic.name, partitions = topic.partitions, "Created the cluster's assignments topic.")
                }
                _ => {}
            },
            // Unanswered in time: it may still come (a slow broker).
            Err(error) => {
                tracing::warn!(%error, topic = %topic.name, "Creating the cluster's assignments topic was not answered in time; waiting for it.")
            }
        }
        let deadline = Instant::now() + TOPIC_WAIT;
        while Instant::now() < deadline {
            if let Some(count) = self.partition_count(&topic.name).await? {
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(cannot(&format!("it did not appear within {} s", TOPIC_WAIT.as_secs())))
    }

    /// The partition count of `topic`, none while the cluster does not know it.
    async fn partition_count(&self, topic: &str) -> TransportResult<Option<u32>> {
        let (config, topic) = (self.base.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || -> TransportResult<Option<u32>> {
            let probe: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let metadata = fetch_metadata(&probe, Some(&topic))?;
            let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else { return Ok(None) };
            match found.error().map(RDKafkaErrorCode::from) {
                Some(RDKafkaErrorCode::TopicAuthorizationFailed) => Err(TransportError::Other(format!(
                    "this host may not describe the cluster's assignments topic {topic}: grant its principal Describe and Read on it"
                ))),
                Some(_) => Ok(None),
                None => Ok(Some(found.partitions().len() as u32).filter(|count| *count > 0)),
            }
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))?
    }

    /// Joins the cluster's group on the assignments topic; the partitions the broker
    /// gives and takes are handed to `owner` from then on.
    pub fn join_cluster(&self, settings: &MembershipSettings, owner: Arc<dyn Owner>) -> TransportResult<Membership> {
        let mut config = self.base.clone();
        config
            .set("group.id", &self.cluster.members)
            .set("group.instance.id", &settings.host_id)
            .set("client.id", &settings.worker_id)
            .set("partition.assignment.strategy", &settings.strategy)
            .set("session.timeout.ms", settings.member_session_ms().to_string())
            .set("heartbeat.interval.ms", settings.heartbeat_interval_ms.to_string())
            .set("max.poll.interval.ms", settings.rebalance_timeout_ms.max(settings.member_session_ms()).to_string())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest");
        let context = Member { owner, stop_within: Duration::from_millis(u64::from(settings.rebalance_timeout_ms) / 2) };
        let consumer: BaseConsumer<Member> = config.create_with_context(context)?;
        consumer.subscribe(&[&self.cluster.assignments.name])?;
        let group = self.cluster.members.clone();
        let keep_on_stop = settings.return_delay_ms > 0;
        let leaving = Arc::new(AtomicBool::new(false));
        let stop = leaving.clone();
        let thread = std::thread::Builder::new()
            .name("cluster-member".into())
            .spawn(move || {
                let mut reported: Option<(String, Instant)> = None;
                while !stop.load(Ordering::Acquire) {
                    // Nothing is read (the partitions are paused): polls serve the
                    // group's callbacks, and say why the group cannot be joined.
                    if let Some(Err(error)) = consumer.poll(POLL) {
                        let text = error.to_string();
                        let again = reported.as_ref().is_none_or(|(last, at)| *last != text || at.elapsed() > REPORT_AGAIN);
                        if again {
                            tracing::warn!(
                                %error,
                                "The cluster's group on its assignments topic answered with an error; until it is joined this host \
                                 runs no task (check kafka.cluster: session.timeout.ms within the broker's bounds, the same \
                                 partition.assignment.strategy on every host, and Read on the group {group} in its ACLs)."
                            );
                            reported = Some((text, Instant::now()));
                        }
                    }
                    if let Some((code, _)) = consumer.client().fatal_error() {
                        tracing::error!(
                            error = %code,
                            "This host is out of the cluster's group for good; usually another member took its group.instance.id (its host \
                             id, from data_dir: was the data_dir copied from another host's?). It stops its tasks and runs none \
                             until it is restarted; give every host its own data_dir."
                        );
                        consumer.context().owner.release_everything();
                        while !stop.load(Ordering::Acquire) {
                            std::thread::sleep(POLL);
                        }
                        return;
                    }
                }
                if !keep_on_stop {
                    leave(&consumer);
                }
                // Otherwise closed without a LeaveGroup (a static member, KIP-345): the
                // broker keeps its partitions for it until its session ends, and gives
                // them back if it rejoins before.
            })
            .map_err(|error| TransportError::Other(format!("cannot start the cluster member's thread: {error}")))?;
        Ok(Membership { leaving, thread: Some(thread) })
    }
}

impl Membership {
    /// Leaves the group: the partitions still owned are revoked (their tasks stop),
    /// then the broker gives them to the other hosts at once; with a return delay
    /// (`scheduled.rebalance.max.delay.ms`), once it passed. Blocking.
    pub fn leave(mut self) {
        self.leaving.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leaving.store(true, Ordering::Release);
    }
}

/// Unsubscribing sends a static member's LeaveGroup (closing does not, KIP-345), once
/// the revoke ran in a poll.
fn leave(consumer: &BaseConsumer<Member>) {
    consumer.unsubscribe();
    let deadline = Instant::now() + LEAVE_WAIT;
    while Instant::now() < deadline && consumer.assignment().is_ok_and(|assignment| assignment.count() > 0) {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    let _ = consumer.poll(Duration::from_millis(200));
}

/// The member's callbacks: partitions handed to the owner.
struct Member {
    owner: Arc<dyn Owner>,
    /// How long the owner may take to stop the tasks of revoked partitions.
    stop_within: Duration,
}

fn partitions(list: &TopicPartitionList) -> BTreeSet<i32> {
    list.elements().iter().map(|element| element.partition()).collect()
}

impl ClientContext for Member {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&error, reason);
    }
}

impl ConsumerContext for Member {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let lost = consumer.assignment_lost();
                let taken = partitions(list);
                tracing::info!(partitions = ?taken, lost, "The cluster takes partitions of its assignments topic from this host; their tasks stop.");
                self.owner.release(taken, lost, self.stop_within);
            }
            Rebalance::Error(error) => {
                // librdkafka then drops the whole assignment.
                let held = consumer.assignment().map(|list| partitions(&list)).unwrap_or_default();
                tracing::warn!(%error, "The cluster's group failed to rebalance; this host stops its tasks until it is given partitions again.");
                self.owner.release(held, true, self.stop_within);
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            // Nothing is read from the assignments topic.
            let mut paused = TopicPartitionList::new();
            for element in list.elements() {
                let _ = paused.add_partition_offset(element.topic(), element.partition(), Offset::End);
            }
            let _ = consumer.pause(&paused);
            let given = partitions(list);
            tracing::info!(partitions = ?given, "The cluster gives this host partitions of its assignments topic; their tasks start.");
            self.owner.acquire(given);
        }
    }
}
