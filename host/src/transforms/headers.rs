//! Kafka Connect's transforms of headers: DropHeaders, InsertHeader and HeaderFrom.
//! A header made from a field holds a string's bare text, anything else as JSON.

use serde_json::Value;

use super::options::{OptionProblem, Options};
use super::path::FieldPath;
use super::record::{Part, WorkingRecord, type_name};
use super::{Outcome, Transform};

/// `DropHeaders`: removes every header with one of the names.
pub struct DropHeaders {
    names: Vec<String>,
}

impl DropHeaders {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["headers"];

    /// Reads the options.
    pub fn build(options: &Options) -> Result<Self, OptionProblem> {
        let names = options.list("headers");
        if names.is_empty() {
            return Err(("headers".to_owned(), "is required: the names of the headers to drop".to_owned()));
        }
        Ok(Self { names })
    }
}

impl Transform for DropHeaders {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        record.headers.retain(|(name, _)| !self.names.contains(name));
        Ok(Outcome::Keep)
    }
}

/// `InsertHeader`: adds a header with a literal value.
pub struct InsertHeader {
    name: String,
    value: String,
}

impl InsertHeader {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["header", "value.literal"];

    /// Reads the options.
    pub fn build(options: &Options) -> Result<Self, OptionProblem> {
        let name = options.required("header")?.to_owned();
        let value = options.get("value.literal").ok_or_else(|| ("value.literal".to_owned(), "is required".to_owned()))?.to_owned();
        Ok(Self { name, value })
    }
}

impl Transform for InsertHeader {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        record.headers.push((self.name.clone(), Some(self.value.clone().into_bytes())));
        Ok(Outcome::Keep)
    }
}

/// `HeaderFrom`: copies or moves fields of the key or value into headers.
pub struct HeaderFrom {
    part: Part,
    fields: Vec<(FieldPath, String)>,
    moving: bool,
}

impl HeaderFrom {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["fields", "headers", "operation", "field.syntax.version", "replace.null.with.default"];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        let fields = options.paths("fields", options.syntax()?)?;
        let headers = options.list("headers");
        if fields.is_empty() {
            return Err(("fields".to_owned(), "is required: the fields to make headers of".to_owned()));
        }
        if headers.len() != fields.len() {
            return Err((
                "headers".to_owned(),
                format!("must name one header per field: {} fields, {} headers", fields.len(), headers.len()),
            ));
        }
        let moving = match options.required("operation")?.trim().to_ascii_lowercase().as_str() {
            "move" => true,
            "copy" => false,
            other => return Err(("operation".to_owned(), format!("must be move or copy, not {other:?}"))),
        };
        Ok(Self { part, fields: fields.into_iter().zip(headers).collect(), moving })
    }
}

impl Transform for HeaderFrom {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        let data = record.part(self.part).json()?;
        if data.is_null() {
            return Ok(Outcome::Keep);
        }
        let found = type_name(data);
        let object =
            data.as_object_mut().ok_or_else(|| format!("only JSON objects are supported for header from field, found a {found}"))?;
        let mut added = Vec::with_capacity(self.fields.len());
        for (path, header) in &self.fields {
            let value = if self.moving { path.remove(object) } else { path.get(object).cloned() };
            added.push((header.clone(), header_bytes(value.unwrap_or(Value::Null))));
        }
        record.headers.extend(added);
        Ok(Outcome::Keep)
    }
}

/// A header's bytes for a JSON value: a string's bare text, null as no value, the rest as JSON.
pub fn header_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.into_bytes()),
        other => Some(serde_json::to_vec(&other).expect("a JSON value serialises")),
    }
}
