//! Transforms: Kafka Connect's single message transforms (SMTs) and predicates, run
//! natively on schemaless JSON records. A transform keeps a record (changed or not),
//! drops it, or fails it with a reason.

mod cast;
pub mod catalog;
mod chain;
mod date_format;
mod fields;
mod headers;
pub mod jq_simple;
pub mod options;
pub mod path;
mod predicates;
pub mod record;
mod routing;
pub mod sample;
mod shallow;
mod timestamp;
pub mod wasm;

pub use chain::{Chain, ChainFailure, ChainOutput, StepTrace, WASM_TYPE};
pub use predicates::{Predicate, build_predicate, short_predicate_name};
pub use wasm::{ChainPlugins, WasmTransforms};

use options::{OptionProblem, Options};
pub use record::Part;
use record::WorkingRecord;

/// What a transform made of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Hand the record on.
    Keep,
    /// Drop it.
    Drop,
}

/// One configured transform.
pub trait Transform: Send + Sync {
    /// Applies the transform; an error fails the record with that reason.
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String>;

    /// True when it may change the record's topic (whose new name is then checked).
    fn routes(&self) -> bool {
        false
    }
}

/// The package of Kafka Connect's built-in transforms.
const TRANSFORMS_PACKAGE: &str = "org.apache.kafka.connect.transforms.";

/// A transform's short name: `InsertField$Value` for `InsertField$Value` or
/// `org.apache.kafka.connect.transforms.InsertField$Value`.
pub fn short_name(type_name: &str) -> &str {
    type_name.trim().strip_prefix(TRANSFORMS_PACKAGE).unwrap_or(type_name.trim())
}

/// A transform's options as Kafka Connect names them, by its base name (`InsertField`);
/// None for a transform this host does not run.
pub fn transform_options(base: &str) -> Option<&'static [&'static str]> {
    Some(match base {
        "InsertField" => fields::InsertField::OPTIONS,
        "ReplaceField" => fields::ReplaceField::OPTIONS,
        "MaskField" => fields::MaskField::OPTIONS,
        "ExtractField" => fields::ExtractField::OPTIONS,
        "HoistField" => fields::HoistField::OPTIONS,
        "Flatten" => fields::Flatten::OPTIONS,
        "ValueToKey" => fields::ValueToKey::OPTIONS,
        "Cast" => cast::Cast::OPTIONS,
        "TimestampConverter" => timestamp::TimestampConverter::OPTIONS,
        "HeaderFrom" => headers::HeaderFrom::OPTIONS,
        "DropHeaders" => headers::DropHeaders::OPTIONS,
        "InsertHeader" => headers::InsertHeader::OPTIONS,
        "RegexRouter" => routing::RegexRouter::OPTIONS,
        "TimestampRouter" => routing::TimestampRouter::OPTIONS,
        "Filter" => routing::Filter::OPTIONS,
        "SetSchemaMetadata" => routing::SetSchemaMetadata::OPTIONS,
        "Jq" => JQ_OPTIONS,
        _ => return None,
    })
}

/// The options of the jq types (`Jq$Value`, `Jq$Key` and the `Jq` predicate).
pub const JQ_OPTIONS: &[&str] = &["expression"];

/// Which part a `Jq$Value` or `Jq$Key` type works on; None for any other type.
pub fn jq_part(type_name: &str) -> Option<Part> {
    match short_name(type_name) {
        "Jq$Value" => Some(Part::Value),
        "Jq$Key" => Some(Part::Key),
        _ => None,
    }
}

/// Builds the transform of type `type_name` (short or full class name) from its
/// options; every problem found, keyed by option.
pub fn build_transform(type_name: &str, options: &Options) -> Result<Box<dyn Transform>, Vec<OptionProblem>> {
    let name = short_name(type_name);
    let (base, part) = match name.rsplit_once('$') {
        Some((base, "Key")) => (base, Some(Part::Key)),
        Some((base, "Value")) => (base, Some(Part::Value)),
        _ => (name, None),
    };
    let Some(known) = transform_options(base) else {
        return Err(vec![("type".to_owned(), unknown_type(type_name))]);
    };
    let unknown = options.unknown(known);
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let needs_part = |part: Option<Part>| {
        part.ok_or_else(|| vec![("type".to_owned(), format!("{base} needs $Key or $Value: {base}$Key or {base}$Value"))])
    };
    let one = |problem: OptionProblem| vec![problem];
    Ok(match base {
        "InsertField" => Box::new(fields::InsertField::build(needs_part(part)?, options).map_err(one)?),
        "ReplaceField" => Box::new(fields::ReplaceField::build(needs_part(part)?, options).map_err(one)?),
        "MaskField" => Box::new(fields::MaskField::build(needs_part(part)?, options).map_err(one)?),
        "ExtractField" => Box::new(fields::ExtractField::build(needs_part(part)?, options).map_err(one)?),
        "HoistField" => Box::new(fields::HoistField::build(needs_part(part)?, options).map_err(one)?),
        "Flatten" => Box::new(fields::Flatten::build(needs_part(part)?, options).map_err(one)?),
        "Cast" => Box::new(cast::Cast::build(needs_part(part)?, options).map_err(one)?),
        "TimestampConverter" => Box::new(timestamp::TimestampConverter::build(needs_part(part)?, options).map_err(one)?),
        "HeaderFrom" => Box::new(headers::HeaderFrom::build(needs_part(part)?, options).map_err(one)?),
        "Jq" => {
            needs_part(part)?;
            return Err(vec![("type".to_owned(), "Jq$Value and Jq$Key run in their component: the chain builds them".to_owned())]);
        }
        "SetSchemaMetadata" => {
            needs_part(part)?;
            Box::new(routing::SetSchemaMetadata::build(options).map_err(one)?)
        }
        whole => {
            if part.is_some() {
                return Err(vec![("type".to_owned(), format!("{whole} has no $Key or $Value variant: write {whole}"))]);
            }
            match whole {
                "ValueToKey" => Box::new(fields::ValueToKey::build(options).map_err(one)?),
                "DropHeaders" => Box::new(headers::DropHeaders::build(options).map_err(one)?),
                "InsertHeader" => Box::new(headers::InsertHeader::build(options).map_err(one)?),
                "RegexRouter" => Box::new(routing::RegexRouter::build(options).map_err(one)?),
                "TimestampRouter" => Box::new(routing::TimestampRouter::build(options).map_err(one)?),
                "Filter" => Box::new(routing::Filter),
                _ => unreachable!("matched above"),
            }
        }
    })
}

fn unknown_type(type_name: &str) -> String {
    format!(
        "{} is not a transform this host runs: use one of Kafka Connect's (Cast, DropHeaders, ExtractField, Filter, Flatten, \
         HeaderFrom, HoistField, InsertField, InsertHeader, MaskField, RegexRouter, ReplaceField, SetSchemaMetadata, \
         TimestampConverter, TimestampRouter, ValueToKey, with $Key or $Value where they have it; the \
         org.apache.kafka.connect.transforms. prefix is optional), or Jq$Value / Jq$Key",
        crate::names::shown(type_name)
    )
}

#[cfg(test)]
mod tests;
