//! WASM transforms (`transforms.<alias>.type: wasm`): a transform plugin (WIT 0.1.3
//! `record-transform`) named by `transforms.<alias>.plugin` (`name` or
//! `name@version`), with the alias's other keys as its options. Each task opens its
//! own instance of every WASM transform in its chain, with the same memory limit and
//! call deadline as any plugin, and no capability beyond `log`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasm_connect_protocol::Record;

use super::chain::Chain;
use crate::config::ScalarString;
use crate::names::{check_name, check_version, shown};
use crate::runtime::bindings::record_transform::RecordTransformBasePre;
use crate::runtime::{
    LoadedPlugin, PluginCatalog, PluginFailure, PluginKind, RecordOutcome, Runtime, TaskAccess, TaskIdentity, TransformInstance,
    Transformed, validate_config,
};
use crate::telemetry::Metrics;
use crate::telemetry::redaction::SecretRegistration;

/// The key naming a WASM transform's plugin.
pub const PLUGIN_KEY: &str = "plugin";

/// Where a chain's WASM transforms find their plugins.
#[derive(Clone, Copy)]
pub struct ChainPlugins<'a> {
    loaded: Option<(&'a PluginCatalog, &'a Runtime)>,
}

impl<'a> ChainPlugins<'a> {
    /// The host's plugins: WASM transforms are resolved and their options checked by
    /// their plugin.
    pub fn new(catalog: &'a PluginCatalog, runtime: &'a Runtime) -> Self {
        Self { loaded: Some((catalog, runtime)) }
    }

    /// No plugins: only the shape of a WASM transform is checked (a configuration
    /// read before its plugins are loaded). A chain built so cannot run them.
    pub fn unresolved() -> Self {
        Self { loaded: None }
    }

    /// A WASM transform with these options, or its problems keyed by option.
    pub(super) fn step(&self, options: &BTreeMap<String, ScalarString>) -> Result<WasmStep, Vec<(String, String)>> {
        let Some(reference) = options.get(PLUGIN_KEY).map(|value| value.0.trim().to_owned()) else {
            return Err(vec![(
                PLUGIN_KEY.to_owned(),
                "is required for a wasm transform: the transform plugin's name, or name@version".to_owned(),
            )]);
        };
        let (name, version) = match reference.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (reference.as_str(), None),
        };
        if let Err(problem) = check_name(name).and_then(|()| version.map_or(Ok(()), check_version)) {
            return Err(vec![(PLUGIN_KEY.to_owned(), format!("{} is not a plugin name or name@version: {problem}", shown(&reference)))]);
        }
        let config: Vec<(String, String)> =
            options.iter().filter(|(key, _)| *key != PLUGIN_KEY).map(|(key, value)| (key.clone(), value.0.clone())).collect();
        let Some((catalog, runtime)) = self.loaded else {
            return Ok(WasmStep { plugin: None, reference, config, secrets: Vec::new(), _redaction: None });
        };
        let plugin = catalog.find(&reference).map_err(|message| vec![(PLUGIN_KEY.to_owned(), message)])?;
        let description = &plugin.description;
        let named = format!("{}@{}", description.name, description.version);
        if description.kind != PluginKind::Transform {
            return Err(vec![(
                PLUGIN_KEY.to_owned(),
                format!("{named} is a {} plugin; a wasm transform needs a transform plugin", description.kind),
            )]);
        }
        let pre = plugin.instance_pre(runtime).map_err(|failure| vec![(PLUGIN_KEY.to_owned(), failure.to_string())])?;
        if RecordTransformBasePre::new(pre).is_err() {
            return Err(vec![(
                PLUGIN_KEY.to_owned(),
                format!(
                    "{named} exports only the 0.1.0 transform contract (`transform-connector`: a batch in, a batch out), which \
                     cannot say which record failed; rebuild it with the current wasm-connect SDK (WIT 0.1.3 `record-transform`)"
                ),
            )]);
        }
        let mut problems = description.check_options(config.iter().map(|(key, value)| (key.as_str(), value.as_str())));
        let secrets: Vec<String> = config
            .iter()
            .filter(|(key, value)| !value.is_empty() && description.options.iter().any(|option| option.name == *key && option.secret))
            .map(|(_, value)| value.clone())
            .collect();
        // Registered before the plugin sees them: what it logs while validating stays free of them.
        let redaction = Arc::new(SecretRegistration::new(secrets.iter().map(String::as_str)));
        if problems.is_empty() {
            match validate_config(runtime, &plugin, &config) {
                Ok(issues) => problems.extend(issues),
                Err(failure) => problems.push((PLUGIN_KEY.to_owned(), format!("{named} failed to validate its options: {failure}"))),
            }
        }
        if !problems.is_empty() {
            // What the plugin said may quote a secret option's value.
            let redact = |text: String| secrets.iter().fold(text, |text, secret| text.replace(secret.as_str(), "[redacted]"));
            return Err(problems.into_iter().map(|(key, message)| (key, redact(message))).collect());
        }
        Ok(WasmStep { plugin: Some(plugin), reference, config, secrets, _redaction: Some(redaction) })
    }
}

impl ChainPlugins<'_> {
    /// The built-in jq component with `config` (`expression`, `part`, `mode`), the
    /// expression compiled by it: a problem is keyed `expression`.
    pub(super) fn jq(&self, config: &[(String, String)]) -> Result<WasmStep, Vec<(String, String)>> {
        let config = config.to_vec();
        let Some((_, runtime)) = self.loaded else {
            return Ok(WasmStep { plugin: None, reference: "jq".to_owned(), config, secrets: Vec::new(), _redaction: None });
        };
        let plugin = runtime.jq_component().map_err(|reason| vec![("type".to_owned(), reason)])?;
        match validate_config(runtime, &plugin, &config) {
            Ok(issues) if issues.is_empty() => {
                Ok(WasmStep { plugin: Some(plugin), reference: "jq".to_owned(), config, secrets: Vec::new(), _redaction: None })
            }
            Ok(issues) => Err(issues),
            // A program whose compiling traps (nested without end, say).
            Err(failure) => Err(vec![("expression".to_owned(), format!("cannot be compiled: {failure}"))]),
        }
    }
}

/// One WASM transform of a built chain.
pub struct WasmStep {
    /// None in a chain built without plugins ([`ChainPlugins::unresolved`]).
    plugin: Option<Arc<LoadedPlugin>>,
    reference: String,
    config: Vec<(String, String)>,
    /// Values of its secret options.
    pub(super) secrets: Vec<String>,
    /// Keeps the secrets out of every log line while the chain lives.
    _redaction: Option<Arc<SecretRegistration>>,
}

impl WasmStep {
    /// Whether its plugin declares the option `key` secret (unknown without a plugin: yes).
    pub(super) fn is_secret(&self, key: &str) -> bool {
        self.plugin.as_ref().is_none_or(|plugin| plugin.description.options.iter().any(|option| option.name == key && option.secret))
    }

    /// `name@version` of its plugin: the class name of its dead letters.
    pub(super) fn type_name(&self) -> String {
        match &self.plugin {
            Some(plugin) => format!("{}@{}", plugin.description.name, plugin.description.version),
            None => self.reference.clone(),
        }
    }
}

/// The WASM transforms of one task's chain, opened, in the chain's order. One whose
/// call failed as a whole (a trap leaves an instance unusable) is opened again before
/// its next call.
#[derive(Default)]
pub struct WasmTransforms {
    instances: Vec<Option<(TaskIdentity, TransformInstance)>>,
    opener: Option<Opener>,
}

/// What it takes to open a chain's WASM transforms again.
struct Opener {
    runtime: Runtime,
    connector: Arc<str>,
    task: u32,
    metrics: Option<Arc<Metrics>>,
}

impl Opener {
    fn open(&self, alias: &str, step: &WasmStep) -> Result<(TaskIdentity, TransformInstance), PluginFailure> {
        let plugin = step
            .plugin
            .as_ref()
            .ok_or_else(|| PluginFailure::BadConfig(format!("the transform {alias}: its plugin {} was not loaded", step.reference)))?;
        let identity = TaskIdentity { connector: self.connector.clone(), task: self.task, plugin: plugin.description.name.as_str().into() };
        let access = TaskAccess { secrets: step.secrets.clone().into(), metrics: self.metrics.clone(), ..TaskAccess::default() };
        let mut instance =
            TransformInstance::new(&self.runtime, plugin, identity.clone(), access).map_err(|failure| in_transform(alias, failure))?;
        instance.open(&step.config).map_err(|failure| in_transform(alias, failure))?;
        Ok((identity, instance))
    }
}

impl WasmTransforms {
    /// Instantiates and opens every WASM transform of `chain` for task `task` of
    /// `connector`. Blocking: runs the plugins' `open`.
    pub fn open(
        chain: &Chain,
        runtime: &Runtime,
        connector: &str,
        task: u32,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, PluginFailure> {
        let opener = Opener { runtime: runtime.clone(), connector: connector.into(), task, metrics };
        let mut instances = Vec::new();
        for (alias, step) in chain.wasm_steps() {
            instances.push(Some(opener.open(alias, step)?));
        }
        Ok(Self { instances, opener: Some(opener) })
    }

    /// Runs the `index`th WASM transform (`step`, alias `alias`) on `batch`, which
    /// holds `count` records: one outcome per record, and the records of the `Many` ones.
    pub(super) fn apply(
        &mut self,
        index: usize,
        alias: &str,
        step: &WasmStep,
        batch: Vec<u8>,
        count: usize,
    ) -> Result<(Vec<RecordOutcome>, Vec<Record>), PluginFailure> {
        let not_opened = || PluginFailure::Fatal(format!("the transform {alias} was not opened for this task"));
        let slot = self.instances.get_mut(index).ok_or_else(not_opened)?;
        if slot.is_none() {
            *slot = Some(self.opener.as_ref().ok_or_else(not_opened)?.open(alias, step)?);
        }
        let (identity, instance) = slot.as_mut().expect("opened above");
        let started = Instant::now();
        let result = instance.apply(batch);
        if let Some(metrics) = self.opener.as_ref().and_then(|opener| opener.metrics.as_ref()) {
            metrics.plugin_call(identity, "apply", started.elapsed());
        }
        let checked = result.map_err(|failure| in_transform(alias, failure)).and_then(|transformed| check(alias, transformed, count));
        if checked.is_err() {
            *slot = None;
        }
        checked
    }
}

/// What a transform returned, checked against the contract and the host's bounds.
fn check(alias: &str, mut transformed: Transformed, count: usize) -> Result<(Vec<RecordOutcome>, Vec<Record>), PluginFailure> {
    let broken = |why: String| PluginFailure::InvalidOutput(format!("the transform {alias} {why}"));
    if transformed.outcomes.len() != count {
        return Err(broken(format!("returned {} outcomes for {count} records", transformed.outcomes.len())));
    }
    if transformed.batch.len() > MAX_OUTPUT_BYTES {
        return Err(broken(format!(
            "returned {} MiB of records for one batch; at most {} MiB",
            transformed.batch.len() >> 20,
            MAX_OUTPUT_BYTES >> 20
        )));
    }
    for outcome in &mut transformed.outcomes {
        if let RecordOutcome::Fail(reason) = outcome {
            shorten(reason);
        }
    }
    let written = wasm_connect_protocol::decode(&transformed.batch)
        .map_err(|error| broken(format!("returned a batch the host cannot read: {error}")))?;
    let promised: u64 =
        transformed.outcomes.iter().map(|outcome| if let RecordOutcome::Many(n) = outcome { u64::from(*n) } else { 0 }).sum();
    if promised != written.len() as u64 {
        return Err(broken(format!("said it wrote {promised} records and returned {}", written.len())));
    }
    Ok((transformed.outcomes, written.iter().map(|record| record.to_owned()).collect()))
}

/// The most bytes of records a WASM transform may return from one call.
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 << 20;
/// The longest reason for a failed record kept (it goes to logs and dead-letter headers).
const MAX_REASON_BYTES: usize = 1024;

/// Cuts `reason` to [`MAX_REASON_BYTES`] on a character boundary.
pub(crate) fn shorten(reason: &mut String) {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
}

/// A failed call of the transform `alias`, saying which transform it was.
fn in_transform(alias: &str, failure: PluginFailure) -> PluginFailure {
    let within = |message: String| format!("the transform {alias}: {message}");
    match failure {
        PluginFailure::Retriable(message) => PluginFailure::Retriable(within(message)),
        PluginFailure::Fatal(message) => PluginFailure::Fatal(within(message)),
        PluginFailure::BadRecord { index, reason } => PluginFailure::InvalidOutput(within(format!(
            "returned bad-record {index} ({reason}); a transform fails a record with its outcome"
        ))),
        PluginFailure::BadConfig(message) => PluginFailure::BadConfig(within(message)),
        PluginFailure::Trapped(message) => PluginFailure::Trapped(within(message)),
        PluginFailure::TimedOut(timeout) => PluginFailure::TimedOut(timeout),
        PluginFailure::OutOfMemory(message) => PluginFailure::OutOfMemory(within(message)),
        PluginFailure::InvalidOutput(message) => PluginFailure::InvalidOutput(within(message)),
    }
}
