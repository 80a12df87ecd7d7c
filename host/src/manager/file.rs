//! `connectors.yaml` while the host runs: the file is read again when it changes. A
//! valid edit is applied as a diff (added, removed and changed file connectors; the
//! unchanged ones keep running untouched); an invalid one changes nothing and is
//! reported, with its file:line:column message, in the log and in `GET /health`.
//! Host-level keys (listen address, data_dir, transport, plugin limits) take effect
//! only at the next start, and the report says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Declared, ManagedConnector, Manager, ManagerError, Origin, TargetState};
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
    /// Whether it is read again (the desired state could not be written).
    #[serde(skip)]
    #[schemars(skip)]
    pub retry: bool,
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
        self.sync_file(plans, &HashMap::new()).await
    }

    /// Publishes the file's connectors to the desired state's log: those new or changed
    /// in the file, and the removal of those this host declared that the file no longer
    /// has (another host's file may still declare them). `legacy_targets` are the
    /// target states of file connectors stored without their configuration.
    pub(super) async fn sync_file(
        &self,
        plans: Vec<ConnectorPlan>,
        legacy_targets: &HashMap<String, TargetState>,
    ) -> Result<FileDiff, ManagerError> {
        let _changes = self.changes.lock().await;
        let current = self.connectors();
        if let Some(taken) =
            plans.iter().find(|plan| current.get(&plan.config.name).is_some_and(|connector| connector.origin == Origin::Api))
        {
            let name = &taken.config.name;
            return Err(ManagerError::Conflict(format!(
                "connector \"{name}\" is declared in the configuration file and was also created through the REST API; \
                 rename it in the file, or delete the API's connector (DELETE /connectors/{name})"
            )));
        }
        // Known before anything is written: a removal this host writes is not taken for
        // another host's, and a tombstone of a connector still declared is answered.
        let declared: BTreeMap<String, Declared> = plans.iter().map(|plan| (plan.config.name.clone(), Declared::of(plan))).collect();
        let before = std::mem::replace(&mut *self.file_connectors.write().expect("file connectors lock"), declared);
        let published = self.publish_file(plans, &current, &before, legacy_targets).await;
        if published.is_err() {
            // Tried again with the next attempt: what this host runs is still the old file's.
            *self.file_connectors.write().expect("file connectors lock") = before;
        }
        published
    }

    /// [`Manager::sync_file`]'s writes, given what the desired state held (`current`)
    /// and what the file declared `before`.
    async fn publish_file(
        &self,
        plans: Vec<ConnectorPlan>,
        current: &BTreeMap<String, Arc<ManagedConnector>>,
        before: &BTreeMap<String, Declared>,
        legacy_targets: &HashMap<String, TargetState>,
    ) -> Result<FileDiff, ManagerError> {
        let mut diff = FileDiff::default();
        for (name, connector) in current {
            let declared_here = connector.declared_by.as_ref().is_none_or(|host| *host == self.host_id);
            if connector.origin == Origin::File && declared_here && !plans.iter().any(|plan| &plan.config.name == name) {
                self.remove(name).await?;
                diff.removed.push(name.clone());
            }
        }
        for plan in plans {
            let name = plan.config.name.clone();
            let new = match current.get(&name) {
                Some(existing) if existing.published == plan.config_without_secrets() => continue,
                Some(existing) => {
                    if let Some(other) = existing.declared_by.as_ref().filter(|host| **host != self.host_id) {
                        tracing::warn!(
                            connector = %name, host = %other,
                            "The connector is also declared by another host's file, with another configuration; this host's, the latest, now holds."
                        );
                    }
                    diff.changed.push(name.clone());
                    false
                }
                None => {
                    diff.added.push(name.clone());
                    true
                }
            };
            let target = current.get(&name).map(|existing| existing.target);
            let target = target.or_else(|| legacy_targets.get(&name).copied()).unwrap_or(TargetState::Running);
            let stored = plan.config_without_secrets();
            self.checked_plans.write().expect("checked plans lock").insert(name.clone(), Arc::new(plan));
            let published = self.publish(Origin::File, stored, target, new, None).await;
            self.checked_plans.write().expect("checked plans lock").remove(&name);
            published?;
        }
        // Connectors that this file now declares, or no longer does, while another
        // host's file keeps them as they are: they start or stop here.
        let now = self.file_connectors.read().expect("file connectors lock").keys().cloned().collect::<BTreeSet<_>>();
        let published: BTreeSet<&String> = diff.added.iter().chain(&diff.changed).chain(&diff.removed).collect();
        for name in now.symmetric_difference(&before.keys().cloned().collect()).filter(|name| !published.contains(name)) {
            self.reapply(name).await;
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
            if state.retry {
                // The cluster could not take it: read again on the next turn.
                last = None;
            }
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
            let again = matches!(error, ManagerError::Store(_) | ManagerError::Transport(_));
            let then = if again { "it is tried again in a moment" } else { "nothing was changed" };
            tracing::error!(%error, "The edited configuration file could not be applied; {then}.");
            state.errors = vec![format!("{}: {error}", running.file)];
            state.retry = again;
        }
    }
    state
}
