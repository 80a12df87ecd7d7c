//! A plugin's description on the host side, independent of the generated bindings,
//! so that the CLI, the config checks and the admin API can use and serialise it.

use serde::Serialize;

use super::bindings::types as wit;

/// What kind of connector a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Pulls data into topics.
    Source,
    /// Pushes records from topics into a store.
    Sink,
    /// Rewrites records between a topic and a sink.
    Transform,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
            PluginKind::Transform => "transform",
        })
    }
}

/// The type an option's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionType {
    /// Any text.
    String,
    /// A whole number.
    Integer,
    /// A decimal number.
    Float,
    /// true or false.
    Boolean,
    /// `500ms`, `1m30s`...
    Duration,
    /// Comma-separated values.
    List,
}

impl std::fmt::Display for OptionType {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            OptionType::String => "string",
            OptionType::Integer => "integer",
            OptionType::Float => "float",
            OptionType::Boolean => "boolean",
            OptionType::Duration => "duration",
            OptionType::List => "list",
        })
    }
}

/// One option a plugin understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigOptionDescription {
    /// The key in `config:`.
    pub name: String,
    /// The type its value must have.
    #[serde(rename = "type")]
    pub option_type: OptionType,
    /// The value used when the key is absent.
    pub default: Option<String>,
    /// Whether the key must be given.
    pub required: bool,
    /// Secret values are never logged or echoed.
    pub secret: bool,
    /// What the option is for.
    pub documentation: String,
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginDescription {
    /// The name connectors refer to.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Source, sink or transform.
    pub kind: PluginKind,
    /// What it does.
    pub documentation: String,
    /// The options it understands.
    pub options: Vec<ConfigOptionDescription>,
}

impl From<wit::PluginDescription> for PluginDescription {
    fn from(description: wit::PluginDescription) -> Self {
        Self {
            name: description.name,
            version: description.version,
            kind: match description.kind {
                wit::PluginKind::Source => PluginKind::Source,
                wit::PluginKind::Sink => PluginKind::Sink,
                wit::PluginKind::Transform => PluginKind::Transform,
            },
            documentation: description.documentation,
            options: description
                .options
                .into_iter()
                .map(|option| ConfigOptionDescription {
                    name: option.name,
                    option_type: match option.option_type {
                        wit::OptionType::String => OptionType::String,
                        wit::OptionType::Integer => OptionType::Integer,
                        wit::OptionType::Float => OptionType::Float,
                        wit::OptionType::Boolean => OptionType::Boolean,
                        wit::OptionType::Duration => OptionType::Duration,
                        wit::OptionType::List => OptionType::List,
                    },
                    default: option.default_value,
                    required: option.required,
                    secret: option.secret,
                    documentation: option.documentation,
                })
                .collect(),
        }
    }
}

impl PluginDescription {
    /// Checks a connector's options against the declared ones: unknown keys, missing
    /// required keys, values of the wrong type. Returns `(key, message)` problems.
    pub fn check_options<'a>(&self, config: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
        use wasm_connect_protocol::values;
        let mut problems = Vec::new();
        let given: Vec<(&str, &str)> = config.into_iter().collect();
        for (key, value) in &given {
            let Some(option) = self.options.iter().find(|option| option.name == *key) else {
                let known: Vec<&str> = self.options.iter().map(|option| option.name.as_str()).collect();
                problems.push((
                    (*key).to_owned(),
                    format!("unknown key for plugin {}; expected one of: {}", self.name, known.join(", ")),
                ));
                continue;
            };
            let checked = match option.option_type {
                OptionType::String | OptionType::List => Ok(()),
                OptionType::Integer => values::parse_integer(value).map(drop),
                OptionType::Float => values::parse_float(value).map(drop),
                OptionType::Boolean => values::parse_boolean(value).map(drop),
                OptionType::Duration => values::parse_duration(value).map(drop),
            };
            if let Err(message) = checked {
                // Never echo a secret, even a malformed one.
                let message = if option.secret { format!("is not a valid {}", option.option_type) } else { message };
                problems.push(((*key).to_owned(), message));
            }
        }
        for option in &self.options {
            if option.required && option.default.is_none() && !given.iter().any(|(key, _)| *key == option.name) {
                problems.push((option.name.clone(), format!("is required by plugin {}: {}", self.name, option.documentation)));
            }
        }
        problems
    }
}
