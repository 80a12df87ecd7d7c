//! Stream time per input partition: the newest event time read from it. It moves only
//! with records, so windows and horizons measured in it do not depend on when a
//! batch runs. Checkpointed in the store `stream-time`, one entry per partition.
//!
//! Grouping by value fields, a group takes records from every partition, and the
//! partitions are read one after another (a batch may hold a minute of one partition
//! before the next is read): its clock is then the oldest stream time of the
//! partitions, as a watermark is, so that what a lagging partition still holds is
//! not late. A partition that gave nothing for a while (wall clock) holds it back no
//! longer, or one quiet partition would keep every window open. That clock never goes
//! back (a quiet partition that comes back, a restart): it is checkpointed too, and
//! what a returning partition brings from before it is late.

use std::collections::{HashMap, HashSet};

use crate::transport::{StateChange, StateEntry};

/// The store of the stream times.
pub(super) const STORE: &str = "stream-time";
/// The key of the shared clock in [`STORE`] (a partition's own stream time has none).
const SHARED: &[u8] = b"shared";
/// Grouping by fields, a partition quiet this long (wall clock) no longer holds back
/// the shared clock of processors without a wall-clock timeout of their own.
pub(super) const QUIET_PARTITION_MS: i64 = 60_000;

/// The stream times of a task's partitions, and which changed since the checkpoint.
#[derive(Debug, Default)]
pub(super) struct StreamTimes {
    times: HashMap<i32, i64>,
    changed: HashSet<i32>,
    /// When (wall clock, ms) each partition last gave a record, or was assigned.
    heard: HashMap<i32, i64>,
    /// The clock of groups fed by every partition (none before it first moved), and
    /// whether it moved since the checkpoint.
    shared: Option<i64>,
    shared_changed: bool,
}

impl StreamTimes {
    /// The partition's stream time (`i64::MIN` before its first record).
    pub(super) fn get(&self, partition: i32) -> i64 {
        self.times.get(&partition).copied().unwrap_or(i64::MIN)
    }

    /// The task reads `partitions` from `now_ms` on: until each gives a record or
    /// stays quiet for the idle time, the shared clock waits for it.
    pub(super) fn assign(&mut self, partitions: &[i32], now_ms: i64) {
        for partition in partitions {
            self.heard.insert(*partition, now_ms);
        }
    }

    /// The clock of groups fed by every partition, as last moved by [`Self::refresh_shared`].
    pub(super) fn shared(&self) -> i64 {
        self.shared.unwrap_or(i64::MIN)
    }

    /// Moves the shared clock up to the oldest stream time of the partitions heard
    /// from within `idle_ms` of `now_ms` (one assigned but still without a record
    /// holds it at the start), or the newest when all are quiet; it never goes back.
    pub(super) fn refresh_shared(&mut self, now_ms: i64, idle_ms: i64) -> i64 {
        let active = self.heard.iter().filter(|(_, heard)| now_ms.saturating_sub(**heard) < idle_ms);
        let oldest = active.map(|(partition, _)| self.get(*partition)).min();
        let candidate = oldest.unwrap_or_else(|| self.times.values().copied().max().unwrap_or(i64::MIN));
        if candidate > self.shared() {
            self.shared = Some(candidate);
            self.shared_changed = true;
        }
        self.shared()
    }

    /// Notes a record of `partition` at `now_ms` and moves its stream time up to
    /// `time`; returns the partition's stream time.
    pub(super) fn advance(&mut self, partition: i32, time: i64, now_ms: i64) -> i64 {
        self.heard.insert(partition, now_ms);
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
        if entry.key == SHARED {
            self.shared = Some(time);
        } else {
            self.times.insert(entry.partition, time);
        }
        Ok(())
    }

    /// The changes since the last call, to be checkpointed.
    pub(super) fn take_changes(&mut self) -> Vec<StateChange> {
        let mut changes: Vec<StateChange> = self
            .changed
            .drain()
            .map(|partition| StateChange {
                store: STORE.to_owned(),
                partition,
                key: Vec::new(),
                value: self.times.get(&partition).map(|time| time.to_string().into_bytes()),
            })
            .collect();
        if std::mem::take(&mut self.shared_changed) {
            // Kept with partition 0, where groups fed by every partition keep theirs.
            let value = self.shared.map(|time| time.to_string().into_bytes());
            changes.push(StateChange { store: STORE.to_owned(), partition: 0, key: SHARED.to_vec(), value });
        }
        changes
    }
}
