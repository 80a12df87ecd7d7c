//! `legacy-transform`: a transform built against WIT 0.1.2 (the frozen copy in `wit/`),
//! exporting the 0.1.0 `transform-connector` contract. Its `apply` hands the batch back.

wit_bindgen::generate!({
    world: "transform",
    path: "wit",
    generate_all,
});

use exports::wasm_connect::connector::grants::{Guest as GrantsGuest, OptionGrant};
use exports::wasm_connect::connector::plugin::{ConfigIssue, Guest as PluginGuest, PluginDescription};
use exports::wasm_connect::connector::transform_connector::{Config, Error, Guest as TransformGuest, RecordBatch};
use wasm_connect::connector::types::PluginKind;

struct LegacyTransform;

impl PluginGuest for LegacyTransform {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "legacy-transform".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kind: PluginKind::Transform,
            documentation: "Hands every batch back unchanged; built against WIT 0.1.2.".to_owned(),
            options: Vec::new(),
        }
    }

    fn validate_config(_config: Config) -> Vec<ConfigIssue> {
        Vec::new()
    }
}

impl GrantsGuest for LegacyTransform {
    fn declared_grants() -> Vec<OptionGrant> {
        Vec::new()
    }
}

impl TransformGuest for LegacyTransform {
    fn open(_config: Config) -> Result<(), Error> {
        Ok(())
    }

    fn apply(batch: RecordBatch) -> Result<RecordBatch, Error> {
        Ok(batch)
    }
}

export!(LegacyTransform);
