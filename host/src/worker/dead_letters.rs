//! The dead-letter topic of one task: records a sink refused or a source could not
//! convert, with where they came from and why in Kafka Connect's `__connect.errors.*`
//! headers. The producer is created on first use.

use wasm_connect_protocol::Record;

use super::{ConnectorPlan, TaskError, WorkerContext};
use crate::runtime::TaskIdentity;
use crate::telemetry::TaskLabels;
use crate::transport::RecordProducer;

/// Kafka Connect's `__connect.errors.stage` of a failed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A source produced an item it could not convert.
    TaskPoll,
    /// A sink refused the record in its write.
    TaskPut,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::TaskPoll => "TASK_POLL",
            Stage::TaskPut => "TASK_PUT",
        }
    }
}

/// Where one task's tolerated bad records go.
#[derive(Default)]
pub struct DeadLetters {
    producer: Option<Box<dyn RecordProducer>>,
}

impl DeadLetters {
    /// Sends `record` to the connector's dead-letter topic (or logs that it is skipped
    /// when none is configured); `reason` is already redacted.
    pub async fn send(
        &mut self,
        context: &WorkerContext,
        plan: &ConnectorPlan,
        identity: &TaskIdentity,
        record: Record,
        reason: &str,
        stage: Stage,
    ) -> Result<(), TaskError> {
        let labels = TaskLabels::from(identity);
        let Some(topic) = &plan.config.errors.dead_letter_topic else {
            tracing::warn!(connector = %identity.connector, reason, "A record was refused and skipped (errors.tolerance: all, no dead-letter topic).");
            return Ok(());
        };
        if self.producer.is_none() {
            self.producer = Some(context.transport.producer(&format!("{}-dead-letters", plan.config.name)).await?);
        }
        let letter = dead_letter(record, topic, plan, identity, reason, stage);
        self.producer.as_mut().expect("created above").send(vec![letter], None).await?;
        context.metrics.record_dead_lettered(&labels, topic, reason);
        Ok(())
    }
}

/// The record, addressed to the dead-letter topic, with where it came from and why it
/// failed in Kafka Connect's `__connect.errors.*` headers.
fn dead_letter(mut record: Record, topic: &str, plan: &ConnectorPlan, identity: &TaskIdentity, reason: &str, stage: Stage) -> Record {
    let description = &plan.plugin.description;
    let headers = [
        ("__connect.errors.topic", record.topic.clone()),
        ("__connect.errors.partition", record.partition.unwrap_or(-1).to_string()),
        ("__connect.errors.offset", record.offset.unwrap_or(-1).to_string()),
        ("__connect.errors.connector.name", identity.connector.to_string()),
        ("__connect.errors.task.id", identity.task.to_string()),
        ("__connect.errors.stage", stage.name().to_owned()),
        // The executing "class": the plugin and its version.
        ("__connect.errors.class.name", format!("{}@{}", description.name, description.version)),
        ("__connect.errors.exception.class.name", "wasm-connect:connector/types.error.bad-record".to_owned()),
        ("__connect.errors.exception.message", reason.to_owned()),
    ];
    record.headers.extend(headers.into_iter().map(|(name, value)| (name.to_owned(), Some(value.into_bytes()))));
    record.topic = topic.to_owned();
    record.partition = None;
    record.offset = None;
    record
}
