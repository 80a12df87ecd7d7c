//! Keeps each task running: a failed task is restarted with exponential backoff
//! (reset after a minute of healthy running), unless restarting cannot help.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ConnectorPlan, TaskError, WorkerContext, sink, source};
use crate::runtime::{PluginKind, TaskIdentity};
use crate::telemetry::{State, TaskLabels};
use crate::transport::TaskShare;

/// A task that ran this long without failing starts over with the shortest backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Starts every task of a connector on `tracker`; they stop when `cancel` fires.
pub fn spawn_connector(context: &WorkerContext, plan: Arc<ConnectorPlan>, tracker: &TaskTracker, cancel: &CancellationToken) {
    let tasks = plan.task_count();
    context.status.add_connector(&plan.config.name, plan.kind(), tasks);
    for task in 0..tasks {
        let identity = TaskIdentity {
            connector: plan.config.name.as_str().into(),
            task,
            plugin: plan.plugin.description.name.as_str().into(),
        };
        let share = TaskShare { task, tasks };
        tracker.spawn(supervise(context.clone(), plan.clone(), identity, share, cancel.child_token()));
    }
}

async fn supervise(context: WorkerContext, plan: Arc<ConnectorPlan>, identity: TaskIdentity, share: TaskShare, cancel: CancellationToken) {
    let labels = TaskLabels::from(&identity);
    let mut delay = context.restart_backoff;
    loop {
        context.status.set_task(&identity.connector, identity.task, State::Running, None);
        context.metrics.task_started(&labels);
        let started = Instant::now();
        let result = match plan.kind() {
            PluginKind::Source => source::run(&context, &plan, &identity, &cancel).await,
            _ => sink::run(&context, &plan, &identity, share, &cancel).await,
        };
        let error: TaskError = match result {
            Ok(()) => {
                context.metrics.task_stopped(&labels);
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
