//! `mongodb`: bulk writes and index creation through the `mongodb` crate. Writes use
//! the `insert`, `update` and `delete` commands (unordered, one command per run of
//! operations on one collection with one kind), which every MongoDB version since 2.6
//! understands, and report each operation's error by its index.

use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::redact_url;
use super::stores::{MAX_IN_FLIGHT_PER_ENDPOINT, REQUEST_ATTEMPTS, retry_pause};
use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::mongodb::{Host, IndexSpec, WriteKind, WriteOperation, WriteOutcome};
use crate::runtime::bindings::types::Error;

/// How long the driver looks for a usable server before a call fails (retriable).
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Operations in one write command; MongoDB accepts up to 100,000.
const MAX_OPERATIONS_PER_COMMAND: usize = 1000;
/// Bytes of documents in one write command; MongoDB's limit is 16 MiB plus overhead.
const MAX_BYTES_PER_COMMAND: usize = 8 << 20;
/// The code reported for a document the host cannot convert (MongoDB's BadValue).
const BAD_VALUE: i32 = 2;
/// Error codes that mean "try again" (primary stepping down, shutting down, ...).
const TRANSIENT_CODES: &[i32] = &[6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436];

/// One pooled client for one connection string.
pub(crate) struct MongodbClient {
    client: mongodb::Client,
    in_flight: Semaphore,
    shown_uri: String,
}

impl MongodbClient {
    pub(super) async fn new(uri: &str) -> Result<Self, Error> {
        let shown_uri = redact_url(uri);
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|error| Error::BadConfig(format!("the MongoDB URI {shown_uri} is not usable: {}", error.kind)))?;
        options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.app_name.get_or_insert_with(|| "wasm-connect".to_owned());
        let client = mongodb::Client::with_options(options)
            .map_err(|error| Error::BadConfig(format!("the MongoDB URI {shown_uri} is not usable: {}", error.kind)))?;
        Ok(Self { client, in_flight: Semaphore::new(MAX_IN_FLIGHT_PER_ENDPOINT), shown_uri })
    }

    /// Writes every operation and returns one outcome each.
    pub(crate) async fn bulk_write(&self, database: &str, operations: &[WriteOperation]) -> Result<Vec<WriteOutcome>, Error> {
        let mut outcomes: Vec<WriteOutcome> = operations.iter().map(|_| WriteOutcome { code: 0, message: None }).collect();
        let mut command: Option<Command> = None;
        for (position, operation) in operations.iter().enumerate() {
            let statement = match statement(operation) {
                Ok(statement) => statement,
                Err(message) => {
                    outcomes[position] = WriteOutcome { code: BAD_VALUE, message: Some(message) };
                    continue;
                }
            };
            // The JSON it came from is a close enough measure; serialising each
            // statement to BSON just to weigh it would do the driver's work twice.
            let size = operation.document.as_ref().map_or(0, Vec::len) + operation.filter.as_ref().map_or(0, Vec::len);
            let fits = command.as_ref().is_some_and(|command| {
                command.kind == operation.kind
                    && command.collection == operation.collection
                    && command.statements.len() < MAX_OPERATIONS_PER_COMMAND
                    && command.bytes + size <= MAX_BYTES_PER_COMMAND
            });
            if !fits && let Some(full) = command.take() {
                self.run(database, full, &mut outcomes).await?;
            }
            let current = command.get_or_insert_with(|| Command::new(operation));
            current.statements.push(statement);
            current.positions.push(position);
            current.bytes += size;
        }
        if let Some(last) = command {
            self.run(database, last, &mut outcomes).await?;
        }
        Ok(outcomes)
    }

    async fn run(&self, database: &str, command: Command, outcomes: &mut [WriteOutcome]) -> Result<(), Error> {
        let (verb, field) = match command.kind {
            WriteKind::Insert => ("insert", "documents"),
            WriteKind::Replace | WriteKind::Update => ("update", "updates"),
            WriteKind::Delete => ("delete", "deletes"),
        };
        let mut body = Document::new();
        body.insert(verb, command.collection.clone());
        body.insert(field, command.statements.into_iter().map(Bson::Document).collect::<Vec<_>>());
        body.insert("ordered", false);
        let reply = self.command(database, body).await?;
        if let Ok(concern) = reply.get_document("writeConcernError") {
            return Err(Error::Retriable(format!(
                "MongoDB at {} could not satisfy the write concern: {}",
                self.shown_uri,
                concern.get_str("errmsg").unwrap_or("no message")
            )));
        }
        if let Ok(errors) = reply.get_array("writeErrors") {
            for error in errors.iter().filter_map(Bson::as_document) {
                let index = error.get_i32("index").map(|index| index as usize).unwrap_or(usize::MAX);
                if let Some(position) = command.positions.get(index) {
                    outcomes[*position] = WriteOutcome {
                        code: error.get_i32("code").unwrap_or(-1),
                        message: error.get_str("errmsg").ok().map(str::to_owned),
                    };
                }
            }
        }
        Ok(())
    }

    /// Runs one command, retrying transient failures.
    async fn command(&self, database: &str, body: Document) -> Result<Document, Error> {
        let _permit = self.in_flight.acquire().await.expect("the semaphore is never closed");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.client.database(database).run_command(body.clone()).await {
                Ok(reply) => return Ok(reply),
                Err(error) => self.classify(&error),
            };
            if !matches!(failure, Error::Retriable(_)) || attempt >= REQUEST_ATTEMPTS {
                return Err(failure);
            }
            retry_pause(attempt).await;
        }
    }

    fn classify(&self, error: &mongodb::error::Error) -> Error {
        match error.kind.as_ref() {
            ErrorKind::Authentication { .. } => Error::Fatal(format!("MongoDB at {} refused the credentials in the URI", self.shown_uri)),
            ErrorKind::Command(command) if !TRANSIENT_CODES.contains(&command.code) => Error::Fatal(format!(
                "MongoDB at {} refused the command: {} ({}, code {})",
                self.shown_uri, command.message, command.code_name, command.code
            )),
            _ => Error::Retriable(format!("cannot reach MongoDB at {}: {}", self.shown_uri, first_line(&error.kind.to_string()))),
        }
    }

    /// Creates an index unless one with the same keys and options exists.
    pub(crate) async fn create_index(&self, database: &str, index: IndexSpec) -> Result<(), Error> {
        let keys = match extended_json(&index.keys) {
            Ok(keys) => keys,
            Err(message) => return Err(Error::BadConfig(format!("index keys: {message}"))),
        };
        let name = index.name.clone().unwrap_or_else(|| {
            keys.iter().map(|(key, direction)| format!("{key}_{}", direction.to_string().trim_matches('"'))).collect::<Vec<_>>().join("_")
        });
        let mut specification = doc! { "key": keys, "name": name };
        if index.unique {
            specification.insert("unique", true);
        }
        if let Some(seconds) = index.expire_after_seconds {
            specification.insert("expireAfterSeconds", seconds as i64);
        }
        self.command(database, doc! { "createIndexes": index.collection, "indexes": [specification] }).await.map(drop)
    }
}

/// A run of operations written by one command.
struct Command {
    kind: WriteKind,
    collection: String,
    statements: Vec<Document>,
    positions: Vec<usize>,
    bytes: usize,
}

impl Command {
    fn new(operation: &WriteOperation) -> Self {
        Self { kind: operation.kind, collection: operation.collection.clone(), statements: Vec::new(), positions: Vec::new(), bytes: 0 }
    }
}

/// The command entry of one operation: a document to insert, an update statement or
/// a delete statement.
fn statement(operation: &WriteOperation) -> Result<Document, String> {
    let filter = || -> Result<Document, String> {
        extended_json(operation.filter.as_deref().ok_or("the operation needs a filter")?).map_err(|message| format!("filter: {message}"))
    };
    let document = || -> Result<Document, String> { extended_json(operation.document.as_deref().ok_or("the operation needs a document")?) };
    Ok(match operation.kind {
        WriteKind::Insert => document()?,
        WriteKind::Replace => doc! { "q": filter()?, "u": document()?, "upsert": true },
        WriteKind::Update => doc! { "q": filter()?, "u": { "$set": document()? }, "upsert": true },
        WriteKind::Delete => doc! { "q": filter()?, "limit": 1 },
    })
}

/// A document from MongoDB Extended JSON (`{"$date": ...}`, `{"$oid": ...}`, ...).
fn extended_json(bytes: &[u8]) -> Result<Document, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| format!("not JSON: {error}"))?;
    match Bson::try_from(value).map_err(|error| format!("not valid Extended JSON: {error}"))? {
        Bson::Document(document) => Ok(document),
        other => Err(format!("expected a JSON object, found {}", other.element_type() as u8)),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(300).collect()
}

impl Host for TaskState {
    fn bulk_write(&mut self, uri: String, database: String, operations: Vec<WriteOperation>) -> Result<Vec<WriteOutcome>, Error> {
        self.grants.check_mongodb(&uri)?;
        self.write_to_store(|stores| {
            let client = stores.mongodb(&uri)?;
            stores.block_on(client.bulk_write(&database, &operations))
        })
    }

    fn create_index(&mut self, uri: String, database: String, index: IndexSpec) -> Result<(), Error> {
        self.grants.check_mongodb(&uri)?;
        self.in_host(|stores| {
            let client = stores.mongodb(&uri)?;
            stores.block_on(client.create_index(&database, index))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_json_dates_become_bson_dates() {
        let document = extended_json(br#"{"_id":"a","at":{"$date":"2024-01-15T10:00:00Z"},"n":3}"#).unwrap();
        assert!(matches!(document.get("at"), Some(Bson::DateTime(_))));
        assert_eq!(document.get_str("_id").unwrap(), "a");
        assert!(extended_json(b"[1]").is_err());
        assert!(extended_json(b"{broken").is_err());
    }

    #[test]
    fn statements_per_kind() {
        let operation = |kind| WriteOperation {
            kind,
            collection: "c".into(),
            filter: Some(br#"{"_id":"k"}"#.to_vec()),
            document: Some(br#"{"_id":"k","v":1}"#.to_vec()),
        };
        assert_eq!(
            statement(&operation(WriteKind::Update)).unwrap(),
            doc! { "q": {"_id": "k"}, "u": {"$set": {"_id": "k", "v": 1}}, "upsert": true }
        );
        assert_eq!(statement(&operation(WriteKind::Delete)).unwrap(), doc! { "q": {"_id": "k"}, "limit": 1 });
        assert_eq!(statement(&operation(WriteKind::Insert)).unwrap(), doc! { "_id": "k", "v": 1 });
    }
}
