//! Turning configured connectors into runnable plans: resolve the plugin, check the
//! connector's shape and options against it, and collect every problem at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capabilities::Grants;
use crate::config::{ConnectorConfig, LoadedConfig, Tolerance};
use crate::runtime::{LoadedPlugin, PluginCatalog, PluginKind, Runtime, validate_config};
use crate::telemetry::redaction::SecretRegistration;
use crate::transforms::{Chain, ChainPlugins};

/// What a secret value reads back as.
pub const HIDDEN: &str = "[hidden]";

/// A connector ready to run.
#[derive(Debug, Clone)]
pub struct ConnectorPlan {
    /// As configured.
    pub config: ConnectorConfig,
    /// The resolved plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// The options handed to the plugin.
    pub plugin_config: Vec<(String, String)>,
    /// What the connector's configuration grants the plugin: the values of the
    /// options the plugin declares as grants.
    pub grants: Grants,
    /// Values of the options the plugin declares secret: removed from every reason
    /// that goes to a log, a status or a dead letter.
    pub secrets: Vec<String>,
    /// Keeps the secrets out of every log line while the plan lives.
    pub log_redaction: Arc<SecretRegistration>,
    /// The transforms every record goes through, built once for all tasks.
    pub chain: Arc<Chain>,
    /// Set once the transactional ids of the connector's earlier tasks are fenced (a
    /// processor on Kafka): the tasks of one plan wait for it before they start, so
    /// that no earlier instance of any of them writes once one reads its state. Shared
    /// by the plan's clones (a task restarted alone keeps the same partitions).
    pub fenced: Arc<tokio::sync::OnceCell<()>>,
}

impl ConnectorPlan {
    /// Source or sink.
    pub fn kind(&self) -> PluginKind {
        self.plugin.description.kind
    }

    /// Tasks to run: sources run one task, sinks `tasks_max`.
    pub fn task_count(&self) -> u32 {
        match self.kind() {
            PluginKind::Sink | PluginKind::Processor => self.config.tasks_max,
            _ => 1,
        }
    }

    /// Its configuration with the value of every secret option, of the plugin or of
    /// a transform, and of every credential among the ignored keys, read as
    /// [`HIDDEN`]: what may be stored where others read it.
    pub fn config_without_secrets(&self) -> ConnectorConfig {
        let mut config = self.config.clone();
        let secret = |value: &str| self.secrets.iter().any(|secret| !secret.is_empty() && secret == value);
        let options = config.config.values_mut().chain(config.transforms.iter_mut().flat_map(|transform| transform.options.values_mut()));
        for value in options.filter(|value| secret(&value.0)) {
            value.0 = HIDDEN.to_owned();
        }
        for (key, value) in config.ignored.iter_mut() {
            if crate::config::is_secret_ignored_key(key) {
                value.0 = HIDDEN.to_owned();
            }
        }
        config
    }

    /// `text` with every secret option value replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        redact_secrets(&self.secrets, text)
    }

    /// Whether bad records are skipped.
    pub fn tolerates_errors(&self) -> bool {
        self.config.errors.tolerance == Tolerance::All
    }
}

/// Whether `config` has a value [`ConnectorPlan::config_without_secrets`] hid: it
/// cannot run as it is.
pub fn hides_secrets(config: &ConnectorConfig) -> bool {
    let options = config.config.values().chain(config.transforms.iter().flat_map(|transform| transform.options.values()));
    options.chain(config.ignored.values()).any(|value| value.0 == HIDDEN)
}

/// The longest name of a processor connector: its changelog topics on Kafka,
/// `<name>-<store>-changelog` with stores of up to 64 characters, stay within Kafka's
/// 249 (checked on every transport, so that a connector moves between them).
const MAX_PROCESSOR_NAME: usize = 249 - crate::processing::keyed_state::MAX_STORE_NAME - "--changelog".len();

/// Plans every connector, or returns every problem found (located in the file).
/// Blocking: instantiates plugins to run their config validation.
/// Disabled connectors are checked like the others but left out of the plans.
pub fn plan_connectors(
    loaded: &LoadedConfig,
    catalog: &PluginCatalog,
    runtime: &Runtime,
) -> Result<Vec<ConnectorPlan>, crate::config::ConfigErrors> {
    let mut plans = Vec::new();
    let mut problems: Vec<(String, String)> = Vec::new();
    for (index, connector) in loaded.config.connectors.iter().enumerate() {
        if let Some(warning) = crate::config::ignored_keys_warning(connector) {
            tracing::warn!(connector = %connector.name, "{warning}");
        }
        match plan_connector(connector, catalog, runtime, &|path| loaded.resolve(path)) {
            Ok(plan) if connector.enabled => plans.push(plan),
            Ok(_) => tracing::info!(connector = %connector.name, "The connector is disabled (enabled: false): checked, not run."),
            Err(found) => problems.extend(found.into_iter().map(|(key, message)| (format!("connectors[{index}].{key}"), message))),
        }
    }
    if problems.is_empty() { Ok(plans) } else { Err(loaded.errors(problems)) }
}

/// Plans one connector against the plugins, or returns every problem as `(key,
/// message)` with keys inside the connector (`plugin`, `config.index`, ...). Relative
/// directories in grants are resolved with `resolve`. Blocking: instantiates the plugin
/// to run its config validation.
pub fn plan_connector(
    connector: &ConnectorConfig,
    catalog: &PluginCatalog,
    runtime: &Runtime,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<ConnectorPlan, Vec<(String, String)>> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let plugin = catalog.find(&connector.plugin).map_err(|message| vec![("plugin".to_owned(), message)])?;
    let description = &plugin.description;
    match description.kind {
        // Keyed by what was written instead, so a file's error points at that line.
        PluginKind::Source if connector.topic.is_none() => {
            problems.push(("topics".into(), format!("plugin {} is a source: give `topic` (one topic to write to)", description.name)))
        }
        PluginKind::Sink if connector.topics.is_empty() => {
            problems.push(("topic".into(), format!("plugin {} is a sink: give `topics` (a list to read from)", description.name)))
        }
        PluginKind::Source | PluginKind::Sink if connector.topic.is_some() && !connector.topics.is_empty() => problems.push((
            "topics".into(),
            format!(
                "plugin {} is a {}: give `topic` for a source or `topics` for a sink, not both (a processor takes both)",
                description.name, description.kind
            ),
        )),
        PluginKind::Transform => problems.push((
            "plugin".into(),
            format!("plugin {} is a transform; a connector needs a source, sink or processor plugin", description.name),
        )),
        PluginKind::Processor => {
            if connector.name.len() > MAX_PROCESSOR_NAME {
                problems.push((
                    "name".into(),
                    format!(
                        "a processor's name takes at most {MAX_PROCESSOR_NAME} characters (this one has {}): on Kafka its changelog \
                         topics are <name>-<store>-changelog, with stores of up to 64 characters, within Kafka's 249",
                        connector.name.len()
                    ),
                ));
            }
            if connector.topics.is_empty() {
                problems.push(("topics".into(), format!("{} is a processor: give `topics` (a list to read from)", description.name)));
            }
            if connector.topic.is_none() {
                problems.push(("topic".into(), format!("{} is a processor: give `topic` (the topic its results go to)", description.name)));
            }
            // Tasks split the input partitions: a group must live in one of them.
            let group_by = connector.config.get("group_by").map(|value| value.0.trim());
            if plugin.origin == crate::runtime::PluginOrigin::Builtin
                && connector.tasks_max > 1
                && group_by.is_some_and(|group_by| !group_by.is_empty() && group_by != "key")
            {
                problems.push((
                    "tasks_max".into(),
                    "tasks split the input partitions, so a group made of value fields would be counted in several tasks: \
                     use tasks_max: 1, or key the input by the group (a ValueToKey transform upstream) and group_by: key"
                        .into(),
                ));
            }
        }
        _ => {}
    }
    // Only a processor sends records (its late ones) to a dead-letter topic under `none`.
    if description.kind != PluginKind::Processor
        && connector.errors.dead_letter_topic.is_some()
        && connector.errors.tolerance == crate::config::Tolerance::None
    {
        problems.push(("errors.dead_letter_topic".into(), crate::config::DEAD_LETTERS_NEED_TOLERANCE.into()));
    }
    // tasks_max is a maximum, as in Kafka Connect: a source runs one task whatever it says.
    let plugin_config: Vec<(String, String)> = connector.config.iter().map(|(key, value)| (key.clone(), value.0.clone())).collect();
    // Registered before the plugin sees them: what it logs while validating, and every
    // problem below, are kept free of them too.
    let secrets = plugin_config
        .iter()
        .filter(|(key, value)| !value.is_empty() && description.options.iter().any(|option| option.name == *key && option.secret))
        .map(|(_, value)| value.clone())
        .collect::<Vec<String>>();
    let log_redaction = Arc::new(SecretRegistration::new(secrets.iter().map(String::as_str)));
    let option_problems = description.check_options(plugin_config.iter().map(|(key, value)| (key.as_str(), value.as_str())));
    let options_valid = option_problems.is_empty();
    problems.extend(option_problems.into_iter().map(|(key, message)| (format!("config.{key}"), message)));
    if options_valid {
        match validate_config(runtime, &plugin, &plugin_config) {
            Ok(issues) => problems.extend(issues.into_iter().map(|(key, message)| (format!("config.{key}"), message))),
            Err(failure) => problems.push(("plugin".into(), format!("the plugin failed to validate its configuration: {failure}"))),
        }
    }
    let chain = Chain::build(&connector.transforms, &connector.predicates, &ChainPlugins::new(catalog, runtime)).unwrap_or_else(|found| {
        problems.extend(found);
        Chain::default()
    });
    // A WASM transform's secret options are kept out of every reason too.
    let secrets: Vec<String> = secrets.into_iter().chain(chain.secrets()).collect();
    if !problems.is_empty() {
        return Err(problems.into_iter().map(|(key, message)| (key, redact_secrets(&secrets, &message))).collect());
    }
    let mut grants = Grants { egress: connector.egress.clone(), ..Grants::default() };
    for (option_type, value) in description.grants(&plugin_config) {
        grants.add(option_type, value, |directory| resolve(directory.as_ref()));
    }
    Ok(ConnectorPlan {
        config: connector.clone(),
        plugin: plugin.clone(),
        plugin_config,
        grants,
        secrets,
        log_redaction,
        chain: Arc::new(chain),
        fenced: Arc::default(),
    })
}

/// `text` with every one of `secrets` replaced by `[redacted]`.
fn redact_secrets(secrets: &[String], text: &str) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "[redacted]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_they_appear() {
        let secrets = vec!["s3cr3t-key".to_owned(), "hunter2".to_owned()];
        assert_eq!(
            redact_secrets(&secrets, "401 for key s3cr3t-key (user hunter2, key s3cr3t-key)"),
            "401 for key [redacted] (user [redacted], key [redacted])"
        );
        assert_eq!(redact_secrets(&[], "nothing secret"), "nothing secret");
    }
}
