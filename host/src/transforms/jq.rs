//! jq programs over records, run by jaq (jq in Rust), compiled once when the chain is
//! built: the `Jq` predicate matches where the program's first output is neither
//! `false` nor `null`; the `Jq$Value` and `Jq$Key` transforms replace the value (or
//! key) with the program's output, and drop the record when it gives none (so
//! `select(...)` filters).
//!
//! `.` is the value (or key) as JSON; `$topic`, `$key`, `$value`, `$headers` (an
//! object of text, `null` for a header without a value), `$timestamp`, `$partition`
//! and `$offset` give the rest of the record. `env` is not available: the host's
//! environment holds secrets.

use jaq_core::compile::Filter;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, Vars, data, unwrap_valr};
use jaq_json::Val;

use super::options::{OptionProblem, Options};
use super::record::{Data, Part, WorkingRecord};
use super::{Outcome, Predicate, Transform};

type Program = Filter<Native<data::JustLut<Val>>>;

/// The variables every program may read, in the order they are bound.
const VARIABLES: [&str; 7] = ["$topic", "$key", "$value", "$headers", "$timestamp", "$partition", "$offset"];

/// Native functions left out: `env` reads the host's environment.
const WITHHELD: &[&str] = &["env"];

/// A compiled jq program.
pub struct JqProgram {
    program: Program,
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
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs().filter(|(name, ..)| !WITHHELD.contains(name))).chain(jaq_json::funs());
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
        Ok(Self { program })
    }

    /// The program's outputs for the record's `part`, at most `max`; an error as a
    /// reason that does not quote the record.
    fn run(&self, part: Part, record: &mut WorkingRecord, max: usize) -> Result<Vec<Val>, String> {
        let input = to_val(record.part(part))?;
        let variables = variables(record, part, &input);
        let context = Ctx::<data::JustLut<Val>>::new(&self.program.lut, Vars::new(variables));
        let mut outputs = Vec::new();
        for output in self.program.id.run((context, input)).map(unwrap_valr).take(max) {
            // jq's messages quote the values they failed on: the record stays out of logs.
            outputs.push(output.map_err(|_| "the jq expression failed on the record (an error() or a wrong type)".to_owned())?);
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
fn variables(record: &mut WorkingRecord, part: Part, input: &Val) -> [Val; 7] {
    let headers = record.headers.iter().map(|(name, value)| {
        let value = value.as_ref().map_or(Val::Null, |bytes| Val::from(String::from_utf8_lossy(bytes).into_owned()));
        (Val::from(name.clone()), value)
    });
    let headers = <Val as jaq_core::ValT>::from_map(headers).unwrap_or_default();
    let number = |value: Option<i64>| value.map_or(Val::Null, |value| Val::from(value as isize));
    let (key, value) = match part {
        Part::Key => (input.clone(), to_val(&mut record.value).unwrap_or_default()),
        Part::Value => (to_val(&mut record.key).unwrap_or_default(), input.clone()),
    };
    [
        Val::from(record.topic.clone()),
        key,
        value,
        headers,
        number(record.timestamp),
        number(record.partition.map(i64::from)),
        number(record.offset),
    ]
}

/// A key or value as a jq value (text that is not JSON as a string).
fn to_val(data: &mut Data) -> Result<Val, String> {
    if let Data::Bytes(Some(bytes)) = data
        && let Ok(value) = jaq_json::read::parse_single(bytes)
    {
        return Ok(value);
    }
    let value = data.json()?;
    jaq_json::read::parse_single(value.to_string().as_bytes()).map_err(|_| "the data cannot be read as JSON".to_owned())
}

/// A jq value as the bytes of a key or value: JSON, but a string key as its text.
fn to_data(value: &Val, is_key: bool) -> Data {
    match value {
        Val::Null => Data::Bytes(None),
        Val::TStr(text) if is_key => Data::Bytes(Some(text.to_vec())),
        other => Data::Bytes(Some(other.to_string().into_bytes())),
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
        Ok(outputs.first().is_some_and(jaq_core::ValT::as_bool))
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
                *record.part(self.part) = to_data(&outputs.remove(0), self.part == Part::Key);
                Ok(Outcome::Keep)
            }
            _ => Err("the jq expression gave more than one value; a transform takes one (wrap it in first(...) or [...])".to_owned()),
        }
    }
}
