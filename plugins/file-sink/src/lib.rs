//! `file-sink`: writes every record as one JSON line to
//! `<topic>-<partition>-<NNNNNN>.jsonl` in the granted `directory`, starting a new file
//! once the current one reaches `max_file_bytes`. A batch is fsynced before `write`
//! returns, so the host commits only what is on disk.
//!
//! Files are per partition because a partition has one task at a time: sink tasks
//! never write, or repair after a crash, the same file concurrently.

use std::collections::BTreeMap;

mod quick;

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

/// The deepest nesting a value is embedded with: the line wraps it in one more object,
/// and serde_json reads no deeper than 127 levels. Deeper values are written as text.
const MAX_VALUE_DEPTH: usize = 126;

/// Renders one record as a JSON line: its coordinates, key, headers and value, with the
/// fields in name order. A value that is strict JSON on one line is copied as it came
/// (no tree built, its own key order and number text kept); a value that is JSON over
/// several lines is read and printed on one; other values are embedded as text.
pub fn render_line(record: &RecordView<'_>, line: &mut Vec<u8>) {
    line.extend_from_slice(b"{\"headers\":{");
    // Named once each, in name order, the last value of a repeated name kept.
    let headers: BTreeMap<&str, Option<&[u8]>> = record.headers.iter().copied().collect();
    for (index, (name, value)) in headers.into_iter().enumerate() {
        if index > 0 {
            line.push(b',');
        }
        write_text(line, name.as_bytes());
        line.push(b':');
        write_optional_text(line, value);
    }
    line.extend_from_slice(b"},\"key\":");
    write_optional_text(line, record.key);
    line.extend_from_slice(b",\"offset\":");
    write_number(line, record.offset);
    line.extend_from_slice(b",\"partition\":");
    write_number(line, record.partition);
    line.extend_from_slice(b",\"timestamp\":");
    write_number(line, record.timestamp);
    line.extend_from_slice(b",\"topic\":");
    write_text(line, record.topic.as_bytes());
    line.extend_from_slice(b",\"value\":");
    match record.value {
        None => line.extend_from_slice(b"null"),
        Some(bytes) if quick::strict_one_line(bytes) => line.extend_from_slice(bytes),
        Some(bytes) => match check(bytes) {
            Checked::TooDeep => write_text(line, bytes),
            // A raw line break can only be whitespace between tokens: inside a string it
            // is not JSON, which the check refused.
            Checked::Strict if !bytes.iter().any(|&byte| byte == b'\n' || byte == b'\r') => line.extend_from_slice(bytes),
            Checked::Strict | Checked::NotStrict => match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(value) => serde_json::to_writer(&mut *line, &value).expect("a JSON value always serialises"),
                Err(_) => write_text(line, bytes),
            },
        },
    }
    line.extend_from_slice(b"}\n");
}

/// What one reading of a value found.
#[derive(Debug, PartialEq)]
enum Checked {
    /// Strict JSON, which can be copied into a line as it is: read by serde_json as a
    /// tree would be (strings valid UTF-8 with paired surrogates, numbers in range),
    /// without building one.
    Strict,
    /// JSON nested deeper than [`MAX_VALUE_DEPTH`] (as far as it was read).
    TooDeep,
    /// Anything else.
    NotStrict,
}

/// Reads `bytes` once as JSON, in full, keeping nothing.
fn check(bytes: &[u8]) -> Checked {
    use serde::de::DeserializeSeed;
    let too_deep = std::cell::Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let read =
        Reading { depth_left: MAX_VALUE_DEPTH, too_deep: &too_deep }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    match read {
        _ if too_deep.get() => Checked::TooDeep,
        Ok(()) => Checked::Strict,
        Err(_) => Checked::NotStrict,
    }
}

/// Any JSON value, read in full and kept nowhere, nested at most `depth_left` deeper.
/// (serde's `IgnoredAny` skips strings without checking their UTF-8 and numbers
/// without checking their range.)
#[derive(Clone, Copy)]
struct Reading<'a> {
    depth_left: usize,
    too_deep: &'a std::cell::Cell<bool>,
}

impl Reading<'_> {
    /// The reading of what an array or object holds, or an error when that is too deep.
    fn inside<E: serde::de::Error>(self) -> Result<Self, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(Reading { depth_left, ..self }),
            None => {
                self.too_deep.set(true);
                Err(E::custom("nested too deep"))
            }
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Reading<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Reading<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let inside = self.inside()?;
        while items.next_element_seed(inside)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        let inside = self.inside()?;
        while entries.next_entry_seed(std::marker::PhantomData::<Key>, inside)?.is_some() {}
        Ok(())
    }
}

/// An object's key, read as a string (checked as every string is) and kept nowhere.
struct Key;

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("an object key")
            }
            fn visit_str<E>(self, _: &str) -> Result<Key, E> {
                Ok(Key)
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Bytes as a JSON string (invalid UTF-8 replaced).
fn write_text(line: &mut Vec<u8>, bytes: &[u8]) {
    if quick::plain_text(bytes) {
        line.push(b'"');
        line.extend_from_slice(bytes);
        line.push(b'"');
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    serde_json::to_writer(&mut *line, text.as_ref()).expect("a string always serialises");
}

fn write_optional_text(line: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => write_text(line, bytes),
        None => line.extend_from_slice(b"null"),
    }
}

fn write_number(line: &mut Vec<u8>, number: Option<impl Into<i64>>) {
    match number {
        Some(number) => serde_json::to_writer(&mut *line, &number.into()).expect("a number always serialises"),
        None => line.extend_from_slice(b"null"),
    }
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
        // The lines of each topic-partition, in the order the batch first names them
        // (a batch holds few, so they are looked up without a map).
        let mut by_partition: Vec<((String, i32), Vec<u8>)> = Vec::new();
        for record in records {
            let partition = record.partition.unwrap_or(0);
            let found = by_partition.iter().position(|((topic, number), _)| *number == partition && topic == record.topic);
            let index = found.unwrap_or_else(|| {
                by_partition.push(((record.topic.to_owned(), partition), Vec::new()));
                by_partition.len() - 1
            });
            render_line(record, &mut by_partition[index].1);
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

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};
    use wasm_connect_sdk::RecordView;

    use super::{Checked, check, render_line};

    #[test]
    fn one_reading_tells_strict_json_from_too_deep_and_from_the_rest() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(check(nested(126).as_bytes()), Checked::Strict);
        assert_eq!(check(nested(127).as_bytes()), Checked::TooDeep);
        assert_eq!(check(nested(5000).as_bytes()), Checked::TooDeep);
        let objects = format!("{}1{}", r#"{"a":"#.repeat(127), "}".repeat(127));
        assert_eq!(check(objects.as_bytes()), Checked::TooDeep);
        // Broken before it gets deep: not strict (a tree fails on it too).
        assert_eq!(check(format!("[1,]{}", nested(200)).as_bytes()), Checked::NotStrict);
        for not_strict in [&b"[1,]"[..], b"{\"a\" 1}", b"1e400", b"\"\\ud800\"", b"\"\xff\"", b"{1: 2}", b"[1] 2", b""] {
            assert_eq!(check(not_strict), Checked::NotStrict, "{:?}", String::from_utf8_lossy(not_strict));
        }
        for strict in [&b"{\"a\": [1, 2.5e3, null, true], \"b\": {}}"[..], b" 12 ", b"\"\\ud83d\\ude00\"", b"{\n\"a\": 1\n}"] {
            assert_eq!(check(strict), Checked::Strict, "{:?}", String::from_utf8_lossy(strict));
        }
    }

    /// The line as a tree renders it (the file sink's rendering before values were copied).
    fn through_a_tree(record: &RecordView<'_>) -> Value {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let value = record.value.map(|bytes| serde_json::from_slice::<Value>(bytes).unwrap_or_else(|_| Value::String(text(bytes))));
        let headers: Map<String, Value> = record.headers.iter().map(|(name, value)| ((*name).to_owned(), json!(value.map(text)))).collect();
        json!({
            "topic": record.topic, "partition": record.partition, "offset": record.offset, "timestamp": record.timestamp,
            "key": record.key.map(text), "headers": headers, "value": value,
        })
    }

    fn rendered(record: &RecordView<'_>) -> String {
        let mut line = Vec::new();
        render_line(record, &mut line);
        String::from_utf8(line).expect("a line is UTF-8")
    }

    #[test]
    fn lines_read_as_the_tree_rendering_and_copy_one_line_json_as_it_came() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let values: [&[u8]; 18] = [
            b"{\"a\": \"\xff\"}",
            b"1e400",
            br#"{"x": [-1e309]}"#,
            br#"{"a": 1, "a": 2}"#,
            br#"{"b": 1.50, "a": [true, null, "x\"y"], "c": {"d": -2e3}}"#,
            b"{\n  \"pretty\": 1\n}",
            b"[1,\r2]",
            b"{\"raw line break in a string\": \"x\ny\"}",
            b"not json at all",
            b"\xff\xfe broken utf-8",
            br#""\ud83d\ude00 paired""#,
            br#""\ud800 lone""#,
            b"12",
            b"  [1, 2]  ",
            br#"{"a": 1} trailing"#,
            b"\"tab\there\"",
            deep.as_bytes(),
            b"",
        ];
        for value in values {
            let record = RecordView {
                topic: "flights \"quoted\"",
                partition: Some(3),
                offset: Some(1 << 40),
                timestamp: None,
                key: Some(b"k\n1"),
                value: Some(value),
                headers: vec![("z", Some(b"last")), ("a", None), ("z", Some(b"kept"))],
            };
            let line = rendered(&record);
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "one line: {line:?}");
            // Read back as JSON (a tree reads it, so the copy is strict), the line holds
            // what the tree rendering holds.
            let read: Value = serde_json::from_str(&line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
            assert_eq!(read, through_a_tree(&record), "{line}");
        }
        // Nested as deep as a line can hold it, and one deeper (text): the line reads.
        for depth in [126, 127] {
            let value = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            let record = RecordView {
                topic: "t",
                partition: None,
                offset: None,
                timestamp: None,
                key: None,
                value: Some(value.as_bytes()),
                headers: Vec::new(),
            };
            let read: Value = serde_json::from_str(&rendered(&record)).unwrap_or_else(|error| panic!("depth {depth}: {error}"));
            assert_eq!(read["value"].is_string(), depth == 127);
        }
        // Copied as it came: its key order and number text.
        let record = RecordView {
            topic: "t",
            partition: None,
            offset: None,
            timestamp: Some(-5),
            key: None,
            value: Some(br#"{"b": 1.50, "a": 1}"#),
            headers: Vec::new(),
        };
        assert_eq!(
            rendered(&record),
            "{\"headers\":{},\"key\":null,\"offset\":null,\"partition\":null,\"timestamp\":-5,\"topic\":\"t\",\"value\":{\"b\": 1.50, \"a\": 1}}\n"
        );
    }
}
