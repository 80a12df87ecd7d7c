//! Keeps each task running: a failed task is restarted with exponential backoff
//! (reset after a minute of healthy running), unless restarting cannot help.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ConnectorPlan, TaskError, WorkerContext, sink, source};
use crate::runtime::{PluginKind, TaskIdentity};
use crate::telemetry::{State, TaskLabels};
use crate::transport::TaskShare;

/// A task that ran this long without failing starts over with the shortest backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// One task under supervision: cancel it through `cancel`, then await `handle`, which
/// ends once the task has finished (and committed) the batch in hand.
pub struct RunningTask {
    /// Stops the task.
    pub cancel: CancellationToken,
    /// Ends when the task has stopped.
    pub handle: JoinHandle<()>,
}

/// Starts task `task` of a connector under supervision; it runs until cancelled.
pub fn spawn_task(context: &WorkerContext, plan: Arc<ConnectorPlan>, task: u32) -> RunningTask {
    let identity =
        TaskIdentity { connector: plan.config.name.as_str().into(), task, plugin: plan.plugin.description.name.as_str().into() };
    let share = TaskShare { task, tasks: plan.task_count() };
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(supervise(context.clone(), plan, identity, share, cancel.clone()));
    RunningTask { cancel, handle }
}

async fn supervise(context: WorkerContext, plan: Arc<ConnectorPlan>, identity: TaskIdentity, share: TaskShare, cancel: CancellationToken) {
    let labels = TaskLabels::from(&identity);
    let mut delay = context.restart_backoff;
    loop {
        context.status.set_task(&identity.connector, identity.task, State::Running, None);
        context.metrics.task_started(&labels, plan.kind() == PluginKind::Source);
        let started = Instant::now();
        let result = match plan.kind() {
            PluginKind::Source => source::run(&context, &plan, &identity, &cancel).await,
            _ => sink::run(&context, &plan, &identity, share, &cancel).await,
        };
        let error: TaskError = match result {
            Ok(()) => {
                context.status.set_task(&identity.connector, identity.task, State::Stopped, None);
                return;
            }
            Err(error) => error,
        };
        let reason = plan.redact(&error.to_string());
        context.metrics.task_failed(&labels, error.outcome(), &reason);
        if error.is_permanent() {
            context.status.set_task(&identity.connector, identity.task, State::Failed, Some(reason));
            cancel.cancelled().await;
            return;
        }
        if started.elapsed() > HEALTHY_AFTER {
            delay = context.restart_backoff;
        }
        context.status.set_task(&identity.connector, identity.task, State::Restarting, Some(reason.clone()));
        tokio::select! {
            _ = cancel.cancelled() => {
                context.status.set_task(&identity.connector, identity.task, State::Stopped, Some(reason));
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        context.metrics.task_restarting(&labels, delay);
        delay = (delay * 2).min(context.max_restart_backoff);
    }
}
