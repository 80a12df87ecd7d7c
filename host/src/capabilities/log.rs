//! `log`: plugin log lines, written through `tracing` with the connector and task.
//! A plugin cannot flood the log: each line is cut at 8 KiB, and each task may write
//! 100 lines a second on average (bursts of 200); lines past that are dropped, and
//! how many is said in the next line that gets through. A plugin that goes on logging
//! (dropped lines piling up past 10,000 while they drain at 10,000 a second: a flood of
//! 20,000 lines a second is caught within a second, of millions within milliseconds)
//! has its call stopped within 100 ms,
//! or when the call returns if that comes first, and its task failed with that reason,
//! to be restarted with backoff like any failure.

use std::time::Instant;

use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::log::{Host, Level};

/// Longest log line a plugin may write; longer ones are cut so a plugin cannot flood the log.
const MAX_LINE: usize = 8 * 1024;
/// Lines a task may log per second, on average.
const LINES_PER_SECOND: f64 = 100.0;
/// Lines a task may log at once after a quiet while.
const BURST_LINES: f64 = 200.0;

/// Dropped lines, in a second bucket that drains this many a second, after which the
/// call is stopped and the task failed: a plugin that keeps logging past its allowance
/// only burns CPU its neighbours need. The lines let through every 10 ms do not empty
/// this bucket, so a flood is caught however fast the machine or short the call.
const FLOOD_LINES: f64 = 10_000.0;
/// How often a running call is checked for a flood.
pub const LOG_FLOOD_CHECK: std::time::Duration = std::time::Duration::from_millis(100);
/// The failure of a task stopped for flooding the log.
pub const LOG_FLOOD_REASON: &str = "the plugin kept logging far beyond its allowance of 100 lines a second (dropped lines piled up past 10,000 while draining at 10,000 a second); the task is failed to protect the others";

/// A task's allowance of log lines (a token bucket).
#[derive(Debug)]
pub struct LogBudget {
    tokens: f64,
    refilled: Instant,
    /// Dropped since the last line written (said in that line).
    dropped: u64,
    /// Dropped lines, draining at [`FLOOD_LINES`] a second.
    flood: f64,
    /// Set for good once `flood` reached [`FLOOD_LINES`]: the task is failed at the
    /// next check.
    flooded: bool,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self { tokens: BURST_LINES, refilled: Instant::now(), dropped: 0, flood: 0.0, flooded: false }
    }
}

impl LogBudget {
    /// True once the dropped lines overflowed the flood bucket ([`FLOOD_LINES`]).
    pub fn flooding(&self) -> bool {
        self.flooded
    }

    /// Whether one more line may be written now; counts it as dropped if not.
    fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * LINES_PER_SECOND).min(BURST_LINES);
        self.flood = (self.flood - elapsed * FLOOD_LINES).max(0.0);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            self.flood += 1.0;
            self.flooded |= self.flood > FLOOD_LINES;
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::LogBudget;

    /// Offers `lines` lines, one every `every`, from `start`; returns how many got through.
    fn offer(budget: &mut LogBudget, start: Instant, lines: u32, every: Duration) -> u32 {
        (0..lines).filter(|line| budget.take_at(start + every * *line)).count() as u32
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_a_steady_excess_is_not_a_flood() {
        let mut budget = LogBudget::default();
        let start = budget.refilled;
        // 5,000 lines a second for 4 s: the burst, then 100 a second.
        let through = offer(&mut budget, start, 20_000, Duration::from_micros(200));
        assert!((598..=601).contains(&through), "{through} lines through");
        assert!(!budget.flooding(), "dropping 4,900 lines a second is throttling, not a flood");
    }

    #[test]
    fn dropped_lines_piling_up_past_ten_thousand_are_a_flood_however_often_a_line_gets_through() {
        let mut budget = LogBudget::default();
        let start = budget.refilled;
        // 20,000 lines a second for half a second: about 9,750 dropped, 4,900 drained.
        // A line still gets through every 10 ms: it says the drops, and reset the
        // count the flood check read before.
        offer(&mut budget, start, 10_000, Duration::from_micros(50));
        assert!(!budget.flooding(), "4,900 dropped lines pending");
        // Then 100,000 a second for 0.11 s: 10,000 more pending.
        offer(&mut budget, start + Duration::from_millis(500), 11_000, Duration::from_micros(10));
        assert!(budget.flooding(), "14,000 dropped lines pending");
        // It stays flooded: the task is failed at the next check, however late.
        offer(&mut budget, start + Duration::from_secs(60), 1, Duration::ZERO);
        assert!(budget.flooding());
    }
}
