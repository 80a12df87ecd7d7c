//! A connector's chain of transforms, in order, each applied to a record only when
//! its predicate (if any) matches, or does not match with `negate`. A record a
//! transform drops goes no further; one a transform fails is reported with the alias.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasm_connect_protocol::Record;

use super::options::Options;
use super::predicates::{Predicate, build_predicate};
use super::record::WorkingRecord;
use super::{Outcome, Transform, build_transform};
use crate::config::{PredicateConfig, ScalarString, TransformConfig};

struct Step {
    alias: String,
    type_name: String,
    transform: Box<dyn Transform>,
    predicate: Option<(Arc<dyn Predicate>, bool)>,
}

/// A built chain.
#[derive(Default)]
pub struct Chain {
    steps: Vec<Step>,
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
    /// Its type, as configured (Kafka Connect's `__connect.errors.class.name`).
    pub type_name: String,
    /// Why.
    pub reason: String,
}

impl Chain {
    /// Builds the chain, or returns every problem keyed as Kafka Connect's flat keys
    /// (`transforms.<alias>.<key>`, `predicates.<alias>.<key>`).
    pub fn build(transforms: &[TransformConfig], predicates: &[PredicateConfig]) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut built: BTreeMap<&str, Arc<dyn Predicate>> = BTreeMap::new();
        for spec in predicates {
            match build_predicate(&spec.type_name, &options_of(&spec.options)) {
                Ok(predicate) => {
                    built.insert(&spec.name, Arc::from(predicate));
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
            match build_transform(&spec.type_name, &options_of(&spec.options)) {
                Ok(transform) => steps.push(Step { alias: spec.name.clone(), type_name: spec.type_name.clone(), transform, predicate }),
                Err(found) => problems.extend(found.into_iter().map(|(key, message)| (format!("transforms.{}.{key}", spec.name), message))),
            }
        }
        if problems.is_empty() { Ok(Self { steps }) } else { Err(problems) }
    }

    /// True when the chain has no transforms.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs `record` through the chain: Some(record) to hand on, None when dropped.
    pub fn apply(&self, record: Record) -> Result<Option<Record>, ChainFailure> {
        if self.steps.is_empty() {
            return Ok(Some(record));
        }
        self.run(record, |_, _| {})
    }

    /// Runs `record` through the chain and tells what each transform did: whether its
    /// predicate let it apply, and the record after it (None once dropped). The steps
    /// after a drop or a failure are not listed.
    pub fn trace(&self, record: Record) -> (Vec<StepTrace>, Result<Option<Record>, ChainFailure>) {
        let mut steps = Vec::new();
        let outcome = self.run(record, |step, after| {
            steps.push(StepTrace {
                alias: step.alias.clone(),
                type_name: step.type_name.clone(),
                applied: after.is_some(),
                record: after.flatten().cloned().map(WorkingRecord::into_record),
            });
        });
        (steps, outcome)
    }

    /// The loop of `apply` and `trace`: `observe` sees each step that ran, with None
    /// when its predicate held it back, Some(None) when it dropped the record, and
    /// Some(Some(record)) otherwise.
    fn run(&self, record: Record, mut observe: impl FnMut(&Step, Option<Option<&WorkingRecord>>)) -> Result<Option<Record>, ChainFailure> {
        let mut working = WorkingRecord::from(record);
        for step in &self.steps {
            let failed = |reason: String| ChainFailure { alias: step.alias.clone(), type_name: step.type_name.clone(), reason };
            if let Some((predicate, negate)) = &step.predicate
                && predicate.test(&mut working).map_err(failed)? == *negate
            {
                observe(step, None);
                continue;
            }
            if step.transform.apply(&mut working).map_err(failed)? == Outcome::Drop {
                observe(step, Some(None));
                return Ok(None);
            }
            // A transform that routes must have made a topic name Kafka takes.
            if step.transform.routes() {
                crate::config::check_topic_name(&working.topic).map_err(failed)?;
            }
            observe(step, Some(Some(&working)));
        }
        Ok(Some(working.into_record()))
    }
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
    /// The record after it; None when it dropped the record (or did not apply).
    pub record: Option<Record>,
}

fn options_of(options: &BTreeMap<String, ScalarString>) -> Options {
    Options::new(options.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect())
}
