//! Typed access to a connector's configuration, with the plugin's declared defaults
//! applied. The value syntax is the one the host already checked (`protocol::values`).

use std::collections::BTreeMap;
use std::time::Duration;

use wasm_connect_protocol::values;

use crate::{Error, Plugin};

/// A connector's configuration as the plugin sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    /// The given values, completed with the defaults `P` declares.
    pub fn new<P: Plugin>(config: Vec<(String, String)>) -> Self {
        let mut values: BTreeMap<String, String> = config.into_iter().collect();
        for option in P::description().options {
            if let Some(default) = option.default {
                values.entry(option.name).or_insert(default);
            }
        }
        Self { values }
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn required(&self, key: &str) -> Result<&str, Error> {
        self.get(key).ok_or_else(|| Error::BadConfig(format!("config key \"{key}\": is required")))
    }

    fn parsed<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, Error> {
        parse(self.required(key)?).map_err(|message| Error::BadConfig(format!("config key \"{key}\": {message}")))
    }

    /// A text value.
    pub fn string(&self, key: &str) -> Result<String, Error> {
        self.required(key).map(str::to_owned)
    }

    /// A whole number.
    pub fn integer(&self, key: &str) -> Result<i64, Error> {
        self.parsed(key, values::parse_integer)
    }

    /// A decimal number.
    pub fn float(&self, key: &str) -> Result<f64, Error> {
        self.parsed(key, values::parse_float)
    }

    /// A boolean.
    pub fn boolean(&self, key: &str) -> Result<bool, Error> {
        self.parsed(key, values::parse_boolean)
    }

    /// A duration such as `1m30s`.
    pub fn duration(&self, key: &str) -> Result<Duration, Error> {
        self.parsed(key, values::parse_duration)
    }

    /// A comma-separated list.
    pub fn list(&self, key: &str) -> Result<Vec<String>, Error> {
        Ok(values::parse_list(self.required(key)?))
    }
}

impl Settings {
    /// A copy with `key` set to `value`, for options derived from others.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.values.insert(key.to_owned(), value.to_owned());
        self
    }
}
