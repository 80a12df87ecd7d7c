//! The state and timers of a WASM stream processor's task (WIT `state` and `timers`):
//! named key-value stores per input partition, keys that expire, event-time and
//! wall-clock timers, and the stream time of each partition. All of it lives in
//! memory, bounded, and what changed since the last checkpoint is taken as
//! [`StateChange`]s, stored with the batch's output records and input offsets.
//!
//! Layout in the checkpoint (one [`StateEntry`] per item, by input partition):
//! - the plugin's stores: its keys and values as they are;
//! - [`EXPIRY_STORE`]: `store NUL key` -> the expiry time, decimal milliseconds;
//! - [`TIMERS_STORE`]: `e:name` or `w:name` (event time, wall clock) -> the time;
//! - [`STREAM_TIME_STORE`]: `time` -> the partition's stream time.

use std::collections::{BTreeMap, BTreeSet};

use crate::transport::{StateChange, StateEntry};

/// The host's store of key expiry times.
pub const EXPIRY_STORE: &str = "expiry";
/// The host's store of timers.
pub const TIMERS_STORE: &str = "timers";
/// The host's store of stream times.
pub const STREAM_TIME_STORE: &str = "stream-time";
/// The longest store name a plugin may use.
pub const MAX_STORE_NAME: usize = 64;
/// The longest key.
pub const MAX_KEY_BYTES: usize = 4 << 10;
/// The largest value.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// The most state one input partition may hold: its keys, values, expiry times and
/// timers, with their bookkeeping. Per partition, so that the state a task restores
/// always fits, whatever share of the partitions it has.
pub const MAX_STATE_BYTES: usize = 256 << 20;
/// The most timers one input partition may have set.
pub const MAX_TIMERS: usize = 1_000_000;
/// The longest timer name.
pub const MAX_TIMER_NAME: usize = 256;
/// The most entries one scan returns.
pub const MAX_SCAN: usize = 1_000;
/// The most bytes of keys and values one scan returns (past the first entry).
pub const MAX_SCAN_BYTES: usize = 16 << 20;
/// What an entry costs beyond its bytes, for the bound on a partition's state.
const ENTRY_OVERHEAD: usize = 64;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerClock {
    /// The partition's stream time.
    EventTime,
    /// The wall clock.
    WallClock,
}

impl TimerClock {
    fn prefix(self) -> &'static str {
        match self {
            TimerClock::EventTime => "e:",
            TimerClock::WallClock => "w:",
        }
    }
}

/// A timer that came due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    /// Its input partition.
    pub partition: i32,
    /// The processor's name for it.
    pub name: String,
    /// Its clock.
    pub clock: TimerClock,
    /// When it was set to fire.
    pub at_ms: i64,
}

/// (store, partition, key).
type Slot = (String, i32, Vec<u8>);

/// The state of one task of a WASM processor.
#[derive(Debug, Default)]
pub struct KeyedState {
    partitions: BTreeSet<i32>,
    entries: BTreeMap<Slot, Vec<u8>>,
    /// When each expiring entry expires, and the same ordered by time.
    expiry: BTreeMap<Slot, i64>,
    expiring: BTreeSet<(i64, Slot)>,
    /// Timers by (partition, clock, name), and the same ordered by time per clock.
    timers: BTreeMap<(i32, TimerClock, String), i64>,
    event_due: BTreeSet<(i32, i64, String)>,
    wall_due: BTreeSet<(i64, i32, String)>,
    /// How many timers each partition has set.
    timer_counts: BTreeMap<i32, usize>,
    stream_times: BTreeMap<i32, i64>,
    /// Changes since the last checkpoint, the newest per slot.
    dirty: BTreeMap<Slot, Option<Vec<u8>>>,
    /// What each partition's state costs, against [`MAX_STATE_BYTES`].
    bytes: BTreeMap<i32, usize>,
    /// Whether the next [`KeyedState::before_record`] is the first of a `process` call.
    first_of_call: bool,
    /// What `before_record` answered in the current call: how many records it let
    /// through, and whether it then said stop.
    records_let_through: usize,
    said_stop: bool,
}

fn cost(slot: &Slot, value: &[u8]) -> usize {
    slot.0.len() + slot.2.len() + value.len() + ENTRY_OVERHEAD
}

/// An expiry time is kept twice (by slot, by time) and checkpointed under its slot.
fn expiry_cost(slot: &Slot) -> usize {
    3 * (slot.0.len() + slot.2.len()) + 2 * ENTRY_OVERHEAD
}

/// A timer is kept twice (by name, by time) and checkpointed under its name.
fn timer_cost(name: &str) -> usize {
    3 * name.len() + 2 * ENTRY_OVERHEAD
}

fn decimal(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn full(partition: i32, held: usize) -> String {
    format!(
        "the processor's state of partition {partition} would pass {} MiB (it holds {} MiB): delete keys, give them a TTL or cancel timers",
        MAX_STATE_BYTES >> 20,
        held >> 20
    )
}

/// Whether `store` is a name a plugin may use; the reason if not.
pub fn check_store(store: &str) -> Result<(), String> {
    if store.is_empty() || store.len() > MAX_STORE_NAME {
        return Err(format!("a state store's name has 1 to {MAX_STORE_NAME} characters"));
    }
    if !store.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)) {
        return Err(format!("the state store name {} may hold only a-z, 0-9, '.', '_' and '-'", crate::names::shown(store)));
    }
    if [EXPIRY_STORE, TIMERS_STORE, STREAM_TIME_STORE].contains(&store) {
        return Err(format!("the state store name {store} is the host's own"));
    }
    Ok(())
}

impl KeyedState {
    /// The state a checkpoint stored for the task's partitions.
    pub fn restore(entries: Vec<StateEntry>) -> Result<Self, String> {
        let mut state = Self::default();
        let mut expiries = Vec::new();
        for StateEntry { store, partition, key, value } in entries {
            match store.as_str() {
                EXPIRY_STORE => expiries.push((partition, key, value)),
                TIMERS_STORE => {
                    let at = decimal(&value).ok_or("a timer's time is not a number")?;
                    let text = String::from_utf8(key).map_err(|_| "a timer's name is not UTF-8")?;
                    let (clock, name) = match text.split_at_checked(2) {
                        Some(("e:", name)) => (TimerClock::EventTime, name),
                        Some(("w:", name)) => (TimerClock::WallClock, name),
                        _ => return Err(format!("the timer entry {} names no clock", crate::names::shown(&text))),
                    };
                    state.insert_timer(partition, clock, name.to_owned(), at);
                }
                STREAM_TIME_STORE => {
                    state.stream_times.insert(partition, decimal(&value).ok_or("a stream time is not a number")?);
                }
                _ => {
                    let slot = (store, partition, key);
                    *state.bytes.entry(partition).or_default() += cost(&slot, &value);
                    state.entries.insert(slot, value);
                }
            }
        }
        for (partition, key, value) in expiries {
            let at = decimal(&value).ok_or("an expiry time is not a number")?;
            let split = key.iter().position(|byte| *byte == 0).ok_or("an expiry entry names no store")?;
            let store = String::from_utf8(key[..split].to_vec()).map_err(|_| "an expiry entry's store is not UTF-8")?;
            let slot = (store, partition, key[split + 1..].to_vec());
            // An expiry whose entry is gone (a crash cannot cause it, a changed plugin can) is dropped.
            if state.entries.contains_key(&slot) {
                state.insert_expiry(slot, at);
            }
        }
        state.first_of_call = true;
        Ok(state)
    }

    /// Sets the partitions the task reads: the only ones its calls may name.
    pub fn assign(&mut self, partitions: &[i32]) {
        self.partitions = partitions.iter().copied().collect();
    }

    /// The partitions the task reads.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.iter().copied().collect()
    }

    /// Whether the task reads `partition`.
    pub fn owns(&self, partition: i32) -> bool {
        self.partitions.contains(&partition)
    }

    /// The bytes of state `partition` holds, as counted against [`MAX_STATE_BYTES`].
    pub fn bytes(&self, partition: i32) -> usize {
        self.bytes.get(&partition).copied().unwrap_or(0)
    }

    /// Counts `added` bytes more and `freed` fewer for `partition`, unless that passes
    /// [`MAX_STATE_BYTES`] (freeing is always allowed).
    fn charge(&mut self, partition: i32, freed: usize, added: usize) -> Result<(), String> {
        let held = self.bytes(partition);
        let after = held.saturating_sub(freed) + added;
        if added > freed && after > MAX_STATE_BYTES {
            return Err(full(partition, held));
        }
        self.bytes.insert(partition, after);
        Ok(())
    }

    /// The value of `key`, unless absent or expired at `now_ms`.
    pub fn get(&self, store: &str, partition: i32, key: &[u8], now_ms: i64) -> Option<Vec<u8>> {
        let slot = (store.to_owned(), partition, key.to_vec());
        if self.expiry.get(&slot).is_some_and(|at| *at <= now_ms) {
            return None;
        }
        self.entries.get(&slot).cloned()
    }

    /// Sets `key`, expiring at `expires_at_ms` when given (else never); Err when the
    /// partition's state would pass [`MAX_STATE_BYTES`].
    pub fn put(&mut self, store: &str, partition: i32, key: Vec<u8>, value: Vec<u8>, expires_at_ms: Option<i64>) -> Result<(), String> {
        let slot = (store.to_owned(), partition, key);
        let mut freed = self.entries.get(&slot).map_or(0, |old| cost(&slot, old));
        if self.expiry.contains_key(&slot) {
            freed += expiry_cost(&slot);
        }
        let added = cost(&slot, &value) + expires_at_ms.map_or(0, |_| expiry_cost(&slot));
        self.charge(partition, freed, added)?;
        if let Some(at) = self.expiry.remove(&slot) {
            self.expiring.remove(&(at, slot.clone()));
            if expires_at_ms.is_none() {
                self.dirty.insert(expiry_slot(&slot), None);
            }
        }
        if let Some(at) = expires_at_ms {
            self.expiring.insert((at, slot.clone()));
            self.expiry.insert(slot.clone(), at);
            self.dirty.insert(expiry_slot(&slot), Some(at.to_string().into_bytes()));
        }
        self.dirty.insert(slot.clone(), Some(value.clone()));
        self.entries.insert(slot, value);
        Ok(())
    }

    fn insert_expiry(&mut self, slot: Slot, at: i64) {
        *self.bytes.entry(slot.1).or_default() += expiry_cost(&slot);
        if let Some(old) = self.expiry.insert(slot.clone(), at) {
            self.expiring.remove(&(old, slot.clone()));
            *self.bytes.entry(slot.1).or_default() -= expiry_cost(&slot);
        }
        self.expiring.insert((at, slot));
    }

    /// Removes `key`.
    pub fn delete(&mut self, store: &str, partition: i32, key: &[u8]) {
        let slot = (store.to_owned(), partition, key.to_vec());
        self.remove(&slot);
    }

    fn remove(&mut self, slot: &Slot) {
        if let Some(old) = self.entries.remove(slot) {
            let freed = cost(slot, &old);
            let _ = self.charge(slot.1, freed, 0);
            self.dirty.insert(slot.clone(), None);
        }
        if let Some(at) = self.expiry.remove(slot) {
            self.expiring.remove(&(at, slot.clone()));
            let _ = self.charge(slot.1, expiry_cost(slot), 0);
            self.dirty.insert(expiry_slot(slot), None);
        }
    }

    /// Up to `limit` live entries of `store` and `partition` whose keys start with
    /// `prefix`, after `after`, in key order; at most [`MAX_SCAN`] entries and, past
    /// the first, [`MAX_SCAN_BYTES`].
    pub fn scan(
        &self,
        store: &str,
        partition: i32,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        now_ms: i64,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        use std::ops::Bound;
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded((store.to_owned(), partition, after.to_vec())),
            _ => Bound::Included((store.to_owned(), partition, prefix.to_vec())),
        };
        let mut page = Vec::new();
        let mut bytes = 0;
        let found = self
            .entries
            .range((start, Bound::Unbounded))
            .take_while(|((entry_store, entry_partition, key), _)| {
                entry_store == store && *entry_partition == partition && key.starts_with(prefix)
            })
            .filter(|(slot, _)| self.expiry.get(*slot).is_none_or(|at| *at > now_ms));
        for ((_, _, key), value) in found {
            bytes += key.len() + value.len();
            if page.len() >= limit.min(MAX_SCAN) || (!page.is_empty() && bytes > MAX_SCAN_BYTES) {
                break;
            }
            page.push((key.clone(), value.clone()));
        }
        page
    }

    /// Removes every entry expired at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        while self.expiring.first().is_some_and(|(at, _)| *at <= now_ms) {
            let Some((_, slot)) = self.expiring.pop_first() else { break };
            self.remove(&slot);
        }
    }

    /// Sets a timer (replacing the one of the same partition, clock and name); Err
    /// past [`MAX_TIMERS`] or [`MAX_STATE_BYTES`] for the partition.
    pub fn set_timer(&mut self, partition: i32, clock: TimerClock, name: String, at_ms: i64) -> Result<(), String> {
        if !self.timers.contains_key(&(partition, clock, name.clone())) {
            if self.timer_counts.get(&partition).copied().unwrap_or(0) >= MAX_TIMERS {
                return Err(format!("partition {partition} has {MAX_TIMERS} timers set, the most a partition may have"));
            }
            if self.bytes(partition) + timer_cost(&name) > MAX_STATE_BYTES {
                return Err(full(partition, self.bytes(partition)));
            }
        }
        self.dirty.insert(timer_slot(partition, clock, &name), Some(at_ms.to_string().into_bytes()));
        self.insert_timer(partition, clock, name, at_ms);
        Ok(())
    }

    fn insert_timer(&mut self, partition: i32, clock: TimerClock, name: String, at_ms: i64) {
        self.unschedule(partition, clock, &name);
        match clock {
            TimerClock::EventTime => self.event_due.insert((partition, at_ms, name.clone())),
            TimerClock::WallClock => self.wall_due.insert((at_ms, partition, name.clone())),
        };
        *self.bytes.entry(partition).or_default() += timer_cost(&name);
        *self.timer_counts.entry(partition).or_default() += 1;
        self.timers.insert((partition, clock, name), at_ms);
    }

    fn unschedule(&mut self, partition: i32, clock: TimerClock, name: &str) -> bool {
        let Some(at) = self.timers.remove(&(partition, clock, name.to_owned())) else {
            return false;
        };
        match clock {
            TimerClock::EventTime => self.event_due.remove(&(partition, at, name.to_owned())),
            TimerClock::WallClock => self.wall_due.remove(&(at, partition, name.to_owned())),
        };
        let _ = self.charge(partition, timer_cost(name), 0);
        if let Some(count) = self.timer_counts.get_mut(&partition) {
            *count = count.saturating_sub(1);
        }
        true
    }

    /// Removes a timer.
    pub fn cancel_timer(&mut self, partition: i32, clock: TimerClock, name: &str) {
        if self.unschedule(partition, clock, name) {
            self.dirty.insert(timer_slot(partition, clock, name), None);
        }
    }

    /// The stream time of `partition`.
    pub fn stream_time(&self, partition: i32) -> Option<i64> {
        self.stream_times.get(&partition).copied()
    }

    /// Moves the stream time of `partition` to `timestamp_ms` if that is newer.
    pub fn advance(&mut self, partition: i32, timestamp_ms: i64) {
        if self.owns(partition) && self.stream_times.get(&partition).is_none_or(|time| *time < timestamp_ms) {
            self.stream_times.insert(partition, timestamp_ms);
            let slot = (STREAM_TIME_STORE.to_owned(), partition, b"time".to_vec());
            self.dirty.insert(slot, Some(timestamp_ms.to_string().into_bytes()));
        }
    }

    /// Starts a `process` call: its first record always goes ahead.
    pub fn begin_call(&mut self) {
        self.first_of_call = true;
        self.records_let_through = 0;
        self.said_stop = false;
    }

    /// How many records the current call must have answered, given `given`: those
    /// `before_record` let through when it said stop, else all of them.
    pub fn records_to_answer(&self, given: usize) -> usize {
        if self.said_stop { self.records_let_through } else { given }
    }

    /// The processor is about to process a record of `partition` with `timestamp_ms`
    /// (WIT `timers.before-record`): false when an event-time timer is due and this is
    /// not the call's first record, and for every record after a false (the call then
    /// returns the outcomes of the records let through only, the host fires the timer
    /// and calls again from this record); else its partition's stream time moves to
    /// the record's timestamp if that is newer, and true.
    pub fn before_record(&mut self, partition: Option<i32>, timestamp_ms: Option<i64>) -> bool {
        if self.said_stop || (!std::mem::take(&mut self.first_of_call) && self.any_event_timer_due()) {
            self.said_stop = true;
            return false;
        }
        if let (Some(partition), Some(timestamp)) = (partition, timestamp_ms) {
            self.advance(partition, timestamp);
        }
        self.records_let_through += 1;
        true
    }

    /// Whether an event-time timer of any partition is due at its stream time.
    pub fn any_event_timer_due(&self) -> bool {
        self.stream_times.iter().any(|(&partition, &time)| {
            self.event_due
                .range((partition, i64::MIN, String::new())..)
                .next()
                .is_some_and(|(due_partition, at, _)| *due_partition == partition && *at <= time)
        })
    }

    /// Takes out up to `max` due timers: event-time ones at their partition's stream
    /// time in the order of their times, then wall-clock ones at `now_ms` (none when
    /// `wall_clock` is false) in theirs. Each is removed, so it fires once.
    pub fn take_due(&mut self, now_ms: i64, wall_clock: bool, max: usize) -> Vec<DueTimer> {
        let mut due = Vec::new();
        for (&partition, &time) in &self.stream_times {
            for (due_partition, at, name) in self.event_due.range((partition, i64::MIN, String::new())..).take(max) {
                if *due_partition != partition || *at > time {
                    break;
                }
                due.push(DueTimer { partition, name: name.clone(), clock: TimerClock::EventTime, at_ms: *at });
            }
        }
        due.sort_by(|a, b| (a.at_ms, a.partition, &a.name).cmp(&(b.at_ms, b.partition, &b.name)));
        due.truncate(max);
        if wall_clock {
            let room = max - due.len();
            let wall = self.wall_due.iter().take_while(|(at, _, _)| *at <= now_ms).take(room);
            due.extend(wall.map(|(at, partition, name)| DueTimer {
                partition: *partition,
                name: name.clone(),
                clock: TimerClock::WallClock,
                at_ms: *at,
            }));
        }
        for timer in &due {
            self.cancel_timer(timer.partition, timer.clock, &timer.name);
        }
        due
    }

    /// The changes since the last call, to be checkpointed.
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|((store, partition, key), value)| StateChange { store, partition, key, value })
            .collect()
    }
}

fn expiry_slot((store, partition, key): &Slot) -> Slot {
    let mut expiry_key = Vec::with_capacity(store.len() + 1 + key.len());
    expiry_key.extend_from_slice(store.as_bytes());
    expiry_key.push(0);
    expiry_key.extend_from_slice(key);
    (EXPIRY_STORE.to_owned(), *partition, expiry_key)
}

fn timer_slot(partition: i32, clock: TimerClock, name: &str) -> Slot {
    (TIMERS_STORE.to_owned(), partition, format!("{}{name}", clock.prefix()).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processing::testing::Durable;

    /// What the changes taken so far leave in a checkpoint.
    fn checkpoint(stored: &mut Durable, changes: Vec<StateChange>) -> Vec<StateEntry> {
        stored.apply(changes);
        stored.entries()
    }

    #[test]
    fn what_is_checkpointed_comes_back_with_its_expiry_timers_and_stream_time() {
        let mut state = KeyedState::default();
        state.assign(&[0, 1]);
        state.put("counts", 0, b"a".to_vec(), b"1".to_vec(), None).unwrap();
        state.put("counts", 1, b"b".to_vec(), b"2".to_vec(), Some(5_000)).unwrap();
        state.put("counts", 1, b"c".to_vec(), b"3".to_vec(), None).unwrap();
        state.delete("counts", 1, b"c");
        state.set_timer(0, TimerClock::EventTime, "a".into(), 60_000).unwrap();
        state.set_timer(1, TimerClock::WallClock, "b".into(), 9_000).unwrap();
        state.advance(0, 42_000);
        let mut stored = Durable::default();
        let entries = checkpoint(&mut stored, state.take_changes());
        assert_eq!(entries.len(), 6, "{entries:?}");

        let mut restored = KeyedState::restore(entries).unwrap();
        restored.assign(&[0, 1]);
        assert_eq!(restored.get("counts", 0, b"a", 0), Some(b"1".to_vec()));
        assert_eq!(restored.get("counts", 1, b"b", 4_999), Some(b"2".to_vec()));
        assert_eq!(restored.get("counts", 1, b"b", 5_000), None, "expired");
        assert_eq!(restored.get("counts", 1, b"c", 0), None);
        assert_eq!(restored.stream_time(0), Some(42_000));
        assert_eq!((restored.bytes(0), restored.bytes(1)), (state.bytes(0), state.bytes(1)));
        assert!(!restored.any_event_timer_due());
        restored.advance(0, 60_000);
        assert!(restored.any_event_timer_due());
        let due = restored.take_due(9_000, true, 100);
        let names: Vec<(i32, &str, TimerClock, i64)> =
            due.iter().map(|timer| (timer.partition, timer.name.as_str(), timer.clock, timer.at_ms)).collect();
        assert_eq!(names, vec![(0, "a", TimerClock::EventTime, 60_000), (1, "b", TimerClock::WallClock, 9_000)]);
        assert!(restored.take_due(i64::MAX, true, 100).is_empty(), "each timer fires once");

        // Expiry removes the key from the checkpoint too.
        restored.expire(5_000);
        let entries = checkpoint(&mut stored, restored.take_changes());
        let stores: Vec<(&str, &[u8])> = entries.iter().map(|entry| (entry.store.as_str(), entry.key.as_slice())).collect();
        assert_eq!(stores, vec![("counts", b"a".as_slice()), ("stream-time", b"time".as_slice())]);
    }

    #[test]
    fn timers_replace_cancel_and_fire_in_time_order_within_the_bound() {
        let mut state = KeyedState::default();
        state.assign(&[0, 1]);
        for (partition, name, at) in [(0, "x", 30), (0, "y", 10), (1, "z", 20), (0, "x", 5)] {
            state.set_timer(partition, TimerClock::EventTime, name.into(), at).unwrap();
        }
        state.set_timer(1, TimerClock::EventTime, "gone".into(), 1).unwrap();
        state.cancel_timer(1, TimerClock::EventTime, "gone");
        state.advance(0, 100);
        state.advance(1, 100);
        let first = state.take_due(0, false, 2);
        assert_eq!(first.iter().map(|timer| timer.name.as_str()).collect::<Vec<_>>(), vec!["x", "y"]);
        let rest = state.take_due(0, false, 10);
        assert_eq!(rest.iter().map(|timer| (timer.name.as_str(), timer.at_ms)).collect::<Vec<_>>(), vec![("z", 20)]);
    }

    #[test]
    fn scans_page_by_prefix_and_the_state_is_bounded() {
        let mut state = KeyedState::default();
        state.assign(&[3]);
        for key in ["a1", "a2", "a3", "b1"] {
            state.put("s", 3, key.as_bytes().to_vec(), key.as_bytes().to_vec(), None).unwrap();
        }
        state.put("t", 3, b"a9".to_vec(), b"other store".to_vec(), None).unwrap();
        let keys = |page: Vec<(Vec<u8>, Vec<u8>)>| page.into_iter().map(|(key, _)| String::from_utf8(key).unwrap()).collect::<Vec<_>>();
        assert_eq!(keys(state.scan("s", 3, b"a", None, 2, 0)), vec!["a1", "a2"]);
        assert_eq!(keys(state.scan("s", 3, b"a", Some(b"a2"), 2, 0)), vec!["a3"]);
        assert_eq!(keys(state.scan("s", 3, b"", None, 10, 0)), vec!["a1", "a2", "a3", "b1"]);

        let big = vec![0u8; MAX_VALUE_BYTES];
        let mut stored = 0;
        let refused = loop {
            match state.put("s", 3, stored.to_string().into_bytes(), big.clone(), None) {
                Ok(()) => stored += 1,
                Err(reason) => break reason,
            }
        };
        assert_eq!(stored, 255, "{refused}");
        assert!(refused.contains("256 MiB"), "{refused}");
        // Replacing a value within the bound is still allowed, deleting frees room.
        state.put("s", 3, b"0".to_vec(), vec![1], None).unwrap();
        state.put("s", 3, b"new".to_vec(), big, None).unwrap();
    }

    #[test]
    fn store_names_keep_to_one_alphabet_and_leave_the_hosts_alone() {
        assert!(check_store("counts.v2_a-b").is_ok());
        for bad in ["", "Counts", "a/b", "timers", "expiry", "stream-time", &"a".repeat(65)] {
            assert!(check_store(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_call_stops_before_the_record_after_the_one_that_made_a_timer_due() {
        // Silence of 5 min: d1 at 0 (timer at 5 min), d2 at 10 min, d1 at 10 min + 1.
        let mut state = KeyedState::default();
        state.assign(&[0]);
        state.begin_call();
        assert!(state.before_record(Some(0), Some(0)));
        state.set_timer(0, TimerClock::EventTime, "d1".into(), 300_000).unwrap();
        assert!(state.before_record(Some(0), Some(600_000)), "d1's timer comes due with this record: it goes ahead");
        assert_eq!(state.stream_time(0), Some(600_000));
        assert!(!state.before_record(Some(0), Some(600_001)), "the timer fires before the next record");
        assert_eq!(state.stream_time(0), Some(600_000), "a record not processed does not move stream time");
        assert!(!state.before_record(Some(0), Some(600_002)), "once stopped, the call stays stopped");
        assert_eq!(state.records_to_answer(4), 2, "the call answers the records let through");
        let due = state.take_due(0, false, 10);
        assert_eq!(due.iter().map(|timer| timer.name.as_str()).collect::<Vec<_>>(), vec!["d1"]);
        state.begin_call();
        assert!(state.before_record(Some(0), Some(600_001)));
        assert_eq!(state.records_to_answer(1), 1);
        // The first record of a call goes ahead even with a timer due (progress).
        state.set_timer(0, TimerClock::EventTime, "now".into(), 0).unwrap();
        state.begin_call();
        assert!(state.before_record(None, None));
        assert!(!state.before_record(None, None));
    }

    #[test]
    fn timers_and_expiry_times_count_against_the_partition_bound_and_are_freed() {
        let mut state = KeyedState::default();
        state.assign(&[0, 1]);
        state.put("s", 0, b"k".to_vec(), b"v".to_vec(), Some(10)).unwrap();
        let with_expiry = state.bytes(0);
        state.put("s", 0, b"k".to_vec(), b"v".to_vec(), None).unwrap();
        assert!(state.bytes(0) < with_expiry);
        state.set_timer(0, TimerClock::WallClock, "t".repeat(200), 5).unwrap();
        let with_timer = state.bytes(0);
        assert!(with_timer >= state.bytes(1) + 600, "{with_timer}");
        state.take_due(5, true, 10);
        state.delete("s", 0, b"k");
        assert_eq!((state.bytes(0), state.bytes(1)), (0, 0));
    }

    #[test]
    fn a_corrupt_checkpoint_is_refused_or_repaired_not_looped_on() {
        let entry = |store: &str, key: &[u8], value: &str| StateEntry {
            store: store.into(),
            partition: 0,
            key: key.to_vec(),
            value: value.as_bytes().to_vec(),
        };
        assert!(KeyedState::restore(vec![entry("timers", b"x:name", "1")]).is_err());
        assert!(KeyedState::restore(vec![entry("expiry", b"s\0k", "soon")]).is_err());
        assert!(KeyedState::restore(vec![entry("expiry", b"\xff\0k", "1")]).is_err());
        // An expiry without its entry is dropped; expiring an empty state ends.
        let mut state = KeyedState::restore(vec![entry("expiry", b"s\0k", "1"), entry("s", b"j", "v")]).unwrap();
        state.assign(&[0]);
        state.expire(i64::MAX);
        assert_eq!(state.get("s", 0, b"j", i64::MAX), Some(b"v".to_vec()));
    }
}
