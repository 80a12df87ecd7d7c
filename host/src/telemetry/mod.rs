//! What the host tells about itself: Prometheus metrics, connector/task status, and
//! logs with levels that change at run time, with every known secret redacted.
//! Each event that is both logged and counted is defined once here.

pub mod logging;
mod metrics;
mod process;
pub mod redaction;
mod status;

pub use metrics::{Metrics, TaskLabels, payload_bytes};
pub use status::{ConnectorState, ConnectorStatus, State, StatusBoard, StatusListener, TaskStatus, Throttled};
