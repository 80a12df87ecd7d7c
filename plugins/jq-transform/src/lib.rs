//! `jq-transform`: jq programs over records, run by jaq (jq in Rust) inside a
//! component, so that a program that recurses without end, loops, or grows without
//! bound is stopped by the host's call deadline, stack and memory limits instead of
//! taking the host down. The host runs its `Jq$Value`, `Jq$Key` and `Jq` types on it;
//! it is also a plugin of its own (`type: wasm, plugin: jq-transform`).
//!
//! `mode: map` replaces the record's `part` (value or key) with the program's output,
//! drops the record when there is none (so `select(...)` filters) and fails it when
//! there are more. `mode: test` keeps the record when the first output is neither
//! `false` nor `null` and drops it otherwise (the host reads that as a predicate).
//!
//! `.` is the part as JSON; `$topic`, `$key`, `$value`, `$headers` (an object of text,
//! `null` for a header without a value), `$timestamp`, `$partition` and `$offset` give
//! the rest of the record. Left out: `env`, `halt`, `halt_error`, `debug`, `stderr`,
//! `input_filename`. Records are checked by serde_json on the way in (strict JSON, a
//! nesting limit) and on the way out (valid JSON), without building its trees.

use jaq_core::compile::Filter;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, ValT, Vars, data};
use jaq_json::{Num, Val};
use wasm_connect_sdk::{
    BatchWriter, ConfigOption, Description, Error, OptionType, Outcome, Plugin, RecordView, Settings, Transform, export_transform, json,
};

type Program = Filter<Native<data::JustLut<Val>>>;

/// The variables every program may read, in the order they are bound.
const VARIABLES: [&str; 7] = ["$topic", "$key", "$value", "$headers", "$timestamp", "$partition", "$offset"];

/// Functions left out, natives and the definitions that use them: `env` reads the
/// environment, `halt` ends the program, `debug` and `stderr` log record data.
const WITHHELD: &[&str] = &["env", "halt", "halt_error", "debug", "debug_empty", "stderr", "stderr_empty", "input_filename"];

/// The longest expression taken.
const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

/// Which part of the record the program reads and replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The key.
    Key,
    /// The value.
    Value,
}

/// What the program's outputs decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replace the part.
    Map,
    /// Keep or drop the record.
    Test,
}

/// A compiled jq program.
pub struct JqProgram {
    program: Program,
    /// Which of [`VARIABLES`] the program names: only those are read from the record.
    uses: [bool; 7],
}

impl JqProgram {
    /// Compiles `code`, or says what is wrong and where (1-based character column).
    pub fn compile(code: &str) -> Result<Self, String> {
        if code.len() > MAX_EXPRESSION_BYTES {
            return Err(format!("is {} KiB long; an expression has at most {} KiB", code.len() >> 10, MAX_EXPRESSION_BYTES >> 10));
        }
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs()).filter(|def| !WITHHELD.contains(&def.name));
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs()).filter(|(name, ..)| !WITHHELD.contains(name));
        let arena = Arena::default();
        let modules = Loader::new(defs).load(&arena, File { code, path: () }).map_err(|errors| {
            let found: Vec<String> = errors
                .into_iter()
                .flat_map(|(_, error)| match error {
                    jaq_core::load::Error::Io(items) => items.into_iter().map(|(_, message)| message).collect::<Vec<_>>(),
                    jaq_core::load::Error::Lex(items) => {
                        items.into_iter().map(|(expected, at)| located(code, at, &format!("expected {}", expected.as_str()))).collect()
                    }
                    jaq_core::load::Error::Parse(items) => {
                        items.into_iter().map(|(expected, at)| located(code, at, &format!("expected {}", expected.as_str()))).collect()
                    }
                })
                .collect();
            format!("is not a jq program: {}", found.join("; "))
        })?;
        let program = Compiler::default().with_funs(funs).with_global_vars(VARIABLES).compile(modules).map_err(|errors| {
            let found: Vec<String> = errors
                .into_iter()
                .flat_map(|(_, items)| items.into_iter().map(|(name, undefined)| located(code, name, &format!("undefined {undefined:?}"))))
                .collect();
            format!("is not a jq program: {}", found.join("; ").to_lowercase())
        })?;
        // A variable is only ever reached by its name, so one not written is not read.
        let uses = VARIABLES.map(|name| code.contains(name));
        Ok(Self { program, uses })
    }

    /// The program's outputs for the record's `part`, at most `max`; an error as a
    /// reason that does not quote the record.
    pub fn run(&self, part: Part, record: &RecordView<'_>, max: usize) -> Result<Vec<Val>, String> {
        let input = to_val(match part {
            Part::Key => record.key,
            Part::Value => record.value,
        })?;
        let variables = variables(record, part, &input, &self.uses);
        let context = Ctx::<data::JustLut<Val>>::new(&self.program.lut, Vars::new(variables));
        let mut outputs = Vec::new();
        for output in self.program.id.run((context, input)).take(max) {
            // jq's messages quote the values they failed on: the record stays out of logs.
            let output = output.map_err(|_| "the jq expression failed on the record (an error() or a wrong type)".to_owned())?;
            outputs.push(output);
        }
        Ok(outputs)
    }
}

/// `what` at the position of `at` (a slice of `code`), if it is one.
fn located(code: &str, at: &str, what: &str) -> String {
    let start = code.as_ptr() as usize;
    let offset = (at.as_ptr() as usize).wrapping_sub(start);
    if offset <= code.len() && code.is_char_boundary(offset) {
        format!("{what} at character {}", code[..offset].chars().count() + 1)
    } else {
        what.to_owned()
    }
}

/// The record's parts as the program's variables, in [`VARIABLES`] order; `input` is
/// `part` already read, and a part that cannot be read is `null`.
fn variables(record: &RecordView<'_>, part: Part, input: &Val, uses: &[bool; 7]) -> [Val; 7] {
    let [topic, key, value, headers, timestamp, partition, offset] = *uses;
    // Not through isize, which has 32 bits on wasm32: a timestamp in milliseconds has more.
    let number = |used: bool, value: Option<i64>| value.filter(|_| used).map_or(Val::Null, |value| Val::Num(Num::from_integral(value)));
    let part_of = |used: bool, which: Part, data: Option<&[u8]>| match () {
        _ if !used => Val::Null,
        _ if which == part => input.clone(),
        _ => to_val(data).unwrap_or_default(),
    };
    let headers = if headers {
        let pairs = record.headers.iter().map(|(name, value)| {
            let value = value.map_or(Val::Null, |bytes| Val::from(String::from_utf8_lossy(bytes).into_owned()));
            (Val::from((*name).to_owned()), value)
        });
        Val::from_map(pairs).unwrap_or_default()
    } else {
        Val::Null
    };
    [
        if topic { Val::from(record.topic.to_owned()) } else { Val::Null },
        part_of(key, Part::Key, record.key),
        part_of(value, Part::Value, record.value),
        headers,
        number(timestamp, record.timestamp),
        number(partition, record.partition.map(i64::from)),
        number(offset, record.offset),
    ]
}

/// A key or value as a jq value: JSON as JSON, other UTF-8 text as a string, nothing
/// as null. JSON is checked by serde_json first (strict JSON, at most 128 levels
/// deep, without building a tree), then read by jaq's own parser.
fn to_val(data: Option<&[u8]>) -> Result<Val, String> {
    let Some(bytes) = data else { return Ok(Val::Null) };
    if json::shape(bytes).depth <= MAX_NESTING
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
        && let Ok(value) = jaq_json::read::parse_single(bytes)
    {
        return Ok(value);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Val::from(text.to_owned())),
        Err(_) => Err("the data is neither JSON nor UTF-8 text".to_owned()),
    }
}

/// The deepest JSON nesting read (as serde_json reads it); deeper data is text.
const MAX_NESTING: usize = 128;

/// jaq's value as JSON text; what JSON cannot hold (NaN, infinities, byte strings,
/// keys that are not strings) fails the record.
fn to_json(value: &Val) -> Result<String, String> {
    let text = value.to_string();
    if json::shape(text.as_bytes()).depth > MAX_NESTING {
        return Err(format!("the jq expression gave a value nested deeper than {MAX_NESTING} levels"));
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        Ok(_) => Ok(text),
        Err(_) => Err("the jq expression gave something JSON cannot hold (NaN, infinity, bytes or a key that is not text)".to_owned()),
    }
}

/// The bytes of a result as a key or value: a string key as its text, null as absent.
fn to_bytes(value: &Val, part: Part) -> Result<Option<Vec<u8>>, String> {
    Ok(match value {
        Val::Null => None,
        Val::TStr(text) if part == Part::Key => Some(text.to_vec()),
        other => Some(to_json(other)?.into_bytes()),
    })
}

/// The task.
pub struct JqTransform {
    program: JqProgram,
    part: Part,
    mode: Mode,
}

fn part_of(text: &str) -> Option<Part> {
    Some(match text {
        "value" => Part::Value,
        "key" => Part::Key,
        _ => return None,
    })
}

fn mode_of(text: &str) -> Option<Mode> {
    Some(match text {
        "map" => Mode::Map,
        "test" => Mode::Test,
        _ => return None,
    })
}

impl Plugin for JqTransform {
    fn description() -> Description {
        Description::new("jq-transform", env!("CARGO_PKG_VERSION"), "jq expressions (jaq) over records: reshape, filter or test them.")
            .option(ConfigOption::new("expression", OptionType::String, "The jq program.").required())
            .option(ConfigOption::new("part", OptionType::String, "value or key: what `.` is and what map replaces.").default("value"))
            .option(
                ConfigOption::new("mode", OptionType::String, "map (the output replaces the part) or test (keep where truthy).")
                    .default("map"),
            )
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Some(code) = settings.get("expression")
            && let Err(message) = JqProgram::compile(code)
        {
            problems.push(("expression".to_owned(), message));
        }
        if settings.get("part").is_some_and(|part| part_of(part).is_none()) {
            problems.push(("part".to_owned(), "must be value or key".to_owned()));
        }
        if settings.get("mode").is_some_and(|mode| mode_of(mode).is_none()) {
            problems.push(("mode".to_owned(), "must be map or test".to_owned()));
        }
        problems
    }
}

impl Transform for JqTransform {
    fn open(settings: &Settings) -> Result<Self, Error> {
        let program =
            JqProgram::compile(&settings.string("expression")?).map_err(|message| Error::BadConfig(format!("expression {message}")))?;
        let part = part_of(&settings.string("part")?).ok_or_else(|| Error::BadConfig("part must be value or key".to_owned()))?;
        let mode = mode_of(&settings.string("mode")?).ok_or_else(|| Error::BadConfig("mode must be map or test".to_owned()))?;
        Ok(Self { program, part, mode })
    }

    fn apply(&mut self, record: &RecordView<'_>, output: &mut BatchWriter) -> Result<Outcome, Error> {
        Ok(match self.mode {
            Mode::Test => match self.program.run(self.part, record, 1) {
                Ok(outputs) if outputs.first().is_some_and(|first| !matches!(first, Val::Null | Val::Bool(false))) => Outcome::Keep,
                Ok(_) => Outcome::Drop,
                Err(reason) => Outcome::Fail(reason),
            },
            Mode::Map => match self.program.run(self.part, record, 2) {
                Err(reason) => Outcome::Fail(reason),
                Ok(outputs) if outputs.is_empty() => Outcome::Drop,
                Ok(outputs) if outputs.len() > 1 => Outcome::Fail(
                    "the jq expression gave more than one value; a transform takes one (wrap it in first(...) or [...])".to_owned(),
                ),
                Ok(outputs) => {
                    let bytes = match to_bytes(&outputs[0], self.part) {
                        Ok(bytes) => bytes,
                        Err(reason) => return Ok(Outcome::Fail(reason)),
                    };
                    let (key, value) = match self.part {
                        Part::Key => (bytes.as_deref(), record.value),
                        Part::Value => (record.key, bytes.as_deref()),
                    };
                    output.push_parts(
                        record.topic,
                        record.partition,
                        record.offset,
                        record.timestamp,
                        key,
                        value,
                        record.headers.iter().copied(),
                    );
                    Outcome::Written
                }
            },
        })
    }
}

export_transform!(JqTransform);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn view<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> RecordView<'a> {
        RecordView {
            topic: "orders",
            partition: Some(2),
            offset: Some(41),
            timestamp: Some(1_700_000_000_000),
            key,
            value,
            headers: vec![("source", Some(b"gbfs"))],
        }
    }

    /// The (key, value) of each record written, as JSON.
    type Written = Vec<(Option<Value>, Option<Value>)>;

    fn run(expression: &str, part: Part, mode: Mode, record: &RecordView<'_>) -> (Outcome, Written) {
        let mut transform = JqTransform { program: JqProgram::compile(expression).unwrap(), part, mode };
        let mut output = BatchWriter::default();
        let outcome = transform.apply(record, &mut output).unwrap();
        let batch = output.finish();
        let parse = |bytes: Option<&[u8]>| {
            bytes.map(|bytes| serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())))
        };
        let written =
            wasm_connect_sdk::__private::decode(&batch).unwrap().iter().map(|record| (parse(record.key), parse(record.value))).collect();
        (outcome, written)
    }

    #[test]
    fn reshapes_the_value_with_the_record_in_reach() {
        let value = br#"{"station_id": "S1", "num_bikes_available": 7, "amount": 1200}"#;
        let record = view(Some(b"S1"), Some(value));
        let shaped = "{station: .station_id, bikes: .num_bikes_available, topic: $topic, key: $key, source: $headers.source, \
                      at: $timestamp, partition: $partition, offset: $offset}";
        let (outcome, written) = run(shaped, Part::Value, Mode::Map, &record);
        assert_eq!(outcome, Outcome::Written);
        assert_eq!(
            written,
            vec![(
                Some(json!("S1")),
                Some(json!({"station": "S1", "bikes": 7, "topic": "orders", "key": "S1", "source": "gbfs", "at": 1_700_000_000_000_i64,
                            "partition": 2, "offset": 41}))
            )]
        );
        // The key from the value, written as its bare text.
        let (_, written) = run("$value.station_id + \"-\" + ($value.amount | tostring)", Part::Key, Mode::Map, &record);
        assert_eq!(written[0].0, Some(json!("S1-1200")));
        assert_eq!(run("select(.amount > 1000)", Part::Value, Mode::Map, &record).0, Outcome::Written);
        assert_eq!(run("select(.amount > 5000)", Part::Value, Mode::Map, &record), (Outcome::Drop, vec![]));
        let (outcome, _) = run(".[]", Part::Value, Mode::Map, &record);
        assert!(matches!(outcome, Outcome::Fail(reason) if reason.contains("more than one value")));
    }

    #[test]
    fn tests_keep_where_the_first_output_is_truthy_and_errors_do_not_quote_the_record() {
        let record = view(None, Some(br#"{"amount": 1500, "secret": "hunter2"}"#));
        assert_eq!(run(".amount > 1000", Part::Value, Mode::Test, &record).0, Outcome::Keep);
        assert_eq!(run(".amount > 5000", Part::Value, Mode::Test, &record).0, Outcome::Drop);
        assert_eq!(run("$topic | startswith(\"ord\")", Part::Value, Mode::Test, &record).0, Outcome::Keep);
        let (outcome, _) = run(".secret | tonumber", Part::Value, Mode::Map, &record);
        assert!(matches!(&outcome, Outcome::Fail(reason) if !reason.contains("hunter2")), "{outcome:?}");
    }

    #[test]
    fn what_it_does_not_produce_stays_as_it_was() {
        let (key, value): (&[u8], &[u8]) = (&[0xff, 0xfe], b"plain text");
        let record = view(Some(key), Some(value));
        // Text is a string; a binary key it does not read is no obstacle.
        assert_eq!(run(". == \"plain text\" and $key == null", Part::Value, Mode::Test, &record).0, Outcome::Keep);
        let mut transform = JqTransform { program: JqProgram::compile("{text: .}").unwrap(), part: Part::Value, mode: Mode::Map };
        let mut output = BatchWriter::default();
        assert_eq!(transform.apply(&record, &mut output).unwrap(), Outcome::Written);
        let batch = output.finish();
        let written = wasm_connect_sdk::__private::decode(&batch).unwrap();
        assert_eq!((written[0].key, written[0].value), (Some(key), Some(&br#"{"text":"plain text"}"#[..])));
        // A key it cannot read fails the record; so does what JSON cannot hold.
        assert!(matches!(run(".", Part::Key, Mode::Map, &record).0, Outcome::Fail(_)));
        assert!(matches!(run("nan", Part::Value, Mode::Map, &record).0, Outcome::Fail(reason) if reason.contains("JSON cannot hold")));
        assert!(
            matches!(run("reduce range(200) as $i (0; [.])", Part::Value, Mode::Map, &record).0, Outcome::Fail(reason) if reason.contains("deeper than 128"))
        );
        // A value nested deeper than JSON parsers go is text to jq.
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(run("type == \"string\"", Part::Value, Mode::Test, &view(None, Some(deep.as_bytes()))).0, Outcome::Keep);
    }

    #[test]
    fn a_bad_program_says_where_and_withheld_functions_are_undefined() {
        let error = JqProgram::compile(".a | | .b").err().unwrap();
        assert!(error.starts_with("is not a jq program: expected") && error.contains("at character 6"), "{error}");
        // Nothing that ends the program, logs records or reads the environment.
        for withheld in ["halt", "halt_error", "halt_error(1)", "debug", "debug(\"x\")", "stderr", "env", "$ENV", "input_filename"] {
            let error = JqProgram::compile(withheld).err().unwrap_or_else(|| panic!("{withheld} compiles"));
            assert!(error.contains("undefined"), "{withheld}: {error}");
        }
        assert!(JqProgram::compile(&".".repeat(70_000)).err().unwrap().contains("at most 64 KiB"));
    }
}
