//! Where a record's event time comes from: its timestamp, or a field of its value
//! (epoch milliseconds or seconds, or an RFC 3339 text).

use serde_json::{Map, Value};
use wasm_connect_protocol::Record;
use wasm_connect_protocol::time::parse_rfc3339;

use crate::transforms::path::{FieldPath, FieldSyntax};

/// The furthest event time from the epoch taken, in milliseconds (about 31,700
/// years): window arithmetic never overflows within it.
const MAX_TIME_MS: u64 = 1_000_000_000_000_000;

/// How a number in the time field counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Milliseconds since the epoch.
    Milliseconds,
    /// Seconds since the epoch (GBFS's `last_reported`).
    Seconds,
}

/// Where event time comes from.
#[derive(Debug, Clone)]
pub enum EventTime {
    /// The record's timestamp.
    Timestamp,
    /// A field of the value.
    Field {
        /// The field.
        path: FieldPath,
        /// How a number in it counts.
        unit: TimeUnit,
    },
}

impl EventTime {
    /// From the `time_field` and `time_unit` options.
    pub fn parse(field: Option<&str>, unit: Option<&str>) -> Result<Self, (String, String)> {
        let unit = match unit.map(str::trim) {
            None | Some("milliseconds" | "ms") => TimeUnit::Milliseconds,
            Some("seconds" | "s") => TimeUnit::Seconds,
            Some(other) => return Err(("time_unit".into(), format!("must be milliseconds or seconds, not {other:?}"))),
        };
        match field.map(str::trim).filter(|field| !field.is_empty()) {
            None => Ok(EventTime::Timestamp),
            Some(field) => FieldPath::parse(field, FieldSyntax::V2)
                .map(|path| EventTime::Field { path, unit })
                .map_err(|problem| ("time_field".into(), problem)),
        }
    }

    /// The record's event time in milliseconds, or why it has none.
    pub fn of(&self, record: &Record, value: Option<&Map<String, Value>>) -> Result<i64, String> {
        match self {
            EventTime::Timestamp => match record.timestamp {
                Some(time) if time.unsigned_abs() < MAX_TIME_MS => Ok(time),
                Some(time) => Err(format!("the record timestamp {time} is not a time within 30,000 years of 1970")),
                None => Err("the record has no timestamp (set time_field to read the event time from the value)".to_owned()),
            },
            EventTime::Field { path, unit } => {
                let found = value.and_then(|value| path.get(value)).ok_or_else(|| format!("the value has no field {}", path.display()))?;
                let millis = match found {
                    Value::Number(number) => {
                        let number = number.as_f64().unwrap_or(f64::NAN);
                        match unit {
                            TimeUnit::Milliseconds => number,
                            TimeUnit::Seconds => number * 1000.0,
                        }
                    }
                    Value::String(text) => parse_rfc3339(text).map_or(f64::NAN, |ms| ms as f64),
                    _ => f64::NAN,
                };
                if millis.is_finite() && millis.abs() < MAX_TIME_MS as f64 {
                    Ok(millis as i64)
                } else {
                    Err(format!("the field {} is not a time (epoch number or RFC 3339 text)", path.display()))
                }
            }
        }
    }
}
