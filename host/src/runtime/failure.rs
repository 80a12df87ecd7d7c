//! Why a plugin call failed, on both channels of the boundary: an error value the
//! plugin returned on purpose, or a trap (bug, deadline, memory limit).

use std::time::Duration;

use super::bindings::types as wit;

/// A failed plugin call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginFailure {
    /// The plugin asks to be retried later.
    #[error("retriable error: {0}")]
    Retriable(String),
    /// The plugin gave up; the task restarts with backoff.
    #[error("fatal error: {0}")]
    Fatal(String),
    /// One record of the batch was refused.
    #[error("bad record at index {index}: {reason}")]
    BadRecord {
        /// Index in the batch.
        index: u32,
        /// The plugin's reason.
        reason: String,
    },
    /// The configuration is unusable: restarting will not help.
    #[error("bad configuration: {0}")]
    BadConfig(String),
    /// The plugin trapped (a bug in the plugin).
    #[error("plugin trapped: {0}")]
    Trapped(String),
    /// The call ran past the deadline and was interrupted.
    #[error("plugin call ran longer than {0:?} and was interrupted")]
    TimedOut(Duration),
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin exceeded its memory limit: {0}")]
    OutOfMemory(String),
    /// The plugin returned data the host cannot read.
    #[error("plugin returned an invalid batch: {0}")]
    InvalidOutput(String),
}

impl PluginFailure {
    /// Classifies an error raised by a call into the plugin by its root cause.
    pub fn from_trap(error: &wasmtime::Error, call_timeout: Duration) -> Self {
        let trap = error.downcast_ref::<wasmtime::Trap>();
        if let Some(wasmtime::Trap::Interrupt) = trap {
            return PluginFailure::TimedOut(call_timeout);
        }
        let description = format!("{error:#}");
        if description.contains("growing memory") || description.contains("memory limit") {
            return PluginFailure::OutOfMemory("it reached its memory limit (plugins.memory_limit_mib)".to_owned());
        }
        match trap {
            Some(wasmtime::Trap::Interrupt) => PluginFailure::TimedOut(call_timeout),
            Some(wasmtime::Trap::StackOverflow) => {
                PluginFailure::Trapped("its call stack ran out (a recursion too deep, or without end)".to_owned())
            }
            // The trap itself, not the backtrace that comes first.
            Some(trap) => PluginFailure::Trapped(trap.to_string()),
            None => PluginFailure::Trapped(first_line(&description)),
        }
    }

    /// True when restarting the task cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, PluginFailure::BadConfig(_))
    }

    /// A short label for metrics (`outcome`).
    pub fn outcome(&self) -> &'static str {
        match self {
            PluginFailure::Retriable(_) => "retriable",
            PluginFailure::Fatal(_) => "fatal",
            PluginFailure::BadRecord { .. } => "bad_record",
            PluginFailure::BadConfig(_) => "bad_config",
            PluginFailure::Trapped(_) => "trap",
            PluginFailure::TimedOut(_) => "timeout",
            PluginFailure::OutOfMemory(_) => "out_of_memory",
            PluginFailure::InvalidOutput(_) => "invalid_output",
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().take(3).collect::<Vec<_>>().join(" | ")
}

impl From<wit::Error> for PluginFailure {
    fn from(error: wit::Error) -> Self {
        match error {
            wit::Error::Retriable(message) => PluginFailure::Retriable(message),
            wit::Error::Fatal(message) => PluginFailure::Fatal(message),
            wit::Error::BadRecord(bad) => PluginFailure::BadRecord { index: bad.index, reason: bad.reason },
            wit::Error::BadConfig(message) => PluginFailure::BadConfig(message),
        }
    }
}
