//! The status every host of a cluster shares: each host writes the states of the tasks
//! it runs to the compacted status topic (Kafka Connect's keys `status-connector-<c>`
//! and `status-task-<c>-<n>`) and a heartbeat of its own (`status-worker-<host id>`);
//! each reads the topic, so that any host answers for every task with the `worker_id`
//! of the host that runs it.
//!
//! Two rules keep what it shows true when hosts die or are cut off:
//! * **Generations.** A host that is given a partition of the assignments topic first
//!   writes a `claim` to it; the claim's offset is the generation of every status it
//!   writes for the tasks of that partition. A later owner's claim has a higher offset,
//!   so a status written late by an earlier owner (a host that was paused past its
//!   session, say) is ignored, as Kafka Connect's status store ignores a zombie's.
//! * **Heartbeats.** A host that has not been heard from for longer than the session
//!   timeout and two heartbeats shows its tasks UNASSIGNED, with the reason, instead of
//!   their last state: its tasks move only once the broker ends its session, and a
//!   broker that never does would otherwise leave a dead host's tasks RUNNING. Time is
//!   this host's own clock: when each heartbeat was read, not when it was written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::task_partition;
use crate::telemetry::{ConnectorStatus, State, StatusListener, Throttled};
use crate::transport::kafka::{KafkaTransport, LogRecord};

/// Key prefixes of the status topic (Kafka Connect's, and ours for heartbeats).
const CONNECTOR_KEY: &str = "status-connector-";
const TASK_KEY: &str = "status-task-";
const WORKER_KEY: &str = "status-worker-";
/// The key of a claim in the assignments topic.
const CLAIM_KEY: &str = "claim";
/// Records larger than this are not read (anyone who may write the topic wrote them).
const MAX_RECORD_BYTES: usize = 64 * 1024;
/// The longest trace written: the first part of a long error says what it is.
const MAX_TRACE_CHARS: usize = 4 * 1024;
/// How often a failing write is said in the log, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One task's or connector's status as the topic holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredStatus {
    state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace: Option<String>,
    worker_id: String,
    /// The writer's `data_dir` host id: which heartbeats tell whether it is alive.
    host_id: String,
    /// The offset of the writer's claim of the task's partition.
    generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    throttled: Option<Throttled>,
}

/// A `status-worker-` record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Heartbeat {
    worker_id: String,
    /// When it was written, milliseconds since the epoch (for people reading the topic).
    at: u64,
}

/// What a key of the status topic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Connector,
    Task(u32),
}

fn key_of(connector: &str, subject: Subject) -> String {
    match subject {
        Subject::Connector => format!("{CONNECTOR_KEY}{connector}"),
        Subject::Task(task) => format!("{TASK_KEY}{connector}-{task}"),
    }
}

/// What waits to be written.
#[derive(Debug, Default)]
struct Pending {
    /// Partitions given to this host, to claim before any status of their tasks.
    claims: BTreeSet<i32>,
    /// The latest status of each changed connector; none: deleted.
    connectors: BTreeMap<String, Option<ConnectorStatus>>,
}

/// The cluster's shared status, as this host reads and writes it.
#[derive(Debug)]
pub struct SharedStatus {
    host_id: String,
    worker_id: String,
    /// The assignments topic's partition count (tasks map to partitions with it).
    partitions: u32,
    /// How often this host writes its heartbeat.
    heartbeat_every: Duration,
    /// How long a host may go unheard before its tasks show UNASSIGNED.
    silent_after: Duration,
    /// The status topic's records by key (tasks and connectors).
    held: RwLock<HashMap<String, StoredStatus>>,
    /// When each host was last heard from, by host id.
    workers: RwLock<HashMap<String, Instant>>,
    pending: Mutex<Pending>,
    wake: Notify,
}

/// Where the shared status lives, and how often hosts speak.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    /// This host's `data_dir` host id.
    pub host_id: String,
    /// This host's `worker_id`.
    pub worker_id: String,
    /// The assignments topic's partition count.
    pub partitions: u32,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
}

impl SharedStatus {
    /// The shared status of a host (nothing read or written yet: see [`SharedStatus::run`]).
    pub fn new(settings: StatusSettings) -> Arc<Self> {
        let heartbeat_every = settings.heartbeat_interval.max(Duration::from_secs(1));
        Arc::new(SharedStatus {
            host_id: settings.host_id,
            worker_id: settings.worker_id,
            partitions: settings.partitions.max(1),
            heartbeat_every,
            silent_after: settings.session_timeout + 2 * heartbeat_every,
            held: RwLock::default(),
            workers: RwLock::default(),
            pending: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// Reads the status topic and writes this host's part to it until `stop`; then
    /// writes what is left and says this host left.
    pub fn run(self: &Arc<Self>, transport: KafkaTransport, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let reader = self.clone();
        let (reading, status_topic) = (transport.clone(), transport.cluster().status.name.clone());
        let stop_reading = stop.clone();
        tokio::spawn(async move {
            let mut followed = match reading.follow(&status_topic, "status").await {
                Ok(followed) => followed,
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "Cannot read the cluster's status topic: this host shows only the states of the tasks it runs itself."
                    );
                    return;
                }
            };
            for record in followed.initial.drain(..) {
                reader.apply(record, true);
            }
            loop {
                tokio::select! {
                    _ = stop_reading.cancelled() => return,
                    record = followed.records.recv() => match record {
                        Some(record) => reader.apply(record, false),
                        None => return,
                    }
                }
            }
        });
        let writer = self.clone();
        tokio::spawn(async move { writer.write(transport, stop).await })
    }

    /// Takes `partitions` as this host's: their tasks' statuses are written under a
    /// new generation, once the claim is written.
    pub fn claim(&self, partitions: &BTreeSet<i32>) {
        self.pending.lock().expect("pending status lock").claims.extend(partitions);
        self.wake.notify_one();
    }

    /// `local` (this host's own view of a connector) with each task that `runs_here`
    /// says another host owns as that host last wrote it, or UNASSIGNED when that host
    /// went silent or left; the connector itself as the owner of its task 0 wrote it.
    pub fn merge(&self, local: &mut ConnectorStatus, runs_here: impl Fn(u32) -> bool) {
        let held = self.held.read().expect("status records lock");
        let name = local.name.clone();
        if !runs_here(0)
            && let Some(record) = held.get(&key_of(&name, Subject::Connector)).filter(|record| record.host_id != self.host_id)
        {
            let (state, trace) = self.as_seen(record);
            local.connector.state = state;
            local.connector.trace = trace;
            local.connector.worker_id = record.worker_id.clone();
        }
        for task in &mut local.tasks {
            if runs_here(task.id) {
                continue;
            }
            let Some(record) = held.get(&key_of(&name, Subject::Task(task.id))).filter(|record| record.host_id != self.host_id) else {
                continue;
            };
            let (state, trace) = self.as_seen(record);
            task.throttled = if state == record.state { record.throttled.clone() } else { None };
            task.state = state;
            task.trace = trace;
            task.worker_id = record.worker_id.clone();
        }
    }

    /// The state and trace of `record`, or UNASSIGNED with the reason when its host
    /// went silent or left the cluster.
    fn as_seen(&self, record: &StoredStatus) -> (State, Option<String>) {
        let heard = self.workers.read().expect("workers lock").get(&record.host_id).map(Instant::elapsed);
        let worker = crate::names::shown(&record.worker_id);
        match heard {
            Some(silent) if silent <= self.silent_after => (record.state, record.trace.clone()),
            Some(silent) => (
                State::Unassigned,
                Some(format!(
                    "the host that runs it, {worker}, has not been heard from for {} s: its tasks move to the other hosts once the \
                     broker ends its session (session.timeout.ms)",
                    silent.as_secs()
                )),
            ),
            None => (
                State::Unassigned,
                Some(format!("the host that ran it, {worker}, left the cluster; another host takes it over")),
            ),
        }
    }

    /// Takes in one record of the status topic; `replayed`: read at the start, so a
    /// heartbeat counts from when it was written (by the writer's clock), not from now.
    fn apply(&self, record: LogRecord, replayed: bool) {
        if record.value.as_ref().is_some_and(|value| value.len() > MAX_RECORD_BYTES) {
            return;
        }
        if let Some(host) = record.key.strip_prefix(WORKER_KEY) {
            let mut workers = self.workers.write().expect("workers lock");
            let Some(value) = record.value else {
                workers.remove(host);
                return;
            };
            if serde_json::from_str::<Heartbeat>(&value).is_err() {
                return;
            }
            let now = Instant::now();
            let age = match (replayed, record.timestamp) {
                (true, Some(written)) => Duration::from_millis(now_ms().saturating_sub(written.max(0) as u64)),
                _ => Duration::ZERO,
            };
            workers.insert(host.to_owned(), now.checked_sub(age).unwrap_or(now));
            return;
        }
        if !record.key.starts_with(CONNECTOR_KEY) && !record.key.starts_with(TASK_KEY) {
            return;
        }
        let mut held = self.held.write().expect("status records lock");
        let Some(value) = record.value else {
            held.remove(&record.key);
            return;
        };
        let Ok(status) = serde_json::from_str::<StoredStatus>(&value) else { return };
        // A lower generation than the one held: an earlier owner's late write.
        if held.get(&record.key).is_some_and(|current| current.generation > status.generation) {
            return;
        }
        held.insert(record.key, status);
    }

    /// Writes claims, statuses and heartbeats until `stop`.
    async fn write(self: Arc<Self>, transport: KafkaTransport, stop: CancellationToken) {
        let mut writer = Writer { transport, epochs: HashMap::new(), written: HashMap::new(), latest: HashMap::new(), failing: None };
        let mut heartbeat = tokio::time::interval(self.heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let beat = tokio::select! {
                _ = stop.cancelled() => break,
                _ = heartbeat.tick() => true,
                _ = self.wake.notified() => false,
            };
            let pending = std::mem::take(&mut *self.pending.lock().expect("pending status lock"));
            writer.flush(&self, pending, beat).await;
            if beat {
                let heartbeat = Heartbeat { worker_id: self.worker_id.clone(), at: now_ms() };
                let value = serde_json::to_string(&heartbeat).expect("a heartbeat serialises");
                writer.send(&format!("{WORKER_KEY}{}", self.host_id), Some(&value)).await;
            }
        }
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending status lock"));
        writer.flush(&self, pending, false).await;
        // Left: the others show its last tasks as moving at once.
        writer.send(&format!("{WORKER_KEY}{}", self.host_id), None).await;
    }
}

impl StatusListener for SharedStatus {
    fn changed(&self, connector: &str, status: Option<&ConnectorStatus>) {
        self.pending.lock().expect("pending status lock").connectors.insert(connector.to_owned(), status.cloned());
        self.wake.notify_one();
    }
}

/// The writing half's own state.
struct Writer {
    transport: KafkaTransport,
    /// The generation of each partition this host claimed (kept after it gave one up:
    /// what it writes of it then is older than the next owner's).
    epochs: HashMap<i32, i64>,
    /// What this host last wrote of each connector, by subject.
    written: HashMap<String, BTreeMap<Subject, String>>,
    /// The latest status of each connector this host was told of, to write again
    /// what failed to be written.
    latest: HashMap<String, ConnectorStatus>,
    /// Since when writing fails, while it does.
    failing: Option<Instant>,
}

impl Writer {
    /// Claims the partitions in `pending`, then writes the statuses that changed;
    /// `retry`: every connector again (what failed before is written now).
    async fn flush(&mut self, shared: &SharedStatus, pending: Pending, retry: bool) {
        let assignments = self.transport.cluster().assignments.name.clone();
        let claim = serde_json::json!({"host_id": shared.host_id, "worker_id": shared.worker_id}).to_string();
        for partition in pending.claims {
            match self.transport.write_compacted_to(&assignments, Some(partition), CLAIM_KEY, Some(&claim)).await {
                Ok(position) => {
                    self.epochs.insert(partition, position.offset);
                }
                Err(error) => {
                    self.failed(&error.to_string());
                    // Still this host's: its statuses go out under the generation it had.
                    self.epochs.entry(partition).or_insert(0);
                }
            }
        }
        let mut changed: BTreeSet<String> = BTreeSet::new();
        for (name, status) in pending.connectors {
            match status {
                Some(status) => {
                    self.latest.insert(name.clone(), status);
                }
                None => {
                    self.latest.remove(&name);
                }
            }
            changed.insert(name);
        }
        if retry {
            changed.extend(self.latest.keys().cloned());
        }
        for name in changed {
            let wanted = self.latest.get(&name).map(|status| self.records_of(shared, status)).unwrap_or_default();
            let written = self.written.remove(&name).unwrap_or_default();
            let mut now_written = BTreeMap::new();
            for (subject, value) in &wanted {
                if written.get(subject) == Some(value) || self.send(&key_of(&name, *subject), Some(value)).await {
                    now_written.insert(*subject, value.clone());
                }
            }
            // Gone, stopped, or fewer tasks: what this host wrote of them goes.
            for subject in written.keys().filter(|subject| !wanted.contains_key(subject)) {
                if !self.send(&key_of(&name, *subject), None).await {
                    now_written.insert(*subject, written[subject].clone());
                }
            }
            if !now_written.is_empty() {
                self.written.insert(name, now_written);
            }
        }
    }

    /// The records this host writes of `status`: those of the tasks (and, with task 0,
    /// the connector) whose partitions it claimed.
    fn records_of(&self, shared: &SharedStatus, status: &ConnectorStatus) -> BTreeMap<Subject, String> {
        let generation = |task: u32| self.epochs.get(&task_partition(&status.name, task, shared.partitions)).copied();
        let stored = |state: State, trace: &Option<String>, throttled: &Option<Throttled>, generation: i64| {
            let record = StoredStatus {
                state,
                trace: trace.as_ref().map(|trace| trace.chars().take(MAX_TRACE_CHARS).collect()),
                worker_id: shared.worker_id.clone(),
                host_id: shared.host_id.clone(),
                generation,
                throttled: throttled.clone(),
            };
            serde_json::to_string(&record).expect("a status serialises")
        };
        let mut records = BTreeMap::new();
        if let Some(generation) = generation(0) {
            let connector = &status.connector;
            records.insert(Subject::Connector, stored(connector.state, &connector.trace, &None, generation));
        }
        for task in &status.tasks {
            if let Some(generation) = generation(task.id) {
                records.insert(Subject::Task(task.id), stored(task.state, &task.trace, &task.throttled, generation));
            }
        }
        records
    }

    /// Writes one record of the status topic; whether it was written.
    async fn send(&mut self, key: &str, value: Option<&str>) -> bool {
        let topic = self.transport.cluster().status.name.clone();
        match self.transport.write_compacted(&topic, key, value).await {
            Ok(_) => {
                self.failing = None;
                true
            }
            Err(error) => {
                self.failed(&error.to_string());
                false
            }
        }
    }

    fn failed(&mut self, error: &str) {
        if self.failing.is_none_or(|since| since.elapsed() > WARN_EVERY) {
            tracing::warn!(
                %error,
                "Cannot write this host's task states to the cluster's status topic: the other hosts show them as last written, \
                 and UNASSIGNED once this host's heartbeats stop. Retrying."
            );
            self.failing = Some(Instant::now());
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{SharedStatus, StatusSettings, StoredStatus};
    use crate::runtime::PluginKind;
    use crate::telemetry::{ConnectorState, ConnectorStatus, State, TaskStatus};
    use crate::transport::kafka::{LogRecord, Position};

    fn shared() -> std::sync::Arc<SharedStatus> {
        SharedStatus::new(StatusSettings {
            host_id: "here".into(),
            worker_id: "127.0.0.1:1".into(),
            partitions: 12,
            heartbeat_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(6),
        })
    }

    fn record(key: &str, value: Option<String>, offset: i64, timestamp: Option<i64>) -> LogRecord {
        LogRecord { key: key.into(), value, position: Position { partition: 0, offset }, timestamp }
    }

    fn task(state: State, host: &str, generation: i64) -> Option<String> {
        let status = StoredStatus {
            state,
            trace: None,
            worker_id: format!("{host}:8083"),
            host_id: host.into(),
            generation,
            throttled: None,
        };
        Some(serde_json::to_string(&status).unwrap())
    }

    fn local(tasks: u32) -> ConnectorStatus {
        let worker_id = "127.0.0.1:1".to_owned();
        ConnectorStatus {
            name: "c".into(),
            connector: ConnectorState { state: State::Running, worker_id: worker_id.clone(), trace: None },
            tasks: (0..tasks)
                .map(|id| TaskStatus { id, state: State::Unassigned, worker_id: worker_id.clone(), trace: None, throttled: None })
                .collect(),
            kind: PluginKind::Source,
        }
    }

    fn heartbeat(host: &str) -> Option<String> {
        Some(format!(r#"{{"worker_id":"{host}:8083","at":0}}"#))
    }

    #[test]
    fn a_late_write_of_an_earlier_generation_is_ignored_and_a_tombstone_clears() {
        let shared = shared();
        shared.apply(record("status-worker-a", heartbeat("a"), 0, None), false);
        shared.apply(record("status-worker-b", heartbeat("b"), 1, None), false);
        shared.apply(record("status-task-c-0", task(State::Running, "a", 10), 2, None), false);
        shared.apply(record("status-task-c-0", task(State::Running, "b", 20), 3, None), false);
        // The earlier owner, paused past its session, writes late.
        shared.apply(record("status-task-c-0", task(State::Failed, "a", 10), 4, None), false);
        let mut status = local(2);
        shared.merge(&mut status, |task| task == 1);
        assert_eq!((status.tasks[0].state, status.tasks[0].worker_id.as_str()), (State::Running, "b:8083"));
        assert_eq!(status.tasks[1].worker_id, "127.0.0.1:1", "what runs here is as this host says");
        // The same generation, later: the owner's own change.
        shared.apply(record("status-task-c-0", task(State::Failed, "b", 20), 5, None), false);
        let mut status = local(1);
        shared.merge(&mut status, |_| false);
        assert_eq!(status.tasks[0].state, State::Failed);
        shared.apply(record("status-task-c-0", None, 6, None), false);
        let mut status = local(1);
        shared.merge(&mut status, |_| false);
        assert_eq!((status.tasks[0].state, status.tasks[0].worker_id.as_str()), (State::Unassigned, "127.0.0.1:1"));
    }

    #[test]
    fn the_tasks_of_a_silent_or_departed_host_show_unassigned() {
        let shared = shared();
        // Its last heartbeat was written a minute ago, read at this host's start.
        let minute_ago = super::now_ms() as i64 - 60_000;
        shared.apply(record("status-worker-a", heartbeat("a"), 0, Some(minute_ago)), true);
        shared.apply(record("status-task-c-0", task(State::Running, "a", 1), 1, None), true);
        let mut status = local(1);
        shared.merge(&mut status, |_| false);
        let trace = status.tasks[0].trace.clone().unwrap_or_default();
        assert_eq!((status.tasks[0].state, status.tasks[0].worker_id.as_str()), (State::Unassigned, "a:8083"));
        assert!(trace.contains("has not been heard from for 6") && trace.contains("session.timeout.ms"), "{trace}");
        // It speaks again.
        shared.apply(record("status-worker-a", heartbeat("a"), 2, None), false);
        let mut status = local(1);
        shared.merge(&mut status, |_| false);
        assert_eq!(status.tasks[0].state, State::Running);
        // It left.
        shared.apply(record("status-worker-a", None, 3, None), false);
        let mut status = local(1);
        shared.merge(&mut status, |_| false);
        assert_eq!(status.tasks[0].state, State::Unassigned);
        assert!(status.tasks[0].trace.as_deref().unwrap_or_default().contains("left the cluster"), "{status:?}");
        // This host's own old record: this host's view holds.
        shared.apply(record("status-worker-here", heartbeat("here"), 4, None), false);
        shared.apply(record("status-task-c-0", task(State::Running, "here", 9), 5, None), false);
        let mut status = local(1);
        shared.merge(&mut status, |_| false);
        assert_eq!((status.tasks[0].state, status.tasks[0].trace.as_deref()), (State::Unassigned, None));
        // A record too large, or not JSON, is not read.
        shared.apply(record("status-task-c-0", Some("x".repeat(super::MAX_RECORD_BYTES + 1)), 6, None), false);
        shared.apply(record("status-task-c-0", Some("{".into()), 7, None), false);
        assert_eq!(shared.held.read().unwrap()["status-task-c-0"].host_id, "here");
    }
}
