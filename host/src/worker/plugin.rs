//! A task's plugin instance, of any world, called off the async threads (a plugin
//! call runs WebAssembly to completion), with every call timed in the metrics.

use std::time::Instant;

use super::TaskError;
use super::task::TaskContext;
use crate::runtime::{PluginFailure, PluginInstance, PluginWorld};

/// The plugin instance one task calls.
pub struct TaskPlugin<W> {
    /// Away on a blocking thread during a call; gone if a call panicked in the host.
    instance: Option<PluginInstance<W>>,
}

impl<W: PluginWorld> TaskPlugin<W> {
    /// Instantiates the task's plugin and runs `open` on it (its `open` export).
    pub async fn open(
        task: &TaskContext,
        open: impl FnOnce(&mut PluginInstance<W>) -> Result<(), PluginFailure> + Send + 'static,
    ) -> Result<Self, TaskError> {
        let (runtime, plugin, identity, access) =
            (task.worker.runtime.clone(), task.plan.plugin.clone(), task.identity.clone(), task.access());
        let opened = blocking(move || -> Result<PluginInstance<W>, PluginFailure> {
            let mut instance = PluginInstance::<W>::new(&runtime, &plugin, identity, access)?;
            open(&mut instance)?;
            Ok(instance)
        })
        .await?;
        Ok(Self { instance: Some(opened?) })
    }

    /// Runs `call` (named `name` in the metrics) on the instance.
    pub async fn call<R: Send + 'static>(
        &mut self,
        task: &TaskContext,
        name: &str,
        call: impl FnOnce(&mut PluginInstance<W>) -> R + Send + 'static,
    ) -> Result<R, TaskError> {
        let mut instance =
            self.instance.take().ok_or_else(|| PluginFailure::Trapped("the plugin instance was lost in an earlier call".to_owned()))?;
        let started = Instant::now();
        let (instance, result) = blocking(move || {
            let result = call(&mut instance);
            (instance, result)
        })
        .await?;
        task.metrics().plugin_call(&task.identity, name, started.elapsed());
        task.metrics().plugin_memory(&task.labels, instance.memory_bytes());
        self.instance = Some(instance);
        Ok(result)
    }
}

/// Runs `work` on a blocking thread.
async fn blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, TaskError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| TaskError::Plugin(PluginFailure::Trapped(format!("the plugin call panicked in the host: {error}"))))
}
