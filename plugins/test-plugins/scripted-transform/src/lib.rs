//! `scripted-transform`: does what each record's value asks in its `"do"` field, so
//! that tests can reach every outcome of the transform contract. A value without
//! `"do"` is kept without being parsed (the pass-through benchmark).
//!
//! - `"keep"`: kept; `"drop"`: dropped; `"fail"`: failed with "asked to fail";
//! - `"tag"`: rewritten with `"tagged": <the option tag>`;
//! - `"salt"`: rewritten with `"salted": <the length of the secret option salt>`;
//! - `"split"`: replaced by `"copies"` records, each with `"copy": i`;
//! - `"route"`: rewritten onto the topic in `"to"`;
//! - `"error"`: the whole call fails (fatal); `"trap"`: the plugin traps.

use serde_json::{Value, json};
use wasm_connect_sdk::{
    BatchWriter, ConfigOption, Description, Error, OptionType, Outcome, Plugin, RecordView, Settings, Transform, export_transform,
};

/// The task.
pub struct ScriptedTransform {
    tag: String,
    salt: String,
}

impl Plugin for ScriptedTransform {
    fn description() -> Description {
        Description::new("scripted-transform", env!("CARGO_PKG_VERSION"), "Does what each record asks, for tests.")
            .option(ConfigOption::new("tag", OptionType::String, "What `tag` writes.").default("yes"))
            .option(ConfigOption::new("salt", OptionType::String, "A secret; `salt` writes its length.").secret().default(""))
    }
}

impl Transform for ScriptedTransform {
    fn open(settings: &Settings) -> Result<Self, Error> {
        Ok(Self { tag: settings.string("tag")?, salt: settings.string("salt")? })
    }

    fn apply(&mut self, record: &RecordView<'_>, output: &mut BatchWriter) -> Result<Outcome, Error> {
        let bytes = record.value.unwrap_or_default();
        if !bytes.windows(4).any(|window| window == b"\"do\"") {
            return Ok(Outcome::Keep);
        }
        let Ok(Value::Object(mut value)) = serde_json::from_slice::<Value>(bytes) else { return Ok(Outcome::Keep) };
        let action = value.remove("do").and_then(|action| action.as_str().map(str::to_owned)).unwrap_or_default();
        let mut write = |topic: &str, value: &Value| {
            let bytes = value.to_string();
            output.push_parts(
                topic,
                record.partition,
                record.offset,
                record.timestamp,
                record.key,
                Some(bytes.as_bytes()),
                record.headers.iter().copied(),
            );
        };
        Ok(match action.as_str() {
            "drop" => Outcome::Drop,
            "fail" => Outcome::Fail("asked to fail".to_owned()),
            "tag" => {
                value.insert("tagged".to_owned(), json!(self.tag));
                write(record.topic, &Value::Object(value));
                Outcome::Written
            }
            "salt" => {
                value.insert("salted".to_owned(), json!(self.salt.len()));
                write(record.topic, &Value::Object(value));
                Outcome::Written
            }
            "split" => {
                let copies = value.get("copies").and_then(Value::as_u64).unwrap_or(2).min(100);
                for copy in 0..copies {
                    let mut each = value.clone();
                    each.insert("copy".to_owned(), json!(copy));
                    write(record.topic, &Value::Object(each));
                }
                Outcome::Written
            }
            "route" => {
                let to = value.get("to").and_then(Value::as_str).unwrap_or_default().to_owned();
                write(&to, &Value::Object(value));
                Outcome::Written
            }
            "error" => return Err(Error::Fatal("asked to fail the call".to_owned())),
            "trap" => panic!("asked to trap"),
            _ => Outcome::Keep,
        })
    }
}

export_transform!(ScriptedTransform);
