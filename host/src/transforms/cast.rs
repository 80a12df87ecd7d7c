//! Kafka Connect's `Cast`: fields (or the whole key or value) to int8, int16, int32,
//! int64, float32, float64, boolean or string, converting as Java does: a number
//! narrowed to a smaller integer wraps, a fraction is cut toward zero, `true`/`false`
//! become 1/0, text is parsed (and a record whose text does not parse fails), and a
//! number becomes text as Java prints it (`1.0`, `1.0E10`).

use serde_json::{Number, Value};

use super::options::{OptionProblem, Options};
use super::path::FieldPath;
use super::record::{Part, WorkingRecord, type_name};
use super::{Outcome, Transform};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Int(u32),
    Float32,
    Float64,
    Boolean,
    Text,
}

impl Target {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text.trim() {
            "int8" => Target::Int(8),
            "int16" => Target::Int(16),
            "int32" => Target::Int(32),
            "int64" => Target::Int(64),
            "float32" => Target::Float32,
            "float64" => Target::Float64,
            "boolean" => Target::Boolean,
            "string" => Target::Text,
            other => {
                return Err(format!(
                    "{other:?} is not a type Cast casts to (int8, int16, int32, int64, float32, float64, boolean, string)"
                ));
            }
        })
    }
}

/// `Cast`.
pub struct Cast {
    part: Part,
    whole: Option<Target>,
    fields: Vec<(FieldPath, Target)>,
}

impl Cast {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["spec", "field.syntax.version", "replace.null.with.default"];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        let syntax = options.syntax()?;
        let problem = |message: String| ("spec".to_owned(), message);
        let entries = options.list("spec");
        if entries.is_empty() {
            return Err(problem("is required: field:type pairs, or one type for the whole key or value".to_owned()));
        }
        if entries.len() == 1 && !entries[0].contains(':') {
            return Ok(Self { part, whole: Some(Target::parse(&entries[0]).map_err(problem)?), fields: Vec::new() });
        }
        let mut fields = Vec::new();
        for entry in entries {
            let Some((field, target)) = entry.rsplit_once(':') else {
                return Err(problem(format!("{entry:?} is not field:type (a whole-value type must be the only entry)")));
            };
            fields.push((FieldPath::parse(field.trim(), syntax).map_err(problem)?, Target::parse(target).map_err(problem)?));
        }
        Ok(Self { part, whole: None, fields })
    }
}

impl Transform for Cast {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        let data = record.part(self.part).json()?;
        if data.is_null() {
            return Ok(Outcome::Keep);
        }
        if let Some(target) = self.whole {
            *data = cast(data, target)?;
            return Ok(Outcome::Keep);
        }
        let found = type_name(data);
        let object = data.as_object_mut().ok_or_else(|| format!("only JSON objects are supported for casting fields, found a {found}"))?;
        for (path, target) in &self.fields {
            if let Some(parent) = path.parent_mut(object)
                && let Some(value) = parent.get_mut(path.name())
            {
                *value = cast(value, *target)?;
            }
        }
        Ok(Outcome::Keep)
    }
}

fn cast(value: &Value, target: Target) -> Result<Value, String> {
    let refused = || format!("Cast cannot cast a {} to {target:?}", type_name(value));
    Ok(match (value, target) {
        (Value::Null, _) => Value::Null,
        (Value::Array(_) | Value::Object(_), _) => {
            return Err(format!("Cast does not cast a {}: only numbers, booleans and text", type_name(value)));
        }
        (Value::Number(number), Target::Int(bits)) => Value::from(wrap(truncate(number), bits)),
        (Value::Bool(flag), Target::Int(_)) => Value::from(i64::from(*flag)),
        (Value::String(text), Target::Int(bits)) => {
            let parsed: i64 = text.trim().parse().map_err(|_| "the text is not a whole number".to_owned())?;
            if wrap(parsed, bits) != parsed {
                return Err(format!("the number in the text does not fit in int{bits}"));
            }
            Value::from(parsed)
        }
        (Value::Number(number), Target::Float64) => float(number.as_f64().ok_or_else(refused)?)?,
        (Value::Number(number), Target::Float32) => float32(number.as_f64().ok_or_else(refused)? as f32)?,
        (Value::Bool(flag), Target::Float64 | Target::Float32) => float(if *flag { 1.0 } else { 0.0 })?,
        (Value::String(text), Target::Float64) => float(text.trim().parse().map_err(|_| "the text is not a number".to_owned())?)?,
        (Value::String(text), Target::Float32) => float32(text.trim().parse().map_err(|_| "the text is not a number".to_owned())?)?,
        (Value::Number(number), Target::Boolean) => Value::Bool(number.as_f64().is_some_and(|n| n != 0.0)),
        (Value::Bool(flag), Target::Boolean) => Value::Bool(*flag),
        (Value::String(text), Target::Boolean) => Value::Bool(text.trim().eq_ignore_ascii_case("true")),
        (Value::Number(number), Target::Text) => Value::String(java_number_text(number)),
        (Value::Bool(flag), Target::Text) => Value::String(flag.to_string()),
        (Value::String(text), Target::Text) => Value::String(text.clone()),
    })
}

/// A JSON number as a Java long: fractions cut toward zero, out-of-range values clamped.
fn truncate(number: &Number) -> i64 {
    number.as_i64().unwrap_or_else(|| number.as_f64().map_or(i64::MAX, |float| float as i64))
}

/// The low `bits` of `value`, sign-extended (Java's narrowing of a long).
fn wrap(value: i64, bits: u32) -> i64 {
    if bits >= 64 { value } else { (value << (64 - bits)) >> (64 - bits) }
}

fn float(value: f64) -> Result<Value, String> {
    Number::from_f64(value).map(Value::Number).ok_or_else(|| "the result is not a number JSON can hold (infinite or NaN)".to_owned())
}

/// A float32 as JSON: the shortest decimal that reads back as the same float32.
fn float32(value: f32) -> Result<Value, String> {
    float(format!("{value}").parse::<f64>().map_err(|error| error.to_string())?)
}

/// A number as Java's `Long.toString` or `Double.toString` writes it.
fn java_number_text(number: &Number) -> String {
    if let Some(whole) = number.as_i64() {
        return whole.to_string();
    }
    if let Some(whole) = number.as_u64() {
        return whole.to_string();
    }
    let value = number.as_f64().unwrap_or_default();
    if value == 0.0 {
        return if value.is_sign_negative() { "-0.0".to_owned() } else { "0.0".to_owned() };
    }
    let magnitude = value.abs();
    if (1e-3..1e7).contains(&magnitude) {
        let text = format!("{value}");
        if text.contains('.') { text } else { format!("{text}.0") }
    } else {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = if mantissa.contains('.') { mantissa.to_owned() } else { format!("{mantissa}.0") };
        format!("{mantissa}E{exponent}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_narrow_truncate_and_print_as_java_does() {
        assert_eq!(cast(&json!(300), Target::Int(8)), Ok(json!(44)));
        assert_eq!(cast(&json!(-1.9), Target::Int(32)), Ok(json!(-1)));
        assert_eq!(cast(&json!(true), Target::Int(16)), Ok(json!(1)));
        assert_eq!(cast(&json!("42"), Target::Int(64)), Ok(json!(42)));
        assert!(cast(&json!("300"), Target::Int(8)).is_err());
        assert!(cast(&json!("4x"), Target::Int(32)).is_err());
        assert_eq!(cast(&json!(1.1), Target::Float32), Ok(json!(1.1)));
        assert_eq!(cast(&json!("2.5"), Target::Float64), Ok(json!(2.5)));
        assert_eq!(cast(&json!(0), Target::Boolean), Ok(json!(false)));
        assert_eq!(cast(&json!("TRUE"), Target::Boolean), Ok(json!(true)));
        assert_eq!(cast(&json!(1.0), Target::Text), Ok(json!("1.0")));
        assert_eq!(cast(&json!(1e10), Target::Text), Ok(json!("1.0E10")));
        assert_eq!(cast(&json!(0.0001), Target::Text), Ok(json!("1.0E-4")));
        assert_eq!(cast(&json!(42), Target::Text), Ok(json!("42")));
        assert!(cast(&json!({"a": 1}), Target::Text).is_err());
    }
}
