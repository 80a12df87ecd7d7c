//! Shows, per task, that the transport is out of reach while it is: the task stays
//! RUNNING (it waits and carries on by itself) with a trace that says since when and
//! why, the `transport_unreachable` gauge is 1, and both clear once it answers again.

use std::time::Duration;

use super::WorkerContext;
use crate::runtime::TaskIdentity;
use crate::telemetry::{State, TaskLabels};

/// How long a source may wait for the cluster to take a batch before that counts as
/// an outage (a healthy cluster answers in milliseconds).
pub const SEND_PATIENCE: Duration = Duration::from_secs(5);

/// What a task last showed about its transport.
#[derive(Default)]
pub struct OutageReport {
    shown: Option<String>,
}

impl OutageReport {
    /// Shows `outage` (how long, and why), or that there is none, if that changed.
    pub fn update(&mut self, context: &WorkerContext, identity: &TaskIdentity, outage: Option<(Duration, String)>) {
        let labels = TaskLabels::from(identity);
        match outage {
            Some((since, reason)) => {
                let trace = format!("the Kafka cluster cannot be reached (for {} s): {reason}", since.as_secs());
                if self.shown.is_none() {
                    context.metrics.transport_outage(&labels, Some(&reason));
                }
                context.status.set_task(&identity.connector, identity.task, State::Running, Some(trace.clone()));
                self.shown = Some(trace);
            }
            None => {
                if self.shown.take().is_some() {
                    context.metrics.transport_outage(&labels, None);
                    context.status.set_task(&identity.connector, identity.task, State::Running, None);
                }
            }
        }
    }
}
