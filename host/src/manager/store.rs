//! Where the desired state persists, as keyed JSON documents: on the embedded
//! transport in `data_dir/state.sqlite3`; on Kafka in a compacted config topic, as
//! Kafka Connect keeps its `config.storage.topic` (which several hosts can share).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, params};

use crate::transport::{KafkaTransport, TransportError};

/// The desired state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the host's stored state ({location}): {reason}")]
pub struct StateStoreError {
    /// The database file or the config topic.
    pub location: String,
    /// What failed.
    pub reason: String,
}

/// A key-value store of JSON documents, the latest value per key.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Every key with its latest value.
    async fn load(&self) -> Result<BTreeMap<String, String>, StateStoreError>;
    /// Sets `key` (`None` removes it); returns once it is durable.
    async fn put(&self, key: &str, value: Option<String>) -> Result<(), StateStoreError>;
    /// Where the state lives, for logs.
    fn location(&self) -> String;
}

/// The desired state in SQLite under `data_dir`.
pub struct SqliteStateStore {
    connection: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStateStore {
    /// Opens (or creates) `data_dir/state.sqlite3`.
    pub fn open(data_dir: &Path) -> Result<Self, StateStoreError> {
        let path = data_dir.join("state.sqlite3");
        let fail = |error: &dyn std::fmt::Display| StateStoreError { location: path.display().to_string(), reason: error.to_string() };
        std::fs::create_dir_all(data_dir).map_err(|error| fail(&error))?;
        crate::data_dir::owner_only_file(&path).map_err(|error| fail(&error))?;
        let connection = Connection::open(&path).map_err(|error| fail(&error))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS desired_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )
            .map_err(|error| fail(&error))?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)), path })
    }

    async fn with_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StateStoreError> {
        let connection = self.connection.clone();
        let result = tokio::task::spawn_blocking(move || work(&connection.lock().expect("state store lock")))
            .await
            .map_err(|error| error.to_string())
            .and_then(|result| result.map_err(|error| error.to_string()));
        result.map_err(|reason| StateStoreError { location: self.location(), reason })
    }
}

#[async_trait]
impl StateStore for SqliteStateStore {
    async fn load(&self) -> Result<BTreeMap<String, String>, StateStoreError> {
        self.with_connection(|connection| {
            let mut statement = connection.prepare("SELECT key, value FROM desired_state")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    async fn put(&self, key: &str, value: Option<String>) -> Result<(), StateStoreError> {
        let key = key.to_owned();
        self.with_connection(move |connection| {
            match value {
                Some(value) => connection.execute(
                    "INSERT INTO desired_state (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key, value],
                )?,
                None => connection.execute("DELETE FROM desired_state WHERE key = ?1", params![key])?,
            };
            Ok(())
        })
        .await
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// The desired state in a compacted Kafka topic.
pub struct KafkaStateStore {
    transport: KafkaTransport,
    topic: String,
}

impl KafkaStateStore {
    /// The state in `topic` of the transport's cluster (created compacted if missing).
    pub fn new(transport: KafkaTransport, topic: &str) -> Self {
        Self { transport, topic: topic.to_owned() }
    }

    fn fail(&self, error: TransportError) -> StateStoreError {
        StateStoreError { location: self.location(), reason: error.to_string() }
    }
}

#[async_trait]
impl StateStore for KafkaStateStore {
    async fn load(&self) -> Result<BTreeMap<String, String>, StateStoreError> {
        self.transport.read_compacted(&self.topic, "the desired state").await.map_err(|error| self.fail(error))
    }

    async fn put(&self, key: &str, value: Option<String>) -> Result<(), StateStoreError> {
        self.transport.write_compacted(&self.topic, key, value.as_deref()).await.map_err(|error| self.fail(error))?;
        Ok(())
    }

    fn location(&self) -> String {
        format!("Kafka topic {}", self.topic)
    }
}
