//! Pure checks of a configuration (no I/O), reporting every problem at once as
//! `(path, message)`; the loader locates and prefixes them.

use std::collections::{BTreeSet, HashSet};

use super::{ConnectorConfig, HostConfig, KafkaConfig, PredicateConfig, Tolerance, TransformConfig};

/// The most transforms (and predicates) one connector has.
const MAX_CHAIN: usize = 100;

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
    if config.admin.max_connections == 0 {
        problem("admin.max_connections".into(), "must be at least 1");
    }
    if config.admin.header_timeout.is_zero() {
        problem("admin.header_timeout".into(), "must be longer than 0");
    }
    if config.admin.request_timeout.is_zero() {
        problem("admin.request_timeout".into(), "must be longer than 0");
    }
    for (index, origin) in config.admin.allowed_origins.iter().enumerate() {
        if let Err(message) = check_origin(origin) {
            problem(format!("admin.allowed_origins[{index}]"), &message);
        }
    }
    for (index, name) in config.admin.allowed_hosts.iter().enumerate() {
        let valid =
            name == "*" || (!name.is_empty() && name.len() <= 253 && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)));
        if !valid {
            problem(
                format!("admin.allowed_hosts[{index}]"),
                "is not a host name: write the name alone (`connect.example.com`), without a scheme or port, or `*`",
            );
        }
    }
    if let Some(host) = &config.admin.advertised_host {
        let valid = !host.is_empty() && host.len() <= 253 && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
        if !valid {
            problem(
                "admin.advertised_host".into(),
                "is not a host name or IP address: write it alone (`connect-1.example.com`, `10.0.0.7`), without a scheme or port",
            );
        }
    }
    if config.admin.advertised_port == Some(0) {
        problem("admin.advertised_port".into(), "must be a port between 1 and 65535");
    }
    if config.plugins.memory_limit_mib == 0 {
        problem("plugins.memory_limit_mib".into(), "must be at least 1");
    }
    if config.plugins.call_timeout.is_zero() {
        problem("plugins.call_timeout".into(), "must be longer than 0");
    }
    if let Some(kafka) = &config.kafka {
        problems.extend(validate_cluster(kafka));
    }
    let mut names = HashSet::new();
    for (index, connector) in config.connectors.iter().enumerate() {
        let duplicate = !connector.name.is_empty() && !names.insert(connector.name.as_str());
        if duplicate {
            problems.push((format!("connectors[{index}].name"), "is used by an earlier connector; names must be unique".to_owned()));
        }
        problems.extend(validate_connector(connector).into_iter().map(|(key, message)| (format!("connectors[{index}].{key}"), message)));
    }
    problems
}

/// The longest `group.id`: the default topic names `<group.id>-configs` and
/// `<group.id>-offsets` must fit Kafka's limit on topic names.
const MAX_GROUP_ID_LENGTH: usize = MAX_TOPIC_LENGTH - "-assignments".len();

/// The problems of the settings the hosts of one cluster share.
fn validate_cluster(kafka: &KafkaConfig) -> Vec<(String, String)> {
    let cluster = &kafka.cluster;
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| problems.push((format!("kafka.cluster.{key}"), message));
    match crate::names::check_name(&cluster.group_id) {
        Err(message) => problem("group.id", message),
        Ok(()) if cluster.group_id.len() > MAX_GROUP_ID_LENGTH => {
            problem("group.id", format!("is {} bytes long; at most {MAX_GROUP_ID_LENGTH} are allowed", cluster.group_id.len()))
        }
        Ok(()) => {}
    }
    for (key, topic, older) in [
        ("config.storage.topic", &cluster.config_storage_topic, kafka.config_topic.is_some()),
        ("offset.storage.topic", &cluster.offset_storage_topic, kafka.offsets_topic.is_some()),
        ("assignment.storage.topic", &cluster.assignment_storage_topic, false),
        ("status.storage.topic", &cluster.status_storage_topic, false),
        ("plugin.storage.topic", &cluster.plugin_storage_topic, false),
    ] {
        let Some(topic) = topic else { continue };
        if let Err(message) = check_topic_name(topic) {
            problem(key, message);
        }
        if older {
            let older_key = if key.starts_with("config") { "kafka.config_topic" } else { "kafka.offsets_topic" };
            problem(key, format!("is also set under its older name {older_key}; keep only this one"));
        }
    }
    for (key, topic) in [("kafka.config_topic", &kafka.config_topic), ("kafka.offsets_topic", &kafka.offsets_topic)] {
        if let Some(Err(message)) = topic.as_deref().map(check_topic_name) {
            problems.push((key.to_owned(), message));
        }
    }
    let (config, offsets, assignments, status, plugins) =
        (kafka.config_topic(), kafka.offsets_topic(), kafka.assignments_topic(), kafka.status_topic(), kafka.plugins_topic());
    // Named after another setting by default (`<config_topic>-assignments`): checked whole.
    for (key, set, topic) in [
        ("assignment.storage.topic", cluster.assignment_storage_topic.is_some(), &assignments),
        ("status.storage.topic", cluster.status_storage_topic.is_some(), &status),
        ("plugin.storage.topic", cluster.plugin_storage_topic.is_some(), &plugins),
    ] {
        if !set && let Err(message) = check_topic_name(topic) {
            problems.push((
                format!("kafka.cluster.{key}"),
                format!("is {topic} by default, which Kafka cannot have ({message}): set a shorter one"),
            ));
        }
    }
    let distinct: BTreeSet<&String> = [&config, &offsets, &assignments, &status, &plugins].into_iter().collect();
    if distinct.len() < 5 {
        problems.push((
            "kafka.cluster".to_owned(),
            "the config, offsets, assignments, status and plugins topics must be five different topics".to_owned(),
        ));
    }
    for (key, replicas) in [
        ("config.storage.replication.factor", cluster.config_storage_replication_factor),
        ("offset.storage.replication.factor", cluster.offset_storage_replication_factor),
        ("status.storage.replication.factor", cluster.status_storage_replication_factor),
        ("plugin.storage.replication.factor", cluster.plugin_storage_replication_factor),
    ] {
        if replicas == 0 || replicas < -1 {
            problems.push((format!("kafka.cluster.{key}"), "must be at least 1, or -1 for the broker's default".to_owned()));
        }
    }
    if !(1..=10_000).contains(&cluster.offset_storage_partitions) {
        problems.push(("kafka.cluster.offset.storage.partitions".to_owned(), "must be between 1 and 10000".to_owned()));
    }
    if !(1..=10_000).contains(&cluster.status_storage_partitions) {
        problems.push(("kafka.cluster.status.storage.partitions".to_owned(), "must be between 1 and 10000".to_owned()));
    }
    if !(1..=10_000).contains(&cluster.assignment_storage_partitions) {
        problems.push(("kafka.cluster.assignment.storage.partitions".to_owned(), "must be between 1 and 10000".to_owned()));
    }
    if !crate::config::ASSIGNMENT_STRATEGIES.contains(&cluster.partition_assignment_strategy.as_str()) {
        let strategies = crate::config::ASSIGNMENT_STRATEGIES.join(", ");
        problems.push(("kafka.cluster.partition.assignment.strategy".to_owned(), format!("must be one of {strategies}")));
    }
    // librdkafka's and the brokers' own bounds (group.min/max.session.timeout.ms are
    // 6 s and 30 min by default).
    if !(1_000..=1_800_000).contains(&cluster.session_timeout_ms) {
        problems.push((
            "kafka.cluster.session.timeout.ms".to_owned(),
            "must be between 1000 and 1800000 (brokers accept 6000 and more by default)".to_owned(),
        ));
    }
    if cluster.heartbeat_interval_ms == 0 || cluster.heartbeat_interval_ms >= cluster.session_timeout_ms {
        problems.push((
            "kafka.cluster.heartbeat.interval.ms".to_owned(),
            format!("must be at least 1 and less than session.timeout.ms ({}); a third of it is usual", cluster.session_timeout_ms),
        ));
    }
    if !(1_000..=86_400_000).contains(&cluster.rebalance_timeout_ms) {
        problems.push(("kafka.cluster.rebalance.timeout.ms".to_owned(), "must be between 1000 and 86400000".to_owned()));
    }
    // It becomes the session of the host's membership, within the same bounds.
    let delay = cluster.scheduled_rebalance_max_delay_ms;
    if delay != 0 && !(cluster.session_timeout_ms..=1_800_000).contains(&delay) {
        problems.push((
            "kafka.cluster.scheduled.rebalance.max.delay.ms".to_owned(),
            format!(
                "must be 0 (a host's tasks move as soon as it goes), or between session.timeout.ms ({}) and 1800000 (the \
                 brokers' default group.max.session.timeout.ms): it becomes the session of the host's membership",
                cluster.session_timeout_ms
            ),
        ));
    }
    let strategy = cluster.partition_assignment_strategy.as_str();
    let [cooperative, eager @ ..] = crate::config::ASSIGNMENT_STRATEGIES;
    if delay != 0 && strategy != cooperative && eager.contains(&strategy) {
        problems.push((
            "kafka.cluster.scheduled.rebalance.max.delay.ms".to_owned(),
            format!(
                "needs partition.assignment.strategy cooperative-sticky: the broker waits for a host that went in a rebalance \
                 until the delay passed, and {} would stop every task of every host for that long",
                cluster.partition_assignment_strategy
            ),
        ));
    }
    problems
}

/// Why a dead-letter topic under `tolerance: none` is refused (but for a processor).
pub const DEAD_LETTERS_NEED_TOLERANCE: &str =
    "needs `tolerance: all`: with `none` a bad record stops the task and nothing is dead-lettered";

/// Every problem of one connector, keyed by its path inside the connector (`topic`,
/// `errors.dead_letter_topic`, ...); shared by the file and the REST API.
pub fn validate_connector(connector: &ConnectorConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut problem = |path: String, message: &str| problems.push((path, message.to_owned()));
    if let Err(message) = check_connector_name(&connector.name) {
        problem("name".into(), &message);
    }
    if connector.plugin.trim().is_empty() || connector.plugin.ends_with('@') {
        problem("plugin".into(), "must name a plugin, as `name` or `name@version`");
    }
    // A processor reads `topics` and writes `topic`: a connector with both is one (its
    // plan checks that its plugin is a processor, and that a built-in one has both).
    let processor =
        crate::processing::is_builtin_processor(&connector.plugin) || (connector.topic.is_some() && !connector.topics.is_empty());
    if connector.topic.is_none() && connector.topics.is_empty() {
        problem("topic".into(), "missing: a source needs `topic`, a sink needs `topics`, a processor both");
    }
    let topic_paths = connector
        .topic
        .iter()
        .map(|topic| ("topic".into(), topic))
        .chain(connector.topics.iter().enumerate().map(|(item, topic)| (format!("topics[{item}]"), topic)))
        .chain(connector.errors.dead_letter_topic.iter().map(|topic| ("errors.dead_letter_topic".into(), topic)));
    for (path, topic) in topic_paths {
        if let Err(message) = check_topic_name(topic) {
            problem(path, &message);
        }
    }
    if connector.tasks_max == 0 {
        problem("tasks_max".into(), "must be at least 1");
    }
    if !(1..=100_000).contains(&connector.batch_size) {
        problem("batch_size".into(), "must be between 1 and 100000");
    }
    // A processor sends its late records there whatever the tolerance, so a
    // dead-letter topic has a use with `none` too.
    if connector.errors.dead_letter_topic.is_some() && connector.errors.tolerance == Tolerance::None && !processor {
        problem("errors.dead_letter_topic".into(), DEAD_LETTERS_NEED_TOLERANCE);
    }
    if connector.topics.iter().any(|topic| Some(topic) == connector.errors.dead_letter_topic.as_ref()) {
        problem("errors.dead_letter_topic".into(), "must not be one of the topics the connector reads");
    }
    for (item, host) in connector.egress.allowed_hosts.iter().enumerate() {
        if let Err(message) = check_host_pattern(host) {
            problem(format!("egress.allowed_hosts[{item}]"), &message);
        }
    }
    if connector.egress.request_timeout.is_zero() {
        problem("egress.request_timeout".into(), "must be longer than 0");
    }
    if connector.egress.max_response_mib == 0 {
        problem("egress.max_response_mib".into(), "must be at least 1");
    }
    for key in connector.config.keys() {
        if is_chain_key(key) || is_ignored_key(key) || key == "topics.regex" {
            problems.push((format!("config.{key}"), "is a Kafka Connect framework key, not a plugin option: write transforms and predicates as the connector's `transforms` and `predicates` lists".to_owned()));
        }
    }
    for key in connector.ignored.keys() {
        if !is_ignored_key(key) && !is_chain_key(key) {
            problems.push((
                format!("ignored.{key}"),
                "only Kafka Connect framework keys with no effect here (converters, client overrides) can be ignored".to_owned(),
            ));
        }
    }
    problems.extend(validate_chain(&connector.transforms, &connector.predicates));
    problems
}

/// The connector's transforms and predicates: aliases unique and in the name
/// alphabet, every transform and predicate known with valid options.
pub fn validate_chain(transforms: &[TransformConfig], predicates: &[PredicateConfig]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let lists = [
        ("transforms", transforms.iter().map(|transform| transform.name.as_str()).collect::<Vec<_>>()),
        ("predicates", predicates.iter().map(|predicate| predicate.name.as_str()).collect()),
    ];
    for (list, aliases) in lists {
        if aliases.len() > MAX_CHAIN {
            problems.push((list.to_owned(), format!("lists {} aliases; a connector has at most {MAX_CHAIN}", aliases.len())));
            continue;
        }
        let mut seen = HashSet::new();
        for (index, alias) in aliases.into_iter().enumerate() {
            if let Err(message) = crate::names::check_name(alias) {
                problems.push((format!("{list}[{index}].name"), format!("the alias {message}")));
            } else if !seen.insert(alias) {
                problems.push((
                    format!("{list}[{index}].name"),
                    format!("the alias {alias} is used twice in `{list}`; aliases must be unique"),
                ));
            }
        }
    }
    if problems.is_empty()
        && let Err(found) = crate::transforms::Chain::build(transforms, predicates, &crate::transforms::ChainPlugins::unresolved())
    {
        problems.extend(found);
    }
    problems
}

/// An `allowed_hosts` entry: `host`, `host:port` or `*.domain`, without a scheme or path.
pub fn check_host_pattern(pattern: &str) -> Result<(), String> {
    if pattern.contains("://") || pattern.contains('/') {
        return Err(format!("{pattern:?} must be a host name, `host:port` or `*.domain`, without a scheme or path"));
    }
    let (host, port) = match pattern.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => (host, Some(port)),
        _ => (pattern, None),
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("{pattern:?}: the port must be a number from 0 to 65535"));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && (name.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) || (name.starts_with('[') && name.ends_with(']')));
    if !valid {
        return Err(format!("{pattern:?} must be a host name, `host:port` or `*.domain`"));
    }
    Ok(())
}

/// An allowed web origin: `*`, or `scheme://host[:port]` as browsers send it in the
/// `Origin` header (no path, no trailing slash).
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    let valid = rest.is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)));
    if !valid {
        return Err(format!(
            "{origin:?} is not an origin: write it as a browser sends it, `https://host` or `http://host:port`, without a path, or `*`"
        ));
    }
    Ok(())
}

/// The rule for connector names, which also become consumer groups and URL paths.
pub fn check_connector_name(name: &str) -> Result<(), String> {
    crate::names::check_name(name)
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
        return Err(format!("topic \"{}\" may contain only letters, digits, `.`, `_` and `-`", topic.escape_debug()));
    }
    Ok(())
}

/// A warning naming the Kafka Connect framework keys the connector carries (given
/// through the REST API, kept in `ignored`) that have no effect here, if any.
pub fn ignored_keys_warning(connector: &ConnectorConfig) -> Option<String> {
    if connector.ignored.is_empty() {
        return None;
    }
    let mut names: Vec<String> = connector.ignored.keys().take(10).map(|key| crate::names::shown(key)).collect();
    if connector.ignored.len() > 10 {
        names.push(format!("and {} more", connector.ignored.len() - 10));
    }
    Some(format!(
        "Kafka Connect keys that have no effect here were accepted and are ignored: {}. Records pass as the bytes they are \
         (no converter runs), and the host's own client settings apply.",
        names.join(", ")
    ))
}

/// Kafka Connect framework keys that mean nothing here: accepted so that a Kafka
/// Connect configuration pastes in, kept, and named in a warning.
const IGNORED_KEYS: &[&str] = &[
    "key.converter",
    "value.converter",
    "header.converter",
    "config.action.reload",
    "errors.retry.delay.max.ms",
    "errors.log.include.messages",
    "errors.deadletterqueue.topic.replication.factor",
    "errors.deadletterqueue.context.headers.enable",
    "exactly.once.support",
    "transaction.boundary",
    "transaction.boundary.interval.ms",
    "offsets.storage.topic",
    "tasks.max.enforce",
];

/// Prefixes of further framework keys: converter settings and client overrides.
const IGNORED_PREFIXES: &[&str] = &[
    "key.converter.",
    "value.converter.",
    "header.converter.",
    "consumer.override.",
    "producer.override.",
    "admin.override.",
    "topic.creation.",
];

/// Whether `key` is a Kafka Connect framework key that has no effect here.
pub fn is_ignored_key(key: &str) -> bool {
    IGNORED_KEYS.contains(&key) || IGNORED_PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

/// Whether `key` belongs to the transform chain: `transforms`, `predicates` or a key
/// under one of them.
pub fn is_chain_key(key: &str) -> bool {
    ["transforms", "predicates"].iter().any(|list| key.strip_prefix(list).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
}

/// Whether an ignored framework key holds a credential (`...password`,
/// `sasl.jaas.config`, `basic.auth.user.info`, ...): its value reads back `[hidden]`.
pub fn is_secret_ignored_key(key: &str) -> bool {
    ["password", "secret", "token", "jaas", "user.info", "credential", "private"].iter().any(|part| key.contains(part))
}
