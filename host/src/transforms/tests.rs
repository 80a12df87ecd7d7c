//! Each transform against the examples of Kafka Connect's documentation (and
//! Confluent's pages for the same transforms): same input, same output.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wasm_connect_protocol::Record;

use super::options::Options;
use super::record::WorkingRecord;
use super::{Outcome, build_transform};

fn options(pairs: &[(&str, &str)]) -> Options {
    Options::new(pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect::<BTreeMap<_, _>>())
}

fn record(key: Option<Value>, value: Option<Value>) -> Record {
    Record {
        topic: "orders".into(),
        partition: Some(2),
        offset: Some(41),
        timestamp: Some(1_700_000_000_000),
        key: key.map(|key| serde_json::to_vec(&key).unwrap()),
        value: value.map(|value| serde_json::to_vec(&value).unwrap()),
        headers: Vec::new(),
    }
}

/// Applies one transform and returns the record as JSON (key, value), or the failure.
fn apply(type_name: &str, pairs: &[(&str, &str)], input: Record) -> Result<(Option<Value>, Option<Value>), String> {
    let transform = build_transform(type_name, &options(pairs)).unwrap_or_else(|problems| panic!("{problems:?}"));
    let mut working = WorkingRecord::from(input);
    assert_eq!(transform.apply(&mut working)?, Outcome::Keep);
    let out = working.into_record();
    let parse = |bytes: Option<Vec<u8>>| {
        bytes.map(|bytes| serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8(bytes).unwrap())))
    };
    Ok((parse(out.key), parse(out.value)))
}

fn value_of(type_name: &str, pairs: &[(&str, &str)], value: Value) -> Value {
    apply(type_name, pairs, record(None, Some(value))).unwrap().1.unwrap()
}

#[test]
fn insert_field_adds_a_static_field_and_the_record_coordinates() {
    assert_eq!(
        value_of(
            "InsertField$Value",
            &[("static.field", "MessageSource"), ("static.value", "Kafka Connect framework")],
            json!({"foo": "bar"})
        ),
        json!({"foo": "bar", "MessageSource": "Kafka Connect framework"})
    );
    let value = value_of(
        "org.apache.kafka.connect.transforms.InsertField$Value",
        &[("topic.field", "topic"), ("partition.field", "partition!"), ("offset.field", "offset?"), ("timestamp.field", "ts")],
        json!({"id": 1}),
    );
    assert_eq!(value, json!({"id": 1, "topic": "orders", "partition": 2, "offset": 41, "ts": 1_700_000_000_000i64}));
    // A source's record, not yet in a topic: no partition or timestamp field where it
    // has none, and an offset field fails it (Kafka Connect: "Only SinkRecord supported").
    let fresh = Record { topic: "orders".into(), value: Some(br#"{"id":1}"#.to_vec()), ..Record::default() };
    let coordinates = [("topic.field", "topic"), ("partition.field", "partition"), ("timestamp.field", "ts")];
    assert_eq!(apply("InsertField$Value", &coordinates, fresh.clone()).unwrap().1, Some(json!({"id": 1, "topic": "orders"})));
    let refused = apply("InsertField$Value", &[("offset.field", "offset")], fresh).unwrap_err();
    assert!(refused.contains("offset.field (offset) needs a record read from a topic"), "{refused}");
    let nested = value_of("InsertField$Value", &[("topic.field", "meta.topic"), ("field.syntax.version", "V2")], json!({"id": 1}));
    assert_eq!(nested, json!({"id": 1, "meta": {"topic": "orders"}}));
    // A tombstone passes unchanged; a value that is not an object fails the record.
    assert_eq!(apply("InsertField$Value", &[("topic.field", "t")], record(None, None)).unwrap().1, None);
    let refused = apply("InsertField$Value", &[("topic.field", "t")], record(None, Some(json!("text")))).unwrap_err();
    assert!(refused.contains("only JSON objects") && refused.contains("String"), "{refused}");
}

#[test]
fn replace_field_includes_excludes_and_renames_in_place() {
    let input = json!({"foo": "abc", "bar": 12, "baz": true});
    assert_eq!(value_of("ReplaceField$Value", &[("exclude", "bar")], input.clone()), json!({"foo": "abc", "baz": true}));
    assert_eq!(value_of("ReplaceField$Value", &[("include", "foo,baz")], input.clone()), json!({"foo": "abc", "baz": true}));
    let renamed = value_of("ReplaceField$Value", &[("renames", "foo:c1,bar:c2")], input.clone());
    assert_eq!(serde_json::to_string(&renamed).unwrap(), r#"{"c1":"abc","c2":12,"baz":true}"#);
    let nested = value_of(
        "ReplaceField$Value",
        &[("exclude", "a.secret"), ("renames", "a.old:new"), ("field.syntax.version", "V2")],
        json!({"a": {"secret": 1, "old": 2, "kept": 3}}),
    );
    assert_eq!(nested, json!({"a": {"new": 2, "kept": 3}}));
    assert!(build_transform("ReplaceField$Value", &options(&[("renames", "nocolon")])).is_err());
}

#[test]
fn mask_field_empties_fields_by_type_or_uses_the_replacement() {
    let input = json!({"name": "Ada", "card": "4111111111111111", "limit": 5000, "rate": 1.5, "vip": true, "tags": ["a"], "at": {"x": 1}});
    assert_eq!(
        value_of("MaskField$Value", &[("fields", "name,limit,rate,vip,tags,at")], input.clone()),
        json!({"name": "", "card": "4111111111111111", "limit": 0, "rate": 0.0, "vip": false, "tags": [], "at": {}})
    );
    assert_eq!(
        value_of("MaskField$Value", &[("fields", "card"), ("replacement", "****-****")], input.clone()),
        json!({"name": "Ada", "card": "****-****", "limit": 5000, "rate": 1.5, "vip": true, "tags": ["a"], "at": {"x": 1}})
    );
    assert_eq!(value_of("MaskField$Value", &[("fields", "limit"), ("replacement", "-1")], input.clone())["limit"], json!(-1));
    let refused = apply("MaskField$Value", &[("fields", "limit"), ("replacement", "n/a")], record(None, Some(input))).unwrap_err();
    assert!(refused.contains("not a whole number"), "{refused}");
}

#[test]
fn extract_field_and_hoist_field_unwrap_and_wrap() {
    let (key, _) = apply("ExtractField$Key", &[("field", "id")], record(Some(json!({"id": 42, "name": "x"})), Some(json!({})))).unwrap();
    assert_eq!(key, Some(json!(42)));
    assert_eq!(apply("ExtractField$Value", &[("field", "missing")], record(None, Some(json!({"a": 1})))).unwrap().1, None);
    assert_eq!(value_of("ExtractField$Value", &[("field", "a.b"), ("field.syntax.version", "V2")], json!({"a": {"b": [1]}})), json!([1]));
    assert_eq!(value_of("HoistField$Value", &[("field", "line")], json!("hello")), json!({"line": "hello"}));
    let (key, _) = apply("HoistField$Key", &[("field", "id")], record(Some(json!(42)), None)).unwrap();
    assert_eq!(key, Some(json!({"id": 42})));
}

#[test]
fn flatten_joins_nested_names_with_the_delimiter() {
    let input = json!({"content": {"id": 42, "name": {"first": "David", "middle": null, "last": "Wong"}}, "tags": [1, 2]});
    assert_eq!(
        value_of("Flatten$Value", &[], input.clone()),
        json!({"content.id": 42, "content.name.first": "David", "content.name.middle": null, "content.name.last": "Wong", "tags": [1, 2]})
    );
    assert_eq!(value_of("Flatten$Value", &[("delimiter", "_")], input)["content_name_last"], json!("Wong"));
}

#[test]
fn value_to_key_builds_the_key_from_value_fields() {
    let (key, value) = apply(
        "ValueToKey",
        &[("fields", "userId,city,state")],
        record(None, Some(json!({"userId": 7, "city": "Oslo", "state": null, "x": 1}))),
    )
    .unwrap();
    assert_eq!(key, Some(json!({"userId": 7, "city": "Oslo", "state": null})));
    assert_eq!(value, Some(json!({"userId": 7, "city": "Oslo", "state": null, "x": 1})));
}

#[test]
fn unknown_types_variants_and_options_are_refused_with_what_to_write() {
    let problems = build_transform("InsertField", &options(&[("topic.field", "t")])).err().unwrap();
    assert!(problems[0].1.contains("InsertField$Key or InsertField$Value"), "{problems:?}");
    let problems = build_transform("com.example.Custom", &options(&[])).err().unwrap();
    assert!(problems[0].1.contains("is not a transform"), "{problems:?}");
    let problems = build_transform("MaskField$Value", &options(&[("fields", "a"), ("feilds", "b")])).err().unwrap();
    assert_eq!(problems[0].0, "feilds");
    assert!(problems[0].1.contains("fields, replacement"), "{problems:?}");
}

#[test]
fn cast_converts_fields_or_the_whole_value() {
    assert_eq!(
        value_of(
            "Cast$Value",
            &[("spec", "ID:string,score:float64,flag:boolean,small:int8")],
            json!({"ID": 42, "score": 7, "flag": 1, "small": 300})
        ),
        json!({"ID": "42", "score": 7.0, "flag": true, "small": 44})
    );
    assert_eq!(value_of("Cast$Value", &[("spec", "int64")], json!("17")), json!(17));
    let refused = apply("Cast$Value", &[("spec", "n:int32")], record(None, Some(json!({"n": "x"})))).unwrap_err();
    assert!(refused.contains("not a whole number"), "{refused}");
    assert!(build_transform("Cast$Value", &options(&[("spec", "a:decimal")])).is_err());
}

#[test]
fn timestamp_converter_reads_and_writes_each_target_type() {
    let at = json!({"ts": 1_483_625_229_123i64});
    let converted = |pairs: &[(&str, &str)]| value_of("TimestampConverter$Value", pairs, at.clone())["ts"].clone();
    assert_eq!(
        converted(&[("field", "ts"), ("target.type", "string"), ("format", "yyyy-MM-dd HH:mm:ss.SSS")]),
        json!("2017-01-05 14:07:09.123")
    );
    assert_eq!(converted(&[("field", "ts"), ("target.type", "unix")]), json!(1_483_625_229_123i64));
    // unix.precision reads whole numbers in that unit too.
    let seconds = value_of(
        "TimestampConverter$Value",
        &[("field", "ts"), ("target.type", "string"), ("unix.precision", "seconds"), ("format", "yyyy-MM-dd HH:mm:ss.SSS")],
        json!({"ts": 1_483_625_229}),
    );
    assert_eq!(seconds["ts"], json!("2017-01-05 14:07:09.000"));
    assert_eq!(converted(&[("field", "ts"), ("target.type", "Date")]), json!(17_171));
    assert_eq!(converted(&[("field", "ts"), ("target.type", "Time")]), json!(50_829_123));
    let parsed = value_of(
        "TimestampConverter$Value",
        &[("field", "at"), ("target.type", "Timestamp"), ("format", "yyyy-MM-dd'T'HH:mm:ssXXX")],
        json!({"at": "2017-01-05T15:07:09+01:00"}),
    );
    assert_eq!(parsed, json!({"at": 1_483_625_229_000i64}));
    let whole = value_of(
        "TimestampConverter$Value",
        &[("target.type", "unix"), ("format", "yyyy-MM-dd"), ("unix.precision", "microseconds")],
        json!("2017-01-05"),
    );
    assert_eq!(whole, json!(1_483_574_400_000_000i64));
    assert!(build_transform("TimestampConverter$Value", &options(&[("target.type", "string")])).is_err());
}

#[test]
fn headers_are_dropped_inserted_and_made_from_fields() {
    let mut input = record(None, Some(json!({"id": 7, "source": "web", "meta": {"v": 2}})));
    input.headers = vec![("trace".into(), Some(b"t1".to_vec())), ("keep".into(), None), ("trace".into(), Some(b"t2".to_vec()))];
    let apply_to = |type_name: &str, pairs: &[(&str, &str)], input: Record| {
        let mut working = WorkingRecord::from(input);
        build_transform(type_name, &options(pairs)).unwrap().apply(&mut working).unwrap();
        working.into_record()
    };
    let dropped = apply_to("DropHeaders", &[("headers", "trace")], input.clone());
    assert_eq!(dropped.headers, vec![("keep".to_owned(), None)]);
    let inserted = apply_to("InsertHeader", &[("header", "origin"), ("value.literal", "wasm-connect")], input.clone());
    assert_eq!(inserted.headers.last(), Some(&("origin".to_owned(), Some(b"wasm-connect".to_vec()))));
    let moved = apply_to("HeaderFrom$Value", &[("fields", "source,meta"), ("headers", "src,meta"), ("operation", "move")], input.clone());
    assert_eq!(serde_json::from_slice::<Value>(moved.value.as_ref().unwrap()).unwrap(), json!({"id": 7}));
    assert_eq!(&moved.headers[3..], &[("src".to_owned(), Some(b"web".to_vec())), ("meta".to_owned(), Some(br#"{"v":2}"#.to_vec()))]);
    let copied = apply_to("HeaderFrom$Value", &[("fields", "id"), ("headers", "id"), ("operation", "copy")], input);
    assert_eq!(serde_json::from_slice::<Value>(copied.value.as_ref().unwrap()).unwrap()["id"], json!(7));
    assert!(build_transform("HeaderFrom$Value", &options(&[("fields", "a,b"), ("headers", "a"), ("operation", "copy")])).is_err());
}

#[test]
fn routers_rename_the_topic() {
    let routed = |type_name: &str, pairs: &[(&str, &str)], topic: &str| {
        let mut input = record(None, Some(json!({})));
        input.topic = topic.into();
        let mut working = WorkingRecord::from(input);
        build_transform(type_name, &options(pairs)).unwrap().apply(&mut working).unwrap();
        working.topic
    };
    let regex = [("regex", "(.*)customers_(.*)"), ("replacement", "$2")];
    assert_eq!(routed("RegexRouter", &regex, "dbserver1.inventory.customers_eu"), "eu");
    assert_eq!(routed("RegexRouter", &regex, "orders"), "orders");
    assert_eq!(routed("TimestampRouter", &[], "orders"), "orders-20231114");
    assert_eq!(
        routed("TimestampRouter", &[("topic.format", "${timestamp}_${topic}"), ("timestamp.format", "yyyy.MM")], "orders"),
        "2023.11_orders"
    );
}

#[test]
fn a_chain_applies_transforms_in_order_where_their_predicates_say() {
    use super::{Chain, ChainPlugins, WasmTransforms};
    use crate::config::{PredicateConfig, ScalarString, TransformConfig};
    let spec = |alias: &str, type_name: &str, predicate: Option<&str>, negate: bool, pairs: &[(&str, &str)]| TransformConfig {
        name: alias.into(),
        type_name: type_name.into(),
        predicate: predicate.map(str::to_owned),
        negate,
        options: pairs.iter().map(|(key, value)| ((*key).to_owned(), ScalarString((*value).to_owned()))).collect(),
    };
    let predicates = vec![
        PredicateConfig {
            name: "isOrders".into(),
            type_name: "TopicNameMatches".into(),
            options: [("pattern".to_owned(), ScalarString("orders".to_owned()))].into(),
        },
        PredicateConfig {
            name: "tombstone".into(),
            type_name: "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone".into(),
            options: BTreeMap::new(),
        },
    ];
    let transforms = vec![
        spec("dropTombstones", "org.apache.kafka.connect.transforms.Filter", Some("tombstone"), false, &[]),
        spec("mask", "MaskField$Value", Some("isOrders"), false, &[("fields", "card")]),
        spec("tag", "InsertField$Value", Some("isOrders"), true, &[("static.field", "other"), ("static.value", "yes")]),
        spec("route", "RegexRouter", None, false, &[("regex", "(.*)"), ("replacement", "$1-shaped")]),
    ];
    let chain = Chain::build(&transforms, &predicates, &ChainPlugins::unresolved()).unwrap();
    let mut other = record(None, Some(json!({"card": "4111"})));
    other.topic = "refunds".into();
    // One batch: each record meets the chain on its own, in order.
    let batch = vec![record(None, Some(json!({"card": "4111", "n": 1}))), other, record(None, None), record(None, Some(json!([1, 2])))];
    let output = chain.apply(batch, &mut WasmTransforms::default()).unwrap();
    assert_eq!(output.records.len(), 2, "{:?}", output.records);
    assert_eq!(output.records[0].topic, "orders-shaped");
    let value = |record: &Record| serde_json::from_slice::<Value>(record.value.as_ref().unwrap()).unwrap();
    assert_eq!(value(&output.records[0]), json!({"card": "", "n": 1}));
    assert_eq!((output.records[1].topic.as_str(), value(&output.records[1])), ("refunds-shaped", json!({"card": "4111", "other": "yes"})));
    // The tombstone was dropped; the array failed at `mask`.
    assert_eq!(output.failed.len(), 1);
    let (index, failure) = &output.failed[0];
    assert_eq!((*index, failure.alias.as_str(), failure.type_name.as_str()), (3, "mask", "MaskField$Value"));

    let problems = Chain::build(
        &[spec("x", "Filter", Some("nope"), false, &[]), spec("y", "Nope", None, false, &[])],
        &predicates,
        &ChainPlugins::unresolved(),
    )
    .err()
    .unwrap();
    let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["transforms.x.predicate", "transforms.y.type"]);
}

#[test]
fn has_header_key_takes_its_name_as_header_where_name_is_the_alias() {
    use super::build_predicate;
    let mut with_header = record(None, Some(json!(1)));
    with_header.headers.push(("source".into(), Some(b"airlabs".to_vec())));
    for key in ["name", "header"] {
        let predicate = build_predicate("HasHeaderKey", &options(&[(key, "source")])).unwrap();
        assert!(predicate.test(&mut WorkingRecord::from(with_header.clone())).unwrap(), "{key}");
        assert!(!predicate.test(&mut WorkingRecord::from(record(None, Some(json!(1))))).unwrap(), "{key}");
    }
    assert_eq!(build_predicate("HasHeaderKey", &options(&[])).err().unwrap()[0].0, "name");
}

#[test]
fn fields_changed_on_the_top_level_read_come_out_as_from_the_whole_tree() {
    // InsertField and ReplaceField work on an object's top level without reading the
    // rest; the same transform on a value read as a tree gives the same fields, in the
    // same order.
    let inputs = [
        r#"{"id":1,"card":"4111","nested":{"a":[1,2]},"drop":true}"#,
        r#"{ "id" : 2 , "old" : "x" , "new" : "y" }"#,
        r#"{"id":3,"name":"caf\u00e9","n":1.5e3}"#,
        r#"{"dup":1,"dup":2}"#,
        r#"{"esc\"aped":1,"id":4}"#,
        r#"[1,2]"#,
        r#""text""#,
        "plain text",
    ];
    let transforms: [(&str, &[(&str, &str)]); 6] = [
        ("InsertField$Value", &[("static.field", "source"), ("static.value", "bench"), ("topic.field", "topic"), ("offset.field", "id")]),
        ("ReplaceField$Value", &[("exclude", "drop,card,missing")]),
        ("ReplaceField$Value", &[("include", "new,id,nested,missing")]),
        ("ReplaceField$Value", &[("renames", "old:new,card:number,esc\"aped:plain")]),
        ("ReplaceField$Value", &[("renames", "new:old")]),
        ("InsertField$Value", &[("static.field", "dup"), ("static.value", "3")]),
    ];
    for (type_name, pairs) in transforms {
        let transform = build_transform(type_name, &options(pairs)).unwrap();
        for input in inputs {
            let record = Record { topic: "t".into(), offset: Some(9), value: Some(input.as_bytes().to_vec()), ..Record::default() };
            let run = |read_whole: bool| {
                let mut working = WorkingRecord::from(record.clone());
                if read_whole {
                    let _ = working.value.json();
                }
                let result =
                    transform.apply(&mut working).map(|_| working.into_record().value.map(|bytes| String::from_utf8(bytes).unwrap()));
                // The same fields in the same order, whatever the spacing or number text.
                result.map(|text| text.map(|text| serde_json::from_str::<Value>(&text).map_or(text, |value| value.to_string())))
            };
            let shallow = run(false);
            assert_eq!(shallow, run(true), "{type_name} {pairs:?} on {input}");
            if input.starts_with('{') {
                assert!(shallow.is_ok(), "{type_name} {pairs:?} on {input}: {shallow:?}");
            }
        }
    }
}
