//! The embedded transport: durable topics in one SQLite database (WAL mode) under
//! `data_dir`, for a pipeline on one machine with nothing else installed.
//!
//! A source batch and its source position are written in one transaction, so a
//! restarted source resumes exactly after what was stored. Offsets per partition
//! never go back, even after retention removed every record (`partition_heads`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;
use wasm_connect_protocol::Record;

use super::{
    PartitionOffset, PartitionOffsetChange, PartitionRange, RecordConsumer, RecordProducer, StartAt, TaskShare, TopicDescription,
    TopicReader, Transport, TransportError, TransportResult, next_offsets, partition_for_key,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partition_heads (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    timestamp INTEGER, key BLOB, value BLOB, headers BLOB, appended_at INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_age ON records (appended_at);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source_positions (connector TEXT PRIMARY KEY, position TEXT NOT NULL);
";

struct Shared {
    writer: Mutex<Connection>,
    database: std::path::PathBuf,
    default_partitions: u32,
    appended: Notify,
}

/// Topics in SQLite.
#[derive(Clone)]
pub struct EmbeddedTransport {
    shared: Arc<Shared>,
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(30))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    Ok(connection)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Runs blocking SQLite work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> TransportResult<T> + Send + 'static) -> TransportResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| TransportError::Other(format!("embedded store task failed: {error}")))?
}

impl EmbeddedTransport {
    /// Opens (or creates) the store at `data_dir/topics.sqlite3`.
    pub fn open(data_dir: &Path, default_partitions: u32) -> TransportResult<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|error| TransportError::Other(format!("cannot create {}: {error}", data_dir.display())))?;
        let database = data_dir.join("topics.sqlite3");
        crate::data_dir::owner_only_file(&database)
            .map_err(|error| TransportError::Other(format!("cannot create {}: {error}", database.display())))?;
        let writer = open_connection(&database)?;
        writer.execute_batch(SCHEMA)?;
        Ok(Self { shared: Arc::new(Shared { writer: Mutex::new(writer), database, default_partitions, appended: Notify::new() }) })
    }

    /// Deletes records appended longer ago than `retention`; returns how many.
    pub async fn apply_retention(&self, retention: Duration) -> TransportResult<usize> {
        let shared = self.shared.clone();
        blocking(move || {
            let cutoff = now_ms() - retention.as_millis() as i64;
            let writer = shared.writer.lock().expect("writer lock");
            Ok(writer.execute("DELETE FROM records WHERE appended_at < ?1", params![cutoff])?)
        })
        .await
    }

    /// Every record of a topic, in partition and offset order (for tests and tools).
    pub fn read_all(&self, topic: &str) -> TransportResult<Vec<Record>> {
        let connection = open_connection(&self.shared.database)?;
        let mut statement = connection.prepare(
            "SELECT topic, partition, offset, timestamp, key, value, headers FROM records WHERE topic = ?1 ORDER BY partition, offset",
        )?;
        let rows = statement.query_map(params![topic], record_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Up to `max` records at or after each `(topic, partition, next offset)`, in offset
/// order per partition, taking the partitions in turn from index `start`.
fn read_from(connection: &Connection, positions: &[(String, i32, i64)], start: usize, max: usize) -> rusqlite::Result<Vec<Record>> {
    let mut statement = connection.prepare_cached(
        "SELECT topic, partition, offset, timestamp, key, value, headers FROM records
         WHERE topic = ?1 AND partition = ?2 AND offset >= ?3 ORDER BY offset LIMIT ?4",
    )?;
    let mut records = Vec::new();
    for index in 0..positions.len() {
        let (topic, partition, next) = &positions[(start + index) % positions.len()];
        let remaining = max - records.len();
        if remaining == 0 {
            break;
        }
        for row in statement.query_map(params![topic, partition, next, remaining as i64], record_from_row)? {
            records.push(row?);
        }
    }
    Ok(records)
}

fn partitions_of(connection: &Connection, topic: &str, default_partitions: u32) -> rusqlite::Result<u32> {
    connection.execute("INSERT OR IGNORE INTO topics (name, partitions) VALUES (?1, ?2)", params![topic, default_partitions])?;
    connection.query_row("SELECT partitions FROM topics WHERE name = ?1", params![topic], |row| row.get(0))
}

fn encode_headers(record: &Record) -> Option<Vec<u8>> {
    (!record.headers.is_empty()).then(|| wasm_connect_protocol::encode(&[Record { headers: record.headers.clone(), ..Record::default() }]))
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let headers: Option<Vec<u8>> = row.get(6)?;
    let headers = headers
        .and_then(|bytes| {
            wasm_connect_protocol::decode(&bytes).ok().and_then(|records| records.first().map(|record| record.to_owned().headers))
        })
        .unwrap_or_default();
    Ok(Record {
        topic: row.get(0)?,
        partition: Some(row.get(1)?),
        offset: Some(row.get(2)?),
        timestamp: row.get(3)?,
        key: row.get(4)?,
        value: row.get(5)?,
        headers,
    })
}

#[async_trait]
impl Transport for EmbeddedTransport {
    async fn ensure_topics(&self, topics: &[String]) -> TransportResult<()> {
        let (shared, topics) = (self.shared.clone(), topics.to_vec());
        blocking(move || {
            let writer = shared.writer.lock().expect("writer lock");
            for topic in &topics {
                partitions_of(&writer, topic, shared.default_partitions)?;
            }
            Ok(())
        })
        .await
    }

    async fn source_position(&self, connector: &str) -> TransportResult<Option<String>> {
        let (shared, connector) = (self.shared.clone(), connector.to_owned());
        blocking(move || {
            let writer = shared.writer.lock().expect("writer lock");
            Ok(writer
                .query_row("SELECT position FROM source_positions WHERE connector = ?1", params![connector], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn producer(&self, connector: &str) -> TransportResult<Box<dyn RecordProducer>> {
        Ok(Box::new(EmbeddedProducer { shared: self.shared.clone(), connector: connector.to_owned(), round_robin: 0 }))
    }

    async fn consumer(&self, connector: &str, topics: &[String], share: TaskShare) -> TransportResult<Box<dyn RecordConsumer>> {
        let (shared, group, topics) = (self.shared.clone(), connector.to_owned(), topics.to_vec());
        let (connection, positions) = blocking(move || {
            let connection = open_connection(&shared.database)?;
            let mut positions = Vec::new();
            {
                let writer = shared.writer.lock().expect("writer lock");
                for topic in &topics {
                    for partition in 0..partitions_of(&writer, topic, shared.default_partitions)? {
                        if partition % share.tasks != share.task {
                            continue;
                        }
                        let committed: Option<i64> = writer
                            .query_row(
                                "SELECT next_offset FROM consumer_offsets WHERE grp = ?1 AND topic = ?2 AND partition = ?3",
                                params![group, topic, partition],
                                |row| row.get(0),
                            )
                            .optional()?;
                        positions.push((topic.clone(), partition as i32, committed.unwrap_or(0)));
                    }
                }
            }
            Ok((connection, positions))
        })
        .await?;
        Ok(Box::new(EmbeddedConsumer {
            shared: self.shared.clone(),
            group: connector.to_owned(),
            reader: Arc::new(Mutex::new(connection)),
            positions,
            next_partition: 0,
        }))
    }

    async fn committed_offsets(&self, connector: &str, topics: &[String]) -> TransportResult<Vec<PartitionOffset>> {
        let (shared, group, topics) = (self.shared.clone(), connector.to_owned(), topics.to_vec());
        blocking(move || {
            let writer = shared.writer.lock().expect("writer lock");
            let mut statement =
                writer.prepare("SELECT topic, partition, next_offset FROM consumer_offsets WHERE grp = ?1 ORDER BY topic, partition")?;
            let rows = statement
                .query_map(params![group], |row| Ok(PartitionOffset { topic: row.get(0)?, partition: row.get(1)?, offset: row.get(2)? }))?;
            let offsets: Vec<PartitionOffset> = rows.collect::<Result<_, _>>()?;
            Ok(offsets.into_iter().filter(|offset| topics.contains(&offset.topic)).collect())
        })
        .await
    }

    async fn alter_committed_offsets(&self, connector: &str, changes: Vec<PartitionOffsetChange>) -> TransportResult<()> {
        let (shared, group) = (self.shared.clone(), connector.to_owned());
        blocking(move || {
            let mut writer = shared.writer.lock().expect("writer lock");
            let transaction = writer.transaction()?;
            for change in changes {
                match change.offset {
                    Some(offset) => transaction.execute(
                        "INSERT INTO consumer_offsets (grp, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                        params![group, change.topic, change.partition, offset],
                    )?,
                    None => transaction.execute(
                        "DELETE FROM consumer_offsets WHERE grp = ?1 AND topic = ?2 AND partition = ?3",
                        params![group, change.topic, change.partition],
                    )?,
                };
            }
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn reset_committed_offsets(&self, connector: &str, topics: &[String]) -> TransportResult<()> {
        let (shared, group, topics) = (self.shared.clone(), connector.to_owned(), topics.to_vec());
        blocking(move || {
            let writer = shared.writer.lock().expect("writer lock");
            for topic in topics {
                writer.execute("DELETE FROM consumer_offsets WHERE grp = ?1 AND topic = ?2", params![group, topic])?;
            }
            Ok(())
        })
        .await
    }

    async fn set_source_position(&self, connector: &str, position: Option<&str>) -> TransportResult<()> {
        let (shared, connector, position) = (self.shared.clone(), connector.to_owned(), position.map(str::to_owned));
        blocking(move || {
            let writer = shared.writer.lock().expect("writer lock");
            match position {
                Some(position) => writer.execute(
                    "INSERT INTO source_positions (connector, position) VALUES (?1, ?2)
                     ON CONFLICT (connector) DO UPDATE SET position = excluded.position",
                    params![connector, position],
                )?,
                None => writer.execute("DELETE FROM source_positions WHERE connector = ?1", params![connector])?,
            };
            Ok(())
        })
        .await
    }

    async fn describe_topics(&self, only: Option<&str>) -> TransportResult<Vec<TopicDescription>> {
        let (database, only) = (self.shared.database.clone(), only.map(str::to_owned));
        blocking(move || {
            let connection = open_connection(&database)?;
            let topics: Vec<(String, i32)> = {
                let mut statement =
                    connection.prepare("SELECT name, partitions FROM topics WHERE ?1 IS NULL OR name = ?1 ORDER BY name")?;
                let rows = statement.query_map(params![only], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    let partitions =
                        (0..partitions).map(|partition| partition_range(&connection, &name, partition)).collect::<Result<_, _>>()?;
                    Ok(TopicDescription { name, partitions })
                })
                .collect()
        })
        .await
    }

    async fn reader(&self, topic: &str, partition: Option<i32>, start: StartAt) -> TransportResult<Box<dyn TopicReader>> {
        let (database, topic) = (self.shared.database.clone(), topic.to_owned());
        let (connection, partitions) = blocking(move || {
            let connection = open_connection(&database)?;
            let count: Option<i32> =
                connection.query_row("SELECT partitions FROM topics WHERE name = ?1", params![topic], |row| row.get(0)).optional()?;
            let Some(count) = count else {
                return Err(TransportError::Other(format!("there is no topic {topic}; `topics list` shows the topics")));
            };
            if let Some(wanted) = partition.filter(|wanted| !(0..count).contains(wanted)) {
                return Err(TransportError::Other(format!("topic {topic} has partitions 0 to {}, not {wanted}", count - 1)));
            }
            let mut partitions = Vec::new();
            for number in (0..count).filter(|number| partition.is_none_or(|wanted| wanted == *number)) {
                let range = partition_range(&connection, &topic, number)?;
                let next = match start {
                    StartAt::Beginning => range.start,
                    StartAt::End => range.end,
                    StartAt::Offset(offset) => offset.max(range.start),
                };
                partitions.push(ReaderPartition { topic: topic.clone(), range, next });
            }
            Ok((connection, partitions))
        })
        .await?;
        Ok(Box::new(EmbeddedReader { connection: Arc::new(Mutex::new(connection)), partitions }))
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}

/// The offsets a partition holds now.
fn partition_range(connection: &Connection, topic: &str, partition: i32) -> rusqlite::Result<PartitionRange> {
    let end: i64 = connection
        .query_row("SELECT next_offset FROM partition_heads WHERE topic = ?1 AND partition = ?2", params![topic, partition], |row| {
            row.get(0)
        })
        .optional()?
        .unwrap_or(0);
    let first: Option<i64> =
        connection.query_row("SELECT MIN(offset) FROM records WHERE topic = ?1 AND partition = ?2", params![topic, partition], |row| {
            row.get(0)
        })?;
    Ok(PartitionRange { partition, start: first.unwrap_or(end), end })
}

struct ReaderPartition {
    topic: String,
    /// The offsets when the reader started.
    range: PartitionRange,
    next: i64,
}

/// Reads with its own connection, polling for new records: another process (the
/// host) appends them, so there is no in-process notification to wait on.
struct EmbeddedReader {
    connection: Arc<Mutex<Connection>>,
    partitions: Vec<ReaderPartition>,
}

/// How often a waiting reader looks for new records.
const READER_POLL: Duration = Duration::from_millis(100);

#[async_trait]
impl TopicReader for EmbeddedReader {
    async fn next(&mut self, max: usize, wait: Duration) -> TransportResult<Vec<Record>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let connection = self.connection.clone();
            let positions: Vec<(String, i32, i64)> =
                self.partitions.iter().map(|partition| (partition.topic.clone(), partition.range.partition, partition.next)).collect();
            let records = blocking(move || Ok(read_from(&connection.lock().expect("reader lock"), &positions, 0, max)?)).await?;
            for next in next_offsets(&records) {
                if let Some(position) = self.partitions.iter_mut().find(|position| position.range.partition == next.partition) {
                    position.next = next.offset;
                }
            }
            if !records.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(records);
            }
            tokio::time::sleep(READER_POLL.min(deadline - tokio::time::Instant::now())).await;
        }
    }

    fn caught_up(&self) -> bool {
        self.partitions.iter().all(|partition| partition.next >= partition.range.end)
    }
}

struct EmbeddedProducer {
    shared: Arc<Shared>,
    connector: String,
    round_robin: u32,
}

#[async_trait]
impl RecordProducer for EmbeddedProducer {
    async fn send(&mut self, records: Vec<Record>, position: Option<String>) -> TransportResult<()> {
        let (shared, connector) = (self.shared.clone(), self.connector.clone());
        let mut round_robin = self.round_robin;
        let result = blocking(move || {
            let mut writer = shared.writer.lock().expect("writer lock");
            let transaction = writer.transaction()?;
            {
                let mut partitions: HashMap<String, u32> = HashMap::new();
                let mut heads: HashMap<(String, i32), i64> = HashMap::new();
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO records (topic, partition, offset, timestamp, key, value, headers, appended_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                let appended_at = now_ms();
                for record in &records {
                    let count = match partitions.get(&record.topic) {
                        Some(count) => *count,
                        None => {
                            let count = partitions_of(&transaction, &record.topic, shared.default_partitions)?;
                            partitions.insert(record.topic.clone(), count);
                            count
                        }
                    };
                    let partition = partition_for_key(record.key.as_deref(), count, &mut round_robin);
                    let head_key = (record.topic.clone(), partition);
                    let offset = match heads.get(&head_key) {
                        Some(next) => *next,
                        None => transaction
                            .query_row(
                                "SELECT next_offset FROM partition_heads WHERE topic = ?1 AND partition = ?2",
                                params![record.topic, partition],
                                |row| row.get(0),
                            )
                            .optional()?
                            .unwrap_or(0),
                    };
                    insert.execute(params![
                        record.topic,
                        partition,
                        offset,
                        record.timestamp,
                        record.key,
                        record.value,
                        encode_headers(record),
                        appended_at
                    ])?;
                    heads.insert(head_key, offset + 1);
                }
                let mut update_head = transaction.prepare_cached(
                    "INSERT INTO partition_heads (topic, partition, next_offset) VALUES (?1, ?2, ?3)
                     ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                )?;
                for ((topic, partition), next) in &heads {
                    update_head.execute(params![topic, partition, next])?;
                }
                if let Some(position) = &position {
                    transaction.execute(
                        "INSERT INTO source_positions (connector, position) VALUES (?1, ?2)
                         ON CONFLICT (connector) DO UPDATE SET position = excluded.position",
                        params![connector, position],
                    )?;
                }
            }
            transaction.commit()?;
            Ok(round_robin)
        })
        .await;
        self.round_robin = result?;
        self.shared.appended.notify_waiters();
        Ok(())
    }
}

struct EmbeddedConsumer {
    shared: Arc<Shared>,
    group: String,
    reader: Arc<Mutex<Connection>>,
    /// (topic, partition, next offset to read) for this task's partitions.
    positions: Vec<(String, i32, i64)>,
    next_partition: usize,
}

impl EmbeddedConsumer {
    async fn read(&mut self, max: usize) -> TransportResult<Vec<Record>> {
        let reader = self.reader.clone();
        let positions = self.positions.clone();
        let start = self.next_partition;
        // Start at a different partition each time so that none starves.
        let records = blocking(move || Ok(read_from(&reader.lock().expect("reader lock"), &positions, start, max)?)).await?;
        if !self.positions.is_empty() {
            self.next_partition = (self.next_partition + 1) % self.positions.len();
        }
        for next in next_offsets(&records) {
            if let Some(position) =
                self.positions.iter_mut().find(|(topic, partition, _)| *topic == next.topic && *partition == next.partition)
            {
                position.2 = next.offset;
            }
        }
        Ok(records)
    }
}

#[async_trait]
impl RecordConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> TransportResult<Vec<Record>> {
        if self.positions.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let shared = self.shared.clone();
        let appended = shared.appended.notified();
        let records = self.read(max).await?;
        if !records.is_empty() {
            return Ok(records);
        }
        let _ = tokio::time::timeout(wait, appended).await;
        self.read(max).await
    }

    async fn commit(&mut self, offsets: &[PartitionOffset]) -> TransportResult<()> {
        let (shared, group, offsets) = (self.shared.clone(), self.group.clone(), offsets.to_vec());
        blocking(move || {
            let mut writer = shared.writer.lock().expect("writer lock");
            let transaction = writer.transaction()?;
            for PartitionOffset { topic, partition, offset: next } in offsets {
                transaction.execute(
                    "INSERT INTO consumer_offsets (grp, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                    params![group, topic, partition, next],
                )?;
            }
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn lag(&mut self) -> TransportResult<u64> {
        let (reader, positions) = (self.reader.clone(), self.positions.clone());
        blocking(move || {
            let connection = reader.lock().expect("reader lock");
            let mut statement = connection.prepare_cached("SELECT next_offset FROM partition_heads WHERE topic = ?1 AND partition = ?2")?;
            let mut lag = 0;
            for (topic, partition, next) in &positions {
                let head: Option<i64> = statement.query_row(params![topic, partition], |row| row.get(0)).optional()?;
                lag += head.map_or(0, |head| (head - next).max(0) as u64);
            }
            Ok(lag)
        })
        .await
    }

    fn assigned_partitions(&self) -> usize {
        self.positions.len()
    }

    async fn close(&mut self) -> TransportResult<()> {
        Ok(())
    }
}
