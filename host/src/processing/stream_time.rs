//! Stream time per input partition: the newest event time read from it. It moves only
//! with records, so windows and horizons measured in it do not depend on when a
//! batch runs. Checkpointed in the store `stream-time`, one entry per partition.

use std::collections::{HashMap, HashSet};

use crate::transport::{StateChange, StateEntry};

/// The store of the stream times.
pub(super) const STORE: &str = "stream-time";

/// The stream times of a task's partitions, and which changed since the checkpoint.
#[derive(Debug, Default)]
pub(super) struct StreamTimes {
    times: HashMap<i32, i64>,
    changed: HashSet<i32>,
}

impl StreamTimes {
    /// The partition's stream time (`i64::MIN` before its first record).
    pub(super) fn get(&self, partition: i32) -> i64 {
        self.times.get(&partition).copied().unwrap_or(i64::MIN)
    }

    /// Moves the partition's stream time up to `time`; returns the stream time.
    pub(super) fn advance(&mut self, partition: i32, time: i64) -> i64 {
        let current = self.get(partition);
        if time > current {
            self.times.insert(partition, time);
            self.changed.insert(partition);
            return time;
        }
        current
    }

    /// Takes back one stored entry of [`STORE`].
    pub(super) fn restore(&mut self, entry: &StateEntry) -> Result<(), String> {
        let time = std::str::from_utf8(&entry.value).ok().and_then(|text| text.parse::<i64>().ok());
        let time = time.ok_or_else(|| format!("the stored stream time of partition {} is damaged", entry.partition))?;
        self.times.insert(entry.partition, time);
        Ok(())
    }

    /// The changes since the last call, to be checkpointed.
    pub(super) fn take_changes(&mut self) -> Vec<StateChange> {
        self.changed
            .drain()
            .map(|partition| StateChange {
                store: STORE.to_owned(),
                partition,
                key: Vec::new(),
                value: self.times.get(&partition).map(|time| time.to_string().into_bytes()),
            })
            .collect()
    }
}
