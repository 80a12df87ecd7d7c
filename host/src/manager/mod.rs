//! The one owner of the running set, as Kafka Connect's herder: it holds the desired
//! state (every connector with its configuration, who owns it and its target state
//! RUNNING / PAUSED / STOPPED), persists it ([`store`]), and reconciles the running
//! tasks with it. Start-up, the REST API and the file watcher submit changes here;
//! nothing else starts or stops tasks, and a change to one connector touches only
//! that connector's tasks.

mod file;
mod offsets;
mod plugins;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::{ConnectorConfig, validate_connector};
use crate::runtime::{PluginCatalog, PluginKind};
use crate::telemetry::{ConnectorStatus, State};
use crate::transport::TransportError;
use crate::worker::{ConnectorPlan, RunningTask, WorkerContext, plan_connector, spawn_task};
pub use file::{FileDiff, FileState, watch as watch_file};
pub use offsets::{ConnectorOffsets, OffsetsChange};
pub use plugins::Upload;
use store::{StateStore, StateStoreError};

/// How long a connector's tasks get to finish their batch when it is stopped.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// The prefix of connector keys in the state store (Kafka Connect's own is the same).
const CONNECTOR_KEY: &str = "connector-";

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

/// One connector as persisted. File-owned connectors store only their target state:
/// their configuration is the file's.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredConnector {
    origin: Origin,
    target: TargetState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<ConnectorConfig>,
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
            Err(_) => self.config.tasks_max,
        }
    }
}

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

/// The owner of the running set.
pub struct Manager {
    context: WorkerContext,
    catalog: RwLock<PluginCatalog>,
    /// Relative directories in API-made configurations resolve against this (the
    /// configuration file's directory), as in the file.
    base_dir: PathBuf,
    /// Where uploaded plugins are stored.
    uploads_dir: PathBuf,
    store: Box<dyn StateStore>,
    /// The running tasks by connector; its lock serialises every change.
    running: Mutex<HashMap<String, Vec<RunningTask>>>,
    /// The desired state as the API reads it.
    desired: RwLock<BTreeMap<String, Arc<ManagedConnector>>>,
    /// What became of the configuration file's latest version.
    file_state: RwLock<FileState>,
}

impl Manager {
    /// Loads the persisted desired state, merges the file's connectors into it and
    /// starts everything that should run. Fails when the file declares a connector
    /// that the REST API created, or when the state store cannot be read.
    pub async fn start(
        context: WorkerContext,
        catalog: PluginCatalog,
        base_dir: PathBuf,
        uploads_dir: PathBuf,
        store: Box<dyn StateStore>,
        file_plans: Vec<ConnectorPlan>,
    ) -> anyhow::Result<Arc<Manager>> {
        let stored = load_connectors(store.as_ref()).await?;
        let manager = Arc::new(Manager {
            context,
            catalog: RwLock::new(catalog),
            base_dir,
            uploads_dir,
            store,
            running: Mutex::default(),
            desired: RwLock::default(),
            file_state: RwLock::default(),
        });
        let mut connectors = Vec::new();
        for plan in file_plans {
            let name = plan.config.name.clone();
            let target = match stored.get(&name) {
                Some(entry) if entry.origin == Origin::Api => anyhow::bail!(
                    "connector {name:?} is declared in the configuration file and was also created through the REST API; \
                     rename it in the file, or delete the API's connector (DELETE /connectors/{name}) from a host started without it"
                ),
                Some(entry) => entry.target,
                None => TargetState::Running,
            };
            connectors.push(ManagedConnector { config: plan.config.clone(), plan: Ok(Arc::new(plan)), origin: Origin::File, target });
        }
        for (name, entry) in stored {
            match (entry.origin, entry.config) {
                (Origin::File, _) if !connectors.iter().any(|connector| connector.config.name == name) => {
                    // Removed from the file since: forget its target state too.
                    manager.store.put(&connector_key(&name), None).await?;
                }
                (Origin::File, _) => {}
                (Origin::Api, Some(config)) => {
                    let plan = manager.plan(&config).await.map_err(|problems| problems_text(&problems));
                    if let Err(reason) = &plan {
                        tracing::error!(connector = %name, %reason, "A connector created through the REST API cannot run; it is FAILED until its configuration or plugin is fixed.");
                    }
                    connectors.push(ManagedConnector { config, plan, origin: Origin::Api, target: entry.target });
                }
                (Origin::Api, None) => {
                    tracing::error!(connector = %name, "The stored state of a connector has no configuration; it was skipped.")
                }
            }
        }
        let mut running = manager.running.lock().await;
        for connector in connectors {
            manager.ensure_topics(&connector).await?;
            manager.apply(&mut running, Arc::new(connector)).await;
        }
        drop(running);
        Ok(manager)
    }

    /// Every connector of the desired state, by name.
    pub fn connectors(&self) -> BTreeMap<String, Arc<ManagedConnector>> {
        self.desired.read().expect("desired state lock").clone()
    }

    /// One connector.
    pub fn connector(&self, name: &str) -> Result<Arc<ManagedConnector>, ManagerError> {
        self.desired.read().expect("desired state lock").get(name).cloned().ok_or_else(|| ManagerError::NotFound(name.to_owned()))
    }

    /// One connector's status.
    pub fn status(&self, name: &str) -> Result<ConnectorStatus, ManagerError> {
        self.context.status.get(name).ok_or_else(|| ManagerError::NotFound(name.to_owned()))
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
        let mut problems = validate_connector(config);
        if let Err(found) = self.plan(config).await {
            problems.extend(found.into_iter().filter(|problem| !problems.contains(problem)).collect::<Vec<_>>());
        }
        problems
    }

    /// Creates a connector owned by the API, in `target` state.
    pub async fn create(&self, config: ConnectorConfig, target: TargetState) -> Result<Arc<ManagedConnector>, ManagerError> {
        let mut running = self.running.lock().await;
        if self.connector(&config.name).is_ok() {
            return Err(ManagerError::AlreadyExists(config.name));
        }
        self.install(&mut running, config, target).await
    }

    /// Replaces the configuration of an API-owned connector, or creates it (as Kafka
    /// Connect's `PUT /connectors/{name}/config` does). Returns whether it was created.
    pub async fn put_config(&self, config: ConnectorConfig) -> Result<(bool, Arc<ManagedConnector>), ManagerError> {
        let mut running = self.running.lock().await;
        let (created, target) = match self.connector(&config.name) {
            Ok(existing) if existing.origin == Origin::File => return Err(ManagerError::OwnedByFile(config.name)),
            // The same configuration again, still resolving to the plugin version it
            // runs, changes nothing, as a file reload that changes nothing restarts nothing.
            Ok(existing) if existing.config == config && self.runs_resolved_plugin(&existing) => return Ok((false, existing)),
            Ok(existing) => (false, existing.target),
            Err(_) => (true, TargetState::Running),
        };
        Ok((created, self.install(&mut running, config, target).await?))
    }

    /// Whether `connector` runs the plugin version its `plugin` names today (a newer
    /// upload changes what a name without a version resolves to).
    fn runs_resolved_plugin(&self, connector: &ManagedConnector) -> bool {
        let Ok(plan) = &connector.plan else { return false };
        self.catalog().find(&connector.config.plugin).is_ok_and(|resolved| Arc::ptr_eq(&resolved, &plan.plugin))
    }

    /// Deletes an API-owned connector: its tasks stop (committing the batch in hand).
    pub async fn delete(&self, name: &str) -> Result<(), ManagerError> {
        let mut running = self.running.lock().await;
        let existing = self.connector(name)?;
        if existing.origin == Origin::File {
            return Err(ManagerError::OwnedByFile(name.to_owned()));
        }
        self.store.put(&connector_key(name), None).await?;
        stop_tasks(running.remove(name).unwrap_or_default()).await;
        self.desired.write().expect("desired state lock").remove(name);
        self.context.status.remove_connector(name);
        self.context.metrics.forget_connector(name);
        tracing::info!(connector = name, "Deleted the connector.");
        Ok(())
    }

    /// Pauses, resumes or stops a connector, whoever owns it; persisted.
    pub async fn set_target(&self, name: &str, target: TargetState) -> Result<(), ManagerError> {
        let mut running = self.running.lock().await;
        let existing = self.connector(name)?;
        if existing.target == target {
            return Ok(());
        }
        let changed = ManagedConnector { target, ..(*existing).clone() };
        self.store.put(&connector_key(name), Some(stored_document(&changed))).await?;
        tracing::info!(connector = name, target = ?target, "Changed the connector's target state.");
        self.apply(&mut running, Arc::new(changed)).await;
        Ok(())
    }

    /// Kafka Connect's `POST /connectors/{name}/restart`. The connector itself has no
    /// instance of its own here, so restarting it re-plans a connector that could not
    /// run (its plugin may be back); with `include_tasks`, its tasks (only the FAILED
    /// ones with `only_failed`) are restarted too. Returns the status right after.
    pub async fn restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> Result<ConnectorStatus, ManagerError> {
        let mut running = self.running.lock().await;
        let existing = self.connector(name)?;
        if existing.plan.is_err() {
            let plan = self.plan(&existing.config).await.map_err(ManagerError::Invalid)?;
            self.apply(&mut running, Arc::new(ManagedConnector { plan: Ok(plan), ..(*existing).clone() })).await;
            return self.status(name);
        }
        if include_tasks && existing.target == TargetState::Running {
            // Kafka Connect's answer: the status as the restart begins, with what is
            // being restarted shown as RESTARTING.
            let mut answer = self.status(name)?;
            if !only_failed || answer.connector.state == State::Failed {
                answer.connector.state = State::Restarting;
            }
            let mut tasks = Vec::new();
            for task in answer.tasks.iter_mut().filter(|task| !only_failed || task.state == State::Failed) {
                task.state = State::Restarting;
                tasks.push(task.id);
            }
            for task in tasks {
                self.restart_task_locked(&mut running, &existing, task).await?;
            }
            return Ok(answer);
        }
        self.status(name)
    }

    /// Restarts one task of a running connector.
    pub async fn restart_task(&self, name: &str, task: u32) -> Result<(), ManagerError> {
        let mut running = self.running.lock().await;
        let existing = self.connector(name)?;
        if existing.target != TargetState::Running || existing.plan.is_err() {
            return Err(ManagerError::WrongState(format!(
                "connector {name} is {:?}, so it has no task to restart; resume it first",
                self.status(name)?.connector.state
            )));
        }
        self.restart_task_locked(&mut running, &existing, task).await
    }

    /// Stops every task (each commits the batch in hand), connectors side by side,
    /// waiting up to `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        let mut running = self.running.lock().await;
        let connectors = running.drain().map(|(_, tasks)| stop_tasks_within(tasks, grace));
        if !futures::future::join_all(connectors).await.into_iter().all(|in_time| in_time) {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "Some tasks did not stop in time; their uncommitted batches will be delivered again."
            );
        }
        self.context.status.stop_all();
    }

    /// Validates, plans and persists `config`, then runs it in `target` state,
    /// replacing what ran under that name.
    async fn install(
        &self,
        running: &mut HashMap<String, Vec<RunningTask>>,
        config: ConnectorConfig,
        target: TargetState,
    ) -> Result<Arc<ManagedConnector>, ManagerError> {
        let problems = validate_connector(&config);
        if !problems.is_empty() {
            return Err(ManagerError::Invalid(problems));
        }
        let plan = self.plan(&config).await.map_err(ManagerError::Invalid)?;
        if let Some(warning) = crate::config::ignored_keys_warning(&config) {
            tracing::warn!(connector = %config.name, "{warning}");
        }
        let managed = ManagedConnector { config, plan: Ok(plan), origin: Origin::Api, target };
        self.ensure_topics(&managed).await?;
        self.store.put(&connector_key(&managed.config.name), Some(stored_document(&managed))).await?;
        tracing::info!(connector = %managed.config.name, plugin = %managed.config.plugin, "Applied the connector's configuration.");
        let managed = Arc::new(managed);
        self.apply(running, managed.clone()).await;
        Ok(managed)
    }

    /// Makes the running tasks of `connector` match it: its old tasks stop, then, if it
    /// should run and can, its new tasks start.
    async fn apply(&self, running: &mut HashMap<String, Vec<RunningTask>>, connector: Arc<ManagedConnector>) {
        let name = connector.config.name.clone();
        stop_tasks(running.remove(&name).unwrap_or_default()).await;
        self.desired.write().expect("desired state lock").insert(name.clone(), connector.clone());
        let status = &self.context.status;
        let plan = match &connector.plan {
            Ok(plan) => plan,
            Err(reason) => {
                status.set_connector_failed(&name, connector.kind(), reason.clone());
                return;
            }
        };
        status.set_connector(&name, plan.kind(), plan.task_count(), connector.target.state());
        if connector.target == TargetState::Running {
            let tasks = (0..plan.task_count()).map(|task| spawn_task(&self.context, plan.clone(), task)).collect();
            running.insert(name.clone(), tasks);
            tracing::info!(connector = %name, tasks = plan.task_count(), "Started the connector's tasks.");
        }
    }

    async fn restart_task_locked(
        &self,
        running: &mut HashMap<String, Vec<RunningTask>>,
        connector: &ManagedConnector,
        task: u32,
    ) -> Result<(), ManagerError> {
        let name = &connector.config.name;
        let plan = connector.plan.clone().map_err(ManagerError::WrongState)?;
        let tasks = running.get_mut(name).ok_or_else(|| ManagerError::TaskNotFound(name.clone(), task))?;
        let slot = tasks.get_mut(task as usize).ok_or_else(|| ManagerError::TaskNotFound(name.clone(), task))?;
        // The new task starts only after the old one let go (it may hold a consumer),
        // and reports its own state from then on.
        slot.cancel.cancel();
        let finished = tokio::time::timeout(STOP_GRACE, &mut slot.handle).await;
        if finished.is_err() {
            tracing::warn!(connector = %name, task, "The task did not stop in time; its uncommitted batch will be delivered again.");
        }
        self.context.status.set_task(name, task, State::Restarting, None);
        *slot = spawn_task(&self.context, plan, task);
        tracing::info!(connector = %name, task, "Restarted the task.");
        Ok(())
    }

    /// Plans `config` against the plugins (blocking: runs the plugin's validation).
    async fn plan(&self, config: &ConnectorConfig) -> Result<Arc<ConnectorPlan>, Vec<(String, String)>> {
        let (catalog, runtime, base_dir, config) = (self.catalog(), self.context.runtime.clone(), self.base_dir.clone(), config.clone());
        tokio::task::spawn_blocking(move || plan_connector(&config, &catalog, &runtime, &|path| base_dir.join(path)))
            .await
            .map_err(|error| vec![("plugin".to_owned(), format!("planning failed in the host: {error}"))])?
            .map(Arc::new)
    }

    async fn ensure_topics(&self, connector: &ManagedConnector) -> Result<(), TransportError> {
        let config = &connector.config;
        let topics: Vec<String> = config.topic.iter().chain(&config.topics).chain(&config.errors.dead_letter_topic).cloned().collect();
        self.context.transport.ensure_topics(&topics).await
    }
}

/// Stops `tasks` together, each finishing its batch, within `grace` in all. On Kafka
/// the sink tasks of a connector commit first and leave their group once all of them
/// have committed (a leave starts a rebalance, during which commits may be refused).
async fn stop_tasks_within(tasks: Vec<RunningTask>, grace: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + grace;
    for task in &tasks {
        task.cancel.cancel();
    }
    let mut in_time = true;
    for task in tasks {
        in_time &= tokio::time::timeout_at(deadline, task.handle).await.is_ok();
    }
    in_time
}

/// Stops a connector's tasks (see [`stop_tasks_within`]), up to [`STOP_GRACE`].
async fn stop_tasks(tasks: Vec<RunningTask>) {
    if !stop_tasks_within(tasks, STOP_GRACE).await {
        tracing::warn!(
            grace_seconds = STOP_GRACE.as_secs(),
            "A connector's tasks did not stop in time; their uncommitted batches will be delivered again."
        );
    }
}

fn connector_key(name: &str) -> String {
    format!("{CONNECTOR_KEY}{name}")
}

fn stored_document(connector: &ManagedConnector) -> String {
    let stored = StoredConnector {
        origin: connector.origin,
        target: connector.target,
        config: (connector.origin == Origin::Api).then(|| connector.config.clone()),
    };
    serde_json::to_string(&stored).expect("a stored connector serialises")
}

/// The configurations of the connectors created through the API, as stored in the
/// desired state (the file's own connectors are in the file).
pub async fn api_connector_configs(store: &dyn StateStore) -> Result<Vec<ConnectorConfig>, StateStoreError> {
    Ok(load_connectors(store)
        .await?
        .into_values()
        .filter(|stored| stored.origin == Origin::Api)
        .filter_map(|stored| stored.config)
        .collect())
}

async fn load_connectors(store: &dyn StateStore) -> Result<BTreeMap<String, StoredConnector>, StateStoreError> {
    let mut connectors = BTreeMap::new();
    for (key, value) in store.load().await? {
        let Some(name) = key.strip_prefix(CONNECTOR_KEY) else { continue };
        match serde_json::from_str::<StoredConnector>(&value) {
            Ok(stored) => {
                connectors.insert(name.to_owned(), stored);
            }
            Err(error) => {
                tracing::error!(connector = name, %error, location = %store.location(), "A stored connector could not be read; it was skipped.")
            }
        }
    }
    Ok(connectors)
}

/// Problems as one line each: `key: message`.
pub fn problems_text(problems: &[(String, String)]) -> String {
    problems.iter().map(|(key, message)| format!("{key}: {message}")).collect::<Vec<_>>().join("; ")
}
