//! The bodies the admin API takes and answers, as types: the handlers build and read
//! these, and `GET /openapi.json` describes these very types, so the document cannot
//! drift from what is served. Shapes follow Kafka Connect's REST API.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manager::FileState;
use crate::names::NAME_PATTERN;
use crate::runtime::{OptionType, PluginDescription, PluginKind, PluginOrigin};
use crate::telemetry::ConnectorStatus;

/// Kafka Connect's level names in any case.
pub const LEVEL_PATTERN: &str = "^([Oo][Ff][Ff]|[Ff][Aa][Tt][Aa][Ll]|[Ee][Rr][Rr][Oo][Rr]|[Ww][Aa][Rr][Nn]|[Ii][Nn][Ff][Oo]|[Dd][Ee][Bb][Uu][Gg]|[Tt][Rr][Aa][Cc][Ee])$";

/// `GET /`: the host's version.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerInfo {
    /// The host's version.
    pub version: String,
    /// The commit it was built from, or `unknown` outside a git checkout.
    pub commit: String,
    /// The id of the Kafka cluster the host runs on; null on the embedded transport.
    pub kafka_cluster_id: Option<String>,
    /// The address this host's API is reached at, as the status names it.
    pub worker_id: String,
    /// The cluster of hosts it belongs to (`kafka.cluster."group.id"`); null on the
    /// embedded transport.
    pub group_id: Option<String>,
    /// How many partitions of the cluster's assignments topic this host owns: it runs
    /// the tasks that hash to them. Null on the embedded transport (it runs every task).
    pub assigned_partitions: Option<usize>,
}

/// `GET /health`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// `healthy`.
    pub status: String,
    /// Kafka Connect's sentence.
    pub message: String,
    /// What became of the configuration file's latest version.
    pub config_file: FileState,
}

/// A connector's flat configuration: Kafka Connect's string map, secrets `[hidden]`.
pub type FlatConfig = BTreeMap<String, String>;

/// One task of a connector.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskId {
    /// The connector's name.
    pub connector: String,
    /// The task's number.
    pub task: u32,
}

/// A connector's info: `GET /connectors/{name}` and the answer to a change.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectorInfo {
    /// Its name.
    pub name: String,
    /// Its flat configuration.
    pub config: FlatConfig,
    /// Its tasks: none while stopped or when it cannot be planned.
    pub tasks: Vec<TaskId>,
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: PluginKind,
}

/// What `GET /connectors?expand=...` shows of one connector.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectorExpansion {
    /// With `expand=status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ConnectorStatus>,
    /// With `expand=info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ConnectorInfo>,
}

/// `GET /connectors`: the names, or with `expand` a map of expansions by name.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ConnectorList {
    /// Without `expand`.
    Names(Vec<String>),
    /// With `expand=status` and/or `expand=info`.
    Expanded(BTreeMap<String, ConnectorExpansion>),
}

/// One task with its configuration (`GET /connectors/{name}/tasks`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskInfo {
    /// Which task.
    pub id: TaskId,
    /// The connector's configuration plus `task.id`.
    pub config: FlatConfig,
}

/// The topics of one connector (`GET /connectors/{name}/topics`, by name).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectorTopics {
    /// The configured topics.
    pub topics: Vec<String>,
}

/// A short confirmation (`{"message": ...}`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Message {
    /// What was done.
    pub message: String,
}

/// Where a sink reads: one partition of a topic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkPartition {
    /// The topic.
    pub kafka_topic: String,
    /// The partition number.
    #[schemars(range(min = 0))]
    pub kafka_partition: i32,
}

/// The next offset a sink reads in its partition.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkOffset {
    /// The offset of the next record to read.
    #[schemars(range(min = 0))]
    pub kafka_offset: i64,
}

/// A source's only partition: the connector itself.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePartition {
    /// The connector's name.
    pub connector: String,
}

/// A source's position: the text its plugin stored.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceOffset {
    /// The position, as the plugin wrote it.
    pub position: String,
}

/// One offset of a connector.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum ConnectorOffset {
    /// A sink's committed offset in one partition.
    Sink {
        /// The partition.
        partition: SinkPartition,
        /// The next offset to read.
        offset: SinkOffset,
    },
    /// A source's stored position.
    Source {
        /// The connector.
        partition: SourcePartition,
        /// The position.
        offset: SourceOffset,
    },
}

/// `GET /connectors/{name}/offsets`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectorOffsets {
    /// Every offset the connector has.
    pub offsets: Vec<ConnectorOffset>,
}

/// One change of `PATCH /connectors/{name}/offsets`: a sink's partition or a source's
/// position, and the new offset (null forgets it).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum OffsetChange {
    /// A sink's partition.
    Sink {
        /// The partition.
        partition: SinkPartition,
        /// The next offset to read, or null to forget the partition's offset.
        offset: Option<SinkOffset>,
    },
    /// A source's position.
    Source {
        /// The connector (its name).
        partition: SourcePartition,
        /// The position, or null to forget it.
        offset: Option<SourceOffset>,
    },
}

/// The body of `PATCH /connectors/{name}/offsets`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = offsets_example())]
pub struct OffsetsChangeRequest {
    /// The changes: a sink's partitions, or a source's one position.
    #[schemars(length(min = 1))]
    pub offsets: Vec<OffsetChange>,
}

fn offsets_example() -> serde_json::Value {
    serde_json::json!({"offsets": [{"partition": {"kafka_topic": "flights", "kafka_partition": 0}, "offset": {"kafka_offset": 42}}]})
}

/// A configuration value: Kafka Connect's maps hold strings; numbers and booleans are
/// taken as what they spell. The configuration types describe the bodies that
/// [`super::connector_config::string_map`] reads key by key (so that every bad value is
/// reported, not only the first); its tests hold the two together.
#[allow(dead_code)]
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A string.
    Text(String),
    /// A number, taken as its decimal text.
    Number(serde_json::Number),
    /// `true` or `false`.
    Flag(bool),
}

impl ConfigValue {
    /// The value as the string a flat configuration holds.
    pub fn into_text(self) -> String {
        match self {
            ConfigValue::Text(text) => text,
            ConfigValue::Number(number) => number.to_string(),
            ConfigValue::Flag(flag) => flag.to_string(),
        }
    }
}

/// A connector configuration as a request carries it: at most 1,000 keys.
#[allow(dead_code)]
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(extend("maxProperties" = 1000), example = config_example())]
pub struct ConfigRequest(pub BTreeMap<String, ConfigValue>);

fn config_example() -> serde_json::Value {
    serde_json::json!({"connector.class": "iot-sensor-simulator", "topic": "iot-readings", "devices": "5", "rate": "10"})
}

/// A change to a configuration: a value sets a key, null removes it.
#[allow(dead_code)]
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(extend("maxProperties" = 1000), example = patch_example())]
pub struct ConfigPatch(pub BTreeMap<String, Option<ConfigValue>>);

fn patch_example() -> serde_json::Value {
    serde_json::json!({"rate": "20", "seed": null})
}

/// The state a connector starts in.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum InitialState {
    /// Running (the default).
    Running,
    /// Paused: created, its tasks not started.
    Paused,
    /// Stopped: no tasks; offsets may be changed before it first runs.
    Stopped,
}

/// The body of `POST /connectors`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = create_example())]
pub struct CreateConnector {
    /// The connector's name; a `name` in the config must equal it.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Its flat configuration, read key by key so that every bad value is reported.
    #[schemars(with = "ConfigRequest")]
    pub config: serde_json::Value,
    /// RUNNING (the default), PAUSED or STOPPED.
    #[serde(default)]
    pub initial_state: Option<InitialState>,
}

fn create_example() -> serde_json::Value {
    serde_json::json!({"name": "iot", "config": config_example()})
}

/// One plugin as `GET /connector-plugins` lists it: a connector plugin, or (with
/// `connectorsOnly=false`) a transform or predicate type.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConnectorPlugin {
    /// What `connector.class` (or a transform's or predicate's `type`) takes.
    pub class: String,
    /// `source`, `sink`, `transformation` or `predicate`.
    #[serde(rename = "type")]
    pub kind: ListedKind,
    /// Its version (the host's for the built-in transforms and predicates).
    pub version: String,
}

/// Kafka Connect's plugin types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListedKind {
    /// A source connector plugin.
    Source,
    /// A sink connector plugin.
    Sink,
    /// A transform: built in, or a transform plugin.
    Transformation,
    /// A predicate.
    Predicate,
    /// A stream processor (built into the host).
    Processor,
}

impl From<PluginKind> for ListedKind {
    fn from(kind: PluginKind) -> Self {
        match kind {
            PluginKind::Source => ListedKind::Source,
            PluginKind::Sink => ListedKind::Sink,
            PluginKind::Transform => ListedKind::Transformation,
            PluginKind::Processor => ListedKind::Processor,
        }
    }
}

/// Kafka Connect's definition of one configuration key.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConfigKeyDefinition {
    /// The key.
    pub name: String,
    /// `STRING`, `INT`, `LONG`, `DOUBLE`, `BOOLEAN`, `LIST` or `PASSWORD`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the key must be given.
    pub required: bool,
    /// The value used when the key is absent.
    pub default_value: Option<String>,
    /// `HIGH`, `MEDIUM` or `LOW`.
    pub importance: String,
    /// What the key is for.
    pub documentation: String,
    /// `Common`, `Error Handling`, or the plugin's name.
    pub group: Option<String>,
    /// Always `NONE`.
    pub width: String,
    /// The key again.
    pub display_name: String,
    /// Always empty.
    pub dependents: Vec<String>,
    /// Its place in its group, or -1.
    pub order: i64,
    /// The type the plugin declared, grants included (not in Kafka Connect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_connect_type: Option<OptionType>,
}

/// A key's value in a validation, with its errors.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConfigKeyValue {
    /// The key.
    pub name: String,
    /// The value given (secrets `[hidden]`), or null.
    pub value: Option<String>,
    /// Always empty.
    pub recommended_values: Vec<String>,
    /// What is wrong with it.
    pub errors: Vec<String>,
    /// Always true.
    pub visible: bool,
}

/// One key of a validation: its definition and its value.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConfigKeyInfo {
    /// What the key is.
    pub definition: ConfigKeyDefinition,
    /// What was given for it.
    pub value: ConfigKeyValue,
}

/// `PUT /connector-plugins/{plugin}/config/validate`: Kafka Connect's `ConfigInfos`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConfigInfos {
    /// The plugin.
    pub name: String,
    /// Errors across every key; 0 when the configuration is valid.
    pub error_count: usize,
    /// The groups the keys fall in.
    pub groups: Vec<String>,
    /// Every key, with errors where there are any.
    pub configs: Vec<ConfigKeyInfo>,
}

/// A plugin version with what the host knows of it (`/plugins`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct PluginVersion {
    /// What the plugin says about itself.
    #[serde(flatten)]
    pub description: PluginDescription,
    /// `sha256:` and the hex digest of the component.
    pub digest: String,
    /// `directory` (`plugins.dir`) or `uploaded`.
    pub origin: PluginOrigin,
    /// The connectors running it.
    pub used_by: Vec<String>,
}

/// `GET /plugins/{name}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PluginVersions {
    /// The plugin.
    pub name: String,
    /// Its versions, oldest first.
    pub versions: Vec<PluginVersion>,
}

/// The body of `PUT /admin/loggers/{logger}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = level_example())]
pub struct LevelRequest {
    /// OFF, FATAL, ERROR, WARN, INFO, DEBUG or TRACE, in any case.
    #[schemars(regex(pattern = LEVEL_PATTERN))]
    pub level: String,
}

fn level_example() -> serde_json::Value {
    serde_json::json!({"level": "DEBUG"})
}

/// Kafka Connect's error body.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// The HTTP status.
    pub error_code: u16,
    /// What went wrong and what to change.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_types_take_what_string_map_reads() {
        use super::super::connector_config::string_map;
        let many: serde_json::Map<String, serde_json::Value> = (0..1001).map(|key| (key.to_string(), "x".into())).collect();
        let bodies = [
            serde_json::json!({"a": "x", "b": 2, "c": true, "f": -1.5}),
            serde_json::json!({"a": null}),
            serde_json::json!({"a": [1]}),
            serde_json::json!({"a": {"b": "c"}}),
            serde_json::json!([["a", "b"]]),
            serde_json::json!("a"),
            serde_json::json!({}),
            serde_json::Value::Object(many),
        ];
        for body in bodies {
            let described =
                serde_json::from_value::<ConfigRequest>(body.clone()).is_ok() && body.as_object().is_some_and(|map| map.len() <= 1000);
            assert_eq!(described, string_map(&body, false).is_ok(), "{body}");
            let described =
                serde_json::from_value::<ConfigPatch>(body.clone()).is_ok() && body.as_object().is_some_and(|map| map.len() <= 1000);
            assert_eq!(described, string_map(&body, true).is_ok(), "{body}");
        }
    }
}

/// `POST /connectors/{name}/transforms/test`: sample records for the connector's chain.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformsTest {
    /// At most 1000 records.
    #[schemars(length(max = 1000))]
    #[allow(dead_code)] // Read on their own: each must be an object (`samples_from`).
    pub records: Vec<crate::transforms::sample::SampleRecord>,
}

/// `POST /transforms/test`: a configuration's chain (Kafka Connect's flat keys; only
/// `transforms`, `predicates` and the keys under them count) and sample records.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigTransformsTest {
    /// The flat configuration.
    #[schemars(extend("maxProperties" = 1000))]
    pub config: BTreeMap<String, ConfigValue>,
    /// At most 1000 records.
    #[schemars(length(max = 1000))]
    #[allow(dead_code)] // Read on their own: each must be an object (`samples_from`).
    pub records: Vec<crate::transforms::sample::SampleRecord>,
}

/// What the chain made of each sample record, in order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TransformsTestAnswer {
    /// One entry per sample.
    pub records: Vec<crate::transforms::sample::TestedRecord>,
}

/// `GET /connectors/{name}/state`: a page of a processor's state as last checkpointed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProcessorState {
    /// The connector.
    pub connector: String,
    /// Entries that match, over every page.
    pub total: usize,
    /// This page's entries, in (store, key, partition) order.
    pub entries: Vec<ProcessorStateEntry>,
    /// The `offset` of the next page, when there is one.
    pub next_offset: Option<usize>,
}

/// One key of a processor's state.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProcessorStateEntry {
    /// The key (a group, for `aggregate`).
    pub key: String,
    /// The processor's store it belongs to (`windows`, `stream-time`).
    pub store: String,
    /// The input partition it belongs to.
    pub partition: i32,
    /// Its value (JSON, or the text when it is not JSON).
    pub value: serde_json::Value,
}
