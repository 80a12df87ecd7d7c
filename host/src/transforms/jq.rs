//! jq programs over records, run by jaq (jq in Rust), compiled once when the chain is
//! built: the `Jq` predicate matches where the program's first output is neither
//! `false` nor `null`; the `Jq$Value` and `Jq$Key` transforms replace the value (or
//! key) with the program's output, and drop the record when it gives none (so
//! `select(...)` filters).
//!
//! `.` is the value (or key) as JSON; `$topic`, `$key`, `$value`, `$headers` (an
//! object of text, `null` for a header without a value), `$timestamp`, `$partition`
//! and `$offset` give the rest of the record. Left out: `env` (the host's environment
//! holds secrets), `halt` (it would end the host), `debug` and `stderr` (they would
//! log record data).
//!
//! Records go in and out through serde_json, whose nesting limit keeps a hostile
//! record from exhausting the stack, and whose output is always valid JSON.

use jaq_core::compile::Filter;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, ValT, Vars, data};
use jaq_json::Val;
use serde_json::Value;

use super::options::{OptionProblem, Options};
use super::record::{Data, Part, WorkingRecord};
use super::{Outcome, Predicate, Transform};

type Program = Filter<Native<data::JustLut<Val>>>;

/// The variables every program may read, in the order they are bound.
const VARIABLES: [&str; 7] = ["$topic", "$key", "$value", "$headers", "$timestamp", "$partition", "$offset"];

/// Functions left out, natives and the definitions that use them: `env` reads the
/// host's environment, `halt` ends the process, `debug` and `stderr` log.
const WITHHELD: &[&str] = &["env", "halt", "halt_error", "debug", "debug_empty", "stderr", "stderr_empty", "input_filename"];

/// A compiled jq program.
pub struct JqProgram {
    program: Program,
    /// Which of [`VARIABLES`] the program names: only those are read from the record.
    uses: [bool; 7],
}

impl JqProgram {
    /// Options of both the predicate and the transforms.
    pub const OPTIONS: &[&str] = &["expression"];

    /// Compiles the `expression` option.
    pub fn build(options: &Options) -> Result<Self, OptionProblem> {
        let code = options.required("expression")?;
        Self::compile(code).map_err(|message| ("expression".to_owned(), message))
    }

    /// Compiles `code`, or says what is wrong and where (1-based character column).
    pub fn compile(code: &str) -> Result<Self, String> {
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

    /// The program's outputs for the record's `part`, at most `max`, as JSON; an error
    /// as a reason that does not quote the record. The record is not changed.
    fn run(&self, part: Part, record: &WorkingRecord, max: usize) -> Result<Vec<Value>, String> {
        let input = match part {
            Part::Key => &record.key,
            Part::Value => &record.value,
        };
        let input = to_val(input)?;
        let variables = variables(record, part, &input, &self.uses);
        let context = Ctx::<data::JustLut<Val>>::new(&self.program.lut, Vars::new(variables));
        let mut outputs = Vec::new();
        for output in self.program.id.run((context, input)).take(max) {
            // jq's messages quote the values they failed on: the record stays out of logs.
            let output = output.map_err(|_| "the jq expression failed on the record (an error() or a wrong type)".to_owned())?;
            outputs.push(from_val(&output)?);
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
fn variables(record: &WorkingRecord, part: Part, input: &Val, uses: &[bool; 7]) -> [Val; 7] {
    let [topic, key, value, headers, timestamp, partition, offset] = *uses;
    let number = |used: bool, value: Option<i64>| value.filter(|_| used).map_or(Val::Null, |value| Val::from(value as isize));
    let part_of = |used: bool, which: Part, data: &Data| match () {
        _ if !used => Val::Null,
        _ if which == part => input.clone(),
        _ => to_val(data).unwrap_or_default(),
    };
    let headers = if headers {
        let pairs = record.headers.iter().map(|(name, value)| {
            let value = value.as_ref().map_or(Val::Null, |bytes| Val::from(String::from_utf8_lossy(bytes).into_owned()));
            (Val::from(name.clone()), value)
        });
        Val::from_map(pairs).unwrap_or_default()
    } else {
        Val::Null
    };
    [
        if topic { Val::from(record.topic.clone()) } else { Val::Null },
        part_of(key, Part::Key, &record.key),
        part_of(value, Part::Value, &record.value),
        headers,
        number(timestamp, record.timestamp),
        number(partition, record.partition.map(i64::from)),
        number(offset, record.offset),
    ]
}

/// A key or value as a jq value, without changing it: JSON as JSON, other UTF-8 text
/// as a string, nothing as null.
fn to_val(data: &Data) -> Result<Val, String> {
    let parsed;
    let value = match data {
        Data::Json(value) => value,
        Data::Bytes(None) => return Ok(Val::Null),
        Data::Bytes(Some(bytes)) => {
            parsed = match serde_json::from_slice::<Value>(bytes) {
                Ok(value) => value,
                Err(_) => match std::str::from_utf8(bytes) {
                    Ok(text) => Value::String(text.to_owned()),
                    Err(_) => return Err("the data is neither JSON nor UTF-8 text".to_owned()),
                },
            };
            &parsed
        }
    };
    Ok(json_to_val(value))
}

/// serde_json's value (at most 128 levels deep) as jaq's.
fn json_to_val(value: &Value) -> Val {
    match value {
        Value::Null => Val::Null,
        Value::Bool(flag) => Val::from(*flag),
        Value::Number(number) => match number.as_i64().and_then(|whole| isize::try_from(whole).ok()) {
            Some(whole) => Val::from(whole),
            None => Val::from(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => Val::from(text.clone()),
        Value::Array(items) => items.iter().map(json_to_val).collect(),
        Value::Object(fields) => {
            Val::from_map(fields.iter().map(|(name, value)| (Val::from(name.clone()), json_to_val(value)))).unwrap_or_default()
        }
    }
}

/// jaq's value as serde_json's; what JSON cannot hold (NaN, infinities, byte strings,
/// keys that are not strings) fails the record.
fn from_val(value: &Val) -> Result<Value, String> {
    serde_json::from_str(&value.to_string())
        .map_err(|_| "the jq expression gave something JSON cannot hold (NaN, infinity, bytes or a key that is not text)".to_owned())
}

/// A JSON result as a key or value: a string key as its text.
fn to_data(value: Value, is_key: bool) -> Data {
    match value {
        Value::Null => Data::Bytes(None),
        Value::String(text) if is_key => Data::Bytes(Some(text.into_bytes())),
        other => Data::Json(other),
    }
}

/// `Jq`: a predicate whose program's first output decides.
pub struct JqPredicate(JqProgram);

impl JqPredicate {
    /// Reads the options.
    pub fn build(options: &Options) -> Result<Self, OptionProblem> {
        JqProgram::build(options).map(Self)
    }
}

impl Predicate for JqPredicate {
    fn test(&self, record: &mut WorkingRecord) -> Result<bool, String> {
        let outputs = self.0.run(Part::Value, record, 1)?;
        Ok(outputs.first().is_some_and(|first| !matches!(first, Value::Null | Value::Bool(false))))
    }
}

/// `Jq$Value` / `Jq$Key`: the program's output replaces the part; no output drops the
/// record, more than one fails it.
pub struct JqTransform {
    part: Part,
    program: JqProgram,
}

impl JqTransform {
    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        Ok(Self { part, program: JqProgram::build(options)? })
    }
}

impl Transform for JqTransform {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        let mut outputs = self.program.run(self.part, record, 2)?;
        match outputs.len() {
            0 => Ok(Outcome::Drop),
            1 => {
                *record.part(self.part) = to_data(outputs.remove(0), self.part == Part::Key);
                Ok(Outcome::Keep)
            }
            _ => Err("the jq expression gave more than one value; a transform takes one (wrap it in first(...) or [...])".to_owned()),
        }
    }
}
