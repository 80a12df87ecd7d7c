//! `counting-sink`: acknowledges every batch without reading its records (the host
//! counts them in `wasm_connect_records_written_total`), so that a pipeline into it
//! measures the host's path rather than a store's.

use wasm_connect_sdk::{Description, Error, Plugin, RecordView, Settings, Sink, export_sink};

/// The task.
pub struct CountingSink {
    records: u64,
}

impl Plugin for CountingSink {
    fn description() -> Description {
        Description::new("counting-sink", env!("CARGO_PKG_VERSION"), "Acknowledges every record without writing it, for benchmarks.")
    }
}

impl Sink for CountingSink {
    fn open(_settings: &Settings) -> Result<Self, Error> {
        Ok(Self { records: 0 })
    }

    fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error> {
        self.records += records.len() as u64;
        Ok(())
    }
}

export_sink!(CountingSink);
