//! `connectors.yaml` while the host runs: the file is read again when it changes. A
//! valid edit is applied as a diff (added, removed and changed file connectors; the
//! unchanged ones keep running untouched); an invalid one changes nothing and is
//! reported, with its file:line:column message, in the log and in `GET /health`.
//! Host-level keys (listen address, data_dir, transport, plugin limits) take effect
//! only at the next start, and the report says so.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{ManagedConnector, Manager, ManagerError, Origin, TargetState, connector_key, stop_tasks};
use crate::config::{self, HostConfig, LoadedConfig};
use crate::worker::{ConnectorPlan, plan_connectors};

/// How often the file is looked at.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What became of the file's latest version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FileState {
    /// The configuration file.
    pub path: String,
    /// When the latest version was read, in milliseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<u64>,
    /// Why the latest version was not applied (every problem, located), if it was not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Host-level keys that changed and take effect only at the next start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_required: Vec<String>,
}

/// What a valid edit changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDiff {
    /// Connectors new in the file.
    pub added: Vec<String>,
    /// Connectors whose configuration changed.
    pub changed: Vec<String>,
    /// Connectors no longer in the file.
    pub removed: Vec<String>,
}

impl Manager {
    /// The file's latest state, for `GET /health`.
    pub fn file_state(&self) -> FileState {
        self.file_state.read().expect("file state lock").clone()
    }

    fn set_file_state(&self, state: FileState) {
        *self.file_state.write().expect("file state lock") = state;
    }

    /// Applies the file's connectors as a diff against the running file connectors.
    /// Refused, changing nothing, when a new file connector takes an API connector's name.
    pub async fn apply_file(&self, plans: Vec<ConnectorPlan>) -> Result<FileDiff, ManagerError> {
        let mut running = self.running.lock().await;
        let current = self.connectors();
        if let Some(taken) =
            plans.iter().find(|plan| current.get(&plan.config.name).is_some_and(|connector| connector.origin == Origin::Api))
        {
            return Err(ManagerError::Conflict(format!(
                "connector \"{}\" is declared in the file and was also created through the REST API; rename it in the file, or delete the API's connector",
                taken.config.name
            )));
        }
        let mut diff = FileDiff::default();
        for (name, connector) in &current {
            if connector.origin == Origin::File && !plans.iter().any(|plan| &plan.config.name == name) {
                self.store.put(&connector_key(name), None).await?;
                stop_tasks(running.remove(name).unwrap_or_default()).await;
                self.desired.write().expect("desired state lock").remove(name);
                self.context.status.remove_connector(name);
                self.context.metrics.forget_connector(name);
                diff.removed.push(name.clone());
            }
        }
        for plan in plans {
            let name = plan.config.name.clone();
            let target = match current.get(&name) {
                Some(existing) if existing.config == plan.config => continue,
                Some(existing) => {
                    diff.changed.push(name);
                    existing.target
                }
                None => {
                    diff.added.push(name);
                    TargetState::Running
                }
            };
            let connector = ManagedConnector { config: plan.config.clone(), plan: Ok(Arc::new(plan)), origin: Origin::File, target };
            self.ensure_topics(&connector).await?;
            self.apply(&mut running, Arc::new(connector)).await;
        }
        Ok(diff)
    }
}

/// The host-level keys in which two configurations differ.
fn host_level_changes(running: &HostConfig, edited: &HostConfig) -> Vec<String> {
    let mut changed = Vec::new();
    let mut compare = |key: &str, same: bool| {
        if !same {
            changed.push(key.to_owned());
        }
    };
    compare("version", running.version == edited.version);
    compare("data_dir", running.data_dir == edited.data_dir);
    compare("admin", running.admin == edited.admin);
    compare("kafka", running.kafka == edited.kafka);
    compare("embedded", running.embedded == edited.embedded);
    compare("plugins", running.plugins == edited.plugins);
    changed
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Watches the file `running` was loaded from until `shutdown`, applying each new
/// version to `manager`.
pub fn watch(manager: Arc<Manager>, running: LoadedConfig, shutdown: CancellationToken) {
    let path = PathBuf::from(&running.file);
    manager.set_file_state(FileState { path: running.file.clone(), checked_at: Some(now_ms()), ..FileState::default() });
    tokio::spawn(async move {
        let mut last = std::fs::read(&path).ok();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            let Ok(content) = std::fs::read(&path) else { continue };
            if last.as_ref() == Some(&content) {
                continue;
            }
            last = Some(content);
            let state = reload(&manager, &running, &path).await;
            manager.set_file_state(state);
        }
    });
}

/// Reads, checks and applies the file once; returns what became of it.
async fn reload(manager: &Manager, running: &LoadedConfig, path: &std::path::Path) -> FileState {
    let mut state = FileState { path: running.file.clone(), checked_at: Some(now_ms()), ..FileState::default() };
    let (catalog, runtime, path) = (manager.catalog(), manager.context().runtime.clone(), path.to_path_buf());
    let checked = tokio::task::spawn_blocking(move || -> Result<(LoadedConfig, Vec<ConnectorPlan>), Vec<String>> {
        let errors = |errors: config::ConfigErrors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>();
        let loaded = config::load(&path).map_err(errors)?;
        let plans = plan_connectors(&loaded, &catalog, &runtime).map_err(errors)?;
        Ok((loaded, plans))
    })
    .await
    .unwrap_or_else(|error| Err(vec![format!("the file could not be checked: {error}")]));
    let (edited, plans) = match checked {
        Ok(checked) => checked,
        Err(errors) => {
            for error in &errors {
                tracing::error!(error = %error, "The edited configuration file is invalid; nothing was changed.");
            }
            state.errors = errors;
            return state;
        }
    };
    state.restart_required = host_level_changes(&running.config, &edited.config);
    if !state.restart_required.is_empty() {
        tracing::warn!(keys = ?state.restart_required, "The edited configuration changes host-level keys; they take effect at the next start.");
    }
    match manager.apply_file(plans).await {
        Ok(diff) => {
            tracing::info!(added = ?diff.added, changed = ?diff.changed, removed = ?diff.removed, "Applied the edited configuration file.")
        }
        Err(error) => {
            tracing::error!(%error, "The edited configuration file could not be applied; nothing was changed.");
            state.errors = vec![format!("{}: {error}", running.file)];
        }
    }
    state
}
