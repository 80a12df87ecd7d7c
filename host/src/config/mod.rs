//! The host configuration (`connectors.yaml`): serde types, loading with `${VAR}` /
//! `${file:PATH}` substitution and source positions, and pure validation.
//!
//! Loading is parse -> substitute -> deserialize -> validate; every step reports errors
//! as `file:line:column: connector "name": key "x": what to change`.

mod error;
mod load;
mod source_map;
mod types;
mod validate;

pub use error::{ConfigError, ConfigErrors};
pub use load::{LoadedConfig, load, parse};
pub use source_map::SourceMap;
pub use types::*;
pub use validate::{
    DEAD_LETTERS_NEED_TOLERANCE, check_connector_name, check_topic_name, ignored_keys_warning, is_chain_key, is_ignored_key,
    is_secret_ignored_key, validate, validate_chain, validate_connector,
};
