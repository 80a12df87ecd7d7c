//! Connector and task states in Kafka Connect's vocabulary, for the admin API.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::runtime::PluginKind;

/// Kafka Connect's state names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Not started yet.
    Unassigned,
    /// Running.
    Running,
    /// Paused by an operator: its tasks are stopped until it is resumed.
    Paused,
    /// Failed; see `trace`.
    Failed,
    /// Waiting to be restarted after a failure.
    Restarting,
    /// Stopped.
    Stopped,
}

impl State {
    /// Every state, for metrics that show one gauge per state.
    pub const ALL: [State; 6] = [State::Unassigned, State::Running, State::Paused, State::Failed, State::Restarting, State::Stopped];

    /// The state's name as the API shows it.
    pub fn name(self) -> &'static str {
        match self {
            State::Unassigned => "UNASSIGNED",
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Failed => "FAILED",
            State::Restarting => "RESTARTING",
            State::Stopped => "STOPPED",
        }
    }
}

/// One task's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TaskStatus {
    /// Task number.
    pub id: u32,
    /// Its state.
    pub state: State,
    /// The host running it.
    pub worker_id: String,
    /// Why it failed last, while failed or restarting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// While a running source waits for its provider's rate limit or quota to reset
    /// (not in Kafka Connect; its clients ignore the field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled: Option<Throttled>,
}

/// Why a source is held back and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Throttled {
    /// The provider's answer, as the source summarised it.
    pub reason: String,
    /// When polling resumes, RFC 3339 UTC.
    pub until: String,
}

/// One connector's status, in Kafka Connect's `GET /connectors/{name}/status` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConnectorStatus {
    /// Connector name.
    pub name: String,
    /// The connector itself.
    pub connector: ConnectorState,
    /// Its tasks.
    pub tasks: Vec<TaskStatus>,
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: PluginKind,
}

/// The connector part of a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConnectorState {
    /// Its state.
    pub state: State,
    /// The host running it.
    pub worker_id: String,
    /// Why it failed, while failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Told of each change of a connector's status on this host (the cluster's shared
/// status, which publishes the states of the tasks this host runs).
pub trait StatusListener: Send + Sync + std::fmt::Debug {
    /// `connector` changed to `status`; none: it is gone.
    fn changed(&self, connector: &str, status: Option<&ConnectorStatus>);
}

/// Every connector's status, shared by workers (writers) and the admin API (reader).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    connectors: Arc<RwLock<BTreeMap<String, ConnectorStatus>>>,
    worker_id: String,
    listener: Option<Arc<dyn StatusListener>>,
}

impl StatusBoard {
    /// A board for this host, known to others as `worker_id`.
    pub fn new(worker_id: &str) -> Self {
        Self { connectors: Arc::default(), worker_id: worker_id.to_owned(), listener: None }
    }

    /// The same board, telling `listener` of every change from now on.
    pub fn with_listener(mut self, listener: Arc<dyn StatusListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Tells the listener what `connector` is now in `connectors`, under the board's
    /// lock: so the listener is told of the changes in the order they were made.
    fn changed(&self, connectors: &BTreeMap<String, ConnectorStatus>, connector: &str) {
        if let Some(listener) = &self.listener {
            listener.changed(connector, connectors.get(connector));
        }
    }

    /// Registers (or re-registers) a connector in `state`: a running connector has
    /// `tasks` unassigned tasks that report their own states, a paused one `tasks`
    /// paused tasks, a stopped one none (as Kafka Connect shows a stopped connector).
    pub fn set_connector(&self, name: &str, kind: PluginKind, tasks: u32, state: State) {
        let task_state = match state {
            State::Running => State::Unassigned,
            other => other,
        };
        let tasks = if state == State::Stopped { 0 } else { tasks };
        let status = ConnectorStatus {
            name: name.to_owned(),
            connector: ConnectorState { state, worker_id: self.worker_id.clone(), trace: None },
            tasks: (0..tasks)
                .map(|id| TaskStatus { id, state: task_state, worker_id: self.worker_id.clone(), trace: None, throttled: None })
                .collect(),
            kind,
        };
        let mut connectors = self.connectors.write().expect("status lock");
        connectors.insert(name.to_owned(), status);
        self.changed(&connectors, name);
    }

    /// Registers a connector that cannot run at all (its plugin is gone, its stored
    /// configuration no longer valid): FAILED, with `trace` saying why.
    pub fn set_connector_failed(&self, name: &str, kind: PluginKind, trace: String) {
        let status = ConnectorStatus {
            name: name.to_owned(),
            connector: ConnectorState { state: State::Failed, worker_id: self.worker_id.clone(), trace: Some(trace) },
            tasks: Vec::new(),
            kind,
        };
        let mut connectors = self.connectors.write().expect("status lock");
        connectors.insert(name.to_owned(), status);
        self.changed(&connectors, name);
    }

    /// Forgets a deleted connector.
    pub fn remove_connector(&self, name: &str) {
        let mut connectors = self.connectors.write().expect("status lock");
        connectors.remove(name);
        self.changed(&connectors, name);
    }

    /// Sets a task's state; `trace` says why when it failed.
    pub fn set_task(&self, connector: &str, task: u32, state: State, trace: Option<String>) {
        let mut connectors = self.connectors.write().expect("status lock");
        let Some(task) = connectors.get_mut(connector).and_then(|status| status.tasks.get_mut(task as usize)) else { return };
        task.state = state;
        if trace.is_some() || state == State::Running {
            task.trace = trace;
        }
        if state != State::Running {
            task.throttled = None;
        }
        self.changed(&connectors, connector);
    }

    /// Shows or clears a running task's throttle.
    pub fn set_task_throttled(&self, connector: &str, task: u32, throttled: Option<Throttled>) {
        let mut connectors = self.connectors.write().expect("status lock");
        let Some(task) = connectors.get_mut(connector).and_then(|status| status.tasks.get_mut(task as usize)) else { return };
        task.throttled = throttled;
        self.changed(&connectors, connector);
    }

    /// Marks every connector and task stopped (the host stops: not told to the
    /// listener; the other hosts learn it from the host's leaving).
    pub fn stop_all(&self) {
        for status in self.connectors.write().expect("status lock").values_mut() {
            status.connector.state = State::Stopped;
            for task in &mut status.tasks {
                task.state = State::Stopped;
            }
        }
    }

    /// Every connector's status, by name.
    pub fn all(&self) -> Vec<ConnectorStatus> {
        self.connectors.read().expect("status lock").values().cloned().collect()
    }

    /// One connector's status.
    pub fn get(&self, connector: &str) -> Option<ConnectorStatus> {
        self.connectors.read().expect("status lock").get(connector).cloned()
    }
}
