//! The shape of `connectors.yaml`. Unknown keys are rejected everywhere; every field
//! that may be left out has a named default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// The whole host configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Format version of this file; only 1 exists.
    pub version: u32,
    /// Where embedded topics, the compiled-plugin cache and host state live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The admin REST API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The Kafka cluster; without it topics live in the embedded store under `data_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaConfig>,
    /// Embedded transport settings, used when `kafka` is absent.
    #[serde(default)]
    pub embedded: EmbeddedConfig,
    /// Where plugins are found and the limits each plugin task runs under.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The connectors to run.
    #[serde(default)]
    pub connectors: Vec<ConnectorConfig>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// The admin REST API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; port 0 picks a free port (logged at start).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A bearer token every request but `GET /health` must carry (write it as
    /// `${VAR}` or `${file:PATH}`); without it, `WASM_CONNECT_ADMIN_TOKEN` if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Web origins (`https://ui.example.com`) whose pages may call the API from a
    /// browser, like Kafka Connect's `access.control.allow.origin`; `*` allows any.
    /// Empty (the default): a request that carries an `Origin` header is refused, so a
    /// web page can never drive the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Host names a request's `Host` header may name beside IP addresses and
    /// `localhost`, when no token is configured (`*` allows any). Without a token, a
    /// web page could otherwise read the API through a DNS name it controls that
    /// resolves to this host (DNS rebinding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Connections open at once; at the limit a new connection replaces the oldest
    /// one that is not answering a request.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Time a client has to send a whole request head; also how long an idle
    /// keep-alive connection is kept.
    #[serde(default = "default_header_timeout", with = "human_duration")]
    pub header_timeout: Duration,
    /// Time for a request's body to arrive (408 after that); the work a request
    /// starts is never cut off.
    #[serde(default = "default_admin_request_timeout", with = "human_duration")]
    pub request_timeout: Duration,
    /// Serve the API over TLS with this certificate and key, so the token never
    /// crosses a network in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<AdminTls>,
    /// The host name or IP address others reach this API at (Kafka Connect's
    /// `rest.advertised.host.name`): with the port, the `worker_id` the status shows.
    /// Default: the address it listens on, or this machine's host name when that is
    /// `0.0.0.0` or `::`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    /// The port others reach this API at (Kafka Connect's `rest.advertised.port`),
    /// when a proxy or a port mapping stands in between. Default: the port it listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_port: Option<u16>,
}

/// The admin API's TLS files, PEM; read again when they change.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    /// The certificate chain, server certificate first.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8083))
}

fn default_max_connections() -> u32 {
    256
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_admin_request_timeout() -> Duration {
    Duration::from_secs(120)
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            token: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_connections: default_max_connections(),
            header_timeout: default_header_timeout(),
            request_timeout: default_admin_request_timeout(),
            tls: None,
            advertised_host: None,
            advertised_port: None,
        }
    }
}

/// A Kafka cluster.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// librdkafka settings passed through as they are (TLS, SASL, compression...).
    #[serde(default)]
    pub client: BTreeMap<String, ScalarString>,
    /// The older name of `cluster."offset.storage.topic"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets_topic: Option<String>,
    /// The older name of `cluster."config.storage.topic"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_topic: Option<String>,
    /// What the hosts that share this cluster share, named as Kafka Connect's worker
    /// settings: the group, the topics and how they are made.
    #[serde(default)]
    pub cluster: ClusterConfig,
}

impl KafkaConfig {
    /// The compacted topic of source positions.
    pub fn offsets_topic(&self) -> String {
        let chosen = self.cluster.offset_storage_topic.as_ref().or(self.offsets_topic.as_ref());
        chosen.cloned().unwrap_or_else(|| format!("{}-offsets", self.cluster.group_id))
    }

    /// The compacted topic of the desired state: connectors made through the REST API
    /// and every connector's target state.
    pub fn config_topic(&self) -> String {
        let chosen = self.cluster.config_storage_topic.as_ref().or(self.config_topic.as_ref());
        chosen.cloned().unwrap_or_else(|| format!("{}-configs", self.cluster.group_id))
    }

    /// The topic whose partitions the hosts share out: `<group.id>-assignments`, or,
    /// for hosts that name their config topic by its older setting `config_topic`,
    /// `<config_topic>-assignments` (hosts that each had their own config topic before
    /// clusters existed stay separate clusters).
    pub fn assignments_topic(&self) -> String {
        match (&self.cluster.assignment_storage_topic, &self.config_topic) {
            (Some(topic), _) => topic.clone(),
            (None, Some(config)) => format!("{config}-assignments"),
            (None, None) => format!("{}-assignments", self.cluster.group_id),
        }
    }

    /// The compacted topic where every host writes the states of the tasks it runs,
    /// and its own heartbeats: `<group.id>-status`, or, with the older `config_topic`,
    /// `<config_topic>-status` (as [`KafkaConfig::assignments_topic`]).
    pub fn status_topic(&self) -> String {
        match (&self.cluster.status_storage_topic, &self.config_topic) {
            (Some(topic), _) => topic.clone(),
            (None, Some(config)) => format!("{config}-status"),
            (None, None) => format!("{}-status", self.cluster.group_id),
        }
    }

    /// The compacted topic that holds the bytes of the plugins uploaded to any host:
    /// `<group.id>-plugins`, or, with the older `config_topic`, `<config_topic>-plugins`
    /// (as [`KafkaConfig::assignments_topic`]).
    pub fn plugins_topic(&self) -> String {
        match (&self.cluster.plugin_storage_topic, &self.config_topic) {
            (Some(topic), _) => topic.clone(),
            (None, Some(config)) => format!("{config}-plugins"),
            (None, None) => format!("{}-plugins", self.cluster.group_id),
        }
    }

    /// The consumer group whose members share the assignments topic out: `group.id`,
    /// or, with the older `config_topic`, `<group.id>.<config_topic>` (see
    /// [`KafkaConfig::assignments_topic`]; the `.` keeps it apart from every
    /// connector's `<group.id>-<connector>`).
    pub fn membership_group(&self) -> String {
        match &self.config_topic {
            Some(config) => format!("{}.{config}", self.cluster.group_id),
            None => self.cluster.group_id.clone(),
        }
    }
}

/// The settings every host of one cluster shares (Kafka Connect's worker settings of
/// the same names). Changing `group.id` makes a new cluster: new groups, new
/// transactional ids, new topics.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name: the prefix of every consumer group and transactional id
    /// the hosts use (`<group.id>-<connector>`), and of the topics below by default.
    #[serde(rename = "group.id", default = "default_group_id")]
    pub group_id: String,
    /// Compacted topic of the desired state; default `<group.id>-configs`.
    #[serde(rename = "config.storage.topic", default, skip_serializing_if = "Option::is_none")]
    pub config_storage_topic: Option<String>,
    /// Replicas of the config topic when the host creates it; -1: the broker's default.
    #[serde(rename = "config.storage.replication.factor", default = "broker_default")]
    pub config_storage_replication_factor: i32,
    /// Compacted topic of source positions; default `<group.id>-offsets`.
    #[serde(rename = "offset.storage.topic", default, skip_serializing_if = "Option::is_none")]
    pub offset_storage_topic: Option<String>,
    /// Replicas of the offsets topic when the host creates it; -1: the broker's default.
    #[serde(rename = "offset.storage.replication.factor", default = "broker_default")]
    pub offset_storage_replication_factor: i32,
    /// Partitions of the offsets topic when the host creates it.
    #[serde(rename = "offset.storage.partitions", default = "default_offset_partitions")]
    pub offset_storage_partitions: i32,
    /// Compacted topic of the states of every task, written by the host that runs it,
    /// so that any host answers for all; default `<group.id>-status`.
    #[serde(rename = "status.storage.topic", default, skip_serializing_if = "Option::is_none")]
    pub status_storage_topic: Option<String>,
    /// Replicas of the status topic when the host creates it; -1: the broker's default.
    #[serde(rename = "status.storage.replication.factor", default = "broker_default")]
    pub status_storage_replication_factor: i32,
    /// Partitions of the status topic when the host creates it.
    #[serde(rename = "status.storage.partitions", default = "default_status_partitions")]
    pub status_storage_partitions: i32,
    /// Compacted topic of the plugins uploaded to any host of the cluster, in chunks,
    /// so that every host runs them; default `<group.id>-plugins`.
    #[serde(rename = "plugin.storage.topic", default, skip_serializing_if = "Option::is_none")]
    pub plugin_storage_topic: Option<String>,
    /// Replicas of the plugins topic when the host creates it; -1: the broker's default.
    #[serde(rename = "plugin.storage.replication.factor", default = "broker_default")]
    pub plugin_storage_replication_factor: i32,
    /// The topic whose partitions the hosts share out through the `group.id` consumer
    /// group: the owner of a partition runs the tasks that hash to it. Default
    /// `<group.id>-assignments`.
    #[serde(rename = "assignment.storage.topic", default, skip_serializing_if = "Option::is_none")]
    pub assignment_storage_topic: Option<String>,
    /// Partitions of the assignments topic when the host creates it: the most hosts
    /// that share tasks out, and how finely. Never change it on a running cluster.
    #[serde(rename = "assignment.storage.partitions", default = "default_assignment_partitions")]
    pub assignment_storage_partitions: i32,
    /// How the broker shares the assignments topic out: `cooperative-sticky` moves
    /// only what must move; `range` or `roundrobin` stop every task of every host on
    /// each change of members (for brokers without cooperative rebalancing).
    #[serde(rename = "partition.assignment.strategy", default = "default_assignment_strategy")]
    pub partition_assignment_strategy: String,
    /// How long a host may go unheard before the broker gives its tasks to the others.
    #[serde(rename = "session.timeout.ms", default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// How often a host tells the broker it is alive; less than `session.timeout.ms`.
    #[serde(rename = "heartbeat.interval.ms", default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u32,
    /// How long a host may take to stop the tasks it gives up in a rebalance.
    #[serde(rename = "rebalance.timeout.ms", default = "default_rebalance_timeout_ms")]
    pub rebalance_timeout_ms: u32,
    /// How long the tasks of a host that went (stopped, or died) wait for it to come
    /// back before the others take them; 0: they move at once when it stops, and once
    /// its session ends when it dies. Kafka Connect's setting of this name (whose
    /// default is 5 minutes).
    #[serde(rename = "scheduled.rebalance.max.delay.ms", default)]
    pub scheduled_rebalance_max_delay_ms: u32,
    /// `enabled`: each source batch and its position are written in one transaction,
    /// under the task's own transactional id (exactly once, zombies fenced); `disabled`:
    /// an idempotent producer writes the position once the batch is acknowledged (at
    /// least once, no transaction per batch). Kafka Connect's setting of this name.
    #[serde(rename = "exactly.once.source.support", default = "default_exactly_once")]
    pub exactly_once_source_support: ExactlyOnceSupport,
}

/// `exactly.once.source.support`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExactlyOnceSupport {
    /// Sources write in transactions.
    Enabled,
    /// Sources write with an idempotent producer.
    Disabled,
}

fn default_exactly_once() -> ExactlyOnceSupport {
    ExactlyOnceSupport::Enabled
}

/// The assignment strategies `partition.assignment.strategy` takes.
pub const ASSIGNMENT_STRATEGIES: [&str; 3] = ["cooperative-sticky", "range", "roundrobin"];

fn default_assignment_partitions() -> i32 {
    60
}

fn default_assignment_strategy() -> String {
    ASSIGNMENT_STRATEGIES[0].to_owned()
}

fn default_session_timeout_ms() -> u32 {
    10_000
}

fn default_heartbeat_interval_ms() -> u32 {
    3_000
}

fn default_rebalance_timeout_ms() -> u32 {
    60_000
}

fn default_group_id() -> String {
    "wasm-connect".to_owned()
}

fn broker_default() -> i32 {
    -1
}

fn default_status_partitions() -> i32 {
    5
}

fn default_offset_partitions() -> i32 {
    25
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            group_id: default_group_id(),
            config_storage_topic: None,
            config_storage_replication_factor: broker_default(),
            offset_storage_topic: None,
            offset_storage_replication_factor: broker_default(),
            offset_storage_partitions: default_offset_partitions(),
            status_storage_topic: None,
            status_storage_replication_factor: broker_default(),
            status_storage_partitions: default_status_partitions(),
            plugin_storage_topic: None,
            plugin_storage_replication_factor: broker_default(),
            assignment_storage_topic: None,
            assignment_storage_partitions: default_assignment_partitions(),
            partition_assignment_strategy: default_assignment_strategy(),
            session_timeout_ms: default_session_timeout_ms(),
            heartbeat_interval_ms: default_heartbeat_interval_ms(),
            rebalance_timeout_ms: default_rebalance_timeout_ms(),
            scheduled_rebalance_max_delay_ms: 0,
            exactly_once_source_support: default_exactly_once(),
        }
    }
}

/// The SQLite-backed embedded transport.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Partitions of each new topic; sink tasks split partitions between them.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Records older than this are deleted, whether consumed or not (like Kafka's `retention.ms`).
    #[serde(default = "default_retention", with = "human_duration")]
    pub retention: Duration,
}

fn default_partitions() -> u32 {
    4
}

fn default_retention() -> Duration {
    Duration::from_secs(7 * 86_400)
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self { partitions: default_partitions(), retention: default_retention() }
    }
}

/// Plugin discovery and per-task limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory scanned for `*.wasm` components at start-up.
    #[serde(default = "default_plugins_dir")]
    pub dir: PathBuf,
    /// Linear-memory limit of one plugin task, in MiB.
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u32,
    /// Longest a single plugin call may run before it is interrupted.
    #[serde(default = "default_call_timeout", with = "human_duration")]
    pub call_timeout: Duration,
    /// First delay before restarting a failed task; doubles up to `max_restart_backoff`.
    #[serde(default = "default_restart_backoff", with = "human_duration")]
    pub restart_backoff: Duration,
    /// Longest delay between restarts of a failing task.
    #[serde(default = "default_max_restart_backoff", with = "human_duration")]
    pub max_restart_backoff: Duration,
    /// Largest component `POST /plugins` accepts, in MiB (Python and JavaScript
    /// components are 12 to 40 MB).
    #[serde(default = "default_max_upload_mib")]
    pub max_upload_mib: u32,
}

fn default_plugins_dir() -> PathBuf {
    PathBuf::from("./plugins/dist")
}
fn default_memory_limit_mib() -> u32 {
    64
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_restart_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_restart_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_max_upload_mib() -> u32 {
    64
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: default_plugins_dir(),
            memory_limit_mib: default_memory_limit_mib(),
            call_timeout: default_call_timeout(),
            restart_backoff: default_restart_backoff(),
            max_restart_backoff: default_max_restart_backoff(),
            max_upload_mib: default_max_upload_mib(),
        }
    }
}

/// One connector: a plugin, its topics and its configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Unique name; also the consumer group (`wasm-connect-<name>`) of a sink.
    pub name: String,
    /// `name` or `name@version` of a plugin.
    pub plugin: String,
    /// `false` keeps the connector in the file, checked by `validate`, without running
    /// it; a string from a substitution (`${FLIGHTS_FROM_AIRLABS:-false}`) counts too.
    #[serde(default = "enabled_by_default", deserialize_with = "flag", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// The topic a source writes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The topics a sink reads from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Parallel tasks; a source runs one task, sinks split partitions between tasks.
    #[serde(default = "default_tasks_max")]
    pub tasks_max: u32,
    /// Records per batch handed to or taken from the plugin.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// The plugin's own options (see `wasm-connect plugins`).
    #[serde(default)]
    pub config: BTreeMap<String, ScalarString>,
    /// What to do with records that cannot be written.
    #[serde(default)]
    pub errors: ErrorsConfig,
    /// Where the plugin's outgoing HTTP requests may go, and their limits.
    #[serde(default, skip_serializing_if = "EgressConfig::is_default")]
    pub egress: EgressConfig,
    /// Transforms applied to every record in order, between the source and its topic
    /// or between the topics and the sink (Kafka Connect's `transforms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<TransformConfig>,
    /// Conditions transforms may be applied under (Kafka Connect's `predicates`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicates: Vec<PredicateConfig>,
    /// Kafka Connect framework keys given through the REST API that have no effect
    /// here (converters, client overrides...): kept so that the configuration reads
    /// back as it was written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ignored: BTreeMap<String, ScalarString>,
}

/// One transform of a connector's chain: `name` is its alias, `type` a transform
/// (Kafka Connect's short or full class name), every other key one of its options.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TransformConfig {
    /// The alias: Kafka Connect's `transforms.<alias>.*`.
    pub name: String,
    /// The transform, e.g. `InsertField$Value`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Apply only to records this predicate (named in `predicates`) matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
    /// Apply only to records the predicate does not match.
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "is_false")]
    pub negate: bool,
    /// The transform's own options.
    #[serde(flatten)]
    pub options: BTreeMap<String, ScalarString>,
}

/// One predicate: `name` is its alias, `type` a predicate, every other key one of its
/// options.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PredicateConfig {
    /// The alias: Kafka Connect's `predicates.<alias>.*`.
    pub name: String,
    /// The predicate, e.g. `TopicNameMatches`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The predicate's own options.
    #[serde(flatten)]
    pub options: BTreeMap<String, ScalarString>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn enabled_by_default() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// `true` or `false`, as a YAML boolean or as the string a `${...}` substitution left.
fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(value) => Ok(value),
        Flag::Text(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(serde::de::Error::custom(format!("must be true or false, not {other:?}"))),
        },
    }
}

fn default_tasks_max() -> u32 {
    1
}
fn default_batch_size() -> u32 {
    ConnectorConfig::DEFAULT_BATCH_SIZE
}

impl ConnectorConfig {
    /// Records per batch unless `batch_size` says otherwise.
    pub const DEFAULT_BATCH_SIZE: u32 = 500;
}

/// What to do with records that cannot be written, as Kafka Connect's `errors.*`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsConfig {
    /// `none`: a bad record fails the task; `all`: it is skipped (and dead-lettered).
    #[serde(default)]
    pub tolerance: Tolerance,
    /// How long a batch is retried after retriable errors (a store that is down or
    /// overloaded) before the task fails and is restarted with backoff. Retriable
    /// errors never send records to the dead-letter topic.
    #[serde(default = "default_retry_timeout", with = "human_duration")]
    pub retry_timeout: Duration,
    /// Log each failed record: its topic, partition, offset and the reason, never its value.
    #[serde(default)]
    pub log: bool,
    /// Where tolerated bad records go, with the reason in headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

fn default_retry_timeout() -> Duration {
    Duration::from_secs(300)
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        Self { tolerance: Tolerance::default(), retry_timeout: default_retry_timeout(), log: false, dead_letter_topic: None }
    }
}

/// A connector's outgoing HTTP (`wasi:http`): the hosts it may reach beyond the ones
/// its plugin's URL options grant, and the limits every request runs under.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// More hosts the plugin may call: `host`, `host:port` or `*.domain` (any
    /// subdomain). The hosts of the options the plugin declares as HTTP endpoints
    /// (such as `base_url`) are granted without being listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Longest one request may take, from sending it to the last byte of its body.
    #[serde(default = "default_request_timeout", with = "human_duration")]
    pub request_timeout: Duration,
    /// Largest response body accepted, in MiB; a larger one fails the request.
    #[serde(default = "default_max_response_mib")]
    pub max_response_mib: u32,
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_response_mib() -> u32 {
    16
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self { allowed_hosts: Vec::new(), request_timeout: default_request_timeout(), max_response_mib: default_max_response_mib() }
    }
}

impl EgressConfig {
    /// True when nothing differs from the defaults (then it is not written out).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Kafka Connect's `errors.tolerance` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tolerance {
    /// Stop at the first bad record.
    #[default]
    None,
    /// Skip bad records.
    All,
}

/// A YAML scalar (string, number or boolean) or a list of scalars, kept as the string
/// the plugin receives. Lists become comma-separated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ScalarString(pub String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = ScalarString;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string, number, boolean or a list of them")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(ScalarString(value.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
                Ok(ScalarString(value.to_string()))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
                Ok(ScalarString(value.to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
                Ok(ScalarString(value.to_string()))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
                Ok(ScalarString(value.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::new();
                while let Some(item) = items.next_element::<ScalarString>()? {
                    parts.push(item.0);
                }
                Ok(ScalarString(parts.join(",")))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Durations written as `500ms`, `10s`, `1m30s`.
pub mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    /// Reads a human duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        wasm_connect_protocol::values::parse_duration(&text).map_err(de::Error::custom)
    }

    /// Writes the duration in milliseconds (`1500ms`), which reads back exactly.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ms", duration.as_millis()))
    }
}
