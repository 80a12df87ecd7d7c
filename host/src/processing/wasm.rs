//! Custom stream processors: WASM components that export `stream-processor` (WIT
//! 0.1.4). The host keeps their state and timers ([`KeyedState`]) and checkpoints
//! them like a built-in processor's; the component decides what each record becomes.
//!
//! Event time is per record: the component calls `timers.before-record` before each
//! record (the SDK does), which moves its partition's stream time; when an event-time
//! timer came due after the records before, the call stops there, the host fires the
//! timer and calls again with the rest. So a timer fires between the record that made
//! it due and the next one, whatever the batching. Wall-clock timers fire after each
//! batch and while the input is idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasm_connect_protocol::Record;

use super::keyed_state::KeyedState;
use super::{Processed, Processor};
use crate::runtime::{LoadedPlugin, PluginFailure, ProcessorInstance, ProcessorOutcome, Runtime, TaskAccess, TaskIdentity};
use crate::telemetry::Metrics;
use crate::transforms::wasm::{MAX_OUTPUT_BYTES, shorten};
use crate::transport::{StateChange, StateEntry};

/// The most timers handed to one `on-timer` call.
const TIMERS_PER_CALL: usize = 10_000;
/// The most `on-timer` calls of one batch beyond the first after each `process` call:
/// a processor that keeps setting timers already due from `on-timer` gets the rest at
/// the next batch or idle tick, and the task goes on.
const EXTRA_TIMER_ROUNDS: usize = 100;
/// The most bytes of records one batch (or idle tick) may emit.
const MAX_BATCH_OUTPUT_BYTES: usize = 256 << 20;
/// The fewest records given to a `process` call after one stopped at a timer.
const MIN_CHUNK: usize = 16;

/// One task of a WASM stream processor.
pub struct WasmProcessor {
    instance: ProcessorInstance,
    identity: TaskIdentity,
    metrics: Option<Arc<Metrics>>,
    config: Vec<(String, String)>,
    /// How long one call may run: also how long all the calls of one batch may run.
    call_timeout: Duration,
    /// Why the last call failed; the task fails with it.
    failure: Option<PluginFailure>,
}

impl WasmProcessor {
    /// Instantiates `plugin` for one task (its `open` comes with the partitions).
    pub fn new(
        runtime: &Runtime,
        plugin: &LoadedPlugin,
        identity: TaskIdentity,
        access: TaskAccess,
        config: Vec<(String, String)>,
    ) -> Result<Self, PluginFailure> {
        let metrics = access.metrics.clone();
        let instance = ProcessorInstance::new(runtime, plugin, identity.clone(), access)?;
        Ok(Self { instance, identity, metrics, config, call_timeout: runtime.limits.call_timeout, failure: None })
    }

    fn state(&mut self) -> Result<&mut KeyedState, PluginFailure> {
        self.instance.keyed_state().as_mut().ok_or_else(|| PluginFailure::Fatal("the processor's state was not restored".to_owned()))
    }

    fn timed<T>(&mut self, call: &str, work: impl FnOnce(&mut ProcessorInstance) -> T) -> T {
        let started = Instant::now();
        let result = work(&mut self.instance);
        if let Some(metrics) = &self.metrics {
            metrics.plugin_call(&self.identity, call, started.elapsed());
        }
        result
    }

    /// Runs `records` through the component's `process`, sorting each record it
    /// answered by its outcome; returns how many it answered (it may stop early, at a
    /// timer that came due).
    fn process_chunk(&mut self, records: &[Record], out: &mut Processed, budget: &mut Budget) -> Result<usize, PluginFailure> {
        let batch = wasm_connect_protocol::encode(records);
        let (outcomes, output) = self.timed("process", |instance| instance.process(batch)).map_err(contract)?;
        let broken = |why: String| PluginFailure::InvalidOutput(format!("the processor {why}"));
        let wanted = self.state()?.records_to_answer(records.len());
        if outcomes.len() != wanted || wanted == 0 {
            return Err(broken(format!(
                "returned {} outcomes for {} records; one per record is due, up to where before-record said to stop ({wanted})",
                outcomes.len(),
                records.len()
            )));
        }
        let mut written = budget.decode(&output)?.into_iter();
        let promised: u64 = outcomes.iter().map(|outcome| if let ProcessorOutcome::Many(n) = outcome { u64::from(*n) } else { 0 }).sum();
        if promised != written.len() as u64 {
            return Err(broken(format!("said it wrote {promised} records and returned {}", written.len())));
        }
        let answered = outcomes.len();
        for (record, outcome) in records.iter().zip(outcomes) {
            match outcome {
                // Unchanged, but to the connector's topic, not back to the one it came from.
                ProcessorOutcome::Keep => out.records.push(Record { topic: String::new(), ..record.clone() }),
                ProcessorOutcome::Drop => {}
                ProcessorOutcome::Many(count) => out.records.extend(written.by_ref().take(count as usize)),
                ProcessorOutcome::Fail(mut reason) => {
                    shorten(&mut reason);
                    out.failed.push((record.clone(), reason));
                }
                ProcessorOutcome::Late(mut reason) => {
                    shorten(&mut reason);
                    out.late.push((record.clone(), reason));
                }
            }
        }
        Ok(answered)
    }

    /// Fires what is due: event-time timers, and wall-clock ones at `now_ms` when
    /// `wall_clock`. Timers that `on-timer` sets already due fire in further rounds,
    /// as many as the batch's budget allows; the rest wait for the next batch.
    fn fire(&mut self, now_ms: i64, wall_clock: bool, out: &mut Processed, budget: &mut Budget) -> Result<(), PluginFailure> {
        for round in 0.. {
            if round > 0 && budget.extra_timer_rounds == 0 {
                break;
            }
            let due = self.state()?.take_due(now_ms, wall_clock, TIMERS_PER_CALL);
            if due.is_empty() {
                break;
            }
            if round > 0 {
                budget.extra_timer_rounds -= 1;
            }
            let output = self.timed("on-timer", |instance| instance.on_timer(&due)).map_err(contract)?;
            out.records.extend(budget.decode(&output)?);
        }
        Ok(())
    }

    fn run(&mut self, records: Vec<Record>, now_ms: i64, out: &mut Processed) -> Result<(), PluginFailure> {
        self.state()?.expire(now_ms);
        // State and timers are kept per input partition: a record a transform made
        // without one (or with another) cannot be processed.
        let state = self.state()?;
        let (records, orphans): (Vec<Record>, Vec<Record>) =
            records.into_iter().partition(|record| record.partition.is_some_and(|partition| state.owns(partition)));
        for record in orphans {
            let reason = format!(
                "the record has no input partition of this task ({:?}): a transform before the processor made it; a processor \
                 keeps its state per input partition, so a transform must keep the record's partition",
                record.partition
            );
            out.failed.push((record, reason));
        }
        let mut budget = Budget::new(self.call_timeout);
        let (mut start, mut chunk) = (0, records.len());
        while start < records.len() {
            let given = chunk.min(records.len() - start);
            self.state()?.begin_call();
            let answered = self.process_chunk(&records[start..start + given], out, &mut budget)?;
            // A processor that does not call `before-record` moves stream time by the call.
            let state = self.state()?;
            for record in &records[start..start + answered] {
                if let (Some(partition), Some(timestamp)) = (record.partition, record.timestamp) {
                    state.advance(partition, timestamp);
                }
            }
            start += answered;
            // It stopped at a timer: the next timers are likely as close, so the rest
            // of the batch goes in smaller calls (each call encodes what it is given).
            chunk = if answered < given { (answered * 2).max(MIN_CHUNK) } else { chunk.saturating_mul(2) };
            self.fire(now_ms, false, out, &mut budget)?;
        }
        self.fire(now_ms, true, out, &mut budget)
    }

    fn remember(&mut self, result: Result<(), PluginFailure>) {
        if let Err(failure) = result {
            self.failure.get_or_insert(failure);
        }
    }
}

/// What one batch (or one idle tick) may cost: its output, the timer rounds beyond
/// the first of each firing, and time: all its calls together may run as long as one
/// call may, so that a batch cut into many calls cannot hold the task (and its stop)
/// for many deadlines.
struct Budget {
    output_bytes: usize,
    extra_timer_rounds: usize,
    started: Instant,
    call_timeout: Duration,
}

impl Budget {
    fn new(call_timeout: Duration) -> Self {
        Self { output_bytes: MAX_BATCH_OUTPUT_BYTES, extra_timer_rounds: EXTRA_TIMER_ROUNDS, started: Instant::now(), call_timeout }
    }

    /// The records of one call, counted against the batch's output; the batch's time
    /// is checked too.
    fn decode(&mut self, batch: &[u8]) -> Result<Vec<Record>, PluginFailure> {
        if self.started.elapsed() > self.call_timeout {
            return Err(PluginFailure::TimedOut(self.call_timeout));
        }
        if batch.len() > MAX_OUTPUT_BYTES || batch.len() > self.output_bytes {
            return Err(PluginFailure::InvalidOutput(format!(
                "the processor returned more than {} MiB of records from one call or {} MiB from one batch",
                MAX_OUTPUT_BYTES >> 20,
                MAX_BATCH_OUTPUT_BYTES >> 20
            )));
        }
        self.output_bytes -= batch.len();
        let records = wasm_connect_protocol::decode(batch)
            .map_err(|error| PluginFailure::InvalidOutput(format!("the processor returned a batch the host cannot read: {error}")))?;
        Ok(records.iter().map(|record| record.to_owned()).collect())
    }
}

/// A failed call, with what breaks the processor contract said so.
fn contract(failure: PluginFailure) -> PluginFailure {
    match failure {
        PluginFailure::BadRecord { index, reason } => PluginFailure::InvalidOutput(format!(
            "the processor returned bad-record {index} ({reason}); a processor fails a record with its outcome"
        )),
        other => other,
    }
}

impl Processor for WasmProcessor {
    fn restore(&mut self, entries: Vec<StateEntry>) -> Result<(), String> {
        *self.instance.keyed_state() = Some(KeyedState::restore(entries)?);
        Ok(())
    }

    fn assign(&mut self, partitions: &[i32], _now_ms: i64) {
        let opened = self.state().map(|state| state.assign(partitions)).and_then(|()| {
            let config = self.config.clone();
            self.timed("open", |instance| instance.open(&config, partitions))
        });
        self.remember(opened);
    }

    fn process(&mut self, records: Vec<Record>, now_ms: i64, out: &mut Processed) {
        if self.failure.is_none() {
            let result = self.run(records, now_ms, out);
            self.remember(result);
        }
    }

    fn fire_timers(&mut self, now_ms: i64, out: &mut Processed) {
        if self.failure.is_none() {
            let result = self
                .state()
                .map(|state| state.expire(now_ms))
                .and_then(|()| self.fire(now_ms, true, out, &mut Budget::new(self.call_timeout)));
            self.remember(result);
        }
    }

    fn take_changes(&mut self) -> Vec<StateChange> {
        self.instance.keyed_state().as_mut().map(KeyedState::take_changes).unwrap_or_default()
    }

    fn routes_records(&self) -> bool {
        true
    }

    fn take_failure(&mut self) -> Option<PluginFailure> {
        self.failure.take()
    }
}
