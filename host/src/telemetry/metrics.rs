//! Prometheus metrics, labelled by connector, task, plugin and outcome only: never by
//! record, offset or error message, so cardinality stays bounded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use wasm_connect_protocol::Record;

use super::process::ProcessMetrics;
use super::status::{State, StatusBoard};
use crate::runtime::{PluginKind, TaskIdentity};

/// Labels of a per-task series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// Connector name.
    pub connector: String,
    /// Task number.
    pub task: String,
    /// Plugin name.
    pub plugin: String,
}

impl From<&TaskIdentity> for TaskLabels {
    fn from(identity: &TaskIdentity) -> Self {
        Self { connector: identity.connector.to_string(), task: identity.task.to_string(), plugin: identity.plugin.to_string() }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    connector: String,
    task: String,
    plugin: String,
    outcome: String,
}

impl OutcomeLabels {
    fn new(identity: &TaskIdentity, outcome: &str) -> Self {
        let TaskLabels { connector, task, plugin } = TaskLabels::from(identity);
        Self { connector, task, plugin, outcome: outcome.to_owned() }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    connector: String,
    plugin: String,
    call: String,
}

fn call_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
}

fn batch_size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 9))
}

/// 1 ms to about 2.5 minutes.
fn end_to_end_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

/// 0.5 ms to about 30 s.
fn store_write_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.5, 13))
}

fn admin_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 4.0, 9))
}

/// Every metric of the host.
pub struct Metrics {
    registry: Registry,
    records_polled: Family<TaskLabels, Counter>,
    records_produced: Family<TaskLabels, Counter>,
    records_consumed: Family<TaskLabels, Counter>,
    records_written: Family<TaskLabels, Counter>,
    records_failed: Family<TaskLabels, Counter>,
    records_dead_lettered: Family<TaskLabels, Counter>,
    bytes_in: Family<TaskLabels, Counter>,
    bytes_out: Family<TaskLabels, Counter>,
    end_to_end_latency: Family<TaskLabels, Histogram, fn() -> Histogram>,
    store_write_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    consumer_lag: Family<TaskLabels, Gauge>,
    assigned_partitions: Family<TaskLabels, Gauge>,
    task_failures: Family<OutcomeLabels, Counter>,
    task_restarts: Family<TaskLabels, Counter>,
    task_starts: Family<TaskLabels, Counter>,
    plugin_call_duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    batch_size: Family<TaskLabels, Histogram, fn() -> Histogram>,
    plugin_memory: Family<TaskLabels, Gauge>,
    write_retries: Family<TaskLabels, Counter>,
    records_skipped: Family<TaskLabels, Counter>,
    tasks_retrying: Family<TaskLabels, Gauge>,
    http_requests: Family<OutcomeLabels, Counter>,
    source_throttles: Family<TaskLabels, Counter>,
    sources_throttled: Family<TaskLabels, Gauge>,
    transport_unreachable: Family<TaskLabels, Gauge>,
    poll_retries: Family<TaskLabels, Counter>,
    admin_requests: Family<RouteLabels, Counter>,
    admin_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// The label sets each connector's series were created with, so that a deleted
    /// connector's series can go with it.
    series: Mutex<HashMap<String, ConnectorSeries>>,
}

/// The label sets of one connector's series.
#[derive(Debug, Default)]
struct ConnectorSeries {
    tasks: HashSet<TaskLabels>,
    outcomes: HashSet<OutcomeLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric; connector and task states are read from `status`, and
    /// the process's CPU, memory and file descriptors from `/proc` at each scrape.
    pub fn new(status: StatusBoard) -> Arc<Self> {
        let mut metrics = Self {
            records_polled: Family::default(),
            records_produced: Family::default(),
            records_consumed: Family::default(),
            records_written: Family::default(),
            records_failed: Family::default(),
            records_dead_lettered: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            end_to_end_latency: Family::new_with_constructor(end_to_end_histogram),
            store_write_duration: Family::new_with_constructor(store_write_histogram),
            consumer_lag: Family::default(),
            assigned_partitions: Family::default(),
            task_failures: Family::default(),
            task_restarts: Family::default(),
            task_starts: Family::default(),
            plugin_call_duration: Family::new_with_constructor(call_duration_histogram),
            batch_size: Family::new_with_constructor(batch_size_histogram),
            plugin_memory: Family::default(),
            write_retries: Family::default(),
            records_skipped: Family::default(),
            tasks_retrying: Family::default(),
            http_requests: Family::default(),
            source_throttles: Family::default(),
            sources_throttled: Family::default(),
            transport_unreachable: Family::default(),
            poll_retries: Family::default(),
            admin_requests: Family::default(),
            admin_request_duration: Family::new_with_constructor(admin_duration_histogram),
            registry: Registry::default(),
            series: Mutex::default(),
        };
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("wasm_connect");
        let counters: [(&str, &str, &Family<TaskLabels, Counter>); 14] = [
            ("records_polled", "Records a source task took from its plugin", &metrics.records_polled),
            (
                "records_produced",
                "Records a source task wrote to its topic (durable: acks=all, or committed to the embedded store)",
                &metrics.records_produced,
            ),
            ("records_consumed", "Records a sink task read from its topics", &metrics.records_consumed),
            ("records_written", "Records a sink task's plugin acknowledged as written to its store", &metrics.records_written),
            ("records_failed", "Records a plugin refused as bad (each is dead-lettered or fails the task)", &metrics.records_failed),
            ("records_dead_lettered", "Records sent to the connector's dead-letter topic", &metrics.records_dead_lettered),
            ("bytes_in", "Key and value bytes a task took in: polled from a source plugin, or consumed by a sink", &metrics.bytes_in),
            ("bytes_out", "Key and value bytes a task delivered: produced to topics, or written by a sink plugin", &metrics.bytes_out),
            ("task_restarts", "Restarts of a failed task", &metrics.task_restarts),
            (
                "task_starts",
                "Starts of a task on this host: its first, after a change or a move between hosts, and each restart",
                &metrics.task_starts,
            ),
            (
                "write_retries",
                "Retries of a batch after a retriable error (store unreachable, overloaded or throttling)",
                &metrics.write_retries,
            ),
            (
                "records_skipped_by_offset_reset",
                "Records a sink task never read because the broker no longer held them when it got there (retention, a truncated log)",
                &metrics.records_skipped,
            ),
            ("source_throttles", "Times a source was held back by its provider's rate limit or quota", &metrics.source_throttles),
            (
                "poll_retries",
                "Polls of a source retried after a retriable error (provider unreachable, malformed answer)",
                &metrics.poll_retries,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        let gauges: [(&str, &str, &Family<TaskLabels, Gauge>); 6] = [
            (
                "consumer_lag_records",
                "Records in a sink task's partitions not yet read: end offsets minus the task's positions",
                &metrics.consumer_lag,
            ),
            (
                "assigned_partitions",
                "Partitions a sink task reads now; 0 while its consumer group rebalances",
                &metrics.assigned_partitions,
            ),
            ("plugin_memory_bytes", "Linear memory a task's plugin instance has grown to", &metrics.plugin_memory),
            (
                "task_retrying",
                "1 while a sink task is retrying a batch because its store is unreachable or refusing, else 0",
                &metrics.tasks_retrying,
            ),
            (
                "source_throttled",
                "1 while a source waits for its provider's rate-limit or quota window to reset, else 0",
                &metrics.sources_throttled,
            ),
            (
                "transport_unreachable",
                "1 while a task cannot reach its transport (the Kafka cluster does not answer), else 0",
                &metrics.transport_unreachable,
            ),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "task_failures",
            "Task failures by outcome (trap, timeout, out_of_memory, fatal, ...)",
            metrics.task_failures.clone(),
        );
        registry.register(
            "http_requests",
            "Outgoing HTTP requests of plugins by outcome: 2xx..5xx (the status), denied (host not granted), timeout, too_large, failed",
            metrics.http_requests.clone(),
        );
        registry.register(
            "end_to_end_latency_seconds",
            "Time from a record's timestamp to its store's acknowledgement of the batch that carried it",
            metrics.end_to_end_latency.clone(),
        );
        registry.register(
            "store_write_duration_seconds",
            "Duration of the host's store requests (bulk, bulk_write, CQL batches) by outcome: ok or error",
            metrics.store_write_duration.clone(),
        );
        registry.register("plugin_call_duration_seconds", "Duration of calls into plugins", metrics.plugin_call_duration.clone());
        registry.register("batch_size_records", "Records per batch crossing the plugin boundary", metrics.batch_size.clone());
        registry.register("admin_requests", "Requests to the admin REST API by method, route and status", metrics.admin_requests.clone());
        registry.register(
            "admin_request_duration_seconds",
            "Duration of admin REST API requests by method, route and status",
            metrics.admin_request_duration.clone(),
        );
        registry.register_collector(Box::new(StateGauges(status)));
        root.register_collector(Box::new(ProcessMetrics));
        metrics.registry = root;
        Arc::new(metrics)
    }

    /// The metrics in OpenMetrics text format, or in Prometheus's classic text format
    /// (0.0.4) when `openmetrics` is false, for scrapers and tools such as
    /// `promtool check metrics` that read only that one.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        if openmetrics { text } else { to_classic_text(&text) }
    }

    /// Creates a task's series at zero, so dashboards and alerts see a value (not a
    /// missing series) before the first event: an `increase` over the first records
    /// needs the zero before them. A processor both consumes and produces.
    pub fn task_started(&self, labels: &TaskLabels, kind: PluginKind) {
        self.series.lock().expect("series lock").entry(labels.connector.clone()).or_default().tasks.insert(labels.clone());
        let counters: &[&Family<TaskLabels, Counter>] = match kind {
            PluginKind::Source => &[&self.records_polled, &self.records_produced, &self.source_throttles, &self.poll_retries],
            PluginKind::Processor => &[&self.records_consumed, &self.records_produced, &self.records_skipped],
            _ => &[&self.records_consumed, &self.records_written, &self.write_retries, &self.records_skipped],
        };
        let shared = [&self.records_failed, &self.records_dead_lettered, &self.bytes_in, &self.bytes_out, &self.task_restarts];
        for family in counters.iter().chain(&shared) {
            drop(family.get_or_create(labels));
        }
        self.task_starts.get_or_create(labels).inc();
        drop(self.transport_unreachable.get_or_create(labels));
        if kind == PluginKind::Source {
            drop(self.sources_throttled.get_or_create(labels));
        } else {
            drop(self.tasks_retrying.get_or_create(labels));
            drop(self.consumer_lag.get_or_create(labels));
            drop(self.assigned_partitions.get_or_create(labels));
        }
    }

    /// A source task took `records` from its plugin.
    pub fn records_polled(&self, labels: &TaskLabels, records: &[Record]) {
        self.records_polled.get_or_create(labels).inc_by(records.len() as u64);
        self.bytes_in.get_or_create(labels).inc_by(payload_bytes(records));
        self.batch_size.get_or_create(labels).observe(records.len() as f64);
    }

    /// A source task's records are durable in its topic.
    pub fn records_produced(&self, labels: &TaskLabels, records: usize, bytes: u64) {
        self.records_produced.get_or_create(labels).inc_by(records as u64);
        self.bytes_out.get_or_create(labels).inc_by(bytes);
    }

    /// A sink task read `records` from its topics.
    pub fn records_consumed(&self, labels: &TaskLabels, records: &[Record]) {
        self.records_consumed.get_or_create(labels).inc_by(records.len() as u64);
        self.bytes_in.get_or_create(labels).inc_by(payload_bytes(records));
        self.batch_size.get_or_create(labels).observe(records.len() as f64);
    }

    /// A sink task's plugin acknowledged `records` as written to its store.
    pub fn records_written(&self, labels: &TaskLabels, records: &[Record]) {
        self.records_written.get_or_create(labels).inc_by(records.len() as u64);
        self.bytes_out.get_or_create(labels).inc_by(payload_bytes(records));
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
        let latency = self.end_to_end_latency.get_or_create(labels);
        for timestamp in records.iter().filter_map(|record| record.timestamp) {
            latency.observe((now_ms - timestamp).max(0) as f64 / 1000.0);
        }
    }

    /// A plugin refused a record as bad.
    pub fn record_failed(&self, labels: &TaskLabels) {
        self.records_failed.get_or_create(labels).inc();
    }

    /// A record went to the dead-letter topic.
    pub fn record_dead_lettered(&self, labels: &TaskLabels, topic: &str, reason: &str) {
        tracing::warn!(connector = %labels.connector, task = %labels.task, dead_letter_topic = topic, reason, "A record was refused and sent to the dead-letter topic.");
        self.records_dead_lettered.get_or_create(labels).inc();
    }

    /// A sink task's partitions hold `records` it has not read yet.
    pub fn consumer_lag(&self, labels: &TaskLabels, records: u64) {
        self.consumer_lag.get_or_create(labels).set(records.min(i64::MAX as u64) as i64);
    }

    /// A sink task reads `partitions` partitions now.
    pub fn assigned_partitions(&self, labels: &TaskLabels, partitions: usize) {
        self.assigned_partitions.get_or_create(labels).set(partitions.min(i64::MAX as usize) as i64);
    }

    /// A store request of a task took `duration` and succeeded or not.
    pub fn store_write(&self, identity: &TaskIdentity, succeeded: bool, duration: Duration) {
        let labels = self.outcome(identity, if succeeded { "ok" } else { "error" });
        self.store_write_duration.get_or_create(&labels).observe(duration.as_secs_f64());
    }

    /// An admin API request was answered.
    pub fn admin_request(&self, method: &str, route: &str, status: u16, duration: Duration) {
        let labels = RouteLabels { method: method.to_owned(), route: route.to_owned(), status: status.to_string() };
        self.admin_requests.get_or_create(&labels).inc();
        self.admin_request_duration.get_or_create(&labels).observe(duration.as_secs_f64());
    }

    /// A batch is retried after `delay` because of a retriable error.
    pub fn write_retry(&self, labels: &TaskLabels, reason: &str, delay: Duration) {
        tracing::warn!(connector = %labels.connector, task = %labels.task, reason, delay_ms = delay.as_millis() as u64, "The batch will be retried: the store is unreachable or refused it for now.");
        self.write_retries.get_or_create(labels).inc();
        self.tasks_retrying.get_or_create(labels).set(1);
    }

    /// A batch that was being retried went through.
    pub fn write_recovered(&self, labels: &TaskLabels, retries: u32) {
        tracing::info!(connector = %labels.connector, task = %labels.task, retries, "The store accepted the batch again; the task has recovered.");
        self.tasks_retrying.get_or_create(labels).set(0);
    }

    /// A plugin call took `duration`.
    pub fn plugin_call(&self, identity: &TaskIdentity, call: &str, duration: Duration) {
        let labels = CallLabels { connector: identity.connector.to_string(), plugin: identity.plugin.to_string(), call: call.to_owned() };
        self.plugin_call_duration.get_or_create(&labels).observe(duration.as_secs_f64());
    }

    /// A task's plugin instance has grown to `bytes` of linear memory.
    pub fn plugin_memory(&self, labels: &TaskLabels, bytes: usize) {
        self.plugin_memory.get_or_create(labels).set(bytes as i64);
    }

    /// A task stopped running because of `failure`.
    pub fn task_failed(&self, labels: &TaskLabels, outcome: &str, reason: &str) {
        tracing::error!(connector = %labels.connector, task = %labels.task, plugin = %labels.plugin, outcome, reason, "The task failed.");
        let outcome_labels = OutcomeLabels {
            connector: labels.connector.clone(),
            task: labels.task.clone(),
            plugin: labels.plugin.clone(),
            outcome: outcome.to_owned(),
        };
        self.remember(&outcome_labels);
        self.task_failures.get_or_create(&outcome_labels).inc();
    }

    /// A failed task is being restarted after `delay`.
    pub fn task_restarting(&self, labels: &TaskLabels, delay: Duration) {
        tracing::info!(connector = %labels.connector, task = %labels.task, delay_ms = delay.as_millis() as u64, "Restarting the task after a delay.");
        self.task_restarts.get_or_create(labels).inc();
    }

    /// A plugin's outgoing HTTP request ended with `outcome`.
    pub fn http_request(&self, identity: &TaskIdentity, outcome: &str) {
        self.http_requests.get_or_create(&self.outcome(identity, outcome)).inc();
    }

    /// A source is held back by its provider until `resume_in` has passed.
    pub fn source_throttled(&self, labels: &TaskLabels, reason: &str, resume_in: Duration) {
        tracing::warn!(
            connector = %labels.connector, task = %labels.task, reason, resume_in_s = resume_in.as_secs(),
            "The provider is rate-limiting this source; it pauses until the window resets."
        );
        self.source_throttles.get_or_create(labels).inc();
        self.sources_throttled.get_or_create(labels).set(1);
    }

    /// A sink task's consumer jumped over `records` the transport no longer held.
    pub fn records_skipped(&self, labels: &TaskLabels, records: u64) {
        self.records_skipped.get_or_create(labels).inc_by(records);
    }

    /// A task stopped on this host (it may run elsewhere now): what it showed of an
    /// outage no longer holds here.
    pub fn task_ended(&self, labels: &TaskLabels) {
        self.transport_unreachable.get_or_create(labels).set(0);
    }

    /// A task found its transport out of reach (`reason`), or reachable again (`None`).
    pub fn transport_outage(&self, labels: &TaskLabels, reason: Option<&str>) {
        match reason {
            Some(reason) => tracing::warn!(
                connector = %labels.connector, task = %labels.task, reason,
                "The task cannot reach the Kafka cluster; it waits for it and carries on by itself."
            ),
            None => tracing::info!(connector = %labels.connector, task = %labels.task, "The task reaches the Kafka cluster again."),
        }
        self.transport_unreachable.get_or_create(labels).set(i64::from(reason.is_some()));
    }

    /// A throttled source resumed polling.
    pub fn source_resumed(&self, labels: &TaskLabels) {
        tracing::info!(connector = %labels.connector, task = %labels.task, "The source resumes polling after its rate-limit pause.");
        self.sources_throttled.get_or_create(labels).set(0);
    }

    /// Removes every series of a deleted connector: its counters start again at zero if
    /// a connector of that name comes back.
    pub fn forget_connector(&self, connector: &str) {
        let Some(series) = self.series.lock().expect("series lock").remove(connector) else { return };
        let task_families = [
            &self.records_polled,
            &self.records_produced,
            &self.records_consumed,
            &self.records_written,
            &self.records_failed,
            &self.records_dead_lettered,
            &self.bytes_in,
            &self.bytes_out,
            &self.task_restarts,
            &self.task_starts,
            &self.write_retries,
            &self.records_skipped,
            &self.source_throttles,
            &self.poll_retries,
        ];
        for labels in &series.tasks {
            for family in task_families {
                family.remove(labels);
            }
            for family in [
                &self.consumer_lag,
                &self.assigned_partitions,
                &self.plugin_memory,
                &self.tasks_retrying,
                &self.sources_throttled,
                &self.transport_unreachable,
            ] {
                family.remove(labels);
            }
            self.end_to_end_latency.remove(labels);
            self.batch_size.remove(labels);
            for call in ["poll", "write"] {
                self.plugin_call_duration.remove(&CallLabels {
                    connector: labels.connector.clone(),
                    plugin: labels.plugin.clone(),
                    call: call.to_owned(),
                });
            }
        }
        for labels in &series.outcomes {
            self.task_failures.remove(labels);
            self.http_requests.remove(labels);
            self.store_write_duration.remove(labels);
        }
    }

    fn outcome(&self, identity: &TaskIdentity, outcome: &str) -> OutcomeLabels {
        let labels = OutcomeLabels::new(identity, outcome);
        self.remember(&labels);
        labels
    }

    fn remember(&self, labels: &OutcomeLabels) {
        let mut series = self.series.lock().expect("series lock");
        let outcomes = &mut series.entry(labels.connector.clone()).or_default().outcomes;
        if !outcomes.contains(labels) {
            outcomes.insert(labels.clone());
        }
    }

    /// A poll failed with a retriable error and is retried after `delay`.
    pub fn poll_retry(&self, labels: &TaskLabels, reason: &str, delay: Duration) {
        tracing::warn!(connector = %labels.connector, task = %labels.task, reason, delay_ms = delay.as_millis() as u64, "The poll failed; retrying.");
        self.poll_retries.get_or_create(labels).inc();
    }
}

/// Key and value bytes of `records`.
pub fn payload_bytes(records: &[Record]) -> u64 {
    records.iter().map(|record| (record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len)) as u64).sum()
}

/// Rewrites OpenMetrics text as Prometheus's classic text format: a counter family is
/// named with its `_total` suffix there, and `# UNIT` and `# EOF` do not exist.
fn to_classic_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut text = String::with_capacity(openmetrics.len() + counters.len() * 16);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {rest}"))
        });
        match described {
            Some(line) => text.push_str(&line),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Connector and task states as one gauge per state (1 for the current one), read
/// from the status board at each scrape, so an alert can match `state="FAILED"`.
#[derive(Debug)]
struct StateGauges(StatusBoard);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorStateLabels {
    connector: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskStateLabels {
    connector: String,
    task: String,
    state: String,
}

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let connectors: Family<ConnectorStateLabels, Gauge> = Family::default();
        let tasks: Family<TaskStateLabels, Gauge> = Family::default();
        for status in self.0.all() {
            for state in State::ALL {
                let current = i64::from(status.connector.state == state);
                let labels = ConnectorStateLabels { connector: status.name.clone(), state: state.name().to_owned() };
                connectors.get_or_create(&labels).set(current);
                for task in &status.tasks {
                    let labels =
                        TaskStateLabels { connector: status.name.clone(), task: task.id.to_string(), state: state.name().to_owned() };
                    tasks.get_or_create(&labels).set(i64::from(task.state == state));
                }
            }
        }
        let described = encoder.encode_descriptor(
            "connector_state",
            "1 for a connector's current state, 0 for the others",
            None,
            connectors.metric_type(),
        )?;
        connectors.encode(described)?;
        let described =
            encoder.encode_descriptor("task_state", "1 for a task's current state, 0 for the others", None, tasks.metric_type())?;
        tasks.encode(described)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::PluginKind;

    fn identity(connector: &str) -> TaskIdentity {
        TaskIdentity { connector: connector.into(), task: 0, plugin: "elasticsearch-sink".into() }
    }

    #[test]
    fn a_deleted_connector_takes_its_series_along() {
        let status = StatusBoard::new("test");
        let metrics = Metrics::new(status.clone());
        for connector in ["deleted", "kept"] {
            status.set_connector(connector, PluginKind::Sink, 1, State::Running);
            let labels = TaskLabels::from(&identity(connector));
            metrics.task_started(&labels, PluginKind::Sink);
            let record = Record { timestamp: Some(1), value: Some(b"{}".to_vec()), ..Record::default() };
            metrics.records_written(&labels, &[record]);
            metrics.store_write(&identity(connector), false, Duration::from_millis(3));
            metrics.http_request(&identity(connector), "5xx");
            metrics.task_failed(&labels, "trap", "a trap");
            metrics.plugin_call(&identity(connector), "write", Duration::from_millis(1));
        }
        status.remove_connector("deleted");
        metrics.forget_connector("deleted");
        let text = metrics.render(false);
        assert!(!text.contains("connector=\"deleted\""), "{text}");
        for family in [
            "records_written_total",
            "store_write_duration_seconds_count",
            "http_requests_total",
            "task_failures_total",
            "plugin_call_duration_seconds_count",
            "task_state",
        ] {
            assert!(
                text.lines().any(|line| line.starts_with(&format!("wasm_connect_{family}{{")) && line.contains("connector=\"kept\"")),
                "{family} of kept:\n{text}"
            );
        }
    }

    #[test]
    fn classic_text_names_counter_families_with_their_total_suffix() {
        let openmetrics = "# HELP a_records Records.\n# TYPE a_records counter\na_records_total{x=\"1\"} 2\n# HELP b Bytes.\n# TYPE b gauge\n# UNIT b bytes\nb 3\n# EOF\n";
        assert_eq!(
            to_classic_text(openmetrics),
            "# HELP a_records_total Records.\n# TYPE a_records_total counter\na_records_total{x=\"1\"} 2\n# HELP b Bytes.\n# TYPE b gauge\nb 3\n"
        );
    }
}
