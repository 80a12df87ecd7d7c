//! A stream processor that breaks the `state` contract on purpose (see README.md).

use wasm_connect_sdk::{
    BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, ProcessOutcome, Processor, RecordView, Settings, export_processor,
    state,
};

/// One task of the processor.
pub struct ScriptedProcessor {
    misbehave: String,
}

impl Plugin for ScriptedProcessor {
    fn description() -> Description {
        Description::new("scripted-processor", env!("CARGO_PKG_VERSION"), "Breaks the state contract on purpose, for tests.").option(
            ConfigOption::new("misbehave", OptionType::String, "none, foreign-partition, huge-value, host-store, panic or route.")
                .default("none"),
        )
    }
}

impl Processor for ScriptedProcessor {
    fn open(settings: &Settings, _partitions: &[i32]) -> Result<Self, Error> {
        Ok(Self { misbehave: settings.string("misbehave")? })
    }

    fn process(&mut self, record: &RecordView<'_>, output: &mut BatchWriter) -> Result<ProcessOutcome, Error> {
        let partition = record.partition.unwrap_or_default();
        let offset = record.offset.unwrap_or_default();
        if self.misbehave == "route" {
            // By offset: to `routed`, to a topic that cannot exist, or back to its input.
            let mut routed = record.clone();
            routed.topic = ["routed", "no spaces allowed", "events"][offset as usize % 3];
            output.push_view(&routed);
            return Ok(ProcessOutcome::Written);
        }
        let seen = state::get("seen", partition, b"count").and_then(|bytes| String::from_utf8(bytes).ok()?.parse::<u64>().ok());
        state::put("seen", partition, b"count", (seen.unwrap_or(0) + 1).to_string().as_bytes());
        // Records before offset 3 are kept and counted first, in the same batch: none of
        // that may be stored when the batch fails.
        if offset >= 3 {
            match self.misbehave.as_str() {
                "foreign-partition" => state::put("seen", 999, b"count", b"1"),
                "huge-value" => state::put("seen", partition, b"count", &vec![b'x'; 2 << 20]),
                "host-store" => state::put("timers", partition, b"e:forged", b"0"),
                "panic" => panic!("scripted panic"),
                _ => {}
            }
        }
        Ok(ProcessOutcome::Keep)
    }
}

export_processor!(ScriptedProcessor);
