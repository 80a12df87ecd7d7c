//! A record as transforms see it: its key and value read as JSON once, on first use
//! (only their top-level fields, when that is all the transforms touch), and written
//! back once at the end of the chain.
//!
//! Bytes that are not JSON but are UTF-8 text are read as a JSON string (as Kafka
//! Connect's StringConverter would give them); other bytes cannot be shaped and a
//! transform that needs them fails the record. A key that ends up a JSON string is
//! written as its bare text (the document id a sink uses), a value as JSON.

use serde_json::Value;
use wasm_connect_protocol::Record;

pub use super::shallow::ShallowObject;

/// A key or a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// As the record carried it (None: absent, a tombstone's value).
    Bytes(Option<Vec<u8>>),
    /// A JSON object read only at its top level.
    Object(ShallowObject),
    /// Read as JSON (Null: absent).
    Json(Value),
}

impl Data {
    /// The data as a JSON object read only at its top level, when it is one that can
    /// be read so (see [`ShallowObject`]) and was not read as a tree already.
    pub fn object(&mut self) -> Option<&mut ShallowObject> {
        if let Data::Bytes(Some(bytes)) = self {
            match ShallowObject::read(std::mem::take(bytes)) {
                Ok(object) => *self = Data::Object(object),
                Err(bytes) => {
                    *self = Data::Bytes(Some(bytes));
                    return None;
                }
            }
        }
        match self {
            Data::Object(object) => Some(object),
            _ => None,
        }
    }

    /// The JSON of the data, read on first use.
    pub fn json(&mut self) -> Result<&mut Value, String> {
        if let Data::Object(object) = self {
            *self = Data::Json(object.to_value()?);
        }
        if let Data::Bytes(bytes) = self {
            let value = match bytes.take() {
                None => Value::Null,
                Some(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(value) => value,
                    Err(_) => match String::from_utf8(bytes) {
                        Ok(text) => Value::String(text),
                        Err(error) => {
                            // The data stays as it was: a transform that fails leaves it whole.
                            *self = Data::Bytes(Some(error.into_bytes()));
                            return Err("the data is neither JSON nor UTF-8 text".to_owned());
                        }
                    },
                },
            };
            *self = Data::Json(value);
        }
        match self {
            Data::Json(value) => Ok(value),
            Data::Bytes(_) | Data::Object(_) => unreachable!("read above"),
        }
    }

    /// True when absent (a tombstone's value), without reading it.
    pub fn is_null(&self) -> bool {
        match self {
            Data::Bytes(bytes) => bytes.is_none(),
            Data::Object(_) => false,
            Data::Json(value) => value.is_null(),
        }
    }

    /// The bytes to write: JSON, but a string key as its bare text.
    pub fn into_bytes(self, is_key: bool) -> Option<Vec<u8>> {
        match self {
            Data::Bytes(bytes) => bytes,
            Data::Object(object) => Some(object.to_bytes()),
            Data::Json(Value::Null) => None,
            Data::Json(Value::String(text)) if is_key => Some(text.into_bytes()),
            Data::Json(value) => Some(serde_json::to_vec(&value).expect("a JSON value serialises")),
        }
    }
}

/// Which part of the record a `$Key` or `$Value` transform works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The record key (`$Key`).
    Key,
    /// The record value (`$Value`).
    Value,
}

/// A record on its way through a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingRecord {
    /// Topic (a router changes it).
    pub topic: String,
    /// Partition it was read from, if any.
    pub partition: Option<i32>,
    /// Offset it was read at, if any.
    pub offset: Option<i64>,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    /// Key.
    pub key: Data,
    /// Value.
    pub value: Data,
    /// Headers, in order; names may repeat.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl WorkingRecord {
    /// The key or the value.
    pub fn part(&mut self, part: Part) -> &mut Data {
        match part {
            Part::Key => &mut self.key,
            Part::Value => &mut self.value,
        }
    }

    /// Writes the value, if read as JSON, back to bytes (which read back the same),
    /// so the record can be encoded as it is.
    pub fn settle_value(&mut self) {
        if let Data::Json(_) | Data::Object(_) = self.value {
            let data = std::mem::replace(&mut self.value, Data::Bytes(None));
            self.value = Data::Bytes(data.into_bytes(false));
        }
    }

    /// Appends the record to a batch as it would be handed on (a JSON string key as
    /// its bare text; with `json_key`, a key read as JSON is written as JSON, so that
    /// a reader that reads JSON sees the same type). Call
    /// [`WorkingRecord::settle_value`] first: a value still read as JSON is written as
    /// it would be, at the cost of a copy.
    pub fn encode_into(&self, batch: &mut wasm_connect_protocol::BatchWriter, json_key: bool) {
        fn written(data: &Data, is_key: bool) -> Option<std::borrow::Cow<'_, [u8]>> {
            match data {
                Data::Bytes(bytes) => bytes.as_deref().map(std::borrow::Cow::Borrowed),
                Data::Object(object) => Some(std::borrow::Cow::Owned(object.to_bytes())),
                Data::Json(_) => data.clone().into_bytes(is_key).map(std::borrow::Cow::Owned),
            }
        }
        let (key, value) = (written(&self.key, !json_key), written(&self.value, false));
        batch.push_parts(
            &self.topic,
            self.partition,
            self.offset,
            self.timestamp,
            key.as_deref(),
            value.as_deref(),
            self.headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())),
        );
    }

    /// The record to hand on.
    pub fn into_record(self) -> Record {
        Record {
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.into_bytes(true),
            value: self.value.into_bytes(false),
            headers: self.headers,
        }
    }
}

impl From<Record> for WorkingRecord {
    fn from(record: Record) -> Self {
        Self {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: Data::Bytes(record.key),
            value: Data::Bytes(record.value),
            headers: record.headers,
        }
    }
}

/// A JSON value as Kafka Connect names its type in messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "Boolean",
        Value::Number(number) if number.is_f64() => "Double",
        Value::Number(_) => "Long",
        Value::String(_) => "String",
        Value::Array(_) => "ArrayList",
        Value::Object(_) => "HashMap",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_text_and_absent_data_are_read_and_written_back() {
        let mut value = Data::Bytes(Some(br#"{"a":1}"#.to_vec()));
        assert_eq!(value.json().unwrap(), &json!({"a": 1}));
        let mut text = Data::Bytes(Some(b"plain text".to_vec()));
        assert_eq!(text.json().unwrap(), &json!("plain text"));
        assert_eq!(text.clone().into_bytes(true), Some(b"plain text".to_vec()));
        assert_eq!(text.into_bytes(false), Some(br#""plain text""#.to_vec()));
        let mut absent = Data::Bytes(None);
        assert!(absent.is_null());
        assert_eq!(absent.json().unwrap(), &Value::Null);
        assert_eq!(absent.into_bytes(false), None);
        assert!(Data::Bytes(Some(vec![0xff, 0xfe])).json().is_err());
    }

    #[test]
    fn untouched_data_keeps_its_bytes() {
        let bytes = br#"{ "spaced" : true }"#.to_vec();
        assert_eq!(Data::Bytes(Some(bytes.clone())).into_bytes(false), Some(bytes));
    }
}
