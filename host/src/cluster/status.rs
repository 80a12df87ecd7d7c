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
use crate::telemetry::{ConnectorState, ConnectorStatus, State, StatusListener, TaskStatus, Throttled};
use crate::transport::kafka::{KafkaTransport, LogRecord};

/// Key prefixes of the status topic (Kafka Connect's, and ours for heartbeats).
const CONNECTOR_KEY: &str = "status-connector-";
const TASK_KEY: &str = "status-task-";
const WORKER_KEY: &str = "status-worker-";
/// The key of a claim in the assignments topic.
const CLAIM_KEY: &str = "claim";
/// Records larger than this are not read (anyone who may write the topic wrote them).
const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Keys longer than this are not read.
const MAX_KEY_BYTES: usize = 1024;
/// The most statuses, and the most hosts, kept from the topic.
const MAX_HELD: usize = 100_000;
/// The most tasks shown of a connector this host cannot plan (from the topic).
const MAX_TASKS_SHOWN: u32 = 10_000;
/// How long a host that claimed a partition again, because an earlier owner's late
/// claim outranked its own, waits before it may do so again.
const RECLAIM_EVERY: Duration = Duration::from_secs(10);
/// The longest trace written: the first part of a long error says what it is.
const MAX_TRACE_CHARS: usize = 4 * 1024;
/// How long one write may take before it is given up on (and tried again later).
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How often this host writes the statuses of the tasks it owns again, unchanged: a
/// record of an earlier owner that compaction kept over its own is overwritten.
const REFRESH_EVERY: Duration = Duration::from_secs(60);
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

impl Subject {
    /// The task whose partition decides who writes it (a connector's: its task 0's).
    fn task(self) -> u32 {
        match self {
            Subject::Connector => 0,
            Subject::Task(task) => task,
        }
    }
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
    /// The partitions this host owns now.
    owned: Mutex<BTreeSet<i32>>,
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

/// The shared status's reader and writers at work.
pub struct Sharing {
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Sharing {
    /// Writes what is left and this host's leaving, within `grace`.
    pub async fn finish(self, grace: Duration) {
        self.stop.cancel();
        let abort = self.done.abort_handle();
        if tokio::time::timeout(grace, self.done).await.is_err() {
            abort.abort();
            tracing::warn!("The last task states were not written to the cluster's status topic in time.");
        }
    }
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
            owned: Mutex::default(),
            pending: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// Reads the status topic, and once it was read (and so made, compacted, if it
    /// was missing) writes this host's part to it and its heartbeats, until
    /// [`Sharing::finish`].
    pub fn run(self: &Arc<Self>, transport: KafkaTransport) -> Sharing {
        let stop = CancellationToken::new();
        let ready = CancellationToken::new();
        let (reader, reading, read_ready, read_stop) = (self.clone(), transport.clone(), ready.clone(), stop.clone());
        tokio::spawn(async move {
            let status_topic = reading.cluster().status.name.clone();
            let followed = reading.follow(&status_topic, "status").await;
            read_ready.cancel();
            let mut followed = match followed {
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
                    _ = read_stop.cancelled() => return,
                    record = followed.records.recv() => match record {
                        Some(record) => reader.apply(record, false),
                        None => return,
                    }
                }
            }
        });
        let (writer, beater) = (self.clone(), self.clone());
        let (write_transport, write_ready, write_stop) = (transport.clone(), ready.clone(), stop.clone());
        let (beat_ready, beat_stop) = (ready, stop.clone());
        let done = tokio::spawn(async move {
            tokio::join!(writer.write(write_transport, write_ready, write_stop), beater.beat(transport, beat_ready, beat_stop));
        });
        Sharing { stop, done }
    }

    /// Takes `partitions` as this host's: their tasks' statuses are written under a
    /// new generation, once the claim is written.
    pub fn claim(&self, partitions: &BTreeSet<i32>) {
        self.owned.lock().expect("owned partitions lock").extend(partitions);
        self.pending.lock().expect("pending status lock").claims.extend(partitions);
        self.wake.notify_one();
    }

    /// Gives `partitions` up (none: every one): a claim of them not yet written is
    /// not written.
    pub fn release(&self, partitions: Option<&BTreeSet<i32>>) {
        let mut owned = self.owned.lock().expect("owned partitions lock");
        match partitions {
            Some(partitions) => owned.retain(|partition| !partitions.contains(partition)),
            None => owned.clear(),
        }
    }

    fn owns(&self, partition: i32) -> bool {
        self.owned.lock().expect("owned partitions lock").contains(&partition)
    }

    /// Whether the status the topic holds for `key` outranks one of `generation`
    /// written by `host`: a later generation, written by another host that is still
    /// heard from. (A host's own records, and those of a host that went silent or
    /// left, never outrank: a generation from an assignments topic made again since,
    /// whose offsets started over, must not hold the key for good.)
    fn outranks(&self, held: &StoredStatus, generation: i64, host: &str) -> bool {
        held.generation > generation && held.host_id != host && self.heard_within(&held.host_id)
    }

    /// Whether `host` was heard from within the silence limit.
    fn heard_within(&self, host: &str) -> bool {
        self.workers.read().expect("workers lock").get(host).is_some_and(|heard| heard.elapsed() <= self.silent_after)
    }

    /// Whether the topic holds a status for `key` that outranks one of `generation`
    /// of this host's.
    fn outranked(&self, key: &str, generation: i64) -> bool {
        let held = self.held.read().expect("status records lock");
        held.get(key).is_some_and(|record| self.outranks(record, generation, &self.host_id))
    }

    /// `local` (this host's own view of a connector) with each task that `runs_here`
    /// says another host owns as that host last wrote it, or UNASSIGNED when that host
    /// went silent or left, and the connector's `worker_id` the owner's of its task 0.
    /// The connector's state is the one every host applied (its target), or FAILED as
    /// its owner says; a paused or stopped connector's tasks are as every host applied.
    /// A connector that cannot be planned on this host (its plugin is only on others,
    /// say) but runs on its owner shows as its owner says, tasks and all.
    pub fn merge(&self, local: &mut ConnectorStatus, runs_here: impl Fn(u32) -> bool) {
        let held = self.held.read().expect("status records lock");
        let name = local.name.clone();
        let running = local.connector.state == State::Running;
        let failed_here = local.connector.state == State::Failed && local.tasks.is_empty();
        if !runs_here(0)
            && let Some(record) = held.get(&key_of(&name, Subject::Connector)).filter(|record| record.host_id != self.host_id)
        {
            let (state, trace) = self.as_seen(record);
            if failed_here {
                local.connector = ConnectorState { state, worker_id: record.worker_id.clone(), trace };
                if state == State::Failed {
                    return;
                }
                local.tasks = (0..MAX_TASKS_SHOWN)
                    .map_while(|id| held.get(&key_of(&name, Subject::Task(id))).map(|record| (id, record)))
                    .map(|(id, record)| {
                        let (state, trace) = self.as_seen(record);
                        let throttled = if state == record.state { record.throttled.clone() } else { None };
                        TaskStatus { id, state, worker_id: record.worker_id.clone(), trace, throttled }
                    })
                    .collect();
                return;
            }
            local.connector.worker_id = record.worker_id.clone();
            if running && state == State::Failed {
                local.connector.state = State::Failed;
                local.connector.trace = trace;
            }
        }
        if !running {
            return;
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
    /// went silent or left the cluster. Silence is judged only while this host reads
    /// its own heartbeats back: a host that cannot read the topic cannot tell.
    fn as_seen(&self, record: &StoredStatus) -> (State, Option<String>) {
        let workers = self.workers.read().expect("workers lock");
        let hearing = workers.get(&self.host_id).is_some_and(|heard| heard.elapsed() <= self.silent_after);
        let heard = workers.get(&record.host_id).map(Instant::elapsed);
        let worker = crate::names::shown(&record.worker_id);
        match heard {
            Some(silent) if silent <= self.silent_after || !hearing => (record.state, record.trace.clone()),
            Some(silent) => (
                State::Unassigned,
                Some(format!(
                    "the host that runs it, {worker}, has not been heard from for {} s: its tasks move to the other hosts once the \
                     broker ends its session (session.timeout.ms, or scheduled.rebalance.max.delay.ms when set)",
                    silent.as_secs()
                )),
            ),
            None => (
                State::Unassigned,
                Some(format!(
                    "the host that ran it, {worker}, left the cluster; another host takes it over (once scheduled.rebalance.max.delay.ms passed, when set)"
                )),
            ),
        }
    }

    /// Takes in one record of the status topic; `replayed`: read at the start, so a
    /// heartbeat counts from when it was written (by the writer's clock), not from now.
    fn apply(&self, record: LogRecord, replayed: bool) {
        if record.key.len() > MAX_KEY_BYTES || record.value.as_ref().is_some_and(|value| value.len() > MAX_RECORD_BYTES) {
            return;
        }
        if let Some(host) = record.key.strip_prefix(WORKER_KEY) {
            let mut workers = self.workers.write().expect("workers lock");
            let Some(value) = record.value else {
                workers.remove(host);
                return;
            };
            if serde_json::from_str::<Heartbeat>(&value).is_err() || (workers.len() >= MAX_HELD && !workers.contains_key(host)) {
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
        match held.get(&record.key) {
            Some(current) if self.outranks(current, status.generation, &status.host_id) => return,
            None if held.len() >= MAX_HELD => return,
            _ => {}
        }
        held.insert(record.key, status);
    }

    /// Writes claims and statuses until `stop` (once `ready`), then what is left.
    async fn write(self: Arc<Self>, transport: KafkaTransport, ready: CancellationToken, stop: CancellationToken) {
        let mut writer = Writer::new(transport);
        tokio::select! {
            _ = ready.cancelled() => {}
            _ = stop.cancelled() => return,
        }
        let mut retries = tokio::time::interval(self.heartbeat_every);
        retries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refreshed = Instant::now();
        loop {
            let retry = tokio::select! {
                _ = stop.cancelled() => break,
                _ = retries.tick() => true,
                _ = self.wake.notified() => false,
            };
            let refresh = retry && refreshed.elapsed() >= REFRESH_EVERY;
            if refresh {
                refreshed = Instant::now();
            }
            let pending = std::mem::take(&mut *self.pending.lock().expect("pending status lock"));
            writer.flush(&self, pending, retry, refresh).await;
        }
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending status lock"));
        writer.flush(&self, pending, false, false).await;
    }

    /// Writes this host's heartbeat every `heartbeat_every` until `stop` (once
    /// `ready`), then says it left: the others show its tasks as moving at once.
    async fn beat(self: Arc<Self>, transport: KafkaTransport, ready: CancellationToken, stop: CancellationToken) {
        tokio::select! {
            _ = ready.cancelled() => {}
            _ = stop.cancelled() => return,
        }
        let (topic, key) = (transport.cluster().status.name.clone(), format!("{WORKER_KEY}{}", self.host_id));
        let mut beats = tokio::time::interval(self.heartbeat_every);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = beats.tick() => {}
            }
            let heartbeat = Heartbeat { worker_id: self.worker_id.clone(), at: now_ms() };
            let value = serde_json::to_string(&heartbeat).expect("a heartbeat serialises");
            // A failure shows as silence to the others; the writer says why in the log.
            let _ = tokio::time::timeout(SEND_TIMEOUT, transport.write_compacted(&topic, &key, Some(&value))).await;
        }
        let _ = tokio::time::timeout(SEND_TIMEOUT, transport.write_compacted(&topic, &key, None)).await;
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
    /// what it writes of it then is older than the next owner's, and not written once
    /// this host read the next owner's).
    epochs: HashMap<i32, i64>,
    /// What this host last wrote of each connector, by subject.
    written: HashMap<String, BTreeMap<Subject, String>>,
    /// The latest status of each connector this host was told of, to write again
    /// what failed to be written.
    latest: HashMap<String, ConnectorStatus>,
    /// When this host last claimed a partition again (see [`RECLAIM_EVERY`]).
    reclaimed: HashMap<i32, Instant>,
    /// Whether a write failed in this pass: the rest of the pass waits for the next.
    stalled: bool,
    /// Whether something was left unwritten: the next retry goes over everything.
    behind: bool,
    /// Since when writing fails, while it does.
    failing: Option<Instant>,
}

impl Writer {
    fn new(transport: KafkaTransport) -> Self {
        Writer {
            transport,
            epochs: HashMap::new(),
            written: HashMap::new(),
            latest: HashMap::new(),
            reclaimed: HashMap::new(),
            stalled: false,
            behind: false,
            failing: None,
        }
    }

    /// Claims the partitions in `pending`, then writes the statuses that changed;
    /// `retry`: every connector again if something was left unwritten; `refresh`:
    /// every connector, and what is unchanged of the partitions this host owns too.
    async fn flush(&mut self, shared: &SharedStatus, pending: Pending, retry: bool, refresh: bool) {
        self.stalled = false;
        self.claim(shared, pending.claims).await;
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
        if (retry && self.behind) || refresh {
            changed.extend(self.latest.keys().cloned());
            changed.extend(self.written.keys().cloned());
        }
        let mut left = false;
        for name in changed {
            let wanted = self.latest.get(&name).map(|status| self.records_of(shared, status)).unwrap_or_default();
            let written = self.written.remove(&name).unwrap_or_default();
            let mut now_written = BTreeMap::new();
            for (subject, (generation, value)) in &wanted {
                let partition = task_partition(&name, subject.task(), shared.partitions);
                let unchanged = written.get(subject) == Some(value) && !(refresh && shared.owns(partition));
                if unchanged || self.send(shared, &key_of(&name, *subject), Some(value), *generation, partition).await {
                    now_written.insert(*subject, value.clone());
                } else {
                    left = true;
                    // Still what the topic holds of it (to be deleted if it goes).
                    if let Some(old) = written.get(subject) {
                        now_written.insert(*subject, old.clone());
                    }
                }
            }
            // Gone, stopped, or fewer tasks: what this host wrote of them goes.
            for (subject, value) in written.iter().filter(|(subject, _)| !wanted.contains_key(subject)) {
                let partition = task_partition(&name, subject.task(), shared.partitions);
                let generation = self.epochs.get(&partition).copied().unwrap_or(0);
                if !self.send(shared, &key_of(&name, *subject), None, generation, partition).await {
                    left = true;
                    now_written.insert(*subject, value.clone());
                }
            }
            if !now_written.is_empty() {
                self.written.insert(name, now_written);
            }
        }
        if left || !retry {
            self.behind |= left;
        } else {
            self.behind = false;
        }
    }

    /// Writes a claim of each of `partitions` this host still owns; its offset is
    /// the generation of the statuses of the partition's tasks. A claim that fails is
    /// tried again at the next retry, and its tasks' statuses wait for it.
    async fn claim(&mut self, shared: &SharedStatus, partitions: BTreeSet<i32>) {
        let assignments = self.transport.cluster().assignments.name.clone();
        let claim = serde_json::json!({"host_id": shared.host_id, "worker_id": shared.worker_id}).to_string();
        for partition in partitions.into_iter().filter(|partition| shared.owns(*partition)) {
            // Until written, what this host writes of the partition is its earlier
            // generation's (if it had one): hold it back.
            self.epochs.remove(&partition);
            let written = self.transport.write_compacted_to(&assignments, Some(partition), CLAIM_KEY, Some(&claim));
            match tokio::time::timeout(SEND_TIMEOUT, written).await {
                // Given up meanwhile: the next owner's claim may be older than this one.
                Ok(Ok(_)) if !shared.owns(partition) => {}
                Ok(Ok(position)) => {
                    self.epochs.insert(partition, position.offset);
                }
                failed => {
                    let error = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    self.failed(&format!("claiming partition {partition} of the assignments topic: {error}"));
                    self.behind = true;
                    shared.pending.lock().expect("pending status lock").claims.insert(partition);
                }
            }
        }
    }

    /// The records this host writes of `status`, with their generations: those of
    /// the tasks (and, with task 0, the connector) whose partitions it claimed.
    fn records_of(&self, shared: &SharedStatus, status: &ConnectorStatus) -> BTreeMap<Subject, (i64, String)> {
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
            (generation, serde_json::to_string(&record).expect("a status serialises"))
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

    /// Writes one record of the status topic of `generation` (none: a tombstone) for
    /// a task of `partition`; whether it is done.
    ///
    /// A record the topic holds that outranks it (the next owner's) is left alone, and
    /// that counts as done, unless this host owns the partition: then an earlier
    /// owner's claim was written late, after this host's, and this host claims the
    /// partition again (its writes wait for that claim).
    async fn send(&mut self, shared: &SharedStatus, key: &str, value: Option<&str>, generation: i64, partition: i32) -> bool {
        if self.stalled {
            return false;
        }
        if shared.outranked(key, generation) {
            if value.is_none() || !shared.owns(partition) {
                return true;
            }
            if self.reclaimed.get(&partition).is_none_or(|at| at.elapsed() >= RECLAIM_EVERY) {
                self.reclaimed.insert(partition, Instant::now());
                shared.pending.lock().expect("pending status lock").claims.insert(partition);
                shared.wake.notify_one();
            }
            return false;
        }
        let topic = self.transport.cluster().status.name.clone();
        let error = match tokio::time::timeout(SEND_TIMEOUT, self.transport.write_compacted(&topic, key, value)).await {
            Ok(Ok(_)) => {
                self.failing = None;
                return true;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.failed(&error);
        self.stalled = true;
        false
    }

    fn failed(&mut self, error: &str) {
        if self.failing.is_none_or(|since| since.elapsed() > WARN_EVERY) {
            tracing::warn!(
                %error,
                "Cannot write this host's task states to the cluster's status topic (or claim its partitions of the \
                 assignments topic): the other hosts show them as last written, and UNASSIGNED once this host's heartbeats \
                 stop. Retrying."
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
        let status =
            StoredStatus { state, trace: None, worker_id: format!("{host}:8083"), host_id: host.into(), generation, throttled: None };
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
        // Its own lower generation (the assignments topic made again: offsets started
        // over) replaces its record; so does another host's once the holder left.
        shared.apply(record("status-task-c-0", task(State::Running, "b", 20), 8, None), false);
        shared.apply(record("status-task-c-0", task(State::Paused, "b", 2), 9, None), false);
        assert_eq!(shared.held.read().unwrap()["status-task-c-0"].generation, 2);
        shared.apply(record("status-task-c-0", task(State::Running, "b", 20), 10, None), false);
        shared.apply(record("status-worker-b", None, 11, None), false);
        shared.apply(record("status-task-c-0", task(State::Running, "a", 3), 12, None), false);
        assert_eq!(shared.held.read().unwrap()["status-task-c-0"].host_id, "a");
        // Paused here: what this host applied holds, though the owner has not yet
        // written its paused tasks (read your writes).
        shared.apply(record("status-task-c-0", task(State::Running, "b", 30), 7, None), false);
        let mut paused = local(1);
        (paused.connector.state, paused.tasks[0].state) = (State::Paused, State::Paused);
        shared.merge(&mut paused, |_| false);
        assert_eq!(paused.tasks[0].state, State::Paused);
    }

    #[test]
    fn a_connector_this_host_cannot_plan_shows_as_its_owner_runs_it() {
        let shared = shared();
        shared.apply(record("status-worker-b", heartbeat("b"), 0, None), false);
        shared.apply(record("status-connector-c", task(State::Running, "b", 5), 1, None), false);
        shared.apply(record("status-task-c-0", task(State::Running, "b", 5), 2, None), false);
        shared.apply(record("status-task-c-1", task(State::Running, "b", 6), 3, None), false);
        let mut failed = local(0);
        (failed.connector.state, failed.connector.trace) = (State::Failed, Some("plugin x@1.0.0 is not on this host".into()));
        shared.merge(&mut failed, |_| false);
        assert_eq!((failed.connector.state, failed.connector.worker_id.as_str()), (State::Running, "b:8083"));
        let tasks: Vec<(u32, State)> = failed.tasks.iter().map(|task| (task.id, task.state)).collect();
        assert_eq!(tasks, [(0, State::Running), (1, State::Running)]);
        // Failing on its owner too: as its owner says.
        shared.apply(record("status-connector-c", task(State::Failed, "b", 5), 4, None), false);
        let mut failed = local(0);
        failed.connector.state = State::Failed;
        shared.merge(&mut failed, |_| false);
        assert_eq!((failed.connector.state, failed.connector.worker_id.as_str(), failed.tasks.len()), (State::Failed, "b:8083", 0));
    }

    #[test]
    fn the_tasks_of_a_silent_or_departed_host_show_unassigned() {
        let shared = shared();
        // Its last heartbeat was written a minute ago, read at this host's start.
        let minute_ago = super::now_ms() as i64 - 60_000;
        shared.apply(record("status-worker-a", heartbeat("a"), 0, Some(minute_ago)), true);
        shared.apply(record("status-task-c-0", task(State::Running, "a", 1), 1, None), true);
        // Until this host reads its own heartbeat back, it cannot tell silence.
        let mut status = local(1);
        shared.merge(&mut status, |_| false);
        assert_eq!((status.tasks[0].state, status.tasks[0].worker_id.as_str()), (State::Running, "a:8083"));
        shared.apply(record("status-worker-here", heartbeat("here"), 2, None), false);
        let mut status = local(1);
        shared.merge(&mut status, |_| false);
        let trace = status.tasks[0].trace.clone().unwrap_or_default();
        assert_eq!((status.tasks[0].state, status.tasks[0].worker_id.as_str()), (State::Unassigned, "a:8083"));
        let seconds = ["59", "60", "61"].iter().any(|seconds| trace.contains(&format!("has not been heard from for {seconds} s")));
        assert!(seconds && trace.contains("session.timeout.ms"), "{trace}");
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
