//! `cassandra-sink`: writes each record as a row of a Cassandra or ScyllaDB table,
//! with a column mapping from record fields (and from the record's key, time, topic,
//! partition and offset), type conversion, and the write time taken from the record
//! time, so that a replayed batch converges to the same rows. Tombstones delete the
//! row whose primary key they carry. The host prepares the statements and sends the
//! rows in unlogged batches grouped by partition key.

use serde_json::Value;
use wasm_connect_sdk::cassandra::{self, Connection, Consistency, CqlValue, Row};
use wasm_connect_sdk::partial::PartialWrites;
use wasm_connect_sdk::time::parse_rfc3339;
use wasm_connect_sdk::{ConfigOption, Description, Error, OptionType, Plugin, RecordView, Settings, Sink, export_sink};

/// A CQL column type the mapping can convert to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    Text,
    Int,
    Bigint,
    Double,
    Boolean,
    Timestamp,
    Uuid,
    TextList,
    TextMap,
}

impl ColumnType {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text.trim().to_ascii_lowercase().replace(' ', "").as_str() {
            "text" | "varchar" => ColumnType::Text,
            "int" => ColumnType::Int,
            "bigint" => ColumnType::Bigint,
            "double" => ColumnType::Double,
            "boolean" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp,
            "uuid" => ColumnType::Uuid,
            "list<text>" => ColumnType::TextList,
            "map<text,text>" => ColumnType::TextMap,
            other => {
                return Err(format!(
                    "unknown column type \"{other}\"; use text, int, bigint, double, boolean, timestamp, uuid, list<text> or map<text,text>"
                ));
            }
        })
    }

    fn cql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Int => "int",
            ColumnType::Bigint => "bigint",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Uuid => "uuid",
            ColumnType::TextList => "list<text>",
            ColumnType::TextMap => "map<text, text>",
        }
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Key,
    Time,
    Topic,
    Partition,
    Offset,
    Field(Vec<String>),
}

/// One `column=source:type` entry of `columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    source: Source,
    column_type: ColumnType,
}

fn parse_columns(text: &str) -> Result<Vec<Column>, String> {
    let mut columns = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (name, rest) = entry.split_once('=').ok_or_else(|| format!("\"{entry}\": expected column=source:type"))?;
        let (source, column_type) = rest.rsplit_once(':').ok_or_else(|| format!("\"{entry}\": expected column=source:type"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("\"{entry}\": a column name is letters, digits and _"));
        }
        let source = match source.trim() {
            "@key" => Source::Key,
            "@time" => Source::Time,
            "@topic" => Source::Topic,
            "@partition" => Source::Partition,
            "@offset" => Source::Offset,
            path if !path.is_empty() && !path.starts_with('@') => Source::Field(path.split('.').map(str::to_owned).collect()),
            other => {
                return Err(format!(
                    "\"{entry}\": unknown source \"{other}\"; use a field path or @key, @time, @topic, @partition, @offset"
                ));
            }
        };
        columns.push(Column { name: name.to_owned(), source, column_type: ColumnType::parse(column_type)? });
    }
    if columns.is_empty() {
        return Err("map at least one column, e.g. id=@key:text, temperature=temperature:double".to_owned());
    }
    Ok(columns)
}

fn parse_consistency(text: &str) -> Result<Consistency, String> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        other => return Err(format!("unknown consistency \"{other}\"; use one, quorum, local_quorum, all, ...")),
    })
}

/// The sink task.
pub struct CassandraSink {
    connection: Connection,
    columns: Vec<Column>,
    primary_key: Vec<String>,
    consistency: Consistency,
    statements: Vec<String>,
    partial: PartialWrites,
}

/// Index of the INSERT and DELETE statements in `statements`.
const INSERT: u32 = 0;
const DELETE: u32 = 1;

impl Plugin for CassandraSink {
    fn description() -> Description {
        Description::new(
            "cassandra-sink",
            env!("CARGO_PKG_VERSION"),
            "Writes records as rows of a Cassandra or ScyllaDB table, with the write time taken from the record time.",
        )
        .option(ConfigOption::new("contact_points", OptionType::CqlContactPoints, "host:port of one or more nodes.").required())
        .option(ConfigOption::new("keyspace", OptionType::String, "Keyspace of the table.").required())
        .option(ConfigOption::new("table", OptionType::String, "Table to write to.").required())
        .option(
            ConfigOption::new(
                "columns",
                OptionType::String,
                "column=source:type, ...: source is a field path or @key, @time, @topic, @partition, @offset; type is text, int, bigint, double, boolean, timestamp, uuid, list<text> or map<text,text>.",
            )
            .required(),
        )
        .option(ConfigOption::new("partition_key", OptionType::List, "The partition key columns.").required())
        .option(ConfigOption::new("clustering_key", OptionType::List, "The clustering columns, if any."))
        .option(ConfigOption::new("create_table", OptionType::Boolean, "Create the table from the mapping when it does not exist.").default("false"))
        .option(ConfigOption::new("consistency", OptionType::String, "Write consistency level.").default("local_quorum"))
        .option(ConfigOption::new("ttl", OptionType::Duration, "Rows expire this long after they are written."))
        .option(ConfigOption::new("username", OptionType::String, "User for password authentication."))
        .option(ConfigOption::new("password", OptionType::String, "Password for password authentication.").secret())
        .option(ConfigOption::new("local_datacenter", OptionType::String, "Data centre to prefer."))
    }

    fn validate(settings: &Settings) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let columns = settings.get("columns").map(parse_columns);
        if let Some(Err(message)) = &columns {
            issues.push(("columns".to_owned(), message.clone()));
        }
        if let (Some(Ok(columns)), Ok(partition), clustering) =
            (&columns, settings.list("partition_key"), settings.list("clustering_key").unwrap_or_default())
        {
            if partition.is_empty() {
                issues.push(("partition_key".to_owned(), "name at least one column".to_owned()));
            }
            for key in partition.iter().chain(&clustering) {
                if !columns.iter().any(|column| column.name == *key) {
                    issues.push(("partition_key".to_owned(), format!("{key} is not a column of the mapping")));
                }
            }
        }
        if let Some(Err(message)) = settings.get("consistency").map(parse_consistency) {
            issues.push(("consistency".to_owned(), message));
        }
        for key in ["keyspace", "table"] {
            if settings.get(key).is_some_and(|name| name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
                issues.push((key.to_owned(), "must be letters, digits and _".to_owned()));
            }
        }
        if settings.get("password").is_some() && settings.get("username").is_none() {
            issues.push(("username".to_owned(), "is needed with password".to_owned()));
        }
        issues
    }
}

impl CassandraSink {
    fn value_of(&self, column: &Column, record: &RecordView<'_>, value: Option<&Value>) -> Result<CqlValue, String> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let json = match &column.source {
            Source::Key => record.key.map(|key| Value::String(text(key))),
            Source::Time => record.timestamp.map(Value::from),
            Source::Topic => Some(Value::String(record.topic.to_owned())),
            Source::Partition => record.partition.map(Value::from),
            Source::Offset => record.offset.map(Value::from),
            Source::Field(path) => value.and_then(|value| path.iter().try_fold(value, |value, part| value.get(part))).cloned(),
        };
        let json = match json {
            None | Some(Value::Null) if self.primary_key.contains(&column.name) => {
                return Err(format!("primary key column {} has no value", column.name));
            }
            None | Some(Value::Null) => return Ok(CqlValue::Null),
            Some(json) => json,
        };
        convert(&json, column.column_type).map_err(|message| format!("column {}: {message}", column.name))
    }

    fn row_for(&self, record: &RecordView<'_>) -> Result<Row, String> {
        let write_time = record.timestamp.map(|ms| ms * 1000 + record.offset.unwrap_or(0).rem_euclid(1000));
        let Some(bytes) = record.value else {
            let values = self
                .primary_key
                .iter()
                .map(|key| {
                    let column = self.columns.iter().find(|column| column.name == *key).expect("validated");
                    if matches!(column.source, Source::Field(_)) {
                        return Err(format!("a tombstone has no value, so primary key column {key} (from a field) is unknown"));
                    }
                    self.value_of(column, record, None)
                })
                .collect::<Result<Vec<_>, String>>()?;
            return Ok(Row { statement: DELETE, values, write_time });
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|error| format!("the value is not JSON: {error}"))?;
        if !value.is_object() {
            return Err("the value is not a JSON object".to_owned());
        }
        let values = self.columns.iter().map(|column| self.value_of(column, record, Some(&value))).collect::<Result<Vec<_>, String>>()?;
        Ok(Row { statement: INSERT, values, write_time })
    }
}

fn convert(json: &Value, column_type: ColumnType) -> Result<CqlValue, String> {
    let as_text = |json: &Value| match json {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let number = |json: &Value| -> Option<f64> {
        match json {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    };
    let integer = |json: &Value| -> Option<i64> {
        match json {
            Value::Number(number) => number.as_i64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    };
    Ok(match column_type {
        ColumnType::Text => CqlValue::Text(as_text(json)),
        ColumnType::Int => {
            let value = integer(json).ok_or_else(|| format!("{json} is not a whole number"))?;
            CqlValue::Int(i32::try_from(value).map_err(|_| format!("{value} does not fit an int"))?)
        }
        ColumnType::Bigint => CqlValue::Bigint(integer(json).ok_or_else(|| format!("{json} is not a whole number"))?),
        ColumnType::Double => CqlValue::Double(number(json).ok_or_else(|| format!("{json} is not a number"))?),
        ColumnType::Boolean => CqlValue::Boolean(match json {
            Value::Bool(flag) => *flag,
            Value::String(text) if text == "true" || text == "false" => text == "true",
            other => return Err(format!("{other} is not a boolean")),
        }),
        ColumnType::Timestamp => CqlValue::Timestamp(match json {
            Value::Number(number) => number.as_i64().ok_or_else(|| format!("{number} is not milliseconds since the epoch"))?,
            Value::String(text) => parse_rfc3339(text).ok_or_else(|| format!("\"{text}\" is not an RFC 3339 UTC time"))?,
            other => return Err(format!("{other} is not a time")),
        }),
        ColumnType::Uuid => CqlValue::Uuid(as_text(json)),
        ColumnType::TextList => match json {
            Value::Array(items) => CqlValue::TextList(items.iter().map(as_text).collect()),
            other => return Err(format!("{other} is not a list")),
        },
        ColumnType::TextMap => match json {
            Value::Object(entries) => CqlValue::TextMap(entries.iter().map(|(key, value)| (key.clone(), as_text(value))).collect()),
            other => return Err(format!("{other} is not an object")),
        },
    })
}

impl Sink for CassandraSink {
    fn open(settings: &Settings) -> Result<Self, Error> {
        let bad = |message: String| Error::BadConfig(message);
        let columns = parse_columns(&settings.string("columns")?).map_err(bad)?;
        let partition_key = settings.list("partition_key")?;
        let clustering_key = settings.list("clustering_key").unwrap_or_default();
        let (keyspace, table) = (settings.string("keyspace")?, settings.string("table")?);
        let ttl = settings.duration("ttl").ok().map(|ttl| ttl.as_secs());
        let connection = Connection {
            contact_points: settings.string("contact_points")?,
            username: settings.get("username").map(str::to_owned),
            password: settings.get("password").map(str::to_owned),
            local_datacenter: settings.get("local_datacenter").map(str::to_owned),
        };
        let names: Vec<&str> = columns.iter().map(|column| column.name.as_str()).collect();
        let primary_key: Vec<String> = partition_key.iter().chain(&clustering_key).cloned().collect();
        if settings.boolean("create_table")? {
            let definitions: Vec<String> = columns.iter().map(|column| format!("{} {}", column.name, column.column_type.cql())).collect();
            let clustering = if clustering_key.is_empty() { String::new() } else { format!(", {}", clustering_key.join(", ")) };
            let options = ttl.map(|ttl| format!(" WITH default_time_to_live = {ttl}")).unwrap_or_default();
            let create = format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.{table} ({}, PRIMARY KEY (({}){clustering})){options}",
                definitions.join(", "),
                partition_key.join(", ")
            );
            cassandra::execute(&connection, &create)?;
        }
        let markers = vec!["?"; names.len()].join(", ");
        let using_ttl = ttl.map(|ttl| format!(" USING TTL {ttl}")).unwrap_or_default();
        let insert = format!("INSERT INTO {keyspace}.{table} ({}) VALUES ({markers}){using_ttl}", names.join(", "));
        let conditions: Vec<String> = primary_key.iter().map(|key| format!("{key} = ?")).collect();
        let delete = format!("DELETE FROM {keyspace}.{table} WHERE {}", conditions.join(" AND "));
        Ok(Self {
            connection,
            columns,
            primary_key,
            consistency: parse_consistency(&settings.string("consistency")?).map_err(bad)?,
            statements: vec![insert, delete],
            partial: PartialWrites::default(),
        })
    }

    fn write(&mut self, records: &[RecordView<'_>]) -> Result<(), Error> {
        let to_write = self.partial.to_write(records)?;
        let mut refused = Vec::new();
        let mut positions = Vec::with_capacity(to_write.len());
        let mut rows = Vec::with_capacity(to_write.len());
        for position in &to_write {
            match self.row_for(&records[*position]) {
                Ok(row) => {
                    positions.push(*position);
                    rows.push(row);
                }
                Err(reason) => refused.push((*position, reason)),
            }
        }
        if !rows.is_empty() {
            let outcomes = cassandra::write(&self.connection, &self.statements, &rows, self.consistency)?;
            refused.extend(positions.into_iter().zip(outcomes).filter_map(|(position, outcome)| Some((position, outcome?))));
        }
        self.partial.settle(records, &to_write, refused)
    }
}

export_sink!(CassandraSink);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_mappings_parse_and_convert() {
        let columns = parse_columns("id=@key:text, ts=@time:timestamp, temp=reading.temperature:double, tags=tags:list<text>").unwrap();
        assert_eq!(columns[2].source, Source::Field(vec!["reading".into(), "temperature".into()]));
        assert_eq!(columns[3].column_type, ColumnType::TextList);
        assert!(parse_columns("id:text").is_err());
        assert!(parse_columns("id=@nope:text").is_err());
        assert!(parse_columns("id=x:blob").is_err());
        assert!(matches!(convert(&serde_json::json!("42"), ColumnType::Int), Ok(CqlValue::Int(42))));
        assert!(convert(&serde_json::json!(1u64 << 40), ColumnType::Int).is_err());
        assert!(matches!(
            convert(&serde_json::json!("2024-01-15T10:00:00Z"), ColumnType::Timestamp),
            Ok(CqlValue::Timestamp(1_705_312_800_000))
        ));
        assert!(matches!(convert(&serde_json::json!(true), ColumnType::Text), Ok(CqlValue::Text(text)) if text == "true"));
        assert!(convert(&serde_json::json!("warm"), ColumnType::Double).is_err());
    }
}
