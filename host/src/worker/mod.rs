//! Connector tasks: one engine runs every task (input -> stages -> output ->
//! checkpoint, see `engine`; a processor's stage in `processor`), with one error policy and dead-letter topic, one backoff, and the
//! supervisor that restarts a failed task.

mod backoff;
mod dead_letters;
mod engine;
mod outage;
mod plan;
mod plugin;
mod processor;
mod sink;
mod source;
mod supervisor;
mod task;
mod topics;

use std::sync::Arc;
use std::time::Duration;

pub use plan::{ConnectorPlan, HIDDEN, hides_secrets, plan_connector, plan_connectors};
pub use supervisor::{RunningTask, spawn_task};

use crate::runtime::{PluginFailure, Runtime};
use crate::telemetry::{Metrics, StatusBoard};
use crate::transport::{Transport, TransportError};

/// What every task needs from the host.
#[derive(Clone)]
pub struct WorkerContext {
    /// The WebAssembly runtime.
    pub runtime: Runtime,
    /// Where records go.
    pub transport: Arc<dyn Transport>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Status for the admin API.
    pub status: StatusBoard,
    /// First restart delay.
    pub restart_backoff: Duration,
    /// Longest restart delay.
    pub max_restart_backoff: Duration,
}

/// Why a task stopped.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A batch kept failing with retriable errors for longer than `errors.retry_timeout`.
    #[error("the batch failed with retriable errors for longer than errors.retry_timeout ({timeout:?}); last error: {last}")]
    RetriesExhausted {
        /// The configured timeout.
        timeout: std::time::Duration,
        /// The last error.
        last: String,
    },
    /// A record could not be written and errors are not tolerated.
    #[error("{0} (errors.tolerance is none: fix the record or the plugin, or set errors.tolerance: all)")]
    Intolerable(PluginFailure),
}

impl TaskError {
    /// True when restarting the task cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            TaskError::Plugin(failure) => failure.is_permanent(),
            TaskError::Transport(_) | TaskError::RetriesExhausted { .. } => false,
            TaskError::Intolerable(_) => true,
        }
    }

    /// The `outcome` label.
    pub fn outcome(&self) -> &'static str {
        match self {
            TaskError::Plugin(failure) | TaskError::Intolerable(failure) => failure.outcome(),
            TaskError::Transport(_) => "transport",
            TaskError::RetriesExhausted { .. } => "retries_exhausted",
        }
    }
}
