//! The desired state as a log every host follows. A change is appended, and applied,
//! by every host that follows the log, when it reads it back: the host that took the
//! change answers only once it applied it itself (read your writes). On Kafka the log
//! is the cluster's config topic; on the embedded transport it is the SQLite store in
//! `data_dir`, which one host owns, and whose changes are applied as they are written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, watch};

use super::store::{StateStore, StateStoreError};
use crate::transport::KafkaTransport;
use crate::transport::kafka::{LogRecord, Position};

/// How long a change may take to be applied here before the request is answered with
/// an error (it will still be applied): stopping a connector's old tasks alone may
/// take 30 s.
const APPLY_WAIT: Duration = Duration::from_secs(90);

/// Where changes are written.
enum Sink {
    /// The config topic of a Kafka cluster, which every host follows.
    Kafka { transport: KafkaTransport, topic: String },
    /// The SQLite store in `data_dir`; each change, once stored, is handed to the
    /// applier with the next number.
    Store { store: Box<dyn StateStore>, next: Mutex<i64>, records: mpsc::UnboundedSender<LogRecord> },
}

/// The log of the desired state.
pub struct ConfigLog {
    sink: Arc<Sink>,
    /// The next offset to apply, per partition.
    applied: watch::Sender<BTreeMap<i32, i64>>,
}

/// A log just opened: what it held, and the records that come after.
pub struct OpenedLog {
    /// The log.
    pub log: ConfigLog,
    /// The latest value of every key at the start.
    pub state: BTreeMap<String, String>,
    /// The changes from then on, in order; each must be marked applied when it is.
    pub records: mpsc::UnboundedReceiver<LogRecord>,
}

impl ConfigLog {
    /// Follows the config `topic` of the cluster: read to its end, then followed.
    pub async fn kafka(transport: KafkaTransport, topic: &str) -> Result<OpenedLog, StateStoreError> {
        let location = kafka_location(topic);
        let followed = transport
            .follow(topic, "config")
            .await
            .map_err(|error| StateStoreError { location: location.clone(), reason: error.to_string() })?;
        let mut state = BTreeMap::new();
        for record in followed.initial {
            match record.value {
                Some(value) => state.insert(record.key, value),
                None => state.remove(&record.key),
            };
        }
        let (applied, _) = watch::channel(followed.ends);
        let log = ConfigLog { sink: Arc::new(Sink::Kafka { transport, topic: topic.to_owned() }), applied };
        Ok(OpenedLog { log, state, records: followed.records })
    }

    /// The desired state in `store`, which this host alone writes.
    pub async fn store(store: Box<dyn StateStore>) -> Result<OpenedLog, StateStoreError> {
        let state = store.load().await?;
        let (sender, records) = mpsc::unbounded_channel();
        let (applied, _) = watch::channel(BTreeMap::from([(0, 0)]));
        let log = ConfigLog { sink: Arc::new(Sink::Store { store, next: Mutex::new(0), records: sender }), applied };
        Ok(OpenedLog { log, state, records })
    }

    /// Where the log is, for messages.
    pub fn location(&self) -> String {
        self.sink.location()
    }

    /// Appends `changes` (`key` = `value`, `None` removing the key) in order and
    /// returns where each is, once they are durable; they are applied later, by every
    /// host. The appends run to the end even when the caller stops waiting (a client
    /// that hangs up), so a change of several records is never cut in two.
    pub async fn append_all(&self, changes: Vec<(String, Option<String>)>) -> Result<Vec<Position>, StateStoreError> {
        let sink = self.sink.clone();
        let appending = tokio::spawn(async move {
            let mut positions = Vec::with_capacity(changes.len());
            for (key, value) in changes {
                positions.push(sink.append(&key, value.as_deref()).await?);
            }
            Ok(positions)
        });
        appending.await.map_err(|error| StateStoreError { location: self.location(), reason: error.to_string() })?
    }

    /// Appends `changes`, then waits until this host applied them.
    pub async fn write_all(&self, changes: Vec<(String, Option<String>)>) -> Result<(), StateStoreError> {
        for position in self.append_all(changes).await? {
            self.applied(position).await?;
        }
        Ok(())
    }

    /// Appends one change, then waits until this host applied it.
    pub async fn write(&self, key: &str, value: Option<&str>) -> Result<(), StateStoreError> {
        self.write_all(vec![(key.to_owned(), value.map(str::to_owned))]).await
    }

    /// Waits until this host applied what is at `position`.
    pub async fn applied(&self, position: Position) -> Result<(), StateStoreError> {
        let mut progress = self.applied.subscribe();
        let reached = |applied: &BTreeMap<i32, i64>| applied.get(&position.partition).is_some_and(|next| *next > position.offset);
        match tokio::time::timeout(APPLY_WAIT, progress.wait_for(reached)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StateStoreError { location: self.location(), reason: "the host is stopping".into() }),
            Err(_) => Err(StateStoreError {
                location: self.location(),
                reason: format!(
                    "the change was written, but this host has not applied it within {} s; it applies it when it can \
                     (the log says what holds it up)",
                    APPLY_WAIT.as_secs()
                ),
            }),
        }
    }

    /// Waits until this host applied everything the log held when asked: what another
    /// host wrote before is known here once it returns.
    pub async fn caught_up(&self) -> Result<(), StateStoreError> {
        let Sink::Kafka { transport, topic } = &*self.sink else { return Ok(()) };
        let ends =
            transport.end_offsets(topic).await.map_err(|error| StateStoreError { location: self.location(), reason: error.to_string() })?;
        for (partition, end) in ends.into_iter().filter(|(_, end)| *end > 0) {
            self.applied(Position { partition, offset: end - 1 }).await?;
        }
        Ok(())
    }

    /// Marks what is at `position` applied.
    pub fn mark_applied(&self, position: Position) {
        self.applied.send_modify(|applied| {
            let next = applied.entry(position.partition).or_default();
            *next = (*next).max(position.offset + 1);
        });
    }
}

impl Sink {
    fn location(&self) -> String {
        match self {
            Sink::Kafka { topic, .. } => kafka_location(topic),
            Sink::Store { store, .. } => store.location(),
        }
    }

    async fn append(&self, key: &str, value: Option<&str>) -> Result<Position, StateStoreError> {
        match self {
            Sink::Kafka { transport, topic } => transport
                .write_compacted(topic, key, value)
                .await
                .map_err(|error| StateStoreError { location: self.location(), reason: error.to_string() }),
            Sink::Store { store, next, records } => {
                // One change at a time: the store and the applier see the same order.
                let mut next = next.lock().await;
                store.put(key, value.map(str::to_owned)).await?;
                let position = Position { partition: 0, offset: *next };
                *next += 1;
                let record = LogRecord { key: key.to_owned(), value: value.map(str::to_owned), position, timestamp: None };
                records.send(record).map_err(|_| StateStoreError { location: self.location(), reason: "the host is stopping".into() })?;
                Ok(position)
            }
        }
    }
}

fn kafka_location(topic: &str) -> String {
    format!("Kafka topic {topic}")
}
