//! A stream processor that reports the keys (devices, services, cards) that went
//! silent: no record for `silence`, by event time or by the wall clock, and reports
//! them again when they come back. The example plugin of the WIT `stream-processor`
//! world: state per key, one timer per key, results emitted from timers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use wasm_connect_sdk::timers::{self, Clock, Timer};
use wasm_connect_sdk::{
    BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, ProcessOutcome, Processor, RecordView, Settings, export_processor,
    state, time,
};

/// The newest event time of each group still heard from.
const LAST_SEEN: &str = "last-seen";
/// The groups reported silent, with their last event time.
const SILENT: &str = "silent";
/// The longest group name (a timer's name).
const MAX_GROUP_BYTES: usize = 256;

/// One task of the processor.
pub struct SilenceDetector {
    silence: i64,
    clock: Clock,
}

impl Plugin for SilenceDetector {
    fn description() -> Description {
        Description::new(
            "silence-detector",
            env!("CARGO_PKG_VERSION"),
            "Reports each key (a device, a service) that sends no record for `silence`, once, and again when it comes back: \
             {\"group\", \"status\": \"silent\", \"last_seen\", \"detected_at\"} and {\"group\", \"status\": \"back\", \
             \"last_seen\", \"back_at\"}.",
        )
        .option(ConfigOption::new("silence", OptionType::Duration, "How long without a record makes a key silent.").default("5m"))
        .option(
            ConfigOption::new(
                "clock",
                OptionType::String,
                "event-time: silence is measured in the input partition's stream time (a replay reports the same), so it needs \
                 other keys' records to move on; wall-clock: by the host's clock, so a whole topic gone quiet is reported too.",
            )
            .default("event-time"),
        )
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !matches!(settings.get("clock"), Some("event-time" | "wall-clock")) {
            problems.push(("clock".to_owned(), "must be event-time or wall-clock".to_owned()));
        }
        if settings.duration("silence").is_ok_and(|silence| silence < Duration::from_millis(1)) {
            problems.push(("silence".to_owned(), "must be at least 1ms".to_owned()));
        }
        problems
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

fn decimal(bytes: Option<Vec<u8>>) -> Option<i64> {
    std::str::from_utf8(&bytes?).ok()?.parse().ok()
}

impl SilenceDetector {
    /// The record's group (its key), or why it has none. State and timers are kept per
    /// input partition, so the group is the key: a group must come on one partition.
    fn group(&self, record: &RecordView<'_>) -> Result<String, String> {
        // Not read lossily: two different keys must not become one group.
        let group = std::str::from_utf8(record.key.ok_or("the record has no key (the group)")?)
            .map_err(|_| "the record's key is not UTF-8")?
            .to_owned();
        if group.len() > MAX_GROUP_BYTES {
            return Err(format!("the group has {} bytes; at most {MAX_GROUP_BYTES}", group.len()));
        }
        Ok(group)
    }
}

impl Processor for SilenceDetector {
    fn open(settings: &Settings, _partitions: &[i32]) -> Result<Self, Error> {
        let silence = settings.duration("silence")?.as_millis().min(i64::MAX as u128) as i64;
        let clock = if settings.get("clock") == Some("wall-clock") { Clock::WallClock } else { Clock::EventTime };
        Ok(Self { silence, clock })
    }

    fn process(&mut self, record: &RecordView<'_>, output: &mut BatchWriter) -> Result<ProcessOutcome, Error> {
        let Some(partition) = record.partition else {
            return Ok(ProcessOutcome::Fail("the record has no input partition".to_owned()));
        };
        let group = match self.group(record) {
            Ok(group) => group,
            Err(reason) => return Ok(ProcessOutcome::Fail(reason)),
        };
        let time = match (record.timestamp, self.clock) {
            (Some(time), _) => time,
            (None, Clock::WallClock) => now_ms(),
            (None, Clock::EventTime) => return Ok(ProcessOutcome::Fail("the record has no timestamp".to_owned())),
        };
        let mut outcome = ProcessOutcome::Drop;
        if let Some(last_seen) = decimal(state::get(SILENT, partition, group.as_bytes())) {
            state::delete(SILENT, partition, group.as_bytes());
            let value = json!({
                "group": group, "status": "back",
                "last_seen": time::format_rfc3339(last_seen), "back_at": time::format_rfc3339(time),
            });
            output.push_keyed(Some(time), Some(group.as_bytes()), value.to_string().as_bytes());
            outcome = ProcessOutcome::Written;
        }
        let last = decimal(state::get(LAST_SEEN, partition, group.as_bytes())).map_or(time, |last| last.max(time));
        state::put(LAST_SEEN, partition, group.as_bytes(), last.to_string().as_bytes());
        let due = match self.clock {
            Clock::EventTime => last.saturating_add(self.silence),
            Clock::WallClock => now_ms().saturating_add(self.silence),
        };
        timers::set(partition, &group, self.clock, due);
        Ok(outcome)
    }

    fn on_timer(&mut self, timer: &Timer, output: &mut BatchWriter) -> Result<(), Error> {
        let group = timer.name.as_bytes();
        let Some(last) = decimal(state::get(LAST_SEEN, timer.partition, group)) else { return Ok(()) };
        if timer.clock == Clock::EventTime && last.saturating_add(self.silence) > timer.at_ms {
            // Heard from since the timer was set (it is moved on each record, so only
            // a restored timer can be early): wait again.
            timers::set(timer.partition, &timer.name, Clock::EventTime, last.saturating_add(self.silence));
            return Ok(());
        }
        state::delete(LAST_SEEN, timer.partition, group);
        state::put(SILENT, timer.partition, group, last.to_string().as_bytes());
        let value = json!({
            "group": timer.name, "status": "silent",
            "last_seen": time::format_rfc3339(last), "detected_at": time::format_rfc3339(timer.at_ms),
        });
        output.push_keyed(Some(timer.at_ms), Some(group), value.to_string().as_bytes());
        Ok(())
    }
}

export_processor!(SilenceDetector);
