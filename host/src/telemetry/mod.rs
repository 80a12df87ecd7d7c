//! What the host tells about itself: Prometheus metrics and connector/task status.
//! Each event that is both logged and counted is defined once here.

mod metrics;
mod status;

pub use metrics::{Metrics, TaskLabels};
pub use status::{ConnectorStatus, State, StatusBoard, TaskStatus};
