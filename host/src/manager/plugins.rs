//! Plugins while running: a component uploaded through the API is validated (it must
//! compile, export one of our worlds and describe itself), stored under
//! `data_dir/plugins` by name and version, and usable at once; several versions of a
//! plugin live side by side, and one no connector uses can be removed.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::{Manager, ManagerError};
use crate::runtime::{LoadedPlugin, PluginOrigin, load_component};

/// What an upload did.
#[derive(Debug)]
pub enum Upload {
    /// A new plugin version.
    Added(Arc<LoadedPlugin>),
    /// The same component was already there.
    Unchanged(Arc<LoadedPlugin>),
}

impl Manager {
    /// Validates, stores and loads an uploaded component.
    pub async fn add_plugin(&self, bytes: bytes::Bytes) -> Result<Upload, ManagerError> {
        let runtime = self.context.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || {
            load_component(&runtime, &bytes, Path::new("(upload)"), PluginOrigin::Uploaded).map(|plugin| (plugin, bytes))
        })
        .await
        .map_err(|error| ManagerError::PluginRefused(format!("the component could not be checked: {error}")))?;
        let (plugin, bytes) = plugin.map_err(|reason| ManagerError::PluginRefused(format!("the component was refused: {reason}")))?;
        // Serialised with connector changes, so that a delete never races a use.
        let _running = self.running.lock().await;
        let (name, version) = (plugin.description.name.clone(), plugin.description.version.clone());
        if let Some(existing) = self.catalog().get(&name, &version) {
            if existing.digest == plugin.digest {
                return Ok(Upload::Unchanged(existing.clone()));
            }
            return Err(ManagerError::Conflict(format!(
                "plugin {name}@{version} is already loaded with different content (sha256 {}); give the new build another version",
                existing.digest
            )));
        }
        let path = stored_component_path(&self.uploads_dir, &name, &version)?;
        let (directory, target) = (self.uploads_dir.clone(), path.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&directory)?;
            let partial = target.with_extension("wasm.partial");
            std::fs::write(&partial, &bytes)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, &target)
        })
        .await
        .map_err(|error| ManagerError::Conflict(error.to_string()))?
        .map_err(|error| ManagerError::PluginStorage(format!("cannot store the plugin in {}: {error}", self.uploads_dir.display())))?;
        let plugin = Arc::new(plugin.stored_at(path));
        self.catalog.write().expect("catalog lock").insert(plugin.clone()).map_err(ManagerError::Conflict)?;
        tracing::info!(plugin = %name, version = %version, digest = %plugin.digest, "Added an uploaded plugin.");
        Ok(Upload::Added(plugin))
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

    /// Removes an uploaded plugin version no connector uses.
    pub async fn delete_plugin(&self, name: &str, version: &str) -> Result<(), ManagerError> {
        let _running = self.running.lock().await;
        self.remove_uploaded(name, version)
    }

    /// Removes every uploaded version of `name`, or none: refused before anything is
    /// removed when one is in use, or when only `plugins.dir` has the plugin.
    pub async fn delete_uploaded_versions(&self, name: &str) -> Result<(), ManagerError> {
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
        for plugin in uploaded {
            self.remove_uploaded(name, &plugin.description.version)?;
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
