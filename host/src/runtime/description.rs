//! A plugin's description on the host side, independent of the generated bindings,
//! so that the CLI, the config checks and the admin API can use and serialise it.

use serde::Serialize;
use wasm_connect_protocol::values;

use super::bindings::grant_declarations::exports::wasm_connect::connector::grants::GrantKind;
use super::bindings::types as wit;

/// What kind of connector a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Pulls data into topics.
    Source,
    /// Pushes records from topics into a store.
    Sink,
    /// Rewrites records between a topic and a sink.
    Transform,
    /// Reads topics, keeps state and writes a topic (built into the host).
    Processor,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
            PluginKind::Transform => "transform",
            PluginKind::Processor => "processor",
        })
    }
}

/// The type an option's value must have. The last five are grants: the value names
/// something the connector may reach, and only what such options name is reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
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
    /// A directory the `files` capability may write in.
    Directory,
    /// An Elasticsearch or OpenSearch base URL the `elasticsearch` capability may reach.
    ElasticsearchUrl,
    /// A MongoDB connection string the `mongodb` capability may reach.
    MongodbUri,
    /// CQL contact points (`host:port,...`) the `cassandra` capability may reach.
    CqlContactPoints,
    /// An HTTP(S) base URL outgoing requests may go to.
    HttpEndpoint,
}

impl OptionType {
    /// True for the types whose value grants the connector access to something.
    pub fn is_grant(self) -> bool {
        matches!(
            self,
            OptionType::Directory
                | OptionType::ElasticsearchUrl
                | OptionType::MongodbUri
                | OptionType::CqlContactPoints
                | OptionType::HttpEndpoint
        )
    }
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
            OptionType::Directory => "directory",
            OptionType::ElasticsearchUrl => "elasticsearch-url",
            OptionType::MongodbUri => "mongodb-uri",
            OptionType::CqlContactPoints => "cql-contact-points",
            OptionType::HttpEndpoint => "http-endpoint",
        })
    }
}

/// One option a plugin understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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

impl From<GrantKind> for OptionType {
    fn from(kind: GrantKind) -> Self {
        match kind {
            GrantKind::Directory => OptionType::Directory,
            GrantKind::ElasticsearchUrl => OptionType::ElasticsearchUrl,
            GrantKind::MongodbUri => OptionType::MongodbUri,
            GrantKind::CqlContactPoints => OptionType::CqlContactPoints,
            GrantKind::HttpEndpoint => OptionType::HttpEndpoint,
        }
    }
}

impl PluginDescription {
    /// Gives the options a plugin declares as grants their grant type.
    pub(crate) fn apply_grants(&mut self, grants: impl IntoIterator<Item = (String, OptionType)>) -> Result<(), String> {
        for (name, option_type) in grants {
            let option = self
                .options
                .iter_mut()
                .find(|option| option.name == name)
                .ok_or_else(|| format!("declares a grant for option {name:?}, which it does not describe"))?;
            option.option_type = option_type;
        }
        Ok(())
    }

    /// The options of `config` that grant something, with their values.
    pub fn grants<'a>(&'a self, config: &'a [(String, String)]) -> impl Iterator<Item = (OptionType, &'a str)> + 'a {
        config.iter().filter_map(|(key, value)| {
            let option = self.options.iter().find(|option| option.name == *key)?;
            option.option_type.is_grant().then_some((option.option_type, value.as_str()))
        })
    }

    /// Checks a connector's options against the declared ones: unknown keys, missing
    /// required keys, values of the wrong type. Returns `(key, message)` problems.
    pub fn check_options<'a>(&self, config: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let given: Vec<(&str, &str)> = config.into_iter().collect();
        for (key, value) in &given {
            let Some(option) = self.options.iter().find(|option| option.name == *key) else {
                let known: Vec<&str> = self.options.iter().map(|option| option.name.as_str()).collect();
                problems.push(((*key).to_owned(), format!("unknown key for plugin {}; expected one of: {}", self.name, known.join(", "))));
                continue;
            };
            let checked = match option.option_type {
                OptionType::String | OptionType::List => Ok(()),
                OptionType::Integer => values::parse_integer(value).map(drop),
                OptionType::Float => values::parse_float(value).map(drop),
                OptionType::Boolean => values::parse_boolean(value).map(drop),
                OptionType::Duration => values::parse_duration(value).map(drop),
                OptionType::Directory => non_empty(value),
                OptionType::ElasticsearchUrl | OptionType::HttpEndpoint => check_http_url(value),
                OptionType::MongodbUri => check_mongodb_uri(value),
                OptionType::CqlContactPoints => check_contact_points(value),
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

fn non_empty(value: &str) -> Result<(), String> {
    if value.trim().is_empty() { Err("must not be empty".to_owned()) } else { Ok(()) }
}

fn check_http_url(value: &str) -> Result<(), String> {
    let rest = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!("expected an http:// or https:// URL with a host, found \"{value}\"")),
    }
}

fn check_mongodb_uri(value: &str) -> Result<(), String> {
    if value.starts_with("mongodb://") || value.starts_with("mongodb+srv://") {
        Ok(())
    } else {
        // The URI may carry a password: never echo it.
        Err("expected a connection string starting with mongodb:// or mongodb+srv://".to_owned())
    }
}

fn check_contact_points(value: &str) -> Result<(), String> {
    let points = values::parse_list(value);
    if points.is_empty() {
        return Err("expected contact points such as cassandra1:9042,cassandra2:9042".to_owned());
    }
    for point in points {
        let port = point.rsplit_once(':').map(|(_, port)| port);
        if port.is_some_and(|port| port.parse::<u16>().is_err()) {
            return Err(format!("contact point \"{point}\": the port must be a number"));
        }
    }
    Ok(())
}
