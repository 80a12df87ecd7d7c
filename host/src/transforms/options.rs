//! The options of one transform or predicate, as Kafka Connect gives them: strings,
//! lists separated by commas. Every key a transform does not know is an error.

use std::collections::BTreeMap;

use super::path::{FieldPath, FieldSyntax};

/// One transform's options, and the keys it may read.
#[derive(Debug, Clone, Default)]
pub struct Options {
    values: BTreeMap<String, String>,
}

/// A problem with one option: `(key, message)`.
pub type OptionProblem = (String, String);

impl Options {
    /// The options `values`.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self { values }
    }

    /// Every key that is not one of `known`, as a problem naming the known ones.
    pub fn unknown(&self, known: &[&str]) -> Vec<OptionProblem> {
        self.values
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .map(|key| {
                let names = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
                (key.clone(), format!("is not an option of this transform (its options: {names})"))
            })
            .collect()
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key`, or a problem when it is missing or empty.
    pub fn required(&self, key: &str) -> Result<&str, OptionProblem> {
        match self.get(key) {
            Some(value) if !value.trim().is_empty() => Ok(value),
            _ => Err((key.to_owned(), "is required".to_owned())),
        }
    }

    /// A comma-separated list (items trimmed, empty ones dropped); empty when missing.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|text| text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// `field.syntax.version`.
    pub fn syntax(&self) -> Result<FieldSyntax, OptionProblem> {
        match self.get("field.syntax.version") {
            None => Ok(FieldSyntax::V1),
            Some(text) => FieldSyntax::parse(text).map_err(|message| ("field.syntax.version".to_owned(), message)),
        }
    }

    /// The field paths listed under `key`.
    pub fn paths(&self, key: &str, syntax: FieldSyntax) -> Result<Vec<FieldPath>, OptionProblem> {
        self.list(key).iter().map(|name| FieldPath::parse(name, syntax).map_err(|message| (key.to_owned(), message))).collect()
    }

    /// A boolean option (`true`/`false`, any case), `default` when missing.
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool, OptionProblem> {
        match self.get(key).map(|text| text.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(text) if text == "true" => Ok(true),
            Some(text) if text == "false" => Ok(false),
            Some(text) => Err((key.to_owned(), format!("must be true or false, not {text:?}"))),
        }
    }
}
