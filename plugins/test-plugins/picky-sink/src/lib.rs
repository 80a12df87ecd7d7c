//! `picky-sink`: refuses, as a bad record, every record whose value contains
//! `refuse_containing`, and appends the values of the others, one per line, to
//! `accepted.jsonl` in its `directory`. For dead-letter and error-tolerance tests.

use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, RecordView, Settings, Sink, export_sink, files};

/// The task.
pub struct PickySink {
    marker: String,
}

impl Plugin for PickySink {
    fn description() -> Description {
        Description::new("picky-sink", env!("CARGO_PKG_VERSION"), "Refuses records containing a marker, for tests.")
            .option(ConfigOption::new("refuse_containing", OptionType::String, "Marker that makes a record bad.").required())
            .option(ConfigOption::new("directory", OptionType::Directory, "Where accepted values are written.").required())
    }
}

impl Sink for PickySink {
    fn open(settings: &Settings) -> Result<Self, Error> {
        Ok(Self { marker: settings.string("refuse_containing")? })
    }

    fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error> {
        let mut lines = Vec::new();
        // Check the whole batch before writing any of it.
        for (index, record) in records.iter().enumerate() {
            let value = record.value.unwrap_or_default();
            if value.windows(self.marker.len()).any(|window| window == self.marker.as_bytes()) {
                return Err(Error::BadRecord { index: index as u32, reason: format!("value contains {}", self.marker) });
            }
            lines.extend_from_slice(value);
            lines.push(b'\n');
        }
        if !lines.is_empty() {
            files::append("accepted.jsonl", &lines)?;
        }
        files::sync()
    }
}

export_sink!(PickySink);
