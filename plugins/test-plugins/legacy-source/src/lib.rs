//! `legacy-source`: a source built against WIT 0.1.1 (the frozen copy in `wit/`), so
//! the tests can check that the current host still runs such plugins. It emits
//! `{"n": n}` for n in 0..count, keyed by n, then finishes. With `claim` set, each
//! batch's header claims that many records whatever it holds: a hostile batch the
//! host must refuse without trusting the count (2^32 - 1 claims more than memory).

wit_bindgen::generate!({
    world: "source",
    path: "wit",
    generate_all,
});

use std::cell::RefCell;

use exports::wasm_connect::connector::grants::{Guest as GrantsGuest, OptionGrant};
use exports::wasm_connect::connector::plugin::{ConfigIssue, Guest as PluginGuest, PluginDescription};
use exports::wasm_connect::connector::source_connector::{Config, Error, Guest as SourceGuest, PollResult};
use wasm_connect::connector::types::{ConfigOption, OptionType, PluginKind};

thread_local! {
    /// (next n, count, the record count headers claim instead of the true one)
    static STATE: RefCell<(u64, u64, Option<u32>)> = const { RefCell::new((0, 10, None)) };
}

struct LegacySource;

impl PluginGuest for LegacySource {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "legacy-source".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kind: PluginKind::Source,
            documentation: "Emits {\"n\": n} count times; built against WIT 0.1.1.".to_owned(),
            options: vec![
                ConfigOption {
                    name: "count".to_owned(),
                    option_type: OptionType::Integer,
                    default_value: Some("10".to_owned()),
                    required: false,
                    secret: false,
                    documentation: "How many records to emit.".to_owned(),
                },
                ConfigOption {
                    name: "claim".to_owned(),
                    option_type: OptionType::Integer,
                    default_value: None,
                    required: false,
                    secret: false,
                    documentation: "The record count every batch header claims, instead of the true one.".to_owned(),
                },
            ],
        }
    }

    fn validate_config(_config: Config) -> Vec<ConfigIssue> {
        Vec::new()
    }
}

impl GrantsGuest for LegacySource {
    fn declared_grants() -> Vec<OptionGrant> {
        Vec::new()
    }
}

impl SourceGuest for LegacySource {
    fn open(config: Config, position: Option<String>) -> Result<(), Error> {
        let count = config
            .iter()
            .find(|(key, _)| key == "count")
            .map_or(Ok(10), |(_, value)| value.parse())
            .map_err(|_| Error::BadConfig("count must be a whole number".to_owned()))?;
        let claim = config
            .iter()
            .find(|(key, _)| key == "claim")
            .map(|(_, value)| value.parse::<u32>())
            .transpose()
            .map_err(|_| Error::BadConfig("claim must be a whole number below 2^32".to_owned()))?;
        let next = position.map_or(Ok(0), |position| position.parse()).map_err(|_| Error::Fatal("unreadable position".to_owned()))?;
        STATE.with(|state| *state.borrow_mut() = (next, count, claim));
        Ok(())
    }

    fn poll(max_records: u32) -> Result<PollResult, Error> {
        STATE.with(|state| {
            let (next, count, claim) = *state.borrow();
            let end = count.min(next + u64::from(max_records));
            // The 0.1.x flat encoding (`WCB1`), written by hand.
            let mut batch = b"WCB1".to_vec();
            batch.extend_from_slice(&claim.unwrap_or((end - next) as u32).to_le_bytes());
            for n in next..end {
                let (key, value) = (n.to_string(), format!("{{\"n\":{n}}}"));
                batch.extend_from_slice(&i64::MIN.to_le_bytes());
                batch.extend_from_slice(&(-1i32).to_le_bytes());
                batch.extend_from_slice(&(-1i64).to_le_bytes());
                batch.extend_from_slice(&0u32.to_le_bytes()); // topic: the connector's
                for field in [key.as_bytes(), value.as_bytes()] {
                    batch.extend_from_slice(&(field.len() as u32).to_le_bytes());
                    batch.extend_from_slice(field);
                }
                batch.extend_from_slice(&0u32.to_le_bytes()); // no headers
            }
            state.borrow_mut().0 = end;
            Ok(PollResult { batch, position: (end > next).then(|| end.to_string()), idle_millis: 100, finished: end >= count })
        })
    }
}

export!(LegacySource);
