//! `legacy-sink`: a sink built against WIT 0.1.0 (the frozen copy in `wit/`), so the
//! tests can check that the current host still loads and runs such plugins. It
//! appends each record's value, one per line, to `legacy.jsonl` in `directory`.

wit_bindgen::generate!({
    world: "sink",
    path: "wit",
    generate_all,
});

use exports::wasm_connect::connector::plugin::{ConfigIssue, Guest as PluginGuest, PluginDescription};
use exports::wasm_connect::connector::sink_connector::{Config, Error, Guest as SinkGuest, RecordBatch};
use wasm_connect::connector::files;
use wasm_connect::connector::types::{ConfigOption, OptionType, PluginKind};

struct LegacySink;

impl PluginGuest for LegacySink {
    fn describe() -> PluginDescription {
        PluginDescription {
            name: "legacy-sink".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kind: PluginKind::Sink,
            documentation: "Appends record values to legacy.jsonl; built against WIT 0.1.0.".to_owned(),
            options: vec![ConfigOption {
                name: "directory".to_owned(),
                option_type: OptionType::String,
                default_value: None,
                required: true,
                secret: false,
                documentation: "Where values are written.".to_owned(),
            }],
        }
    }

    fn validate_config(_config: Config) -> Vec<ConfigIssue> {
        Vec::new()
    }
}

impl SinkGuest for LegacySink {
    fn open(_config: Config) -> Result<(), Error> {
        Ok(())
    }

    fn write(batch: RecordBatch) -> Result<(), Error> {
        let mut lines = Vec::new();
        for value in values(&batch).ok_or_else(|| Error::Fatal("unreadable batch".to_owned()))? {
            lines.extend_from_slice(value);
            lines.push(b'\n');
        }
        if !lines.is_empty() {
            files::append("legacy.jsonl", &lines)?;
        }
        files::sync()
    }
}

/// The values of a batch in the 0.1.0 flat encoding (`WCB1`), read by hand so that
/// this plugin depends on nothing newer than the 0.1.0 contract.
fn values(batch: &[u8]) -> Option<Vec<&[u8]>> {
    let mut reader = Reader { data: batch, position: 0 };
    if reader.take(4)? != b"WCB1" {
        return None;
    }
    let count = reader.u32()?;
    let mut values = Vec::with_capacity(count as usize);
    for _ in 0..count {
        reader.take(8 + 4 + 8)?; // timestamp, partition, offset
        reader.bytes()?; // topic
        reader.optional()?; // key
        let value = reader.optional()?;
        for _ in 0..reader.u32()? {
            reader.bytes()?;
            reader.optional()?;
        }
        values.extend(value);
    }
    Some(values)
}

struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let slice = self.data.get(self.position..self.position.checked_add(length)?)?;
        self.position += length;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    fn optional(&mut self) -> Option<Option<&'a [u8]>> {
        match self.u32()? {
            u32::MAX => Some(None),
            length => self.take(length as usize).map(Some),
        }
    }
}

export!(LegacySink);
