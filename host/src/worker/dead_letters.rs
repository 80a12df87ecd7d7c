//! The error policy of one task and its dead-letter topic: records a sink refused or a
//! source could not convert, with where they came from and why in Kafka Connect's
//! `__connect.errors.*` headers. The producer is created on first use.

use wasm_connect_protocol::Record;

use super::TaskError;
use super::task::TaskContext;
use crate::runtime::PluginFailure;
use crate::transport::RecordProducer;

/// Kafka Connect's `__connect.errors.stage` of a failed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// A source produced an item it could not convert.
    TaskPoll,
    /// A transform of the connector's chain failed the record.
    Transformation {
        /// The transform's type, as configured (`__connect.errors.class.name`).
        type_name: String,
    },
    /// A sink refused the record in its write.
    TaskPut,
}

impl Stage {
    /// Kafka Connect's name of the stage.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::TaskPoll => "TASK_POLL",
            Stage::Transformation { .. } => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
        }
    }
}

/// One task's error policy for records that failed at a stage (`errors.*`), the same
/// for every kind of task: each is counted, logged when `errors.log` is set, and then
/// either fails the task (`errors.tolerance: none`) or goes to the dead-letter topic.
#[derive(Default)]
pub struct DeadLetters {
    producer: Option<Box<dyn RecordProducer>>,
}

impl DeadLetters {
    /// Applies the policy to `record`, which failed at `stage` as the batch's record
    /// `index`; `reason` is already redacted.
    pub async fn reject(&mut self, task: &TaskContext, record: Record, reason: String, stage: Stage, index: u32) -> Result<(), TaskError> {
        log_set_aside(task, &record, &reason, &stage, "A record failed and was not written.");
        if !task.plan.tolerates_errors() {
            return Err(TaskError::Intolerable(failure_at(index, reason, &record)));
        }
        self.send(task, record, &reason, stage).await
    }

    /// Sends a record the task cannot use but that must never fail it (a processor's
    /// late record) to the dead-letter topic, whatever `errors.tolerance` says, or
    /// drops it with a log line when there is no dead-letter topic.
    pub async fn divert(&mut self, task: &TaskContext, record: Record, reason: String, stage: Stage) -> Result<(), TaskError> {
        log_set_aside(task, &record, &reason, &stage, "A record was set aside.");
        self.send(task, record, &reason, stage).await
    }

    /// Sends `record` to the connector's dead-letter topic (or logs that it is skipped
    /// when none is configured).
    async fn send(&mut self, task: &TaskContext, record: Record, reason: &str, stage: Stage) -> Result<(), TaskError> {
        let plan = &task.plan;
        let Some(topic) = &plan.config.errors.dead_letter_topic else {
            tracing::warn!(connector = %task.identity.connector, reason, "A record was set aside and skipped: the connector has no dead-letter topic.");
            return Ok(());
        };
        if self.producer.is_none() {
            self.producer = Some(task.worker.transport.producer(&format!("{}-dead-letters", plan.config.name)).await?);
        }
        let letter = dead_letter(record, topic, task, reason, &stage);
        self.producer.as_mut().expect("created above").send(vec![letter], None).await?;
        task.metrics().record_dead_lettered(&task.labels, topic, reason);
        Ok(())
    }
}

/// Counts a record the task does not write and, with `errors.log`, says why.
fn log_set_aside(task: &TaskContext, record: &Record, reason: &str, stage: &Stage, what: &'static str) {
    task.metrics().record_failed(&task.labels);
    if task.plan.config.errors.log {
        tracing::warn!(
            connector = %task.identity.connector, task = task.identity.task, topic = record.topic,
            partition = record.partition.unwrap_or(-1), offset = record.offset.unwrap_or(-1), reason, stage = stage.name(),
            "{what}"
        );
    }
}

/// A bad-record failure that says which record it was.
fn failure_at(index: u32, reason: String, record: &Record) -> PluginFailure {
    let at = match (record.partition, record.offset) {
        (Some(partition), Some(offset)) => format!("topic {}, partition {partition}, offset {offset}", record.topic),
        _ => format!("for topic {}", record.topic),
    };
    PluginFailure::BadRecord { index, reason: format!("{reason} ({at})") }
}

/// The record, addressed to the dead-letter topic, with where it came from and why it
/// failed in Kafka Connect's `__connect.errors.*` headers.
fn dead_letter(mut record: Record, topic: &str, task: &TaskContext, reason: &str, stage: &Stage) -> Record {
    let (description, identity) = (&task.plan.plugin.description, &task.identity);
    // The executing "class": the transform, or the plugin and its version.
    let (class, exception) = match stage {
        // Kafka Connect's full class name for its own transforms.
        Stage::Transformation { type_name } => {
            let class = crate::transforms::catalog::find(type_name).map_or_else(|| type_name.clone(), |entry| entry.class);
            (class, "org.apache.kafka.connect.errors.DataException")
        }
        _ => (format!("{}@{}", description.name, description.version), "wasm-connect:connector/types.error.bad-record"),
    };
    let headers = [
        ("__connect.errors.topic", record.topic.clone()),
        ("__connect.errors.partition", record.partition.unwrap_or(-1).to_string()),
        ("__connect.errors.offset", record.offset.unwrap_or(-1).to_string()),
        ("__connect.errors.connector.name", identity.connector.to_string()),
        ("__connect.errors.task.id", identity.task.to_string()),
        ("__connect.errors.stage", stage.name().to_owned()),
        ("__connect.errors.class.name", class),
        ("__connect.errors.exception.class.name", exception.to_owned()),
        ("__connect.errors.exception.message", reason.to_owned()),
    ];
    record.headers.extend(headers.into_iter().map(|(name, value)| (name.to_owned(), Some(value.into_bytes()))));
    record.topic = topic.to_owned();
    record.partition = None;
    record.offset = None;
    record
}
