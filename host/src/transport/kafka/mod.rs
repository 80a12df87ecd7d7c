//! The Kafka transport (librdkafka, bundled): an idempotent producer with `acks=all`
//! per source task, one consumer group per sink connector, offsets stored only after
//! the sink acknowledged a batch (`enable.auto.offset.store=false`) and committed
//! synchronously when a task stops. Source positions live in a compacted topic,
//! keyed by connector, like Kafka Connect's `offset.storage.topic`.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::try_join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use wasm_connect_protocol::Record;

mod client;
mod follow;
mod group;
mod membership;
mod processor;

use client::fetch_metadata;
pub use client::{Reporting, client_problems, is_secret_setting, last_client_error};
pub use follow::{Followed, LogRecord, Position};
use group::{KafkaConsumer, Siblings};
pub use membership::{Membership, MembershipSettings};

use super::{
    PartitionOffset, PartitionOffsetChange, PartitionRange, RecordConsumer, RecordProducer, StartAt, StateEntry, StatePage, StateQuery,
    TaskShare, TopicDescription, TopicReader, Transport, TransportError, TransportResult,
};

/// How long a metadata or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long reading a compacted topic (source positions) may take: past a transaction
/// left open by a task that stopped mid-batch, which ends within the 60 s of
/// `transaction.timeout.ms` by default.
const COMPACTED_READ: Duration = Duration::from_secs(75);
/// How long joining a sink connector's group to change its offsets may take.
const GROUP_JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A topic the host keeps its own state in: created compacted, with the first topics
/// the host asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTopic {
    /// Its name.
    pub name: String,
    /// Its partitions when the host creates it.
    pub partitions: i32,
    /// Its replicas when the host creates it; -1: the broker's default.
    pub replication: i32,
}

/// What the hosts of one cluster share: the name every consumer group and
/// transactional id starts with, and the host's own topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTopics {
    /// `kafka.cluster."group.id"`.
    pub group_id: String,
    /// Source positions, keyed by connector.
    pub offsets: HostTopic,
    /// The desired state.
    pub config: HostTopic,
    /// Shared out among the hosts through the `members` consumer group: its
    /// partitions' owners run the tasks that hash to them.
    pub assignments: HostTopic,
    /// The states of the tasks, each written by the host that runs it, and the hosts'
    /// heartbeats.
    pub status: HostTopic,
    /// The bytes of the plugins uploaded to any host, in chunks.
    pub plugins: HostTopic,
    /// The consumer group of the hosts themselves.
    pub members: String,
    /// Whether sources write each batch with its position in one transaction.
    pub exactly_once_sources: bool,
}

impl ClusterTopics {
    /// Names made of `prefix` with the broker's defaults, for tools and tests.
    pub fn named(prefix: &str) -> Self {
        let topic = |suffix: &str| HostTopic { name: format!("{prefix}-{suffix}"), partitions: -1, replication: -1 };
        Self {
            group_id: prefix.to_owned(),
            offsets: topic("offsets"),
            config: topic("configs"),
            assignments: topic("assignments"),
            status: topic("status"),
            plugins: topic("plugins"),
            members: prefix.to_owned(),
            exactly_once_sources: true,
        }
    }
}

/// A Kafka cluster.
#[derive(Clone)]
pub struct KafkaTransport {
    base: ClientConfig,
    /// The cluster's name and the host's own topics.
    cluster: Arc<ClusterTopics>,
    /// Topics already checked or created by this process: each is asked for once.
    known_topics: Arc<Mutex<HashSet<String>>>,
    /// Writes to the host's compacted topics (desired state, position resets).
    control_producer: Arc<OnceLock<FutureProducer<Reporting>>>,
    /// This host's identity, when known: each sink task joins its group as the static
    /// member `{identity}-{task}` (`group.instance.id`), so a restarted host takes its
    /// partitions back at once instead of waiting for the old members' sessions.
    host_identity: Option<String>,
    /// The sink tasks' group members in this process, so that stopping ones leave
    /// their groups only once all that stop together have committed.
    siblings: Arc<Siblings>,
}

impl KafkaTransport {
    /// Connects lazily to `bootstrap_servers` with the user's librdkafka settings, as
    /// a host of the cluster `cluster` names.
    pub fn new(bootstrap_servers: &str, client: &BTreeMap<String, String>, cluster: ClusterTopics) -> Self {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", bootstrap_servers);
        for (key, value) in client {
            base.set(key, value);
        }
        // librdkafka's lines reach the host's log (its informational ones, such as a
        // closed connection, at debug level); its debug lines only when the `debug`
        // setting asks for them.
        let level =
            if client.contains_key("debug") { rdkafka::config::RDKafkaLogLevel::Debug } else { rdkafka::config::RDKafkaLogLevel::Info };
        base.set_log_level(level);
        Self {
            base,
            cluster: Arc::new(cluster),
            known_topics: Arc::default(),
            control_producer: Arc::default(),
            host_identity: None,
            siblings: Arc::default(),
        }
    }

    /// Sink tasks join their groups as static members named after `identity` (see
    /// `data_dir::host_identity`).
    pub fn with_host_identity(mut self, identity: &str) -> Self {
        self.host_identity = Some(identity.to_owned());
        self
    }

    /// The cluster's name and the host's own topics.
    pub fn cluster(&self) -> &ClusterTopics {
        &self.cluster
    }

    /// The consumer group of a sink or processor connector, which also starts its
    /// tasks' transactional ids.
    fn consumer_group(&self, connector: &str) -> String {
        format!("{}-{connector}", self.cluster.group_id)
    }

    /// The transactional producer of `connector`'s source task; opening it fences the
    /// older instances of the task.
    async fn open_source_producer(&self, connector: &str) -> TransportResult<processor::TransactionalProducer> {
        let (config, group) = (self.transactional_config(), self.consumer_group(connector));
        let offsets = &self.cluster.offsets.name;
        processor::TransactionalProducer::open_source(self.base.clone(), config, &group, connector, offsets).await
    }

    /// The id of the cluster, when the broker says within the request timeout.
    pub async fn cluster_id(&self) -> Option<String> {
        let config = self.base.clone();
        tokio::task::spawn_blocking(move || {
            let probe: BaseConsumer<Reporting> = config.create_with_context(Reporting).ok()?;
            probe.client().fetch_cluster_id(REQUEST_TIMEOUT)
        })
        .await
        .ok()
        .flatten()
    }

    fn host_topic(&self, name: &str) -> Option<&HostTopic> {
        [&self.cluster.offsets, &self.cluster.config, &self.cluster.assignments, &self.cluster.status, &self.cluster.plugins]
            .into_iter()
            .find(|topic| topic.name == name)
    }

    /// Commits `offsets` (topic, partition, next offset) for a sink connector's group
    /// while none of its tasks runs. The committer joins the group as its one member
    /// (brokers accept commits from members; an empty group takes them from anyone,
    /// but not every broker says so), commits, and leaves.
    async fn commit_as_group(&self, connector: &str, offsets: Vec<(String, i32, i64)>) -> TransportResult<()> {
        let (config, group) = (self.group_config(connector), self.consumer_group(connector));
        tokio::task::spawn_blocking(move || -> TransportResult<()> {
            if offsets.is_empty() {
                return Ok(());
            }
            let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let mut topics: Vec<&str> = offsets.iter().map(|(topic, _, _)| topic.as_str()).collect();
            topics.sort();
            topics.dedup();
            consumer.subscribe(&topics)?;
            let deadline = std::time::Instant::now() + GROUP_JOIN_TIMEOUT;
            while consumer.assignment()?.count() == 0 {
                if std::time::Instant::now() > deadline {
                    return Err(TransportError::GroupNotEmpty(group));
                }
                // Messages fetched meanwhile are dropped: only the commit matters.
                let _ = consumer.poll(Duration::from_millis(100));
            }
            let mut partitions = TopicPartitionList::new();
            for (topic, partition, offset) in &offsets {
                partitions.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            }
            let committed = match consumer.commit(&partitions, CommitMode::Sync) {
                Err(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::UnknownMemberId | RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::IllegalGeneration,
                )) => Err(TransportError::GroupNotEmpty(group)),
                result => result.map_err(TransportError::from),
            };
            consumer.unsubscribe();
            committed
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))?
    }

    /// The first offset still held of every partition of `topics`.
    async fn first_offsets(&self, topics: &[String]) -> TransportResult<Vec<PartitionOffset>> {
        let (config, topics) = (self.base.clone(), topics.to_vec());
        tokio::task::spawn_blocking(move || -> TransportResult<Vec<PartitionOffset>> {
            let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let mut starts = Vec::new();
            for topic in &topics {
                let metadata = fetch_metadata(&consumer, Some(topic))?;
                for partition in metadata.topics().iter().filter(|candidate| candidate.name() == topic).flat_map(|topic| topic.partitions())
                {
                    let (low, _) = consumer.fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)?;
                    starts.push(PartitionOffset { topic: topic.clone(), partition: partition.id(), offset: low });
                }
            }
            Ok(starts)
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))?
    }

    /// Settings of a stream processor's transactional producer (its id comes later).
    /// A transaction may last as long as the user's settings let a message or a
    /// request wait, which librdkafka requires.
    fn transactional_config(&self) -> ClientConfig {
        let mut config = self.producer_config();
        if config.get("transaction.timeout.ms").is_none() {
            let setting = |key: &str| config.get(key).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
            let longest = [60_000, setting("message.timeout.ms"), setting("delivery.timeout.ms"), setting("socket.timeout.ms") + 100];
            let timeout = longest.into_iter().max().unwrap_or(60_000);
            config.set("transaction.timeout.ms", timeout.to_string());
        }
        config
    }

    /// Settings of a client in a sink connector's consumer group.
    fn group_config(&self, connector: &str) -> ClientConfig {
        let mut config = self.base.clone();
        config.set("group.id", self.consumer_group(connector)).set("enable.auto.commit", "false");
        config
    }

    fn producer_config(&self) -> ClientConfig {
        let mut config = self.base.clone();
        // At-least-once without duplicates from retries: not overridable.
        config.set("enable.idempotence", "true").set("acks", "all");
        config
    }

    /// Creates, in one request, those of `topics` the cluster does not have, plus the
    /// host's own topics the first time. Each topic is asked for once per process.
    /// The creation runs in the background; its failures are logged, not fatal (the
    /// broker may auto-create topics, or forbid the call).
    async fn create_missing_topics(&self, topics: &[String]) -> TransportResult<()> {
        let wanted: Vec<String> = {
            let known = self.known_topics.lock().expect("known topics lock");
            let host_topics = [&self.cluster.offsets.name, &self.cluster.config.name, &self.cluster.plugins.name];
            let mut wanted: Vec<String> = topics.iter().chain(host_topics).filter(|topic| !known.contains(*topic)).cloned().collect();
            wanted.sort();
            wanted.dedup();
            wanted
        };
        if wanted.is_empty() {
            return Ok(());
        }
        let config = self.base.clone();
        let asked = wanted.clone();
        let missing: Vec<String> = tokio::task::spawn_blocking(move || -> TransportResult<Vec<String>> {
            let probe: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let metadata = fetch_metadata(&probe, None)?;
            let existing: Vec<&str> = metadata.topics().iter().map(|topic| topic.name()).collect();
            Ok(wanted.into_iter().filter(|topic| !existing.contains(&topic.as_str())).collect())
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))??;
        self.known_topics.lock().expect("known topics lock").extend(asked);
        if missing.is_empty() {
            return Ok(());
        }
        // Asked for in the background: a cluster that takes long to answer (or never
        // answers) CreateTopics holds up no start; the tasks wait for their topics, and
        // the log says which are missing.
        let admin: AdminClient<Reporting> = self.base.create_with_context(Reporting)?;
        let shapes: Vec<Option<HostTopic>> = missing.iter().map(|topic| self.host_topic(topic).cloned()).collect();
        tokio::spawn(async move {
            let new_topics: Vec<NewTopic<'_>> = missing
                .iter()
                .zip(&shapes)
                .map(|(topic, shape)| match shape {
                    Some(shape) => {
                        NewTopic::new(topic, shape.partitions, TopicReplication::Fixed(shape.replication)).set("cleanup.policy", "compact")
                    }
                    None => NewTopic::new(topic, -1, TopicReplication::Fixed(-1)),
                })
                .collect();
            let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
            let advice = "create them, or let the broker create topics on first use (auto.create.topics.enable)";
            match admin.create_topics(&new_topics, &options).await {
                Ok(results) => {
                    for result in results {
                        match result {
                            Ok(topic) => tracing::info!(topic, "Created topic."),
                            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                            Err((topic, code)) => tracing::warn!(
                                topic, error = %code,
                                "The topic is missing and could not be created; the tasks that use it wait for it: {advice}."
                            ),
                        }
                    }
                }
                Err(error) => tracing::warn!(
                    topics = ?missing, %error,
                    "These topics are missing and could not be created; the tasks that use them wait for them: {advice}."
                ),
            }
        });
        Ok(())
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn ensure_topics(&self, topics: &[String]) -> TransportResult<()> {
        self.create_missing_topics(topics).await
    }

    async fn source_position(&self, connector: &str) -> TransportResult<Option<String>> {
        Ok(self.read_compacted(&self.cluster.offsets.name, "source positions").await?.remove(connector))
    }

    async fn producer(&self, connector: &str) -> TransportResult<Box<dyn RecordProducer>> {
        Ok(Box::new(KafkaProducer {
            producer: Some(self.producer_config().create_with_context(Reporting)?),
            offsets_topic: self.cluster.offsets.name.clone(),
            connector: connector.to_owned(),
        }))
    }

    async fn source_producer(&self, connector: &str) -> TransportResult<Box<dyn RecordProducer>> {
        if !self.cluster.exactly_once_sources {
            return self.producer(connector).await;
        }
        Ok(Box::new(self.open_source_producer(connector).await?))
    }

    async fn consumer(&self, connector: &str, topics: &[String], share: TaskShare) -> TransportResult<Box<dyn RecordConsumer>> {
        let mut config = self.group_config(connector);
        config.set("enable.auto.offset.store", "false");
        // A new group reads its topics from their start, as Kafka Connect's sinks do,
        // unless kafka.client says otherwise (`latest`: only what comes from now on).
        if self.base.get("auto.offset.reset").is_none() {
            config.set("auto.offset.reset", "earliest");
        }
        // A dead member's partitions wait for its session to end (and brokers without
        // static membership make a restarted host's members wait for it too): 6 s,
        // the least brokers accept by default, rather than librdkafka's 45 s, unless
        // kafka.client says otherwise.
        if self.base.get("session.timeout.ms").is_none() {
            config.set("session.timeout.ms", "6000");
            if self.base.get("heartbeat.interval.ms").is_none() {
                config.set("heartbeat.interval.ms", "2000");
            }
        }
        if let Some(host) = &self.host_identity {
            config.set("group.instance.id", format!("{host}-{}", share.task));
        }
        let (topics, group, siblings) = (topics.to_vec(), self.consumer_group(connector), self.siblings.clone());
        let consumer = tokio::task::spawn_blocking(move || KafkaConsumer::join(&config, &topics, group, siblings))
            .await
            .map_err(|error| TransportError::Other(error.to_string()))??;
        Ok(Box::new(consumer))
    }

    async fn processor_consumer(&self, connector: &str, topics: &[String], share: TaskShare) -> TransportResult<Box<dyn RecordConsumer>> {
        let mut config = self.group_config(connector);
        // Never stored, never committed by the consumer: its transactions commit them.
        // Only committed records are read, whatever kafka.client says.
        config.set("enable.auto.offset.store", "false").set("isolation.level", "read_committed");
        if self.base.get("auto.offset.reset").is_none() {
            config.set("auto.offset.reset", "earliest");
        }
        let (probe, topics, group) = (self.base.clone(), topics.to_vec(), self.consumer_group(connector));
        let consumer = tokio::task::spawn_blocking(move || -> TransportResult<KafkaConsumer> {
            let partitions = processor::fixed_partitions(&probe, &topics, share.task, share.tasks)?;
            KafkaConsumer::assign_fixed(&config, &partitions, group)
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))??;
        Ok(Box::new(consumer))
    }

    async fn processor_producer(&self, connector: &str, share: TaskShare, topics: &[String]) -> TransportResult<Box<dyn RecordProducer>> {
        let (config, group) = (self.transactional_config(), self.consumer_group(connector));
        let producer =
            processor::TransactionalProducer::open(self.base.clone(), config, &group, connector, Some(share.task), topics).await?;
        Ok(Box::new(producer))
    }

    async fn fence_processor(&self, connector: &str, topics: &[String]) -> TransportResult<()> {
        let (base, config, group, topics) =
            (self.base.clone(), self.transactional_config(), self.consumer_group(connector), topics.to_vec());
        let connector = connector.to_owned();
        tokio::task::spawn_blocking(move || processor::fence_all(&base, &config, &connector, &group, &topics))
            .await
            .map_err(|error| TransportError::Other(error.to_string()))?
    }

    async fn processor_state(&self, connector: &str, partitions: Option<&[i32]>) -> TransportResult<Vec<StateEntry>> {
        let (config, connector, partitions) = (self.base.clone(), connector.to_owned(), partitions.map(<[i32]>::to_vec));
        tokio::task::spawn_blocking(move || processor::read_state(&config, &connector, partitions.as_deref()))
            .await
            .map_err(|error| TransportError::Other(error.to_string()))?
    }

    async fn query_processor_state(&self, connector: &str, query: StateQuery) -> TransportResult<StatePage> {
        // The changelog topics hold the state: each query reads them whole.
        Ok(StatePage::of(self.processor_state(connector, None).await?, &query))
    }

    async fn clear_processor_state(&self, connector: &str, topics: &[String]) -> TransportResult<()> {
        // While none of its tasks runs: every id of theirs fenced first (one that did
        // not stop writes nothing more), then the state and the offsets go in one
        // transaction.
        self.fence_processor(connector, topics).await?;
        let (config, group) = (self.transactional_config(), self.consumer_group(connector));
        let mut producer = processor::TransactionalProducer::open(self.base.clone(), config, &group, connector, None, topics).await?;
        let entries = self.processor_state(connector, None).await?;
        let starts = self.first_offsets(topics).await?;
        processor::clear_state(&mut producer, entries, starts).await
    }

    async fn committed_offsets(&self, connector: &str, topics: &[String]) -> TransportResult<Vec<PartitionOffset>> {
        let (config, group, topics) = (self.group_config(connector), self.consumer_group(connector), topics.to_vec());
        tokio::task::spawn_blocking(move || -> TransportResult<Vec<PartitionOffset>> {
            let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let mut partitions = TopicPartitionList::new();
            for topic in &topics {
                let metadata = fetch_metadata(&consumer, Some(topic))?;
                for topic_metadata in metadata.topics().iter().filter(|candidate| candidate.name() == topic) {
                    for partition in topic_metadata.partitions() {
                        partitions.add_partition(topic, partition.id());
                    }
                }
            }
            if partitions.count() == 0 {
                return Ok(Vec::new());
            }
            let committed = consumer.committed_offsets(partitions, REQUEST_TIMEOUT)?;
            tracing::debug!(group, partitions = committed.count(), "Read committed offsets.");
            Ok(committed
                .elements()
                .iter()
                .filter_map(|element| match element.offset() {
                    Offset::Offset(offset) => {
                        Some(PartitionOffset { topic: element.topic().to_owned(), partition: element.partition(), offset })
                    }
                    _ => None,
                })
                .collect())
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))?
    }

    async fn alter_committed_offsets(&self, connector: &str, changes: Vec<PartitionOffsetChange>) -> TransportResult<()> {
        if changes.iter().any(|change| change.offset.is_none()) {
            return Err(TransportError::Other(
                "on Kafka a single partition's offset cannot be removed; give it an offset, or reset all of them with DELETE".to_owned(),
            ));
        }
        let offsets = changes.into_iter().map(|change| (change.topic, change.partition, change.offset.unwrap_or_default())).collect();
        self.commit_as_group(connector, offsets).await
    }

    async fn reset_committed_offsets(&self, connector: &str, topics: &[String]) -> TransportResult<()> {
        // Every partition's first offset is committed: the group reads its topics from
        // the beginning, as after deleting it, and brokers without DeleteGroups (or
        // that refuse it) take it too.
        let starts = self.first_offsets(topics).await?;
        self.commit_as_group(connector, starts.into_iter().map(|start| (start.topic, start.partition, start.offset)).collect()).await
    }

    async fn set_source_position(&self, connector: &str, position: Option<&str>) -> TransportResult<()> {
        if self.cluster.exactly_once_sources {
            // As the task's own producer: opening it fences any instance of the task
            // still stopping (on another host, say), so none writes after this.
            return self.open_source_producer(connector).await?.write_position(position).await;
        }
        self.write_compacted(&self.cluster.offsets.name, connector, position).await?;
        Ok(())
    }

    async fn describe_topics(&self, only: Option<&str>) -> TransportResult<Vec<TopicDescription>> {
        let (config, only) = (self.base.clone(), only.map(str::to_owned));
        tokio::task::spawn_blocking(move || -> TransportResult<Vec<TopicDescription>> {
            let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let metadata = fetch_metadata(&consumer, only.as_deref())?;
            let mut topics = Vec::new();
            // Kafka's own topics (`__consumer_offsets`, ...) are not the user's; a
            // topic asked for that does not exist comes back with an error.
            for topic in metadata.topics().iter().filter(|topic| !topic.name().starts_with("__") && topic.error().is_none()) {
                let mut partitions = Vec::new();
                for partition in topic.partitions() {
                    let (start, end) = consumer.fetch_watermarks(topic.name(), partition.id(), REQUEST_TIMEOUT)?;
                    partitions.push(PartitionRange { partition: partition.id(), start, end });
                }
                partitions.sort_by_key(|range| range.partition);
                topics.push(TopicDescription { name: topic.name().to_owned(), partitions });
            }
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(topics)
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))?
    }

    async fn reader(&self, topic: &str, partition: Option<i32>, start: StartAt) -> TransportResult<Box<dyn TopicReader>> {
        let mut config = self.base.clone();
        // Assigned partitions, never subscribed: the group only names the client. The
        // end of a partition is known from librdkafka's end-of-partition event: the last
        // record's offset + 1 is not the end when transaction markers follow it.
        config.set("group.id", "wasm-connect-topic-tools").set("enable.auto.commit", "false").set("enable.partition.eof", "true");
        let topic = topic.to_owned();
        let (consumer, remaining) = tokio::task::spawn_blocking(move || -> TransportResult<_> {
            let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let metadata = fetch_metadata(&consumer, Some(&topic))?;
            let numbers: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|candidate| candidate.name() == topic && candidate.error().is_none())
                .flat_map(|candidate| candidate.partitions().iter().map(|partition| partition.id()))
                .collect();
            if numbers.is_empty() {
                return Err(TransportError::Other(format!("there is no topic {topic}; `topics list` shows the topics")));
            }
            if let Some(wanted) = partition.filter(|wanted| !numbers.contains(wanted)) {
                return Err(TransportError::Other(format!("topic {topic} has no partition {wanted}")));
            }
            let mut assignment = TopicPartitionList::new();
            let mut remaining = Vec::new();
            for number in numbers.into_iter().filter(|number| partition.is_none_or(|wanted| wanted == *number)) {
                let (low, high) = consumer.fetch_watermarks(&topic, number, REQUEST_TIMEOUT)?;
                let first = match start {
                    StartAt::Beginning => low,
                    StartAt::End => high,
                    StartAt::Offset(offset) => offset.max(low),
                };
                assignment.add_partition_offset(&topic, number, Offset::Offset(first))?;
                if first < high {
                    remaining.push((number, high));
                }
            }
            consumer.assign(&assignment)?;
            Ok((consumer, remaining))
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))??;
        Ok(Box::new(KafkaReader { consumer: Arc::new(consumer), remaining }))
    }

    fn name(&self) -> &'static str {
        "kafka"
    }
}

/// Reads a compacted topic to its end: the latest value of every key, a key whose
/// latest message is a tombstone (no payload) left out. `what` names the topic's role
/// in errors.
fn read_compacted(config: &ClientConfig, topic: &str, what: &str) -> TransportResult<BTreeMap<String, String>> {
    let consumer: BaseConsumer<Reporting> = config
        .clone()
        .set("enable.auto.commit", "false")
        .set("group.id", "wasm-connect-compacted-reader")
        .set("enable.partition.eof", "true")
        // What transactions committed only: a source's position is written in one.
        .set("isolation.level", "read_committed")
        .create_with_context(Reporting)?;
    let metadata = fetch_metadata(&consumer, Some(topic))?;
    let mut latest = BTreeMap::new();
    let Some(topic_metadata) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else {
        return Ok(latest);
    };
    let partitions: Vec<i32> = topic_metadata.partitions().iter().map(|partition| partition.id()).collect();
    // Sources write their positions in transactions: read past every one open now.
    let uncommitted: BaseConsumer<Reporting> = config.clone().set("isolation.level", "read_uncommitted").create_with_context(Reporting)?;
    let mut until = BTreeMap::new();
    for &partition in &partitions {
        until.insert(partition, uncommitted.fetch_watermarks(topic, partition, REQUEST_TIMEOUT)?.1);
    }
    let (records, _) = follow::read_partitions(&consumer, topic, &partitions, COMPACTED_READ, what, Some(&until))?;
    for record in records.into_iter().filter(|record| !record.key.is_empty()) {
        match record.value {
            Some(value) => latest.insert(record.key, value),
            None => latest.remove(&record.key),
        };
    }
    Ok(latest)
}

impl KafkaTransport {
    /// The producer of the host's own writes (desired state, position resets, cleared
    /// state), made on first use.
    fn control_producer(&self) -> TransportResult<&FutureProducer<Reporting>> {
        Ok(match self.control_producer.get() {
            Some(producer) => producer,
            None => {
                let producer: FutureProducer<Reporting> = self.producer_config().create_with_context(Reporting)?;
                self.control_producer.get_or_init(|| producer)
            }
        })
    }

    /// Reads `topic` (created if missing) from its start to its end, or only `stretch`
    /// (offsets of one partition), handing `state` and each record's key and value to
    /// `visit`, and returns `state`: for records that are not text, or of which the
    /// caller keeps only some. `what` names the topic in errors.
    pub async fn scan<S: Send + 'static>(
        &self,
        topic: &str,
        what: &str,
        stretch: Option<(i32, std::ops::Range<i64>)>,
        mut state: S,
        visit: impl Fn(&mut S, &[u8], Option<&[u8]>) + Send + 'static,
    ) -> TransportResult<S> {
        self.create_missing_topics(&[topic.to_owned()]).await?;
        let (config, topic, what) = (self.base.clone(), topic.to_owned(), what.to_owned());
        tokio::task::spawn_blocking(move || -> TransportResult<S> {
            let consumer: BaseConsumer<Reporting> = config
                .clone()
                .set("enable.auto.commit", "false")
                .set("group.id", "wasm-connect-compacted-reader")
                .set("enable.partition.eof", "true")
                .create_with_context(Reporting)?;
            let metadata = fetch_metadata(&consumer, Some(&topic))?;
            let Some(found) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else { return Ok(state) };
            let mut partitions: Vec<i32> = found.partitions().iter().map(|partition| partition.id()).collect();
            let window = match stretch {
                Some((partition, window)) => {
                    partitions.retain(|id| *id == partition);
                    Some(window)
                }
                None => None,
            };
            follow::visit_partitions(&consumer, &topic, &partitions, COMPACTED_READ, &what, None, window, |message| {
                visit(&mut state, message.key().unwrap_or_default(), message.payload())
            })?;
            Ok(state)
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))?
    }

    /// The next offset of each partition of `topic`: where a reader that read it all is.
    pub async fn end_offsets(&self, topic: &str) -> TransportResult<BTreeMap<i32, i64>> {
        let (config, topic) = (self.base.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || -> TransportResult<BTreeMap<i32, i64>> {
            let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let metadata = fetch_metadata(&consumer, Some(&topic))?;
            let Some(found) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else { return Ok(BTreeMap::new()) };
            let mut ends = BTreeMap::new();
            for partition in found.partitions() {
                ends.insert(partition.id(), consumer.fetch_watermarks(&topic, partition.id(), REQUEST_TIMEOUT)?.1);
            }
            Ok(ends)
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))?
    }

    /// Every key's latest value in the compacted `topic` (created if missing), such as
    /// the host's desired state in its config topic. `what` names the topic in errors.
    pub async fn read_compacted(&self, topic: &str, what: &str) -> TransportResult<BTreeMap<String, String>> {
        self.create_missing_topics(&[topic.to_owned()]).await?;
        let (config, topic, what) = (self.base.clone(), topic.to_owned(), what.to_owned());
        tokio::task::spawn_blocking(move || read_compacted(&config, &topic, &what))
            .await
            .map_err(|error| TransportError::Other(error.to_string()))?
    }

    /// Writes `key` = `value` to the compacted `topic` (`None`: a tombstone, which
    /// removes the key) and returns, once the cluster acknowledged it, where it is.
    pub async fn write_compacted(&self, topic: &str, key: &str, value: Option<&str>) -> TransportResult<Position> {
        self.write_compacted_to(topic, None, key, value).await
    }

    /// [`KafkaTransport::write_compacted`] to `partition` of `topic` when given, else
    /// to the partition of `key`.
    pub async fn write_compacted_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        value: Option<&str>,
    ) -> TransportResult<Position> {
        self.write_compacted_bytes(topic, partition, key, value.map(str::as_bytes)).await
    }

    /// [`KafkaTransport::write_compacted_to`] with a value that need not be text.
    pub async fn write_compacted_bytes(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        value: Option<&[u8]>,
    ) -> TransportResult<Position> {
        let producer = self.control_producer()?;
        let mut message = FutureRecord::<str, [u8]>::to(topic).key(key);
        if let Some(partition) = partition {
            message = message.partition(partition);
        }
        if let Some(value) = value {
            message = message.payload(value);
        }
        let delivery = producer.send(message, rdkafka::util::Timeout::After(REQUEST_TIMEOUT)).await.map_err(delivery_error)?;
        Ok(Position { partition: delivery.partition, offset: delivery.offset })
    }
}

struct KafkaProducer {
    /// Taken by `drop`.
    producer: Option<FutureProducer<Reporting>>,
    offsets_topic: String,
    connector: String,
}

impl KafkaProducer {
    fn producer(&self) -> &FutureProducer<Reporting> {
        self.producer.as_ref().expect("the producer is taken only when dropped")
    }
}

impl Drop for KafkaProducer {
    fn drop(&mut self) {
        // librdkafka's destroy waits for requests in flight, for as long as an
        // unreachable broker takes to time out: never on an async thread.
        if let Some(producer) = self.producer.take() {
            let _ = std::thread::Builder::new().name("kafka-producer-close".into()).spawn(move || drop(producer));
        }
    }
}

fn delivery_error((error, _): (KafkaError, rdkafka::message::OwnedMessage)) -> TransportError {
    TransportError::Kafka(error)
}

/// The message that carries `record` to its topic (the partition chosen by the
/// producer's partitioner).
fn message_of(record: &Record) -> FutureRecord<'_, [u8], [u8]> {
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
    message
}

#[async_trait]
impl RecordProducer for KafkaProducer {
    async fn send(&mut self, records: Vec<Record>, position: Option<String>) -> TransportResult<()> {
        let deliveries = records.iter().map(|record| self.producer().send(message_of(record), rdkafka::util::Timeout::Never));
        try_join_all(deliveries).await.map_err(delivery_error)?;
        if let Some(position) = position {
            let message = FutureRecord::to(&self.offsets_topic).key(&self.connector).payload(&position);
            self.producer().send(message, rdkafka::util::Timeout::Never).await.map_err(delivery_error)?;
        }
        Ok(())
    }
}

/// Reads assigned partitions for the topic tools.
struct KafkaReader {
    consumer: Arc<BaseConsumer<Reporting>>,
    /// (partition, end offset at the start) of the partitions not read to that end yet.
    remaining: Vec<(i32, i64)>,
}

#[async_trait]
impl TopicReader for KafkaReader {
    async fn next(&mut self, max: usize, wait: Duration) -> TransportResult<Vec<Record>> {
        let consumer = self.consumer.clone();
        let unfinished: Vec<i32> = self.remaining.iter().map(|(number, _)| *number).collect();
        let (records, ended) = tokio::task::spawn_blocking(move || -> TransportResult<(Vec<Record>, Vec<i32>)> {
            let (mut records, mut ended) = (Vec::new(), Vec::new());
            let deadline = Instant::now() + wait;
            while records.len() < max {
                // Once a record arrived, only take what is already buffered; the end
                // of one partition is no reason to stop waiting for the others.
                let timeout = if records.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
                match consumer.poll(timeout) {
                    None => break,
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        ended.push(partition);
                        if unfinished.iter().all(|number| ended.contains(number)) {
                            break;
                        }
                    }
                    Some(message) => records.push(owned_record(&message?)),
                }
            }
            Ok((records, ended))
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))??;
        for record in &records {
            let (Some(partition), Some(offset)) = (record.partition, record.offset) else { continue };
            self.remaining.retain(|(number, end)| !(*number == partition && offset + 1 >= *end));
        }
        self.remaining.retain(|(number, _)| !ended.contains(number));
        Ok(records)
    }

    fn caught_up(&self) -> bool {
        self.remaining.is_empty()
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
