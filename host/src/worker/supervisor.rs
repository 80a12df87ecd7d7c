//! Keeps each task running: a failed task is restarted with exponential backoff
//! (reset after a minute of healthy running), unless restarting cannot help.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::task::{TaskContext, pause};
use super::{ConnectorPlan, TaskError, WorkerContext, engine};
use crate::telemetry::State;

/// A task that ran this long without failing starts over with the shortest backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// One task under supervision: cancel it through `cancel`, then await `handle`, which
/// ends once the task has finished (and committed) the batch in hand.
pub struct RunningTask {
    /// Its connector.
    pub connector: String,
    /// Its number.
    pub task: u32,
    /// Stops the task.
    pub cancel: CancellationToken,
    /// Ends when the task has stopped.
    pub handle: JoinHandle<()>,
}

/// Starts task `task` of a connector under supervision; it runs until `cancel` (or a
/// token it is a child of) is cancelled.
pub fn spawn_task(context: &WorkerContext, plan: Arc<ConnectorPlan>, task: u32, cancel: CancellationToken) -> RunningTask {
    let connector = plan.config.name.clone();
    let context = TaskContext::new(context.clone(), plan, task);
    let handle = tokio::spawn(supervise(context, cancel.clone()));
    RunningTask { connector, task, cancel, handle }
}

async fn supervise(task: TaskContext, cancel: CancellationToken) {
    // Given up before it started (its partition moved on): nothing to show or count.
    if cancel.is_cancelled() {
        return;
    }
    run_supervised(&task, &cancel).await;
    task.metrics().task_ended(&task.labels);
}

async fn run_supervised(task: &TaskContext, cancel: &CancellationToken) {
    let mut backoff = task.backoff(task.worker.max_restart_backoff);
    loop {
        task.show(State::Running, None);
        task.metrics().task_started(&task.labels, task.plan.kind());
        let started = Instant::now();
        let error: TaskError = match engine::run(task, cancel).await {
            Ok(()) => {
                task.show(State::Stopped, None);
                return;
            }
            Err(error) => error,
        };
        let reason = task.redact(&error.to_string());
        task.metrics().task_failed(&task.labels, error.outcome(), &reason);
        if error.is_permanent() {
            task.show(State::Failed, Some(reason));
            cancel.cancelled().await;
            return;
        }
        if started.elapsed() > HEALTHY_AFTER {
            backoff.reset();
        }
        task.show(State::Restarting, Some(reason.clone()));
        let delay = backoff.next_delay();
        if !pause(cancel, delay).await {
            task.show(State::Stopped, Some(reason));
            return;
        }
        task.metrics().task_restarting(&task.labels, delay);
    }
}
