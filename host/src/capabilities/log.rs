//! `log`: plugin log lines, written through `tracing` with the connector and task.

use crate::runtime::TaskState;
use crate::runtime::bindings::capabilities::wasm_connect::connector::log::{Host, Level};

/// Longest log line a plugin may write; longer ones are cut so a plugin cannot flood the log.
const MAX_LINE: usize = 8 * 1024;

impl Host for TaskState {
    fn write(&mut self, level: Level, message: String) {
        let mut message = self.redact(&message);
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let identity = &self.identity;
        let (connector, task, plugin) = (&*identity.connector, identity.task, &*identity.plugin);
        match level {
            Level::Trace => tracing::trace!(target: "plugin", connector, task, plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", connector, task, plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", connector, task, plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", connector, task, plugin, "{message}"),
            Level::Error => tracing::error!(target: "plugin", connector, task, plugin, "{message}"),
        }
    }
}
