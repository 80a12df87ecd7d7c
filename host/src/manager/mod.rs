//! The one owner of the running set, as Kafka Connect's herder: it holds the desired
//! state (every connector with its configuration, who owns it and its target state
//! RUNNING / PAUSED / STOPPED) and reconciles the running tasks with it; a change to
//! one connector touches only that connector's tasks.
//!
//! The desired state is a log ([`log`]): on Kafka the cluster's config topic, which
//! every host of the cluster follows; on the embedded transport the SQLite store in
//! `data_dir`. A change, from the REST API or the configuration file, is checked, then
//! appended to the log, and applied by [`Manager::on_record`] when the log hands it
//! back, on every host alike; the host that took the change answers once it applied
//! it itself. Lock order: `on_record` takes `running`; nothing waits on the log while
//! holding `running`, or `on_record` could never run.
//!
//! Which tasks run here is the cluster's [`Ownership`] (see [`crate::cluster`]): a
//! connector's tasks run where the partitions they hash to are owned. The cluster's
//! member releases partitions by [`Manager::release`] and acquires them by
//! [`Manager::acquire`], which take `running` too (bounded by the rebalance timeout).

mod file;
pub mod log;
mod offsets;
mod plugins;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cluster::plugins::{PLUGIN_KEY, PluginShare};
use crate::cluster::status::SharedStatus;
use crate::cluster::{Owner, Ownership};
use crate::config::{ConnectorConfig, validate_connector};
use crate::runtime::{PluginCatalog, PluginKind, PluginOrigin};
use crate::telemetry::{ConnectorStatus, State};
use crate::transport::TransportError;
use crate::worker::{ConnectorPlan, RunningTask, WorkerContext, plan_connector, spawn_task};
pub use file::{FileDiff, FileState, watch as watch_file};
use log::{ConfigLog, OpenedLog};
pub use offsets::{ConnectorOffsets, OffsetsChange};
use plugins::SharedPlugins;
pub use plugins::{Upload, fetch_before_start};
use store::{StateStore, StateStoreError};

use crate::transport::kafka::LogRecord;

/// How long a connector's tasks get to finish their batch when it is stopped.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long tasks get when the cluster already gave their partitions to another host
/// (this host's session ended): what they write is refused or written twice anyway.
const LOST_GRACE: Duration = Duration::from_secs(2);
/// The prefix of connector keys in the log (Kafka Connect's own is the same).
const CONNECTOR_KEY: &str = "connector-";
/// The prefix of target-state keys in the log (Kafka Connect's own is the same): a key
/// of its own, so that a pause and a configuration change made at the same time on
/// two hosts do not undo each other.
const TARGET_KEY: &str = "target-state-";
/// The prefix of a connector's restart requests in the log (Kafka Connect's own).
const RESTART_CONNECTOR_KEY: &str = "restart-connector-";
/// The prefix of a task's restart requests in the log, `<connector>-<task>`.
const RESTART_TASK_KEY: &str = "restart-task-";

/// Who may change a connector's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Declared in `connectors.yaml`: edit the file to change or remove it.
    File,
    /// Created through the REST API, which owns its configuration.
    Api,
}

/// What an operator wants a connector to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TargetState {
    /// Run its tasks.
    Running,
    /// Keep it, tasks stopped, until resumed.
    Paused,
    /// Stop it completely (no tasks); offsets may be changed only in this state.
    Stopped,
}

impl TargetState {
    /// The state the status board shows for a connector with this target.
    pub fn state(self) -> State {
        match self {
            TargetState::Running => State::Running,
            TargetState::Paused => State::Paused,
            TargetState::Stopped => State::Stopped,
        }
    }
}

/// One connector as the log holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredConnector {
    origin: Origin,
    /// The target it was created with; its `target-state-` record, once written, is
    /// what counts. (Written before issue 19, it was the only target.)
    target: TargetState,
    /// Its configuration. (Before issue 19, file connectors stored none: their
    /// configuration was the file's.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<ConnectorConfig>,
    /// The host whose configuration file declares it (its `data_dir` host id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    declared_by: Option<String>,
    /// For an API connector whose plugin names no version, the version the host that
    /// took its last change planned it with: every host runs that one, until the next
    /// change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plugin_version: Option<String>,
}

/// The plugin version a stored connector (of `origin`, stored with `version`, whose
/// configuration is `published`) runs on every host, when it is pinned: an API
/// connector whose plugin names none, stored with a version that is one.
fn pinned_version(origin: Origin, version: Option<&String>, published: &ConnectorConfig) -> Option<String> {
    let version = version?;
    let unversioned =
        origin == Origin::Api && !published.plugin.contains('@') && !crate::processing::is_builtin_processor(&published.plugin);
    (unversioned && crate::names::check_version(version).is_ok()).then(|| version.clone())
}

/// A `restart-connector-` record.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StoredRestart {
    include_tasks: bool,
    only_failed: bool,
}

/// A `target-state-` record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTarget {
    state: TargetState,
}

/// A connector of the desired state.
#[derive(Debug, Clone)]
pub struct ManagedConnector {
    /// Its configuration (the YAML model).
    pub config: ConnectorConfig,
    /// The runnable plan, or why it cannot run (its plugin is gone, or its stored
    /// configuration no longer fits the plugin); the status shows that reason.
    pub plan: Result<Arc<ConnectorPlan>, String>,
    /// Who owns its configuration.
    pub origin: Origin,
    /// What it should be doing.
    pub target: TargetState,
    /// For a file connector, the host whose file declares it (none when it was
    /// stored before hosts recorded that).
    pub declared_by: Option<String>,
    /// Its configuration as the desired state's log holds it: `config` but for a file
    /// connector of this host's file, which the log holds with its secrets hidden.
    pub published: ConnectorConfig,
    /// The plugin version every host runs it with when its plugin names none (see
    /// [`StoredConnector::plugin_version`]); none: each host runs its newest.
    pub pinned: Option<String>,
}

impl ManagedConnector {
    /// Source, sink or processor; without a plan, what its plugin and topics say.
    pub fn kind(&self) -> PluginKind {
        match &self.plan {
            Ok(plan) => plan.kind(),
            Err(_) if crate::processing::is_builtin_processor(&self.config.plugin) => PluginKind::Processor,
            // Only a processor takes both (a processor plugin that is gone, say).
            Err(_) if self.config.topic.is_some() && !self.config.topics.is_empty() => PluginKind::Processor,
            Err(_) if self.config.topic.is_some() => PluginKind::Source,
            Err(_) => PluginKind::Sink,
        }
    }

    /// How many tasks it runs when running.
    pub fn task_count(&self) -> u32 {
        match &self.plan {
            Ok(plan) => plan.task_count(),
            Err(_) if self.kind() == PluginKind::Source => 1,
            Err(_) => self.config.tasks_max,
        }
    }
}

/// Why a connector declared by another host's file has no plan here.
const ELSEWHERE: &str = "declared by another host's configuration file with secret values this host does not have, so this host cannot run its tasks: declare it in this host's configuration file too (the same file on every host), or create it through the REST API";
/// Why a task is not running on this host of a cluster.
const OWNED_ELSEWHERE: &str =
    "runs on another host of the cluster: the cluster's group gave the partition of the assignments topic it belongs to to another host";
/// Why a task this host owns is not running yet.
const STILL_STOPPING: &str = "an earlier instance of this task on this host is still stopping; it starts once that one stopped";
/// Why a task is not running on a host of a cluster that has not been given its share yet.
const NOT_YET_ASSIGNED: &str = "waits for the cluster's group to share the tasks out among its hosts";

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No connector of that name.
    #[error("Connector {0} not found")]
    NotFound(String),
    /// No such task.
    #[error("Task {1} of connector {0} not found")]
    TaskNotFound(String, u32),
    /// The name is taken.
    #[error("Connector {0} already exists")]
    AlreadyExists(String),
    /// The file owns this connector's configuration.
    #[error(
        "connector {0} is declared in the configuration file: edit the file to change or remove it (the REST API may only pause, resume, stop, restart it and read it)"
    )]
    OwnedByFile(String),
    /// The configuration is invalid: `(key, message)` for every problem, keys in the
    /// YAML model (`plugin`, `tasks_max`, `config.index`, ...).
    #[error("the connector configuration has {} error(s)", .0.len())]
    Invalid(Vec<(String, String)>),
    /// The connector is not in a state that allows the request.
    #[error("{0}")]
    WrongState(String),
    /// Offsets change only while a connector is stopped.
    #[error(
        "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{0}/stop' endpoint"
    )]
    NotStopped(String),
    /// No plugin `name@version`.
    #[error("Plugin {0} not found")]
    PluginNotFound(String),
    /// An uploaded component is not a usable plugin.
    #[error("{0}")]
    PluginRefused(String),
    /// Offsets that cannot be honoured (a partition the topic lacks, an offset past
    /// its end, a position the plugin cannot start from).
    #[error("{0}")]
    BadOffsets(String),
    /// A plugin could not be stored or removed on disk.
    #[error("{0}")]
    PluginStorage(String),
    /// The request conflicts with what is there (a plugin in use, a version already
    /// taken by other content).
    #[error("{0}")]
    Conflict(String),
    /// The desired state could not be persisted; nothing was changed.
    #[error(transparent)]
    Store(#[from] StateStoreError),
    /// The transport failed (creating topics, reading or changing offsets).
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A connector this host's configuration file declares.
#[derive(Debug, Clone)]
struct Declared {
    /// As the file says, `${...}` substituted.
    config: ConnectorConfig,
    /// As it is published to the log: secret values hidden, since other hosts and
    /// whoever reads the config topic read it.
    published: ConnectorConfig,
}

impl Declared {
    fn of(plan: &ConnectorPlan) -> Self {
        Declared { config: plan.config.clone(), published: plan.config_without_secrets() }
    }
}

/// This host's place among the hosts of its cluster.
pub struct Place {
    /// Its identity (`data_dir/host-id`): who declared a file connector.
    pub host_id: String,
    /// The tasks it runs: every one, or those of the partitions the cluster gives it.
    pub ownership: Ownership,
    /// The states of the tasks the other hosts of its cluster run; none for a host
    /// alone.
    pub shared: Option<Arc<SharedStatus>>,
    /// Where the plugins uploaded to any host of its cluster are; none for a host alone.
    pub plugins: Option<PluginShare>,
}

/// The owner of the running set.
pub struct Manager {
    context: WorkerContext,
    catalog: RwLock<PluginCatalog>,
    /// Relative directories in API-made configurations resolve against this (the
    /// configuration file's directory), as in the file.
    base_dir: PathBuf,
    /// Where uploaded plugins are stored.
    uploads_dir: PathBuf,
    /// This host's identity (`data_dir/host-id`): who declared a file connector.
    host_id: String,
    /// The desired state's log.
    log: ConfigLog,
    /// The running tasks by connector and task number; its lock serialises every change.
    running: Mutex<HashMap<String, BTreeMap<u32, RunningTask>>>,
    /// The tasks this host runs, of the connectors that should run.
    ownership: RwLock<Ownership>,
    /// What the other hosts of the cluster say of the tasks they run.
    shared: Option<Arc<SharedStatus>>,
    /// The plugins uploaded to the hosts of the cluster (see [`plugins`]).
    shared_plugins: SharedPlugins,
    /// Tasks that were stopped but did not finish in time: the same task does not start
    /// again on this host until they did.
    lingering: std::sync::Mutex<Vec<RunningTask>>,
    /// The desired state as the API reads it.
    desired: RwLock<BTreeMap<String, Arc<ManagedConnector>>>,
    /// The target states of the log's `target-state-` records, by connector.
    targets: RwLock<HashMap<String, TargetState>>,
    /// Plans made while checking a change, for the apply to reuse, by connector.
    checked_plans: RwLock<HashMap<String, Arc<ConnectorPlan>>>,
    /// The connectors this host's configuration file declares, as of its latest
    /// valid version.
    file_connectors: RwLock<BTreeMap<String, Declared>>,
    /// Serialises this host's changes (a request's check with its write, the file's):
    /// taken before the log is written, never by the log's applier.
    changes: Mutex<()>,
    /// What became of the configuration file's latest version.
    file_state: RwLock<FileState>,
    /// Cancelled when the host stops: the log is no longer applied.
    stopping: CancellationToken,
}

impl Manager {
    /// Takes the desired state of the `opened` log, starts everything that should run,
    /// follows the log from then on, and publishes the file's connectors to it. Fails
    /// when the file declares a connector that the REST API created, or when the log
    /// cannot be written.
    pub async fn start(
        context: WorkerContext,
        catalog: PluginCatalog,
        base_dir: PathBuf,
        uploads_dir: PathBuf,
        opened: OpenedLog,
        place: Place,
        file_plans: Vec<ConnectorPlan>,
    ) -> anyhow::Result<Arc<Manager>> {
        let OpenedLog { log, state, records } = opened;
        let Place { host_id, ownership, shared, plugins } = place;
        let location = log.location();
        let manager = Arc::new(Manager {
            context,
            catalog: RwLock::new(catalog),
            base_dir,
            uploads_dir,
            host_id,
            log,
            running: Mutex::default(),
            ownership: RwLock::new(ownership),
            shared,
            shared_plugins: SharedPlugins::new(plugins),
            lingering: std::sync::Mutex::default(),
            desired: RwLock::default(),
            targets: RwLock::default(),
            checked_plans: RwLock::default(),
            file_connectors: RwLock::default(),
            changes: Mutex::default(),
            file_state: RwLock::default(),
            stopping: CancellationToken::new(),
        });
        let (stored, targets) = parse_state(&state, &location);
        if let Some(name) =
            file_plans.iter().map(|plan| &plan.config.name).find(|name| stored.get(*name).is_some_and(|entry| entry.origin == Origin::Api))
        {
            anyhow::bail!(
                "connector {name:?} is declared in the configuration file and was also created through the REST API; \
                 rename it in the file, or delete the API's connector (DELETE /connectors/{name}) from a host started without it"
            );
        }
        *manager.targets.write().expect("targets lock") = targets;
        // Before any connector is planned: the plugins other hosts took or removed.
        // (A stored connector uses its pinned version.)
        let stored_configs: Vec<ConnectorConfig> = stored
            .values()
            .filter_map(|entry| {
                let mut config = entry.config.clone()?;
                config.plugin = plugin_reference(&config, pinned_version(entry.origin, entry.plugin_version.as_ref(), &config).as_deref());
                Some(config)
            })
            .collect();
        let used = plugins_used(&manager.catalog(), stored_configs.iter().chain(file_plans.iter().map(|plan| &plan.config)));
        let fetches = manager.take_shared_plugins(&state, &used).await;
        *manager.file_connectors.write().expect("file connectors lock") =
            file_plans.iter().map(|plan| (plan.config.name.clone(), Declared::of(plan))).collect();
        // Connectors stored before file connectors kept their configuration: those of
        // this file are published again below, with their target.
        let (mut legacy_targets, mut forgotten) = (HashMap::new(), Vec::new());
        let mut connectors = Vec::new();
        let mut stale_connectors = Vec::new();
        for (name, entry) in stored {
            let Some(published) = entry.config else {
                if entry.origin == Origin::File && file_plans.iter().any(|plan| plan.config.name == name) {
                    legacy_targets.insert(name, entry.target);
                } else if entry.origin == Origin::File {
                    // Dropped from the file since: its target state goes too.
                    forgotten.push(name);
                } else {
                    tracing::error!(connector = %crate::names::shown(&name), "The stored state of a connector has no configuration; it was skipped.");
                }
                continue;
            };
            if let Err(problems) = check_stored(&name, &published) {
                tracing::error!(connector = %crate::names::shown(&name), %problems, "A stored connector is not valid; it was skipped.");
                continue;
            }
            let config = manager.resolved(&name, entry.origin, published.clone());
            let target = manager.target_of(&name, entry.target);
            let pinned = pinned_version(entry.origin, entry.plugin_version.as_ref(), &published);
            let (origin, declared_by) = (entry.origin, entry.declared_by);
            let mut connector =
                ManagedConnector { config, published, plan: Err(ELSEWHERE.to_owned()), origin, target, declared_by, pinned };
            // This host's own file connectors that its file changed or dropped while it
            // was down are not started: the file's version is published below.
            let declared_here = connector.declared_by.as_ref().is_none_or(|host| *host == manager.host_id);
            let in_file = file_plans.iter().find(|plan| plan.config.name == name).map(|plan| plan.config_without_secrets());
            let stale = match in_file {
                Some(in_file) => in_file != connector.published,
                None => declared_here,
            };
            if origin == Origin::File && stale {
                stale_connectors.push(connector);
                continue;
            }
            if manager.can_run_here(&connector) {
                connector.plan =
                    manager.plan(&connector.config, connector.pinned.as_deref()).await.map_err(|problems| problems_text(&problems));
                if let Err(reason) = &connector.plan {
                    tracing::error!(connector = %crate::names::shown(&name), %reason, "A stored connector cannot run; it is FAILED until its configuration or plugin is fixed.");
                }
            }
            connectors.push(connector);
        }
        for connector in stale_connectors {
            manager.desired.write().expect("desired state lock").insert(connector.config.name.clone(), Arc::new(connector));
        }
        let mut running = manager.running.lock().await;
        for connector in connectors {
            manager.ensure_topics(&connector).await?;
            manager.apply(&mut running, Arc::new(connector)).await;
        }
        drop(running);
        // Once the connectors are applied: a fetch that ends plans again those that
        // failed without its plugin.
        for (name, version, record) in fetches {
            manager.start_fetch(&name, &version, record);
        }
        manager.clone().follow(records);
        manager.clone().sweep_lingering();
        manager.clone().share_unshared_uploads();
        let published = async {
            for name in forgotten {
                manager.remove(&name).await?;
            }
            manager.sync_file(file_plans, &legacy_targets).await
        };
        if let Err(error) = published.await {
            manager.shutdown(STOP_GRACE).await;
            return Err(match error {
                ManagerError::Conflict(message) => anyhow::anyhow!("{message}"),
                other => anyhow::Error::new(other),
            });
        }
        Ok(manager)
    }

    /// Applies the log's records as they come, each before the next.
    fn follow(self: Arc<Self>, mut records: mpsc::UnboundedReceiver<LogRecord>) {
        tokio::spawn(async move {
            loop {
                let record = tokio::select! {
                    _ = self.stopping.cancelled() => return,
                    record = records.recv() => record,
                };
                let Some(record) = record else { break };
                let position = record.position;
                self.on_record(record).await;
                self.log.mark_applied(position);
            }
            tracing::error!(location = %self.log.location(), "The desired state's log is no longer read; changes made from now on are not applied.");
        });
    }

    /// Applies one record of the log: a connector put or removed, or a target state.
    async fn on_record(self: &Arc<Self>, record: LogRecord) {
        if let Some(name) = record.key.strip_prefix(CONNECTOR_KEY) {
            match record.value {
                Some(document) => self.on_connector(name, &document).await,
                None => self.on_removed(name).await,
            }
        } else if let Some(name) = record.key.strip_prefix(TARGET_KEY) {
            self.on_target(name, record.value.as_deref()).await;
        } else if let Some(name) = record.key.strip_prefix(RESTART_CONNECTOR_KEY) {
            // Acted on as it comes only: a restart read again at a later start is past.
            let request = record.value.as_deref().map(serde_json::from_str::<StoredRestart>);
            if let Some(Ok(request)) = request {
                self.on_restart(name, request).await;
            }
        } else if let Some(reference) = record.key.strip_prefix(PLUGIN_KEY) {
            self.on_plugin(reference, record.value.as_deref()).await;
        } else if let Some((name, task)) = record.key.strip_prefix(RESTART_TASK_KEY).and_then(|rest| rest.rsplit_once('-')) {
            if let (Ok(task), Some(_)) = (task.parse::<u32>(), &record.value) {
                self.on_restart_task(name, task).await;
            }
        } else {
            tracing::debug!(key = %crate::names::shown(&record.key), "Skipped a record of the desired state's log with a key this host does not know.");
        }
    }

    async fn on_connector(&self, name: &str, document: &str) {
        let shown = crate::names::shown(name);
        let entry = match serde_json::from_str::<StoredConnector>(document) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::error!(connector = %shown, %error, "A stored connector could not be read; it was skipped.");
                return;
            }
        };
        let declared = self.file_connectors.read().expect("file connectors lock").get(name).cloned();
        let published = match (entry.config, declared) {
            (Some(config), _) => config,
            // Stored before file connectors kept their configuration: this file's.
            (None, Some(declared)) if entry.origin == Origin::File => declared.published,
            (None, _) => {
                tracing::debug!(connector = %shown, "A stored connector without configuration was skipped.");
                return;
            }
        };
        if let Err(problems) = check_stored(name, &published) {
            tracing::error!(connector = %shown, %problems, "A stored connector is not valid; it was skipped.");
            return;
        }
        let mut running = self.running.lock().await;
        let config = self.resolved(name, entry.origin, published.clone());
        let target = self.target_of(name, entry.target);
        let existing = self.connector(name).ok();
        let checked = self.checked_plans.write().expect("checked plans lock").remove(name);
        let pinned = pinned_version(entry.origin, entry.plugin_version.as_ref(), &published);
        let mut connector = ManagedConnector {
            config,
            published,
            plan: Err(String::new()),
            origin: entry.origin,
            target,
            declared_by: entry.declared_by,
            pinned,
        };
        connector.plan = match (&existing, checked) {
            // Another host's file connector is planned on the hosts that run it (this
            // host has not its secret values).
            _ if !self.can_run_here(&connector) => Err(ELSEWHERE.to_owned()),
            // The same configuration, still resolving to the plugin it runs: only the
            // target or the owner may have changed.
            (Some(existing), _)
                if existing.config == connector.config
                    && existing.pinned == connector.pinned
                    && self.runs_resolved_plugin(existing, connector.pinned.as_deref()) =>
            {
                existing.plan.clone()
            }
            (_, Some(checked))
                if checked.config == connector.config
                    && connector.pinned.as_ref().is_none_or(|version| checked.plugin.description.version == *version) =>
            {
                Ok(checked)
            }
            _ => self.plan(&connector.config, connector.pinned.as_deref()).await.map_err(|problems| problems_text(&problems)),
        };
        if let (Err(reason), true) = (&connector.plan, self.can_run_here(&connector)) {
            tracing::error!(connector = %shown, %reason, "The connector cannot run; it is FAILED until its configuration or plugin is fixed.");
        }
        if let Some(existing) = &existing
            && same_run(existing, &connector)
        {
            self.desired.write().expect("desired state lock").insert(name.to_owned(), Arc::new(connector));
            return;
        }
        if let Err(error) = self.ensure_topics(&connector).await {
            tracing::warn!(connector = %shown, %error, "The connector's topics could not be checked; its tasks wait for them.");
        }
        if let Some(warning) = crate::config::ignored_keys_warning(&connector.config) {
            tracing::warn!(connector = %shown, "{warning}");
        }
        tracing::info!(connector = %shown, plugin = %connector.config.plugin, "Applied the connector's configuration.");
        self.apply(&mut running, Arc::new(connector)).await;
    }

    async fn on_removed(self: &Arc<Self>, name: &str) {
        // Another host dropped it from its file, and this host's file still declares
        // it: it keeps running here and is declared again, with its target state.
        let declared = self.file_connectors.read().expect("file connectors lock").get(name).cloned();
        let Some(declared) = declared else {
            self.forget(name).await;
            return;
        };
        let target = self.connector(name).map_or(TargetState::Running, |connector| connector.target);
        let manager = self.clone();
        tokio::spawn(async move {
            let name = declared.config.name.clone();
            let _changes = manager.changes.lock().await;
            // This host's file may have dropped it meanwhile.
            if !manager.file_connectors.read().expect("file connectors lock").contains_key(&name) {
                if manager.connector(&name).is_ok_and(|connector| connector.origin == Origin::File) {
                    manager.forget(&name).await;
                }
                return;
            }
            match manager.publish(Origin::File, declared.published, target, true, None).await {
                Ok(_) => {
                    tracing::info!(connector = %name, "Another host removed a connector this host's file declares; declared it again.")
                }
                Err(error) => {
                    tracing::error!(connector = %name, %error, "A connector this host's file declares could not be declared again.")
                }
            }
        });
    }

    /// Stops and forgets a connector the log removed.
    async fn forget(&self, name: &str) {
        let mut running = self.running.lock().await;
        self.stop_tasks(running.remove(name).unwrap_or_default().into_values().collect()).await;
        let removed = self.desired.write().expect("desired state lock").remove(name);
        drop(running);
        self.context.status.remove_connector(name);
        self.context.metrics.forget_connector(name);
        if removed.is_some() {
            tracing::info!(connector = %crate::names::shown(name), "Deleted the connector.");
        }
    }

    async fn on_target(&self, name: &str, document: Option<&str>) {
        let target = match document.map(serde_json::from_str::<StoredTarget>) {
            Some(Ok(stored)) => Some(stored.state),
            None => None,
            Some(Err(error)) => {
                tracing::error!(connector = %crate::names::shown(name), %error, "A stored target state could not be read; it was skipped.");
                return;
            }
        };
        let mut running = self.running.lock().await;
        {
            let mut targets = self.targets.write().expect("targets lock");
            match target {
                Some(target) => targets.insert(name.to_owned(), target),
                None => targets.remove(name),
            };
        }
        let Some(target) = target else { return };
        let Ok(existing) = self.connector(name) else { return };
        if existing.target != target {
            tracing::info!(connector = name, target = ?target, "Changed the connector's target state.");
            self.apply(&mut running, Arc::new(ManagedConnector { target, ..(*existing).clone() })).await;
        }
    }

    /// Whether this host can run `connector`'s tasks (those it owns): those created
    /// through the API, those its own configuration file declares, and those other
    /// hosts' files declare without secret values (the log holds those hidden).
    fn can_run_here(&self, connector: &ManagedConnector) -> bool {
        connector.origin == Origin::Api
            || self.file_connectors.read().expect("file connectors lock").contains_key(&connector.config.name)
            || !crate::worker::hides_secrets(&connector.published)
    }

    /// The configuration of a stored connector as this host runs it: for a file
    /// connector its own file declares, the file's (with its secrets, which the log
    /// does not hold), whatever another host's file published; else `stored`.
    fn resolved(&self, name: &str, origin: Origin, stored: ConnectorConfig) -> ConnectorConfig {
        let declared = self.file_connectors.read().expect("file connectors lock").get(name).cloned();
        match declared {
            Some(declared) if origin == Origin::File => declared.config,
            _ => stored,
        }
    }

    /// Applies `name` again as the log last said, with this host's view of it (after
    /// this host's file started or stopped declaring it).
    async fn reapply(&self, name: &str) {
        let mut running = self.running.lock().await;
        let Ok(existing) = self.connector(name) else { return };
        let mut connector =
            ManagedConnector { config: self.resolved(name, existing.origin, existing.published.clone()), ..(*existing).clone() };
        connector.plan = match (self.can_run_here(&connector), &existing.plan) {
            (false, _) => Err(ELSEWHERE.to_owned()),
            (true, Ok(plan)) if connector.config == existing.config => Ok(plan.clone()),
            (true, _) => self.plan(&connector.config, connector.pinned.as_deref()).await.map_err(|problems| problems_text(&problems)),
        };
        self.apply(&mut running, Arc::new(connector)).await;
    }

    /// The target of `name`: its target-state record's, else `stored`.
    fn target_of(&self, name: &str, stored: TargetState) -> TargetState {
        self.targets.read().expect("targets lock").get(name).copied().unwrap_or(stored)
    }

    /// Every connector of the desired state, by name.
    pub fn connectors(&self) -> BTreeMap<String, Arc<ManagedConnector>> {
        self.desired.read().expect("desired state lock").clone()
    }

    /// One connector.
    pub fn connector(&self, name: &str) -> Result<Arc<ManagedConnector>, ManagerError> {
        self.desired.read().expect("desired state lock").get(name).cloned().ok_or_else(|| ManagerError::NotFound(name.to_owned()))
    }

    /// One connector's status: of the tasks this host runs as it says, of the others
    /// as the hosts that run them say (see [`SharedStatus`]).
    pub fn status(&self, name: &str) -> Result<ConnectorStatus, ManagerError> {
        let mut status = self.context.status.get(name).ok_or_else(|| ManagerError::NotFound(name.to_owned()))?;
        if let Some(shared) = &self.shared {
            let ownership = self.ownership.read().expect("ownership lock").clone();
            shared.merge(&mut status, |task| ownership.owns_task(name, task));
        }
        Ok(status)
    }

    /// The plugins.
    pub fn catalog(&self) -> PluginCatalog {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// What every task needs; the transport and status in particular.
    pub fn context(&self) -> &WorkerContext {
        &self.context
    }

    /// Every problem of `config`, by YAML-model key, without changing anything: the
    /// host's rules, the plugin's option types and the plugin's own validation.
    pub async fn check(&self, config: &ConnectorConfig) -> Vec<(String, String)> {
        self.plugin_arrived(&config.plugin).await;
        let mut problems = validate_connector(config);
        if let Err(found) = self.plan(config, None).await {
            problems.extend(found.into_iter().filter(|problem| !problems.contains(problem)).collect::<Vec<_>>());
        }
        problems
    }

    /// Creates a connector owned by the API, in `target` state.
    pub async fn create(&self, config: ConnectorConfig, target: TargetState) -> Result<Arc<ManagedConnector>, ManagerError> {
        let _changes = self.changes.lock().await;
        if self.connector(&config.name).is_ok() {
            return Err(ManagerError::AlreadyExists(config.name));
        }
        self.install(config, target, true).await
    }

    /// Replaces the configuration of an API-owned connector, or creates it (as Kafka
    /// Connect's `PUT /connectors/{name}/config` does). Returns whether it was created.
    pub async fn put_config(&self, config: ConnectorConfig) -> Result<(bool, Arc<ManagedConnector>), ManagerError> {
        let _changes = self.changes.lock().await;
        let (created, target) = match self.connector(&config.name) {
            Ok(existing) if existing.origin == Origin::File => return Err(ManagerError::OwnedByFile(config.name)),
            // The same configuration again, whose plugin's newest version is the one it
            // runs, changes nothing, as a file reload that changes nothing restarts
            // nothing; else it moves to that version (on every host).
            Ok(existing)
                if existing.config == config
                    && self.runs_resolved_plugin(&existing, None)
                    && existing.plan.as_ref().is_ok_and(|plan| self.pin_for(&config, plan) == existing.pinned) =>
            {
                return Ok((false, existing));
            }
            Ok(existing) => (false, existing.target),
            Err(_) => (true, TargetState::Running),
        };
        Ok((created, self.install(config, target, created).await?))
    }

    /// The version a connector of `config` planned as `plan` runs on every host: the
    /// uploaded version its plugin resolved to when it names none. (A version of
    /// `plugins.dir`, or a built-in, is each host's own.)
    fn pin_for(&self, config: &ConnectorConfig, plan: &ConnectorPlan) -> Option<String> {
        let (plugin, version) = (&plan.plugin.description.name, &plan.plugin.description.version);
        let uploaded = plan.plugin.origin == PluginOrigin::Uploaded
            && self.catalog().get(plugin, version).is_some_and(|found| Arc::ptr_eq(found, &plan.plugin));
        (config.plugin == *plugin && uploaded).then(|| version.clone())
    }

    /// For a connector of `config` whose plugin names no version, planned here with
    /// `version`: a newer version of it the cluster holds (the one the connector runs,
    /// or an upload another host took) that this host has not loaded.
    fn newer_version_elsewhere(&self, config: &ConnectorConfig, version: &str) -> Option<String> {
        if config.plugin.contains('@') {
            return None;
        }
        let running = self.connector(&config.name).ok().and_then(|existing| existing.pinned.clone());
        let catalog = self.catalog();
        running
            .into_iter()
            .chain(self.shared_plugins.published_versions(&config.plugin))
            .filter(|known| catalog.get(&config.plugin, known).is_none())
            .filter(|known| crate::names::compare_versions(known, version) == std::cmp::Ordering::Greater)
            .max_by(|a, b| crate::names::compare_versions(a, b))
    }

    /// Whether `connector` runs the plugin version its `plugin` names today, with
    /// `pinned` for a name without a version (else its newest: a newer upload changes
    /// what such a name resolves to).
    fn runs_resolved_plugin(&self, connector: &ManagedConnector, pinned: Option<&str>) -> bool {
        let Ok(plan) = &connector.plan else { return false };
        let reference = plugin_reference(&connector.config, pinned);
        self.catalog().find(&reference).is_ok_and(|resolved| Arc::ptr_eq(&resolved, &plan.plugin))
    }

    /// Deletes a connector the API owns, or one another host's file declares (which that
    /// host declares again if it still runs): its tasks stop (committing the batch in
    /// hand).
    pub async fn delete(&self, name: &str) -> Result<(), ManagerError> {
        let _changes = self.changes.lock().await;
        let existing = self.connector(name)?;
        // Another host's file connector may go (its host may be gone for good): a host
        // whose file still declares it declares it again.
        if existing.origin == Origin::File && self.file_connectors.read().expect("file connectors lock").contains_key(name) {
            return Err(ManagerError::OwnedByFile(name.to_owned()));
        }
        self.remove(name).await
    }

    /// Removes a connector from the log: the connector, then its target state.
    async fn remove(&self, name: &str) -> Result<(), ManagerError> {
        self.log.write_all(vec![(connector_key(name), None), (target_key(name), None)]).await?;
        Ok(())
    }

    /// Pauses, resumes or stops a connector, whoever owns it; persisted.
    pub async fn set_target(&self, name: &str, target: TargetState) -> Result<(), ManagerError> {
        let _changes = self.changes.lock().await;
        let existing = self.connector(name)?;
        if existing.target == target {
            return Ok(());
        }
        self.log.write(&target_key(name), Some(&target_document(target))).await?;
        Ok(())
    }

    /// Kafka Connect's `POST /connectors/{name}/restart`. The connector itself has no
    /// instance of its own here, so restarting it re-plans a connector that could not
    /// run (its plugin may be back); with `include_tasks`, its tasks (only the FAILED
    /// ones with `only_failed`) are restarted too, by every host that runs them.
    /// Returns the status as the restart begins.
    pub async fn restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> Result<ConnectorStatus, ManagerError> {
        let existing = self.connector(name)?;
        let request = StoredRestart { include_tasks, only_failed };
        let document = serde_json::to_string(&request).expect("a restart serialises");
        if existing.plan.is_err() && self.can_run_here(&existing) {
            self.plan(&existing.config, existing.pinned.as_deref()).await.map_err(ManagerError::Invalid)?;
            self.log.write(&format!("{RESTART_CONNECTOR_KEY}{name}"), Some(&document)).await?;
            return self.status(name);
        }
        if !(include_tasks && existing.target == TargetState::Running) {
            // Hosts of the cluster that could not plan it try again.
            if self.owned_partitions().is_some() {
                self.log.write(&format!("{RESTART_CONNECTOR_KEY}{name}"), Some(&document)).await?;
            }
            return self.status(name);
        }
        // Kafka Connect's answer: the status as the restart begins, with what is being
        // restarted shown as RESTARTING.
        let mut answer = self.status(name)?;
        if !only_failed || answer.connector.state == State::Failed {
            answer.connector.state = State::Restarting;
        }
        for task in answer.tasks.iter_mut().filter(|task| !only_failed || task.state == State::Failed) {
            task.state = State::Restarting;
        }
        self.log.write(&format!("{RESTART_CONNECTOR_KEY}{name}"), Some(&document)).await?;
        Ok(answer)
    }

    /// Restarts one task of a running connector, on every host that runs it.
    pub async fn restart_task(&self, name: &str, task: u32) -> Result<(), ManagerError> {
        let existing = self.connector(name)?;
        // In a cluster the task may run on a host that could plan the connector.
        let failed_here = existing.plan.is_err() && self.can_run_here(&existing) && self.owned_partitions().is_none();
        if existing.target != TargetState::Running || failed_here {
            return Err(ManagerError::WrongState(format!(
                "connector {name} is {:?}, so it has no task to restart; resume it first",
                self.status(name)?.connector.state
            )));
        }
        if task >= existing.task_count() {
            return Err(ManagerError::TaskNotFound(name.to_owned(), task));
        }
        self.log.write(&format!("{RESTART_TASK_KEY}{name}-{task}"), Some("{}")).await?;
        Ok(())
    }

    /// Applies a restart of `name` read from the log: a connector that could not run is
    /// planned again; the tasks this host runs are restarted as `request` says.
    async fn on_restart(&self, name: &str, request: StoredRestart) {
        let mut running = self.running.lock().await;
        let Ok(existing) = self.connector(name) else { return };
        // Planned again whether or not this host runs a task of it now: the cluster may
        // give it one later.
        if !self.can_run_here(&existing) {
            return;
        }
        if existing.plan.is_err() {
            let plan = self.plan(&existing.config, existing.pinned.as_deref()).await.map_err(|problems| problems_text(&problems));
            self.apply(&mut running, Arc::new(ManagedConnector { plan, ..(*existing).clone() })).await;
            return;
        }
        if !request.include_tasks || existing.target != TargetState::Running || !running.contains_key(name) {
            return;
        }
        let Ok(status) = self.status(name) else { return };
        let here = running.get(name).map(|tasks| tasks.keys().copied().collect::<BTreeSet<u32>>()).unwrap_or_default();
        let tasks = status.tasks.iter().filter(|task| here.contains(&task.id) && (!request.only_failed || task.state == State::Failed));
        for task in tasks.map(|task| task.id).collect::<Vec<_>>() {
            if let Err(error) = self.restart_task_locked(&mut running, &existing, task).await {
                tracing::warn!(connector = name, task, %error, "A task could not be restarted.");
            }
        }
    }

    /// Applies a restart of task `task` of `name` read from the log, if this host runs it.
    async fn on_restart_task(&self, name: &str, task: u32) {
        let mut running = self.running.lock().await;
        let Ok(existing) = self.connector(name) else { return };
        let here = running.get(name).is_some_and(|tasks| tasks.contains_key(&task));
        if existing.target != TargetState::Running || existing.plan.is_err() || !here {
            return;
        }
        if let Err(error) = self.restart_task_locked(&mut running, &existing, task).await {
            tracing::warn!(connector = name, task, %error, "A task could not be restarted.");
        }
    }

    /// Stops every task (each commits the batch in hand), connectors side by side,
    /// waiting up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        // Changes that come from now on are another host's, or for the next start.
        self.stopping.cancel();
        let mut running = self.running.lock().await;
        let lingering = std::mem::take(&mut *self.lingering.lock().expect("lingering lock"));
        let connectors = running
            .drain()
            .map(|(_, tasks)| tasks.into_values().collect())
            .chain([lingering])
            .map(|tasks: Vec<RunningTask>| stop_tasks_within(tasks, grace));
        if !futures::future::join_all(connectors).await.iter().all(Vec::is_empty) {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "Some tasks did not stop in time; their uncommitted batches will be delivered again."
            );
        }
        self.context.status.stop_all();
    }

    /// Validates and plans `config` (refused with every problem), then publishes it as
    /// an API connector in `target` state (`new`: with that target state too), and
    /// answers with what this host then runs.
    async fn install(&self, config: ConnectorConfig, target: TargetState, new: bool) -> Result<Arc<ManagedConnector>, ManagerError> {
        let problems = validate_connector(&config);
        if !problems.is_empty() {
            return Err(ManagerError::Invalid(problems));
        }
        self.plugin_arrived(&config.plugin).await;
        let plan = self.plan(&config, None).await.map_err(ManagerError::Invalid)?;
        let name = config.name.clone();
        // Checked here, so that a cluster that cannot be reached refuses the change.
        self.context.transport.ensure_topics(&connector_topics(&config)).await?;
        // A plugin named without a version: the version planned here runs on every host,
        // unless the cluster has a newer one this host lacks.
        if let Some(newer) = self.newer_version_elsewhere(&config, &plan.plugin.description.version) {
            return Err(ManagerError::Conflict(format!(
                "plugin {} has version {newer} in the cluster, which this host has not loaded (its log says why): send the change \
                 through a host that has it, or name the version in connector.class",
                config.plugin
            )));
        }
        let pinned = self.pin_for(&config, &plan);
        self.checked_plans.write().expect("checked plans lock").insert(name.clone(), plan);
        let published = self.publish(Origin::Api, config.clone(), target, new, pinned).await;
        self.checked_plans.write().expect("checked plans lock").remove(&name);
        published?;
        let installed = self.connector(&name)?;
        if installed.origin != Origin::Api || installed.config != config {
            return Err(ManagerError::Conflict(format!(
                "connector {name} was changed at the same time through another host (or the file of one), whose change came last"
            )));
        }
        Ok(installed)
    }

    /// Appends `config` to the log as a connector of `origin` (declared by this host
    /// when it is the file's, its secrets hidden), preceded, when it is `new`, by its
    /// target state; returns once this host applied it.
    async fn publish(
        &self,
        origin: Origin,
        config: ConnectorConfig,
        target: TargetState,
        new: bool,
        plugin_version: Option<String>,
    ) -> Result<(), ManagerError> {
        let name = config.name.clone();
        let declared_by = (origin == Origin::File).then(|| self.host_id.clone());
        let stored = StoredConnector { origin, target, config: Some(config), declared_by, plugin_version };
        let document = serde_json::to_string(&stored).expect("a stored connector serialises");
        let mut changes = Vec::new();
        if new {
            changes.push((target_key(&name), Some(target_document(target))));
        }
        changes.push((connector_key(&name), Some(document)));
        self.log.write_all(changes).await?;
        Ok(())
    }

    /// Makes the running tasks of `connector` match it: its old tasks stop, then, if it
    /// should run and can, its new tasks start.
    async fn apply(&self, running: &mut HashMap<String, BTreeMap<u32, RunningTask>>, connector: Arc<ManagedConnector>) {
        let name = connector.config.name.clone();
        self.stop_tasks(running.remove(&name).unwrap_or_default().into_values().collect()).await;
        self.desired.write().expect("desired state lock").insert(name.clone(), connector.clone());
        let status = &self.context.status;
        match (&connector.plan, self.can_run_here(&connector)) {
            (Err(reason), true) => status.set_connector_failed(&name, connector.kind(), reason.clone()),
            _ => status.set_connector(&name, connector.kind(), connector.task_count(), connector.target.state()),
        }
        self.reconcile(running, &connector).await;
    }

    /// Starts the tasks of `connector` this host owns and does not run yet, and stops
    /// those it runs but no longer owns; the others keep running untouched. The status
    /// shows the tasks that run elsewhere as such.
    async fn reconcile(&self, running: &mut HashMap<String, BTreeMap<u32, RunningTask>>, connector: &ManagedConnector) {
        let name = &connector.config.name;
        if connector.target != TargetState::Running || self.stopping.is_cancelled() {
            return;
        }
        let ownership = self.ownership.read().expect("ownership lock").clone();
        let plan = match &connector.plan {
            Ok(plan) => plan,
            Err(_) if !self.can_run_here(connector) => {
                for task in 0..connector.task_count() {
                    let reason = match (ownership.owns_task(name, task), ownership.assigned()) {
                        (true, _) => ELSEWHERE,
                        (false, true) => OWNED_ELSEWHERE,
                        (false, false) => NOT_YET_ASSIGNED,
                    };
                    self.context.status.set_task(name, task, State::Unassigned, Some(reason.to_owned()));
                }
                return;
            }
            Err(_) => return,
        };
        let tasks = running.entry(name.clone()).or_default();
        // Tasks told to stop (their partition was given up while a change held the
        // running set) are no longer running here: they may start again once stopped.
        let told: Vec<u32> = tasks.iter().filter(|(_, running)| running.cancel.is_cancelled()).map(|(task, _)| *task).collect();
        self.linger(told.iter().filter_map(|task| tasks.remove(task)).collect());
        let gone: Vec<u32> = tasks.keys().copied().filter(|task| !ownership.owns_task(name, *task)).collect();
        let stopped: Vec<RunningTask> = gone.iter().filter_map(|task| tasks.remove(task)).collect();
        let mut started = Vec::new();
        for task in 0..plan.task_count() {
            if tasks.contains_key(&task) {
                continue;
            }
            // A token born cancelled: the partition was given up meanwhile.
            match ownership.task_token(name, task).filter(|cancel| !cancel.is_cancelled()) {
                None => {
                    let reason = if ownership.assigned() { OWNED_ELSEWHERE } else { NOT_YET_ASSIGNED };
                    self.context.status.set_task(name, task, State::Unassigned, Some(reason.to_owned()));
                }
                Some(_) if self.still_stopping(name, task) => {
                    self.context.status.set_task(name, task, State::Unassigned, Some(STILL_STOPPING.to_owned()));
                }
                Some(cancel) => {
                    tasks.insert(task, spawn_task(&self.context, plan.clone(), task, cancel));
                    started.push(task);
                }
            }
        }
        if tasks.is_empty() {
            running.remove(name);
        }
        if !started.is_empty() {
            tracing::info!(connector = %name, tasks = ?started, "Started the connector's tasks.");
        }
        if !stopped.is_empty() {
            self.stop_tasks(stopped).await;
            // Once stopped (a stopping task shows STOPPED).
            for task in &gone {
                self.context.status.set_task(name, *task, State::Unassigned, Some(OWNED_ELSEWHERE.to_owned()));
            }
            tracing::info!(connector = %name, tasks = ?gone, "Stopped the connector's tasks that now run on another host.");
        }
    }

    /// Stops a connector's tasks (see [`stop_tasks_within`]), up to [`STOP_GRACE`];
    /// those that take longer are kept until they finished.
    async fn stop_tasks(&self, tasks: Vec<RunningTask>) {
        let leftovers = stop_tasks_within(tasks, STOP_GRACE).await;
        if !leftovers.is_empty() {
            tracing::warn!(
                grace_seconds = STOP_GRACE.as_secs(),
                tasks = leftovers.len(),
                "A connector's tasks did not stop in time; their uncommitted batches will be delivered again, and they start again here only once they stopped."
            );
            self.linger(leftovers);
        }
    }

    /// Keeps tasks that did not stop in time, until they did.
    fn linger(&self, leftovers: Vec<RunningTask>) {
        if !leftovers.is_empty() {
            self.lingering.lock().expect("lingering lock").extend(leftovers);
        }
    }

    /// Whether task `task` of `name` is still stopping on this host (so it must not
    /// start again yet).
    fn still_stopping(&self, name: &str, task: u32) -> bool {
        // Finished ones are taken out by the sweep alone, which then starts them again.
        let lingering = self.lingering.lock().expect("lingering lock");
        lingering.iter().any(|left| left.connector == name && left.task == task && !left.handle.is_finished())
    }

    /// Starts the tasks that waited for an earlier instance of theirs to stop, once it
    /// did, until the host stops.
    fn sweep_lingering(self: Arc<Self>) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = self.stopping.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let finished = {
                    let mut lingering = self.lingering.lock().expect("lingering lock");
                    let before = lingering.len();
                    lingering.retain(|left| !left.handle.is_finished());
                    before - lingering.len()
                };
                if finished > 0 {
                    self.reconcile_all().await;
                }
            }
        });
    }

    /// The cluster took `partitions` from this host: their tasks stop, each finishing
    /// its batch (`lost`: the cluster already gave them to another host, so they get
    /// only a moment), within `deadline` in all.
    /// Answers false when a change in progress held the running set past `deadline`:
    /// the tasks were told to stop (they are cancelled at once), but were not awaited.
    pub async fn release(&self, partitions: BTreeSet<i32>, lost: bool, deadline: Duration) -> bool {
        let ownership = {
            let mut ownership = self.ownership.write().expect("ownership lock");
            ownership.release(&partitions);
            ownership.clone()
        };
        let started = tokio::time::Instant::now();
        let Ok(mut running) = tokio::time::timeout(deadline, self.running.lock()).await else {
            tracing::warn!(
                deadline_seconds = deadline.as_secs(),
                "A change in progress kept this host from waiting for the tasks of the partitions the cluster took from it: they were told to stop, and another host may start them before they finished their batch."
            );
            return false;
        };
        let (mut stopping, mut moved) = (Vec::new(), Vec::new());
        // Earlier instances still stopping go with them: the next host must not start
        // a task while one of its instances still runs here.
        {
            let mut lingering = self.lingering.lock().expect("lingering lock");
            let (taken, kept) = std::mem::take(&mut *lingering)
                .into_iter()
                .partition::<Vec<_>, _>(|left| ownership.in_partitions(&left.connector, left.task, &partitions));
            *lingering = kept;
            stopping.extend(taken);
        }
        for (name, tasks) in running.iter_mut() {
            for task in tasks.keys().copied().filter(|task| ownership.in_partitions(name, *task, &partitions)).collect::<Vec<_>>() {
                stopping.extend(tasks.remove(&task));
                moved.push((name.clone(), task));
            }
        }
        running.retain(|_, tasks| !tasks.is_empty());
        let grace = if lost { LOST_GRACE } else { deadline.saturating_sub(started.elapsed()) };
        let leftovers = stop_tasks_within(stopping, grace).await;
        if !leftovers.is_empty() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                tasks = leftovers.len(),
                "Some tasks taken from this host did not stop in time; another host may start them before they stopped."
            );
            self.linger(leftovers);
        }
        // Once stopped (a stopping task shows STOPPED).
        for (name, task) in &moved {
            self.context.status.set_task(name, *task, State::Unassigned, Some(OWNED_ELSEWHERE.to_owned()));
        }
        if !moved.is_empty() {
            tracing::info!(tasks = moved.len(), lost, "Stopped the tasks of the partitions the cluster took from this host.");
        }
        true
    }

    /// What the cluster's member hands the partitions it is given and loses to; it
    /// calls from a thread of its own, and `runtime` runs the changes.
    pub fn cluster_owner(self: &Arc<Self>, runtime: tokio::runtime::Handle) -> Arc<dyn Owner> {
        Arc::new(ClusterShare { manager: self.clone(), runtime })
    }

    /// Reconciles every connector with what this host owns now.
    async fn reconcile_all(&self) {
        let mut running = self.running.lock().await;
        for connector in self.connectors().into_values() {
            self.reconcile(&mut running, &connector).await;
        }
    }

    /// How many partitions of the cluster's assignments topic this host owns; none for
    /// a host alone, which runs everything.
    pub fn owned_partitions(&self) -> Option<usize> {
        self.ownership.read().expect("ownership lock").owned_count()
    }

    async fn restart_task_locked(
        &self,
        running: &mut HashMap<String, BTreeMap<u32, RunningTask>>,
        connector: &ManagedConnector,
        task: u32,
    ) -> Result<(), ManagerError> {
        let name = &connector.config.name;
        let plan = connector.plan.clone().map_err(ManagerError::WrongState)?;
        let tasks = running.get_mut(name).ok_or_else(|| ManagerError::TaskNotFound(name.clone(), task))?;
        let old = tasks.remove(&task).ok_or_else(|| ManagerError::TaskNotFound(name.clone(), task))?;
        // The new task starts only after the old one let go (it may hold a consumer),
        // and reports its own state from then on.
        let leftovers = stop_tasks_within(vec![old], STOP_GRACE).await;
        if !leftovers.is_empty() {
            tracing::warn!(connector = %name, task, "The task did not stop in time; it starts again once it stopped.");
            self.linger(leftovers);
            return Ok(());
        }
        // Given up meanwhile? Then it starts where the cluster gave it.
        let cancel = self.ownership.read().expect("ownership lock").task_token(name, task).filter(|cancel| !cancel.is_cancelled());
        let Some(cancel) = cancel else {
            self.context.status.set_task(name, task, State::Unassigned, Some(OWNED_ELSEWHERE.to_owned()));
            return Ok(());
        };
        self.context.status.set_task(name, task, State::Restarting, None);
        tasks.insert(task, spawn_task(&self.context, plan, task, cancel));
        tracing::info!(connector = %name, task, "Restarted the task.");
        Ok(())
    }

    /// Plans `config` against the plugins (blocking: runs the plugin's validation),
    /// with the plugin version `pinned` when its plugin names none.
    async fn plan(&self, config: &ConnectorConfig, pinned: Option<&str>) -> Result<Arc<ConnectorPlan>, Vec<(String, String)>> {
        let mut config = config.clone();
        let reference = plugin_reference(&config, pinned);
        let named = std::mem::replace(&mut config.plugin, reference);
        let pinned = config.plugin != named;
        let (catalog, runtime, base_dir) = (self.catalog(), self.context.runtime.clone(), self.base_dir.clone());
        let mut planned = tokio::task::spawn_blocking(move || plan_connector(&config, &catalog, &runtime, &|path| base_dir.join(path)))
            .await
            .map_err(|error| vec![("plugin".to_owned(), format!("planning failed in the host: {error}"))])?
            .map(Arc::new);
        if let (Err(problems), true) = (&mut planned, pinned) {
            for (key, problem) in problems.iter_mut().filter(|(key, _)| key == "plugin") {
                problem.push_str(&format!(
                    " ({key} {named} names no version: the connector runs the uploaded version it was planned with when it was \
                     last changed; a host of a cluster that lacks it fetches it from the cluster when another host took it; \
                     else upload that version here, or change the connector, naming a version or not: a PUT of the same \
                     configuration moves it to the newest version of the host that takes it)"
                ));
            }
        }
        planned
    }

    async fn ensure_topics(&self, connector: &ManagedConnector) -> Result<(), TransportError> {
        self.context.transport.ensure_topics(&connector_topics(&connector.config)).await
    }
}

/// The manager as the owner of the partitions the cluster gives this host.
struct ClusterShare {
    manager: Arc<Manager>,
    runtime: tokio::runtime::Handle,
}

impl Owner for ClusterShare {
    fn release(&self, partitions: BTreeSet<i32>, lost: bool, deadline: Duration) {
        if let Some(shared) = &self.manager.shared {
            shared.release(Some(&partitions));
        }
        if !self.runtime.block_on(self.manager.release(partitions, lost, deadline)) {
            // Told to stop; collected once the change in progress is done.
            let manager = self.manager.clone();
            self.runtime.spawn(async move { manager.reconcile_all().await });
        }
    }

    fn acquire(&self, partitions: BTreeSet<i32>) {
        // Claimed before any task of them reports its state (the claim's offset is the
        // generation of those states).
        if let Some(shared) = &self.manager.shared {
            shared.claim(&partitions);
        }
        // Owned from now on, in the order the cluster says; the tasks start meanwhile.
        let beyond = self.manager.ownership.write().expect("ownership lock").acquire(&partitions);
        if !beyond.is_empty() {
            tracing::error!(
                partitions = ?beyond,
                "The cluster's assignments topic has more partitions than when this host started (partitions were added): hosts \
                 may now disagree on which runs a task. Restart every host, or remove the added partitions."
            );
        }
        let manager = self.manager.clone();
        self.runtime.spawn(async move { manager.reconcile_all().await });
    }

    fn release_everything(&self) {
        if let Some(shared) = &self.manager.shared {
            shared.release(None);
        }
        self.manager.ownership.write().expect("ownership lock").release_everything();
        self.runtime.block_on(self.manager.reconcile_all());
    }
}

/// The problems of a connector read from the log, which anyone who may write the topic
/// wrote: checked as a request would be, and its name must be its key's.
fn check_stored(name: &str, config: &ConnectorConfig) -> Result<(), String> {
    let mut problems = validate_connector(config);
    if config.name != name {
        problems.push(("name".to_owned(), format!("is {}, not the name of its key", crate::names::shown(&config.name))));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems_text(&problems)) }
}

/// Whether `next` runs exactly as `existing` does: same plan, same target.
fn same_run(existing: &ManagedConnector, next: &ManagedConnector) -> bool {
    let same_plan = match (&existing.plan, &next.plan) {
        (Ok(a), Ok(b)) => Arc::ptr_eq(a, b),
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    same_plan && existing.target == next.target
}

/// The plugin `config` runs: its `plugin`, with the version `pinned` when it names none.
fn plugin_reference(config: &ConnectorConfig, pinned: Option<&str>) -> String {
    match pinned {
        Some(version) if !config.plugin.contains('@') => format!("{}@{version}", config.plugin),
        _ => config.plugin.clone(),
    }
}

/// The topics a connector writes or reads.
fn connector_topics(config: &ConnectorConfig) -> Vec<String> {
    config.topic.iter().chain(&config.topics).chain(&config.errors.dead_letter_topic).cloned().collect()
}

/// Stops `tasks` together, each finishing its batch, within `grace` in all; answers
/// those that did not finish in time (still stopping). On Kafka the sink tasks of a
/// connector commit first and leave their group once all of them have committed (a
/// leave starts a rebalance, during which commits may be refused).
async fn stop_tasks_within(tasks: Vec<RunningTask>, grace: Duration) -> Vec<RunningTask> {
    let deadline = tokio::time::Instant::now() + grace;
    for task in &tasks {
        task.cancel.cancel();
    }
    let mut leftovers = Vec::new();
    for mut task in tasks {
        if tokio::time::timeout_at(deadline, &mut task.handle).await.is_err() {
            leftovers.push(task);
        }
    }
    leftovers
}

fn connector_key(name: &str) -> String {
    format!("{CONNECTOR_KEY}{name}")
}

fn target_key(name: &str) -> String {
    format!("{TARGET_KEY}{name}")
}

fn target_document(target: TargetState) -> String {
    serde_json::to_string(&StoredTarget { state: target }).expect("a target state serialises")
}

/// The connectors and the target states of the desired state's latest values.
fn parse_state(state: &BTreeMap<String, String>, location: &str) -> (BTreeMap<String, StoredConnector>, HashMap<String, TargetState>) {
    let (mut connectors, mut targets) = (BTreeMap::new(), HashMap::new());
    for (key, value) in state {
        if let Some(name) = key.strip_prefix(CONNECTOR_KEY) {
            match serde_json::from_str::<StoredConnector>(value) {
                Ok(stored) => {
                    connectors.insert(name.to_owned(), stored);
                }
                Err(error) => {
                    tracing::error!(connector = %crate::names::shown(name), %error, %location, "A stored connector could not be read; it was skipped.")
                }
            }
        } else if let Some(name) = key.strip_prefix(TARGET_KEY) {
            match serde_json::from_str::<StoredTarget>(value) {
                Ok(stored) => {
                    targets.insert(name.to_owned(), stored.state);
                }
                Err(error) => {
                    tracing::error!(connector = %crate::names::shown(name), %error, %location, "A stored target state could not be read; it was skipped.")
                }
            }
        }
    }
    (connectors, targets)
}

/// The `name@version` of each plugin of `catalog` that `configs` use: as their plugin,
/// or as one of their WASM transforms' plugin.
fn plugins_used<'a>(catalog: &PluginCatalog, configs: impl Iterator<Item = &'a ConnectorConfig>) -> BTreeSet<String> {
    configs
        .flat_map(|config| {
            let transforms = config.transforms.iter().filter_map(|transform| transform.options.get(crate::transforms::wasm::PLUGIN_KEY));
            std::iter::once(config.plugin.clone()).chain(transforms.map(|reference| reference.0.trim().to_owned()))
        })
        .filter_map(|reference| catalog.find(&reference).ok())
        .map(|plugin| format!("{}@{}", plugin.description.name, plugin.description.version))
        .collect()
}

/// The configurations of every connector the desired state holds with one: those
/// created through the API, and the file connectors of every host that published theirs.
pub async fn stored_connector_configs(store: &dyn StateStore) -> Result<Vec<ConnectorConfig>, StateStoreError> {
    let (connectors, _) = parse_state(&store.load().await?, &store.location());
    Ok(connectors.into_values().filter_map(|stored| stored.config).collect())
}

/// Problems as one line each: `key: message`.
pub fn problems_text(problems: &[(String, String)]) -> String {
    problems.iter().map(|(key, message)| format!("{key}: {message}")).collect::<Vec<_>>().join("; ")
}
