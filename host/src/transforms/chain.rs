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
        let mut working = WorkingRecord::from(record);
        for step in &self.steps {
            let failed = |reason: String| ChainFailure { alias: step.alias.clone(), type_name: step.type_name.clone(), reason };
            if let Some((predicate, negate)) = &step.predicate
                && predicate.test(&mut working).map_err(failed)? == *negate
            {
                continue;
            }
            if step.transform.apply(&mut working).map_err(failed)? == Outcome::Drop {
                return Ok(None);
            }
            // A transform that routes must have made a topic name Kafka takes.
            if step.transform.routes() {
                crate::config::check_topic_name(&working.topic).map_err(failed)?;
            }
        }
        Ok(Some(working.into_record()))
    }
}

fn options_of(options: &BTreeMap<String, ScalarString>) -> Options {
    Options::new(options.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect())
}
