//! Reading a built-in processor's options, and what a group (or an identity) of
//! records is made of: the key, or fields of the JSON value.

use serde_json::{Map, Value};
use wasm_connect_protocol::Record;
use wasm_connect_protocol::values::{parse_duration, parse_list};

use super::builtin::OptionSpec;
use crate::runtime::OptionType;
use crate::transforms::path::{FieldPath, FieldSyntax};

/// `time_field`, where event time comes from, as every processor with event time takes it.
pub(super) const TIME_FIELD: OptionSpec = OptionSpec {
    name: "time_field",
    option_type: OptionType::String,
    default: None,
    required: false,
    documentation: "A field of the value holding the event time (epoch number or RFC 3339 text); without it the record timestamp.",
};

/// `time_unit`, how a number in `time_field` counts.
pub(super) const TIME_UNIT: OptionSpec = OptionSpec {
    name: "time_unit",
    option_type: OptionType::String,
    default: Some("milliseconds"),
    required: false,
    documentation: "How a number in `time_field` counts: `milliseconds` or `seconds`.",
};

/// The value of option `name`, if given.
pub(super) fn option<'a>(options: &'a [(String, String)], name: &str) -> Option<&'a str> {
    options.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// Option `name` as a duration in milliseconds, if given; a bad one is a problem.
pub(super) fn duration_ms(options: &[(String, String)], name: &str, problems: &mut Vec<(String, String)>) -> Option<i64> {
    let text = option(options, name)?;
    match parse_duration(text) {
        Ok(duration) => Some(duration.as_millis().min(i64::MAX as u128 / 4) as i64),
        Err(problem) => {
            problems.push((name.to_owned(), problem));
            None
        }
    }
}

/// A field path (dotted, into nested objects) given in option `option`.
pub(super) fn field(text: &str, option: &str, problems: &mut Vec<(String, String)>) -> Option<FieldPath> {
    FieldPath::parse(text.trim(), FieldSyntax::V2).map_err(|problem| problems.push((option.to_owned(), problem))).ok()
}

/// What makes records one group: their key, or fields of their value.
#[derive(Debug, Clone)]
pub(super) enum GroupBy {
    /// The record key.
    Key {
        /// The option that said so, for messages.
        option: &'static str,
    },
    /// Fields of the value.
    Fields {
        /// The fields.
        paths: Vec<FieldPath>,
        /// The option that named them, for messages.
        option: &'static str,
    },
}

impl GroupBy {
    /// From option `name`: `key` (the default) or a list of fields.
    pub(super) fn parse(options: &[(String, String)], name: &'static str, problems: &mut Vec<(String, String)>) -> Self {
        match option(options, name).map(parse_list) {
            None => GroupBy::Key { option: name },
            Some(names) if names.is_empty() || names == ["key"] => GroupBy::Key { option: name },
            Some(names) => GroupBy::Fields { paths: names.iter().filter_map(|text| field(text, name, problems)).collect(), option: name },
        }
    }

    /// Whether the value must be read to find the group.
    pub(super) fn reads_value(&self) -> bool {
        matches!(self, GroupBy::Fields { .. })
    }

    /// The input partition a record's state is kept with: its own when grouping by
    /// key (a key stays in its partition, so its state moves with it between tasks);
    /// partition 0 when grouping by value fields, where one task reads every partition
    /// (the plan allows no more): a group then has one home and one stream time
    /// whichever partitions its records come from.
    pub(super) fn state_partition(&self, record: &Record) -> i32 {
        match self {
            GroupBy::Key { .. } => record.partition.unwrap_or(0),
            GroupBy::Fields { .. } => 0,
        }
    }

    /// The group's key text and fields, from the record.
    pub(super) fn of(&self, record: &Record, value: Option<&Map<String, Value>>) -> Result<(String, Vec<Value>), String> {
        match self {
            GroupBy::Key { option } => {
                let key = record.key.as_deref().ok_or_else(|| format!("the record has no key ({option}: key)"))?;
                let key = String::from_utf8_lossy(key).into_owned();
                Ok((key.clone(), vec![Value::String(key)]))
            }
            GroupBy::Fields { paths, option } => {
                let mut fields = Vec::with_capacity(paths.len());
                for path in paths {
                    match value.and_then(|value| path.get(value)) {
                        Some(found) if !found.is_null() => fields.push(found.clone()),
                        _ => return Err(format!("the value has no field {} ({option})", path.display())),
                    }
                }
                let text = match fields.as_slice() {
                    [Value::String(text)] => text.clone(),
                    [single] => single.to_string(),
                    several => Value::Array(several.to_vec()).to_string(),
                };
                Ok((text, fields))
            }
        }
    }

    /// The group's fields in a result, by their last names (`key` for the key).
    pub(super) fn describe(&self, group_key: &str, fields: &[Value], into: &mut Map<String, Value>) {
        match self {
            GroupBy::Key { .. } => {
                into.insert("key".into(), Value::String(group_key.to_owned()));
            }
            GroupBy::Fields { paths, .. } => {
                for (path, field) in paths.iter().zip(fields) {
                    into.insert(path.name().to_owned(), field.clone());
                }
            }
        }
    }
}

/// Parses the record's value as a JSON object when `needed`; None when not needed.
pub(super) fn json_object(record: &Record, needed: bool) -> Result<Option<Map<String, Value>>, String> {
    if !needed {
        return Ok(None);
    }
    match record.value.as_deref().map(serde_json::from_slice::<Value>) {
        Some(Ok(Value::Object(object))) => Ok(Some(object)),
        _ => Err("the value is not a JSON object".to_owned()),
    }
}
