//! Kafka Connect's transforms of fields, on schemaless JSON: InsertField, ReplaceField,
//! MaskField, ExtractField, HoistField, Flatten and ValueToKey. Each works on the key
//! (`$Key`) or the value (`$Value`); a tombstone (no value) passes unchanged, as in
//! Kafka Connect.

use serde_json::{Map, Number, Value};

use super::options::{OptionProblem, Options};
use super::path::{FieldPath, FieldSyntax};
use super::record::{Part, WorkingRecord, type_name};
use super::{Outcome, Transform};

/// The object a transform works on, or why the record cannot be shaped.
fn object<'a>(value: &'a mut Value, purpose: &str) -> Result<&'a mut Map<String, Value>, String> {
    let found = type_name(value);
    value.as_object_mut().ok_or_else(|| format!("only JSON objects are supported for {purpose}, found a {found}"))
}

/// A field name with Kafka Connect's optional `!` (required) or `?` (optional) suffix.
fn insert_target(options: &Options, key: &str, syntax: FieldSyntax) -> Result<Option<(FieldPath, bool)>, OptionProblem> {
    let Some(name) = options.get(key).map(str::trim).filter(|name| !name.is_empty()) else { return Ok(None) };
    let (name, required) = match name.strip_suffix('!') {
        Some(name) => (name, true),
        None => (name.strip_suffix('?').unwrap_or(name), false),
    };
    let path = FieldPath::parse(name, syntax).map_err(|message| (key.to_owned(), message))?;
    Ok(Some((path, required)))
}

/// `InsertField`: adds the record's topic, partition, offset, timestamp or a static
/// value as fields.
pub struct InsertField {
    part: Part,
    topic: Option<FieldPath>,
    partition: Option<FieldPath>,
    offset: Option<FieldPath>,
    timestamp: Option<FieldPath>,
    fixed: Option<(FieldPath, Value)>,
    /// Every field it inserts is a top-level one: the value is read only at its top level.
    top_level: bool,
}

impl InsertField {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &[
        "topic.field",
        "partition.field",
        "offset.field",
        "timestamp.field",
        "static.field",
        "static.value",
        "field.syntax.version",
        "replace.null.with.default",
    ];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        let syntax = options.syntax()?;
        let field = |key: &str| insert_target(options, key, syntax).map(|target| target.map(|(path, _)| path));
        let fixed = field("static.field")?.map(|path| (path, Value::String(options.get("static.value").unwrap_or_default().to_owned())));
        let (topic, partition, offset, timestamp) =
            (field("topic.field")?, field("partition.field")?, field("offset.field")?, field("timestamp.field")?);
        let top_level = [&topic, &partition, &offset, &timestamp, &fixed.as_ref().map(|(path, _)| path.clone())]
            .into_iter()
            .flatten()
            .all(FieldPath::is_top_level);
        Ok(Self { part, topic, partition, offset, timestamp, fixed, top_level })
    }
}

impl Transform for InsertField {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        if record.part(self.part).is_null() {
            return Ok(Outcome::Keep);
        }
        let mut fields: Vec<(&FieldPath, Value)> = Vec::with_capacity(5);
        if let Some(path) = &self.topic {
            fields.push((path, Value::String(record.topic.clone())));
        }
        // As Kafka Connect: no partition or timestamp field when the record has none,
        // and an offset only of a record read from a topic.
        if let (Some(path), Some(partition)) = (&self.partition, record.partition) {
            fields.push((path, Value::from(partition)));
        }
        // Reported once the value is known to be an object, as Kafka Connect checks.
        let mut no_offset = None;
        if let Some(path) = &self.offset {
            match record.offset {
                Some(offset) => fields.push((path, Value::from(offset))),
                None => {
                    no_offset = Some(format!(
                        "offset.field ({}) needs a record read from a topic, as a sink connector's are; this record has no offset yet",
                        path.display()
                    ))
                }
            }
        }
        if let (Some(path), Some(timestamp)) = (&self.timestamp, record.timestamp) {
            fields.push((path, Value::from(timestamp)));
        }
        if let Some((path, value)) = &self.fixed {
            fields.push((path, value.clone()));
        }
        let data = record.part(self.part);
        if self.top_level
            && let Some(target) = data.object()
        {
            if let Some(problem) = no_offset {
                return Err(problem);
            }
            for (path, value) in fields {
                target.insert(path.name(), value);
            }
            return Ok(Outcome::Keep);
        }
        let target = object(data.json()?, "field insertion")?;
        if let Some(problem) = no_offset {
            return Err(problem);
        }
        for (path, value) in fields {
            if !path.set(target, value) {
                return Err(format!("cannot insert {}: a field on its way is not an object", path.display()));
            }
        }
        Ok(Outcome::Keep)
    }
}

/// `ReplaceField`: keeps only some fields (`include`), drops some (`exclude`), and
/// renames some (`renames: old:new,...`).
pub struct ReplaceField {
    part: Part,
    include: Vec<FieldPath>,
    exclude: Vec<FieldPath>,
    renames: Vec<(FieldPath, String)>,
    /// Every field it names is a top-level one: the value is read only at its top level.
    top_level: bool,
}

impl ReplaceField {
    /// Options as Kafka Connect names them (`whitelist`/`blacklist` are the old names).
    pub const OPTIONS: &[&str] =
        &["include", "exclude", "renames", "whitelist", "blacklist", "field.syntax.version", "replace.null.with.default"];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        let syntax = options.syntax()?;
        let mut include = options.paths("include", syntax)?;
        include.extend(options.paths("whitelist", syntax)?);
        let mut exclude = options.paths("exclude", syntax)?;
        exclude.extend(options.paths("blacklist", syntax)?);
        let mut renames = Vec::new();
        for pair in options.list("renames") {
            let Some((from, to)) = pair.split_once(':').filter(|(from, to)| !from.is_empty() && !to.is_empty()) else {
                return Err(("renames".to_owned(), format!("{pair:?} is not old:new")));
            };
            renames.push((FieldPath::parse(from, syntax).map_err(|message| ("renames".to_owned(), message))?, to.to_owned()));
        }
        let top_level = include.iter().chain(&exclude).chain(renames.iter().map(|(from, _)| from)).all(FieldPath::is_top_level);
        Ok(Self { part, include, exclude, renames, top_level })
    }
}

impl Transform for ReplaceField {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        if record.part(self.part).is_null() {
            return Ok(Outcome::Keep);
        }
        let data = record.part(self.part);
        if self.top_level
            && let Some(target) = data.object()
        {
            if !self.include.is_empty() {
                target.keep_only(self.include.iter().map(FieldPath::name));
            }
            for path in &self.exclude {
                target.remove(path.name());
            }
            for (from, to) in &self.renames {
                target.rename(from.name(), to);
            }
            return Ok(Outcome::Keep);
        }
        let target = object(data.json()?, "field replacement")?;
        if !self.include.is_empty() {
            let mut kept = Map::new();
            for path in &self.include {
                if let Some(value) = path.get(target) {
                    path.set(&mut kept, value.clone());
                }
            }
            *target = kept;
        }
        for path in &self.exclude {
            path.remove(target);
        }
        for (from, to) in &self.renames {
            if let Some(parent) = from.parent_mut(target)
                && parent.contains_key(from.name())
            {
                // Renamed where it stands, as Kafka Connect keeps the field order.
                let fields = std::mem::take(parent);
                *parent =
                    fields.into_iter().map(|(name, value)| if name == from.name() { (to.clone(), value) } else { (name, value) }).collect();
            }
        }
        Ok(Outcome::Keep)
    }
}

/// `MaskField`: replaces fields with an empty value of their type, or `replacement`.
pub struct MaskField {
    part: Part,
    fields: Vec<FieldPath>,
    replacement: Option<String>,
}

impl MaskField {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["fields", "replacement", "field.syntax.version", "replace.null.with.default"];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        let fields = options.paths("fields", options.syntax()?)?;
        if fields.is_empty() {
            return Err(("fields".to_owned(), "is required: the fields to mask".to_owned()));
        }
        let replacement = options.get("replacement").filter(|text| !text.is_empty()).map(str::to_owned);
        Ok(Self { part, fields, replacement })
    }

    fn masked(&self, value: &Value) -> Result<Value, String> {
        let Some(replacement) = &self.replacement else {
            return Ok(match value {
                Value::Null => Value::Null,
                Value::Bool(_) => Value::Bool(false),
                Value::Number(number) if number.is_f64() => Value::from(0.0),
                Value::Number(_) => Value::from(0),
                Value::String(_) => Value::String(String::new()),
                Value::Array(_) => Value::Array(Vec::new()),
                Value::Object(_) => Value::Object(Map::new()),
            });
        };
        match value {
            Value::String(_) => Ok(Value::String(replacement.clone())),
            Value::Number(number) if number.is_f64() => replacement
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("the replacement {replacement:?} is not a number, and the field is one")),
            Value::Number(_) => replacement
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("the replacement {replacement:?} is not a whole number, and the field is one")),
            other => Err(format!("cannot mask a {} with a replacement (only strings and numbers)", type_name(other))),
        }
    }
}

impl Transform for MaskField {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        if record.part(self.part).is_null() {
            return Ok(Outcome::Keep);
        }
        let target = object(record.part(self.part).json()?, "masking")?;
        for path in &self.fields {
            if let Some(parent) = path.parent_mut(target)
                && let Some(value) = parent.get_mut(path.name())
            {
                *value = self.masked(value)?;
            }
        }
        Ok(Outcome::Keep)
    }
}

/// `ExtractField`: replaces the key or value with one of its fields.
pub struct ExtractField {
    part: Part,
    field: FieldPath,
}

impl ExtractField {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["field", "field.syntax.version", "replace.null.with.default"];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        let field = FieldPath::parse(options.required("field")?, options.syntax()?).map_err(|message| ("field".to_owned(), message))?;
        Ok(Self { part, field })
    }
}

impl Transform for ExtractField {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        let data = record.part(self.part).json()?;
        if data.is_null() {
            return Ok(Outcome::Keep);
        }
        let extracted = self.field.get(object(data, "field extraction")?).cloned().unwrap_or(Value::Null);
        *data = extracted;
        Ok(Outcome::Keep)
    }
}

/// `HoistField`: wraps the key or value in an object under `field`.
pub struct HoistField {
    part: Part,
    field: String,
}

impl HoistField {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["field"];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        Ok(Self { part, field: options.required("field")?.to_owned() })
    }
}

impl Transform for HoistField {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        let data = record.part(self.part).json()?;
        let inner = std::mem::take(data);
        let mut hoisted = Map::new();
        hoisted.insert(self.field.clone(), inner);
        *data = Value::Object(hoisted);
        Ok(Outcome::Keep)
    }
}

/// `Flatten`: nested objects become top-level fields named with `delimiter`.
pub struct Flatten {
    part: Part,
    delimiter: String,
}

impl Flatten {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["delimiter"];

    /// Reads the options.
    pub fn build(part: Part, options: &Options) -> Result<Self, OptionProblem> {
        Ok(Self { part, delimiter: options.get("delimiter").unwrap_or(".").to_owned() })
    }

    fn flatten_into(&self, prefix: &str, object: Map<String, Value>, flat: &mut Map<String, Value>) {
        for (name, value) in object {
            let name = if prefix.is_empty() { name } else { format!("{prefix}{}{name}", self.delimiter) };
            match value {
                Value::Object(inner) => self.flatten_into(&name, inner, flat),
                other => {
                    flat.insert(name, other);
                }
            }
        }
    }
}

impl Transform for Flatten {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        let data = record.part(self.part).json()?;
        if data.is_null() {
            return Ok(Outcome::Keep);
        }
        let nested = std::mem::take(object(data, "flattening")?);
        let mut flat = Map::new();
        self.flatten_into("", nested, &mut flat);
        *data = Value::Object(flat);
        Ok(Outcome::Keep)
    }
}

/// `ValueToKey`: the key becomes an object of some of the value's fields.
pub struct ValueToKey {
    fields: Vec<FieldPath>,
}

impl ValueToKey {
    /// Options as Kafka Connect names them.
    pub const OPTIONS: &[&str] = &["fields", "field.syntax.version", "replace.null.with.default"];

    /// Reads the options.
    pub fn build(options: &Options) -> Result<Self, OptionProblem> {
        let fields = options.paths("fields", options.syntax()?)?;
        if fields.is_empty() {
            return Err(("fields".to_owned(), "is required: the value's fields that make the key".to_owned()));
        }
        Ok(Self { fields })
    }
}

impl Transform for ValueToKey {
    fn apply(&self, record: &mut WorkingRecord) -> Result<Outcome, String> {
        if record.value.is_null() {
            return Ok(Outcome::Keep);
        }
        let value = object(record.value.json()?, "copying fields from value to key")?;
        let mut key = Map::new();
        for path in &self.fields {
            path.set(&mut key, path.get(value).cloned().unwrap_or(Value::Null));
        }
        record.key = super::record::Data::Json(Value::Object(key));
        Ok(Outcome::Keep)
    }
}
