//! Shows, per task, that the transport is out of reach while it is: the task stays
//! RUNNING (it waits and carries on by itself) with a trace that says since when and
//! why, the `transport_unreachable` gauge is 1, and both clear once it answers again.

use std::time::Duration;

use super::task::TaskContext;
use crate::telemetry::State;

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
    pub fn update(&mut self, task: &TaskContext, outage: Option<(Duration, String)>) {
        match outage {
            Some((since, reason)) => {
                let trace = format!("the Kafka cluster cannot be reached (for {} s): {reason}", since.as_secs());
                if self.shown.is_none() {
                    task.metrics().transport_outage(&task.labels, Some(&reason));
                }
                task.show(State::Running, Some(trace.clone()));
                self.shown = Some(trace);
            }
            None => {
                if self.shown.take().is_some() {
                    task.metrics().transport_outage(&task.labels, None);
                    task.show(State::Running, None);
                }
            }
        }
    }
}
