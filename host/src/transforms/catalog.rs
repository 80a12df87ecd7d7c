//! Every transform and predicate type this host runs, as `GET /connector-plugins?
//! connectorsOnly=false` lists them (Kafka Connect's class names, type
//! `transformation` or `predicate`), with what each does and each option documented.

use super::predicates::{PREDICATES_PACKAGE, predicate_options, short_predicate_name};
use super::{TRANSFORMS_PACKAGE, short_name, transform_options};

/// The transforms: base name, whether it has `$Key`/`$Value` variants, and what it does.
const TRANSFORMS: &[(&str, bool, &str)] = &[
    ("Cast", true, "Casts fields, or the whole key or value, to another type."),
    ("DropHeaders", false, "Removes headers by name."),
    ("ExtractField", true, "Replaces the key or value with one of its fields."),
    ("Filter", false, "Drops records (those its predicate matches)."),
    ("Flatten", true, "Turns nested objects into top-level fields joined with a delimiter."),
    ("HeaderFrom", true, "Copies or moves fields into headers."),
    ("HoistField", true, "Wraps the key or value in an object under one field."),
    ("InsertField", true, "Adds a static field, or the record's topic, partition, offset or timestamp."),
    ("InsertHeader", false, "Adds a header with a literal value."),
    ("MaskField", true, "Replaces fields with an empty value of their type, or a replacement."),
    ("RegexRouter", false, "Renames the topic with a regular expression."),
    ("ReplaceField", true, "Keeps, drops or renames fields."),
    ("SetSchemaMetadata", true, "Accepted and does nothing: values carry no schema here."),
    ("TimestampConverter", true, "Converts a time between text, Unix time and Kafka Connect's Date, Time and Timestamp."),
    ("TimestampRouter", false, "Renames the topic with the record's timestamp."),
    ("ValueToKey", false, "Makes the key an object of some of the value's fields."),
    ("Jq", true, "Replaces the key or value with a jq expression's output; no output drops the record."),
];

/// The predicates: name and what it matches.
const PREDICATES: &[(&str, &str)] = &[
    ("HasHeaderKey", "Records with a header of that name."),
    ("RecordIsTombstone", "Records without a value."),
    ("TopicNameMatches", "Records whose topic matches a regular expression in full."),
    ("Jq", "Records where a jq expression's first output is neither false nor null."),
];

/// What kind of type an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A transform.
    Transformation,
    /// A predicate.
    Predicate,
}

/// One listed type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The class name `type` takes (Kafka Connect's full name for its own types).
    pub class: String,
    /// Transform or predicate.
    pub kind: Kind,
    /// What it does.
    pub documentation: &'static str,
    /// Its options.
    pub options: &'static [&'static str],
}

/// Every type, transforms first, each variant on its own.
pub fn entries() -> Vec<Entry> {
    let mut entries = Vec::new();
    for (base, variants, documentation) in TRANSFORMS {
        let options = transform_options(base).expect("every listed transform is built");
        let package = if *base == "Jq" { "" } else { TRANSFORMS_PACKAGE };
        let classes = if *variants {
            vec![format!("{package}{base}$Key"), format!("{package}{base}$Value")]
        } else {
            vec![format!("{package}{base}")]
        };
        entries.extend(classes.into_iter().map(|class| Entry { class, kind: Kind::Transformation, documentation, options }));
    }
    for (name, documentation) in PREDICATES {
        let options = predicate_options(name).expect("every listed predicate is built");
        let class = if *name == "Jq" { (*name).to_owned() } else { format!("{PREDICATES_PACKAGE}{name}") };
        entries.push(Entry { class, kind: Kind::Predicate, documentation, options });
    }
    entries
}

/// The entry of `class`, written short or in full.
pub fn find(class: &str) -> Option<Entry> {
    let (transform, predicate) = (short_name(class), short_predicate_name(class));
    entries().into_iter().find(|entry| match entry.kind {
        Kind::Transformation => short_name(&entry.class) == transform,
        Kind::Predicate => short_predicate_name(&entry.class) == predicate,
    })
}

/// An option's Kafka Connect type, default and documentation, by its name.
pub fn option_definition(option: &str) -> (&'static str, Option<&'static str>, &'static str) {
    match option {
        "field.syntax.version" => {
            ("STRING", Some("V1"), "V1: a field name is one field, dots and all; V2: dots step into nested objects (KIP-821).")
        }
        "replace.null.with.default" => {
            ("BOOLEAN", Some("true"), "Kafka Connect's schema defaults; values here have no schema, so nothing changes.")
        }
        "spec" => {
            ("LIST", None, "field:type pairs (int8 to int64, float32, float64, boolean, string), or one type for the whole key or value.")
        }
        "fields" => ("LIST", None, "The fields it works on, comma-separated."),
        "field" => ("STRING", None, "The field it works on."),
        "include" | "whitelist" => ("LIST", None, "Fields to keep (all others are dropped)."),
        "exclude" | "blacklist" => ("LIST", None, "Fields to drop."),
        "renames" => ("LIST", None, "old:new pairs, comma-separated."),
        "replacement" => ("STRING", None, "RegexRouter: the new topic ($1 for a group); MaskField: the value masked fields get."),
        "regex" => ("STRING", None, "A regular expression the whole topic must match."),
        "delimiter" => ("STRING", Some("."), "What joins a nested field's names."),
        "topic.format" => ("STRING", Some("${topic}-${timestamp}"), "The new topic, with ${topic} and ${timestamp}."),
        "timestamp.format" => ("STRING", Some("yyyyMMdd"), "Java's SimpleDateFormat pattern for ${timestamp}, in UTC."),
        "target.type" => ("STRING", None, "string, unix, Date, Time or Timestamp."),
        "format" => ("STRING", None, "Java's SimpleDateFormat pattern to read or write text times."),
        "unix.precision" => ("STRING", Some("milliseconds"), "seconds, milliseconds, microseconds or nanoseconds."),
        "headers" => ("LIST", None, "Header names, comma-separated."),
        "header" => ("STRING", None, "The header's name."),
        "value.literal" => ("STRING", None, "The header's value."),
        "operation" => ("STRING", None, "move or copy."),
        "static.field" => ("STRING", None, "The field that gets static.value."),
        "static.value" => ("STRING", None, "The static field's value."),
        "topic.field" | "partition.field" | "offset.field" | "timestamp.field" => {
            ("STRING", None, "The field that gets the record's coordinate.")
        }
        "schema.name" | "schema.version" => ("STRING", None, "Accepted; values carry no schema here."),
        "expression" => {
            ("STRING", None, "A jq expression: . is the key or value; $topic, $key, $value, $headers, $timestamp, $partition, $offset.")
        }
        "pattern" => ("STRING", None, "A regular expression the whole topic must match."),
        "name" => ("STRING", None, "The header's name (in connectors.yaml write it `header`: `name` is the alias there)."),
        _ => ("STRING", None, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_listed_with_its_variants_and_documented_options() {
        let entries = entries();
        let classes: Vec<&str> = entries.iter().map(|entry| entry.class.as_str()).collect();
        for class in [
            "org.apache.kafka.connect.transforms.InsertField$Value",
            "org.apache.kafka.connect.transforms.InsertField$Key",
            "org.apache.kafka.connect.transforms.RegexRouter",
            "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
            "Jq$Value",
            "Jq",
        ] {
            assert!(classes.contains(&class), "{class} missing from {classes:?}");
        }
        assert_eq!(entries.iter().filter(|entry| entry.kind == Kind::Predicate).count(), 4);
        for entry in &entries {
            for option in entry.options {
                assert!(!option_definition(option).2.is_empty(), "{option} of {} is documented", entry.class);
            }
        }
        assert_eq!(find("MaskField$Value").unwrap().class, "org.apache.kafka.connect.transforms.MaskField$Value");
        assert_eq!(find("org.apache.kafka.connect.transforms.predicates.HasHeaderKey").unwrap().options, ["name", "header"]);
        assert_eq!(find("Jq").unwrap().kind, Kind::Predicate);
        assert!(find("MaskField").is_none(), "a transform with variants is listed by its variants");
    }
}
