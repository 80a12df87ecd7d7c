//! Kafka Connect's `TimestampConverter` on schemaless JSON. A time is read from a
//! whole number (Unix time in `unix.precision`) or from text in `format`, and written
//! as `target.type`: `string` (in `format`), `unix` (in `unix.precision`), or, as Kafka
//! Connect's JSON converter writes these logical types, `Timestamp` as milliseconds
//! since the epoch, `Date` as days since the epoch and `Time` as milliseconds since
//! midnight. Times are UTC, as in Kafka Connect.

use serde_json::Value;

use super::date_format::DateFormat;
use super::options::{OptionProblem, Options};
use super::path::FieldPath;
use super::record::{Part, WorkingRecord, type_name};
use super::{Outcome, Transform};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetType {
    Text,
    Unix,
    Date,
    Time,
    Timestamp,
}

/// `TimestampConverter`.
pub struct TimestampConverter {
    part: Part,
    field: Option<FieldPath>,
    target: TargetType,
    format: Option<DateFormat>,
    /// Milliseconds per unit of Unix time, or units per millisecond when below one.
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl Unit {
    fn to_ms(self, value: i64) -> i64 {
        match self {
            Unit::Seconds => value.saturating_mul(1000),
            Unit::Milliseconds => value,
            Unit::Microseconds => value.div_euclid(1000),
            Unit::Nanoseconds => value.div_euclid(1_000_000),
        }
    }

    fn of_ms(self, ms: i64) -> i64 {
        match self {
            Unit::Seconds => ms.div_euclid(1000),
            Unit::Milliseconds => ms,
            Unit::Microseconds => ms.saturating_mul(1000),
            Unit::Nanoseconds => ms.saturating_mul(1_000_000),
        }
    }
}

impl TimestampConverter {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["target.type", "field", "format", "unix.precision", "field.syntax.version", "replace.null.with.default"];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        let target = match options.required("target.type")?.trim() {
            "string" => TargetType::Text,
            "unix" => TargetType::Unix,
            "Date" => TargetType::Date,
            "Time" => TargetType::Time,
            "Timestamp" => TargetType::Timestamp,
            other => return Err(("target.type".to_owned(), format!("must be string, unix, Date, Time or Timestamp, not {other:?}"))),
        };
        let field = match options.get("field").map(str::trim).filter(|field| !field.is_empty()) {
            Some(field) => Some(FieldPath::parse(field, options.syntax()?).map_err(|message| ("field".to_owned(), message))?),
            None => None,
        };
        let format = match options.get("format").filter(|format| !format.trim().is_empty()) {
            Some(pattern) => Some(DateFormat::parse(pattern).map_err(|message| ("format".to_owned(), message))?),
            None if target == TargetType::Text => {
                return Err(("format".to_owned(), "is required when target.type is string (a SimpleDateFormat pattern)".to_owned()));
            }
            None => None,
        };
        let unit = match options.get("unix.precision").map(str::trim).unwrap_or("milliseconds") {
            "seconds" => Unit::Seconds,
            "milliseconds" => Unit::Milliseconds,
            "microseconds" => Unit::Microseconds,
            "nanoseconds" => Unit::Nanoseconds,
            other => {
                return Err((
                    "unix.precision".to_owned(),
                    format!("must be seconds, milliseconds, microseconds or nanoseconds, not {other:?}"),
                ));
            }
        };
        Ok(Self { part, field, target, format, unit })
    }

    fn convert(&self, value: &Value) -> Result<Value, String> {
        let ms = match value {
            Value::Null => return Ok(Value::Null),
            Value::Number(number) => {
                self.unit.to_ms(number.as_i64().ok_or_else(|| "the number is not a whole number of Unix time".to_owned())?)
            }
            Value::String(text) => match &self.format {
                Some(format) => format.parse_time(text)?,
                None => return Err("the time is text, and no format is set to read it".to_owned()),
            },
            other => return Err(format!("TimestampConverter cannot read a time from a {}", type_name(other))),
        };
        Ok(match self.target {
            TargetType::Text => Value::String(self.format.as_ref().expect("checked when built").format(ms)),
            TargetType::Unix => Value::from(self.unit.of_ms(ms)),
            TargetType::Timestamp => Value::from(ms),
            TargetType::Date => Value::from(ms.div_euclid(86_400_000)),
            TargetType::Time => Value::from(ms.rem_euclid(86_400_000)),
        })
    }
}

impl Transform for TimestampConverter {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        let data = record.part(self.part).json()?;
        let Some(field) = &self.field else {
            *data = self.convert(data)?;
            return Ok(Outcome::Keep);
        };
        if data.is_null() {
            return Ok(Outcome::Keep);
        }
        let found = type_name(data);
        let object = data
            .as_object_mut()
            .ok_or_else(|| format!("only JSON objects are supported for converting a field's time, found a {found}"))?;
        if let Some(parent) = field.parent_mut(object)
            && let Some(value) = parent.get_mut(field.name())
        {
            *value = self.convert(value)?;
        }
        Ok(Outcome::Keep)
    }
}
