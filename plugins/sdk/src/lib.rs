//! The wasm-connect plugin SDK: a source, sink or transform is one trait impl and one
//! export macro. The WIT bindings, the record-batch encoding and the conversion of
//! configuration values stay in here.
//!
//! ```ignore
//! use wasm_connect_sdk::{export_sink, ConfigOption, Description, Error, Plugin, RecordView, Settings, Sink};
//!
//! struct Counter { seen: u64 }
//!
//! impl Plugin for Counter {
//!     fn description() -> Description {
//!         Description::new("counter", env!("CARGO_PKG_VERSION"), "Counts records.")
//!     }
//! }
//!
//! impl Sink for Counter {
//!     fn open(_settings: &Settings) -> Result<Self, Error> { Ok(Counter { seen: 0 }) }
//!     fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error> {
//!         self.seen += records.len() as u64;
//!         Ok(())
//!     }
//! }
//!
//! export_sink!(Counter);
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "http")]
pub mod api;
pub mod document_id;
#[cfg(feature = "http")]
pub mod http;
pub mod partial;
#[cfg(feature = "source")]
pub mod polling;
mod settings;
pub mod simulation;

use std::time::Duration;

pub use settings::Settings;
pub use wasm_connect_protocol::{BatchWriter, Record, RecordView, json, time};

/// Generated bindings and glue used by the export macros. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub mod capabilities {
        wit_bindgen::generate!({
            world: "host-capabilities",
            path: "../../wit",
            generate_all,
        });
    }

    #[cfg(feature = "source")]
    pub mod source {
        wit_bindgen::generate!({
            world: "source",
            path: "../../wit",
            with: {
                "wasm-connect:connector/types@0.1.4": crate::__private::capabilities::wasm_connect::connector::types,
                "wasm-connect:connector/log@0.1.4": crate::__private::capabilities::wasm_connect::connector::log,
                "wasm-connect:connector/source-status@0.1.4": crate::__private::capabilities::wasm_connect::connector::source_status,
            },
            pub_export_macro: true,
            export_macro_name: "__export_source_world",
            default_bindings_module: "wasm_connect_sdk::__private::source",
        });
    }

    #[cfg(feature = "sink")]
    pub mod sink {
        wit_bindgen::generate!({
            world: "sink",
            path: "../../wit",
            with: {
                "wasm-connect:connector/types@0.1.4": crate::__private::capabilities::wasm_connect::connector::types,
                "wasm-connect:connector/log@0.1.4": crate::__private::capabilities::wasm_connect::connector::log,
                "wasm-connect:connector/files@0.1.4": crate::__private::capabilities::wasm_connect::connector::files,
                "wasm-connect:connector/elasticsearch@0.1.4": crate::__private::capabilities::wasm_connect::connector::elasticsearch,
                "wasm-connect:connector/mongodb@0.1.4": crate::__private::capabilities::wasm_connect::connector::mongodb,
                "wasm-connect:connector/cassandra@0.1.4": crate::__private::capabilities::wasm_connect::connector::cassandra,
            },
            pub_export_macro: true,
            export_macro_name: "__export_sink_world",
            default_bindings_module: "wasm_connect_sdk::__private::sink",
        });
    }

    #[cfg(feature = "transform")]
    pub mod transform {
        wit_bindgen::generate!({
            world: "record-transformer",
            path: "../../wit",
            with: {
                "wasm-connect:connector/types@0.1.4": crate::__private::capabilities::wasm_connect::connector::types,
                "wasm-connect:connector/log@0.1.4": crate::__private::capabilities::wasm_connect::connector::log,
            },
            pub_export_macro: true,
            export_macro_name: "__export_transform_world",
            default_bindings_module: "wasm_connect_sdk::__private::transform",
        });
    }

    #[cfg(feature = "processor")]
    pub mod processor {
        wit_bindgen::generate!({
            world: "stream-processor-plugin",
            path: "../../wit",
            with: {
                "wasm-connect:connector/types@0.1.4": crate::__private::capabilities::wasm_connect::connector::types,
                "wasm-connect:connector/log@0.1.4": crate::__private::capabilities::wasm_connect::connector::log,
                "wasm-connect:connector/state@0.1.4": crate::__private::capabilities::wasm_connect::connector::state,
                "wasm-connect:connector/timers@0.1.4": crate::__private::capabilities::wasm_connect::connector::timers,
            },
            pub_export_macro: true,
            export_macro_name: "__export_processor_world",
            default_bindings_module: "wasm_connect_sdk::__private::processor",
        });
    }

    use crate::{Description, Error, OptionType, Plugin, Settings};
    use capabilities::wasm_connect::connector::types as wit;

    pub use wasm_connect_protocol::{BatchWriter, decode};
    pub use wit::{ConfigIssue, PluginKind};

    /// The options the plugin declares as grants, in their WIT form.
    pub fn declared_grants<P: Plugin>() -> Vec<(String, GrantKind)> {
        P::description()
            .options
            .into_iter()
            .filter_map(|option| {
                let kind = match option.option_type {
                    OptionType::Directory => GrantKind::Directory,
                    OptionType::ElasticsearchUrl => GrantKind::ElasticsearchUrl,
                    OptionType::MongodbUri => GrantKind::MongodbUri,
                    OptionType::CqlContactPoints => GrantKind::CqlContactPoints,
                    OptionType::HttpEndpoint => GrantKind::HttpEndpoint,
                    _ => return None,
                };
                Some((option.name, kind))
            })
            .collect()
    }

    /// Which grant a declared option carries, independent of the world it is exported from.
    #[derive(Debug, Clone, Copy)]
    pub enum GrantKind {
        Directory,
        ElasticsearchUrl,
        MongodbUri,
        CqlContactPoints,
        HttpEndpoint,
    }

    /// The plugin's description in its WIT form.
    pub fn describe<P: Plugin>(kind: PluginKind) -> wit::PluginDescription {
        let Description { name, version, documentation, options } = P::description();
        wit::PluginDescription {
            name,
            version,
            kind,
            documentation,
            options: options
                .into_iter()
                .map(|option| wit::ConfigOption {
                    name: option.name,
                    option_type: match option.option_type {
                        OptionType::String => wit::OptionType::String,
                        OptionType::Integer => wit::OptionType::Integer,
                        OptionType::Float => wit::OptionType::Float,
                        OptionType::Boolean => wit::OptionType::Boolean,
                        OptionType::Duration => wit::OptionType::Duration,
                        OptionType::List | OptionType::CqlContactPoints => wit::OptionType::List,
                        // Grants are text on the wire; `declared-grants` says what they grant.
                        OptionType::Directory | OptionType::ElasticsearchUrl | OptionType::MongodbUri | OptionType::HttpEndpoint => {
                            wit::OptionType::String
                        }
                    },
                    default_value: option.default,
                    required: option.required,
                    secret: option.secret,
                    documentation: option.documentation,
                })
                .collect(),
        }
    }

    /// Runs the plugin's own checks on a configuration with defaults applied.
    pub fn validate<P: Plugin>(config: Vec<(String, String)>) -> Vec<ConfigIssue> {
        let settings = Settings::new::<P>(config);
        P::validate(&settings).into_iter().map(|(key, message)| ConfigIssue { key, message }).collect()
    }

    /// The error in its WIT form.
    pub fn error(error: Error) -> wit::Error {
        match error {
            Error::Retriable(message) => wit::Error::Retriable(message),
            Error::Fatal(message) => wit::Error::Fatal(message),
            Error::BadRecord { index, reason } => wit::Error::BadRecord(wit::BadRecord { index, reason }),
            Error::BadConfig(message) => wit::Error::BadConfig(message),
        }
    }

    /// Decodes a batch handed over by the host; a malformed one is a host bug, reported as fatal.
    pub fn decode_batch(batch: &[u8]) -> Result<Vec<crate::RecordView<'_>>, wit::Error> {
        decode(batch).map_err(|error| wit::Error::Fatal(error.to_string()))
    }

    /// A transform pushed records for a record it did not answer `Outcome::Written` for.
    pub fn wrote_without_written() -> wit::Error {
        wit::Error::Fatal("the plugin pushed records to its output for a record whose outcome is not Written".to_owned())
    }

    /// Called when the host enters a task that was never opened: a host bug.
    pub fn not_open() -> wit::Error {
        wit::Error::Fatal("the host called the plugin before `open`".to_owned())
    }
}

/// What went wrong, so that the host can decide what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A transient failure: the host retries later.
    Retriable(String),
    /// The task cannot go on: the host restarts it with backoff.
    Fatal(String),
    /// One record of the batch cannot be handled. Return it before writing anything
    /// of the batch: the host dead-letters it and calls `write` again without it.
    BadRecord {
        /// Index of the record in the batch.
        index: u32,
        /// Why it was refused.
        reason: String,
    },
    /// The configuration is unusable; the task is not restarted.
    BadConfig(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Retriable(message) => write!(formatter, "retriable: {message}"),
            Error::Fatal(message) => write!(formatter, "fatal: {message}"),
            Error::BadRecord { index, reason } => write!(formatter, "bad record {index}: {reason}"),
            Error::BadConfig(message) => write!(formatter, "bad config: {message}"),
        }
    }
}

/// The type of a configuration option; the host checks values against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    /// Any text.
    String,
    /// A whole number.
    Integer,
    /// A decimal number.
    Float,
    /// true or false.
    Boolean,
    /// A human duration such as `500ms` or `1m30s`.
    Duration,
    /// A comma-separated list.
    List,
    /// A directory: grants the `files` capability inside it.
    Directory,
    /// An Elasticsearch or OpenSearch base URL: grants the `elasticsearch` capability on it.
    ElasticsearchUrl,
    /// A MongoDB connection string: grants the `mongodb` capability on it.
    MongodbUri,
    /// CQL contact points (`host:port,...`).
    CqlContactPoints,
    /// An HTTP(S) base URL: grants outgoing requests to it.
    HttpEndpoint,
}

/// One configuration option a plugin understands.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigOption {
    /// The key in the connector's `config` map.
    pub name: String,
    /// How the host checks its value.
    pub option_type: OptionType,
    /// The value used when the key is absent.
    pub default: Option<String>,
    /// Whether the key must be given.
    pub required: bool,
    /// Secret values are never logged or echoed.
    pub secret: bool,
    /// One sentence for `wasm-connect plugins` and the admin API.
    pub documentation: String,
}

impl ConfigOption {
    /// An optional option without default.
    pub fn new(name: &str, option_type: OptionType, documentation: &str) -> Self {
        Self { name: name.to_owned(), option_type, default: None, required: false, secret: false, documentation: documentation.to_owned() }
    }

    /// Sets the value used when the key is absent.
    pub fn default(mut self, value: &str) -> Self {
        self.default = Some(value.to_owned());
        self
    }

    /// Makes the key mandatory.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Marks the value as a secret.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The name connectors refer to in `plugin:`.
    pub name: String,
    /// The plugin's version (`name@version` selects it).
    pub version: String,
    /// What it does, in a sentence or two.
    pub documentation: String,
    /// The options it understands.
    pub options: Vec<ConfigOption>,
}

impl Description {
    /// A description without options.
    pub fn new(name: &str, version: &str, documentation: &str) -> Self {
        Self { name: name.to_owned(), version: version.to_owned(), documentation: documentation.to_owned(), options: Vec::new() }
    }

    /// Adds an option.
    pub fn option(mut self, option: ConfigOption) -> Self {
        self.options.push(option);
        self
    }
}

/// What every plugin provides, whatever its kind.
pub trait Plugin: Sized + 'static {
    /// The plugin's name, version and options.
    fn description() -> Description;

    /// Checks that go beyond the option types (the host checks those): return
    /// `(key, message)` for each problem. Must not do I/O.
    fn validate(_settings: &Settings) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// The outcome of one poll of a source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollStatus {
    /// The source position after the records written to the batch; none: unchanged.
    pub position: Option<String>,
    /// When no record was written: how long the host waits before the next poll.
    pub idle: Duration,
    /// True once the source will never produce again.
    pub finished: bool,
}

/// A source pulls data from the outside world.
pub trait Source: Plugin {
    /// Starts from `position`, the last position stored with a delivered batch.
    fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error>;
    /// Writes at most `max_records` records to `batch`.
    fn poll(&mut self, max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error>;
}

/// A sink pushes records into a store.
pub trait Sink: Plugin {
    /// Prepares the task.
    fn open(settings: &Settings) -> Result<Self, Error>;
    /// Writes every record durably before returning ok: the host then commits them.
    fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error>;
}

/// What a transform makes of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record goes on unchanged (the cheapest answer: nothing is copied back).
    Keep,
    /// The record leaves the chain.
    Drop,
    /// The record is replaced by the records `apply` pushed to its output for it: one
    /// to rewrite it, several to split it, none to drop it.
    Written,
    /// The record cannot be transformed, for this reason (no secrets in it): the
    /// connector's error policy sends it to the dead-letter topic or fails the task.
    Fail(String),
}

/// A transform in a connector's chain (`type: wasm`): rewrites, drops, splits, routes
/// or refuses records, one at a time. The host calls it with a batch; each record's
/// outcome is its own, so a bad record fails alone.
pub trait Transform: Plugin {
    /// Prepares the task with the transform's options.
    fn open(settings: &Settings) -> Result<Self, Error>;
    /// What becomes of `record`. To change it, push the new record (or records) to
    /// `output` and return [`Outcome::Written`]. An `Err` fails the whole batch:
    /// [`Error::Retriable`] and [`Error::Fatal`] restart the task and the batch comes
    /// again, [`Error::BadConfig`] stops it.
    fn apply(&mut self, record: &RecordView<'_>, output: &mut BatchWriter) -> Result<Outcome, Error>;
}

/// What a stream processor makes of one record.
#[cfg(feature = "processor")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessOutcome {
    /// The record goes to the output topic unchanged.
    Keep,
    /// Nothing goes out for it now (it only changed state, say).
    Drop,
    /// The records `process` pushed to its output for it go out instead (none, one or more).
    Written,
    /// The record cannot be processed, for this reason (no secrets in it): the
    /// connector's error policy sends it to the dead-letter topic or fails the task.
    Fail(String),
    /// The record came too late to count (its window closed), for this reason: it goes
    /// to the dead-letter topic when the connector has one, whatever the error policy.
    Late(String),
}

/// A stream processor (a connector with `topics` and `topic`): reads records after the
/// connector's transform chain, keeps state in [`state`] and timers in [`timers`], both
/// per input partition and checkpointed by the host with the output records and the
/// input offsets, and writes results to the connector's topic. After a crash the task
/// starts again from its last checkpoint, so each result goes out once.
#[cfg(feature = "processor")]
pub trait Processor: Plugin {
    /// Prepares the task, which reads the input partitions `partitions` (their state
    /// and timers are already back).
    fn open(settings: &Settings, partitions: &[i32]) -> Result<Self, Error>;
    /// What becomes of `record` (its input partition and offset are set). To emit results,
    /// push them to `output` and return [`ProcessOutcome::Written`]; a result with a
    /// topic goes to that topic, one without to the connector's `topic`. An `Err` fails
    /// the whole batch: the task starts again from its last checkpoint.
    fn process(&mut self, record: &RecordView<'_>, output: &mut BatchWriter) -> Result<ProcessOutcome, Error>;
    /// A timer came due (it fires once; set it again to repeat): push what it emits to `output`.
    fn on_timer(&mut self, timer: &timers::Timer, output: &mut BatchWriter) -> Result<(), Error> {
        let _ = (timer, output);
        Ok(())
    }
}

/// A stream processor's state: named key-value stores per input partition, kept by
/// the host in memory and checkpointed with each batch (WIT `state`). A store name
/// has 1 to 64 characters of `a-z 0-9 . _ -`; a key at most 4 KiB, a value at most
/// 1 MiB, one partition's state (keys, values, expiry times, timers) at most 256 MiB.
/// Breaking a bound, or naming a partition the task does not read, fails the task.
#[cfg(feature = "processor")]
pub mod state {
    use crate::__private::capabilities::wasm_connect::connector::state as wit;
    use std::time::Duration;

    /// The value of `key`, none when absent or expired.
    pub fn get(store: &str, partition: i32, key: &[u8]) -> Option<Vec<u8>> {
        wit::get(store, partition, key)
    }

    /// Sets `key` to `value` for good (until deleted).
    pub fn put(store: &str, partition: i32, key: &[u8], value: &[u8]) {
        wit::put(store, partition, key, value, None);
    }

    /// Sets `key` to `value`, to expire `ttl` from now (wall clock) unless put again.
    pub fn put_expiring(store: &str, partition: i32, key: &[u8], value: &[u8], ttl: Duration) {
        wit::put(store, partition, key, value, Some(ttl.as_millis().min(u128::from(u64::MAX)) as u64));
    }

    /// Removes `key`.
    pub fn delete(store: &str, partition: i32, key: &[u8]) {
        wit::delete(store, partition, key);
    }

    /// Every live entry whose key starts with `prefix`, in key order, fetched a page
    /// of 1,000 at a time.
    pub fn scan(store: &str, partition: i32, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let after = entries.last().map(|(key, _)| key.clone());
            let page = wit::scan(store, partition, prefix, after.as_deref(), 1_000);
            let full = page.len() == 1_000;
            entries.extend(page);
            if !full {
                return entries;
            }
        }
    }
}

/// A stream processor's timers, per input partition, checkpointed with its state
/// (WIT `timers`). An event-time timer fires when the partition's stream time (its
/// newest record timestamp) reaches it, right after that record and before the next,
/// whatever the batching; a wall-clock timer when the wall clock does, after a batch
/// and while the input is idle.
#[cfg(feature = "processor")]
pub mod timers {
    use crate::__private::capabilities::wasm_connect::connector::timers as wit;

    /// Which clock a timer follows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Clock {
        /// The partition's stream time.
        EventTime,
        /// The wall clock.
        WallClock,
    }

    /// A timer: one per partition, clock and name.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Timer {
        /// The input partition it belongs to.
        pub partition: i32,
        /// The processor's name for it (a key, a window), at most 256 bytes.
        pub name: String,
        /// Its clock.
        pub clock: Clock,
        /// When it fires, in milliseconds since the Unix epoch.
        pub at_ms: i64,
    }

    fn to_wit(clock: Clock) -> wit::Clock {
        match clock {
            Clock::EventTime => wit::Clock::EventTime,
            Clock::WallClock => wit::Clock::WallClock,
        }
    }

    #[doc(hidden)]
    pub fn from_wit(timer: wit::Timer) -> Timer {
        let clock = match timer.clock {
            wit::Clock::EventTime => Clock::EventTime,
            wit::Clock::WallClock => Clock::WallClock,
        };
        Timer { partition: timer.partition, name: timer.name, clock, at_ms: timer.at_millis }
    }

    /// Sets the timer `name` of `partition` on `clock` to fire at `at_ms`, replacing
    /// the one of the same partition, clock and name.
    pub fn set(partition: i32, name: &str, clock: Clock, at_ms: i64) {
        wit::set(&wit::Timer { partition, name: name.to_owned(), clock: to_wit(clock), at_millis: at_ms });
    }

    /// Removes that timer, if set.
    pub fn cancel(partition: i32, name: &str, clock: Clock) {
        wit::cancel(partition, name, to_wit(clock));
    }

    /// The newest record timestamp read from `partition` (up to the record being
    /// processed), none before its first record.
    pub fn stream_time(partition: i32) -> Option<i64> {
        wit::stream_time(partition)
    }

    #[doc(hidden)]
    pub fn before_record(partition: Option<i32>, timestamp: Option<i64>) -> bool {
        wit::before_record(partition, timestamp)
    }
}

/// What a source tells the host about its provider (WIT `source-status`).
#[cfg(feature = "source")]
pub mod status {
    use std::time::Duration;

    /// The provider refuses more requests for now: the host pauses polling for
    /// `resume_after`, shows `reason` in the task's status and counts it in metrics.
    /// Return an empty poll after calling it.
    pub fn throttled(reason: &str, resume_after: Duration) {
        let millis = resume_after.as_millis().min(u128::from(u64::MAX)) as u64;
        crate::__private::capabilities::wasm_connect::connector::source_status::throttled(reason, millis);
    }
}

/// Log lines, written by the host with the connector and task attached.
pub mod log {
    use crate::__private::capabilities::wasm_connect::connector::log::{Level, write};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }
}

/// Append-only files in the directory an option of type [`OptionType::Directory`]
/// grants (sinks only).
pub mod files {
    use crate::__private::capabilities::wasm_connect::connector::files;
    use crate::__private::capabilities::wasm_connect::connector::types::Error as WitError;
    use crate::Error;

    pub(crate) fn from_wit(error: WitError) -> Error {
        match error {
            WitError::Retriable(message) => Error::Retriable(message),
            WitError::Fatal(message) => Error::Fatal(message),
            WitError::BadRecord(bad) => Error::BadRecord { index: bad.index, reason: bad.reason },
            WitError::BadConfig(message) => Error::BadConfig(message),
        }
    }

    /// Appends `data` to `name`; returns the file size after the write.
    pub fn append(name: &str, data: &[u8]) -> Result<u64, Error> {
        files::append(name, data).map_err(from_wit)
    }

    /// The size of `name`, none when it does not exist.
    pub fn size(name: &str) -> Option<u64> {
        files::size(name)
    }

    /// Makes every append so far durable.
    pub fn sync() -> Result<(), Error> {
        files::sync().map_err(from_wit)
    }

    /// The last `length` bytes of `name` (at most 1 MiB).
    pub fn read_tail(name: &str, length: u32) -> Result<Vec<u8>, Error> {
        files::read_tail(name, length).map_err(from_wit)
    }

    /// Cuts `name` to `size` bytes.
    pub fn truncate(name: &str, size: u64) -> Result<(), Error> {
        files::truncate(name, size).map_err(from_wit)
    }
}

/// Elasticsearch and OpenSearch through the host's client (sinks only). The URL must
/// be the value of an option of type [`OptionType::ElasticsearchUrl`].
pub mod elasticsearch {
    use crate::__private::capabilities::wasm_connect::connector::elasticsearch as wit;
    pub use crate::__private::capabilities::wasm_connect::connector::elasticsearch::{
        BulkAction, BulkOperation, BulkOutcome, Connection, Method,
    };
    use crate::Error;

    /// Sends the operations in bulk; one outcome per operation, in order.
    pub fn bulk(connection: &Connection, operations: &[BulkOperation]) -> Result<Vec<BulkOutcome>, Error> {
        wit::bulk(connection, operations).map_err(crate::files::from_wit)
    }

    /// One request (templates, mappings): the status and the body.
    pub fn request(connection: &Connection, method: Method, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), Error> {
        wit::request(connection, method, path, body).map_err(crate::files::from_wit)
    }
}

/// MongoDB through the host's client (sinks only). The URI must be the value of an
/// option of type [`OptionType::MongodbUri`].
pub mod mongodb {
    use crate::__private::capabilities::wasm_connect::connector::mongodb as wit;
    pub use crate::__private::capabilities::wasm_connect::connector::mongodb::{IndexSpec, WriteKind, WriteOperation, WriteOutcome};
    use crate::Error;

    /// MongoDB's duplicate-key error code.
    pub const DUPLICATE_KEY: i32 = 11000;

    /// Writes the operations; one outcome per operation, in order.
    pub fn bulk_write(uri: &str, database: &str, operations: &[WriteOperation]) -> Result<Vec<WriteOutcome>, Error> {
        wit::bulk_write(uri, database, operations).map_err(crate::files::from_wit)
    }

    /// Creates an index unless it exists.
    pub fn create_index(uri: &str, database: &str, index: &IndexSpec) -> Result<(), Error> {
        wit::create_index(uri, database, index).map_err(crate::files::from_wit)
    }
}

/// Cassandra and ScyllaDB through the host's CQL session (sinks only). The contact
/// points must be the value of an option of type [`OptionType::CqlContactPoints`].
pub mod cassandra {
    use crate::__private::capabilities::wasm_connect::connector::cassandra as wit;
    pub use crate::__private::capabilities::wasm_connect::connector::cassandra::{Connection, Consistency, CqlValue, Row};
    use crate::Error;

    /// Runs one unprepared statement (CREATE TABLE ...).
    pub fn execute(connection: &Connection, statement: &str) -> Result<(), Error> {
        wit::execute(connection, statement).map_err(crate::files::from_wit)
    }

    /// Writes the rows; one outcome per row: none when written, else the server's message.
    pub fn write(
        connection: &Connection,
        statements: &[String],
        rows: &[Row],
        consistency: Consistency,
    ) -> Result<Vec<Option<String>>, Error> {
        wit::write(connection, statements, rows, consistency).map_err(crate::files::from_wit)
    }
}

/// What every export macro shares: the task slot, the export type and the `plugin`
/// interface (describe, validate-config).
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_glue {
    ($plugin:ty, $world:ident, $kind:ident) => {
        ::std::thread_local! {
            static TASK: ::std::cell::RefCell<Option<$plugin>> = const { ::std::cell::RefCell::new(None) };
        }

        #[allow(dead_code)] // used only by the wasm32 exports
        struct Exports;

        impl $crate::__private::$world::exports::wasm_connect::connector::plugin::Guest for Exports {
            fn describe() -> $crate::__private::$world::exports::wasm_connect::connector::plugin::PluginDescription {
                $crate::__private::describe::<$plugin>($crate::__private::PluginKind::$kind)
            }
            fn validate_config(
                config: $crate::__private::$world::exports::wasm_connect::connector::plugin::Config,
            ) -> Vec<$crate::__private::ConfigIssue> {
                $crate::__private::validate::<$plugin>(config)
            }
        }

        impl $crate::__private::$world::exports::wasm_connect::connector::grants::Guest for Exports {
            fn declared_grants() -> Vec<$crate::__private::$world::exports::wasm_connect::connector::grants::OptionGrant> {
                use $crate::__private::$world::exports::wasm_connect::connector::grants::{GrantKind, OptionGrant};
                $crate::__private::declared_grants::<$plugin>()
                    .into_iter()
                    .map(|(option, kind)| OptionGrant {
                        option,
                        kind: match kind {
                            $crate::__private::GrantKind::Directory => GrantKind::Directory,
                            $crate::__private::GrantKind::ElasticsearchUrl => GrantKind::ElasticsearchUrl,
                            $crate::__private::GrantKind::MongodbUri => GrantKind::MongodbUri,
                            $crate::__private::GrantKind::CqlContactPoints => GrantKind::CqlContactPoints,
                            $crate::__private::GrantKind::HttpEndpoint => GrantKind::HttpEndpoint,
                        },
                    })
                    .collect()
            }
        }
    };
}

/// Exports a [`Source`] implementation as the plugin's component.
#[cfg(feature = "source")]
#[macro_export]
macro_rules! export_source {
    ($plugin:ty) => {
        const _: () = {
            use sdk::source::exports::wasm_connect::connector::source_connector;
            use $crate::__private as sdk;

            $crate::__plugin_glue!($plugin, source, Source);

            impl source_connector::Guest for Exports {
                fn open(config: source_connector::Config, position: Option<String>) -> Result<(), source_connector::Error> {
                    let settings = $crate::Settings::new::<$plugin>(config);
                    let task = <$plugin as $crate::Source>::open(&settings, position.as_deref()).map_err(sdk::error)?;
                    TASK.with(|cell| *cell.borrow_mut() = Some(task));
                    Ok(())
                }
                fn poll(max_records: u32) -> Result<source_connector::PollResult, source_connector::Error> {
                    TASK.with(|cell| {
                        let mut cell = cell.borrow_mut();
                        let task = cell.as_mut().ok_or_else(sdk::not_open)?;
                        let mut batch = sdk::BatchWriter::with_capacity(max_records as usize * 256);
                        let status = <$plugin as $crate::Source>::poll(task, max_records as usize, &mut batch).map_err(sdk::error)?;
                        Ok(source_connector::PollResult {
                            batch: batch.finish(),
                            position: status.position,
                            idle_millis: status.idle.as_millis().min(u32::MAX as u128) as u32,
                            finished: status.finished,
                        })
                    })
                }
            }

            // Component exports exist only on wasm32; native builds (unit tests,
            // benchmarks) use the plugin's logic directly.
            #[cfg(target_arch = "wasm32")]
            sdk::source::__export_source_world!(Exports);
        };
    };
}

/// Exports a [`Sink`] implementation as the plugin's component.
#[cfg(feature = "sink")]
#[macro_export]
macro_rules! export_sink {
    ($plugin:ty) => {
        const _: () = {
            use sdk::sink::exports::wasm_connect::connector::sink_connector;
            use $crate::__private as sdk;

            $crate::__plugin_glue!($plugin, sink, Sink);

            impl sink_connector::Guest for Exports {
                fn open(config: sink_connector::Config) -> Result<(), sink_connector::Error> {
                    let settings = $crate::Settings::new::<$plugin>(config);
                    let task = <$plugin as $crate::Sink>::open(&settings).map_err(sdk::error)?;
                    TASK.with(|cell| *cell.borrow_mut() = Some(task));
                    Ok(())
                }
                fn write(batch: sink_connector::RecordBatch) -> Result<(), sink_connector::Error> {
                    TASK.with(|cell| {
                        let mut cell = cell.borrow_mut();
                        let task = cell.as_mut().ok_or_else(sdk::not_open)?;
                        let records = sdk::decode_batch(&batch)?;
                        <$plugin as $crate::Sink>::write(task, &records).map_err(sdk::error)
                    })
                }
            }

            // Component exports exist only on wasm32; native builds (unit tests,
            // benchmarks) use the plugin's logic directly.
            #[cfg(target_arch = "wasm32")]
            sdk::sink::__export_sink_world!(Exports);
        };
    };
}

/// Exports a [`Transform`] implementation as the plugin's component.
#[cfg(feature = "transform")]
#[macro_export]
macro_rules! export_transform {
    ($plugin:ty) => {
        const _: () = {
            use sdk::transform::exports::wasm_connect::connector::record_transform;
            use $crate::__private as sdk;

            $crate::__plugin_glue!($plugin, transform, Transform);

            impl record_transform::Guest for Exports {
                fn open(config: record_transform::Config) -> Result<(), record_transform::Error> {
                    let settings = $crate::Settings::new::<$plugin>(config);
                    let task = <$plugin as $crate::Transform>::open(&settings).map_err(sdk::error)?;
                    TASK.with(|cell| *cell.borrow_mut() = Some(task));
                    Ok(())
                }
                fn apply(batch: record_transform::RecordBatch) -> Result<record_transform::Transformed, record_transform::Error> {
                    TASK.with(|cell| {
                        let mut cell = cell.borrow_mut();
                        let task = cell.as_mut().ok_or_else(sdk::not_open)?;
                        let records = sdk::decode_batch(&batch)?;
                        let mut output = sdk::BatchWriter::with_capacity(0);
                        let mut outcomes = Vec::with_capacity(records.len());
                        for record in &records {
                            let before = output.len();
                            let outcome = <$plugin as $crate::Transform>::apply(task, record, &mut output).map_err(sdk::error)?;
                            let written = output.len() - before;
                            outcomes.push(match outcome {
                                $crate::Outcome::Written => record_transform::Outcome::Many(written as u32),
                                _ if written > 0 => return Err(sdk::wrote_without_written()),
                                $crate::Outcome::Keep => record_transform::Outcome::Keep,
                                $crate::Outcome::Drop => record_transform::Outcome::Drop,
                                $crate::Outcome::Fail(reason) => record_transform::Outcome::Fail(reason),
                            });
                        }
                        Ok(record_transform::Transformed { outcomes, batch: output.finish() })
                    })
                }
            }

            // Component exports exist only on wasm32; native builds (unit tests,
            // benchmarks) use the plugin's logic directly.
            #[cfg(target_arch = "wasm32")]
            sdk::transform::__export_transform_world!(Exports);
        };
    };
}

/// Exports a [`Processor`] implementation as the plugin's component.
#[cfg(feature = "processor")]
#[macro_export]
macro_rules! export_processor {
    ($plugin:ty) => {
        const _: () = {
            use sdk::processor::exports::wasm_connect::connector::stream_processor;
            use $crate::__private as sdk;

            // The plugin-kind enum cannot grow within WIT 0.1: a processor describes
            // itself as a transform, and the host knows it by its export.
            $crate::__plugin_glue!($plugin, processor, Transform);

            impl stream_processor::Guest for Exports {
                fn open(config: stream_processor::Config, partitions: Vec<i32>) -> Result<(), stream_processor::Error> {
                    let settings = $crate::Settings::new::<$plugin>(config);
                    let task = <$plugin as $crate::Processor>::open(&settings, &partitions).map_err(sdk::error)?;
                    TASK.with(|cell| *cell.borrow_mut() = Some(task));
                    Ok(())
                }
                fn process(batch: stream_processor::RecordBatch) -> Result<stream_processor::Processed, stream_processor::Error> {
                    TASK.with(|cell| {
                        let mut cell = cell.borrow_mut();
                        let task = cell.as_mut().ok_or_else(sdk::not_open)?;
                        let records = sdk::decode_batch(&batch)?;
                        let mut output = sdk::BatchWriter::with_capacity(0);
                        let mut outcomes = Vec::with_capacity(records.len());
                        for record in &records {
                            // Stream time moves record by record; at a timer that came
                            // due, stop: the host fires it and calls again from here.
                            if !$crate::timers::before_record(record.partition, record.timestamp) {
                                break;
                            }
                            let before = output.len();
                            let outcome = <$plugin as $crate::Processor>::process(task, record, &mut output).map_err(sdk::error)?;
                            let written = output.len() - before;
                            outcomes.push(match outcome {
                                $crate::ProcessOutcome::Written => stream_processor::Outcome::Many(written as u32),
                                _ if written > 0 => return Err(sdk::wrote_without_written()),
                                $crate::ProcessOutcome::Keep => stream_processor::Outcome::Keep,
                                $crate::ProcessOutcome::Drop => stream_processor::Outcome::Drop,
                                $crate::ProcessOutcome::Fail(reason) => stream_processor::Outcome::Fail(reason),
                                $crate::ProcessOutcome::Late(reason) => stream_processor::Outcome::Late(reason),
                            });
                        }
                        Ok(stream_processor::Processed { outcomes, batch: output.finish() })
                    })
                }
                fn on_timer(fired: Vec<stream_processor::Timer>) -> Result<stream_processor::RecordBatch, stream_processor::Error> {
                    TASK.with(|cell| {
                        let mut cell = cell.borrow_mut();
                        let task = cell.as_mut().ok_or_else(sdk::not_open)?;
                        let mut output = sdk::BatchWriter::with_capacity(0);
                        for timer in fired {
                            let timer = $crate::timers::from_wit(timer);
                            <$plugin as $crate::Processor>::on_timer(task, &timer, &mut output).map_err(sdk::error)?;
                        }
                        Ok(output.finish())
                    })
                }
            }

            // Component exports exist only on wasm32; native builds (unit tests,
            // benchmarks) use the plugin's logic directly.
            #[cfg(target_arch = "wasm32")]
            sdk::processor::__export_processor_world!(Exports);
        };
    };
}
