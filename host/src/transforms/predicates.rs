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
pub(super) const PREDICATES_PACKAGE: &str = "org.apache.kafka.connect.transforms.predicates.";

/// Builds one kind of predicate from its options.
type BuildPredicate = fn(&Options) -> Result<Box<dyn Predicate>, OptionProblem>;

/// A predicate's short name: `TopicNameMatches` for it or its full class name.
pub fn short_predicate_name(type_name: &str) -> &str {
    let name = type_name.trim();
    name.strip_prefix(PREDICATES_PACKAGE).unwrap_or(name)
}

/// A predicate's options by its short name; None for one this host does not run.
pub fn predicate_options(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "TopicNameMatches" => &["pattern"],
        // `header` stands for `name` in connectors.yaml, where `name` is the alias.
        "HasHeaderKey" => &["name", "header"],
        "RecordIsTombstone" => &[],
        "Jq" => super::JQ_OPTIONS,
        _ => return None,
    })
}

/// Builds the predicate of type `type_name` (short or full class name).
pub fn build_predicate(type_name: &str, options: &Options) -> Result<Box<dyn Predicate>, Vec<OptionProblem>> {
    let name = short_predicate_name(type_name);
    let Some(known) = predicate_options(name) else {
        return Err(vec![(
            "type".to_owned(),
            format!(
                "{} is not a predicate this host runs: use TopicNameMatches, HasHeaderKey or RecordIsTombstone \
                 (the org.apache.kafka.connect.transforms.predicates. prefix is optional), or Jq",
                crate::names::shown(type_name)
            ),
        )]);
    };
    let unknown = options.unknown(known);
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let build: BuildPredicate = match name {
        "TopicNameMatches" => |options| Ok(Box::new(TopicNameMatches::build(options)?)),
        "HasHeaderKey" => |options| {
            let name = options.get("header").filter(|header| !header.trim().is_empty()).map_or_else(|| options.required("name"), Ok)?;
            Ok(Box::new(HasHeaderKey { name: name.to_owned() }))
        },
        "RecordIsTombstone" => |_| Ok(Box::new(RecordIsTombstone)),
        _ => |_| Err(("type".to_owned(), "Jq runs in its component: the chain builds it".to_owned())),
    };
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
