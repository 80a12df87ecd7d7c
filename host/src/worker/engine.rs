//! The one loop every task runs, whatever its connector's kind:
//!
//! input (a source plugin's `poll`, or the connector's topics) -> the connector's
//! transforms -> the batch's failed records through the error policy -> output (the
//! connector's topic, or a sink plugin's `write`) -> one checkpoint, committed once the
//! output acknowledged the batch: a source position is stored in the same write as the records, topic offsets
//! are committed after it. A source that asked to be polled again at once is polled
//! for its next batch while the last one is stored; that batch goes through the error
//! policy and out only after the last one was delivered. A new kind of task is a new
//! input or output, not a new loop.

use tokio_util::sync::CancellationToken;
use wasm_connect_protocol::Record;

use super::dead_letters::{DeadLetters, Stage};
use super::processor::ProcessorStage;
use super::sink::SinkOutput;
use super::source::SourceInput;
use super::task::TaskContext;
use super::topics::{TopicInput, TopicOutput};
use super::{ConnectorPlan, TaskError};
use crate::runtime::{PluginFailure, PluginKind};
use crate::transforms::WasmTransforms;
use crate::transport::{PartitionOffset, ProcessorCheckpoint};

/// Records on their way through a task.
pub struct Batch {
    /// The records to deliver.
    pub records: Vec<Record>,
    /// Records that already failed, to go through the error policy.
    pub failed: Vec<FailedRecord>,
    /// What the batch moves forward once delivered.
    pub checkpoint: Checkpoint,
}

/// A record that failed on its way, and why.
pub struct FailedRecord {
    /// Its index in the batch as the stage saw it.
    pub index: u32,
    /// The record as it was when it failed.
    pub record: Record,
    /// Why, with secrets already removed.
    pub reason: String,
    /// Where it failed.
    pub stage: Stage,
}

/// Where a task resumes from once a batch is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// The source's position after the batch (None: it did not move).
    Position(Option<String>),
    /// The next offset of every input partition the batch read, taken before any
    /// stage changed the records, so a stage that renames a topic cannot move them.
    Offsets(Vec<PartitionOffset>),
    /// A processor's input offsets and state changes, stored by the output in the
    /// same atomic write as the batch's results.
    Processed(ProcessorCheckpoint),
}

/// Where a task's batches come from.
enum Input {
    Source(Box<SourceInput>),
    Topics(TopicInput),
}

/// Where a task's batches go.
enum Output {
    Topic(TopicOutput),
    Sink(SinkOutput),
}

impl Input {
    async fn open(task: &TaskContext) -> Result<Self, TaskError> {
        Ok(match task.plan.kind() {
            PluginKind::Source => Input::Source(Box::new(SourceInput::open(task).await?)),
            PluginKind::Sink | PluginKind::Transform | PluginKind::Processor => Input::Topics(TopicInput::open(task).await?),
        })
    }

    async fn next(&mut self, task: &TaskContext, cancel: &CancellationToken) -> Result<Option<Batch>, TaskError> {
        match self {
            Input::Source(source) => source.next(task, cancel).await,
            Input::Topics(topics) => topics.next(task, cancel).await,
        }
    }

    /// Whether the next batch may be read at once, while the last one is delivered: a
    /// source that asked for no rest. (A topic input commits each batch's offsets
    /// before it reads on, as it always did.)
    fn goes_on_at_once(&self) -> bool {
        match self {
            Input::Source(source) => source.goes_on_at_once(),
            Input::Topics(_) => false,
        }
    }

    /// Commits a delivered batch's checkpoint, unless the output already stored it.
    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), TaskError> {
        match self {
            Input::Source(_) => Ok(()),
            Input::Topics(topics) => topics.commit(checkpoint).await,
        }
    }

    /// Waits before the next batch as long as the input asks; false when stopped.
    async fn rest(&mut self, task: &TaskContext, cancel: &CancellationToken) -> bool {
        match self {
            Input::Source(source) => source.rest(task, cancel).await,
            Input::Topics(_) => true,
        }
    }

    /// The input partitions the task reads (none for a source).
    fn partition_numbers(&self) -> Vec<i32> {
        match self {
            Input::Source(_) => Vec::new(),
            Input::Topics(topics) => topics.partition_numbers(),
        }
    }

    async fn close(&mut self) -> Result<(), TaskError> {
        match self {
            Input::Source(_) => Ok(()),
            Input::Topics(topics) => topics.close().await,
        }
    }
}

impl Output {
    async fn open(task: &TaskContext) -> Result<Self, TaskError> {
        Ok(match task.plan.kind() {
            PluginKind::Source | PluginKind::Processor => Output::Topic(TopicOutput::open(task).await?),
            PluginKind::Sink | PluginKind::Transform => Output::Sink(SinkOutput::open(task).await?),
        })
    }

    /// True once the batch is durable where it goes; false when stopped before that.
    async fn deliver(
        &mut self,
        task: &TaskContext,
        records: Vec<Record>,
        checkpoint: &Checkpoint,
        dead_letters: &mut DeadLetters,
        cancel: &CancellationToken,
    ) -> Result<bool, TaskError> {
        match self {
            Output::Topic(topic) => topic.deliver(task, records, checkpoint, cancel).await,
            Output::Sink(sink) => sink.deliver(task, records, dead_letters, cancel).await,
        }
    }
}

/// Runs one task until it is stopped (Ok) or fails (Err).
pub async fn run(task: &TaskContext, cancel: &CancellationToken) -> Result<(), TaskError> {
    // A processor's and a source's output open first: on Kafka, their transactional
    // producer fences an older instance of the task and aborts what that one left open,
    // before the input's committed offsets and the state, or the position, are read.
    let mut opened_output = match task.plan.kind() {
        PluginKind::Processor => {
            // Once for all the tasks of this plan: their earlier instances are fenced. A
            // task told to stop meanwhile fences and opens nothing more (it would fence
            // the tasks that replace it).
            let (transport, config) = (&task.worker.transport, &task.plan.config);
            if cancel.is_cancelled() {
                return Ok(());
            }
            task.plan.fenced.get_or_try_init(|| transport.fence_processor(&config.name, &config.topics)).await?;
            if cancel.is_cancelled() {
                return Ok(());
            }
            Some(Output::open(task).await?)
        }
        // So does a source's: its transactions hold its position, which the input
        // reads next.
        PluginKind::Source => {
            if cancel.is_cancelled() {
                return Ok(());
            }
            Some(Output::open(task).await?)
        }
        _ => None,
    };
    let mut input = Input::open(task).await?;
    let result = async {
        let mut output = match opened_output.take() {
            Some(output) => output,
            None => Output::open(task).await?,
        };
        pump(task, &mut input, &mut output, cancel).await
    }
    .await;
    // A topic input commits what was acknowledged even when the task failed.
    let closed = input.close().await;
    result?;
    closed
}

async fn pump(task: &TaskContext, input: &mut Input, output: &mut Output, cancel: &CancellationToken) -> Result<(), TaskError> {
    let mut dead_letters = DeadLetters::default();
    let mut stages = Some(open_transforms(task).await?);
    let mut processor = match task.plan.kind() {
        PluginKind::Processor => Some(ProcessorStage::open(task, &input.partition_numbers(), cancel).await?),
        _ => None,
    };
    let mut read_ahead = None;
    loop {
        let batch = match read_ahead.take() {
            Some(batch) => batch,
            None => match read(task, input, &mut stages, cancel).await? {
                Some(batch) => batch,
                None => return Ok(()),
            },
        };
        let batch = match &mut processor {
            Some(processor) => processor.process(task, batch, &mut dead_letters).await?,
            None => batch,
        };
        // Failed records go through the error policy only now, after the batch before
        // was delivered: a batch read ahead of a failed delivery is read again.
        for failed in batch.failed {
            dead_letters.reject(task, failed.record, failed.reason, failed.stage, failed.index).await?;
        }
        // A source that asked for no rest is polled for its next batch while this one
        // is stored (plugin work beside store work); its position only moves with the
        // batch stored, so a batch read ahead of a stop or a failure comes again.
        let goes_on_at_once = input.goes_on_at_once();
        let delivering = output.deliver(task, batch.records, &batch.checkpoint, &mut dead_letters, cancel);
        let (delivered, next) = if goes_on_at_once {
            // A delivery that failed or was stopped ends the reading too (a poll being
            // retried would otherwise hold the failure back for as long as it retries).
            let reading = cancel.child_token();
            let delivering = async {
                let delivered = delivering.await;
                if !matches!(delivered, Ok(true)) {
                    reading.cancel();
                }
                delivered
            };
            let (delivered, next) = tokio::join!(delivering, read(task, input, &mut stages, &reading));
            (delivered, Some(next))
        } else {
            (delivering.await, None)
        };
        if !delivered? {
            // Stopped before the batch was delivered: it comes again at the next start.
            return Ok(());
        }
        input.commit(&batch.checkpoint).await?;
        match next {
            Some(next) => match next? {
                Some(next) => read_ahead = Some(next),
                None => return Ok(()),
            },
            None if !input.rest(task, cancel).await => return Ok(()),
            None => {}
        }
    }
}

/// The input's next batch through the connector's transforms; None when stopped.
async fn read(
    task: &TaskContext,
    input: &mut Input,
    stages: &mut Option<WasmTransforms>,
    cancel: &CancellationToken,
) -> Result<Option<Batch>, TaskError> {
    match input.next(task, cancel).await? {
        Some(batch) => Ok(Some(transform(task, stages, batch).await?)),
        None => Ok(None),
    }
}

/// Opens the task's instances of the WASM transforms in its chain.
async fn open_transforms(task: &TaskContext) -> Result<WasmTransforms, TaskError> {
    if task.plan.chain.wasm_count() == 0 {
        return Ok(WasmTransforms::default());
    }
    let (plan, runtime, metrics, connector, number) =
        (task.plan.clone(), task.worker.runtime.clone(), task.worker.metrics.clone(), task.identity.connector.clone(), task.identity.task);
    tokio::task::spawn_blocking(move || WasmTransforms::open(&plan.chain, &runtime, &connector, number, Some(metrics)))
        .await
        .map_err(|error| TaskError::from(PluginFailure::Trapped(format!("opening the transforms failed in the host: {error}"))))?
        .map_err(TaskError::from)
}

/// Runs the batch's records through the connector's transforms, off the async
/// threads (a jq expression or a WASM transform may take its time). A record a
/// transform drops leaves the batch; one a transform fails joins the failed records as
/// it was before the chain (what Kafka Connect dead-letters). The checkpoint stays: it
/// was taken at input. A WASM transform that fails the whole call fails the task,
/// and the batch comes again after the restart.
async fn transform(task: &TaskContext, stages: &mut Option<WasmTransforms>, batch: Batch) -> Result<Batch, TaskError> {
    if task.plan.chain.is_empty() || batch.records.is_empty() {
        return Ok(batch);
    }
    let plan = task.plan.clone();
    let mut wasm = stages.take().ok_or_else(|| PluginFailure::Trapped("the transforms were lost in an earlier batch".to_owned()))?;
    let (wasm, batch) = tokio::task::spawn_blocking(move || {
        let batch = transform_batch(&plan, &mut wasm, batch);
        (wasm, batch)
    })
    .await
    .map_err(|error| PluginFailure::Fatal(format!("the transforms' thread failed: {error}")))?;
    *stages = Some(wasm);
    batch.map_err(TaskError::from)
}

fn transform_batch(plan: &ConnectorPlan, wasm: &mut WasmTransforms, mut batch: Batch) -> Result<Batch, PluginFailure> {
    let records = std::mem::take(&mut batch.records);
    // A record that fails is dead-lettered as it came in.
    let mut originals = records.clone();
    let output = plan.chain.apply(records, wasm)?;
    batch.records = output.records;
    for (index, failure) in output.failed {
        batch.failed.push(FailedRecord {
            index: index as u32,
            record: std::mem::take(&mut originals[index]),
            reason: plan.redact(&format!("the transform {} ({}) failed the record: {}", failure.alias, failure.type_name, failure.reason)),
            stage: Stage::Transformation { type_name: failure.type_name },
        });
    }
    Ok(batch)
}
