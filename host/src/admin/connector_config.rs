//! Kafka Connect's flat string maps (`connector.class`, `tasks.max`, `topics`,
//! `errors.*` and the plugin's own keys side by side) to and from the YAML model,
//! both ways, with a problem per key in Kafka Connect's key names.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::config::{
    ConnectorConfig, EgressConfig, ErrorsConfig, PredicateConfig, ScalarString, Tolerance, TransformConfig, is_chain_key, is_ignored_key,
    is_secret_ignored_key,
};
use crate::manager::ManagedConnector;
use crate::runtime::PluginDescription;
use crate::transforms::WASM_TYPE;
use crate::transforms::short_predicate_name;
use crate::transforms::wasm::PLUGIN_KEY;

/// Problems as `(key, message)`.
pub type Problems = Vec<(String, String)>;

/// What a secret option reads back as; a PUT of it keeps the stored value.
pub use crate::worker::HIDDEN;

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

/// The flat key for a problem found on the YAML model (`config.index` -> `index`,
/// `transforms[2].name` -> `transforms`; a transform's own keys are flat already).
pub fn flat_key(model_key: &str) -> String {
    if let Some(option) = model_key.strip_prefix("config.") {
        return option.to_owned();
    }
    let base = model_key.split('[').next().unwrap_or(model_key);
    if ["transforms", "predicates", "ignored"].contains(&base) && model_key.len() > base.len() && model_key[base.len()..].starts_with('[') {
        return base.to_owned();
    }
    if let Some(key) = model_key.strip_prefix("ignored.") {
        return key.to_owned();
    }
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
    flat.extend(chain_keys(config));
    for (key, value) in flat.iter_mut() {
        if config.ignored.contains_key(key) && is_secret_ignored_key(key) {
            *value = HIDDEN.to_owned();
        }
    }
    // A WASM transform's secret options; when its plugin is unknown, all its options.
    let chain = connector.plan.as_ref().ok().map(|plan| &plan.chain);
    for transform in config.transforms.iter().filter(|transform| transform.type_name.trim() == WASM_TYPE) {
        for key in transform.options.keys().filter(|key| *key != PLUGIN_KEY) {
            if chain.is_none_or(|chain| chain.is_secret_option(&transform.name, key)) {
                flat.insert(format!("transforms.{}.{key}", transform.name), HIDDEN.to_owned());
            }
        }
    }
    flat
}

/// The connector's configuration as a flat map with secret values in clear: what a
/// PATCH merges onto. Never answered to a client.
pub fn to_flat_unredacted(config: &ConnectorConfig) -> BTreeMap<String, String> {
    let mut flat: BTreeMap<String, String> = config.config.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect();
    flat.extend(host_keys(config, config.tasks_max));
    flat.extend(chain_keys(config));
    flat
}

/// The transforms, the predicates and the ignored framework keys as flat keys.
fn chain_keys(config: &ConnectorConfig) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let aliases = |names: Vec<&str>| names.join(",");
    if !config.transforms.is_empty() {
        keys.push(("transforms".to_owned(), aliases(config.transforms.iter().map(|transform| transform.name.as_str()).collect())));
    }
    for transform in &config.transforms {
        let prefix = format!("transforms.{}.", transform.name);
        keys.push((format!("{prefix}type"), transform.type_name.clone()));
        if let Some(predicate) = &transform.predicate {
            keys.push((format!("{prefix}predicate"), predicate.clone()));
        }
        if transform.negate {
            keys.push((format!("{prefix}negate"), "true".to_owned()));
        }
        keys.extend(transform.options.iter().map(|(key, value)| (format!("{prefix}{key}"), value.0.clone())));
    }
    if !config.predicates.is_empty() {
        keys.push(("predicates".to_owned(), aliases(config.predicates.iter().map(|predicate| predicate.name.as_str()).collect())));
    }
    for predicate in &config.predicates {
        let prefix = format!("predicates.{}.", predicate.name);
        keys.push((format!("{prefix}type"), predicate.type_name.clone()));
        let header_key = short_predicate_name(&predicate.type_name) == "HasHeaderKey";
        keys.extend(predicate.options.iter().map(|(key, value)| {
            let key = if header_key && key == "header" { "name" } else { key.as_str() };
            (format!("{prefix}{key}"), value.0.clone())
        }));
    }
    keys.extend(config.ignored.iter().map(|(key, value)| (key.clone(), value.0.clone())));
    keys
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
    if flat.contains_key("topics.regex") {
        problems.push(("topics.regex".into(), "is not supported: list the topics to read in `topics`".into()));
    }
    let (mut transforms, predicates, unlisted) = chain_from_flat(flat, &mut problems);
    // A transform's secret read back as `[hidden]` and sent unchanged keeps its stored
    // value, as long as the same plugin gets it: pointing the alias at another plugin
    // must not hand it a secret its sender could not read.
    for transform in &mut transforms {
        let before = previous.and_then(|previous| {
            previous.transforms.iter().find(|before| {
                before.name == transform.name
                    && before.type_name == transform.type_name
                    && before.options.get(PLUGIN_KEY) == transform.options.get(PLUGIN_KEY)
            })
        });
        for (key, value) in transform.options.iter_mut() {
            if value.0 == HIDDEN
                && let Some(stored) = before.and_then(|before| before.options.get(key))
            {
                *value = stored.clone();
            }
        }
    }
    // A credential read back as `[hidden]` and sent unchanged keeps its stored value.
    let kept = |key: &String, value: &String| {
        let previous = previous.filter(|_| value == HIDDEN).and_then(|previous| previous.ignored.get(key));
        previous.cloned().unwrap_or_else(|| ScalarString(value.clone()))
    };
    let ignored: BTreeMap<String, ScalarString> = flat
        .iter()
        .filter(|(key, _)| is_ignored_key(key))
        .chain(unlisted.iter().map(|(key, value)| (key, value)))
        .map(|(key, value)| (key.clone(), kept(key, value)))
        .collect();
    let config: BTreeMap<String, ScalarString> = flat
        .iter()
        .filter(|(key, _)| {
            !HOST_KEYS.iter().any(|(host, _)| host == key) && !is_chain_key(key) && !is_ignored_key(key) && *key != "topics.regex"
        })
        .map(|(key, value)| {
            // Only for the same plugin: another one (an uploaded one, say) must not get
            // a secret its sender could not read.
            let kept = previous
                .filter(|previous| value == HIDDEN && previous.plugin == plugin)
                .and_then(|previous| previous.config.get(key))
                .cloned();
            (key.clone(), kept.unwrap_or_else(|| ScalarString(value.clone())))
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ConnectorConfig {
        name,
        plugin,
        enabled: true,
        topic,
        topics,
        tasks_max,
        batch_size,
        config,
        errors,
        egress,
        transforms,
        predicates,
        ignored,
    })
}

/// A chain read from flat keys: the transforms, the predicates, and the keys under
/// aliases that are not listed.
pub type FlatChain = (Vec<TransformConfig>, Vec<PredicateConfig>, Vec<(String, String)>);

/// The transforms and predicates of a flat map (Kafka Connect's `transforms`,
/// `predicates` and the keys under their aliases), and the keys under aliases that are
/// not listed (Kafka Connect ignores them); problems are added to `problems`.
pub fn chain_from_flat(flat: &BTreeMap<String, String>, problems: &mut Problems) -> FlatChain {
    let mut unlisted = Vec::new();
    let transforms = aliased(flat, "transforms", problems, &mut unlisted)
        .into_iter()
        .map(|(name, mut options)| {
            let type_name = options.remove("type").map(|value| value.0).unwrap_or_else(|| {
                problems.push((format!("transforms.{name}.type"), "missing: name the transform, e.g. InsertField$Value".into()));
                String::new()
            });
            let predicate = options.remove("predicate").map(|value| value.0.trim().to_owned()).filter(|alias| !alias.is_empty());
            let negate = match options.remove("negate").map(|value| value.0.trim().to_ascii_lowercase()).as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    problems.push((format!("transforms.{name}.negate"), format!("must be true or false, not {other:?}")));
                    false
                }
            };
            TransformConfig { name, type_name, predicate, negate, options }
        })
        .collect();
    let predicates = aliased(flat, "predicates", problems, &mut unlisted)
        .into_iter()
        .map(|(name, mut options)| {
            let type_name = options.remove("type").map(|value| value.0).unwrap_or_else(|| {
                problems.push((format!("predicates.{name}.type"), "missing: name the predicate, e.g. TopicNameMatches".into()));
                String::new()
            });
            // HasHeaderKey's `name` option is `header` in the model, where `name` is the alias.
            if short_predicate_name(&type_name) == "HasHeaderKey"
                && let Some(header) = options.remove("name")
            {
                options.insert("header".to_owned(), header);
            }
            PredicateConfig { name, type_name, options }
        })
        .collect();
    (transforms, predicates, unlisted)
}

/// The aliases `list` names (`transforms` or `predicates`), each with its keys (the
/// part after `<list>.<alias>.`). A key under `list` that names no listed alias goes to
/// `unlisted` (Kafka Connect ignores it).
fn aliased(
    flat: &BTreeMap<String, String>,
    list: &str,
    problems: &mut Problems,
    unlisted: &mut Vec<(String, String)>,
) -> Vec<(String, BTreeMap<String, ScalarString>)> {
    let mut entries: Vec<(String, BTreeMap<String, ScalarString>)> = Vec::new();
    for alias in flat.get(list).map(String::as_str).unwrap_or_default().split(',').map(str::trim).filter(|alias| !alias.is_empty()) {
        if entries.iter().any(|(listed, _)| listed == alias) {
            problems.push((list.to_owned(), format!("lists {} twice; aliases must be unique", crate::names::shown(alias))));
        } else {
            entries.push((alias.to_owned(), BTreeMap::new()));
        }
    }
    let prefix = format!("{list}.");
    for (key, value) in flat.range(prefix.clone()..).take_while(|(key, _)| key.starts_with(&prefix)) {
        let rest = &key[prefix.len()..];
        // The longest listed alias the key starts with (an alias may contain dots).
        let owner = entries
            .iter_mut()
            .filter(|(alias, _)| rest.strip_prefix(alias.as_str()).is_some_and(|option| option.len() > 1 && option.starts_with('.')))
            .max_by_key(|(alias, _)| alias.len());
        match owner {
            Some((alias, options)) => {
                let option = rest[alias.len() + 1..].to_owned();
                options.insert(option, ScalarString(value.clone()));
            }
            None => unlisted.push((key.clone(), value.clone())),
        }
    }
    entries
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
    fn a_kafka_connect_chain_and_its_framework_keys_read_into_the_model_and_back() {
        let input = flat(&[
            ("name", "shaped"),
            ("connector.class", "file-sink"),
            ("tasks.max", "1"),
            ("topics", "payments"),
            ("key.converter", "org.apache.kafka.connect.storage.StringConverter"),
            ("value.converter.schemas.enable", "false"),
            ("transforms", "mask,route.v2"),
            ("transforms.mask.type", "MaskField$Value"),
            ("transforms.mask.fields", "account_id"),
            ("transforms.mask.predicate", "isPayments"),
            ("transforms.mask.negate", "true"),
            ("transforms.route.v2.type", "RegexRouter"),
            ("transforms.route.v2.regex", "(.*)"),
            ("transforms.route.v2.replacement", "$1-shaped"),
            ("predicates", "isPayments"),
            ("predicates.isPayments.type", "TopicNameMatches"),
            ("predicates.isPayments.pattern", "payments"),
            ("errors.tolerance", "none"),
            ("errors.retry.timeout", "300000"),
            ("errors.log.enable", "false"),
            ("directory", "/tmp/out"),
        ]);
        let config = from_flat(&input, None).unwrap();
        let aliases: Vec<&str> = config.transforms.iter().map(|transform| transform.name.as_str()).collect();
        assert_eq!(aliases, ["mask", "route.v2"]);
        assert_eq!(config.transforms[0].type_name, "MaskField$Value");
        assert_eq!((config.transforms[0].predicate.as_deref(), config.transforms[0].negate), (Some("isPayments"), true));
        assert_eq!(config.transforms[1].options["replacement"].0, "$1-shaped");
        assert_eq!(config.predicates[0].options["pattern"].0, "payments");
        assert_eq!(config.ignored.keys().collect::<Vec<_>>(), ["key.converter", "value.converter.schemas.enable"]);
        assert_eq!(config.config.keys().collect::<Vec<_>>(), ["directory"], "only the plugin's own keys reach it");
        assert!(crate::config::validate_connector(&config).is_empty(), "{:?}", crate::config::validate_connector(&config));
        assert!(crate::config::ignored_keys_warning(&config).unwrap().contains("\"key.converter\""));
        assert_eq!(to_flat_unredacted(&config), input, "the configuration reads back as it was written");

        // A key under an alias that is not listed is kept and ignored, as Kafka Connect does.
        let mut leftover = input.clone();
        leftover.insert("transforms.masc.fields".into(), "x".into());
        let with_leftover = from_flat(&leftover, None).unwrap();
        assert_eq!(with_leftover.ignored["transforms.masc.fields"].0, "x");
        assert!(crate::config::validate_connector(&with_leftover).is_empty());
        assert_eq!(to_flat_unredacted(&with_leftover), leftover);
        let mut stale = input.clone();
        stale.insert("transforms.mask.negate".into(), "maybe".into());
        stale.insert("topics.regex".into(), "pay.*".into());
        let keys: Vec<String> = from_flat(&stale, None).unwrap_err().into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["topics.regex", "transforms.mask.negate"]);
        let mut untyped = input.clone();
        untyped.remove("predicates.isPayments.type");
        let problems = from_flat(&untyped, None).unwrap_err();
        assert_eq!(problems[0].0, "predicates.isPayments.type");
    }

    #[test]
    fn a_has_header_key_predicate_and_a_credential_among_the_ignored_keys_survive_storage() {
        let input = flat(&[
            ("name", "headers"),
            ("connector.class", "file-sink"),
            ("topics", "a"),
            ("transforms", "drop"),
            ("transforms.drop.type", "Filter"),
            ("transforms.drop.predicate", "fromTest"),
            ("predicates", "fromTest"),
            ("predicates.fromTest.type", "HasHeaderKey"),
            ("predicates.fromTest.name", "test-run"),
            ("consumer.override.sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule required password=\"s3cr3t\";"),
        ]);
        let config = from_flat(&input, None).unwrap();
        assert_eq!(config.predicates[0].options["header"].0, "test-run", "`name` is the alias in the model");
        assert!(crate::config::validate_connector(&config).is_empty(), "{:?}", crate::config::validate_connector(&config));
        // Stored and read back as the config topic and the store keep it.
        let stored: ConnectorConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(stored, config);
        let read_back = to_flat_unredacted(&stored);
        for (key, value) in &input {
            assert_eq!(read_back.get(key), Some(value), "{key} reads back as written");
        }
        assert!(crate::config::is_secret_ignored_key("consumer.override.sasl.jaas.config"));
        let mut sent_back = input.clone();
        sent_back.insert("consumer.override.sasl.jaas.config".into(), HIDDEN.into());
        let updated = from_flat(&sent_back, Some(&config)).unwrap();
        assert_eq!(updated.ignored, config.ignored, "a hidden credential keeps its stored value");
    }

    #[test]
    fn chain_problems_are_reported_by_their_kafka_connect_keys() {
        let input = flat(&[
            ("connector.class", "file-sink"),
            ("topics", "a"),
            ("transforms", "mask,mask,bad alias"),
            ("transforms.mask.type", "MaskField$Value"),
            ("transforms.mask.colour", "red"),
        ]);
        let keys: Vec<String> = from_flat(&input, None).unwrap_err().into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["transforms", "transforms.bad alias.type"]);
        let input = flat(&[
            ("connector.class", "file-sink"),
            ("topics", "a"),
            ("transforms", "bad alias"),
            ("transforms.bad alias.type", "Filter"),
        ]);
        let problems = crate::config::validate_connector(&from_flat(&input, None).unwrap());
        let keys: Vec<String> = problems.iter().map(|(key, _)| flat_key(key)).collect();
        assert_eq!(keys, ["name", "transforms"], "{problems:?}");
        let input = flat(&[
            ("connector.class", "file-sink"),
            ("topics", "a"),
            ("transforms", "mask"),
            ("transforms.mask.type", "MaskField$Value"),
            ("transforms.mask.colour", "red"),
        ]);
        let problems = crate::config::validate_connector(&from_flat(&input, None).unwrap());
        let keys: Vec<String> = problems.iter().map(|(key, _)| flat_key(key)).collect();
        assert_eq!(keys, ["name", "transforms.mask.colour"], "{problems:?}");
    }

    #[test]
    fn a_hidden_secret_keeps_the_stored_value() {
        let previous = from_flat(&flat(&[("connector.class", "x"), ("api_key", "s3cr3t")]), None).unwrap();
        let updated = from_flat(&flat(&[("connector.class", "x"), ("api_key", HIDDEN)]), Some(&previous)).unwrap();
        assert_eq!(updated.config["api_key"].0, "s3cr3t");
        let replaced = from_flat(&flat(&[("connector.class", "x"), ("api_key", "new")]), Some(&previous)).unwrap();
        assert_eq!(replaced.config["api_key"].0, "new");
        // Another plugin does not get the stored secret: it gets what was sent.
        let other = from_flat(&flat(&[("connector.class", "uploaded"), ("api_key", HIDDEN)]), Some(&previous)).unwrap();
        assert_eq!(other.config["api_key"].0, HIDDEN);

        // The same for a WASM transform's options, by alias and plugin.
        let chain = |plugin: &str, salt: &str| {
            flat(&[
                ("connector.class", "x"),
                ("transforms", "t"),
                ("transforms.t.type", "wasm"),
                ("transforms.t.plugin", plugin),
                ("transforms.t.salt", salt),
            ])
        };
        let previous = from_flat(&chain("hasher", "pepper"), None).unwrap();
        let salt = |config: &ConnectorConfig| config.transforms[0].options["salt"].0.clone();
        assert_eq!(salt(&from_flat(&chain("hasher", HIDDEN), Some(&previous)).unwrap()), "pepper");
        assert_eq!(salt(&from_flat(&chain("uploaded", HIDDEN), Some(&previous)).unwrap()), HIDDEN);
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
