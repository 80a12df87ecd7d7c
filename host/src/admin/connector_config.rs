//! Kafka Connect's flat string maps (`connector.class`, `tasks.max`, `topics`,
//! `errors.*` and the plugin's own keys side by side) to and from the YAML model,
//! both ways, with a problem per key in Kafka Connect's key names.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::config::{ConnectorConfig, EgressConfig, ErrorsConfig, ScalarString, Tolerance};
use crate::manager::ManagedConnector;
use crate::runtime::PluginDescription;

/// Problems as `(key, message)`.
pub type Problems = Vec<(String, String)>;

/// What a secret option reads back as; a PUT of it keeps the stored value.
pub const HIDDEN: &str = "[hidden]";

/// The host-level keys, each with its YAML-model counterpart.
const HOST_KEYS: &[(&str, &str)] = &[
    ("name", "name"),
    ("connector.class", "plugin"),
    ("tasks.max", "tasks_max"),
    ("topic", "topic"),
    ("topics", "topics"),
    ("batch.size", "batch_size"),
    ("errors.tolerance", "errors.tolerance"),
    ("errors.retry.timeout", "errors.retry_timeout"),
    ("errors.log.enable", "errors.log"),
    ("errors.deadletterqueue.topic.name", "errors.dead_letter_topic"),
    ("egress.allowed.hosts", "egress.allowed_hosts"),
    ("egress.request.timeout", "egress.request_timeout"),
    ("egress.max.response.mib", "egress.max_response_mib"),
];

/// The flat key for a problem found on the YAML model (`config.index` -> `index`).
pub fn flat_key(model_key: &str) -> String {
    if let Some(option) = model_key.strip_prefix("config.") {
        return option.to_owned();
    }
    let base = model_key.split('[').next().unwrap_or(model_key);
    HOST_KEYS.iter().find(|(_, model)| *model == base).map_or_else(|| model_key.to_owned(), |(flat, _)| (*flat).to_owned())
}

fn is_secret(description: Option<&PluginDescription>, key: &str) -> bool {
    description.is_none_or(|description| description.options.iter().any(|option| option.name == key && option.secret))
}

/// The connector's configuration as a flat map. Secret values read `[hidden]`; when
/// the plugin is unknown (it cannot run), every plugin value does.
pub fn to_flat(connector: &ManagedConnector) -> BTreeMap<String, String> {
    let config = &connector.config;
    let description = connector.plan.as_ref().ok().map(|plan| &plan.plugin.description);
    let mut flat: BTreeMap<String, String> = config
        .config
        .iter()
        .map(|(key, value)| (key.clone(), if is_secret(description, key) { HIDDEN.to_owned() } else { value.0.clone() }))
        .collect();
    flat.extend(host_keys(config, connector.task_count()));
    flat
}

/// The connector's configuration as a flat map with secret values in clear: what a
/// PATCH merges onto. Never answered to a client.
pub fn to_flat_unredacted(config: &ConnectorConfig) -> BTreeMap<String, String> {
    let mut flat: BTreeMap<String, String> = config.config.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect();
    flat.extend(host_keys(config, config.tasks_max));
    flat
}

fn host_keys(config: &ConnectorConfig, tasks: u32) -> Vec<(String, String)> {
    let mut keys = vec![
        ("name".to_owned(), config.name.clone()),
        ("connector.class".to_owned(), config.plugin.clone()),
        ("tasks.max".to_owned(), tasks.to_string()),
    ];
    if let Some(topic) = &config.topic {
        keys.push(("topic".into(), topic.clone()));
    }
    if !config.topics.is_empty() {
        keys.push(("topics".into(), config.topics.join(",")));
    }
    if config.batch_size != ConnectorConfig::DEFAULT_BATCH_SIZE {
        keys.push(("batch.size".into(), config.batch_size.to_string()));
    }
    let errors = &config.errors;
    let tolerance = match errors.tolerance {
        Tolerance::All => "all",
        Tolerance::None => "none",
    };
    keys.push(("errors.tolerance".into(), tolerance.into()));
    keys.push(("errors.retry.timeout".into(), errors.retry_timeout.as_millis().to_string()));
    keys.push(("errors.log.enable".into(), errors.log.to_string()));
    if let Some(topic) = &errors.dead_letter_topic {
        keys.push(("errors.deadletterqueue.topic.name".into(), topic.clone()));
    }
    let egress = &config.egress;
    if !egress.allowed_hosts.is_empty() {
        keys.push(("egress.allowed.hosts".into(), egress.allowed_hosts.join(",")));
    }
    if *egress != EgressConfig::default() {
        keys.push(("egress.request.timeout".into(), egress.request_timeout.as_millis().to_string()));
        keys.push(("egress.max.response.mib".into(), egress.max_response_mib.to_string()));
    }
    keys
}

/// The most keys a connector configuration may have: bounds the work and the answer
/// of every request that carries one.
pub const MAX_CONFIG_KEYS: usize = 1000;

/// A JSON object of config values as strings: Kafka Connect's maps are strings, but
/// numbers and booleans are taken as what they spell. `null` is allowed only where
/// `allow_null` (a PATCH removing a key) and kept as `None`.
pub fn string_map(value: &Value, allow_null: bool) -> Result<BTreeMap<String, Option<String>>, Problems> {
    let Some(object) = value.as_object() else {
        return Err(vec![("config".into(), "must be a JSON object of string values".into())]);
    };
    if object.len() > MAX_CONFIG_KEYS {
        return Err(vec![("config".into(), format!("has {} keys; a connector configuration has at most {MAX_CONFIG_KEYS}", object.len()))]);
    }
    let mut map = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in object {
        let text = match value {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Bool(flag) => Some(flag.to_string()),
            Value::Null if allow_null => None,
            other => {
                problems.push((key.clone(), format!("must be a string, not {}", json_kind(other))));
                continue;
            }
        };
        map.insert(key.clone(), text);
    }
    if problems.is_empty() { Ok(map) } else { Err(problems) }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a flat map into the YAML model, or every problem by flat key. Values of
/// secret options given as `[hidden]` are taken from `previous` (what a client read
/// back and sent unchanged).
pub fn from_flat(flat: &BTreeMap<String, String>, previous: Option<&ConnectorConfig>) -> Result<ConnectorConfig, Problems> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let take = |key: &str| flat.get(key).map(|value| value.trim().to_owned());
    let name = take("name").unwrap_or_default();
    let plugin = match take("connector.class") {
        Some(plugin) if !plugin.is_empty() => plugin,
        _ => {
            problems.push(("connector.class".into(), "missing: name the plugin, as `name` or `name@version`".into()));
            String::new()
        }
    };
    let tasks_max = number_of(&mut problems, take("tasks.max"), "tasks.max", 1);
    let batch_size = number_of(&mut problems, take("batch.size"), "batch.size", ConnectorConfig::DEFAULT_BATCH_SIZE);
    let topic = take("topic").filter(|topic| !topic.is_empty());
    let topics: Vec<String> = take("topics")
        .map(|topics| topics.split(',').map(str::trim).filter(|topic| !topic.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let mut errors = ErrorsConfig::default();
    match take("errors.tolerance").as_deref() {
        None | Some("none") => {}
        Some("all") => errors.tolerance = Tolerance::All,
        Some(other) => problems.push(("errors.tolerance".into(), format!("must be none or all, not {other:?}"))),
    }
    if let Some(text) = take("errors.retry.timeout") {
        match text.parse::<u64>() {
            Ok(milliseconds) => errors.retry_timeout = Duration::from_millis(milliseconds),
            Err(_) => problems.push((
                "errors.retry.timeout".into(),
                format!("must be a whole number of milliseconds, not {text:?} (-1, retrying forever, is not supported)"),
            )),
        }
    }
    match take("errors.log.enable").map(|text| text.to_ascii_lowercase()).as_deref() {
        None | Some("false") => {}
        Some("true") => errors.log = true,
        Some(other) => problems.push(("errors.log.enable".into(), format!("must be true or false, not {other:?}"))),
    }
    errors.dead_letter_topic = take("errors.deadletterqueue.topic.name").filter(|topic| !topic.is_empty());
    let mut egress = EgressConfig::default();
    if let Some(hosts) = take("egress.allowed.hosts") {
        egress.allowed_hosts = hosts.split(',').map(str::trim).filter(|host| !host.is_empty()).map(str::to_owned).collect();
    }
    if let Some(text) = take("egress.request.timeout") {
        match text.parse::<u64>() {
            Ok(milliseconds) => egress.request_timeout = Duration::from_millis(milliseconds),
            Err(_) => problems.push(("egress.request.timeout".into(), format!("must be a whole number of milliseconds, not {text:?}"))),
        }
    }
    egress.max_response_mib = number_of(&mut problems, take("egress.max.response.mib"), "egress.max.response.mib", egress.max_response_mib);
    let config: BTreeMap<String, ScalarString> = flat
        .iter()
        .filter(|(key, _)| !HOST_KEYS.iter().any(|(host, _)| host == key))
        .map(|(key, value)| {
            let kept = previous.filter(|_| value == HIDDEN).and_then(|previous| previous.config.get(key)).cloned();
            (key.clone(), kept.unwrap_or_else(|| ScalarString(value.clone())))
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ConnectorConfig { name, plugin, enabled: true, topic, topics, tasks_max, batch_size, config, errors, egress })
}

/// `text` as a whole number, or `default` with a problem under `key`.
fn number_of(problems: &mut Problems, text: Option<String>, key: &str, default: u32) -> u32 {
    match text {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            problems.push((key.to_owned(), format!("must be a whole number, not {text:?}")));
            default
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn a_flat_map_reads_into_the_model_and_back() {
        let input = flat(&[
            ("name", "files"),
            ("connector.class", "file-sink@0.1.0"),
            ("tasks.max", "2"),
            ("topics", "a, b"),
            ("batch.size", "100"),
            ("errors.tolerance", "all"),
            ("errors.retry.timeout", "90000"),
            ("errors.log.enable", "true"),
            ("errors.deadletterqueue.topic.name", "dlq"),
            ("directory", "/tmp/out"),
        ]);
        let config = from_flat(&input, None).unwrap();
        assert_eq!(config.plugin, "file-sink@0.1.0");
        assert_eq!(config.topics, vec!["a", "b"]);
        assert_eq!(config.tasks_max, 2);
        assert_eq!(config.batch_size, 100);
        assert_eq!(config.errors.retry_timeout, Duration::from_secs(90));
        assert!(config.errors.log);
        assert_eq!(config.errors.dead_letter_topic.as_deref(), Some("dlq"));
        assert_eq!(config.config.get("directory").map(|value| value.0.as_str()), Some("/tmp/out"));
        let mut expected = input.clone();
        expected.insert("topics".into(), "a,b".into());
        assert_eq!(to_flat_unredacted(&config), expected);
    }

    #[test]
    fn every_bad_key_is_reported_by_its_flat_name() {
        let problems =
            from_flat(&flat(&[("tasks.max", "two"), ("errors.tolerance", "some"), ("errors.log.enable", "yes")]), None).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, vec!["connector.class", "tasks.max", "errors.tolerance", "errors.log.enable"]);
        assert_eq!(flat_key("config.index"), "index");
        assert_eq!(flat_key("tasks_max"), "tasks.max");
        assert_eq!(flat_key("topics[1]"), "topics");
        assert_eq!(flat_key("errors.dead_letter_topic"), "errors.deadletterqueue.topic.name");
    }

    #[test]
    fn a_hidden_secret_keeps_the_stored_value() {
        let previous = from_flat(&flat(&[("connector.class", "x"), ("api_key", "s3cr3t")]), None).unwrap();
        let updated = from_flat(&flat(&[("connector.class", "x"), ("api_key", HIDDEN)]), Some(&previous)).unwrap();
        assert_eq!(updated.config["api_key"].0, "s3cr3t");
        let replaced = from_flat(&flat(&[("connector.class", "x"), ("api_key", "new")]), Some(&previous)).unwrap();
        assert_eq!(replaced.config["api_key"].0, "new");
    }

    #[test]
    fn values_must_be_strings_numbers_or_booleans() {
        let value = serde_json::json!({"a": "x", "b": 2, "c": true, "d": null, "e": [1]});
        let problems = string_map(&value, false).unwrap_err();
        assert_eq!(
            problems,
            vec![("d".to_owned(), "must be a string, not null".to_owned()), ("e".to_owned(), "must be a string, not an array".to_owned())]
        );
        let patch = string_map(&serde_json::json!({"b": 2, "d": null}), true).unwrap();
        assert_eq!(patch["b"].as_deref(), Some("2"));
        assert_eq!(patch["d"], None);
    }
}
