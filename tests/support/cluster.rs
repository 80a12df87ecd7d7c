//! Several hosts of one cluster on one Kafka broker, as separate processes: each with
//! its own `data_dir` and admin port, all with the same `kafka` block.

use std::path::{Path, PathBuf};

use super::{Host, test_plugins_dir};

/// The broker the cluster tests run on: the one in `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP`,
/// or a noida-db broker of the test's own (kept alive by the returned value). The
/// suffix makes names unique on a shared broker (empty on the test's own).
pub fn broker() -> (Option<super::kafka::NoidaKafka>, String, String) {
    let external = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").ok();
    let noida = external.is_none().then(super::kafka::NoidaKafka::start);
    let bootstrap = external.unwrap_or_else(|| noida.as_ref().unwrap().bootstrap.clone());
    let suffix = if noida.is_none() { format!("-{}", std::process::id()) } else { String::new() };
    (noida, bootstrap, suffix)
}

/// A broker that ends the sessions of members that stop heartbeating, static ones
/// included (noida-db and tansu 0.6 do not): the one in
/// `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP`, or librdkafka's mock cluster of the test's own
/// with `topics` made (it refuses CreateTopics: the cluster `group`'s own topics are
/// made too). The suffix makes names unique on a shared broker.
pub fn expiring_broker(group: &str, topics: &[(String, u32)]) -> (Option<super::kafka::MockBroker>, String, String) {
    if let Ok(external) = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP") {
        let suffix = format!("-{}", std::process::id());
        for (topic, partitions) in topics {
            super::kafka::create_topic(&external, &format!("{topic}{suffix}"), *partitions);
        }
        return (None, external, suffix);
    }
    let mut mock = super::kafka::MockBroker::start();
    let own = [("configs", 1), ("offsets", 5), ("assignments", 12), ("status", 5), ("plugins", 1)]
        .map(|(suffix, partitions)| (format!("{group}-{suffix}"), partitions));
    for (topic, partitions) in topics.iter().cloned().chain(own) {
        mock.create_topic(&topic, partitions);
    }
    let bootstrap = mock.bootstrap.clone();
    (Some(mock), bootstrap, String::new())
}

/// The hosts of one cluster: `group` on the broker at `bootstrap`, each under
/// `root/host-<n>`.
pub struct Cluster {
    root: PathBuf,
    bootstrap: String,
    group: String,
    /// Extra lines of the `kafka.cluster` block, indented by four spaces.
    settings: String,
    /// `partition.assignment.strategy`, when not the host's default.
    strategy: Option<String>,
}

impl Cluster {
    /// On the test's own noida-db the hosts share tasks out with the `range` assignor:
    /// noida-db never completes a cooperative rebalance that gives a joining member
    /// partitions (measured with librdkafka 2.12). On the broker in
    /// `WASM_CONNECT_TEST_KAFKA_BOOTSTRAP`, with the default, `cooperative-sticky`.
    pub fn new(root: &Path, bootstrap: &str, group: &str) -> Cluster {
        let strategy = std::env::var("WASM_CONNECT_TEST_KAFKA_BOOTSTRAP").is_err().then(|| "range".to_owned());
        Cluster { root: root.to_owned(), bootstrap: bootstrap.to_owned(), group: group.to_owned(), settings: String::new(), strategy }
    }

    /// The hosts share tasks out with the host's default assignor, `cooperative-sticky`
    /// (on brokers that complete cooperative rebalances: tansu, or a real Kafka).
    pub fn cooperative(mut self) -> Cluster {
        self.strategy = None;
        self
    }

    /// Adds `key: value` to every host's `kafka.cluster` block.
    pub fn with(mut self, key: &str, value: &str) -> Cluster {
        self.settings.push_str(&format!("    {key}: {value}\n"));
        self
    }

    /// The directory of host `index`.
    pub fn directory(&self, index: usize) -> PathBuf {
        self.root.join(format!("host-{index}"))
    }

    /// Writes host `index`'s configuration with `connectors` (a YAML list indented by
    /// two spaces, or empty) and returns its path. Every host's `rebalance.timeout.ms`
    /// is 20 s: noida-db, on a loaded machine, once held the first rebalance of two
    /// hosts started together for a whole rebalance timeout (60 s by default).
    pub fn config(&self, index: usize, connectors: &str) -> PathBuf {
        let directory = self.directory(index);
        std::fs::create_dir_all(&directory).unwrap();
        let connectors = if connectors.trim().is_empty() { " []\n".to_owned() } else { format!("\n{connectors}") };
        super::write_config(
            &directory,
            &format!(
                "version: 1\ndata_dir: {data}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {plugins}\n  restart_backoff: 200ms\n  \
                 max_restart_backoff: 2s\nkafka:\n  bootstrap_servers: {bootstrap}\n  client:\n    session.timeout.ms: 6000\n  \
                 cluster:\n    group.id: {group}\n    rebalance.timeout.ms: 20000\n{strategy}{settings}connectors:{connectors}",
                data = directory.join("data").display(),
                plugins = test_plugins_dir().display(),
                bootstrap = self.bootstrap,
                group = self.group,
                settings = self.settings,
                strategy =
                    self.strategy.as_ref().map(|strategy| format!("    partition.assignment.strategy: {strategy}\n")).unwrap_or_default(),
            ),
        )
    }

    /// Starts host `index` with `connectors`.
    pub fn start(&self, index: usize, connectors: &str) -> Host {
        Host::start(&self.config(index, connectors))
    }
}
