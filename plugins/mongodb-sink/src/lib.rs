//! `mongodb-sink`: writes each record's JSON value as a document through the host's
//! MongoDB client, in unordered bulk commands. By default a document is replaced by
//! `_id` (upsert), so a replayed batch converges; `_id` comes from the key, the offset
//! or a field. Tombstones delete. A duplicate key on insert counts as already
//! written. Optional TTL and unique indexes are created when the task opens.

use serde_json::{Map, Value};
use wasm_connect_sdk::document_id::DocumentId;
use wasm_connect_sdk::mongodb::{self, DUPLICATE_KEY, IndexSpec, WriteKind, WriteOperation};
use wasm_connect_sdk::partial::PartialWrites;
use wasm_connect_sdk::time::format_date_pattern;
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, RecordView, Settings, Sink, export_sink};

/// How documents are written (`write_model`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum WriteModel {
    Replace,
    Insert,
    Update,
    ReplaceByBusinessKey(Vec<String>),
}

fn parse_write_model(text: &str, business_key: &[String]) -> Result<WriteModel, String> {
    match text.trim() {
        "replace" => Ok(WriteModel::Replace),
        "insert" => Ok(WriteModel::Insert),
        "update" => Ok(WriteModel::Update),
        "replace_by_business_key" if business_key.is_empty() => {
            Err("replace_by_business_key needs business_key (the fields that identify a document)".to_owned())
        }
        "replace_by_business_key" => Ok(WriteModel::ReplaceByBusinessKey(business_key.to_vec())),
        other => Err(format!("expected replace, insert, update or replace_by_business_key, found \"{other}\"")),
    }
}

/// The sink task.
pub struct MongodbSink {
    uri: String,
    database: String,
    collection: String,
    collection_field: Option<String>,
    document_id: DocumentId,
    write_model: WriteModel,
    ttl_field: Option<String>,
    partial: PartialWrites,
}

impl Plugin for MongodbSink {
    fn description() -> Description {
        Description::new(
            "mongodb-sink",
            env!("CARGO_PKG_VERSION"),
            "Writes JSON records as MongoDB documents in unordered bulk writes, upserting by _id by default.",
        )
        .option(ConfigOption::new("uri", OptionType::MongodbUri, "Connection string, e.g. mongodb://localhost:27017.").required().secret())
        .option(ConfigOption::new("database", OptionType::String, "Database to write to.").required())
        .option(
            ConfigOption::new("collection", OptionType::String, "Collection; {topic} is the record's topic, {yyyy.MM.dd} its UTC date.")
                .default("{topic}"),
        )
        .option(ConfigOption::new(
            "collection_field",
            OptionType::String,
            "A top-level field of the value naming the collection; records without it use `collection`.",
        ))
        .option(
            ConfigOption::new("document_id", OptionType::String, "_id: key, offset (topic+partition+offset), field:<dotted.path> or none.")
                .default("key"),
        )
        .option(
            ConfigOption::new(
                "write_model",
                OptionType::String,
                "replace (upsert by _id), insert, update ($set fields, upsert) or replace_by_business_key.",
            )
            .default("replace"),
        )
        .option(ConfigOption::new("business_key", OptionType::List, "Fields identifying a document for replace_by_business_key."))
        .option(ConfigOption::new(
            "ttl",
            OptionType::Duration,
            "Expire documents this long after their record time (a TTL index on ttl_field).",
        ))
        .option(
            ConfigOption::new("ttl_field", OptionType::String, "Field holding the record time as a date, for ttl.").default("record_time"),
        )
        .option(ConfigOption::new("unique_index", OptionType::List, "Fields of a unique index created when the task opens."))
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let document_id = settings.get("document_id").map(DocumentId::parse);
        if let Some(Err(message)) = &document_id {
            issues.push(("document_id".to_owned(), message.clone()));
        }
        let business_key = settings.list("business_key").unwrap_or_default();
        let model = settings.get("write_model").map(|text| parse_write_model(text, &business_key));
        if let Some(Err(message)) = &model {
            issues.push(("write_model".to_owned(), message.clone()));
        }
        if matches!(document_id, Some(Ok(DocumentId::None))) && matches!(model, Some(Ok(WriteModel::Replace | WriteModel::Update))) {
            issues.push(("document_id".to_owned(), "replace and update find documents by _id; use key, offset or field:<path>".to_owned()));
        }
        for key in ["database", "collection"] {
            if settings.get(key).is_some_and(|value| value.trim().is_empty()) {
                issues.push((key.to_owned(), "must not be empty".to_owned()));
            }
        }
        if settings.duration("ttl").is_ok_and(|ttl| ttl.as_secs() == 0) {
            issues.push(("ttl".to_owned(), "must be at least 1s".to_owned()));
        }
        issues
    }
}

impl MongodbSink {
    fn collection_for(&self, record: &RecordView<'_>, value: Option<&Map<String, Value>>) -> String {
        if let Some(name) = self.collection_field.as_ref().and_then(|field| value?.get(field)?.as_str()) {
            return name.to_owned();
        }
        let time = record.timestamp.unwrap_or_else(now_ms);
        format_date_pattern(&self.collection.replace("{topic}", record.topic), time)
    }

    /// The write for one record, or why it cannot be written.
    fn operation_for(&self, record: &RecordView<'_>) -> Result<WriteOperation, String> {
        let mut value: Option<Map<String, Value>> = match record.value {
            Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(object)) => Some(object),
                Ok(_) => return Err("the value is not a JSON object".to_owned()),
                Err(error) => return Err(format!("the value is not JSON: {error}")),
            },
            None => None,
        };
        let collection = self.collection_for(record, value.as_ref());
        // Only a `field:` id needs the value as a whole; do not copy it otherwise.
        let parsed = if self.document_id.needs_value() { value.clone().map(Value::Object) } else { None };
        // Documents found by their business key keep whatever _id they have.
        let id = match self.write_model {
            WriteModel::ReplaceByBusinessKey(_) => None,
            _ => self.document_id.of(record, parsed.as_ref())?,
        };
        let id_filter = |id: &str| serde_json::to_vec(&serde_json::json!({ "_id": id })).expect("JSON always serialises");
        let Some(document) = value.as_mut() else {
            return match (&self.write_model, id) {
                (WriteModel::ReplaceByBusinessKey(_), _) | (_, None) => {
                    Err("a tombstone needs an _id to delete: use document_id key, offset or field".to_owned())
                }
                (_, Some(id)) => Ok(WriteOperation { kind: WriteKind::Delete, collection, filter: Some(id_filter(&id)), document: None }),
            };
        };
        if let (Some(field), Some(time)) = (&self.ttl_field, record.timestamp) {
            document.insert(field.clone(), serde_json::json!({ "$date": { "$numberLong": time.to_string() } }));
        }
        let (kind, filter) = match &self.write_model {
            WriteModel::ReplaceByBusinessKey(fields) => {
                let mut filter = Map::new();
                for field in fields {
                    let value = document.get(field).ok_or_else(|| format!("the value has no business key field {field}"))?;
                    filter.insert(field.clone(), value.clone());
                }
                (WriteKind::Replace, Some(serde_json::to_vec(&filter).expect("JSON always serialises")))
            }
            model => {
                if let Some(id) = &id {
                    document.insert("_id".to_owned(), Value::String(id.clone()));
                }
                let kind = match model {
                    WriteModel::Insert => WriteKind::Insert,
                    WriteModel::Update => WriteKind::Update,
                    _ => WriteKind::Replace,
                };
                (kind, id.as_deref().map(id_filter))
            }
        };
        let document = serde_json::to_vec(document).expect("JSON always serialises");
        Ok(WriteOperation { kind, collection, filter, document: Some(document) })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Sink for MongodbSink {
    fn open(settings: &Settings) -> Result<Self, Error> {
        let bad = |message: String| Error::BadConfig(message);
        let business_key = settings.list("business_key").unwrap_or_default();
        let ttl = settings.duration("ttl").ok();
        let sink = Self {
            uri: settings.string("uri")?,
            database: settings.string("database")?,
            collection: settings.string("collection")?,
            collection_field: settings.get("collection_field").map(str::to_owned),
            document_id: DocumentId::parse(&settings.string("document_id")?).map_err(bad)?,
            write_model: parse_write_model(&settings.string("write_model")?, &business_key).map_err(bad)?,
            ttl_field: ttl.map(|_| settings.string("ttl_field")).transpose()?,
            partial: PartialWrites::default(),
        };
        // Indexes live on a fixed collection; with {topic}, date patterns or a
        // collection field they would be needed on every collection written later.
        let fixed_collection = !sink.collection.contains('{') && sink.collection_field.is_none();
        let unique = settings.list("unique_index").unwrap_or_default();
        let mut indexes = Vec::new();
        if let (Some(ttl), Some(field)) = (ttl, &sink.ttl_field) {
            indexes.push((format!("{{\"{field}\":1}}"), false, Some(ttl.as_secs())));
        }
        if !unique.is_empty() {
            let keys: Vec<String> = unique.iter().map(|field| format!("\"{field}\":1")).collect();
            indexes.push((format!("{{{}}}", keys.join(",")), true, None));
        }
        if !indexes.is_empty() && !fixed_collection {
            return Err(Error::BadConfig(
                "ttl and unique_index need a fixed collection (no {topic}, date pattern or collection_field)".to_owned(),
            ));
        }
        for (keys, unique, expire_after_seconds) in indexes {
            let index =
                IndexSpec { collection: sink.collection.clone(), keys: keys.into_bytes(), name: None, unique, expire_after_seconds };
            mongodb::create_index(&sink.uri, &sink.database, &index)?;
        }
        Ok(sink)
    }

    fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error> {
        let to_write = self.partial.to_write(records)?;
        let mut refused = Vec::new();
        let mut positions = Vec::with_capacity(to_write.len());
        let mut operations = Vec::with_capacity(to_write.len());
        for position in &to_write {
            match self.operation_for(&records[*position]) {
                Ok(operation) => {
                    positions.push(*position);
                    operations.push(operation);
                }
                Err(reason) => refused.push((*position, reason)),
            }
        }
        if !operations.is_empty() {
            let outcomes = mongodb::bulk_write(&self.uri, &self.database, &operations)?;
            for ((position, operation), outcome) in positions.into_iter().zip(&operations).zip(outcomes) {
                match outcome.code {
                    0 => {}
                    DUPLICATE_KEY if operation.kind == WriteKind::Insert => {}
                    DUPLICATE_KEY => {
                        return Err(Error::Retriable(format!(
                            "a concurrent write raced this one in {} (duplicate key)",
                            operation.collection
                        )));
                    }
                    code => refused.push((
                        position,
                        format!("collection {}: MongoDB error {code}: {}", operation.collection, outcome.message.unwrap_or_default()),
                    )),
                }
            }
        }
        self.partial.settle(records, &to_write, refused)
    }
}

export_sink!(MongodbSink);
