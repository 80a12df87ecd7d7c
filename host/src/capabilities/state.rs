//! `state` and `timers`: the state and timers of a stream-processor task (WIT 0.1.4),
//! kept by the host in the task's [`KeyedState`] and checkpointed with its batches.
//! Every call is checked against the task's partitions and the bounds of
//! `processing::keyed_state`; a call past one traps, so the task fails with the
//! reason and restarts from its last checkpoint, and a plugin of another kind that
//! imports these interfaces traps on its first call.

use crate::processing::keyed_state::{self, KeyedState, MAX_KEY_BYTES, MAX_TIMER_NAME, MAX_VALUE_BYTES, TimerClock};
use crate::processing::wall_clock_ms;
use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::{state, timers};

fn refused(reason: String) -> wasmtime::Error {
    wasmtime::format_err!("{reason}")
}

impl TaskState {
    /// The task's state, after checking that `partition` is one of its partitions.
    fn keyed_state(&mut self, partition: i32) -> wasmtime::Result<&mut KeyedState> {
        // Not counted against MAX_CAPABILITY_CALLS: a state call is a lookup in memory
        // (a batch makes several per record), bounded by the call's deadline.
        let state = self
            .keyed_state
            .as_mut()
            .ok_or_else(|| refused("only a stream processor has state and timers (WIT `state`, `timers`)".to_owned()))?;
        if !state.owns(partition) {
            return Err(refused(format!("partition {partition} is not one of this task's input partitions {:?}", state.partitions())));
        }
        Ok(state)
    }

    /// The task's state for a call on `store` and `key` of `partition`, after checking them.
    fn keyed_store(&mut self, store: &str, partition: i32, key: &[u8]) -> wasmtime::Result<&mut KeyedState> {
        keyed_state::check_store(store).map_err(refused)?;
        if key.len() > MAX_KEY_BYTES {
            return Err(refused(format!("a state key has at most {} KiB; this one has {} bytes", MAX_KEY_BYTES >> 10, key.len())));
        }
        self.keyed_state(partition)
    }
}

impl state::Host for TaskState {
    fn get(&mut self, store: String, partition: i32, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.keyed_store(&store, partition, &key)?.get(&store, partition, &key, wall_clock_ms()))
    }

    fn put(&mut self, store: String, partition: i32, key: Vec<u8>, value: Vec<u8>, ttl_millis: Option<u64>) -> wasmtime::Result<()> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(refused(format!("a state value has at most {} MiB; this one has {} bytes", MAX_VALUE_BYTES >> 20, value.len())));
        }
        let expires_at = ttl_millis.map(|ttl| wall_clock_ms().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
        self.keyed_store(&store, partition, &key)?.put(&store, partition, key, value, expires_at).map_err(refused)
    }

    fn delete(&mut self, store: String, partition: i32, key: Vec<u8>) -> wasmtime::Result<()> {
        self.keyed_store(&store, partition, &key)?.delete(&store, partition, &key);
        Ok(())
    }

    fn scan(
        &mut self,
        store: String,
        partition: i32,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: u32,
    ) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if after.as_ref().is_some_and(|after| after.len() > MAX_KEY_BYTES) {
            return Err(refused(format!("a state key has at most {} KiB", MAX_KEY_BYTES >> 10)));
        }
        let state = self.keyed_store(&store, partition, &prefix)?;
        Ok(state.scan(&store, partition, &prefix, after.as_deref(), limit as usize, wall_clock_ms()))
    }
}

fn clock(clock: timers::Clock) -> TimerClock {
    match clock {
        timers::Clock::EventTime => TimerClock::EventTime,
        timers::Clock::WallClock => TimerClock::WallClock,
    }
}

fn check_timer_name(name: &str) -> wasmtime::Result<()> {
    if name.len() > MAX_TIMER_NAME {
        return Err(refused(format!("a timer's name has at most {MAX_TIMER_NAME} bytes; this one has {}", name.len())));
    }
    Ok(())
}

impl timers::Host for TaskState {
    fn set(&mut self, timer: timers::Timer) -> wasmtime::Result<()> {
        check_timer_name(&timer.name)?;
        self.keyed_state(timer.partition)?.set_timer(timer.partition, clock(timer.clock), timer.name, timer.at_millis).map_err(refused)
    }

    fn cancel(&mut self, partition: i32, name: String, timer_clock: timers::Clock) -> wasmtime::Result<()> {
        check_timer_name(&name)?;
        self.keyed_state(partition)?.cancel_timer(partition, clock(timer_clock), &name);
        Ok(())
    }

    fn stream_time(&mut self, partition: i32) -> wasmtime::Result<Option<i64>> {
        Ok(self.keyed_state(partition)?.stream_time(partition))
    }

    fn before_record(&mut self, partition: Option<i32>, timestamp: Option<i64>) -> wasmtime::Result<bool> {
        let state = match partition {
            Some(partition) => self.keyed_state(partition)?,
            None => self.keyed_state.as_mut().ok_or_else(|| refused("only a stream processor has timers".to_owned()))?,
        };
        Ok(state.before_record(partition, timestamp))
    }
}
