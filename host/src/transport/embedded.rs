//! The embedded transport: durable topics in one SQLite database (WAL mode) under
//! `data_dir`, for a pipeline on one machine with nothing else installed.
//!
//! A source batch and its source position are written in one transaction, so a
//! restarted source resumes exactly after what was stored. Offsets per partition
//! never go back, even after retention removed every record (`partition_heads`).
//!
//! Records are stored as segments, as Kafka stores record batches: one row per
//! partition per appended batch, holding its records in the batch encoding the
//! plugins use, with the partition's offsets `base_offset ..` in order. SQLite then
//! works per batch rather than per record (one row per record and an index on its age
//! took about half of the host's CPU per record). Retention drops whole segments.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;
use wasm_connect_protocol::{BatchReader, BatchWriter, Record};

use super::{
    PartitionOffset, PartitionOffsetChange, PartitionRange, ProcessorCheckpoint, RecordConsumer, RecordProducer, StartAt, StateEntry,
    StatePage, StateQuery, TaskShare, TopicDescription, TopicReader, Transport, TransportError, TransportResult, next_offsets,
    partition_for_key,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partition_heads (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, base_offset INTEGER NOT NULL, count INTEGER NOT NULL,
    appended_at INTEGER NOT NULL, batch BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS segments_by_offset ON segments (topic, partition, base_offset);
CREATE INDEX IF NOT EXISTS segments_by_age ON segments (appended_at);
CREATE TABLE IF NOT EXISTS consumer_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source_positions (connector TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processor_state (
    connector TEXT NOT NULL, store TEXT NOT NULL, partition INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (connector, store, key, partition)) WITHOUT ROWID;
";

struct Shared {
    writer: Mutex<Connection>,
    /// Bytes of segments appended since the WAL was last copied into the database.
    unchecked_bytes: AtomicU64,
    /// Wakes the checkpointer (see [`start_checkpointer`]); it stops when this is dropped.
    checkpointer: SyncSender<()>,
    database: std::path::PathBuf,
    default_partitions: u32,
    /// Per topic, the consumers reading it: an append wakes only those.
    readers: Mutex<HashMap<String, Vec<Weak<Appended>>>>,
}

/// What a consumer hears of appends to its topics by this process.
#[derive(Default)]
struct Appended {
    /// Appends so far: a consumer that saw the same count at its last read skips the next.
    count: AtomicU64,
    /// Woken after each append.
    notify: Notify,
}

/// A consumer with nothing new reads anyway after this many quiet polls (about 2 s
/// at the task's 500 ms): `wasm-connect topics write`, another process, appends
/// without waking anyone here.
const READ_AFTER_QUIET_POLLS: u32 = 4;

impl Shared {
    /// Wakes the consumers of `topics` (a consumer that went away is forgotten).
    fn wake_readers<'t>(&self, topics: impl Iterator<Item = &'t str>) {
        let mut readers = self.readers.lock().expect("readers lock");
        for topic in topics {
            if let Some(waiting) = readers.get_mut(topic) {
                waiting.retain(|reader| {
                    let Some(reader) = reader.upgrade() else { return false };
                    // Counted before the wake: a consumer reads the count after it
                    // starts listening, so it either sees the count change or is woken.
                    reader.count.fetch_add(1, Ordering::SeqCst);
                    reader.notify.notify_waiters();
                    true
                });
            }
        }
    }
}

/// Topics in SQLite.
#[derive(Clone)]
pub struct EmbeddedTransport {
    shared: Arc<Shared>,
}

/// The page size of a new store, in bytes.
const PAGE_SIZE: i64 = 16 * 1024;

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(30))?;
    // Segments are tens of KB: 16 KiB pages carry them in a quarter of the pages (and
    // WAL frames, each with its header and checksum) that 4 KiB ones take; the host's
    // own path went from about 280 k to 340 k records/s (BENCHMARKS.md). Only a new
    // store takes it (before WAL mode is set): an existing one keeps its page size.
    connection.pragma_update(None, "page_size", PAGE_SIZE)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // Plans never depend on bound values. Since SQLite 3.54 the planner looks at the
    // value bound to a `column = ?` in a query with an `ORDER BY` (and STAT4 data, once
    // there is any, at others) and marks the statement to be prepared again when its
    // bindings are cleared; rusqlite's statement cache clears them each time a statement
    // goes back to it. A sink's every read was parsed and planned again: 28 % of the CPU
    // of 25 sources and 25 sinks at 1 record/s. A test counts re-preparations.
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(connection)
}

/// The WAL is copied into the database by a thread of its own once this much was
/// appended, off the appending task's path: checkpoints inside commits took about 12 %
/// of the host's CPU per record and stalled the source while they ran (BENCHMARKS.md).
const CHECKPOINT_BYTES: u64 = 4 << 20;
/// The WAL size after which a writer checkpoints inside its commit (SQLite's default
/// is 1,000 pages: 16 MiB of the new stores' pages; a store of 4 KiB pages gets the same
/// size in 4 times the pages). Under a steady stream the checkpointer's passive
/// checkpoints rarely catch the WAL's very end (appends go on meanwhile), and only a
/// fully copied WAL starts again from its beginning (at the next write, when no reader
/// is still in it): this checkpoint, with the writer's lock held, copies what is left
/// (what came during the checkpointer's last run) and lets the WAL restart, so it stays
/// near this size unless a reader holds it.
const WRITER_CHECKPOINT_BYTES: i64 = 16 << 20;
/// The size a WAL file is cut back to when it restarts, after a reader held it longer.
const WAL_SIZE_LIMIT: i64 = 32 << 20;

/// Starts the thread that copies the WAL into the database (a passive checkpoint: it
/// never blocks readers or writers) when woken after [`CHECKPOINT_BYTES`] of appends.
fn start_checkpointer(database: &Path) -> TransportResult<SyncSender<()>> {
    let connection = open_connection(database)?;
    let (wake, woken) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("store-checkpoint".to_owned())
        .spawn(move || {
            while woken.recv().is_ok() {
                let checkpoint = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(error) = checkpoint {
                    tracing::warn!(%error, "embedded store: copying the WAL into the database failed; a later append retries");
                }
            }
        })
        .map_err(|error| TransportError::Other(format!("cannot start the embedded store's checkpoint thread: {error}")))?;
    Ok(wake)
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
        let mut writer = open_connection(&database)?;
        writer.execute_batch(SCHEMA)?;
        migrate_records_to_segments(&mut writer)?;
        let page_size: i64 = writer.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_BYTES / page_size)?;
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        let checkpointer = start_checkpointer(&database)?;
        Ok(Self {
            shared: Arc::new(Shared {
                writer: Mutex::new(writer),
                unchecked_bytes: AtomicU64::new(0),
                checkpointer,
                database,
                default_partitions,
                readers: Mutex::default(),
            }),
        })
    }

    /// Deletes records appended longer ago than `retention`; returns how many.
    pub async fn apply_retention(&self, retention: Duration) -> TransportResult<usize> {
        let shared = self.shared.clone();
        blocking(move || {
            let cutoff = now_ms() - retention.as_millis() as i64;
            Ok(delete_appended_before(&shared.writer.lock().expect("writer lock"), cutoff)?)
        })
        .await
    }

    /// Every record of a topic, in partition and offset order (for tests and tools).
    pub fn read_all(&self, topic: &str) -> TransportResult<Vec<Record>> {
        let connection = open_connection(&self.shared.database)?;
        let partitions: u32 = connection
            .query_row("SELECT partitions FROM topics WHERE name = ?1", params![topic], |row| row.get(0))
            .optional()?
            .unwrap_or(0);
        let mut records = Vec::new();
        for partition in 0..partitions as i32 {
            records.extend(read_partition(&connection, topic, partition, 0, usize::MAX)?);
        }
        Ok(records)
    }
}

/// Deletes the segments appended before `cutoff` (ms since the epoch); how many
/// records they held.
fn delete_appended_before(connection: &Connection, cutoff: i64) -> rusqlite::Result<usize> {
    let expired: i64 =
        connection.query_row("SELECT COALESCE(SUM(count), 0) FROM segments WHERE appended_at < ?1", params![cutoff], |row| row.get(0))?;
    connection.execute("DELETE FROM segments WHERE appended_at < ?1", params![cutoff])?;
    Ok(expired as usize)
}

/// The bytes a record takes in a segment, near enough to bound a segment's size.
fn segment_bytes(record: &Record) -> usize {
    40 + record.key.as_ref().map_or(0, Vec::len)
        + record.value.as_ref().map_or(0, Vec::len)
        + record.headers.iter().map(|(name, value)| 8 + name.len() + value.as_ref().map_or(0, Vec::len)).sum::<usize>()
}

/// Up to `max` records at or after each `(topic, partition, next offset)`, in offset
/// order per partition, taking the partitions in turn from index `start`.
fn read_from(connection: &Connection, positions: &[(String, i32, i64)], start: usize, max: usize) -> TransportResult<Vec<Record>> {
    let mut records = Vec::new();
    for index in 0..positions.len() {
        let (topic, partition, next) = &positions[(start + index) % positions.len()];
        let remaining = max - records.len();
        if remaining == 0 {
            break;
        }
        records.extend(read_partition(connection, topic, *partition, *next, remaining)?);
    }
    Ok(records)
}

/// The segments of a partition from the one that holds offset `?3` (or the first one
/// after it) on.
const READ_PARTITION: &str = "SELECT base_offset, batch FROM segments WHERE topic = ?1 AND partition = ?2 AND base_offset >= COALESCE(
        (SELECT MAX(base_offset) FROM segments WHERE topic = ?1 AND partition = ?2 AND base_offset <= ?3), 0)
        AND base_offset + count > ?3
    ORDER BY base_offset";

/// Up to `max` records of one partition from offset `next` on: from the segment that
/// holds `next` (or the first one after it, when retention took it) onwards.
fn read_partition(connection: &Connection, topic: &str, partition: i32, next: i64, max: usize) -> TransportResult<Vec<Record>> {
    let mut statement = connection.prepare_cached(READ_PARTITION)?;
    let mut rows = statement.query(params![topic, partition, next])?;
    let mut records = Vec::new();
    while records.len() < max {
        let Some(row) = rows.next()? else { break };
        let base_offset: i64 = row.get(0)?;
        let batch = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        let mut reader = BatchReader::new(batch).map_err(|error| damaged(topic, partition, base_offset, error))?;
        let mut offset = base_offset;
        while records.len() < max {
            let Some(view) = reader.next_record().map_err(|error| damaged(topic, partition, base_offset, error))? else { break };
            if offset >= next {
                records.push(Record {
                    topic: topic.to_owned(),
                    partition: Some(partition),
                    offset: Some(offset),
                    timestamp: view.timestamp,
                    key: view.key.map(<[u8]>::to_vec),
                    value: view.value.map(<[u8]>::to_vec),
                    headers: view.headers.iter().map(|(name, value)| ((*name).to_owned(), value.map(<[u8]>::to_vec))).collect(),
                });
            }
            offset += 1;
        }
    }
    Ok(records)
}

fn damaged(topic: &str, partition: i32, base_offset: i64, error: wasm_connect_protocol::DecodeError) -> TransportError {
    TransportError::Other(format!(
        "the segment of {topic}[{partition}] from offset {base_offset} in topics.sqlite3 is damaged ({error}); restore data_dir from a backup"
    ))
}

/// Moves the records of a store written before segments (a `records` table, one row
/// per record) into segments of up to 1,000 consecutive offsets, in one transaction.
/// A segment's age is that of its newest record, so retention keeps every record at
/// least as long as before.
fn migrate_records_to_segments(connection: &mut Connection) -> TransportResult<()> {
    let exists = "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records')";
    if !connection.query_row(exists, [], |row| row.get::<_, bool>(0))? {
        return Ok(());
    }
    /// The segment being filled.
    struct Open {
        topic: String,
        partition: i32,
        base_offset: i64,
        next_offset: i64,
        appended_at: i64,
        batch: BatchWriter,
    }
    // Checked again under the write lock: another process (a `topics` command) may have
    // opened the same store and moved the records first.
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if !transaction.query_row(exists, [], |row| row.get::<_, bool>(0))? {
        return Ok(());
    }
    {
        let mut select = transaction.prepare(
            "SELECT topic, partition, offset, timestamp, key, value, headers, appended_at FROM records ORDER BY topic, partition, offset",
        )?;
        let mut insert = transaction
            .prepare("INSERT INTO segments (topic, partition, base_offset, count, appended_at, batch) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        let mut flush = |segment: Open| {
            let count = segment.batch.len() as i64;
            insert.execute(params![
                segment.topic,
                segment.partition,
                segment.base_offset,
                count,
                segment.appended_at,
                segment.batch.finish()
            ])
        };
        let mut open: Option<Open> = None;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let (topic, partition, offset): (String, i32, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let appended_at: i64 = row.get(7)?;
            let continues = open.as_ref().is_some_and(|segment| {
                segment.topic == topic
                    && segment.partition == partition
                    && segment.next_offset == offset
                    && segment.batch.len() < SEGMENT_RECORDS
            });
            if !continues && let Some(full) = open.take() {
                flush(full)?;
            }
            let segment = open.get_or_insert_with(|| Open {
                topic,
                partition,
                base_offset: offset,
                next_offset: offset,
                appended_at,
                batch: BatchWriter::default(),
            });
            let headers: Option<Vec<u8>> = row.get(6)?;
            let headers = headers
                .and_then(|bytes| {
                    wasm_connect_protocol::decode(&bytes).ok().and_then(|records| records.first().map(|record| record.to_owned().headers))
                })
                .unwrap_or_default();
            let (key, value): (Option<Vec<u8>>, Option<Vec<u8>>) = (row.get(4)?, row.get(5)?);
            segment.batch.push_parts(
                "",
                None,
                None,
                row.get(3)?,
                key.as_deref(),
                value.as_deref(),
                headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())),
            );
            segment.next_offset = offset + 1;
            segment.appended_at = segment.appended_at.max(appended_at);
        }
        if let Some(last) = open {
            flush(last)?;
        }
    }
    transaction.execute_batch("DROP TABLE records;")?;
    transaction.commit()?;
    Ok(())
}

/// The most records a segment holds.
const SEGMENT_RECORDS: usize = 1000;
/// A segment takes no more records once it holds this many bytes.
const SEGMENT_BYTES: usize = 1 << 20;

fn partitions_of(connection: &Connection, topic: &str, default_partitions: u32) -> rusqlite::Result<u32> {
    connection
        .prepare_cached("INSERT OR IGNORE INTO topics (name, partitions) VALUES (?1, ?2)")?
        .execute(params![topic, default_partitions])?;
    connection.prepare_cached("SELECT partitions FROM topics WHERE name = ?1")?.query_row(params![topic], |row| row.get(0))
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
        let subscribed = topics.to_vec();
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
        let appended = Arc::new(Appended::default());
        {
            let mut readers = self.shared.readers.lock().expect("readers lock");
            for topic in subscribed {
                let waiting = readers.entry(topic).or_default();
                // Consumers that went away, on a topic this process does not append to.
                waiting.retain(|reader| reader.strong_count() > 0);
                waiting.push(Arc::downgrade(&appended));
            }
        }
        Ok(Box::new(EmbeddedConsumer {
            shared: self.shared.clone(),
            group: connector.to_owned(),
            reader: Arc::new(Mutex::new(connection)),
            positions,
            next_partition: 0,
            appended,
            seen: 0,
            unread: true,
            quiet_polls: 0,
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

    async fn processor_state(&self, connector: &str, partitions: Option<&[i32]>) -> TransportResult<Vec<StateEntry>> {
        let (database, connector, partitions) = (self.shared.database.clone(), connector.to_owned(), partitions.map(<[i32]>::to_vec));
        blocking(move || {
            let connection = open_connection(&database)?;
            // One scan of the connector's state (its key order serves queries by key).
            let mut statement = connection.prepare("SELECT store, partition, key, value FROM processor_state WHERE connector = ?1")?;
            let rows = statement.query_map(params![connector], |row| {
                Ok(StateEntry { store: row.get(0)?, partition: row.get(1)?, key: row.get(2)?, value: row.get(3)? })
            })?;
            let mut entries = Vec::new();
            for row in rows {
                let entry = row?;
                if partitions.as_ref().is_none_or(|partitions| partitions.contains(&entry.partition)) {
                    entries.push(entry);
                }
            }
            Ok(entries)
        })
        .await
    }

    async fn query_processor_state(&self, connector: &str, query: StateQuery) -> TransportResult<StatePage> {
        use rusqlite::types::Value;
        let (database, connector) = (self.shared.database.clone(), connector.to_owned());
        blocking(move || {
            let connection = open_connection(&database)?;
            // Only fixed fragments make up the statement; every value is bound. The key
            // order of the table (connector, store, key, partition) is the page order.
            let mut filter = String::from("connector = ?");
            let mut values = vec![Value::Text(connector)];
            if let Some(store) = query.store {
                filter.push_str(" AND store = ?");
                values.push(Value::Text(store));
            }
            match query.key {
                Some(key) if query.exact => {
                    filter.push_str(" AND key = ?");
                    values.push(Value::Blob(key));
                }
                Some(prefix) if !prefix.is_empty() => {
                    filter.push_str(" AND key >= ?");
                    if let Some(above) = prefix_successor(&prefix) {
                        filter.push_str(" AND key < ?");
                        values.push(Value::Blob(prefix));
                        values.push(Value::Blob(above));
                    } else {
                        values.push(Value::Blob(prefix));
                    }
                }
                _ => {}
            }
            let total: i64 = connection.query_row(
                &format!("SELECT COUNT(*) FROM processor_state WHERE {filter}"),
                rusqlite::params_from_iter(values.iter()),
                |row| row.get(0),
            )?;
            let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
            let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
            values.extend([Value::Integer(limit), Value::Integer(offset)]);
            let mut statement = connection.prepare(&format!(
                "SELECT store, partition, key, value FROM processor_state WHERE {filter} ORDER BY store, key, partition LIMIT ? OFFSET ?"
            ))?;
            let entries = statement
                .query_map(rusqlite::params_from_iter(values.iter()), |row| {
                    Ok(StateEntry { store: row.get(0)?, partition: row.get(1)?, key: row.get(2)?, value: row.get(3)? })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(StatePage { total: usize::try_from(total).unwrap_or(0), entries })
        })
        .await
    }

    async fn clear_processor_state(&self, connector: &str, topics: &[String]) -> TransportResult<()> {
        let (shared, connector, topics) = (self.shared.clone(), connector.to_owned(), topics.to_vec());
        blocking(move || {
            let mut writer = shared.writer.lock().expect("writer lock");
            // One transaction: a crash in between would leave state without the offsets
            // that built it, or offsets without their state.
            let transaction = writer.transaction()?;
            transaction.execute("DELETE FROM processor_state WHERE connector = ?1", params![connector])?;
            for topic in topics {
                transaction.execute("DELETE FROM consumer_offsets WHERE grp = ?1 AND topic = ?2", params![connector, topic])?;
            }
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}

/// The smallest byte string above every string that starts with `prefix` (None when
/// there is none: the prefix is all 0xff bytes).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut above = prefix.to_vec();
    while let Some(last) = above.pop() {
        if last < u8::MAX {
            above.push(last + 1);
            return Some(above);
        }
    }
    None
}

/// The offsets a partition holds now.
fn partition_range(connection: &Connection, topic: &str, partition: i32) -> rusqlite::Result<PartitionRange> {
    let end: i64 = connection
        .query_row("SELECT next_offset FROM partition_heads WHERE topic = ?1 AND partition = ?2", params![topic, partition], |row| {
            row.get(0)
        })
        .optional()?
        .unwrap_or(0);
    let first: Option<i64> = connection.query_row(
        "SELECT MIN(base_offset) FROM segments WHERE topic = ?1 AND partition = ?2",
        params![topic, partition],
        |row| row.get(0),
    )?;
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
            let records = blocking(move || read_from(&connection.lock().expect("reader lock"), &positions, 0, max)).await?;
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

impl EmbeddedProducer {
    /// Runs `extra` in the transaction that appends `records`, then wakes their readers.
    async fn append_with(
        &mut self,
        records: Vec<Record>,
        extra: impl FnOnce(&rusqlite::Transaction<'_>, &str) -> rusqlite::Result<()> + Send + 'static,
    ) -> TransportResult<()> {
        let (shared, connector) = (self.shared.clone(), self.connector.clone());
        let mut round_robin = self.round_robin;
        // The topics written, each once (a batch usually goes to one), whose readers wake.
        let mut topics: Vec<String> = Vec::new();
        for record in &records {
            if !topics.contains(&record.topic) {
                topics.push(record.topic.clone());
            }
        }
        let result = blocking(move || {
            let mut writer = shared.writer.lock().expect("writer lock");
            let transaction = writer.transaction()?;
            let appended_bytes = append(&transaction, &shared, &records, &mut round_robin)?;
            extra(&transaction, &connector)?;
            transaction.commit()?;
            // Counted under the writer's lock (held to the end of this closure), so that
            // no append's bytes are lost between another's count and reset.
            if shared.unchecked_bytes.fetch_add(appended_bytes, Ordering::Relaxed) + appended_bytes >= CHECKPOINT_BYTES {
                shared.unchecked_bytes.store(0, Ordering::Relaxed);
                // Already woken (full) or gone: either way nothing to do here.
                let _ = shared.checkpointer.try_send(());
            }
            Ok(round_robin)
        })
        .await;
        self.round_robin = result?;
        self.shared.wake_readers(topics.iter().map(String::as_str));
        Ok(())
    }
}

/// Appends `records` in `transaction`; returns the bytes of the segments written.
fn append(transaction: &rusqlite::Transaction<'_>, shared: &Shared, records: &[Record], round_robin: &mut u32) -> rusqlite::Result<u64> {
    let mut appended_bytes = 0;
    // A segment per (topic, partition) the batch touches, its records in the order they
    // came; a large batch makes several, so that a reader never decodes more than one
    // segment's worth to find its place.
    let mut partitions: HashMap<&str, u32> = HashMap::new();
    let mut segments: Vec<(&str, i32, BatchWriter, usize)> = Vec::new();
    for record in records {
        let count = match partitions.get(record.topic.as_str()) {
            Some(count) => *count,
            None => {
                let count = partitions_of(transaction, &record.topic, shared.default_partitions)?;
                partitions.insert(&record.topic, count);
                count
            }
        };
        let partition = partition_for_key(record.key.as_deref(), count, round_robin);
        let open = segments.iter().rposition(|(topic, number, batch, bytes)| {
            *number == partition && *topic == record.topic && batch.len() < SEGMENT_RECORDS && *bytes < SEGMENT_BYTES
        });
        let index = open.unwrap_or_else(|| {
            segments.push((&record.topic, partition, BatchWriter::with_capacity(0), 0));
            segments.len() - 1
        });
        segments[index].3 += segment_bytes(record);
        segments[index].2.push_parts(
            "",
            None,
            None,
            record.timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            record.headers.iter().map(|(name, value)| (name.as_str(), value.as_deref())),
        );
    }
    let mut head = transaction.prepare_cached("SELECT next_offset FROM partition_heads WHERE topic = ?1 AND partition = ?2")?;
    let mut insert = transaction.prepare_cached(
        "INSERT INTO segments (topic, partition, base_offset, count, appended_at, batch) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut update_head = transaction.prepare_cached(
        "INSERT INTO partition_heads (topic, partition, next_offset) VALUES (?1, ?2, ?3)
         ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
    )?;
    let appended_at = now_ms();
    for (topic, partition, batch, _) in segments {
        let base_offset: i64 = head.query_row(params![topic, partition], |row| row.get(0)).optional()?.unwrap_or(0);
        let count = batch.len() as i64;
        let batch = batch.finish();
        appended_bytes += batch.len() as u64;
        insert.execute(params![topic, partition, base_offset, count, appended_at, batch])?;
        update_head.execute(params![topic, partition, base_offset + count])?;
    }
    Ok(appended_bytes)
}

/// Moves a consumer group's committed offsets forward (never back) in `connection`.
fn commit_offsets(connection: &Connection, group: &str, offsets: &[PartitionOffset]) -> rusqlite::Result<()> {
    let mut upsert = connection.prepare_cached(
        "INSERT INTO consumer_offsets (grp, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
    )?;
    for PartitionOffset { topic, partition, offset: next } in offsets {
        upsert.execute(params![group, topic, partition, next])?;
    }
    Ok(())
}

#[async_trait]
impl RecordProducer for EmbeddedProducer {
    async fn send(&mut self, records: Vec<Record>, position: Option<String>) -> TransportResult<()> {
        self.append_with(records, move |transaction, connector| {
            if let Some(position) = &position {
                transaction
                    .prepare_cached(
                        "INSERT INTO source_positions (connector, position) VALUES (?1, ?2)
                         ON CONFLICT (connector) DO UPDATE SET position = excluded.position",
                    )?
                    .execute(params![connector, position])?;
            }
            Ok(())
        })
        .await
    }

    async fn send_processed(&mut self, records: Vec<Record>, checkpoint: ProcessorCheckpoint) -> TransportResult<()> {
        // One transaction: the output records, the state changes and the input offsets.
        self.append_with(records, move |transaction, connector| {
            commit_offsets(transaction, connector, &checkpoint.offsets)?;
            let mut put = transaction.prepare_cached(
                "INSERT INTO processor_state (connector, store, partition, key, value) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (connector, store, key, partition) DO UPDATE SET value = excluded.value",
            )?;
            let mut delete = transaction
                .prepare_cached("DELETE FROM processor_state WHERE connector = ?1 AND store = ?2 AND partition = ?3 AND key = ?4")?;
            for change in &checkpoint.state {
                match &change.value {
                    Some(value) => put.execute(params![connector, change.store, change.partition, change.key, value])?,
                    None => delete.execute(params![connector, change.store, change.partition, change.key])?,
                };
            }
            Ok(())
        })
        .await
    }
}

struct EmbeddedConsumer {
    shared: Arc<Shared>,
    group: String,
    reader: Arc<Mutex<Connection>>,
    /// (topic, partition, next offset to read) for this task's partitions.
    positions: Vec<(String, i32, i64)>,
    next_partition: usize,
    /// Woken when a batch is appended to one of its topics.
    appended: Arc<Appended>,
    /// `appended.count` before the last read.
    seen: u64,
    /// The last read may have left records behind (it returned some, up to `max`).
    unread: bool,
    /// Polls since the last read that ended without an append.
    quiet_polls: u32,
}

impl EmbeddedConsumer {
    /// [`Self::read`], noting what it saw: `count` appends, and whether it may have
    /// left records behind.
    async fn read_noting(&mut self, max: usize, count: u64) -> TransportResult<Vec<Record>> {
        self.seen = count;
        self.quiet_polls = 0;
        let records = self.read(max).await?;
        self.unread = !records.is_empty();
        Ok(records)
    }

    async fn read(&mut self, max: usize) -> TransportResult<Vec<Record>> {
        let reader = self.reader.clone();
        let positions = self.positions.clone();
        let start = self.next_partition;
        // Start at a different partition each time so that none starves.
        let records = blocking(move || read_from(&reader.lock().expect("reader lock"), &positions, start, max)).await?;
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
        let appended = self.appended.clone();
        // Listening starts before the count is read: an append after this either
        // changed the count read below or wakes the wait.
        let woken = appended.notify.notified();
        let count = appended.count.load(Ordering::SeqCst);
        if self.unread || count != self.seen || self.quiet_polls >= READ_AFTER_QUIET_POLLS {
            let records = self.read_noting(max, count).await?;
            if !records.is_empty() {
                return Ok(records);
            }
        }
        if tokio::time::timeout(wait, woken).await.is_err() {
            self.quiet_polls += 1;
            return Ok(Vec::new());
        }
        let count = appended.count.load(Ordering::SeqCst);
        self.read_noting(max, count).await
    }

    async fn commit(&mut self, offsets: &[PartitionOffset]) -> TransportResult<()> {
        let (shared, group, offsets) = (self.shared.clone(), self.group.clone(), offsets.to_vec());
        blocking(move || {
            let mut writer = shared.writer.lock().expect("writer lock");
            let transaction = writer.transaction()?;
            commit_offsets(&transaction, &group, &offsets)?;
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

    fn partition_numbers(&self) -> Vec<i32> {
        let mut numbers: Vec<i32> = self.positions.iter().map(|(_, partition, _)| *partition).collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    }

    async fn close(&mut self) -> TransportResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::StateChange;

    fn record(key: Option<&str>, value: &str) -> Record {
        Record {
            topic: "t".into(),
            timestamp: Some(7),
            key: key.map(|key| key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![("h".into(), Some(b"v".to_vec())), ("empty".into(), None)],
            ..Record::default()
        }
    }

    fn values(records: &[Record]) -> Vec<(i32, i64, String)> {
        records
            .iter()
            .map(|record| (record.partition.unwrap(), record.offset.unwrap(), String::from_utf8(record.value.clone().unwrap()).unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn a_new_store_takes_16_kib_pages_and_an_old_one_keeps_its_own() {
        let page_size =
            |path: &Path| -> i64 { Connection::open(path).unwrap().query_row("PRAGMA page_size", [], |row| row.get(0)).unwrap() };
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedTransport::open(directory.path(), 1).unwrap();
        store.producer("source").await.unwrap().send(vec![record(None, "new")], None).await.unwrap();
        assert_eq!(page_size(&directory.path().join("topics.sqlite3")), PAGE_SIZE);
        let writer_checkpoint_pages = |store: &EmbeddedTransport| -> i64 {
            store.shared.writer.lock().unwrap().query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0)).unwrap()
        };
        assert_eq!(writer_checkpoint_pages(&store), 1024);
        // A store made before, with SQLite's default pages, opens and takes appends as it is.
        let old = tempfile::tempdir().unwrap();
        let database = old.path().join("topics.sqlite3");
        let connection = Connection::open(&database).unwrap();
        connection.pragma_update(None, "journal_mode", "WAL").unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        drop(connection);
        let store = EmbeddedTransport::open(old.path(), 1).unwrap();
        store.producer("source").await.unwrap().send(vec![record(None, "old")], None).await.unwrap();
        assert_eq!(values(&store.read_all("t").unwrap()), vec![(0, 0, "old".to_owned())]);
        assert_eq!(page_size(&database), 4096);
        // The writer checkpoints at the same WAL size: 4 times the pages.
        assert_eq!(writer_checkpoint_pages(&store), 4096);
    }

    #[tokio::test]
    async fn the_wal_is_copied_into_the_database_off_the_appending_path() {
        let directory = tempfile::tempdir().unwrap();
        let database = directory.path().join("topics.sqlite3");
        let store = EmbeddedTransport::open(directory.path(), 1).unwrap();
        let mut producer = store.producer("source").await.unwrap();
        // Twice the checkpoint's threshold, far below where a writer checkpoints itself.
        let value = "v".repeat(64 << 10);
        let batches = (2 * CHECKPOINT_BYTES) as usize / (8 * value.len());
        assert!(2 * CHECKPOINT_BYTES < WRITER_CHECKPOINT_BYTES as u64);
        for batch in 0..batches {
            producer.send((0..8).map(|n| record(None, &format!("{batch}-{n}-{value}"))).collect(), Some(batch.to_string())).await.unwrap();
        }
        // Only the checkpointer moves segments into the database file itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&database).unwrap().len() < CHECKPOINT_BYTES {
            assert!(std::time::Instant::now() < deadline, "no checkpoint: {} bytes", std::fs::metadata(&database).unwrap().len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all = store.read_all("t").unwrap();
        assert_eq!(all.len(), batches * 8);
        assert!(
            all.iter().enumerate().all(|(n, record)| record
                .value
                .as_deref()
                .unwrap()
                .starts_with(format!("{}-{}-", n / 8, n % 8).as_bytes()))
        );
        // The thread goes with the store (its connection closed: the database opens exclusively).
        drop(producer);
        drop(store);
        let connection = Connection::open(&database).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while connection
            .pragma_update(None, "locking_mode", "EXCLUSIVE")
            .and_then(|()| connection.execute_batch("BEGIN EXCLUSIVE; COMMIT;"))
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "the checkpointer kept the database open");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn a_read_uses_its_prepared_statement_as_it_is() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedTransport::open(directory.path(), 1).unwrap();
        let mut producer = store.producer("source").await.unwrap();
        for batch in 0..3 {
            producer.send((0..4).map(|n| record(None, &format!("{batch}-{n}"))).collect(), None).await.unwrap();
        }
        let connection = open_connection(&directory.path().join("topics.sqlite3")).unwrap();
        for next in [0, 5, 11, 12] {
            let read = read_partition(&connection, "t", 0, next, 100).unwrap();
            assert_eq!(read.first().and_then(|record| record.offset), (next < 12).then_some(next));
            assert_eq!(read.len(), 12 - next as usize);
        }
        let statement = connection.prepare_cached(READ_PARTITION).unwrap();
        assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0, "the read was planned again");
        assert_eq!(statement.get_status(rusqlite::StatementStatus::Run), 4);
        // Both lookups search the segments' index.
        let mut plan = connection.prepare(&format!("EXPLAIN QUERY PLAN {READ_PARTITION}")).unwrap();
        let steps: Vec<String> = plan.query_map(params!["t", 0, 5], |row| row.get(3)).unwrap().map(Result::unwrap).collect();
        assert!(steps.iter().all(|step| !step.starts_with("SCAN")), "{steps:?}");
        assert_eq!(steps.iter().filter(|step| step.contains("INDEX segments_by_offset (topic=? AND partition=?")).count(), 2, "{steps:?}");
    }

    #[tokio::test]
    async fn segments_keep_every_field_offsets_per_partition_and_reads_from_inside_a_segment() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedTransport::open(directory.path(), 2).unwrap();
        let mut producer = store.producer("source").await.unwrap();
        // Keyless records go round robin; the second batch continues each partition.
        producer.send((0..5).map(|n| record(None, &format!("a{n}"))).collect(), Some("5".into())).await.unwrap();
        producer.send((0..3).map(|n| record(None, &format!("b{n}"))).collect(), None).await.unwrap();
        let all = store.read_all("t").unwrap();
        assert_eq!(all.len(), 8);
        assert!(all.iter().all(|record| record.timestamp == Some(7) && record.topic == "t"));
        assert_eq!(all[0].headers, vec![("h".to_owned(), Some(b"v".to_vec())), ("empty".to_owned(), None)]);
        let mut by_partition: Vec<Vec<i64>> = vec![Vec::new(), Vec::new()];
        for record in &all {
            by_partition[record.partition.unwrap() as usize].push(record.offset.unwrap());
        }
        for offsets in &by_partition {
            assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "offsets of a partition are 0, 1, 2, ...");
        }
        assert_eq!(store.source_position("source").await.unwrap().as_deref(), Some("5"));
        // A read from an offset inside the first segment, limited, then the rest.
        let connection = open_connection(&directory.path().join("topics.sqlite3")).unwrap();
        let partition0: Vec<_> = values(&all).into_iter().filter(|(partition, _, _)| *partition == 0).collect();
        assert_eq!(values(&read_partition(&connection, "t", 0, 1, 2).unwrap()), partition0[1..3].to_vec());
        assert_eq!(values(&read_partition(&connection, "t", 0, 3, 100).unwrap()), partition0[3..].to_vec());
        assert!(read_partition(&connection, "t", 0, partition0.len() as i64, 100).unwrap().is_empty());
        // A consumer reads everything once, across both partitions.
        let mut consumer = store.consumer("sink", &["t".into()], TaskShare { task: 0, tasks: 1 }).await.unwrap();
        let mut read = Vec::new();
        while read.len() < 8 {
            let batch = consumer.poll(3, Duration::from_millis(10)).await.unwrap();
            assert!(!batch.is_empty() && batch.len() <= 3);
            read.extend(batch);
        }
        read.sort_by_key(|record| (record.partition, record.offset));
        assert_eq!(values(&read), values(&all));
        assert_eq!(consumer.lag().await.unwrap(), 0);
    }

    fn segment_rows(directory: &Path) -> Vec<(i32, i64, i64, i64)> {
        open_connection(&directory.join("topics.sqlite3"))
            .unwrap()
            .prepare("SELECT partition, base_offset, count, appended_at FROM segments ORDER BY partition, base_offset")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn retention_drops_whole_old_segments_and_offsets_go_on() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedTransport::open(directory.path(), 1).unwrap();
        let mut producer = store.producer("source").await.unwrap();
        producer.send(vec![record(None, "old0"), record(None, "old1")], None).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        producer.send(vec![record(None, "new2")], None).await.unwrap();
        // The cutoff is the newer segment's own append time: only the older goes.
        let newer = segment_rows(directory.path())[1].3;
        let delete = |cutoff| delete_appended_before(&store.shared.writer.lock().unwrap(), cutoff).unwrap();
        assert_eq!(delete(newer), 2);
        assert_eq!(values(&store.read_all("t").unwrap()), vec![(0, 2, "new2".to_owned())]);
        let topics = store.describe_topics(Some("t")).await.unwrap();
        assert_eq!((topics[0].partitions[0].start, topics[0].partitions[0].end), (2, 3));
        // A consumer still at offset 0 skips to what is left; new records go on from 3.
        let mut consumer = store.consumer("sink", &["t".into()], TaskShare { task: 0, tasks: 1 }).await.unwrap();
        assert_eq!(values(&consumer.poll(10, Duration::from_millis(10)).await.unwrap()), vec![(0, 2, "new2".to_owned())]);
        assert_eq!(delete(i64::MAX), 1);
        producer.send(vec![record(None, "next")], None).await.unwrap();
        assert_eq!(values(&store.read_all("t").unwrap()), vec![(0, 3, "next".to_owned())]);
        // Retention by age: nothing is a week old.
        assert_eq!(store.apply_retention(Duration::from_secs(7 * 86_400)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_large_batch_is_stored_as_several_segments_read_from_any_offset() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedTransport::open(directory.path(), 1).unwrap();
        let mut producer = store.producer("source").await.unwrap();
        producer.send((0..2500).map(|n| record(None, &n.to_string())).collect(), None).await.unwrap();
        // Values of 1 MiB: a segment closes at 1 MiB, so each holds one.
        let big = "x".repeat(1 << 20);
        producer.send(vec![record(None, &big), record(None, &big)], None).await.unwrap();
        let segments: Vec<(i64, i64)> = segment_rows(directory.path()).into_iter().map(|(_, base, count, _)| (base, count)).collect();
        assert_eq!(segments, vec![(0, 1000), (1000, 1000), (2000, 500), (2500, 1), (2501, 1)]);
        let connection = open_connection(&directory.path().join("topics.sqlite3")).unwrap();
        for next in [0, 999, 1000, 1001, 1999, 2497] {
            let read = read_partition(&connection, "t", 0, next, 3).unwrap();
            assert_eq!(values(&read), (next..next + 3).map(|n| (0, n, n.to_string())).collect::<Vec<_>>(), "from {next}");
        }
        let across: Vec<i64> = read_partition(&connection, "t", 0, 2499, 3).unwrap().iter().map(|record| record.offset.unwrap()).collect();
        assert_eq!(across, vec![2499, 2500, 2501]);
        assert_eq!(read_partition(&connection, "t", 0, 2501, 10).unwrap().len(), 1);
        assert!(read_partition(&connection, "t", 0, 2502, 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_append_wakes_the_readers_of_its_topic_only() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedTransport::open(directory.path(), 1).unwrap();
        let mut producer = store.producer("source").await.unwrap();
        let mut reader = store.consumer("sink", &["a".into()], TaskShare { task: 0, tasks: 1 }).await.unwrap();
        let mut poll = Box::pin(reader.poll(10, Duration::from_secs(60)));
        // Waiting on an empty topic: an append to another topic leaves it waiting.
        assert!(tokio::time::timeout(Duration::from_millis(100), &mut poll).await.is_err());
        producer.send(vec![Record { topic: "b".into(), ..record(None, "other") }], None).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(300), &mut poll).await.is_err(), "woken by another topic");
        // An append to its own topic ends the wait with the record, long before the 60 s.
        producer.send(vec![Record { topic: "a".into(), ..record(None, "mine") }], None).await.unwrap();
        let records = tokio::time::timeout(Duration::from_secs(10), poll).await.expect("not woken by its topic").unwrap();
        assert_eq!(records.iter().map(|record| record.value.clone().unwrap()).collect::<Vec<_>>(), vec![b"mine".to_vec()]);
        // A reader that went away is forgotten at the next append.
        drop(reader);
        producer.send(vec![Record { topic: "a".into(), ..record(None, "later") }], None).await.unwrap();
        assert!(store.shared.readers.lock().unwrap()["a"].is_empty());
    }

    #[tokio::test]
    async fn a_quiet_consumer_skips_reads_yet_sees_appends_by_another_process() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedTransport::open(directory.path(), 1).unwrap();
        let mut consumer = store.consumer("sink", &["t".into()], TaskShare { task: 0, tasks: 1 }).await.unwrap();
        assert!(consumer.poll(10, Duration::from_millis(5)).await.unwrap().is_empty());
        // Another process's store (as `topics write` opens it) appends: no wake here.
        let other = EmbeddedTransport::open(directory.path(), 1).unwrap();
        other.producer("tool").await.unwrap().send(vec![record(None, "from elsewhere")], None).await.unwrap();
        let mut polls = 0;
        let records = loop {
            polls += 1;
            let records = consumer.poll(10, Duration::from_millis(5)).await.unwrap();
            if !records.is_empty() || polls > 20 {
                break records;
            }
        };
        assert_eq!(values(&records), vec![(0, 0, "from elsewhere".to_owned())]);
        assert_eq!(polls, READ_AFTER_QUIET_POLLS, "read once the quiet polls are over, not before");
    }

    #[tokio::test]
    async fn a_store_of_one_row_per_record_is_moved_into_segments_at_open() {
        let directory = tempfile::tempdir().unwrap();
        {
            let connection = open_connection(&directory.path().join("topics.sqlite3")).unwrap();
            connection
                .execute_batch(
                    "CREATE TABLE topics (name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
                     CREATE TABLE partition_heads (topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                         PRIMARY KEY (topic, partition)) WITHOUT ROWID;
                     CREATE TABLE records (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                         timestamp INTEGER, key BLOB, value BLOB, headers BLOB, appended_at INTEGER NOT NULL,
                         PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
                     CREATE INDEX records_by_age ON records (appended_at);
                     INSERT INTO topics VALUES ('t', 2);
                     INSERT INTO partition_heads VALUES ('t', 0, 2503), ('t', 1, 1);",
                )
                .unwrap();
            let headers =
                wasm_connect_protocol::encode(&[Record { headers: vec![("h".into(), Some(b"v".to_vec()))], ..Record::default() }]);
            let mut insert = connection.prepare("INSERT INTO records VALUES ('t', ?1, ?2, ?3, ?4, ?5, ?6, ?7)").unwrap();
            // Partition 0: offsets 3..2503 (retention took 0..3), then partition 1: one tombstone.
            for offset in 3..2503i64 {
                let key = (offset % 2 == 0).then(|| format!("k{offset}").into_bytes());
                let value = Some(format!("v{offset}").into_bytes());
                insert.execute(params![0, offset, offset, key, value, (offset == 3).then(|| headers.clone()), 1_000 + offset]).unwrap();
            }
            insert.execute(params![1, 0, None::<i64>, b"gone".to_vec(), None::<Vec<u8>>, None::<Vec<u8>>, 5]).unwrap();
        }
        let store = EmbeddedTransport::open(directory.path(), 2).unwrap();
        let all = store.read_all("t").unwrap();
        assert_eq!(all.len(), 2501);
        for (record, offset) in all.iter().zip(3..2503i64) {
            assert_eq!((record.partition, record.offset, record.timestamp), (Some(0), Some(offset), Some(offset)));
            assert_eq!(record.key, (offset % 2 == 0).then(|| format!("k{offset}").into_bytes()));
            assert_eq!(record.value.as_deref(), Some(format!("v{offset}").as_bytes()));
        }
        assert_eq!(all[0].headers, vec![("h".to_owned(), Some(b"v".to_vec()))]);
        assert!(all[1].headers.is_empty());
        let tombstone = &all[2500];
        assert_eq!(
            (tombstone.partition, tombstone.offset, tombstone.key.as_deref(), tombstone.value.as_deref()),
            (Some(1), Some(0), Some(&b"gone"[..]), None)
        );
        let connection = open_connection(&directory.path().join("topics.sqlite3")).unwrap();
        let segments = segment_rows(directory.path());
        assert_eq!(segments, vec![(0, 3, 1000, 2002), (0, 1003, 1000, 3002), (0, 2003, 500, 3502), (1, 0, 1, 5)]);
        let old: bool =
            connection.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'records')", [], |row| row.get(0)).unwrap();
        assert!(!old, "the old table is gone");
        // New records continue after the old ones.
        store.producer("p").await.unwrap().send(vec![Record { key: Some(b"k".to_vec()), ..record(None, "after") }], None).await.unwrap();
        let after = store.read_all("t").unwrap();
        assert_eq!(after.len(), 2502);
        assert!(
            after
                .iter()
                .any(|record| record.value.as_deref() == Some(&b"after"[..]) && (record.offset == Some(2503) || record.offset == Some(1)))
        );
    }

    #[tokio::test]
    async fn a_processed_batch_stores_records_offsets_and_state_together_and_the_state_pages_by_prefix() {
        let directory = tempfile::tempdir().unwrap();
        let store = EmbeddedTransport::open(directory.path(), 2).unwrap();
        let change = |partition: i32, key: &[u8], value: Option<&str>| StateChange {
            store: "windows".into(),
            partition,
            key: key.to_vec(),
            value: value.map(|value| value.as_bytes().to_vec()),
        };
        let mut producer = store.producer("agg").await.unwrap();
        let checkpoint = ProcessorCheckpoint {
            offsets: vec![PartitionOffset { topic: "in".into(), partition: 1, offset: 42 }],
            state: vec![
                change(1, b"a", Some("1")),
                change(1, b"ab", Some("2")),
                change(0, b"b", Some("3")),
                change(0, &[0x61, 0xff], Some("4")),
                change(1, b"gone", Some("5")),
                change(1, b"gone", None),
            ],
        };
        producer.send_processed(vec![Record { topic: "out".into(), ..record(Some("a"), "result") }], checkpoint).await.unwrap();
        assert_eq!(values(&store.read_all("out").unwrap()).len(), 1);
        let offsets = store.committed_offsets("agg", &["in".to_owned()]).await.unwrap();
        assert_eq!(offsets, vec![PartitionOffset { topic: "in".into(), partition: 1, offset: 42 }]);
        let keys = |entries: &[StateEntry]| entries.iter().map(|entry| entry.key.clone()).collect::<Vec<_>>();
        let partition_1 = store.processor_state("agg", Some(&[1])).await.unwrap();
        assert_eq!(keys(&partition_1), vec![b"a".to_vec(), b"ab".to_vec()]);

        let query = |key: &[u8], exact: bool, offset: usize, limit: usize| StateQuery {
            store: Some("windows".into()),
            key: Some(key.to_vec()),
            exact,
            offset,
            limit,
        };
        let page = store.query_processor_state("agg", query(b"a", false, 0, 2)).await.unwrap();
        assert_eq!((page.total, keys(&page.entries)), (3, vec![b"a".to_vec(), b"ab".to_vec()]));
        let page = store.query_processor_state("agg", query(b"a", false, 2, 2)).await.unwrap();
        assert_eq!((page.total, keys(&page.entries)), (3, vec![vec![0x61, 0xff]]));
        let page = store.query_processor_state("agg", query(&[0x61, 0xff], false, 0, 10)).await.unwrap();
        assert_eq!((page.total, keys(&page.entries)), (1, vec![vec![0x61, 0xff]]), "a prefix ending in 0xff");
        let page = store.query_processor_state("agg", query(b"a", true, 0, 10)).await.unwrap();
        assert_eq!((page.total, page.entries[0].value.clone()), (1, b"1".to_vec()));
        let other_store = StateQuery { store: Some("stream-time".into()), limit: 10, ..StateQuery::default() };
        assert_eq!(store.query_processor_state("agg", other_store).await.unwrap(), StatePage::default());
        let other_connector = StateQuery { limit: 10, ..StateQuery::default() };
        assert_eq!(store.query_processor_state("other", other_connector).await.unwrap().total, 0);

        store.clear_processor_state("agg", &["in".to_owned()]).await.unwrap();
        assert!(store.processor_state("agg", None).await.unwrap().is_empty());
        assert!(store.committed_offsets("agg", &["in".to_owned()]).await.unwrap().is_empty());
    }
}
