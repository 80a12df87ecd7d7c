//! `log-sink`: one log line per record, through the host's log: for looking at a
//! topic while building a pipeline.

use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, RecordView, Settings, Sink, export_sink, log};

/// The sink task.
pub struct LogSink {
    max_value_bytes: usize,
}

impl Plugin for LogSink {
    fn description() -> Description {
        Description::new("log-sink", env!("CARGO_PKG_VERSION"), "Logs one line per record: topic, partition, offset, key, value.").option(
            ConfigOption::new("max_value_bytes", OptionType::Integer, "Values longer than this are cut in the log line.").default("1024"),
        )
    }
}

fn lossy_text(bytes: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
    bytes.map_or("null".into(), String::from_utf8_lossy)
}

impl Sink for LogSink {
    fn open(settings: &Settings) -> Result<Self, Error> {
        Ok(Self { max_value_bytes: settings.integer("max_value_bytes")?.max(0) as usize })
    }

    fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error> {
        for record in records {
            let value = record.value.map(|value| &value[..value.len().min(self.max_value_bytes)]);
            log::info(&format!(
                "{}[{}]@{} key={} value={}",
                record.topic,
                record.partition.unwrap_or(-1),
                record.offset.unwrap_or(-1),
                lossy_text(record.key),
                lossy_text(value)
            ));
        }
        Ok(())
    }
}

export_sink!(LogSink);
