//! Pure checks of a configuration (no I/O), reporting every problem at once as
//! `(path, message)`; the loader locates and prefixes them.

use std::collections::HashSet;

use super::{HostConfig, Tolerance};

/// Kafka's own limit on topic names.
const MAX_TOPIC_LENGTH: usize = 249;

/// Every problem in `config`.
pub fn validate(config: &HostConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut problem = |path: String, message: &str| problems.push((path, message.to_owned()));
    if config.version != 1 {
        problem("version".into(), "only version 1 exists; write `version: 1`");
    }
    if let Some(kafka) = &config.kafka
        && kafka.bootstrap_servers.trim().is_empty()
    {
        problem("kafka.bootstrap_servers".into(), "must not be empty; remove the `kafka` block to use the embedded transport");
    }
    if !(1..=1024).contains(&config.embedded.partitions) {
        problem("embedded.partitions".into(), "must be between 1 and 1024");
    }
    if config.plugins.memory_limit_mib == 0 {
        problem("plugins.memory_limit_mib".into(), "must be at least 1");
    }
    if config.plugins.call_timeout.is_zero() {
        problem("plugins.call_timeout".into(), "must be longer than 0");
    }
    let mut names = HashSet::new();
    for (index, connector) in config.connectors.iter().enumerate() {
        let at = |key: &str| format!("connectors[{index}].{key}");
        if connector.name.is_empty() || !connector.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            problem(at("name"), "must be letters, digits, `.`, `_` or `-`, and not empty");
        } else if !names.insert(connector.name.as_str()) {
            problem(at("name"), "is used by an earlier connector; names must be unique");
        }
        if connector.plugin.trim().is_empty() || connector.plugin.ends_with('@') {
            problem(at("plugin"), "must name a plugin, as `name` or `name@version`");
        }
        match (&connector.topic, connector.topics.is_empty()) {
            (Some(_), false) => problem(at("topics"), "give `topic` for a source or `topics` for a sink, not both"),
            (None, true) => problem(at("topic"), "missing: a source needs `topic`, a sink needs `topics`"),
            _ => {}
        }
        let topic_paths = connector
            .topic
            .iter()
            .map(|topic| (at("topic"), topic))
            .chain(connector.topics.iter().enumerate().map(|(item, topic)| (at(&format!("topics[{item}]")), topic)))
            .chain(connector.errors.dead_letter_topic.iter().map(|topic| (at("errors.dead_letter_topic"), topic)));
        for (path, topic) in topic_paths {
            if let Err(message) = check_topic_name(topic) {
                problem(path, &message);
            }
        }
        if connector.tasks_max == 0 {
            problem(at("tasks_max"), "must be at least 1");
        }
        if !(1..=100_000).contains(&connector.batch_size) {
            problem(at("batch_size"), "must be between 1 and 100000");
        }
        if connector.errors.dead_letter_topic.is_some() && connector.errors.tolerance == Tolerance::None {
            problem(
                at("errors.dead_letter_topic"),
                "needs `tolerance: all`: with `none` a bad record stops the task and nothing is dead-lettered",
            );
        }
        if connector.topics.iter().any(|topic| Some(topic) == connector.errors.dead_letter_topic.as_ref()) {
            problem(at("errors.dead_letter_topic"), "must not be one of the topics the connector reads");
        }
    }
    problems
}

/// Kafka's rules for topic names.
pub fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic == "." || topic == ".." {
        return Err("a topic name must not be empty, `.` or `..`".to_owned());
    }
    if topic.len() > MAX_TOPIC_LENGTH {
        return Err(format!("a topic name must be at most {MAX_TOPIC_LENGTH} characters"));
    }
    if !topic.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(format!("topic \"{topic}\" may contain only letters, digits, `.`, `_` and `-`"));
    }
    Ok(())
}
