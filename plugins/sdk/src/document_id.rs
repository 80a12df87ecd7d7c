//! How a sink derives a store document's id from a record (the `document_id` option
//! of the store sinks). A deterministic id is what makes a replayed batch overwrite
//! instead of duplicate.

use serde_json::Value;

use crate::RecordView;

/// The `document_id` option: `key`, `offset`, `field:<dotted.path>` or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentId {
    /// The record key (UTF-8, or hex when it is not text).
    Key,
    /// `topic+partition+offset`, as Kafka Connect's sinks do.
    Offset,
    /// A field of the JSON value, by dotted path.
    Field(Vec<String>),
    /// No id: the store picks one (replays then duplicate).
    None,
}

impl DocumentId {
    /// Reads the option's value.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "key" => Ok(DocumentId::Key),
            "offset" => Ok(DocumentId::Offset),
            "none" => Ok(DocumentId::None),
            other => match other.strip_prefix("field:") {
                Some(path) if !path.is_empty() && path.split('.').all(|part| !part.is_empty()) => {
                    Ok(DocumentId::Field(path.split('.').map(str::to_owned).collect()))
                }
                _ => Err(format!("expected key, offset, none or field:<dotted.path>, found \"{other}\"")),
            },
        }
    }

    /// True when the JSON value must be parsed to find the id.
    pub fn needs_value(&self) -> bool {
        matches!(self, DocumentId::Field(_))
    }

    /// The id of `record`; `value` is its parsed JSON when [`Self::needs_value`].
    /// Ok(None) for `none`; Err says why the record has no id.
    pub fn of(&self, record: &RecordView<'_>, value: Option<&Value>) -> Result<Option<String>, String> {
        match self {
            DocumentId::None => Ok(None),
            DocumentId::Key => match record.key {
                Some(key) => Ok(Some(match std::str::from_utf8(key) {
                    Ok(text) => text.to_owned(),
                    Err(_) => key.iter().map(|byte| format!("{byte:02x}")).collect(),
                })),
                None => Err("the record has no key; set document_id to offset, field:<path> or none".to_owned()),
            },
            DocumentId::Offset => match (record.partition, record.offset) {
                (Some(partition), Some(offset)) => Ok(Some(format!("{}+{partition}+{offset}", record.topic))),
                _ => Err("the record has no partition and offset".to_owned()),
            },
            DocumentId::Field(path) => {
                let found = path.iter().try_fold(value.ok_or("the record has no JSON value")?, |value, part| value.get(part));
                match found {
                    Some(Value::String(text)) => Ok(Some(text.clone())),
                    Some(number @ Value::Number(_)) => Ok(Some(number.to_string())),
                    Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
                    Some(_) => Err(format!("field {} is not a string, number or boolean", path.join("."))),
                    None => Err(format!("the value has no field {}", path.join("."))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(key: Option<&'a [u8]>) -> RecordView<'a> {
        RecordView { topic: "flights", partition: Some(2), offset: Some(41), timestamp: None, key, value: None, headers: Vec::new() }
    }

    #[test]
    fn every_vocabulary_word() {
        let value: Value = serde_json::json!({"flight": {"icao": "AFR123", "n": 7}});
        assert_eq!(DocumentId::parse("key").unwrap().of(&record(Some(b"4ca7b5")), None), Ok(Some("4ca7b5".into())));
        assert_eq!(DocumentId::parse("key").unwrap().of(&record(Some(&[0xff, 0x01])), None), Ok(Some("ff01".into())));
        assert!(DocumentId::parse("key").unwrap().of(&record(None), None).is_err());
        assert_eq!(DocumentId::parse("offset").unwrap().of(&record(None), None), Ok(Some("flights+2+41".into())));
        let field = DocumentId::parse("field:flight.icao").unwrap();
        assert_eq!(field.of(&record(None), Some(&value)), Ok(Some("AFR123".into())));
        assert_eq!(DocumentId::parse("field:flight.n").unwrap().of(&record(None), Some(&value)), Ok(Some("7".into())));
        assert!(DocumentId::parse("field:flight.missing").unwrap().of(&record(None), Some(&value)).is_err());
        assert_eq!(DocumentId::parse("none").unwrap().of(&record(None), None), Ok(None));
        assert!(DocumentId::parse("field:").is_err());
        assert!(DocumentId::parse("uuid").is_err());
    }
}
