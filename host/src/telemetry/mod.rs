//! What the host tells about itself: Prometheus metrics, connector/task status, and
//! logs with levels that change at run time.
//! Each event that is both logged and counted is defined once here.

pub mod logging;
mod metrics;
mod process;
mod status;

pub use metrics::{Metrics, TaskLabels, payload_bytes};
pub use status::{ConnectorStatus, State, StatusBoard, TaskStatus, Throttled};
