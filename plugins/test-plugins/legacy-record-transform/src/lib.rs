//! `legacy-record-transform`: a chain transform built against WIT 0.1.3 (the frozen
//! copy in `wit/`): keeps a record, drops it (value `drop`) or fails it (value `fail`).

wit_bindgen::generate!({
    world: "record-transformer",
    path: "wit",
    generate_all,
});

use exports::wasm_connect::connector::grants::{Guest as GrantsGuest, OptionGrant};
use exports::wasm_connect::connector::plugin::{ConfigIssue, Guest as PluginGuest, PluginDescription};
use exports::wasm_connect::connector::record_transform::{Config, Error, Guest as TransformGuest, Outcome, RecordBatch, Transformed};
use wasm_connect::connector::types::PluginKind;

struct LegacyRecordTransform;

impl PluginGuest for LegacyRecordTransform {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "legacy-record-transform".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kind: PluginKind::Transform,
            documentation: "Keeps, drops (value `drop`) or fails (value `fail`) each record; built against WIT 0.1.3.".to_owned(),
            options: Vec::new(),
        }
    }

    fn validate_config(_config: Config) -> Vec<ConfigIssue> {
        Vec::new()
    }
}

impl GrantsGuest for LegacyRecordTransform {
    fn declared_grants() -> Vec<OptionGrant> {
        Vec::new()
    }
}

impl TransformGuest for LegacyRecordTransform {
    fn open(_config: Config) -> Result<(), Error> {
        Ok(())
    }

    fn apply(batch: RecordBatch) -> Result<Transformed, Error> {
        let records = wasm_connect_protocol::decode(&batch).map_err(|error| Error::Fatal(error.to_string()))?;
        let outcomes = records
            .iter()
            .map(|record| match record.value {
                Some(b"drop") => Outcome::Drop,
                Some(b"fail") => Outcome::Fail("failed on purpose".to_owned()),
                _ => Outcome::Keep,
            })
            .collect();
        Ok(Transformed { outcomes, batch: wasm_connect_protocol::encode(&[]) })
    }
}

export!(LegacyRecordTransform);
