//! The plugins found in the plugin directory: each compiled once, described once, and
//! looked up by `name` or `name@version`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use wasmtime::component::{Component, InstancePre};

use super::bindings::{described, grant_declarations};
use super::task::{TaskIdentity, TaskState};
use super::{OptionType, PluginDescription, PluginFailure, PluginKind, Runtime};
use crate::names::{compare_versions, shown};

/// The `plugin` export of a component built against WIT 0.1.0, before grants existed.
const LEGACY_PLUGIN_EXPORT: &str = "wasm-connect:connector/plugin@0.1.0";

/// Where a plugin came from, which decides who may remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginOrigin {
    /// A file in `plugins.dir`: remove the file to remove the plugin.
    Directory,
    /// Uploaded through `POST /plugins`, kept under `data_dir/plugins`.
    Uploaded,
    /// Part of the host (the built-in processors): it cannot be removed.
    Builtin,
}

/// A plugin ready to instantiate.
pub struct LoadedPlugin {
    /// What the plugin says about itself.
    pub description: PluginDescription,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Who put it there.
    pub origin: PluginOrigin,
    /// SHA-256 of the component bytes.
    pub digest: String,
    /// None for a processor built into the host.
    component: Option<Component>,
    instance_pre: OnceLock<InstancePre<TaskState>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("LoadedPlugin").field("description", &self.description).field("path", &self.path).finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// The same plugin, known to live at `path` (where an upload was stored).
    pub fn stored_at(self, path: PathBuf) -> Self {
        Self { path, ..self }
    }

    /// The component linked against the host, resolved once and reused by every task.
    pub fn instance_pre(&self, runtime: &Runtime) -> Result<InstancePre<TaskState>, PluginFailure> {
        if let Some(pre) = self.instance_pre.get() {
            return Ok(pre.clone());
        }
        let Some(component) = &self.component else {
            return Err(PluginFailure::Fatal(format!("{} is built into the host, not a component", self.description.name)));
        };
        let pre = runtime
            .linker
            .instantiate_pre(component)
            .map_err(|error| PluginFailure::Fatal(format!("the plugin needs imports this host does not offer: {error:#}")))?;
        Ok(self.instance_pre.get_or_init(|| pre).clone())
    }
}

/// A component in the plugin directory that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLoadError {
    /// The file.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: String,
}

/// Every usable plugin.
#[derive(Debug, Default, Clone)]
pub struct PluginCatalog {
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginCatalog {
    /// A catalog of the processors built into the host only.
    pub fn with_builtins() -> Self {
        let plugins = crate::processing::BUILTIN_PROCESSORS
            .iter()
            .filter_map(|name| crate::processing::processor_description(name))
            .map(|description| {
                Arc::new(LoadedPlugin {
                    path: PathBuf::from(format!("(built in)/{}", description.name)),
                    description,
                    origin: PluginOrigin::Builtin,
                    digest: String::new(),
                    component: None,
                    instance_pre: OnceLock::new(),
                })
            })
            .collect();
        Self { plugins }
    }

    /// Loads every `*.wasm` in `dir`. A broken component does not stop the others: it
    /// is returned as a [`PluginLoadError`]. Blocking: compiles components.
    pub fn load_dir(runtime: &Runtime, dir: &Path) -> std::io::Result<(Self, Vec<PluginLoadError>)> {
        let mut catalog = Self::with_builtins();
        let errors = catalog.add_dir(runtime, dir, PluginOrigin::Directory)?;
        Ok((catalog, errors))
    }

    /// Adds every `*.wasm` in `dir`, as plugins of `origin`; returns those refused.
    /// Blocking: compiles components.
    pub fn add_dir(&mut self, runtime: &Runtime, dir: &Path, origin: PluginOrigin) -> std::io::Result<Vec<PluginLoadError>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|extension| extension == "wasm") && path.is_file())
            .collect();
        paths.sort();
        let mut errors = Vec::new();
        for path in paths {
            let loaded = std::fs::read(&path)
                .map_err(|error| format!("cannot read: {error}"))
                .and_then(|bytes| load_component(runtime, &bytes, &path, origin));
            match loaded.and_then(|plugin| self.insert(Arc::new(plugin))) {
                Ok(()) => {}
                Err(reason) => errors.push(PluginLoadError { path, reason }),
            }
        }
        Ok(errors)
    }

    /// Adds a plugin; refused when its `name@version` is already there, or when it
    /// takes the name of a processor built into the host.
    pub fn insert(&mut self, plugin: Arc<LoadedPlugin>) -> Result<(), String> {
        let description = &plugin.description;
        if plugin.origin != PluginOrigin::Builtin && crate::processing::BUILTIN_PROCESSORS.contains(&description.name.as_str()) {
            return Err(format!("the name {} belongs to a processor built into the host; give the plugin another name", description.name));
        }
        if let Some(existing) = self.get(&description.name, &description.version) {
            return Err(format!("{}@{} is already loaded from {}", description.name, description.version, existing.path.display()));
        }
        self.plugins.push(plugin);
        Ok(())
    }

    /// Removes `name@version`, returning it.
    pub fn remove(&mut self, name: &str, version: &str) -> Option<Arc<LoadedPlugin>> {
        let index = self.plugins.iter().position(|plugin| plugin.description.name == name && plugin.description.version == version)?;
        Some(self.plugins.remove(index))
    }

    /// Every plugin, sorted by name then version.
    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut plugins = self.plugins.clone();
        plugins.sort_by(|a, b| {
            a.description.name.cmp(&b.description.name).then_with(|| compare_versions(&a.description.version, &b.description.version))
        });
        plugins
    }

    /// Exactly `name@version`.
    pub fn get(&self, name: &str, version: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.iter().find(|plugin| plugin.description.name == name && plugin.description.version == version)
    }

    /// Finds `name` (its newest version) or `name@version`.
    pub fn find(&self, reference: &str) -> Result<Arc<LoadedPlugin>, String> {
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (reference, None),
        };
        let found = match version {
            Some(version) => self.get(name, version).cloned(),
            None => self
                .plugins
                .iter()
                .filter(|plugin| plugin.description.name == name)
                .max_by(|a, b| compare_versions(&a.description.version, &b.description.version))
                .cloned(),
        };
        found.ok_or_else(|| {
            let known: Vec<String> =
                self.plugins().iter().map(|plugin| format!("{}@{}", plugin.description.name, plugin.description.version)).collect();
            format!(
                "no plugin {reference} is loaded (plugins.dir or uploaded); available: {}",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )
        })
    }
}

/// Compiles and describes a component (found at `path`), or says why it is not a
/// usable plugin. Blocking: compiles, then runs the plugin's `describe`.
pub fn load_component(runtime: &Runtime, bytes: &[u8], path: &Path, origin: PluginOrigin) -> Result<LoadedPlugin, String> {
    let digest = sha256_hex(bytes);
    let component =
        runtime.compile(bytes).map_err(|error| format!("not a valid WebAssembly component: {}", first_line(&format!("{error:#}"))))?;
    let exports: Vec<String> = component.component_type().exports(&runtime.engine).map(|(name, _)| name.to_owned()).collect();
    let exports_interface = |interface: &str| exports.iter().any(|name| name.starts_with(&format!("wasm-connect:connector/{interface}@")));
    let kind = if exports_interface("stream-processor") {
        PluginKind::Processor
    } else if exports_interface("source-connector") {
        PluginKind::Source
    } else if exports_interface("sink-connector") {
        PluginKind::Sink
    } else if exports_interface("record-transform") || exports_interface("transform-connector") {
        PluginKind::Transform
    } else {
        return Err(format!(
            "exports no wasm-connect:connector world (exports: {}); build it with the wasm-connect SDK",
            if exports.is_empty() { "none".to_owned() } else { exports.join(", ") }
        ));
    };
    let plugin = LoadedPlugin {
        description: PluginDescription {
            name: String::new(),
            version: String::new(),
            kind,
            documentation: String::new(),
            options: Vec::new(),
        },
        path: path.to_path_buf(),
        origin,
        digest,
        component: Some(component),
        instance_pre: OnceLock::new(),
    };
    let mut description = describe(runtime, &plugin).map_err(|failure| format!("describe failed: {failure}"))?;
    if exports_interface("grants") {
        let grants = declared_grants(runtime, &plugin).map_err(|failure| format!("declared-grants failed: {failure}"))?;
        description.apply_grants(grants)?;
    } else if exports.iter().any(|name| name == LEGACY_PLUGIN_EXPORT) {
        // The 0.1.0 contract granted the `files` capability through an option named
        // `directory`; plugins built against it keep that grant (wit/VERSIONING.md).
        let legacy: Vec<(String, OptionType)> = description
            .options
            .iter()
            .filter(|option| option.name == "directory")
            .map(|option| (option.name.clone(), OptionType::Directory))
            .collect();
        description.apply_grants(legacy)?;
    } else {
        return Err("exports no wasm-connect:connector/grants interface, which plugins built against WIT 0.1.1 or later must \
             export; build it with the current SDK"
            .to_owned());
    }
    // The plugin-kind enum cannot grow within the 0.1 line: a processor describes
    // itself as a transform, and its export says what it is (wit/VERSIONING.md).
    if kind == PluginKind::Processor && description.kind == PluginKind::Transform {
        description.kind = PluginKind::Processor;
    }
    if description.kind != kind {
        return Err(format!("describes itself as a {} but exports the {kind} world", description.kind));
    }
    crate::names::check_name(&description.name)
        .map_err(|problem| format!("describes itself with the name {}, which {problem}", shown(&description.name)))?;
    crate::names::check_version(&description.version)
        .map_err(|problem| format!("describes itself with the version {}, which {problem}", shown(&description.version)))?;
    Ok(LoadedPlugin { description, ..plugin })
}

/// Instantiates the plugin in a short-lived store and runs `call` on its `plugin`
/// export, which every world has.
fn with_plugin_export<T>(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    identity: TaskIdentity,
    call: impl FnOnce(&described::exports::wasm_connect::connector::plugin::Guest, &mut wasmtime::Store<TaskState>) -> wasmtime::Result<T>,
) -> Result<T, PluginFailure> {
    let timeout = runtime.limits.call_timeout;
    let trap = |error: wasmtime::Error| PluginFailure::from_trap(&error, timeout);
    let mut store = super::task::probe_store(runtime, identity);
    let bindings = described::DescribedPre::new(plugin.instance_pre(runtime)?).map_err(trap)?.instantiate(&mut store).map_err(trap)?;
    call(bindings.wasm_connect_connector_plugin(), &mut store).map_err(trap)
}

fn describe(runtime: &Runtime, plugin: &LoadedPlugin) -> Result<PluginDescription, PluginFailure> {
    let identity = TaskIdentity { connector: "(describe)".into(), task: 0, plugin: "(loading)".into() };
    with_plugin_export(runtime, plugin, identity, |exports, store| exports.call_describe(store).map(PluginDescription::from))
}

fn declared_grants(runtime: &Runtime, plugin: &LoadedPlugin) -> Result<Vec<(String, OptionType)>, PluginFailure> {
    let identity = TaskIdentity { connector: "(describe)".into(), task: 0, plugin: "(loading)".into() };
    let timeout = runtime.limits.call_timeout;
    let trap = |error: wasmtime::Error| PluginFailure::from_trap(&error, timeout);
    let mut store = super::task::probe_store(runtime, identity);
    let bindings = grant_declarations::GrantDeclarationsPre::new(plugin.instance_pre(runtime)?)
        .map_err(trap)?
        .instantiate(&mut store)
        .map_err(trap)?;
    let grants = bindings.wasm_connect_connector_grants().call_declared_grants(&mut store).map_err(trap)?;
    Ok(grants.into_iter().map(|grant| (grant.option, OptionType::from(grant.kind))).collect())
}

/// Runs the plugin's pure `validate-config` on a connector's options.
pub(crate) fn validate_config(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    config: &[(String, String)],
) -> Result<Vec<(String, String)>, PluginFailure> {
    if plugin.origin == PluginOrigin::Builtin {
        return Ok(crate::processing::build_processor(&plugin.description.name, config).err().unwrap_or_default());
    }
    let identity = TaskIdentity { connector: "(validate)".into(), task: 0, plugin: plugin.description.name.as_str().into() };
    with_plugin_export(runtime, plugin, identity, |exports, store| {
        exports
            .call_validate_config(store, &config.to_vec())
            .map(|issues| issues.into_iter().map(|issue| (issue.key, issue.message)).collect::<Vec<_>>())
    })
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}
