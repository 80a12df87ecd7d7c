//! `join`: enriches each record with the matching entry of a reference table, like
//! Kafka Streams' stream-GlobalKTable join. The table is a topic (compacted, small:
//! stations, devices, cards) read from its beginning into memory by every task, the
//! newest value per key winning and a tombstone removing the key, and kept up to date
//! before each batch. Records with no match pass unchanged, are dropped, or go
//! through the error policy (`missing`).
//!
//! The table is not part of the checkpoint: a task reads it again when it starts, as
//! a GlobalKTable is restored from its topic.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};
use wasm_connect_protocol::Record;

use super::builtin::OptionSpec;
use super::options::{duration_ms, field, json_object, option};
use super::{Processed, Processor, Table};
use crate::runtime::OptionType;
use crate::transforms::path::FieldPath;
use crate::transport::{StateChange, StateEntry};

/// The default bound of the table's size in memory, in MiB.
const DEFAULT_MAX_TABLE_MIB: u64 = 256;

/// The options `join` understands.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "table",
        option_type: OptionType::String,
        default: None,
        required: true,
        documentation: "The topic holding the reference table (its newest value per key), e.g. `station-information`.",
    },
    OptionSpec {
        name: "table_key",
        option_type: OptionType::String,
        default: Some("key"),
        required: false,
        documentation: "What keys the table: `key` (the table records' key) or a field of their value, e.g. `station_id`.",
    },
    OptionSpec {
        name: "on",
        option_type: OptionType::String,
        default: Some("key"),
        required: false,
        documentation: "What of a record is looked up in the table: `key` (its key) or a field of its value, e.g. `station_id`.",
    },
    OptionSpec {
        name: "fields",
        option_type: OptionType::List,
        default: None,
        required: false,
        documentation: "The table's fields to copy (dotted paths; each lands under its last name); without it every field.",
    },
    OptionSpec {
        name: "into",
        option_type: OptionType::String,
        default: None,
        required: false,
        documentation: "A field to put the table's fields under; without it they join the record's own fields, which win on a clash.",
    },
    OptionSpec {
        name: "missing",
        option_type: OptionType::String,
        default: Some("pass"),
        required: false,
        documentation: "A record with no match in the table: `pass` (unchanged, a left join), `drop` (an inner join) or `fail` (the error policy: the dead-letter topic with `errors.tolerance: all`).",
    },
    OptionSpec {
        name: "table_wait",
        option_type: OptionType::Duration,
        default: Some("30s"),
        required: false,
        documentation: "How long a task waits at its start for the table's first records when the topic is empty (its source has not written yet), before joining against an empty table.",
    },
    OptionSpec {
        name: "max_table_mib",
        option_type: OptionType::Integer,
        default: Some("256"),
        required: false,
        documentation: "The most the table may take, counted as its keys and copied values in JSON text (parsed, a few times more); a bigger table fails the task with the figure.",
    },
];

/// Where a lookup key comes from.
#[derive(Debug, Clone)]
enum KeyFrom {
    /// The record key.
    Key,
    /// A field of the value.
    Field(FieldPath),
}

impl KeyFrom {
    fn parse(options: &[(String, String)], name: &str, problems: &mut Vec<(String, String)>) -> Self {
        match option(options, name).map(str::trim) {
            None | Some("" | "key") => KeyFrom::Key,
            Some(text) => field(text, name, problems).map_or(KeyFrom::Key, KeyFrom::Field),
        }
    }

    /// The key's text, from the record (its value parsed when a field is needed).
    fn of(&self, record: &Record, value: Option<&Map<String, Value>>) -> Option<String> {
        match self {
            KeyFrom::Key => record.key.as_deref().map(|key| String::from_utf8_lossy(key).into_owned()),
            KeyFrom::Field(path) => match value.and_then(|value| path.get(value))? {
                Value::String(text) => Some(text.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            },
        }
    }
}

/// What happens to a record with no match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    Pass,
    Drop,
    Fail,
}

/// The `join` processor of one task.
pub struct Join {
    table_topic: String,
    table_key: KeyFrom,
    on: KeyFrom,
    fields: Option<Vec<FieldPath>>,
    into: Option<String>,
    missing: Missing,
    table_wait: Duration,
    max_table_bytes: u64,
    /// Table key -> the timestamp of the record it came from and the fields a match
    /// copies.
    table: HashMap<String, (i64, Map<String, Value>)>,
    /// What the table takes, as counted against `max_table_bytes`.
    table_bytes: u64,
}

impl Join {
    /// Builds the processor from its options, or every problem as (option, message).
    pub fn new(options: &[(String, String)]) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let table_topic = match option(options, "table").map(str::trim) {
            Some(topic) => {
                if let Err(problem) = crate::names::check_name(topic) {
                    problems.push(("table".into(), format!("is not a topic name: {problem}")));
                }
                topic.to_owned()
            }
            None => {
                problems.push(("table".into(), "is required: the topic holding the reference table".into()));
                String::new()
            }
        };
        let table_key = KeyFrom::parse(options, "table_key", &mut problems);
        let on = KeyFrom::parse(options, "on", &mut problems);
        let fields = option(options, "fields").map(|text| {
            wasm_connect_protocol::values::parse_list(text).iter().filter_map(|name| field(name, "fields", &mut problems)).collect()
        });
        let into = option(options, "into").map(str::trim).filter(|into| !into.is_empty()).map(str::to_owned);
        let missing = match option(options, "missing").map(str::trim) {
            None | Some("pass") => Missing::Pass,
            Some("drop") => Missing::Drop,
            Some("fail") => Missing::Fail,
            Some(other) => {
                problems.push(("missing".into(), format!("must be pass, drop or fail, not {}", crate::names::shown(other))));
                Missing::Pass
            }
        };
        let table_wait = duration_ms(options, "table_wait", &mut problems).unwrap_or(30_000).max(0) as u64;
        let max_table_mib = match option(options, "max_table_mib").map(|text| text.trim().parse::<u64>()) {
            None => DEFAULT_MAX_TABLE_MIB,
            Some(Ok(mib)) if (1..=65_536).contains(&mib) => mib,
            Some(_) => {
                problems.push(("max_table_mib".into(), "must be a whole number of MiB from 1 to 65536".into()));
                DEFAULT_MAX_TABLE_MIB
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            table_topic,
            table_key,
            on,
            fields,
            into,
            missing,
            table_wait: Duration::from_millis(table_wait),
            max_table_bytes: max_table_mib << 20,
            table: HashMap::new(),
            table_bytes: 0,
        })
    }

    /// The fields a match copies from a table record's value.
    fn copied(&self, value: Map<String, Value>) -> Map<String, Value> {
        match &self.fields {
            None => value,
            Some(paths) => paths.iter().filter_map(|path| path.get(&value).map(|found| (path.name().to_owned(), found.clone()))).collect(),
        }
    }

    fn add(&self, record: Record, out: &mut Processed) {
        let parsed = match json_object(&record, true) {
            Ok(parsed) => parsed.unwrap_or_default(),
            Err(reason) => return out.failed.push((record, reason)),
        };
        let matched = self.on.of(&record, Some(&parsed)).and_then(|key| self.table.get(&key)).map(|(_, fields)| fields);
        let Some(matched) = matched else {
            match self.missing {
                Missing::Pass => out.records.push(record),
                Missing::Drop => {}
                Missing::Fail => {
                    let reason = match &self.on {
                        KeyFrom::Key => format!("no entry of the table {} has the record's key", self.table_topic),
                        KeyFrom::Field(path) => {
                            format!("no entry of the table {} matches the record's field {}", self.table_topic, path.display())
                        }
                    };
                    out.failed.push((record, reason));
                }
            }
            return;
        };
        let mut value = parsed;
        match &self.into {
            Some(into) => {
                value.insert(into.clone(), Value::Object(matched.clone()));
            }
            None => {
                for (name, field) in matched {
                    value.entry(name.clone()).or_insert_with(|| field.clone());
                }
            }
        }
        out.records.push(Record { value: Some(Value::Object(value).to_string().into_bytes()), ..record });
    }
}

/// What an entry takes against the table's bound: its key and value as JSON text, and
/// a map slot (parsed, it takes a few times more).
fn entry_bytes(key: &str, value: &Map<String, Value>) -> u64 {
    (key.len() + Value::Object(value.clone()).to_string().len() + 64) as u64
}

impl Processor for Join {
    fn restore(&mut self, _entries: Vec<StateEntry>) -> Result<(), String> {
        Ok(())
    }

    fn process(&mut self, records: Vec<Record>, _now_ms: i64, out: &mut Processed) {
        for record in records {
            self.add(record, out);
        }
    }

    fn take_changes(&mut self) -> Vec<StateChange> {
        Vec::new()
    }

    fn tables(&self) -> Vec<Table> {
        vec![Table { topic: self.table_topic.clone(), wait_when_empty: self.table_wait }]
    }

    fn update_table(&mut self, _topic: &str, records: Vec<Record>) -> Result<(), String> {
        for record in records {
            let value = match record.value.as_deref().map(serde_json::from_slice::<Value>) {
                None => None,
                Some(Ok(Value::Object(object))) => Some(object),
                // A table record that is no JSON object cannot be joined: it is left out.
                Some(_) => continue,
            };
            let key = self.table_key.of(&record, value.as_ref());
            let Some(key) = key else { continue };
            // The newest record wins: a table keyed by a field may hold a key's records
            // in several partitions, which are read one after the other.
            let time = record.timestamp.unwrap_or(i64::MIN);
            if self.table.get(&key).is_some_and(|(newest, _)| *newest > time) {
                continue;
            }
            if let Some((_, old)) = self.table.remove(&key) {
                self.table_bytes = self.table_bytes.saturating_sub(entry_bytes(&key, &old));
            }
            // A tombstone (no value) removes the key; with table_key a field, a record
            // whose value is gone cannot name its key and is left out above.
            let Some(value) = value else { continue };
            let copied = self.copied(value);
            self.table_bytes += entry_bytes(&key, &copied);
            if self.table_bytes > self.max_table_bytes {
                return Err(format!(
                    "the table {} takes more than max_table_mib ({} MiB) with {} keys: raise max_table_mib, or copy fewer fields",
                    self.table_topic,
                    self.max_table_bytes >> 20,
                    self.table.len() + 1
                ));
            }
            self.table.insert(key, (time, copied));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::processing::testing::*;

    fn station(id: &str, postcode: Option<&str>) -> Record {
        let mut value = json!({"station_id": id, "name": format!("Station {id}"), "capacity": 20});
        if let Some(postcode) = postcode {
            value["post_code"] = json!(postcode);
        }
        Record { key: Some(id.as_bytes().to_vec()), value: Some(value.to_string().into_bytes()), ..Record::default() }
    }

    fn status(id: &str, bikes: u32) -> Record {
        valued(json!({"station_id": id, "num_bikes_available": bikes}), 1_000)
    }

    #[test]
    fn records_take_the_matching_entry_and_the_rest_pass_drop_or_fail_as_configured() {
        let settings = [("table", "station-information"), ("on", "station_id"), ("fields", "post_code,name")];
        let mut join = Join::new(&options(&settings)).unwrap();
        let table = Table { topic: "station-information".to_owned(), wait_when_empty: Duration::from_secs(30) };
        assert_eq!(join.tables(), vec![table]);
        join.update_table("station-information", vec![station("1", Some("75001")), station("2", None), station("3", Some("75003"))])
            .unwrap();
        // A newer entry replaces the older; a tombstone removes one.
        join.update_table("station-information", vec![station("1", Some("75011")), Record { value: None, ..station("3", None) }]).unwrap();
        let mut out = Processed::default();
        join.process(vec![status("1", 4), status("2", 7), status("3", 1), status("9", 2)], 0, &mut out);
        assert_eq!(
            results(&out.records),
            vec![
                json!({"station_id": "1", "num_bikes_available": 4, "post_code": "75011", "name": "Station 1"}),
                json!({"station_id": "2", "num_bikes_available": 7, "name": "Station 2"}),
                json!({"station_id": "3", "num_bikes_available": 1}),
                json!({"station_id": "9", "num_bikes_available": 2}),
            ]
        );
        assert_eq!(out.records[0].timestamp, Some(1_000), "the record keeps its timestamp");

        let mut inner = Join::new(&options(&[("table", "t"), ("on", "station_id"), ("missing", "drop"), ("into", "station")])).unwrap();
        inner.update_table("t", vec![station("1", Some("75001"))]).unwrap();
        let mut out = Processed::default();
        inner.process(vec![status("1", 4), status("2", 7)], 0, &mut out);
        let joined = results(&out.records);
        assert_eq!((joined.len(), joined[0]["station"]["post_code"].clone()), (1, json!("75001")));

        let mut strict = Join::new(&options(&[("table", "t"), ("on", "station_id"), ("missing", "fail")])).unwrap();
        let mut out = Processed::default();
        strict.process(vec![status("2", 7)], 0, &mut out);
        assert_eq!(out.failed[0].1, "no entry of the table t matches the record's field station_id");
    }

    #[test]
    fn a_table_keyed_by_a_field_and_a_table_past_its_bound() {
        let mut join = Join::new(&options(&[("table", "t"), ("table_key", "station_id"), ("max_table_mib", "1")])).unwrap();
        let unkeyed_with = |id: &str, postcode: &str| Record { key: None, ..station(id, Some(postcode)) };
        let unkeyed = |id: &str| unkeyed_with(id, "75001");
        join.update_table("t", vec![unkeyed("1")]).unwrap();
        let mut out = Processed::default();
        join.process(vec![Record { key: Some(b"1".to_vec()), ..status("x", 1) }], 0, &mut out);
        assert_eq!(results(&out.records)[0]["post_code"], json!("75001"));
        // Read partition by partition: an older record read later does not win.
        let at = |postcode: &str, time: i64| Record { timestamp: Some(time), ..unkeyed_with("1", postcode) };
        join.update_table("t", vec![at("75002", 2_000)]).unwrap();
        join.update_table("t", vec![at("75009", 1_500)]).unwrap();
        let mut out = Processed::default();
        join.process(vec![Record { key: Some(b"1".to_vec()), ..status("x", 1) }], 0, &mut out);
        assert_eq!(results(&out.records)[0]["post_code"], json!("75002"));
        let big: Vec<Record> = (0..20_000).map(|n| unkeyed(&format!("{n:0>40}"))).collect();
        let refused = join.update_table("t", big).err().unwrap();
        assert!(refused.starts_with("the table t takes more than max_table_mib (1 MiB) with "), "{refused}");
        let problems = Join::new(&options(&[("table", "bad topic!"), ("missing", "maybe"), ("max_table_mib", "0")])).err().unwrap();
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, vec!["table", "missing", "max_table_mib"]);
    }
}
