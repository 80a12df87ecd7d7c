//! Plugins while running: a component uploaded through the API is validated (it must
//! compile, export one of our worlds and describe itself), stored under
//! `data_dir/plugins` by name and version, and usable at once; several versions of a
//! plugin live side by side, and one no connector uses can be removed.
//!
//! In a cluster, plugins follow (see [`crate::cluster::plugins`]): an upload is shared
//! with every host through the plugins topic and a `plugin-` record of the log, and
//! each host loads what another host took, or removes what another host removed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Manager, ManagerError};
use crate::cluster::plugins::{PLUGIN_KEY, PluginShare, SharedPlugin, parse_reference};
use crate::runtime::{LoadedPlugin, PluginOrigin, load_component};

/// How long a request that names a plugin another host took waits for this host to
/// load it.
const PLUGIN_WAIT: Duration = Duration::from_secs(120);

/// What an upload did.
#[derive(Debug)]
pub enum Upload {
    /// A new plugin version.
    Added(Arc<LoadedPlugin>),
    /// The same component was already there.
    Unchanged(Arc<LoadedPlugin>),
}

/// The first pause before a failed fetch is tried again; it doubles up to
/// [`FETCH_RETRY_MAX`] while the log names the same component.
const FETCH_RETRY: Duration = Duration::from_secs(5);
/// The longest pause between two tries of a fetch.
const FETCH_RETRY_MAX: Duration = Duration::from_secs(300);

/// A fetch in progress.
#[derive(Debug, Clone)]
struct Fetch {
    /// The digest it fetches.
    digest: String,
    /// Whether it was tried once already (and failed): requests wait only for a try
    /// that has not been made yet.
    tried: bool,
    /// Wakes it from its pause: the record came again (a repair), or changed.
    wake: Arc<Notify>,
    /// Counts the times the record came again: a try begun before the last of them
    /// does not count as tried.
    asked: u64,
}

/// Why a fetched plugin was not loaded.
struct FetchFailure {
    reason: String,
    /// Trying again cannot help: the component itself was refused.
    lasting: bool,
}

impl From<String> for FetchFailure {
    fn from(reason: String) -> Self {
        FetchFailure { reason, lasting: false }
    }
}

/// The plugins of the hosts of a cluster, as the log says.
pub(super) struct SharedPlugins {
    /// The cluster's plugins topic; none for a host alone.
    share: Option<PluginShare>,
    /// The log's plugin records, by `name@version`.
    records: RwLock<BTreeMap<String, SharedPlugin>>,
    /// The plugins being fetched, by `name@version`.
    fetching: std::sync::Mutex<BTreeMap<String, Fetch>>,
    /// Told each time a fetch was tried.
    fetched: watch::Sender<u64>,
}

impl SharedPlugins {
    pub(super) fn new(share: Option<PluginShare>) -> Self {
        SharedPlugins { share, records: RwLock::default(), fetching: std::sync::Mutex::default(), fetched: watch::Sender::new(0) }
    }

    /// The log's record of `reference`.
    /// The versions of plugin `name` the log names as published in the cluster.
    pub(super) fn published_versions(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}@");
        let records = self.records.read().expect("shared plugins lock");
        records
            .iter()
            .filter(|(_, record)| record.digest().is_some())
            .filter_map(|(reference, _)| reference.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    fn record(&self, reference: &str) -> Option<SharedPlugin> {
        self.records.read().expect("shared plugins lock").get(reference).cloned()
    }

    /// How often the record of the fetch `wake` belongs to came so far; none once
    /// another fetch took its place.
    fn asked(&self, reference: &str, wake: &Arc<Notify>) -> Option<u64> {
        let fetching = self.fetching.lock().expect("fetching lock");
        fetching.get(reference).filter(|fetch| Arc::ptr_eq(&fetch.wake, wake)).map(|fetch| fetch.asked)
    }

    /// Marks the fetch `wake` belongs to tried by a try begun when its record had
    /// come `asked` times (`done`: over), and tells whoever waits for it; another
    /// fetch of the same reference is left alone.
    fn tried(&self, reference: &str, wake: &Arc<Notify>, asked: u64, done: bool) {
        {
            let mut fetching = self.fetching.lock().expect("fetching lock");
            if let Some(fetch) = fetching.get_mut(reference).filter(|fetch| Arc::ptr_eq(&fetch.wake, wake)) {
                if done {
                    fetching.remove(reference);
                } else if fetch.asked == asked {
                    fetch.tried = true;
                }
            }
        }
        self.fetched.send_modify(|count| *count += 1);
    }

    /// Wakes the fetch of `reference`, if one waits: its record changed or went.
    fn wake(&self, reference: &str) {
        if let Some(fetch) = self.fetching.lock().expect("fetching lock").get(reference) {
            fetch.wake.notify_one();
        }
    }
}

impl Manager {
    /// Validates, stores and loads an uploaded component; in a cluster, shares it with
    /// every host before it answers.
    pub async fn add_plugin(&self, bytes: bytes::Bytes) -> Result<Upload, ManagerError> {
        let runtime = self.context.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || {
            load_component(&runtime, &bytes, Path::new("(upload)"), PluginOrigin::Uploaded).map(|plugin| (plugin, bytes))
        })
        .await
        .map_err(|error| ManagerError::PluginRefused(format!("the component could not be checked: {error}")))?;
        let (plugin, bytes) = plugin.map_err(|reason| ManagerError::PluginRefused(format!("the component was refused: {reason}")))?;
        let (name, version) = (plugin.description.name.clone(), plugin.description.version.clone());
        let path = stored_component_path(&self.uploads_dir, &name, &version)?;
        // One plugin change of this host at a time, from its check to the cluster's
        // record: an upload and a delete never interleave.
        let _changes = self.changes.lock().await;
        if let Some(existing) = self.loaded_copy(&plugin)? {
            // Shared again: a host that lost it, or bytes the topic lost, are repaired.
            self.share_upload(&existing, &bytes).await?;
            return Ok(Upload::Unchanged(existing));
        }
        let reference = format!("{name}@{version}");
        self.refuse_other_content(&reference, &plugin.digest)?;
        let record = match &self.shared_plugins.share {
            Some(share) => Some(share.publish(&name, &version, &bytes).await.map_err(ManagerError::PluginStorage)?),
            None => None,
        };
        // Serialised with connector changes, so that a delete never races a use.
        let running = self.running.lock().await;
        if let Some(existing) = self.loaded_copy(&plugin)? {
            // Fetched meanwhile: another host took the same component.
            return Ok(Upload::Unchanged(existing));
        }
        self.store_component(&path, &bytes).await?;
        let plugin = Arc::new(plugin.stored_at(path));
        self.catalog.write().expect("catalog lock").insert(plugin.clone()).map_err(ManagerError::Conflict)?;
        drop(running);
        tracing::info!(plugin = %name, version = %version, digest = %plugin.digest, "Added an uploaded plugin.");
        if let Some(record) = record {
            self.tell_cluster(&reference, &record).await?;
        }
        Ok(Upload::Added(plugin))
    }

    /// The loaded `name@version` of `plugin` when it has the same content; refused when
    /// it has other content.
    fn loaded_copy(&self, plugin: &LoadedPlugin) -> Result<Option<Arc<LoadedPlugin>>, ManagerError> {
        let (name, version) = (&plugin.description.name, &plugin.description.version);
        match self.catalog().get(name, version) {
            Some(existing) if existing.digest == plugin.digest => Ok(Some(existing.clone())),
            Some(existing) => Err(ManagerError::Conflict(format!(
                "plugin {name}@{version} is already loaded with different content (sha256 {}); give the new build another version",
                existing.digest
            ))),
            None => Ok(None),
        }
    }

    /// Refused when the cluster holds other content under `reference`.
    fn refuse_other_content(&self, reference: &str, digest: &str) -> Result<(), ManagerError> {
        match self.shared_plugins.record(reference).as_ref().and_then(SharedPlugin::digest) {
            Some(shared) if shared != digest => Err(ManagerError::Conflict(format!(
                "plugin {reference} was uploaded to a host of the cluster with different content (sha256 {shared}); give the new build another version"
            ))),
            _ => Ok(()),
        }
    }

    /// Writes a component to `path` in the plugin store, whole or not at all.
    async fn store_component(&self, path: &Path, bytes: &[u8]) -> Result<(), ManagerError> {
        let (directory, target, bytes) = (self.uploads_dir.clone(), path.to_owned(), bytes.to_vec());
        tokio::task::spawn_blocking(move || write_component(&directory, &target, &bytes))
            .await
            .map_err(|error| ManagerError::PluginStorage(error.to_string()))?
            .map_err(|error| ManagerError::PluginStorage(format!("cannot store the plugin in {}: {error}", self.uploads_dir.display())))
    }

    /// Shares an upload this host has with the cluster: its bytes written to the plugins
    /// topic again and its record to the log, so that hosts that lack it fetch it (an
    /// earlier share that failed, an upload from before the cluster, chunks the topic
    /// lost). Refused when the cluster holds other content under its version.
    async fn share_upload(&self, plugin: &LoadedPlugin, bytes: &[u8]) -> Result<(), ManagerError> {
        let Some(share) = &self.shared_plugins.share else { return Ok(()) };
        if plugin.origin != PluginOrigin::Uploaded {
            return Ok(());
        }
        let reference = format!("{}@{}", plugin.description.name, plugin.description.version);
        self.refuse_other_content(&reference, &plugin.digest)?;
        let record =
            share.publish(&plugin.description.name, &plugin.description.version, bytes).await.map_err(ManagerError::PluginStorage)?;
        self.tell_cluster(&reference, &record).await
    }

    /// Writes the record of `reference` to the log, once this host applied it.
    async fn tell_cluster(&self, reference: &str, record: &SharedPlugin) -> Result<(), ManagerError> {
        let document = serde_json::to_string(record).expect("a plugin record serialises");
        self.log.write(&format!("{PLUGIN_KEY}{reference}"), Some(&document)).await.map_err(|error| {
            ManagerError::PluginStorage(format!(
                "plugin {reference} was changed on this host, but sharing the change with the other hosts of the cluster failed ({error}); send the request again"
            ))
        })
    }

    /// In a cluster, tells the other hosts that `name@version` is gone, and removes its
    /// bytes from the plugins topic.
    async fn unshare(&self, name: &str, version: &str) -> Result<(), ManagerError> {
        let Some(share) = &self.shared_plugins.share else { return Ok(()) };
        let reference = format!("{name}@{version}");
        let Some(shared @ SharedPlugin::Published { .. }) = self.shared_plugins.record(&reference) else { return Ok(()) };
        self.tell_cluster(&reference, &SharedPlugin::Deleted { deleted: true }).await?;
        if let Err(error) = share.forget(name, version, &shared).await {
            tracing::warn!(plugin = name, version, %error, "A deleted plugin's bytes stay in the plugins topic.");
        }
        Ok(())
    }

    /// The connectors whose running plan uses `name@version`.
    pub fn plugin_users(&self, name: &str, version: &str) -> Vec<String> {
        self.connectors()
            .into_iter()
            .filter(|(_, connector)| {
                connector.plan.as_ref().is_ok_and(|plan| plan.plugin.description.name == name && plan.plugin.description.version == version)
            })
            .map(|(connector, _)| connector)
            .collect()
    }

    /// Removes an uploaded plugin version no connector uses, from every host of a
    /// cluster. A version this host could not load but the cluster has is removed
    /// from the cluster.
    pub async fn delete_plugin(&self, name: &str, version: &str) -> Result<(), ManagerError> {
        let _changes = self.changes.lock().await;
        let running = self.running.lock().await;
        let shared = self.shared_plugins.record(&format!("{name}@{version}")).and_then(|record| record.digest().map(str::to_owned));
        if self.catalog().get(name, version).is_some() || shared.is_none() {
            self.remove_uploaded(name, version)?;
        }
        drop(running);
        self.unshare(name, version).await
    }

    /// Removes every uploaded version of `name`, or none: refused before anything is
    /// removed when one is in use, or when only `plugins.dir` has the plugin.
    pub async fn delete_uploaded_versions(&self, name: &str) -> Result<(), ManagerError> {
        let _changes = self.changes.lock().await;
        let _running = self.running.lock().await;
        let versions: Vec<Arc<LoadedPlugin>> =
            self.catalog().plugins().into_iter().filter(|plugin| plugin.description.name == name).collect();
        if versions.is_empty() {
            return Err(ManagerError::PluginNotFound(name.to_owned()));
        }
        let uploaded: Vec<&Arc<LoadedPlugin>> = versions.iter().filter(|plugin| plugin.origin == PluginOrigin::Uploaded).collect();
        if versions.iter().all(|plugin| plugin.origin == PluginOrigin::Builtin) {
            return Err(ManagerError::Conflict(format!("{name} is a processor built into the host: it cannot be removed")));
        }
        if uploaded.is_empty() {
            return Err(ManagerError::Conflict(format!(
                "plugin {name} comes only from plugins.dir: remove its file and restart the host to remove it"
            )));
        }
        for plugin in &uploaded {
            let users = self.plugin_users(name, &plugin.description.version);
            if !users.is_empty() {
                return Err(ManagerError::Conflict(format!(
                    "plugin {name}@{} is used by connector(s) {}: move them to another version or delete them first; nothing was removed",
                    plugin.description.version,
                    users.join(", ")
                )));
            }
        }
        for plugin in &uploaded {
            self.remove_uploaded(name, &plugin.description.version)?;
        }
        drop(_running);
        for plugin in uploaded {
            self.unshare(name, &plugin.description.version).await?;
        }
        Ok(())
    }

    /// Removes an uploaded version no connector uses; the caller holds `running`.
    fn remove_uploaded(&self, name: &str, version: &str) -> Result<(), ManagerError> {
        let plugin = self.catalog().get(name, version).cloned().ok_or_else(|| ManagerError::PluginNotFound(format!("{name}@{version}")))?;
        if plugin.origin == PluginOrigin::Builtin {
            return Err(ManagerError::Conflict(format!("{name}@{version} is a processor built into the host: it cannot be removed")));
        }
        if plugin.origin == PluginOrigin::Directory {
            return Err(ManagerError::Conflict(format!(
                "plugin {name}@{version} comes from plugins.dir ({}): remove the file and restart the host to remove it",
                plugin.path.display()
            )));
        }
        let users = self.plugin_users(name, version);
        if !users.is_empty() {
            return Err(ManagerError::Conflict(format!(
                "plugin {name}@{version} is used by connector(s) {}: move them to another version or delete them first",
                users.join(", ")
            )));
        }
        if plugin.path.parent() != Some(self.uploads_dir.as_path()) {
            return Err(ManagerError::PluginStorage(format!(
                "plugin {name}@{version} is not stored in the plugin store {}; it was not removed",
                self.uploads_dir.display()
            )));
        }
        std::fs::remove_file(&plugin.path)
            .map_err(|error| ManagerError::PluginStorage(format!("cannot remove {}: {error}", plugin.path.display())))?;
        self.catalog.write().expect("catalog lock").remove(name, version);
        tracing::info!(plugin = name, version, "Removed an uploaded plugin.");
        Ok(())
    }
}

impl Manager {
    /// Takes the plugin records of the log as it was at the start (whose missing
    /// components [`fetch_before_start`] fetched): removes the uploads other hosts
    /// removed, and returns what is still missing or held with other content, to be
    /// fetched once the connectors are applied; unless a stored connector uses this
    /// host's copy (`used`: the `name@version` of each plugin they use). Before any
    /// connector is planned.
    pub(super) async fn take_shared_plugins(
        self: &Arc<Self>,
        state: &BTreeMap<String, String>,
        used: &BTreeSet<String>,
    ) -> Vec<(String, String, SharedPlugin)> {
        let mut fetches = Vec::new();
        let Some(share) = &self.shared_plugins.share else { return fetches };
        for (key, document) in state.iter().filter(|(key, _)| key.starts_with(PLUGIN_KEY)) {
            let reference = &key[PLUGIN_KEY.len()..];
            let Some(record) = self.read_plugin_record(reference, document, share.max_bytes()) else { continue };
            let (name, version) = parse_reference(reference).expect("a checked reference");
            let kept = self.catalog().get(name, version).is_some_and(|plugin| plugin.origin == PluginOrigin::Uploaded);
            let in_use = kept && used.contains(reference);
            match &record {
                SharedPlugin::Deleted { .. } if in_use => tracing::warn!(
                    plugin = name,
                    version,
                    "Another host of the cluster removed this plugin while this host was down, but a connector uses it: this host keeps it."
                ),
                SharedPlugin::Deleted { .. } => self.remove_deleted(name, version),
                SharedPlugin::Published { digest, .. } if self.lacks(name, version, digest) && in_use => tracing::warn!(
                    plugin = name,
                    version,
                    "The cluster holds other content under this plugin version than this host's upload, which a connector uses: this host keeps its own."
                ),
                SharedPlugin::Published { digest, .. } if self.lacks(name, version, digest) => {
                    fetches.push((name.to_owned(), version.to_owned(), record.clone()))
                }
                SharedPlugin::Published { .. } => {}
            }
        }
        fetches
    }

    /// Shares the uploads this host kept that the log does not name (uploaded before
    /// the host joined a cluster, or while the cluster could not be told), in the
    /// background.
    pub(super) fn share_unshared_uploads(self: Arc<Self>) {
        if self.shared_plugins.share.is_none() {
            return;
        }
        tokio::spawn(async move {
            for plugin in self.catalog().plugins().into_iter().filter(|plugin| plugin.origin == PluginOrigin::Uploaded) {
                let reference = format!("{}@{}", plugin.description.name, plugin.description.version);
                let _changes = self.changes.lock().await;
                if self.shared_plugins.record(&reference).is_some()
                    || self.catalog().get(&plugin.description.name, &plugin.description.version).is_none()
                {
                    continue;
                }
                let shared = match tokio::fs::read(&plugin.path).await {
                    Ok(bytes) => self.share_upload(&plugin, &bytes).await,
                    Err(error) => Err(ManagerError::PluginStorage(format!("cannot read {}: {error}", plugin.path.display()))),
                };
                match shared {
                    Ok(()) => {
                        tracing::info!(plugin = %reference, "Shared a plugin uploaded to this host with the other hosts of the cluster.")
                    }
                    Err(error) => {
                        tracing::warn!(plugin = %reference, %error, "A plugin uploaded to this host could not be shared with the other hosts of the cluster; upload it again.")
                    }
                }
            }
        });
    }

    /// Applies a plugin record of the log: another host took or removed an upload.
    pub(super) async fn on_plugin(self: &Arc<Self>, reference: &str, document: Option<&str>) {
        let Some(share) = &self.shared_plugins.share else { return };
        let Some(document) = document else {
            self.shared_plugins.records.write().expect("shared plugins lock").remove(reference);
            self.shared_plugins.wake(reference);
            return;
        };
        let Some(record) = self.read_plugin_record(reference, document, share.max_bytes()) else { return };
        let (name, version) = parse_reference(reference).expect("a checked reference");
        match &record {
            SharedPlugin::Deleted { .. } => {
                self.shared_plugins.wake(reference);
                let _running = self.running.lock().await;
                self.remove_deleted(name, version);
            }
            SharedPlugin::Published { digest, .. } if self.lacks(name, version, digest) => self.start_fetch(name, version, record.clone()),
            SharedPlugin::Published { .. } => {}
        }
    }

    /// Fetches `name@version` as `record` says in the background, unless a fetch of the
    /// same component is in progress.
    /// A fetch of the same component already in progress is woken to try again at
    /// once (the record came again: a repair); one of other content is woken to end.
    pub(super) fn start_fetch(self: &Arc<Self>, name: &str, version: &str, record: SharedPlugin) {
        let digest = record.digest().expect("a published record").to_owned();
        let reference = format!("{name}@{version}");
        let wake = {
            let mut fetching = self.shared_plugins.fetching.lock().expect("fetching lock");
            if let Some(fetch) = fetching.get_mut(&reference) {
                fetch.wake.notify_one();
                if fetch.digest == digest {
                    fetch.tried = false;
                    fetch.asked += 1;
                    return;
                }
            }
            let wake = Arc::new(Notify::new());
            fetching.insert(reference, Fetch { digest, tried: false, wake: wake.clone(), asked: 0 });
            wake
        };
        let (manager, name, version) = (self.clone(), name.to_owned(), version.to_owned());
        tokio::spawn(async move { manager.fetch_in_background(&name, &version, &record, wake).await });
    }

    /// The checked plugin record of `reference`, kept as the log's; none (said in the
    /// log) when it cannot be used.
    fn read_plugin_record(&self, reference: &str, document: &str, max_bytes: u64) -> Option<SharedPlugin> {
        if parse_reference(reference).is_none() {
            tracing::warn!(key = %crate::names::shown(reference), "Skipped a plugin record whose name or version is not one.");
            return None;
        }
        match SharedPlugin::parse(document, max_bytes) {
            Ok(record) => {
                self.shared_plugins.records.write().expect("shared plugins lock").insert(reference.to_owned(), record.clone());
                Some(record)
            }
            Err(problem) => {
                tracing::error!(plugin = reference, %problem, "A plugin another host of the cluster took cannot be loaded here.");
                None
            }
        }
    }

    /// Whether this host lacks `name@version` with `digest` and should fetch it: it
    /// has no such version, or an upload of other content (which the cluster's
    /// replaces). A `plugins.dir` copy is kept: this host's files are its own.
    fn lacks(&self, name: &str, version: &str, digest: &str) -> bool {
        match self.catalog().get(name, version) {
            None => true,
            Some(loaded) if loaded.digest == digest => false,
            Some(loaded) if loaded.origin == PluginOrigin::Uploaded => true,
            Some(loaded) => {
                tracing::warn!(
                    plugin = name, version, path = %loaded.path.display(),
                    "Another host of the cluster took an upload of this plugin version with other content than this host's plugins.dir holds; this host runs its own."
                );
                false
            }
        }
    }

    /// Fetches and loads `name@version` as `record` says, trying again (less and less
    /// often) while the log names that component, then plans again the connectors
    /// that could not run without it.
    async fn fetch_in_background(self: &Arc<Self>, name: &str, version: &str, record: &SharedPlugin, wake: Arc<Notify>) {
        let reference = format!("{name}@{version}");
        let mut pause = FETCH_RETRY;
        let mut attempt = 1;
        let mut asked = 0;
        let outcome = loop {
            // The latest record of that component: a repair names where its chunks were
            // written again.
            let latest = self.shared_plugins.record(&reference).filter(|latest| latest.same_component(record));
            let Some(record) = &latest else { break Ok(false) };
            let Some(now_asked) = self.shared_plugins.asked(&reference, &wake) else { break Ok(false) };
            if self.stopping.is_cancelled() {
                break Ok(false);
            }
            asked = now_asked;
            let outcome = self.fetch_and_load(name, version, record).await.map(|()| true);
            let Err(failure) = &outcome else { break outcome };
            if attempt == 1 || failure.lasting {
                tracing::error!(plugin = name, version, reason = %failure.reason, "{FETCH_FAILED}");
            } else {
                tracing::debug!(plugin = name, version, attempt, reason = %failure.reason, "A plugin another host of the cluster took could still not be loaded here.");
            }
            if failure.lasting {
                break outcome;
            }
            self.shared_plugins.tried(&reference, &wake, asked, false);
            tokio::select! {
                _ = self.stopping.cancelled() => break outcome,
                _ = wake.notified() => pause = FETCH_RETRY,
                _ = tokio::time::sleep(pause) => pause = (pause * 2).min(FETCH_RETRY_MAX),
            }
            attempt += 1;
        };
        self.shared_plugins.tried(&reference, &wake, asked, true);
        if let Ok(true) = outcome {
            let waiting: Vec<String> = self
                .connectors()
                .into_iter()
                .filter(|(_, connector)| connector.plan.is_err() && self.can_run_here(connector))
                .map(|(connector, _)| connector)
                .collect();
            for connector in waiting {
                self.reapply(&connector).await;
            }
        }
    }

    /// Reads `name@version` from the plugins topic, checks it is the component `record`
    /// names, and loads and stores it as an upload; unless the log said otherwise of
    /// it meanwhile, or a connector uses this host's copy of other content.
    async fn fetch_and_load(&self, name: &str, version: &str, record: &SharedPlugin) -> Result<(), FetchFailure> {
        let share = self.shared_plugins.share.as_ref().expect("a cluster's plugins");
        let bytes = share.fetch(name, version, record).await?;
        let runtime = self.context.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || {
            load_component(&runtime, &bytes, Path::new("(cluster)"), PluginOrigin::Uploaded).map(|plugin| (plugin, bytes))
        })
        .await
        .map_err(|error| format!("the component could not be checked: {error}"))?;
        let lasting = |reason: String| FetchFailure { reason, lasting: true };
        let (plugin, bytes) = plugin.map_err(|reason| lasting(format!("the component was refused: {reason}")))?;
        if (plugin.description.name.as_str(), plugin.description.version.as_str()) != (name, version) {
            return Err(lasting(format!("the component describes itself as {}@{}", plugin.description.name, plugin.description.version)));
        }
        let path = stored_component_path(&self.uploads_dir, name, version).map_err(|error| lasting(error.to_string()))?;
        let _running = self.running.lock().await;
        let reference = format!("{name}@{version}");
        let current = self.shared_plugins.record(&reference).is_some_and(|latest| latest.same_component(record));
        if !current || !self.lacks(name, version, &plugin.digest) {
            return Ok(());
        }
        if let Some(replaced) = self.catalog().get(name, version).cloned() {
            let users = self.plugin_users(name, version);
            if !users.is_empty() {
                return Err(FetchFailure::from(format!(
                    "this host has an upload of it with other content (sha256 {}), which connector(s) {} use; it is replaced once they stop using it",
                    replaced.digest,
                    users.join(", ")
                )));
            }
            self.catalog.write().expect("catalog lock").remove(name, version);
        }
        self.store_component(&path, &bytes).await.map_err(|error| FetchFailure::from(error.to_string()))?;
        let plugin = Arc::new(plugin.stored_at(path));
        self.catalog.write().expect("catalog lock").insert(plugin.clone()).map_err(FetchFailure::from)?;
        tracing::info!(plugin = name, version, digest = %plugin.digest, "Loaded a plugin another host of the cluster took.");
        Ok(())
    }

    /// Removes this host's upload of `name@version`, which another host removed from
    /// the cluster; the caller holds `running`.
    fn remove_deleted(&self, name: &str, version: &str) {
        let uploaded = self.catalog().get(name, version).is_some_and(|plugin| plugin.origin == PluginOrigin::Uploaded);
        if !uploaded {
            return;
        }
        match self.remove_uploaded(name, version) {
            Ok(()) => tracing::info!(plugin = name, version, "Removed a plugin another host of the cluster removed."),
            Err(error) => {
                tracing::warn!(plugin = name, version, %error, "Another host of the cluster removed this plugin; this host keeps it.")
            }
        }
    }

    /// Waits, in a cluster, until this host knows what the log held when asked (read
    /// to its end), then until its first try of each fetch of a plugin of the name
    /// `reference` gives is over (up to [`PLUGIN_WAIT`]): a request that names a
    /// plugin another host took just before finds it here.
    pub(super) async fn plugin_arrived(&self, reference: &str) {
        // An exact version already here needs no look at the log.
        if self.shared_plugins.share.is_none() || (reference.contains('@') && self.catalog().find(reference).is_ok()) {
            return;
        }
        let mut fetched = self.shared_plugins.fetched.subscribe();
        if let Err(error) = self.log.caught_up().await {
            tracing::debug!(%error, "The log could not be read to its end before a plugin was looked up.");
        }
        let name = reference.split('@').next().unwrap_or_default();
        let fetching = || {
            let fetching = self.shared_plugins.fetching.lock().expect("fetching lock");
            fetching.iter().any(|(fetched, fetch)| !fetch.tried && fetched.split('@').next() == Some(name))
        };
        let deadline = tokio::time::Instant::now() + PLUGIN_WAIT;
        while fetching() {
            if !matches!(tokio::time::timeout_at(deadline, fetched.changed()).await, Ok(Ok(()))) {
                return;
            }
        }
    }
}

/// What a host that cannot load a plugin another host took says.
const FETCH_FAILED: &str = "A plugin another host of the cluster took could not be loaded here; the connectors that use it cannot run on this host until it is. This host tries again, less and less often (at most every 5 minutes); to repair a component the plugins topic lost or damaged, upload it again to a host that has it.";

/// Fetches, before anything is loaded, the components the log (`state`: its latest
/// values) names that `uploads_dir` lacks, and stores them there: a host that joins
/// later, or lost its `data_dir`, loads the cluster's plugins with its own and plans
/// its file's connectors with them. What cannot be fetched now is said, and fetched
/// in the background once the host runs.
pub async fn fetch_before_start(share: &PluginShare, state: &BTreeMap<String, String>, uploads_dir: &Path) {
    for (key, document) in state.iter().filter(|(key, _)| key.starts_with(PLUGIN_KEY)) {
        let reference = &key[PLUGIN_KEY.len()..];
        let (Some((name, version)), Ok(record)) = (parse_reference(reference), SharedPlugin::parse(document, share.max_bytes())) else {
            continue;
        };
        let Some(digest) = record.digest() else { continue };
        let Ok(path) = stored_component_path(uploads_dir, name, version) else { continue };
        if path.exists() {
            // Held already (with this content or another, which the host sorts out
            // once it knows which connectors use it).
            continue;
        }
        let fetched = match share.fetch(name, version, &record).await {
            Ok(bytes) => {
                let (directory, target) = (uploads_dir.to_owned(), path.clone());
                tokio::task::spawn_blocking(move || write_component(&directory, &target, &bytes))
                    .await
                    .map_err(|error| error.to_string())
                    .and_then(|written| written.map_err(|error| format!("cannot store it in {}: {error}", uploads_dir.display())))
            }
            Err(reason) => Err(reason),
        };
        match fetched {
            Ok(()) => tracing::info!(plugin = name, version, digest, "Fetched a plugin another host of the cluster took."),
            Err(reason) => {
                tracing::warn!(plugin = name, version, %reason, "A plugin another host of the cluster took could not be fetched before the start; the host tries again once it runs.")
            }
        }
    }
}

/// Writes `bytes` to `target` in `directory`, whole or not at all.
fn write_component(directory: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    let partial = target.with_extension("wasm.partial");
    std::fs::write(&partial, bytes)?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, target)
}

/// Where an uploaded `name@version` is kept: built only from a checked name and
/// version, and verified to be a file directly inside the plugin store.
fn stored_component_path(uploads_dir: &Path, name: &str, version: &str) -> Result<PathBuf, ManagerError> {
    crate::names::check_name(name).map_err(|problem| ManagerError::PluginRefused(format!("the plugin name {problem}")))?;
    crate::names::check_version(version).map_err(|problem| ManagerError::PluginRefused(format!("the plugin version {problem}")))?;
    let file_name = format!("{name}@{version}.wasm");
    let mut components = Path::new(&file_name).components();
    let single = matches!((components.next(), components.next()), (Some(Component::Normal(_)), None));
    if !single {
        return Err(ManagerError::PluginRefused(format!("the plugin {name}@{version} cannot be stored under that name")));
    }
    Ok(uploads_dir.join(file_name))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::stored_component_path;

    #[test]
    fn stored_paths_stay_inside_the_plugin_store() {
        let store = Path::new("/data/plugins");
        assert_eq!(stored_component_path(store, "counter-source", "1.0.0").unwrap(), store.join("counter-source@1.0.0.wasm"));
        for (name, version) in
            [("../../x", "1.0.0"), ("/tmp/x", "1.0.0"), ("a/b", "1.0.0"), ("x", "../1.0.0"), ("x", "1.0.0/.."), ("..", "1.0.0")]
        {
            assert!(stored_component_path(store, name, version).is_err(), "{name}@{version} was given a path");
        }
    }
}
