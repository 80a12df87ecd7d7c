//! `elasticsearch-sink`: writes each record's JSON value as a document, in bulk
//! requests sent by the host's Elasticsearch client. The index may follow the
//! record's time (`flights-{yyyy.MM.dd}`) and its topic (`{topic}`); the document id
//! comes from the key, the offset or a field, so a replayed batch overwrites what it
//! wrote before. Tombstones delete. Documents the index refuses (mapping or parse
//! errors) are bad records; 429 and 5xx are retried.

use std::collections::HashSet;

use serde_json::Value;
use wasm_connect_sdk::document_id::DocumentId;
use wasm_connect_sdk::elasticsearch::{self, BulkAction, BulkOperation, Connection, Method};
use wasm_connect_sdk::partial::PartialWrites;
use wasm_connect_sdk::time::format_date_pattern;
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, RecordView, Settings, Sink, export_sink, log};

/// The sink task.
pub struct ElasticsearchSink {
    connection: Connection,
    index: String,
    document_id: DocumentId,
    action: BulkAction,
    max_actions: usize,
    max_bytes: usize,
    mappings: Option<String>,
    prepared_indices: HashSet<String>,
    partial: PartialWrites,
}

fn parse_operation(text: &str) -> Result<BulkAction, String> {
    match text.trim() {
        "index" => Ok(BulkAction::Index),
        "create" => Ok(BulkAction::Create),
        "upsert" | "update" => Ok(BulkAction::Upsert),
        other => Err(format!("expected index, create or upsert, found \"{other}\"")),
    }
}

impl Plugin for ElasticsearchSink {
    fn description() -> Description {
        Description::new(
            "elasticsearch-sink",
            env!("CARGO_PKG_VERSION"),
            "Writes JSON records as documents to Elasticsearch 8/9 or OpenSearch, in bulk, idempotently by id.",
        )
        .option(ConfigOption::new("url", OptionType::ElasticsearchUrl, "Base URL of the cluster, e.g. http://localhost:9200.").required())
        .option(
            ConfigOption::new(
                "index",
                OptionType::String,
                "Target index; {topic} is the record's topic and {yyyy.MM.dd} (yyyy, MM, dd, HH) the record's UTC date.",
            )
            .default("{topic}"),
        )
        .option(
            ConfigOption::new(
                "document_id",
                OptionType::String,
                "Document id: key, offset (topic+partition+offset), field:<dotted.path> or none.",
            )
            .default("key"),
        )
        .option(
            ConfigOption::new(
                "operation",
                OptionType::String,
                "index (replace), create (keep an existing document) or upsert (merge fields).",
            )
            .default("index"),
        )
        .option(ConfigOption::new("bulk_max_actions", OptionType::Integer, "Most documents in one bulk request.").default("1000"))
        .option(ConfigOption::new("bulk_max_bytes", OptionType::Integer, "Most bytes of documents in one bulk request.").default("5242880"))
        .option(ConfigOption::new(
            "mappings",
            OptionType::String,
            "JSON mappings applied when the sink first writes to an index that does not exist yet.",
        ))
        .option(ConfigOption::new("api_key", OptionType::String, "API key (base64 id:key) for the cluster.").secret())
        .option(ConfigOption::new("username", OptionType::String, "User for basic authentication."))
        .option(ConfigOption::new("password", OptionType::String, "Password for basic authentication.").secret())
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let document_id = settings.get("document_id").map(DocumentId::parse);
        if let Some(Err(message)) = &document_id {
            issues.push(("document_id".to_owned(), message.clone()));
        }
        let operation = settings.get("operation").map(parse_operation);
        if let Some(Err(message)) = &operation {
            issues.push(("operation".to_owned(), message.clone()));
        }
        if matches!(document_id, Some(Ok(DocumentId::None))) && matches!(operation, Some(Ok(BulkAction::Upsert))) {
            issues.push(("document_id".to_owned(), "operation upsert needs a document id; use key, offset or field:<path>".to_owned()));
        }
        if settings.get("index").is_some_and(|index| index.trim().is_empty()) {
            issues.push(("index".to_owned(), "must not be empty".to_owned()));
        }
        for key in ["bulk_max_actions", "bulk_max_bytes"] {
            if settings.integer(key).is_ok_and(|value| value < 1) {
                issues.push((key.to_owned(), "must be at least 1".to_owned()));
            }
        }
        if let Some(mappings) = settings.get("mappings")
            && !serde_json::from_str::<Value>(mappings).is_ok_and(|value| value.is_object())
        {
            issues.push(("mappings".to_owned(), "must be a JSON object, e.g. {\"properties\": {...}}".to_owned()));
        }
        if settings.get("password").is_some() && settings.get("username").is_none() {
            issues.push(("username".to_owned(), "is needed with password".to_owned()));
        }
        issues
    }
}

impl ElasticsearchSink {
    fn index_for(&self, record: &RecordView<'_>) -> String {
        let time = record.timestamp.unwrap_or_else(now_ms);
        format_date_pattern(&self.index.replace("{topic}", record.topic), time).to_lowercase()
    }

    /// Applies `mappings` to `index` unless it exists, once per task.
    fn prepare_index(&mut self, index: &str) -> Result<(), Error> {
        let Some(mappings) = &self.mappings else { return Ok(()) };
        if self.prepared_indices.contains(index) {
            return Ok(());
        }
        let body = format!("{{\"mappings\":{mappings}}}");
        let (status, response) = elasticsearch::request(&self.connection, Method::Put, &format!("/{index}"), Some(body.as_bytes()))?;
        let text = String::from_utf8_lossy(&response);
        if !(200..300).contains(&status) && !text.contains("resource_already_exists_exception") {
            return Err(Error::Fatal(format!("creating index {index} with the configured mappings failed ({status}): {text}")));
        }
        self.prepared_indices.insert(index.to_owned());
        Ok(())
    }

    /// The bulk item for one record, or why the record cannot be written.
    fn operation_for(&mut self, record: &RecordView<'_>) -> Result<BulkOperation, String> {
        let index = self.index_for(record);
        let parsed = match record.value {
            Some(value) if self.document_id.needs_value() => {
                Some(serde_json::from_slice::<Value>(value).map_err(|error| format!("the value is not JSON: {error}"))?)
            }
            _ => None,
        };
        let id = self.document_id.of(record, parsed.as_ref())?;
        let Some(value) = record.value else {
            return match id {
                Some(id) => Ok(BulkOperation { action: BulkAction::Delete, index, id: Some(id), document: None }),
                None => Err("a tombstone needs a document id to delete; set document_id to key".to_owned()),
            };
        };
        if value.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err("the value is not a JSON object".to_owned());
        }
        Ok(BulkOperation { action: self.action, index, id, document: Some(value.to_vec()) })
    }

    /// Sends `operations` (for `records[positions]`) in bulk requests bounded by count
    /// and bytes; returns the refused ones as (record index, reason).
    fn send(&mut self, operations: Vec<(usize, BulkOperation)>) -> Result<Vec<(usize, String)>, Error> {
        let mut refused = Vec::new();
        let mut chunk: Vec<(usize, BulkOperation)> = Vec::new();
        let mut chunk_bytes = 0;
        let mut operations = operations.into_iter().peekable();
        while let Some((position, operation)) = operations.next() {
            chunk_bytes += operation.document.as_ref().map_or(0, Vec::len) + operation.index.len() + 64;
            chunk.push((position, operation));
            let full = chunk.len() >= self.max_actions || chunk_bytes >= self.max_bytes;
            if full || operations.peek().is_none() {
                refused.extend(self.send_chunk(std::mem::take(&mut chunk))?);
                chunk_bytes = 0;
            }
        }
        Ok(refused)
    }

    fn send_chunk(&mut self, chunk: Vec<(usize, BulkOperation)>) -> Result<Vec<(usize, String)>, Error> {
        let (positions, operations): (Vec<usize>, Vec<BulkOperation>) = chunk.into_iter().unzip();
        let outcomes = elasticsearch::bulk(&self.connection, &operations)?;
        let mut refused = Vec::new();
        for ((position, operation), outcome) in positions.into_iter().zip(&operations).zip(outcomes) {
            let status = outcome.status;
            let written = (200..300).contains(&status)
                || (status == 404 && operation.action == BulkAction::Delete)
                || (status == 409 && operation.action == BulkAction::Create);
            if written {
                continue;
            }
            let reason = format!(
                "{} ({status}): {}",
                outcome.error_type.as_deref().unwrap_or("error"),
                outcome.reason.as_deref().unwrap_or("no reason given")
            );
            if status == 429 || status == 409 || status >= 500 {
                return Err(Error::Retriable(format!("index {} answered {reason}", operation.index)));
            }
            refused.push((position, format!("index {}: {reason}", operation.index)));
        }
        Ok(refused)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Sink for ElasticsearchSink {
    fn open(settings: &Settings) -> Result<Self, Error> {
        let bad = |message: String| Error::BadConfig(message);
        Ok(Self {
            connection: Connection {
                url: settings.string("url")?,
                api_key: settings.get("api_key").map(str::to_owned),
                username: settings.get("username").map(str::to_owned),
                password: settings.get("password").map(str::to_owned),
            },
            index: settings.string("index")?,
            document_id: DocumentId::parse(&settings.string("document_id")?).map_err(bad)?,
            action: parse_operation(&settings.string("operation")?).map_err(bad)?,
            max_actions: settings.integer("bulk_max_actions")?.max(1) as usize,
            max_bytes: settings.integer("bulk_max_bytes")?.max(1) as usize,
            mappings: settings.get("mappings").map(str::to_owned),
            prepared_indices: HashSet::new(),
            partial: PartialWrites::default(),
        })
    }

    fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error> {
        let to_write = self.partial.to_write(records)?;
        let mut refused = Vec::new();
        let mut operations = Vec::with_capacity(to_write.len());
        for position in &to_write {
            match self.operation_for(&records[*position]) {
                Ok(operation) => operations.push((*position, operation)),
                Err(reason) => refused.push((*position, reason)),
            }
        }
        let indices: HashSet<String> = operations.iter().map(|(_, operation)| operation.index.clone()).collect();
        for index in indices {
            self.prepare_index(&index)?;
        }
        refused.extend(self.send(operations)?);
        if !refused.is_empty() {
            log::debug(&format!("{} of {} records were refused", refused.len(), to_write.len()));
        }
        self.partial.settle(records, &to_write, refused)
    }
}

export_sink!(ElasticsearchSink);
