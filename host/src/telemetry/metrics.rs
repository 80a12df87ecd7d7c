//! Prometheus metrics, labelled by connector, task, plugin and outcome only: never by
//! record, offset or error message, so cardinality stays bounded.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::runtime::TaskIdentity;

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

/// Every metric of the host.
pub struct Metrics {
    registry: Registry,
    records_in: Family<TaskLabels, Counter>,
    records_out: Family<TaskLabels, Counter>,
    records_dead_lettered: Family<TaskLabels, Counter>,
    task_failures: Family<OutcomeLabels, Counter>,
    task_restarts: Family<TaskLabels, Counter>,
    plugin_call_duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    batch_size: Family<TaskLabels, Histogram, fn() -> Histogram>,
    tasks_running: Family<TaskLabels, Gauge>,
    plugin_memory: Family<TaskLabels, Gauge>,
    write_retries: Family<TaskLabels, Counter>,
    tasks_retrying: Family<TaskLabels, Gauge>,
    http_requests: Family<OutcomeLabels, Counter>,
    source_throttles: Family<TaskLabels, Counter>,
    sources_throttled: Family<TaskLabels, Gauge>,
    poll_retries: Family<TaskLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("wasm_connect");
        let metrics = Self {
            records_in: Family::default(),
            records_out: Family::default(),
            records_dead_lettered: Family::default(),
            task_failures: Family::default(),
            task_restarts: Family::default(),
            plugin_call_duration: Family::new_with_constructor(call_duration_histogram),
            batch_size: Family::new_with_constructor(batch_size_histogram),
            tasks_running: Family::default(),
            plugin_memory: Family::default(),
            write_retries: Family::default(),
            tasks_retrying: Family::default(),
            http_requests: Family::default(),
            source_throttles: Family::default(),
            sources_throttled: Family::default(),
            poll_retries: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "records_in",
            "Records a task took in: polled from a source plugin, or consumed from topics by a sink",
            metrics.records_in.clone(),
        );
        registry.register(
            "records_out",
            "Records a task delivered: produced to topics by a source, or acknowledged by a sink plugin",
            metrics.records_out.clone(),
        );
        registry.register(
            "records_dead_lettered",
            "Records a sink refused and sent to the dead-letter topic",
            metrics.records_dead_lettered.clone(),
        );
        registry.register("task_failures", "Task failures by outcome (trap, timeout, out_of_memory, fatal, ...)", metrics.task_failures.clone());
        registry.register("task_restarts", "Restarts of a failed task", metrics.task_restarts.clone());
        registry.register("plugin_call_duration_seconds", "Duration of calls into plugins", metrics.plugin_call_duration.clone());
        registry.register("batch_size_records", "Records per batch crossing the plugin boundary", metrics.batch_size.clone());
        registry.register("task_running", "1 while a task is running, 0 while it is failed or restarting", metrics.tasks_running.clone());
        registry.register("plugin_memory_bytes", "Linear memory a task's plugin instance has grown to", metrics.plugin_memory.clone());
        registry.register(
            "write_retries",
            "Retries of a batch after a retriable error (store unreachable, overloaded or throttling)",
            metrics.write_retries.clone(),
        );
        registry.register(
            "task_retrying",
            "1 while a sink task is retrying a batch because its store is unreachable or refusing, else 0",
            metrics.tasks_retrying.clone(),
        );
        registry.register(
            "http_requests",
            "Outgoing HTTP requests of plugins by outcome: 2xx..5xx (the status), denied (host not granted), timeout, too_large, failed",
            metrics.http_requests.clone(),
        );
        registry.register(
            "source_throttles",
            "Times a source was held back by its provider's rate limit or quota",
            metrics.source_throttles.clone(),
        );
        registry.register(
            "source_throttled",
            "1 while a source waits for its provider's rate-limit or quota window to reset, else 0",
            metrics.sources_throttled.clone(),
        );
        registry.register(
            "poll_retries",
            "Polls of a source retried after a retriable error (provider unreachable, malformed answer)",
            metrics.poll_retries.clone(),
        );
        Arc::new(Self { registry, ..metrics })
    }

    /// The metrics in Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// A task took in `count` records.
    pub fn records_in(&self, labels: &TaskLabels, count: usize) {
        self.records_in.get_or_create(labels).inc_by(count as u64);
        self.batch_size.get_or_create(labels).observe(count as f64);
    }

    /// A task delivered `count` records.
    pub fn records_out(&self, labels: &TaskLabels, count: usize) {
        self.records_out.get_or_create(labels).inc_by(count as u64);
    }

    /// A sink refused a record that went to the dead-letter topic.
    pub fn record_dead_lettered(&self, labels: &TaskLabels, topic: &str, reason: &str) {
        tracing::warn!(connector = %labels.connector, task = %labels.task, dead_letter_topic = topic, reason, "A record was refused and sent to the dead-letter topic.");
        self.records_dead_lettered.get_or_create(labels).inc();
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

    /// A task started running.
    pub fn task_started(&self, labels: &TaskLabels) {
        self.tasks_running.get_or_create(labels).set(1);
    }

    /// A task stopped running because of `failure`.
    pub fn task_failed(&self, labels: &TaskLabels, outcome: &str, reason: &str) {
        tracing::error!(connector = %labels.connector, task = %labels.task, plugin = %labels.plugin, outcome, reason, "The task failed.");
        self.tasks_running.get_or_create(labels).set(0);
        let outcome_labels = OutcomeLabels {
            connector: labels.connector.clone(),
            task: labels.task.clone(),
            plugin: labels.plugin.clone(),
            outcome: outcome.to_owned(),
        };
        self.task_failures.get_or_create(&outcome_labels).inc();
    }

    /// A failed task is being restarted after `delay`.
    pub fn task_restarting(&self, labels: &TaskLabels, delay: Duration) {
        tracing::info!(connector = %labels.connector, task = %labels.task, delay_ms = delay.as_millis() as u64, "Restarting the task after a delay.");
        self.task_restarts.get_or_create(labels).inc();
    }

    /// A plugin's outgoing HTTP request ended with `outcome`.
    pub fn http_request(&self, identity: &TaskIdentity, outcome: &str) {
        let labels = TaskLabels::from(identity);
        let outcome_labels = OutcomeLabels { connector: labels.connector, task: labels.task, plugin: labels.plugin, outcome: outcome.to_owned() };
        self.http_requests.get_or_create(&outcome_labels).inc();
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

    /// A throttled source resumed polling.
    pub fn source_resumed(&self, labels: &TaskLabels) {
        tracing::info!(connector = %labels.connector, task = %labels.task, "The source resumes polling after its rate-limit pause.");
        self.sources_throttled.get_or_create(labels).set(0);
    }

    /// A poll failed with a retriable error and is retried after `delay`.
    pub fn poll_retry(&self, labels: &TaskLabels, reason: &str, delay: Duration) {
        tracing::warn!(connector = %labels.connector, task = %labels.task, reason, delay_ms = delay.as_millis() as u64, "The poll failed; retrying.");
        self.poll_retries.get_or_create(labels).inc();
    }

    /// A task stopped cleanly.
    pub fn task_stopped(&self, labels: &TaskLabels) {
        self.tasks_running.get_or_create(labels).set(0);
    }
}
