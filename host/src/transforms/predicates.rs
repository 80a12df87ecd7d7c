//! Kafka Connect's predicates, which decide whether a transform applies to a record:
//! TopicNameMatches, HasHeaderKey and RecordIsTombstone; and Jq (see `jq`).

use regex::Regex;

use super::options::{OptionProblem, Options};
use super::record::WorkingRecord;

/// One configured predicate.
pub trait Predicate: Send + Sync {
    /// True when the record matches; an error fails the record with that reason.
    fn test(&self, record: &mut WorkingRecord) -> Result<bool, String>;
}

/// The package of Kafka Connect's built-in predicates.
const PREDICATES_PACKAGE: &str = "org.apache.kafka.connect.transforms.predicates.";

/// Builds one kind of predicate from its options.
type BuildPredicate = fn(&Options) -> Result<Box<dyn Predicate>, OptionProblem>;

/// Builds the predicate of type `type_name` (short or full class name).
pub fn build_predicate(type_name: &str, options: &Options) -> Result<Box<dyn Predicate>, Vec<OptionProblem>> {
    let name = type_name.trim();
    let name = name.strip_prefix(PREDICATES_PACKAGE).unwrap_or(name);
    let (known, build): (&[&str], BuildPredicate) = match name {
        "TopicNameMatches" => (&["pattern"], |options| Ok(Box::new(TopicNameMatches::build(options)?))),
        "HasHeaderKey" => (&["name"], |options| Ok(Box::new(HasHeaderKey { name: options.required("name")?.to_owned() }))),
        "RecordIsTombstone" => (&[], |_| Ok(Box::new(RecordIsTombstone))),
        "Jq" => (super::jq::JqProgram::OPTIONS, |options| Ok(Box::new(super::jq::JqPredicate::build(options)?))),
        _ => {
            return Err(vec![(
                "type".to_owned(),
                format!(
                    "{} is not a predicate this host runs: use TopicNameMatches, HasHeaderKey or RecordIsTombstone \
                     (the org.apache.kafka.connect.transforms.predicates. prefix is optional), or Jq",
                    crate::names::shown(type_name)
                ),
            )]);
        }
    };
    let unknown = options.unknown(known);
    if !unknown.is_empty() {
        return Err(unknown);
    }
    build(options).map_err(|problem| vec![problem])
}

/// `TopicNameMatches`: the topic matches `pattern` in full.
pub struct TopicNameMatches {
    pattern: Regex,
}

impl TopicNameMatches {
    fn build(options: &Options) -> Result<Self, OptionProblem> {
        let pattern = options.required("pattern")?;
        let pattern = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|error| ("pattern".to_owned(), format!("is not a regular expression: {error}")))?;
        Ok(Self { pattern })
    }
}

impl Predicate for TopicNameMatches {
    fn test(&self, record: &mut WorkingRecord) -> Result<bool, String> {
        Ok(self.pattern.is_match(&record.topic))
    }
}

/// `HasHeaderKey`: the record has at least one header named `name`.
pub struct HasHeaderKey {
    name: String,
}

impl Predicate for HasHeaderKey {
    fn test(&self, record: &mut WorkingRecord) -> Result<bool, String> {
        Ok(record.headers.iter().any(|(name, _)| *name == self.name))
    }
}

/// `RecordIsTombstone`: the record has no value.
pub struct RecordIsTombstone;

impl Predicate for RecordIsTombstone {
    fn test(&self, record: &mut WorkingRecord) -> Result<bool, String> {
        Ok(record.value.is_null())
    }
}
