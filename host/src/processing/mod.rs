//! Stream processors: a connector kind that reads topics, keeps state per input
//! partition and writes a topic, with its output records, its state changes and its
//! input offsets stored as one atomic checkpoint (so that after a crash every result
//! is emitted once and the state is the one the input built).
//!
//! The processors built into the host (`aggregate`, `dedupe`, `join`, `threshold`) are configured in YAML
//! like a plugin's options; see [`builtin`]. Custom ones are WASM components; see [`wasm`].

pub mod aggregate;
pub mod builtin;
pub mod dedupe;
mod event_time;
pub mod join;
pub mod keyed_state;
mod options;
mod stream_time;
#[cfg(test)]
mod testing;
pub mod threshold;
pub mod wasm;

use wasm_connect_protocol::Record;

use crate::transport::{StateChange, StateEntry};

pub use builtin::{BUILTIN_PROCESSORS, build_processor, is_builtin_processor, processor_description};

/// What a processor made of a batch (or of a timer).
#[derive(Debug, Default)]
pub struct Processed {
    /// Records for the output topic.
    pub records: Vec<Record>,
    /// Records the processor could not use, with the reason: through the error policy.
    pub failed: Vec<(Record, String)>,
    /// Records that came after their window closed, with the reason: to the
    /// dead-letter topic when there is one, never failing the task.
    pub late: Vec<(Record, String)>,
}

/// A topic a processor reads as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The topic.
    pub topic: String,
    /// How long a task waits at its start for an empty table's first records (its
    /// source may not have written yet) before it processes anything.
    pub wait_when_empty: std::time::Duration,
}

/// A stream processor of one task. Its state lives in memory; what changed since the
/// last checkpoint is taken with [`Processor::take_changes`] and stored with the
/// batch's output records and input offsets.
pub trait Processor: Send {
    /// Takes back the state the last checkpoint stored for the task's partitions.
    fn restore(&mut self, entries: Vec<StateEntry>) -> Result<(), String>;
    /// The task reads `partitions` from `now_ms` (wall clock) on; called once its
    /// state is restored.
    fn assign(&mut self, partitions: &[i32], now_ms: i64) {
        let _ = (partitions, now_ms);
    }
    /// Runs the records, in input order; `now_ms` is the wall clock.
    fn process(&mut self, records: Vec<Record>, now_ms: i64, out: &mut Processed);
    /// Fires the wall-clock timers due at `now_ms`: called while the input is idle, so
    /// that windows close on an idle topic too. A processor without timers has none.
    fn fire_timers(&mut self, now_ms: i64, out: &mut Processed) {
        let _ = (now_ms, out);
    }
    /// The state changes since the last call, to be checkpointed.
    fn take_changes(&mut self) -> Vec<StateChange>;
    /// Whether a record it emits with a topic goes to that topic (it routes per record);
    /// else, and for records without one, results go to the connector's `topic`.
    fn routes_records(&self) -> bool {
        false
    }
    /// Why the last `assign`, `process` or `fire_timers` failed as a whole, if it did:
    /// a processor that runs a plugin can (a trap, an error it returned). What that
    /// call produced is then dropped, and the task fails and starts again from its
    /// last checkpoint. Built-in processors do not fail so.
    fn take_failure(&mut self) -> Option<crate::runtime::PluginFailure> {
        None
    }
    /// The topics the processor reads as tables: every task reads them whole, from
    /// their beginning, before its first batch, and what is new in them before each
    /// batch. They are not part of the checkpoint.
    fn tables(&self) -> Vec<Table> {
        Vec::new()
    }
    /// Takes records of the table topic `topic`, in offset order per partition; an
    /// error (the table outgrew its bound) fails the task with the message.
    fn update_table(&mut self, topic: &str, records: Vec<Record>) -> Result<(), String> {
        let _ = (topic, records);
        Ok(())
    }
}

/// The wall clock in milliseconds since the epoch.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}
