//! The Kafka transport (librdkafka, bundled): an idempotent producer with `acks=all`
//! per source task, one consumer group per sink connector, offsets stored only after
//! the sink acknowledged a batch (`enable.auto.offset.store=false`) and committed
//! synchronously when a task stops. Source positions live in a compacted topic,
//! keyed by connector, like Kafka Connect's `offset.storage.topic`.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::try_join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use wasm_connect_protocol::Record;

use super::{
    PartitionOffset, PartitionOffsetChange, PartitionRange, RecordConsumer, RecordProducer, StartAt, TaskShare, TopicDescription,
    TopicReader, Transport, TransportError, TransportResult, next_offsets,
};

/// How long a metadata or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long joining a sink connector's group to change its offsets may take.
const GROUP_JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A Kafka cluster.
#[derive(Clone)]
pub struct KafkaTransport {
    base: ClientConfig,
    offsets_topic: String,
    /// The compacted topics the host keeps its own state in (positions, desired state):
    /// created, compacted, with the first topics the host asks for.
    host_topics: Vec<String>,
    /// Topics already checked or created by this process: each is asked for once.
    known_topics: Arc<Mutex<HashSet<String>>>,
    /// Writes to the host's compacted topics (desired state, position resets).
    control_producer: Arc<OnceLock<FutureProducer<Reporting>>>,
}

impl KafkaTransport {
    /// Connects lazily to `bootstrap_servers` with the user's librdkafka settings;
    /// source positions go to `offsets_topic`, and `config_topic` is the other topic
    /// of the host's own (both compacted).
    pub fn new(bootstrap_servers: &str, client: &BTreeMap<String, String>, offsets_topic: &str, config_topic: &str) -> Self {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", bootstrap_servers);
        for (key, value) in client {
            base.set(key, value);
        }
        // librdkafka's lines reach the host's log (its informational ones, such as a
        // closed connection, at debug level); its debug lines only when the `debug`
        // setting asks for them.
        let level = if client.contains_key("debug") { rdkafka::config::RDKafkaLogLevel::Debug } else { rdkafka::config::RDKafkaLogLevel::Info };
        base.set_log_level(level);
        Self {
            base,
            offsets_topic: offsets_topic.to_owned(),
            host_topics: vec![offsets_topic.to_owned(), config_topic.to_owned()],
            known_topics: Arc::default(),
            control_producer: Arc::default(),
        }
    }

    /// Commits `offsets` (topic, partition, next offset) for a sink connector's group
    /// while none of its tasks runs. The committer joins the group as its one member
    /// (brokers accept commits from members; an empty group takes them from anyone,
    /// but not every broker says so), commits, and leaves.
    async fn commit_as_group(&self, connector: &str, offsets: Vec<(String, i32, i64)>) -> TransportResult<()> {
        let (config, group) = (self.group_config(connector), consumer_group(connector));
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

    /// Settings of a client in a sink connector's consumer group.
    fn group_config(&self, connector: &str) -> ClientConfig {
        let mut config = self.base.clone();
        config.set("group.id", consumer_group(connector)).set("enable.auto.commit", "false");
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
    /// Failures are logged, not fatal: the broker may auto-create topics, or forbid the
    /// call.
    async fn create_missing_topics(&self, topics: &[String]) -> TransportResult<()> {
        let wanted: Vec<String> = {
            let known = self.known_topics.lock().expect("known topics lock");
            let mut wanted: Vec<String> =
                topics.iter().chain(&self.host_topics).filter(|topic| !known.contains(*topic)).cloned().collect();
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
        let admin: AdminClient<Reporting> = self.base.create_with_context(Reporting)?;
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|topic| {
                let new_topic = NewTopic::new(topic, -1, TopicReplication::Fixed(-1));
                if self.host_topics.contains(topic) { new_topic.set("cleanup.policy", "compact") } else { new_topic }
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

/// The context of every client the host creates: librdkafka's errors are logged in
/// words that name the setting to fix, each the first time and then at most once a
/// minute while it repeats (librdkafka reports it at every reconnection, per client).
#[derive(Clone, Copy, Default)]
pub struct Reporting;

impl ClientContext for Reporting {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&error, reason);
    }
}

impl ConsumerContext for Reporting {}

/// Forwards a librdkafka log line to the host's log (target `librdkafka`); a line
/// about a refused password or a failed TLS handshake is reported instead, naming
/// the setting to fix. librdkafka queues these lines; whoever polls the client (or
/// waits in [`fetch_metadata`]) hands them over.
fn log_client_line(level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as Level;
    // A malformed `sasl.oauthbearer.config` is quoted from where it goes wrong.
    let message = match message.split_once("sasl.oauthbearer.config beginning at: ") {
        Some((before, _)) => format!("{before}sasl.oauthbearer.config beginning at: [redacted]"),
        None => message.to_owned(),
    };
    let message = message.as_str();
    if message.contains("SASL authentication error") || message.contains("Authentication failed") {
        return report_client_problem(ClientProblem::Credentials, message);
    }
    // A broker that wants a client certificate refuses one without it with an alert,
    // or (TLS 1.3) closes the connection before the first answer. A connection closed
    // later (an idle one, a broker restarting) is no TLS problem.
    let closed_before_answering = message.contains("SSL connection closed by peer") && message.contains("in state APIVERSION_QUERY");
    if message.contains("SSL handshake failed") || message.contains("certificate required") || closed_before_answering {
        return report_client_problem(ClientProblem::Tls, message);
    }
    // librdkafka's own guess when a plaintext client meets a TLS listener.
    if message.contains("incorrect security.protocol") {
        return report_client_problem(ClientProblem::Unreachable, message);
    }
    match level {
        Level::Emerg | Level::Alert | Level::Critical | Level::Error => tracing::error!(target: "librdkafka", facility, "{message}"),
        Level::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        Level::Notice => tracing::info!(target: "librdkafka", facility, "{message}"),
        Level::Info => tracing::debug!(target: "librdkafka", facility, "{message}"),
        Level::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// Why a cluster cannot be used, as far as the clients tell.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientProblem {
    Credentials,
    Tls,
    Unreachable,
    Other,
}

impl ClientProblem {
    fn of(error: &KafkaError) -> Self {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => Self::Credentials,
            Some(RDKafkaErrorCode::SSL) => Self::Tls,
            Some(RDKafkaErrorCode::AllBrokersDown) => Self::Unreachable,
            _ => Self::Other,
        }
    }

    /// What to do about it, naming the settings.
    fn advice(self) -> &'static str {
        match self {
            Self::Credentials => {
                "The Kafka cluster refused the host's credentials: check kafka.client's sasl.username and sasl.password \
                 (and sasl.mechanisms: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, as the cluster expects; for \
                 OAUTHBEARER, the sasl.oauthbearer settings)."
            }
            Self::Tls => {
                "The TLS connection to the Kafka cluster failed: if the broker's certificate is not trusted, set \
                 kafka.client's ssl.ca.location to the CA that signed it; if the broker asks for a client certificate, \
                 set ssl.certificate.location and ssl.key.location."
            }
            Self::Unreachable => {
                "No Kafka broker can be reached: check kafka.bootstrap_servers, the network, and kafka.client's \
                 security.protocol (a TLS listener needs SSL or SASL_SSL)."
            }
            Self::Other => "The Kafka client reported an error.",
        }
    }
}

/// How often one kind of client problem is logged again while it lasts (librdkafka
/// reports it at every reconnection, for every client).
const PROBLEM_REPEAT_INTERVAL: Duration = Duration::from_secs(60);

/// The last problem the clients reported: its kind, the whole text, when.
static LAST_CLIENT_PROBLEM: Mutex<Option<(ClientProblem, String, std::time::Instant)>> = Mutex::new(None);

/// What the clients reported last, in words that name the setting to fix.
/// Nothing once the last one is older than a minute.
pub fn last_client_error() -> Option<String> {
    let last = LAST_CLIENT_PROBLEM.lock().expect("last client problem lock");
    last.as_ref().filter(|(_, _, at)| at.elapsed() < PROBLEM_REPEAT_INTERVAL).map(|(_, text, _)| text.clone())
}

fn report_client_error(error: &KafkaError, reason: &str) {
    report_client_problem(ClientProblem::of(error), reason);
}

fn report_client_problem(problem: ClientProblem, reason: &str) {
    if problem == ClientProblem::Other {
        // Each is its own story (a fatal producer error, a fenced member): all logged.
        tracing::error!(reason, "{}", problem.advice());
        return;
    }
    {
        let mut last = LAST_CLIENT_PROBLEM.lock().expect("last client problem lock");
        if let Some((kind, _, at)) = last.as_ref()
            && at.elapsed() < PROBLEM_REPEAT_INTERVAL
        {
            // "All brokers are down" follows every refused login: the refusal says more.
            let less_specific = problem == ClientProblem::Unreachable && matches!(kind, ClientProblem::Credentials | ClientProblem::Tls);
            if *kind == problem || less_specific {
                return;
            }
        }
        *last = Some((problem, format!("{} librdkafka says: {reason}", problem.advice()), std::time::Instant::now()));
    }
    tracing::error!(reason, "{}", problem.advice());
}

/// Whether a librdkafka setting holds a secret (a password, a key, a token): its value
/// is registered for redaction and never shown in an error.
pub fn is_secret_setting(key: &str) -> bool {
    ["password", "secret", ".key", "key.pem", "jaas", "token", "sasl.oauthbearer.config"].iter().any(|word| key.contains(word))
}

/// A client context that keeps librdkafka's own log lines to itself: the check below
/// creates clients that are never meant to connect.
struct Silent;

impl ClientContext for Silent {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _facility: &str, _message: &str) {}
}

impl ConsumerContext for Silent {}

impl rdkafka::producer::ProducerContext for Silent {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// The problems librdkafka finds in `client` (the `kafka.client` settings), as
/// `(key, message)`; an empty key is about the settings together. Each setting is
/// tried on its own (unknown keys, bad values, features this build lacks), then a
/// producer and a consumer are created with all of them and no broker to reach, so
/// unreadable certificates and keys are found too. Nothing connects; no value of a
/// secret setting appears in a message.
pub fn client_problems(client: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let secrets: Vec<&str> =
        client.iter().filter(|(key, value)| is_secret_setting(key) && value.len() >= 4).map(|(_, value)| value.as_str()).collect();
    let hide = |message: String| secrets.iter().fold(message, |message, secret| message.replace(secret, "[redacted]"));
    let mut problems = Vec::new();
    for (key, value) in client {
        if key == "bootstrap.servers" {
            problems.push((key.clone(), "is set by kafka.bootstrap_servers; remove it here".to_owned()));
            continue;
        }
        let mut single = ClientConfig::new();
        single.set(key, value);
        if let Err(KafkaError::ClientConfig(_, description, _, _)) = single.create_native_config() {
            problems.push((key.clone(), hide(format!("librdkafka refuses it: {description}"))));
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    let mut config = ClientConfig::new();
    for (key, value) in client {
        // An OIDC client fetches its first token as it is created: check its settings
        // without the fetch.
        if key == "sasl.oauthbearer.method" && value.eq_ignore_ascii_case("oidc") {
            continue;
        }
        config.set(key, value);
    }
    let producer = config.create_with_context::<_, rdkafka::producer::BaseProducer<Silent>>(Silent).map(drop);
    let consumer = config.clone().set("group.id", "wasm-connect-validate").create_with_context::<_, BaseConsumer<Silent>>(Silent).map(drop);
    if let Err(error) = producer.and(consumer) {
        let reason = match error {
            KafkaError::ClientCreation(reason) => reason,
            KafkaError::ClientConfig(_, description, _, _) => description,
            other => other.to_string(),
        };
        problems.push((String::new(), hide(format!("librdkafka cannot create a client with these settings: {reason}"))));
    }
    problems
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn ensure_topics(&self, topics: &[String]) -> TransportResult<()> {
        self.create_missing_topics(topics).await
    }

    async fn source_position(&self, connector: &str) -> TransportResult<Option<String>> {
        Ok(self.read_compacted(&self.offsets_topic, "source positions").await?.remove(connector))
    }

    async fn producer(&self, connector: &str) -> TransportResult<Box<dyn RecordProducer>> {
        Ok(Box::new(KafkaProducer {
            producer: self.producer_config().create_with_context(Reporting)?,
            offsets_topic: self.offsets_topic.clone(),
            connector: connector.to_owned(),
        }))
    }

    async fn consumer(&self, connector: &str, topics: &[String], _share: TaskShare) -> TransportResult<Box<dyn RecordConsumer>> {
        let mut config = self.group_config(connector);
        config
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: StreamConsumer<CommitOnRevoke> = config.create_with_context(CommitOnRevoke)?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(Box::new(KafkaConsumer { consumer: Arc::new(consumer) }))
    }

    async fn committed_offsets(&self, connector: &str, topics: &[String]) -> TransportResult<Vec<PartitionOffset>> {
        let (config, group, topics) = (self.group_config(connector), consumer_group(connector), topics.to_vec());
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
        let (config, topics) = (self.group_config(connector), topics.to_vec());
        let starts = tokio::task::spawn_blocking(move || -> TransportResult<Vec<(String, i32, i64)>> {
            let consumer: BaseConsumer<Reporting> = config.create_with_context(Reporting)?;
            let mut starts = Vec::new();
            for topic in &topics {
                let metadata = fetch_metadata(&consumer, Some(topic))?;
                for partition in metadata.topics().iter().filter(|candidate| candidate.name() == topic).flat_map(|topic| topic.partitions()) {
                    let (low, _) = consumer.fetch_watermarks(topic, partition.id(), REQUEST_TIMEOUT)?;
                    starts.push((topic.clone(), partition.id(), low));
                }
            }
            Ok(starts)
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))??;
        self.commit_as_group(connector, starts).await
    }

    async fn set_source_position(&self, connector: &str, position: Option<&str>) -> TransportResult<()> {
        self.write_compacted(&self.offsets_topic, connector, position).await
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
        // Assigned partitions, never subscribed: the group only names the client.
        config.set("group.id", "wasm-connect-topic-tools").set("enable.auto.commit", "false");
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

/// The consumer group of a sink connector.
fn consumer_group(connector: &str) -> String {
    format!("wasm-connect-{connector}")
}

/// The most queued events (log lines, errors) served between two metadata requests.
const QUEUED_EVENTS_PER_TURN: usize = 200;

/// The cluster's metadata (of `topic` only, if given), within `REQUEST_TIMEOUT`. While
/// the cluster cannot be reached the request is repeated in turns of 1, 2, 4... s, and
/// the client's queue served between them, so that what librdkafka queues meanwhile (a
/// refused password, a failed handshake) is reported while the caller waits. Only for
/// clients that read no messages (no subscription, no assignment): serving their queue
/// must not take one.
fn fetch_metadata<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: Option<&str>) -> KafkaResult<rdkafka::metadata::Metadata> {
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    let mut turn = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let result = consumer.fetch_metadata(topic, turn.min(deadline.saturating_duration_since(started)));
        for _ in 0..QUEUED_EVENTS_PER_TURN {
            let _ = consumer.poll(Duration::ZERO);
        }
        let unreachable = matches!(
            &result,
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
            ))
        );
        if !unreachable || std::time::Instant::now() >= deadline {
            return result;
        }
        // An answer that came at once (no broker up) is not asked again at once.
        std::thread::sleep(Duration::from_millis(200).saturating_sub(started.elapsed()));
        turn *= 2;
    }
}

/// Reads a compacted topic to its end: the latest value of every key, a key whose
/// latest message is a tombstone (no payload) left out. `what` names the topic's role
/// in errors.
fn read_compacted(config: &ClientConfig, topic: &str, what: &str) -> TransportResult<BTreeMap<String, String>> {
    let consumer: BaseConsumer<Reporting> =
        config.clone().set("enable.auto.commit", "false").set("group.id", "wasm-connect-compacted-reader").create_with_context(Reporting)?;
    let metadata = fetch_metadata(&consumer, Some(topic))?;
    let mut latest = BTreeMap::new();
    let Some(topic_metadata) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else {
        return Ok(latest);
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
        return Ok(latest);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(TransportError::Other(format!("timed out reading {what} from topic {topic}")));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message?;
        if let Some(key) = message.key() {
            let key = String::from_utf8_lossy(key).into_owned();
            match message.payload() {
                Some(payload) => latest.insert(key, String::from_utf8_lossy(payload).into_owned()),
                None => latest.remove(&key),
            };
        }
        let (partition, offset) = (message.partition(), message.offset());
        ends.retain(|(id, high)| !(*id == partition && offset + 1 >= *high));
    }
    Ok(latest)
}

impl KafkaTransport {
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
    /// removes the key) and returns once the cluster acknowledged it.
    pub async fn write_compacted(&self, topic: &str, key: &str, value: Option<&str>) -> TransportResult<()> {
        let producer = match self.control_producer.get() {
            Some(producer) => producer,
            None => {
                let producer: FutureProducer<Reporting> = self.producer_config().create_with_context(Reporting)?;
                self.control_producer.get_or_init(|| producer)
            }
        };
        let mut message = FutureRecord::<str, str>::to(topic).key(key);
        if let Some(value) = value {
            message = message.payload(value);
        }
        producer.send(message, rdkafka::util::Timeout::After(REQUEST_TIMEOUT)).await.map_err(delivery_error)?;
        Ok(())
    }
}

struct KafkaProducer {
    producer: FutureProducer<Reporting>,
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
        let records = tokio::task::spawn_blocking(move || -> TransportResult<Vec<Record>> {
            let mut records = Vec::new();
            let mut timeout = wait;
            while records.len() < max {
                let Some(message) = consumer.poll(timeout) else { break };
                records.push(owned_record(&message?));
                // Once something arrived, only take what is already buffered.
                timeout = Duration::ZERO;
            }
            Ok(records)
        })
        .await
        .map_err(|error| TransportError::Other(error.to_string()))??;
        for record in &records {
            let (Some(partition), Some(offset)) = (record.partition, record.offset) else { continue };
            self.remaining.retain(|(number, end)| !(*number == partition && offset + 1 >= *end));
        }
        Ok(records)
    }

    fn caught_up(&self) -> bool {
        self.remaining.is_empty()
    }
}

struct KafkaConsumer {
    /// Shared with the blocking thread that asks the brokers for watermarks.
    consumer: Arc<StreamConsumer<CommitOnRevoke>>,
}

/// Commits the offsets of every acknowledged batch, synchronously, before a rebalance
/// takes partitions away, as Kafka Connect does: their new owner then starts right
/// after them instead of re-reading whatever the periodic auto-commit had not yet
/// committed.
struct CommitOnRevoke;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn this_build_speaks_tls_every_sasl_mechanism_and_every_codec() {
        let features = ClientConfig::new().create_native_config().unwrap().get("builtin.features").unwrap();
        let features: Vec<&str> = features.split(',').collect();
        for wanted in ["gzip", "snappy", "ssl", "sasl", "sasl_plain", "sasl_scram", "sasl_oauthbearer", "zstd", "lz4"] {
            assert!(features.contains(&wanted), "librdkafka lacks {wanted}: {features:?}");
        }
    }

    #[test]
    fn secured_clusters_and_every_codec_pass_the_client_check() {
        for client in [
            settings(&[("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "PLAIN"), ("sasl.username", "u"), ("sasl.password", "p4ssw0rd")]),
            settings(&[("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "SCRAM-SHA-512"), ("sasl.username", "u"), ("sasl.password", "p4ssw0rd")]),
            settings(&[("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanisms", "SCRAM-SHA-256"), ("sasl.username", "u"), ("sasl.password", "p4ssw0rd")]),
            settings(&[("security.protocol", "SASL_SSL"), ("sasl.mechanisms", "OAUTHBEARER"), ("sasl.oauthbearer.config", "principal=connect")]),
            settings(&[("compression.type", "zstd")]),
            settings(&[("compression.type", "lz4")]),
            settings(&[("compression.type", "snappy")]),
            settings(&[("compression.type", "gzip")]),
        ] {
            assert_eq!(client_problems(&client), Vec::<(String, String)>::new(), "{client:?}");
        }
    }

    #[test]
    fn the_client_check_names_each_bad_setting_and_never_shows_a_secret() {
        let problems = client_problems(&settings(&[
            ("compression.typo", "zstd"),
            ("security.protocol", "SASL_SSLL"),
            ("bootstrap.servers", "elsewhere:9092"),
            ("sasl.password", "p4ssw0rd-planted"),
        ]));
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["bootstrap.servers", "compression.typo", "security.protocol"], "{problems:?}");
        assert!(problems[1].1.contains("No such configuration property"), "{problems:?}");
        assert!(problems[2].1.contains("Invalid value"), "{problems:?}");

        // A certificate that cannot be read fails client creation, which is reported
        // for the settings together, with the secret hidden wherever it would appear.
        let problems = client_problems(&settings(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
            ("ssl.key.password", "p4ssw0rd-planted"),
        ]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "");
        assert!(problems[0].1.contains("ssl.ca.location"), "{problems:?}");
        assert!(!format!("{problems:?}").contains("p4ssw0rd-planted"));
    }
}
