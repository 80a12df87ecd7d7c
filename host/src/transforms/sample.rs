//! Trying a chain before running it: sample records as JSON in, what each transform
//! made of them out (`POST /connectors/{name}/transforms/test`, `POST
//! /transforms/test` and `wasm-connect transforms test`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_connect_protocol::Record;

use super::{Chain, WasmTransforms};

/// The most sample records one test takes.
pub const MAX_SAMPLES: usize = 1000;

/// A record as JSON: the value (and a key that is not text) as the JSON it holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleRecord {
    /// The topic; the connector's first one when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The partition it was read from (sinks), if any.
    #[serde(default, deserialize_with = "whole", skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// The offset it was read at (sinks), if any.
    #[serde(default, deserialize_with = "whole", skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Milliseconds since the epoch.
    #[serde(default, deserialize_with = "whole", skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// The key: a string is the key's text, anything else its JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Value>,
    /// The value as JSON; null or absent: a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Headers by name (null: a header without a value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Option<String>>,
}

/// A whole number, also when JSON writes it with a fraction of zero (`7.0`).
fn whole<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(deserializer: D) -> Result<Option<T>, D::Error> {
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else { return Ok(None) };
    let whole =
        number.as_i64().or_else(|| number.as_f64().filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15).map(|float| float as i64));
    whole
        .and_then(|whole| T::try_from(whole).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range")))
}

/// Sample records from a JSON array, each an object (not the array form serde would
/// also take for a struct).
pub fn samples_from(records: &Value) -> Result<Vec<SampleRecord>, String> {
    let Some(items) = records.as_array() else { return Err("`records` must be an array of records".to_owned()) };
    if items.len() > MAX_SAMPLES {
        return Err(format!("{} records: a test takes at most {MAX_SAMPLES}", items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            if !item.is_object() {
                return Err(format!("records[{index}] must be an object such as {{\"value\": ...}}"));
            }
            SampleRecord::deserialize(item).map_err(|error| format!("records[{index}]: {error}"))
        })
        .collect()
}

/// What the chain made of one sample.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TestedRecord {
    /// Each transform that ran, in order.
    pub stages: Vec<TestedStage>,
    /// What would be written; absent when dropped or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<SampleRecord>,
    /// The further records written when a WASM transform split the record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<SampleRecord>,
    /// True when a transform dropped the record.
    pub dropped: bool,
    /// Why a transform failed the record (it would go through `errors.*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TestedError>,
}

/// One transform's turn.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TestedStage {
    /// Its alias.
    pub transform: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// False when its predicate held it back.
    pub applied: bool,
    /// The record after it; absent when it dropped the record or did not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<SampleRecord>,
    /// The further records after it, when it split the record (a WASM transform).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<SampleRecord>,
}

/// A transform's failure.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TestedError {
    /// The alias of the transform that failed.
    pub transform: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Why.
    pub message: String,
}

impl SampleRecord {
    /// The record it stands for, on `default_topic` unless it names one.
    pub fn to_record(&self, default_topic: &str) -> Record {
        let key = self.key.as_ref().filter(|key| !key.is_null()).map(|key| match key {
            Value::String(text) => text.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        });
        let value = self.value.as_ref().filter(|value| !value.is_null()).map(|value| value.to_string().into_bytes());
        Record {
            topic: self.topic.clone().unwrap_or_else(|| default_topic.to_owned()),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key,
            value,
            headers: self.headers.iter().map(|(name, value)| (name.clone(), value.clone().map(String::into_bytes))).collect(),
        }
    }

    /// A record as JSON: bytes that are JSON as that JSON, others as text.
    pub fn of(record: &Record) -> Self {
        let json = |bytes: &Option<Vec<u8>>| {
            bytes
                .as_ref()
                .map(|bytes| serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())))
        };
        SampleRecord {
            topic: Some(record.topic.clone()),
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: json(&record.key),
            value: json(&record.value),
            headers: record
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.as_ref().map(|bytes| String::from_utf8_lossy(bytes).into_owned())))
                .collect(),
        }
    }
}

/// Runs each sample through `chain`, whose WASM transforms are opened in `wasm`.
pub fn test_samples(chain: &Chain, wasm: &mut WasmTransforms, samples: &[SampleRecord], default_topic: &str) -> Vec<TestedRecord> {
    samples
        .iter()
        .map(|sample| {
            let (steps, outcome) = chain.trace(sample.to_record(default_topic), wasm);
            let stages = steps
                .into_iter()
                .map(|step| {
                    let (record, more) = first_and_more(&step.records);
                    TestedStage { transform: step.alias, type_name: step.type_name, applied: step.applied, record, more }
                })
                .collect();
            match outcome {
                Ok(output) => {
                    let (first, more) = first_and_more(&output);
                    TestedRecord { stages, dropped: output.is_empty(), output: first, more, error: None }
                }
                Err(failure) => TestedRecord {
                    stages,
                    output: None,
                    more: Vec::new(),
                    dropped: false,
                    error: Some(TestedError {
                        transform: failure.alias,
                        type_name: failure.type_name,
                        message: chain.redact(&failure.reason),
                    }),
                },
            }
        })
        .collect()
}

fn first_and_more(records: &[Record]) -> (Option<SampleRecord>, Vec<SampleRecord>) {
    (records.first().map(SampleRecord::of), records.iter().skip(1).map(SampleRecord::of).collect())
}
