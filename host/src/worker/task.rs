//! What one running task knows about itself: the host's services, its connector's
//! plan, who it is (for logs, metrics and status) and its share of the work.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::{ConnectorPlan, WorkerContext};
use crate::runtime::{TaskAccess, TaskIdentity};
use crate::telemetry::{Metrics, State, TaskLabels};
use crate::transport::TaskShare;

/// One task of one connector.
pub struct TaskContext {
    /// The host's services.
    pub worker: WorkerContext,
    /// The connector's plan.
    pub plan: Arc<ConnectorPlan>,
    /// Connector, task number and plugin, for logs and the plugin's store.
    pub identity: TaskIdentity,
    /// The same, as metric labels.
    pub labels: TaskLabels,
    /// Which share of the connector's work this task does.
    pub share: TaskShare,
}

impl TaskContext {
    /// Task `task` of the connector `plan` describes.
    pub fn new(worker: WorkerContext, plan: Arc<ConnectorPlan>, task: u32) -> Self {
        let identity =
            TaskIdentity { connector: plan.config.name.as_str().into(), task, plugin: plan.plugin.description.name.as_str().into() };
        let labels = TaskLabels::from(&identity);
        let share = TaskShare { task, tasks: plan.task_count() };
        Self { worker, plan, identity, labels, share }
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.worker.metrics
    }

    /// Shows the task's state, with a trace saying why, in the admin API's status.
    pub fn show(&self, state: State, trace: Option<String>) {
        self.worker.status.set_task(&self.identity.connector, self.identity.task, state, trace);
    }

    /// What the task's plugin may reach and must never reveal.
    pub fn access(&self) -> TaskAccess {
        TaskAccess {
            grants: self.plan.grants.clone(),
            secrets: self.plan.secrets.clone().into(),
            metrics: Some(self.worker.metrics.clone()),
        }
    }

    /// `text` without the connector's secret option values.
    pub fn redact(&self, text: &str) -> String {
        self.plan.redact(text)
    }

    /// A backoff from the host's first restart delay up to `cap` (and never past the
    /// host's longest restart delay).
    pub fn backoff(&self, cap: Duration) -> Backoff {
        Backoff::new(self.worker.restart_backoff, cap.min(self.worker.max_restart_backoff))
    }
}

/// Sleeps for `delay`; false when the task was stopped first.
pub async fn pause(cancel: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
