//! The WebAssembly runtime: one shared engine, each plugin compiled once (and cached on
//! disk), one store per connector task with a memory limit and a deadline per call.

pub mod bindings;
mod builtin;
mod catalog;
mod description;
mod engine;
mod failure;
mod task;

pub(crate) use catalog::validate_config;
pub use catalog::{LoadedPlugin, PluginCatalog, PluginLoadError, PluginOrigin, load_component, sha256_hex};
pub use description::{ConfigOptionDescription, OptionType, PluginDescription, PluginKind};
pub use engine::{CACHE_VARIABLE, Runtime, TaskLimits, cache_dir_for};
pub use failure::PluginFailure;
pub use task::{
    PluginInstance, PluginWorld, PollOutcome, ProcessorInstance, ProcessorOutcome, RecordOutcome, SinkInstance, SourceInstance, TaskAccess,
    TaskIdentity, TaskState, TransformInstance, Transformed,
};
