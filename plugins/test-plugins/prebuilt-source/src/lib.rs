//! `prebuilt-source`: `limit` copies of one JSON value of about `value_bytes` bytes,
//! built once at open, as fast as the host polls; its position is the number emitted.
//! The plugin's own work per record is a copy into the batch, so a pipeline from it to
//! `counting-sink` measures what the host spends per record (the host-path benchmark).

use std::time::Duration;

use wasm_connect_sdk::{BatchWriter, ConfigOption, Description, Error, OptionType, Plugin, PollStatus, Settings, Source, export_source};

/// The task.
pub struct PrebuiltSource {
    value: Vec<u8>,
    emitted: u64,
    limit: u64,
}

impl Plugin for PrebuiltSource {
    fn description() -> Description {
        Description::new("prebuilt-source", env!("CARGO_PKG_VERSION"), "One prebuilt record, over and over, for benchmarks.")
            .option(ConfigOption::new("limit", OptionType::Integer, "Records in all; then the source is finished.").default("1000000"))
            .option(ConfigOption::new("value_bytes", OptionType::Integer, "Size of the value (16 to 65536 bytes).").default("500"))
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        match settings.integer("value_bytes") {
            Ok(16..=65536) => Vec::new(),
            _ => vec![("value_bytes".to_owned(), "must be between 16 and 65536".to_owned())],
        }
    }
}

impl Source for PrebuiltSource {
    fn open(settings: &Settings, position: Option<&str>) -> Result<Self, Error> {
        let emitted = match position {
            Some(position) => position.parse().map_err(|_| Error::Fatal(format!("unreadable position {position:?}")))?,
            None => 0,
        };
        let size = settings.integer("value_bytes")?.clamp(16, 65536) as usize;
        // {"pad":"xxx…"}: 10 bytes of JSON around the padding.
        let mut value = b"{\"pad\":\"".to_vec();
        value.resize(size - 2, b'x');
        value.extend_from_slice(b"\"}");
        Ok(Self { value, emitted, limit: settings.integer("limit")?.max(0) as u64 })
    }

    fn poll(&mut self, max_records: usize, batch: &mut BatchWriter) -> Result<PollStatus, Error> {
        let count = (self.limit - self.emitted.min(self.limit)).min(max_records as u64);
        for _ in 0..count {
            batch.push_keyed(None, None, &self.value);
        }
        self.emitted += count;
        Ok(PollStatus {
            position: (count > 0).then(|| self.emitted.to_string()),
            idle: Duration::from_millis(100),
            finished: self.emitted >= self.limit,
        })
    }
}

export_source!(PrebuiltSource);
