//! `source-status`: what a source tells the host about its upstream service. Today a
//! throttle: the provider refuses requests until a window resets, and the host pauses
//! the task's polling, shows the reason in status and counts it in metrics.

use std::time::{Duration, Instant};

use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::source_status::Host;

/// Longest pause a source may ask for; a longer one is cut (a monthly quota's window).
const MAX_PAUSE: Duration = Duration::from_secs(32 * 86_400);

/// A pause a source asked for in its last call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// Why, as the source put it.
    pub reason: String,
    /// When polling may start again.
    pub until: Instant,
    /// The same, as wall-clock time for the status.
    pub until_wall: std::time::SystemTime,
}

impl Host for TaskState {
    fn throttled(&mut self, reason: String, resume_after_millis: u64) {
        let pause = Duration::from_millis(resume_after_millis).min(MAX_PAUSE);
        let mut reason = reason;
        reason.truncate(reason.floor_char_boundary(1024));
        self.throttle = Some(Throttle { reason, until: Instant::now() + pause, until_wall: std::time::SystemTime::now() + pause });
    }
}
