//! `/connector-plugins/...`: the plugins the host has loaded, in Kafka Connect's
//! shapes, with each option's definition, and the validation of a configuration.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};

use super::connector_config::{HIDDEN, flat_key, from_flat, string_map};
use super::dto::{ConfigInfos, ConfigKeyDefinition, ConfigKeyInfo, ConfigKeyValue, ConnectorPlugin, ListedKind};
use super::{AdminState, ApiError, json_body, query_flag};
use crate::runtime::{ConfigOptionDescription, OptionType, PluginKind};
use crate::transforms::catalog;

/// `GET /connector-plugins[?connectorsOnly=false]`: every plugin as `{class, type,
/// version}`; with `connectorsOnly=false` also the transform plugins and every
/// built-in transform and predicate (`transformation`, `predicate`), as Kafka Connect.
pub(super) async fn list(
    State(state): State<AdminState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<ConnectorPlugin>>, ApiError> {
    let connectors_only = query_flag(&query, "connectorsOnly", true);
    let mut plugins: Vec<ConnectorPlugin> = state
        .manager
        .catalog()
        .plugins()
        .iter()
        .filter(|plugin| !connectors_only || plugin.description.kind != PluginKind::Transform)
        .map(|plugin| {
            let description = &plugin.description;
            ConnectorPlugin { class: description.name.clone(), kind: description.kind.into(), version: description.version.clone() }
        })
        .collect();
    if !connectors_only {
        plugins.extend(catalog::entries().into_iter().map(|entry| ConnectorPlugin {
            class: entry.class,
            kind: match entry.kind {
                catalog::Kind::Transformation => ListedKind::Transformation,
                catalog::Kind::Predicate => ListedKind::Predicate,
            },
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }));
    }
    Ok(Json(plugins))
}

/// Kafka Connect's type names for an option.
fn connect_type(option_type: OptionType) -> &'static str {
    match option_type {
        OptionType::Integer => "LONG",
        OptionType::Float => "DOUBLE",
        OptionType::Boolean => "BOOLEAN",
        OptionType::List | OptionType::CqlContactPoints => "LIST",
        _ => "STRING",
    }
}

/// Kafka Connect's definition of one of the plugin's options, in `group`.
fn option_definition(option: &ConfigOptionDescription, group: Option<&str>, order: i64) -> ConfigKeyDefinition {
    ConfigKeyDefinition {
        name: option.name.clone(),
        kind: if option.secret { "PASSWORD" } else { connect_type(option.option_type) }.to_owned(),
        required: option.required && option.default.is_none(),
        default_value: option.default.clone(),
        importance: if option.required { "HIGH" } else { "MEDIUM" }.to_owned(),
        documentation: option.documentation.clone(),
        group: group.map(str::to_owned),
        width: "NONE".to_owned(),
        display_name: option.name.clone(),
        dependents: Vec::new(),
        order,
        // What wasm-connect adds: the declared type, grants included.
        wasm_connect_type: Some(option.option_type),
    }
}

/// The definition of a key that is not one of the plugin's options.
fn plain_definition(
    name: &str,
    kind: &str,
    default: Option<&str>,
    documentation: &str,
    group: Option<&str>,
    order: i64,
) -> ConfigKeyDefinition {
    ConfigKeyDefinition {
        name: name.to_owned(),
        kind: kind.to_owned(),
        required: false,
        default_value: default.map(str::to_owned),
        importance: "LOW".to_owned(),
        documentation: documentation.to_owned(),
        group: group.map(str::to_owned),
        width: "NONE".to_owned(),
        display_name: name.to_owned(),
        dependents: Vec::new(),
        order,
        wasm_connect_type: None,
    }
}

/// `GET /connector-plugins/{plugin}/config`: the definition of every option of a
/// plugin (`name` or `name@version`), or of a built-in transform or predicate (its
/// short or full class name).
pub(super) async fn config_definitions(
    State(state): State<AdminState>,
    Path(plugin): Path<String>,
) -> Result<Json<Vec<ConfigKeyDefinition>>, ApiError> {
    match state.manager.catalog().find(&plugin) {
        Ok(found) => Ok(Json(found.description.options.iter().map(|option| option_definition(option, None, -1)).collect())),
        Err(message) => {
            let entry = catalog::find(&plugin).ok_or_else(|| ApiError::not_found(message))?;
            let definitions = entry.options.iter().enumerate().map(|(order, option)| {
                let (kind, default, documentation) = catalog::option_definition(option);
                plain_definition(option, kind, default, documentation, None, order as i64)
            });
            Ok(Json(definitions.collect()))
        }
    }
}

/// One host-level key, as Kafka Connect defines it.
struct HostKey {
    name: &'static str,
    kind: &'static str,
    required: bool,
    default: Option<&'static str>,
    documentation: &'static str,
    group: &'static str,
}

const fn key(
    name: &'static str,
    kind: &'static str,
    default: Option<&'static str>,
    documentation: &'static str,
    group: &'static str,
) -> HostKey {
    HostKey { name, kind, required: default.is_none(), default, documentation, group }
}

/// The host-level keys of a connector of `kind`, Kafka Connect's "Common" and
/// "Error Handling" groups.
fn host_definitions(kind: PluginKind) -> Vec<HostKey> {
    let topics = match kind {
        PluginKind::Source => vec![key("topic", "STRING", None, "The topic the source writes to.", "Common")],
        PluginKind::Processor => vec![
            key("topics", "LIST", None, "The topics the processor reads, comma-separated.", "Common"),
            key("topic", "STRING", None, "The topic the processor writes its results to.", "Common"),
        ],
        _ => vec![key("topics", "LIST", None, "The topics the sink reads, comma-separated.", "Common")],
    };
    let mut dead_letters = key("errors.deadletterqueue.topic.name", "STRING", None, "Where tolerated bad records go.", "Error Handling");
    dead_letters.required = false;
    let mut keys = vec![
        key("name", "STRING", None, "Unique name of the connector: letters, digits, `.`, `_`, `-`.", "Common"),
        key("connector.class", "STRING", None, "The plugin, as `name` or `name@version`.", "Common"),
        key("tasks.max", "INT", Some("1"), "Parallel tasks (a source runs one).", "Common"),
    ];
    keys.extend(topics);
    keys.extend([
        key("batch.size", "INT", Some("500"), "Records per batch across the plugin boundary.", "Common"),
        key("errors.tolerance", "STRING", Some("none"), "none: a bad record stops the task; all: it is skipped.", "Error Handling"),
        key("errors.retry.timeout", "LONG", Some("300000"), "How long a batch is retried after retriable errors, in ms.", "Error Handling"),
        key("errors.log.enable", "BOOLEAN", Some("false"), "Log each failed record (never its value).", "Error Handling"),
        dead_letters,
    ]);
    keys
}

/// `PUT /connector-plugins/{plugin}/config/validate` with a flat config: Kafka
/// Connect's answer (`name`, `error_count`, `groups`, `configs[]` of `{definition,
/// value}`), computed from the plugin's description and its own validation. An
/// invalid configuration is a 200 with errors, as in Kafka Connect.
pub(super) async fn validate(
    State(state): State<AdminState>,
    Path(reference): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConfigInfos>, ApiError> {
    let plugin = state.manager.catalog().find(&reference).map_err(ApiError::not_found)?;
    let given: BTreeMap<String, String> = string_map(&json_body(body)?, false)
        .map_err(|problems| ApiError::invalid_config(&problems))?
        .into_iter()
        .map(|(key, value)| (key, value.unwrap_or_default()))
        .collect();
    let mut flat = given.clone();
    match flat.get("connector.class") {
        Some(class) if class.split('@').next() != Some(plugin.description.name.as_str()) => {
            return Err(ApiError::bad_request(format!(
                "connector.class {class:?} is not the plugin of the URL ({reference}); leave it out or make them match"
            )));
        }
        Some(_) => {}
        None => {
            flat.insert("connector.class".into(), reference.clone());
        }
    }
    let mut problems: Vec<(String, String)> = match from_flat(&flat, None) {
        Err(problems) => problems,
        Ok(config) => state.manager.check(&config).await.into_iter().map(|(key, message)| (flat_key(&key), message)).collect(),
    };
    // Without a topic key the pure check cannot tell a source from a sink; the plugin
    // can: a sink's missing key is `topics`.
    if plugin.description.kind == PluginKind::Sink && !given.contains_key("topic") {
        problems.retain(|(key, _)| key != "topic");
        if !given.contains_key("topics") {
            problems.push(("topics".into(), "missing: a sink connector needs `topics`, the topics it reads (comma-separated)".into()));
        }
    }
    if !given.contains_key("name") && !problems.iter().any(|(key, _)| key == "name") {
        problems.push(("name".into(), "missing: every connector needs a name".into()));
    }
    let description = &plugin.description;
    let value_of = |name: &str, secret: bool, errors: Vec<String>| {
        let value = given.get(name).map(|value| if secret { HIDDEN.to_owned() } else { value.clone() });
        ConfigKeyValue { name: name.to_owned(), value, recommended_values: Vec::new(), errors, visible: true }
    };
    let mut errors_of = |name: &str| -> Vec<String> {
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut problems).into_iter().partition(|(key, _)| key == name);
        problems = others;
        mine.into_iter().map(|(_, message)| message).collect()
    };
    let mut configs = Vec::new();
    for (order, host_key) in host_definitions(description.kind).into_iter().enumerate() {
        let definition = ConfigKeyDefinition {
            required: host_key.required,
            importance: "HIGH".to_owned(),
            ..plain_definition(host_key.name, host_key.kind, host_key.default, host_key.documentation, Some(host_key.group), order as i64)
        };
        configs.push(ConfigKeyInfo { definition, value: value_of(host_key.name, false, errors_of(host_key.name)) });
    }
    for (order, option) in description.options.iter().enumerate() {
        let definition = option_definition(option, Some(&description.name), order as i64);
        configs.push(ConfigKeyInfo { definition, value: value_of(&option.name, option.secret, errors_of(&option.name)) });
    }
    // What fits no definition (an unknown key, say) is reported under its own name.
    let mut leftover: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, message) in problems {
        leftover.entry(key).or_default().push(message);
    }
    let unlisted = leftover.len().saturating_sub(super::MAX_PROBLEMS_LISTED);
    for (key, mut errors) in leftover.into_iter().take(super::MAX_PROBLEMS_LISTED) {
        errors.truncate(super::MAX_PROBLEMS_LISTED);
        let key = super::shorten(&key);
        let definition = plain_definition(&key, "STRING", None, "not an option of this plugin", None, -1);
        configs.push(ConfigKeyInfo { definition, value: value_of(&key, true, errors) });
    }
    let mut error_count: usize = configs.iter().map(|config| config.value.errors.len()).sum();
    if unlisted > 0 {
        error_count += unlisted;
        let definition = plain_definition("...", "STRING", None, "keys left out of this answer", None, -1);
        let errors = vec![format!("and {unlisted} more keys that are not options of this plugin")];
        let value = ConfigKeyValue { name: "...".to_owned(), value: None, recommended_values: Vec::new(), errors, visible: true };
        configs.push(ConfigKeyInfo { definition, value });
    }
    Ok(Json(ConfigInfos {
        name: description.name.clone(),
        error_count,
        groups: vec!["Common".to_owned(), "Error Handling".to_owned(), description.name.clone()],
        configs,
    }))
}
