//! `log`: plugin log lines, written through `tracing` with the connector and task.
//! A plugin cannot flood the log: each line is cut at 8 KiB, and each task may write
//! 100 lines a second on average (bursts of 200); lines past that are dropped, and
//! how many is said in the next line that gets through. A plugin that goes on logging
//! (10,000 lines dropped in a row) has its call stopped within 100 ms and its task
//! failed with that reason, to be restarted with backoff like any failure.

use std::time::Instant;

use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::log::{Host, Level};

/// Longest log line a plugin may write; longer ones are cut so a plugin cannot flood the log.
const MAX_LINE: usize = 8 * 1024;
/// Lines a task may log per second, on average.
const LINES_PER_SECOND: f64 = 100.0;
/// Lines a task may log at once after a quiet while.
const BURST_LINES: f64 = 200.0;

/// Lines dropped in a row after which the call is stopped and the task failed: a
/// plugin that keeps logging past its allowance only burns CPU its neighbours need.
const FLOOD_LINES: u64 = 10_000;
/// How often a running call is checked for a flood.
pub const LOG_FLOOD_CHECK: std::time::Duration = std::time::Duration::from_millis(100);
/// The failure of a task stopped for flooding the log.
pub const LOG_FLOOD_REASON: &str = "the plugin kept logging far beyond its allowance of 100 lines a second (10,000 lines dropped in a row); the task is failed to protect the others";

/// A task's allowance of log lines (a token bucket).
#[derive(Debug)]
pub struct LogBudget {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self { tokens: BURST_LINES, refilled: Instant::now(), dropped: 0 }
    }
}

impl LogBudget {
    /// True once [`FLOOD_LINES`] lines in a row were dropped.
    pub fn flooding(&self) -> bool {
        self.dropped >= FLOOD_LINES
    }

    /// Whether one more line may be written now; counts it as dropped if not.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * LINES_PER_SECOND;
        self.tokens = (self.tokens + earned).min(BURST_LINES);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// `text` cut to at most `length` bytes, on a character boundary.
fn cut(text: &mut String, length: usize) -> bool {
    if text.len() <= length {
        return false;
    }
    let mut end = length;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

impl Host for TaskState {
    fn write(&mut self, level: Level, mut message: String) {
        if !self.log_budget.take() {
            return;
        }
        // Cut before redacting (a plugin may send megabytes), but with room for a
        // secret that starts before the cut, so that no part of one survives.
        cut(&mut message, MAX_LINE + self.longest_secret());
        let mut message = self.redact(&message);
        if cut(&mut message, MAX_LINE) {
            message.push('…');
        }
        let identity = &self.identity;
        let (connector, task, plugin) = (&*identity.connector, identity.task, &*identity.plugin);
        let dropped = std::mem::take(&mut self.log_budget.dropped);
        if dropped > 0 {
            tracing::warn!(
                target: "plugin", connector, task, plugin, dropped,
                "The plugin logged more than {LINES_PER_SECOND} lines a second; lines were dropped."
            );
        }
        match level {
            Level::Trace => tracing::trace!(target: "plugin", connector, task, plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", connector, task, plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", connector, task, plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", connector, task, plugin, "{message}"),
            Level::Error => tracing::error!(target: "plugin", connector, task, plugin, "{message}"),
        }
    }
}
