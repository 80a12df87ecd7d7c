//! One plugin instance per connector task: its store (memory limit, call deadline, no
//! files, no environment) and typed calls that classify every failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{InstancePre, ResourceTable};
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{record_transform, sink, source, stream_processor, types as wit};
use super::engine::EPOCH_TICK;
use super::{LoadedPlugin, PluginFailure, Runtime};
use crate::capabilities::files::FileGrant;
use crate::capabilities::http::NetworkClock;
use crate::capabilities::log::{LOG_FLOOD_CHECK, LOG_FLOOD_REASON, LogBudget};
use crate::capabilities::{Egress, Grants, StoreClients, Throttle};
use crate::telemetry::Metrics;

/// Which connector task an instance serves; carried into logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    /// Connector name.
    pub connector: Arc<str>,
    /// Task number, from 0.
    pub task: u32,
    /// Plugin name.
    pub plugin: Arc<str>,
}

/// The store's limits, remembering how large the plugin's memory has grown.
struct TaskLimiter {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl ResourceLimiter for TaskLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self.memory_bytes - current.min(self.memory_bytes) + desired;
        }
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Time spent in the current plugin call, split into the guest's own time and the
/// time it waited on host capabilities (a store's bulk request, an HTTP response):
/// only the guest's time counts against `call_timeout`.
#[derive(Debug, Clone)]
pub struct CallClock {
    started: Instant,
    in_host: Duration,
    network: Arc<NetworkClock>,
    network_at_start: Duration,
}

impl CallClock {
    fn new(network: Arc<NetworkClock>) -> Self {
        let network_at_start = network.waited();
        Self { started: Instant::now(), in_host: Duration::ZERO, network, network_at_start }
    }

    fn guest_time(&self) -> Duration {
        let on_network = self.network.waited().saturating_sub(self.network_at_start);
        self.started.elapsed().saturating_sub(self.in_host).saturating_sub(on_network)
    }
}

/// What a task's plugin may reach, what it must never reveal, and where its outgoing
/// requests are counted.
#[derive(Clone, Default)]
pub struct TaskAccess {
    /// What the connector's configuration grants.
    pub grants: Grants,
    /// Values of secret options: removed from the plugin's log lines.
    pub secrets: Arc<[String]>,
    /// Where outgoing HTTP requests are counted.
    pub metrics: Option<Arc<Metrics>>,
}

impl From<Grants> for TaskAccess {
    fn from(grants: Grants) -> Self {
        Self { grants, ..Self::default() }
    }
}

/// The host state of one store.
pub struct TaskState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: TaskLimiter,
    clock: CallClock,
    /// The task this store belongs to.
    pub identity: TaskIdentity,
    /// What the connector's configuration grants the plugin.
    pub grants: Grants,
    /// The directory the `files` capability may write to, if granted.
    pub files: Option<FileGrant>,
    /// The host's pooled store clients, shared by every task.
    pub stores: Arc<StoreClients>,
    http: WasiHttpCtx,
    egress: Egress,
    secrets: Arc<[String]>,
    metrics: Option<Arc<Metrics>>,
    /// The pause the source asked for in its last call, if any (`source-status`).
    pub throttle: Option<Throttle>,
    /// How many more lines the plugin may log now (`log`).
    pub log_budget: LogBudget,
    /// Calls of the files and store capabilities in the current plugin call.
    capability_calls: u32,
    /// A stream processor's state and timers (`state`, `timers`); None for other kinds.
    pub keyed_state: Option<crate::processing::keyed_state::KeyedState>,
}

/// The most calls of the files and store capabilities one plugin call may make: far
/// above what a sink makes per batch (a few) or a file sink when it opens (one per
/// rotated file), and reached within milliseconds by a plugin that calls them in a
/// loop, which is then failed instead of keeping a core and a store busy.
pub const MAX_CAPABILITY_CALLS: u32 = 10_000;

/// Why a plugin call was stopped after [`MAX_CAPABILITY_CALLS`].
pub const CAPABILITY_FLOOD_REASON: &str = "the plugin called the files and store capabilities more than 10,000 times in one call; \
     the task is failed to protect the others";

impl TaskState {
    /// Counts one call of the files or a store capability; past
    /// [`MAX_CAPABILITY_CALLS`] in one plugin call, the call is stopped at its next
    /// deadline check (within 100 ms).
    pub fn count_capability_call(&mut self) {
        self.capability_calls = self.capability_calls.saturating_add(1);
    }

    /// Runs a host capability's blocking work; its duration does not count against
    /// the plugin's call deadline.
    pub fn in_host<R>(&mut self, work: impl FnOnce(&StoreClients) -> R) -> R {
        self.count_capability_call();
        let started = Instant::now();
        let result = work(&self.stores);
        self.clock.in_host += started.elapsed();
        result
    }

    /// Runs a store request (`in_host`), timing it in the store-write metrics.
    pub fn write_to_store<T, E>(&mut self, work: impl FnOnce(&StoreClients) -> Result<T, E>) -> Result<T, E> {
        let started = Instant::now();
        let result = self.in_host(work);
        if let Some(metrics) = &self.metrics {
            metrics.store_write(&self.identity, result.is_ok(), started.elapsed());
        }
        result
    }

    /// The length of the longest secret option value.
    pub fn longest_secret(&self) -> usize {
        self.secrets.iter().map(String::len).max().unwrap_or(0)
    }

    /// `text` with every secret option value replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "[redacted]"))
    }
}

impl WasiHttpView for TaskState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn new_store(runtime: &Runtime, identity: TaskIdentity, access: TaskAccess) -> Store<TaskState> {
    let TaskAccess { grants, secrets, metrics } = access;
    // No preopened directories, no environment variables, no arguments: clocks,
    // random numbers and stdout/stderr (discarded) are all a plugin gets from WASI.
    let wasi = WasiCtx::builder().build();
    let limits = StoreLimitsBuilder::new().memory_size(runtime.limits.memory_bytes).trap_on_grow_failure(true).build();
    let egress = Egress::new(grants.egress_policy(), identity.clone(), metrics.clone());
    let state = TaskState {
        wasi,
        table: ResourceTable::new(),
        limiter: TaskLimiter { limits, memory_bytes: 0 },
        clock: CallClock::new(egress.clock.clone()),
        identity,
        files: grants.directory.clone().map(FileGrant::new),
        grants,
        stores: runtime.stores.clone(),
        http: WasiHttpCtx::new(),
        egress,
        secrets,
        metrics,
        throttle: None,
        log_budget: LogBudget::default(),
        capability_calls: 0,
        keyed_state: None,
    };
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|state| &mut state.limiter);
    let timeout = runtime.limits.call_timeout;
    store.epoch_deadline_callback(move |context| {
        if context.data().log_budget.flooding() {
            return Err(wasmtime::format_err!("{}", LOG_FLOOD_REASON));
        }
        if context.data().capability_calls > MAX_CAPABILITY_CALLS {
            return Err(wasmtime::format_err!("{}", CAPABILITY_FLOOD_REASON));
        }
        let guest_time = context.data().clock.guest_time();
        if guest_time >= timeout {
            Err(Trap::Interrupt.into())
        } else {
            // At least every LOG_FLOOD_CHECK, so a flood (of log lines or of
            // capability calls) is stopped within that.
            Ok(UpdateDeadline::Continue(ticks(timeout - guest_time).min(ticks(LOG_FLOOD_CHECK))))
        }
    });
    store
}

fn ticks(duration: Duration) -> u64 {
    (duration.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Starts the clock of a new plugin call and arms its deadline.
fn start_call(store: &mut Store<TaskState>, runtime: &Runtime) {
    let network = store.data().egress.clock.clone();
    store.data_mut().clock = CallClock::new(network);
    store.data_mut().throttle = None;
    store.data_mut().capability_calls = 0;
    store.set_epoch_deadline(ticks(runtime.limits.call_timeout).min(ticks(LOG_FLOOD_CHECK)));
}

/// What one poll of a source returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollOutcome {
    /// Encoded records.
    pub batch: Vec<u8>,
    /// Position after the batch, if it moved.
    pub position: Option<String>,
    /// How long to wait before polling again when the batch is empty.
    pub idle_millis: u32,
    /// The source will never produce again.
    pub finished: bool,
    /// The pause the source asked for during this poll (`source-status.throttled`).
    pub throttle: Option<Throttle>,
}

/// The generated bindings of one plugin world (source, sink, transform): how to
/// instantiate them in a task's store.
pub trait PluginWorld: Sized + Send + 'static {
    /// Instantiates the world's exports of a pre-linked component.
    fn instantiate(pre: InstancePre<TaskState>, store: &mut Store<TaskState>) -> wasmtime::Result<Self>;
}

impl PluginWorld for source::SourceBase {
    fn instantiate(pre: InstancePre<TaskState>, store: &mut Store<TaskState>) -> wasmtime::Result<Self> {
        source::SourceBasePre::new(pre)?.instantiate(store)
    }
}

impl PluginWorld for sink::SinkBase {
    fn instantiate(pre: InstancePre<TaskState>, store: &mut Store<TaskState>) -> wasmtime::Result<Self> {
        sink::SinkBasePre::new(pre)?.instantiate(store)
    }
}

impl PluginWorld for record_transform::RecordTransformBase {
    fn instantiate(pre: InstancePre<TaskState>, store: &mut Store<TaskState>) -> wasmtime::Result<Self> {
        record_transform::RecordTransformBasePre::new(pre)?.instantiate(store)
    }
}

impl PluginWorld for stream_processor::StreamProcessorBase {
    fn instantiate(pre: InstancePre<TaskState>, store: &mut Store<TaskState>) -> wasmtime::Result<Self> {
        stream_processor::StreamProcessorBasePre::new(pre)?.instantiate(store)
    }
}

/// One task's running plugin, of any world: its store (limits, deadline, grants) and
/// its bindings. Every call starts the deadline clock and classifies its failure the
/// same way, whatever the world.
pub struct PluginInstance<W> {
    store: Store<TaskState>,
    bindings: W,
    runtime: Runtime,
}

/// A running source plugin.
pub type SourceInstance = PluginInstance<source::SourceBase>;
/// A running sink plugin.
pub type SinkInstance = PluginInstance<sink::SinkBase>;
/// A running transform plugin (WIT 0.1.3 `record-transform`).
pub type TransformInstance = PluginInstance<record_transform::RecordTransformBase>;

/// A running stream-processor plugin (WIT 0.1.4 `stream-processor`).
pub type ProcessorInstance = PluginInstance<stream_processor::StreamProcessorBase>;

/// What a stream-processor plugin made of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessorOutcome {
    /// Goes out unchanged.
    Keep,
    /// Nothing goes out for it.
    Drop,
    /// Replaced by the next n records of the output batch.
    Many(u32),
    /// Failed, for this reason: the error policy decides.
    Fail(String),
    /// Came after its window closed, for this reason: the dead-letter topic.
    Late(String),
}

/// What a transform plugin made of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Unchanged.
    Keep,
    /// Dropped.
    Drop,
    /// Replaced by the next n records of the output batch.
    Many(u32),
    /// Failed, for this reason (as the plugin gave it).
    Fail(String),
}

/// What one `apply` of a transform plugin returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformed {
    /// One per input record, as the plugin returned them (not checked yet).
    pub outcomes: Vec<RecordOutcome>,
    /// The records of the `Many` outcomes, encoded.
    pub batch: Vec<u8>,
}

impl<W: PluginWorld> PluginInstance<W> {
    /// Instantiates `plugin` for one task; `access` is what its connector's
    /// configuration lets it reach.
    pub fn new(
        runtime: &Runtime,
        plugin: &LoadedPlugin,
        identity: TaskIdentity,
        access: impl Into<TaskAccess>,
    ) -> Result<Self, PluginFailure> {
        let mut store = new_store(runtime, identity, access.into());
        start_call(&mut store, runtime);
        let bindings = W::instantiate(plugin.instance_pre(runtime)?, &mut store)
            .map_err(|error| PluginFailure::from_trap(&error, runtime.limits.call_timeout))?;
        Ok(Self { store, bindings, runtime: runtime.clone() })
    }

    /// Linear memory the plugin has grown to, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes
    }

    /// One call into the plugin: the deadline clock starts, a trap and an error value
    /// the plugin returned both become a [`PluginFailure`].
    fn call<T>(
        &mut self,
        call: impl FnOnce(&W, &mut Store<TaskState>) -> wasmtime::Result<Result<T, wit::Error>>,
    ) -> Result<T, PluginFailure> {
        start_call(&mut self.store, &self.runtime);
        let timeout = self.runtime.limits.call_timeout;
        let result = call(&self.bindings, &mut self.store).map_err(|error| PluginFailure::from_trap(&error, timeout));
        // A call shorter than the deadline check may flood the log all the same.
        if self.store.data().log_budget.flooding() {
            return Err(PluginFailure::Trapped(LOG_FLOOD_REASON.to_owned()));
        }
        result?.map_err(PluginFailure::from)
    }
}

impl SourceInstance {
    /// Starts the source from its stored position.
    pub fn open(&mut self, config: &[(String, String)], position: Option<&str>) -> Result<(), PluginFailure> {
        self.call(|bindings, store| bindings.wasm_connect_connector_source_connector().call_open(store, &config.to_vec(), position))
    }

    /// Asks for up to `max_records` records.
    pub fn poll(&mut self, max_records: u32) -> Result<PollOutcome, PluginFailure> {
        let result = self.call(|bindings, store| bindings.wasm_connect_connector_source_connector().call_poll(store, max_records))?;
        Ok(PollOutcome {
            batch: result.batch,
            position: result.position,
            idle_millis: result.idle_millis,
            finished: result.finished,
            throttle: self.store.data_mut().throttle.take(),
        })
    }
}

impl SinkInstance {
    /// Prepares the sink.
    pub fn open(&mut self, config: &[(String, String)]) -> Result<(), PluginFailure> {
        self.call(|bindings, store| bindings.wasm_connect_connector_sink_connector().call_open(store, &config.to_vec()))
    }

    /// Writes one encoded batch; ok means durably written.
    pub fn write(&mut self, batch: Vec<u8>) -> Result<(), PluginFailure> {
        self.call(|bindings, store| bindings.wasm_connect_connector_sink_connector().call_write(store, &batch))
    }
}

impl TransformInstance {
    /// Prepares the transform with its options.
    pub fn open(&mut self, config: &[(String, String)]) -> Result<(), PluginFailure> {
        self.call(|bindings, store| bindings.wasm_connect_connector_record_transform().call_open(store, &config.to_vec()))
    }

    /// Transforms one encoded batch.
    pub fn apply(&mut self, batch: Vec<u8>) -> Result<Transformed, PluginFailure> {
        use record_transform::exports::wasm_connect::connector::record_transform::Outcome;
        let result = self.call(|bindings, store| bindings.wasm_connect_connector_record_transform().call_apply(store, &batch))?;
        Ok(Transformed {
            outcomes: result
                .outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Outcome::Keep => RecordOutcome::Keep,
                    Outcome::Drop => RecordOutcome::Drop,
                    Outcome::Many(count) => RecordOutcome::Many(count),
                    Outcome::Fail(reason) => RecordOutcome::Fail(reason),
                })
                .collect(),
            batch: result.batch,
        })
    }
}

impl ProcessorInstance {
    /// Prepares the processor for `partitions` (their state is in the store already).
    pub fn open(&mut self, config: &[(String, String)], partitions: &[i32]) -> Result<(), PluginFailure> {
        self.call(|bindings, store| bindings.wasm_connect_connector_stream_processor().call_open(store, &config.to_vec(), partitions))
    }

    /// Processes one encoded batch: one outcome per record, and the records of the `Many` ones.
    pub fn process(&mut self, batch: Vec<u8>) -> Result<(Vec<ProcessorOutcome>, Vec<u8>), PluginFailure> {
        use stream_processor::exports::wasm_connect::connector::stream_processor::Outcome;
        let result = self.call(|bindings, store| bindings.wasm_connect_connector_stream_processor().call_process(store, &batch))?;
        let outcomes = result
            .outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Keep => ProcessorOutcome::Keep,
                Outcome::Drop => ProcessorOutcome::Drop,
                Outcome::Many(count) => ProcessorOutcome::Many(count),
                Outcome::Fail(reason) => ProcessorOutcome::Fail(reason),
                Outcome::Late(reason) => ProcessorOutcome::Late(reason),
            })
            .collect();
        Ok((outcomes, result.batch))
    }

    /// Fires `timers`: the encoded records they emit.
    pub fn on_timer(&mut self, timers: &[crate::processing::keyed_state::DueTimer]) -> Result<Vec<u8>, PluginFailure> {
        use crate::processing::keyed_state::TimerClock;
        use stream_processor::wasm_connect::connector::timers::{Clock, Timer};
        let fired: Vec<Timer> = timers
            .iter()
            .map(|timer| Timer {
                partition: timer.partition,
                name: timer.name.clone(),
                clock: match timer.clock {
                    TimerClock::EventTime => Clock::EventTime,
                    TimerClock::WallClock => Clock::WallClock,
                },
                at_millis: timer.at_ms,
            })
            .collect();
        self.call(|bindings, store| bindings.wasm_connect_connector_stream_processor().call_on_timer(store, &fired))
    }

    /// The processor's state and timers, held in its store.
    pub fn keyed_state(&mut self) -> &mut Option<crate::processing::keyed_state::KeyedState> {
        &mut self.store.data_mut().keyed_state
    }
}

/// A store for one short call (describe, validate), with the same limits as a task.
pub(crate) fn probe_store(runtime: &Runtime, identity: TaskIdentity) -> Store<TaskState> {
    let mut store = new_store(runtime, identity, TaskAccess::default());
    start_call(&mut store, runtime);
    store
}
