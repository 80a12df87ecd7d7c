//! `file-sink`: writes every record as one JSON line to
//! `<topic>-<partition>-<NNNNNN>.jsonl` in the granted `directory`, starting a new file
//! once the current one reaches `max_file_bytes`. A batch is fsynced before `write`
//! returns, so the host commits only what is on disk.
//!
//! Files are per partition because a partition has one task at a time: sink tasks
//! never write, or repair after a crash, the same file concurrently.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, RecordView, Settings, Sink, export_sink, files, log};

/// How far back a torn line is looked for; a longer line is cut as a whole.
const TAIL_PROBE: u32 = 1 << 20;

/// The sink task: the current file number per topic-partition.
pub struct FileSink {
    max_file_bytes: u64,
    current_file: BTreeMap<(String, i32), u32>,
}

fn file_name((topic, partition): &(String, i32), number: u32) -> String {
    format!("{topic}-{partition}-{number:06}.jsonl")
}

/// Renders one record as a JSON line: its coordinates, key, headers and value. A value
/// that is JSON is embedded as such; other values are embedded as text.
pub fn render_line(record: &RecordView<'_>, line: &mut Vec<u8>) {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let value = record.value.map(|bytes| serde_json::from_slice::<Value>(bytes).unwrap_or_else(|_| Value::String(text(bytes))));
    let headers: Map<String, Value> = record.headers.iter().map(|(name, value)| ((*name).to_owned(), json!(value.map(text)))).collect();
    let document = json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key.map(text),
        "headers": headers,
        "value": value,
    });
    serde_json::to_writer(&mut *line, &document).expect("a JSON value always serialises");
    line.push(b'\n');
}

impl FileSink {
    fn current(&mut self, series: &(String, i32)) -> Result<u32, Error> {
        if let Some(number) = self.current_file.get(series) {
            return Ok(*number);
        }
        // After a restart, carry on in the newest existing file, first cutting off a
        // line that a crash left half-written (its record was never acknowledged, so
        // it will be delivered again).
        let mut number = 0;
        while files::size(&file_name(series, number + 1)).is_some() {
            number += 1;
        }
        let name = file_name(series, number);
        if let Some(size) = files::size(&name).filter(|size| *size > 0) {
            let tail = files::read_tail(&name, TAIL_PROBE)?;
            if tail.last() != Some(&b'\n') {
                let keep = tail.iter().rposition(|byte| *byte == b'\n').map_or(0, |newline| newline + 1);
                let cut = size - (tail.len() - keep) as u64;
                log::warn(&format!("{name}: removing a torn last line ({} bytes) left by a crash", size - cut));
                files::truncate(&name, cut)?;
            }
        }
        self.current_file.insert(series.clone(), number);
        Ok(number)
    }
}

impl Plugin for FileSink {
    fn description() -> Description {
        Description::new(
            "file-sink",
            env!("CARGO_PKG_VERSION"),
            "Writes records as JSON lines, one file series per topic and partition, rotated by size.",
        )
        .option(ConfigOption::new("directory", OptionType::Directory, "Directory the files are written to.").required())
        .option(
            ConfigOption::new("max_file_bytes", OptionType::Integer, "Start a new file once the current one reaches this size.")
                .default("67108864"),
        )
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if settings.get("directory").is_some_and(|directory| directory.trim().is_empty()) {
            issues.push(("directory".to_owned(), "must not be empty".to_owned()));
        }
        if settings.integer("max_file_bytes").is_ok_and(|bytes| bytes < 1024) {
            issues.push(("max_file_bytes".to_owned(), "must be at least 1024".to_owned()));
        }
        issues
    }
}

impl Sink for FileSink {
    fn open(settings: &Settings) -> Result<Self, Error> {
        Ok(Self { max_file_bytes: settings.integer("max_file_bytes")? as u64, current_file: BTreeMap::new() })
    }

    fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error> {
        let mut by_partition: BTreeMap<(String, i32), Vec<u8>> = BTreeMap::new();
        for record in records {
            let series = (record.topic.to_owned(), record.partition.unwrap_or(0));
            render_line(record, by_partition.entry(series).or_default());
        }
        for (series, lines) in by_partition {
            let number = self.current(&series)?;
            let size = files::append(&file_name(&series, number), &lines)?;
            if size >= self.max_file_bytes {
                self.current_file.insert(series, number + 1);
            }
        }
        files::sync()
    }
}

export_sink!(FileSink);
