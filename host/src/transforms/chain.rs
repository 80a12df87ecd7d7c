//! A connector's chain of transforms, in order, each applied to a record only when
//! its predicate (if any) matches, or does not match with `negate`. A record a
//! transform drops goes no further; one a transform fails is reported with the alias.
//!
//! The chain runs on a batch: the built-in transforms record by record, a WASM
//! transform (`type: wasm`) once per batch on the records that reach it, answering one
//! outcome per record. A record a WASM transform splits goes on as several; when any
//! of them fails later, the whole input record fails (once), and none of what it
//! became is handed on.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasm_connect_protocol::{BatchWriter, Record};

use super::jq_simple::SimpleTest;
use super::options::Options;
use super::options::Options as StepOptions;
use super::predicates::short_predicate_name;
use super::predicates::{Predicate, build_predicate};
use super::record::Part;
use super::record::WorkingRecord;
use super::wasm::{ChainPlugins, WasmStep, WasmTransforms};
use super::{Outcome, Transform, build_transform, jq_part};
use crate::config::{PredicateConfig, ScalarString, TransformConfig};
use crate::runtime::{PluginFailure, RecordOutcome};

enum Action {
    Native(Box<dyn Transform>),
    /// The chain's WASM slot that runs it.
    Wasm(usize),
}

#[derive(Clone)]
enum PredicateRef {
    Native(Arc<dyn Predicate>),
    /// The chain's WASM slot that tests it (the `Jq` predicate).
    Wasm(usize),
}

struct Step {
    alias: String,
    type_name: String,
    action: Action,
    predicate: Option<(PredicateRef, bool)>,
}

/// A component the chain calls: a WASM transform, a jq transform or a jq predicate.
struct WasmSlot {
    /// The transform's or predicate's alias.
    alias: String,
    step: WasmStep,
    /// What the built-in jq does here, if it is jq.
    jq: Option<JqRole>,
    /// A `Jq` predicate simple enough to be answered in the host, record by record
    /// where it can be (see `jq_simple`).
    simple: Option<SimpleTest>,
}

/// What a built-in jq slot does. Calling jq again changes nothing, so a call that
/// fails (a trap, the deadline) is made again record by record, and only the records
/// that fail on their own fail. It reads keys as JSON, as the other transforms do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JqRole {
    /// `Jq$Value` or `Jq$Key`: replaces that part, and only that part.
    Map(Part),
    /// The `Jq` predicate.
    Test,
}

/// Records of one batch that may run past the call deadline one by one before the
/// rest of the batch fails without being run (each costs `plugins.call_timeout`).
const MAX_TIMEOUTS_PER_BATCH: usize = 3;

/// A built chain.
#[derive(Default)]
pub struct Chain {
    steps: Vec<Step>,
    slots: Vec<WasmSlot>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.steps.iter().map(|step| (&step.alias, &step.type_name))).finish()
    }
}

/// A record a transform (or its predicate) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainFailure {
    /// The transform's alias.
    pub alias: String,
    /// Its type, as configured (Kafka Connect's `__connect.errors.class.name`); for a
    /// WASM transform, its plugin as `name@version`.
    pub type_name: String,
    /// Why.
    pub reason: String,
}

/// What a chain made of a batch.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// The records to hand on, in order.
    pub records: Vec<Record>,
    /// The input records that failed, by their index in the input, in order.
    pub failed: Vec<(usize, ChainFailure)>,
}

/// The most records a WASM transform may make of one record; more fails the record.
pub const MAX_RECORDS_PER_RECORD: usize = 10_000;

/// The type of a WASM transform, in `transforms.<alias>.type`.
pub const WASM_TYPE: &str = "wasm";

impl Chain {
    /// Builds the chain, or returns every problem keyed as Kafka Connect's flat keys
    /// (`transforms.<alias>.<key>`, `predicates.<alias>.<key>`). WASM transforms are
    /// looked up in `plugins` and their options checked by their plugin.
    pub fn build(
        transforms: &[TransformConfig],
        predicates: &[PredicateConfig],
        plugins: &ChainPlugins<'_>,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut slots: Vec<WasmSlot> = Vec::new();
        let mut built: BTreeMap<&str, PredicateRef> = BTreeMap::new();
        for spec in predicates {
            let options = options_of(&spec.options);
            let predicate = if short_predicate_name(&spec.type_name) == "Jq" {
                jq_step(plugins, &options, Part::Value, "test").map(|step| {
                    let simple = options.get("expression").and_then(SimpleTest::compile);
                    slots.push(WasmSlot { alias: spec.name.clone(), step, jq: Some(JqRole::Test), simple });
                    PredicateRef::Wasm(slots.len() - 1)
                })
            } else {
                build_predicate(&spec.type_name, &options).map(|predicate| PredicateRef::Native(Arc::from(predicate)))
            };
            match predicate {
                Ok(predicate) => {
                    built.insert(&spec.name, predicate);
                }
                Err(found) => problems.extend(found.into_iter().map(|(key, message)| (format!("predicates.{}.{key}", spec.name), message))),
            }
        }
        let mut steps = Vec::new();
        for spec in transforms {
            let predicate = match &spec.predicate {
                None => None,
                Some(alias) => match built.get(alias.as_str()) {
                    Some(predicate) => Some((predicate.clone(), spec.negate)),
                    None if predicates.iter().any(|known| known.name == *alias) => None,
                    None => {
                        problems.push((
                            format!("transforms.{}.predicate", spec.name),
                            format!("names the predicate {}, which `predicates` does not list", crate::names::shown(alias)),
                        ));
                        None
                    }
                },
            };
            let mut slot = |step: WasmStep, jq: Option<JqRole>| {
                slots.push(WasmSlot { alias: spec.name.clone(), step, jq, simple: None });
                Action::Wasm(slots.len() - 1)
            };
            let action = if spec.type_name.trim() == WASM_TYPE {
                plugins.step(&spec.options).map(|step| (step.type_name(), slot(step, None)))
            } else if let Some(part) = jq_part(&spec.type_name) {
                jq_step(plugins, &options_of(&spec.options), part, "map")
                    .map(|step| (spec.type_name.clone(), slot(step, Some(JqRole::Map(part)))))
            } else {
                build_transform(&spec.type_name, &options_of(&spec.options))
                    .map(|transform| (spec.type_name.clone(), Action::Native(transform)))
            };
            match action {
                Ok((type_name, action)) => steps.push(Step { alias: spec.name.clone(), type_name, action, predicate }),
                Err(found) => problems.extend(found.into_iter().map(|(key, message)| (format!("transforms.{}.{key}", spec.name), message))),
            }
        }
        if problems.is_empty() { Ok(Self { steps, slots }) } else { Err(problems) }
    }

    /// True when the chain has no transforms.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// How many components the chain calls (WASM transforms, jq transforms and predicates).
    pub fn wasm_count(&self) -> usize {
        self.slots.len()
    }

    /// The components the chain calls, in slot order, as (alias, step).
    pub(super) fn wasm_steps(&self) -> impl Iterator<Item = (&str, &WasmStep)> {
        self.slots.iter().map(|slot| (slot.alias.as_str(), &slot.step))
    }

    /// Calls slot `slot` on `records` (settled). A call of the built-in jq that fails
    /// is made again record by record, so that only the records that fail on their
    /// own fail (with their call's failure as the reason).
    fn call(
        &self,
        wasm: &mut WasmTransforms,
        slot: usize,
        records: &[&WorkingRecord],
    ) -> Result<(Vec<RecordOutcome>, Vec<Record>), PluginFailure> {
        let WasmSlot { alias, step, jq, .. } = &self.slots[slot];
        let encode = |records: &[&WorkingRecord]| {
            let mut writer = BatchWriter::with_capacity(0);
            for record in records {
                record.encode_into(&mut writer, jq.is_some());
            }
            writer.finish()
        };
        let failure = match wasm.apply(slot, alias, step, encode(records), records.len()) {
            Err(failure) if jq.is_some() && !failure.is_permanent() => failure,
            other => return other,
        };
        if records.len() == 1 {
            return Ok((vec![RecordOutcome::Fail(failure.to_string())], Vec::new()));
        }
        let (mut outcomes, mut written) = (Vec::with_capacity(records.len()), Vec::new());
        let mut timeouts = 0;
        for record in records {
            if timeouts >= MAX_TIMEOUTS_PER_BATCH {
                outcomes.push(RecordOutcome::Fail(format!(
                    "not run: the transform ran past the call deadline on {MAX_TIMEOUTS_PER_BATCH} records of this batch"
                )));
                continue;
            }
            match wasm.apply(slot, alias, step, encode(std::slice::from_ref(record)), 1) {
                Ok((outcome, records)) => {
                    outcomes.extend(outcome);
                    written.extend(records);
                }
                Err(failure) if failure.is_permanent() => return Err(failure),
                Err(failure) => {
                    timeouts += usize::from(matches!(failure, PluginFailure::TimedOut(_)));
                    outcomes.push(RecordOutcome::Fail(failure.to_string()));
                }
            }
        }
        Ok((outcomes, written))
    }

    /// Whether `key` of the transform `alias` is an option its WASM plugin declares secret.
    pub fn is_secret_option(&self, alias: &str, key: &str) -> bool {
        self.wasm_steps().any(|(name, step)| name == alias && step.is_secret(key))
    }

    /// `text` with the values of the WASM transforms' secret options replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        self.wasm_steps()
            .flat_map(|(_, step)| &step.secrets)
            .filter(|secret| !secret.is_empty())
            .fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "[redacted]"))
    }

    /// Values of the WASM transforms' secret options.
    pub fn secrets(&self) -> Vec<String> {
        self.wasm_steps().flat_map(|(_, step)| step.secrets.iter().cloned()).collect()
    }

    /// Runs a batch through the chain; `wasm` are the chain's WASM transforms,
    /// opened for the task ([`WasmTransforms::open`]). Err when a WASM transform
    /// failed the whole call (it trapped, returned an error, or broke the contract):
    /// the batch is not handed on.
    pub fn apply(&self, records: Vec<Record>, wasm: &mut WasmTransforms) -> Result<ChainOutput, PluginFailure> {
        if self.steps.is_empty() {
            return Ok(ChainOutput { records, failed: Vec::new() });
        }
        let (live, failed) = self.run(records, wasm, |_, _, _| {})?;
        let mut failed: Vec<(usize, ChainFailure)> = failed.into_iter().collect();
        failed.sort_by_key(|(origin, _)| *origin);
        Ok(ChainOutput { records: live.into_iter().map(|live| live.record.into_record()).collect(), failed })
    }

    /// Runs one record through the chain and tells what each transform did: whether
    /// its predicate let it apply, and the records after it (none once dropped). The
    /// steps after a drop or a failure are not listed.
    pub fn trace(&self, record: Record, wasm: &mut WasmTransforms) -> (Vec<StepTrace>, Result<Vec<Record>, ChainFailure>) {
        let mut steps: Vec<StepTrace> = Vec::new();
        let run = self.run(vec![record], wasm, |step, applied, after| {
            steps.push(StepTrace {
                alias: step.alias.clone(),
                type_name: step.type_name.clone(),
                applied,
                records: if applied { after.iter().map(|live| live.record.clone().into_record()).collect() } else { Vec::new() },
            });
        });
        match run {
            Ok((_, failed)) if !failed.is_empty() => {
                let failure = failed.into_values().next().expect("not empty");
                // The step that failed the record is reported as the error, not as a stage.
                if steps.last().is_some_and(|step| step.alias == failure.alias) {
                    steps.pop();
                }
                (steps, Err(failure))
            }
            Ok((live, _)) => (steps, Ok(live.into_iter().map(|live| live.record.into_record()).collect())),
            // A WASM transform failed the whole call: the step after the last one seen.
            Err(failure) => {
                let step = &self.steps[steps.len().min(self.steps.len() - 1)];
                let failure = ChainFailure { alias: step.alias.clone(), type_name: step.type_name.clone(), reason: failure.to_string() };
                (steps, Err(failure))
            }
        }
    }

    /// The loop of `apply` and `trace`: `observe` sees each step that ran on at least
    /// one record, whether it applied to any, and the live records after it.
    fn run(
        &self,
        records: Vec<Record>,
        wasm: &mut WasmTransforms,
        mut observe: impl FnMut(&Step, bool, &[Live]),
    ) -> Result<(Vec<Live>, BTreeMap<usize, ChainFailure>), PluginFailure> {
        let mut live: Vec<Live> = records.into_iter().enumerate().map(|(origin, record)| Live { origin, record: record.into() }).collect();
        let mut failed: BTreeMap<usize, ChainFailure> = BTreeMap::new();
        for step in &self.steps {
            if live.is_empty() {
                break;
            }
            let failure = |reason: String| ChainFailure { alias: step.alias.clone(), type_name: step.type_name.clone(), reason };
            // Which records the step applies to; a predicate that fails fails its record.
            let mut applies = Vec::with_capacity(live.len());
            match &step.predicate {
                None => applies.resize(live.len(), true),
                Some((PredicateRef::Native(predicate), negate)) => {
                    for item in &mut live {
                        applies.push(match guarded(|| predicate.test(&mut item.record)) {
                            Ok(matched) => matched != *negate,
                            Err(reason) => {
                                failed.entry(item.origin).or_insert_with(|| failure(reason));
                                false
                            }
                        });
                    }
                }
                // A component predicate answers for the whole batch: keep where it matches.
                // A simple jq expression is answered here for the records it can answer.
                Some((PredicateRef::Wasm(slot), negate)) => {
                    applies.resize(live.len(), false);
                    let simple = self.slots[*slot].simple.as_ref();
                    let mut sent = Vec::new();
                    for (index, item) in live.iter_mut().enumerate() {
                        if failed.contains_key(&item.origin) {
                            continue;
                        }
                        if let Some(matched) = simple.and_then(|simple| simple.test(&item.record)) {
                            applies[index] = matched != *negate;
                            continue;
                        }
                        item.record.settle_value();
                        sent.push(index);
                    }
                    if !sent.is_empty() {
                        let records: Vec<&WorkingRecord> = sent.iter().map(|index| &live[*index].record).collect();
                        let (outcomes, _) = self.call(wasm, *slot, &records)?;
                        for (index, outcome) in sent.into_iter().zip(outcomes) {
                            match outcome {
                                RecordOutcome::Keep => applies[index] = !*negate,
                                RecordOutcome::Drop => applies[index] = *negate,
                                RecordOutcome::Fail(reason) => {
                                    failed.entry(live[index].origin).or_insert_with(|| failure(reason));
                                }
                                RecordOutcome::Many(_) => {
                                    failed.entry(live[index].origin).or_insert_with(|| failure("the predicate wrote records".to_owned()));
                                }
                            }
                        }
                    }
                }
            }
            let applied = applies.iter().any(|applies| *applies);
            let mut next = Vec::with_capacity(live.len());
            match &step.action {
                Action::Native(transform) => {
                    for (mut item, applies) in live.into_iter().zip(applies) {
                        if failed.contains_key(&item.origin) {
                            continue;
                        }
                        if !applies {
                            next.push(item);
                            continue;
                        }
                        match guarded(|| transform.apply(&mut item.record)) {
                            Ok(Outcome::Drop) => {}
                            // A transform that routes must have made a topic name Kafka takes.
                            Ok(Outcome::Keep) if transform.routes() => match crate::config::check_topic_name(&item.record.topic) {
                                Ok(()) => next.push(item),
                                Err(reason) => {
                                    failed.entry(item.origin).or_insert_with(|| failure(reason));
                                }
                            },
                            Ok(Outcome::Keep) => next.push(item),
                            Err(reason) => {
                                failed.entry(item.origin).or_insert_with(|| failure(reason));
                            }
                        }
                    }
                }
                Action::Wasm(slot) => {
                    let mut selected = Vec::with_capacity(live.len());
                    for (item, applies) in live.iter_mut().zip(&applies) {
                        let send = *applies && !failed.contains_key(&item.origin);
                        if send {
                            item.record.settle_value();
                        }
                        selected.push(send);
                    }
                    let records: Vec<&WorkingRecord> =
                        live.iter().zip(&selected).filter(|(_, selected)| **selected).map(|(item, _)| &item.record).collect();
                    let (outcomes, mut written) = if records.is_empty() {
                        (Vec::new(), Vec::new().into_iter())
                    } else {
                        let (outcomes, written) = self.call(wasm, *slot, &records)?;
                        (outcomes, written.into_iter())
                    };
                    let mut outcomes = outcomes.into_iter();
                    for (item, selected) in live.into_iter().zip(selected) {
                        if !selected {
                            if !failed.contains_key(&item.origin) {
                                next.push(item);
                            }
                            continue;
                        }
                        // Every record sent has its outcome (counted by `apply`), read in
                        // order even when another piece of its input record failed.
                        let Some(outcome) = outcomes.next() else {
                            return Err(PluginFailure::InvalidOutput(format!("the transform {} answered for too few records", step.alias)));
                        };
                        match outcome {
                            RecordOutcome::Keep => next.push(item),
                            RecordOutcome::Drop => {}
                            RecordOutcome::Many(count) => {
                                let mut made: Vec<Record> = written.by_ref().take(count as usize).collect();
                                // jq replaces one part: the rest of the record stays as the chain holds it.
                                if let (Some(JqRole::Map(part)), [mapped]) = (self.slots[*slot].jq, made.as_mut_slice()) {
                                    let Live { origin, record: mut kept } = item;
                                    let mapped = match part {
                                        Part::Key => std::mem::take(&mut mapped.key),
                                        Part::Value => std::mem::take(&mut mapped.value),
                                    };
                                    *kept.part(part) = super::record::Data::Bytes(mapped);
                                    next.push(Live { origin, record: kept });
                                    continue;
                                }
                                let reason = if made.len() > MAX_RECORDS_PER_RECORD {
                                    Some(format!("the transform made {} records of one; at most {MAX_RECORDS_PER_RECORD}", made.len()))
                                } else {
                                    made.iter()
                                        .filter(|record| record.topic != item.record.topic)
                                        .find_map(|record| crate::config::check_topic_name(&record.topic).err())
                                };
                                match reason {
                                    Some(reason) => {
                                        failed.entry(item.origin).or_insert_with(|| failure(reason));
                                    }
                                    None => next.extend(made.into_iter().map(|record| Live { origin: item.origin, record: record.into() })),
                                }
                            }
                            RecordOutcome::Fail(reason) => {
                                failed.entry(item.origin).or_insert_with(|| failure(reason));
                            }
                        }
                    }
                }
            }
            // A record that failed takes what it became with it.
            next.retain(|item| !failed.contains_key(&item.origin));
            live = next;
            observe(step, applied, &live);
        }
        Ok((live, failed))
    }
}

/// A record on its way, with the index of the input record it came from.
#[derive(Clone)]
struct Live {
    origin: usize,
    record: WorkingRecord,
}

/// Runs a built-in transform or predicate: a panic fails the record, not the task
/// over and over.
fn guarded<T>(work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err("the transform panicked (a bug in the host)".to_owned()))
}

/// What one transform did to a record.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTrace {
    /// The transform's alias.
    pub alias: String,
    /// Its type, as configured.
    pub type_name: String,
    /// False when its predicate held it back.
    pub applied: bool,
    /// The records after it: none when it dropped the record (or did not apply),
    /// several when it split it.
    pub records: Vec<Record>,
}

/// The built-in jq component for a `Jq$Value`, `Jq$Key` (mode `map`) or `Jq` predicate
/// (mode `test`), with `expression` its only option.
fn jq_step(plugins: &ChainPlugins<'_>, options: &StepOptions, part: Part, mode: &str) -> Result<WasmStep, Vec<(String, String)>> {
    let unknown = options.unknown(super::JQ_OPTIONS);
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let expression = options.required("expression").map_err(|problem| vec![problem])?;
    let part = if part == Part::Key { "key" } else { "value" };
    plugins.jq(&[
        ("expression".to_owned(), expression.to_owned()),
        ("part".to_owned(), part.to_owned()),
        ("mode".to_owned(), mode.to_owned()),
    ])
}

pub(super) fn options_of(options: &BTreeMap<String, ScalarString>) -> Options {
    Options::new(options.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect())
}
