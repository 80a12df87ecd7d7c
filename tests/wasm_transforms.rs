//! WASM transforms (`type: wasm`) in connector chains: the WIT 0.1.3 contract (one
//! outcome per record: keep, drop, many, fail) driven through the host's chain, plugins
//! built against older contracts, configuration problems, and a running pipeline where
//! a WASM transform fails, splits and adds a geo_point, with the failed records in the
//! dead-letter topic as they came in.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, canonical, read_sink_output, simulated_values, write_config};
use wasm_connect::config::{ScalarString, TransformConfig};
use wasm_connect::runtime::{PluginCatalog, PluginFailure, PluginKind, Runtime, TaskLimits};
use wasm_connect::transforms::{Chain, ChainPlugins, WasmTransforms};
use wasm_connect_protocol::Record;

struct Plugins {
    runtime: Runtime,
    catalog: PluginCatalog,
}

fn plugins() -> Plugins {
    let runtime =
        Runtime::new(&support::shared_cache_dir(), TaskLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_secs(10) }).unwrap();
    let (catalog, errors) = PluginCatalog::load_dir(&runtime, &support::test_plugins_dir()).unwrap();
    assert!(errors.is_empty(), "plugins failed to load: {errors:?}");
    Plugins { runtime, catalog }
}

fn transform(alias: &str, type_name: &str, options: &[(&str, &str)]) -> TransformConfig {
    TransformConfig {
        name: alias.into(),
        type_name: type_name.into(),
        predicate: None,
        negate: false,
        options: options.iter().map(|(key, value)| ((*key).to_owned(), ScalarString((*value).to_owned()))).collect(),
    }
}

fn build(plugins: &Plugins, transforms: &[TransformConfig]) -> Result<Chain, Vec<(String, String)>> {
    Chain::build(transforms, &[], &ChainPlugins::new(&plugins.catalog, &plugins.runtime))
}

fn record(value: Value) -> Record {
    Record { topic: "orders".into(), partition: Some(0), offset: Some(7), value: Some(value.to_string().into_bytes()), ..Record::default() }
}

fn value(record: &Record) -> Value {
    serde_json::from_slice(record.value.as_deref().unwrap()).unwrap()
}

#[test]
fn one_call_keeps_drops_rewrites_splits_routes_and_fails_each_record_on_its_own() {
    let plugins = plugins();
    let chain = build(
        &plugins,
        &[
            transform("script", "wasm", &[("plugin", "scripted-transform"), ("tag", "blue")]),
            // After the WASM transform: every record it handed on, split ones included.
            transform("stamp", "InsertField$Value", &[("static.field", "stamped"), ("static.value", "1")]),
        ],
    )
    .unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let batch = vec![
        record(json!({"n": 0})),
        record(json!({"n": 1, "do": "drop"})),
        record(json!({"n": 2, "do": "fail"})),
        record(json!({"n": 3, "do": "tag"})),
        record(json!({"n": 4, "do": "split", "copies": 3})),
        record(json!({"n": 5, "do": "route", "to": "elsewhere"})),
        record(json!({"n": 6, "do": "route", "to": "no spaces allowed"})),
        record(json!({"n": 7, "do": "keep"})),
    ];
    let output = chain.apply(batch, &mut wasm).unwrap();
    let shown: Vec<(String, Value)> = output.records.iter().map(|record| (record.topic.clone(), value(record))).collect();
    assert_eq!(
        shown,
        vec![
            ("orders".to_owned(), json!({"n": 0, "stamped": "1"})),
            ("orders".to_owned(), json!({"n": 3, "tagged": "blue", "stamped": "1"})),
            ("orders".to_owned(), json!({"n": 4, "copies": 3, "copy": 0, "stamped": "1"})),
            ("orders".to_owned(), json!({"n": 4, "copies": 3, "copy": 1, "stamped": "1"})),
            ("orders".to_owned(), json!({"n": 4, "copies": 3, "copy": 2, "stamped": "1"})),
            ("elsewhere".to_owned(), json!({"n": 5, "to": "elsewhere", "stamped": "1"})),
            ("orders".to_owned(), json!({"n": 7, "do": "keep", "stamped": "1"})),
        ]
    );
    // What a rewritten record keeps of the original: offset, partition, key.
    assert_eq!((output.records[1].partition, output.records[1].offset), (Some(0), Some(7)));
    let failed: Vec<(usize, &str, &str, &str)> = output
        .failed
        .iter()
        .map(|(index, failure)| (*index, failure.alias.as_str(), failure.type_name.as_str(), failure.reason.as_str()))
        .collect();
    assert_eq!(failed[0], (2, "script", "scripted-transform@0.1.0", "asked to fail"));
    assert_eq!((failed[1].0, failed[1].1), (6, "script"));
    assert!(failed[1].3.contains("no spaces allowed"), "a route to a bad topic name fails the record: {failed:?}");
    assert_eq!(failed.len(), 2);

    // The instance lives on: the next batch goes through the same one.
    let output = chain.apply(vec![record(json!({"n": 8, "do": "tag"}))], &mut wasm).unwrap();
    assert_eq!(value(&output.records[0]), json!({"n": 8, "tagged": "blue", "stamped": "1"}));

    // A call that fails as a whole fails the batch, naming the transform.
    let failure = chain.apply(vec![record(json!({"n": 9})), record(json!({"do": "error"}))], &mut wasm).unwrap_err();
    assert_eq!(failure, PluginFailure::Fatal("the transform script: asked to fail the call".to_owned()));
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let failure = chain.apply(vec![record(json!({"do": "trap"}))], &mut wasm).unwrap_err();
    assert!(matches!(&failure, PluginFailure::Trapped(message) if message.starts_with("the transform script: ")), "{failure:?}");
}

#[test]
fn a_split_record_that_fails_later_fails_once_as_the_record_that_came_in() {
    let plugins = plugins();
    // Split into three, then Cast fails the copy whose `copy` is 1 written as text.
    let chain = build(
        &plugins,
        &[
            transform("script", "wasm", &[("plugin", "scripted-transform")]),
            transform("label", "Jq$Value", &[("expression", "if .copy == 1 then .copy = \"one\" else . end")]),
            transform("cast", "Cast$Value", &[("spec", "copy:int32")]),
        ],
    )
    .unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let output =
        chain.apply(vec![record(json!({"n": 0, "do": "split", "copies": 3})), record(json!({"n": 1, "copy": 5}))], &mut wasm).unwrap();
    assert_eq!(output.records.iter().map(value).collect::<Vec<_>>(), vec![json!({"n": 1, "copy": 5})]);
    assert_eq!(output.failed.len(), 1);
    assert_eq!((output.failed[0].0, output.failed[0].1.alias.as_str()), (0, "cast"));

    // The same in a later WASM transform, which answers for each piece in one call:
    // fail the first piece, rewrite the second, keep the next record. The second
    // piece's answer is read (and dropped with its record), not taken by the next one.
    let chain = build(
        &plugins,
        &[
            transform("split", "wasm", &[("plugin", "scripted-transform")]),
            transform(
                "label",
                "Jq$Value",
                &[("expression", "if .copy == 0 then .do = \"fail\" elif .copy == 1 then .do = \"tag\" else . end")],
            ),
            transform("again", "wasm", &[("plugin", "scripted-transform")]),
        ],
    )
    .unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let output =
        chain.apply(vec![record(json!({"n": 0, "do": "split", "copies": 2})), record(json!({"n": 1, "do": "keep"}))], &mut wasm).unwrap();
    assert_eq!(output.records.iter().map(value).collect::<Vec<_>>(), vec![json!({"n": 1, "do": "keep"})]);
    assert_eq!(output.failed.iter().map(|(index, failure)| (*index, failure.alias.as_str())).collect::<Vec<_>>(), vec![(0, "again")]);
}

#[test]
fn a_jq_expression_that_recurses_without_end_fails_its_record_not_the_host() {
    let plugins = plugins();
    // jq runs in the host's built-in component: its stack runs out, not the host's.
    let bomb = "if .n == 2 then (def f: [f]; f) else .n += 10 end";
    let chain = build(
        &plugins,
        &[
            transform("shape", "Jq$Value", &[("expression", bomb)]),
            transform("stamp", "InsertField$Value", &[("static.field", "s"), ("static.value", "1")]),
        ],
    )
    .unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let output = chain.apply((0..4).map(|n| record(json!({"n": n}))).collect(), &mut wasm).unwrap();
    // The call trapped; made again record by record, only the record that recursed fails.
    assert_eq!(
        output.records.iter().map(value).collect::<Vec<_>>(),
        vec![json!({"n": 10, "s": "1"}), json!({"n": 11, "s": "1"}), json!({"n": 13, "s": "1"})]
    );
    assert_eq!(output.failed.len(), 1);
    let (index, failure) = &output.failed[0];
    assert_eq!((*index, failure.alias.as_str(), failure.type_name.as_str()), (2, "shape", "Jq$Value"));
    // Its stack runs out in the component's memory (an out-of-bounds access) or in
    // the engine (a stack overflow): a trap either way.
    assert!(failure.reason.starts_with("plugin trapped: the transform shape: "), "{failure:?}");
    // The same for the Jq predicate, and the batch after it goes through the same chain.
    let predicates = [wasm_connect::config::PredicateConfig {
        name: "odd".into(),
        type_name: "Jq".into(),
        options: [("expression".to_owned(), ScalarString("if .n == 3 then (def f: [f]; f) else .n % 2 == 1 end".to_owned()))].into(),
    }];
    let mut dropped = transform("dropOdd", "Filter", &[]);
    dropped.predicate = Some("odd".into());
    let chain = Chain::build(&[dropped], &predicates, &ChainPlugins::new(&plugins.catalog, &plugins.runtime)).unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    for _ in 0..2 {
        let output = chain.apply((0..6).map(|n| record(json!({"n": n}))).collect(), &mut wasm).unwrap();
        assert_eq!(output.records.iter().map(value).collect::<Vec<_>>(), vec![json!({"n": 0}), json!({"n": 2}), json!({"n": 4})]);
        assert_eq!(output.failed.iter().map(|(index, _)| *index).collect::<Vec<_>>(), vec![3]);
    }
    // A call with one record that traps fails that record, not the task.
    let chain = build(&plugins, &[transform("shape", "Jq$Value", &[("expression", bomb)])]).unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let output = chain.apply(vec![record(json!({"n": 2}))], &mut wasm).unwrap();
    assert_eq!((output.records.len(), output.failed.len()), (0, 1));

    // The record's other parts, as jq sees them in the component: 64-bit numbers, and a
    // key a transform before made a JSON string stays a string (not the number 123).
    let chain = build(
        &plugins,
        &[
            transform("key", "ValueToKey", &[("fields", "id")]),
            transform("id", "ExtractField$Key", &[("field", "id")]),
            transform("suffix", "Jq$Key", &[("expression", ". + \"-x\"")]),
            transform("shape", "Jq$Value", &[("expression", "{id, at: $timestamp, offset: $offset, key: $key}")]),
        ],
    )
    .unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let mut input = record(json!({"id": "123"}));
    (input.timestamp, input.offset) = (Some(1_700_000_000_123), Some(5_000_000_000));
    let output = chain.apply(vec![input], &mut wasm).unwrap();
    assert!(output.failed.is_empty(), "{:?}", output.failed);
    assert_eq!(output.records[0].key.as_deref(), Some(&b"123-x"[..]));
    assert_eq!(value(&output.records[0]), json!({"id": "123", "at": 1_700_000_000_123_i64, "offset": 5_000_000_000_i64, "key": "123-x"}));
    assert_eq!((output.records[0].partition, output.records[0].offset), (Some(0), Some(5_000_000_000)));

    // An expression that cannot compile says where, in the file too.
    let refused: BTreeMap<String, String> =
        build(&plugins, &[transform("big", "Jq$Value", &[("expression", ".amount >")])]).err().unwrap().into_iter().collect();
    assert!(refused["transforms.big.expression"].contains("is not a jq program: expected term at character 10"), "{refused:?}");
}

#[test]
fn a_jq_expression_that_never_ends_fails_its_records_within_a_bounded_time() {
    let runtime =
        Runtime::new(&support::shared_cache_dir(), TaskLimits { memory_bytes: 64 << 20, call_timeout: Duration::from_millis(300) })
            .unwrap();
    let catalog = PluginCatalog::default();
    let endless = "if .n == 1 then . else last(repeat(.)) end";
    let chain =
        Chain::build(&[transform("spin", "Jq$Value", &[("expression", endless)])], &[], &ChainPlugins::new(&catalog, &runtime)).unwrap();
    let mut wasm = WasmTransforms::open(&chain, &runtime, "test", 0, None).unwrap();
    let output = chain.apply((0..8).map(|n| record(json!({"n": n}))).collect(), &mut wasm).unwrap();
    // The batch call, then records one by one until three ran past the deadline: the
    // rest fail without being run.
    assert_eq!(output.records.iter().map(value).collect::<Vec<_>>(), vec![json!({"n": 1})]);
    let reasons: Vec<&str> = output.failed.iter().map(|(_, failure)| failure.reason.as_str()).collect();
    assert_eq!(output.failed.iter().map(|(index, _)| *index).collect::<Vec<_>>(), vec![0, 2, 3, 4, 5, 6, 7]);
    assert!(reasons[..3].iter().all(|reason| reason.contains("ran longer than")), "{reasons:?}");
    assert!(reasons[3..].iter().all(|reason| reason.starts_with("not run: ")), "{reasons:?}");
}

/// What a chain that keeps the records the `Jq` predicate `expression` matches makes
/// of each record: kept, dropped, or failed. With `tagged`, an InsertField runs first
/// (so the predicate sees a value the chain read already).
fn filtered_by(plugins: &Plugins, expression: &str, records: &[Record], tagged: bool) -> String {
    let predicates = [wasm_connect::config::PredicateConfig {
        name: "test".into(),
        type_name: "Jq".into(),
        options: [("expression".to_owned(), ScalarString(expression.to_owned()))].into(),
    }];
    let mut keep = transform("keep", "Filter", &[]);
    keep.predicate = Some("test".into());
    keep.negate = true;
    let mut transforms = vec![keep];
    if tagged {
        transforms.insert(0, transform("tag", "InsertField$Value", &[("static.field", "tag"), ("static.value", "x")]));
    }
    let chain = Chain::build(&transforms, &predicates, &ChainPlugins::new(&plugins.catalog, &plugins.runtime)).unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let output = chain.apply(records.to_vec(), &mut wasm).unwrap();
    let kept: Vec<Option<i64>> = output.records.iter().map(|record| record.offset).collect();
    let failed: Vec<usize> = output.failed.iter().map(|(index, _)| *index).collect();
    (0..records.len())
        .map(|index| match () {
            _ if failed.contains(&index) => 'f',
            _ if kept.contains(&records[index].offset) => 'k',
            _ => 'd',
        })
        .collect()
}

#[test]
fn simple_jq_predicates_answered_in_the_host_agree_with_jq() {
    let plugins = plugins();
    let deep = format!(r#"{{"b": 1, "a": {}{}}}"#, "[".repeat(130), "]".repeat(130));
    let values: Vec<Option<&[u8]>> = vec![
        Some(br#"{"amount": 1500, "currency": "EUR", "paid": true, "note": null, "items": [1, 2], "meta": {"a": 1}}"#),
        Some(br#"{"amount": 999.5, "currency": "USD", "paid": false, "items": [], "meta": {}}"#),
        Some(br#"{"amount": -1000, "currency": "\u00e9t\u00e9", "paid": "yes", "items": {"x": 1}, "meta": [1]}"#),
        Some(br#"{"amount": 9007199254740993, "currency": 12, "paid": null}"#),
        Some(br#"{"amount": 1e3, "currency": "", "amount2": 1000.0, "nested": {"deep": {"x": "EUR"}}}"#),
        Some(br#"{"amount": "1500", "currency": ["EUR"], "dup": 1, "dup": 2}"#),
        Some(br#"{"amount": 0, "currency": "EURO", "paid": 0}"#),
        Some(br#"{"amount": -0.0, "currency": "eur", "paid": true, "amount2": 1E-7}"#),
        Some(b"1500"),
        Some(br#""EUR""#),
        Some(b"[1, 2, 3]"),
        Some(b"true"),
        Some(b"null"),
        Some(b"plain text, not JSON"),
        Some(b"{\"broken\": "),
        Some(b"1e400"),
        None,
        // Numbers that f64 holds only when read correctly rounded, or not at all.
        Some(br#"{"x": 1e-23, "a": 9007199254740993.0, "b": 9007199254740992}"#),
        Some(br#"{"a": 100000000000000000001, "b": 100000000000000000000, "x": 1e400}"#),
        // A lone surrogate, and nesting deeper than serde_json reads: text to the host's
        // tree, and jq's reader refuses them too.
        Some(br#"{"b": 1, "a": "\ud800"}"#),
        Some(deep.as_bytes()),
    ];
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(index, value)| Record {
            topic: if index % 2 == 0 { "orders".into() } else { "payments".into() },
            partition: Some(index as i32 % 3),
            offset: Some(index as i64 * 10),
            timestamp: if index % 4 == 0 { None } else { Some(1_700_000_000_000 + index as i64) },
            value: value.map(<[u8]>::to_vec),
            ..Record::default()
        })
        .collect();
    for expression in [
        ".",
        ".amount > 1000",
        ".amount >= 1000 and .currency == \"EUR\"",
        ".amount < 0 or .paid",
        ".amount == 1000",
        ".amount == .amount2",
        ".amount != null",
        ".paid == false",
        ".paid | not",
        "not",
        ".currency > \"EU\"",
        ".currency < \"é\"",
        ".currency == \"été\"",
        ".items < .meta",
        ".meta > .items",
        ".note == null and .missing == null",
        ".nested.deep.x == \"EUR\"",
        ".dup == 2",
        "select(.amount > 100)",
        "select(.amount > 100) | .paid",
        "(.amount > 1000 | not) and $topic == \"orders\"",
        "type == \"object\"",
        "type == \"number\" or type == \"string\"",
        ". == \"EUR\"",
        ". > 1000",
        "$partition == 1 or $offset >= 100",
        "$timestamp > 1700000000005",
        "$timestamp == null",
        "-1000 == .amount",
        "true",
        "null",
        ".amount2 < 0.000001",
        "(.amount | type) == \"string\"",
        ".x == 1e-23",
        ".a == .b",
        ".b == 1",
    ] {
        assert!(wasm_connect::transforms::jq_simple::SimpleTest::compile(expression).is_some(), "{expression} is answered in the host");
        // The same program in a form the host leaves to jq.
        for tagged in [false, true] {
            let by_jq = filtered_by(&plugins, &format!("({expression}) as $answer | $answer"), &records, tagged);
            assert_eq!(filtered_by(&plugins, expression, &records, tagged), by_jq, "{expression} (tagged: {tagged})");
        }
    }
}

#[test]
fn plugins_that_cannot_run_in_a_chain_and_bad_options_are_configuration_problems() {
    let plugins = plugins();
    // A transform built against 0.1.2 still loads and describes itself...
    let legacy = plugins.catalog.find("legacy-transform").expect("legacy-transform loads");
    assert_eq!(legacy.description.kind, PluginKind::Transform);
    let component = wasmtime::component::Component::from_file(&plugins.runtime.engine, &legacy.path).unwrap();
    let exports: Vec<String> = component.component_type().exports(&plugins.runtime.engine).map(|(name, _)| name.to_owned()).collect();
    assert!(exports.iter().any(|name| name == "wasm-connect:connector/transform-connector@0.1.2"), "{exports:?}");
    // ...but its batch-in, batch-out contract does not run in a chain.
    let problems =
        |transforms: &[TransformConfig]| -> BTreeMap<String, String> { build(&plugins, transforms).err().unwrap().into_iter().collect() };
    let refused = problems(&[transform("old", "wasm", &[("plugin", "legacy-transform")])]);
    assert!(refused["transforms.old.plugin"].contains("rebuild it with the current wasm-connect SDK"), "{refused:?}");

    // A chain transform built against 0.1.3 runs on this host (wit/VERSIONING.md).
    let component = plugins.catalog.find("legacy-record-transform").expect("legacy-record-transform loads");
    let component = wasmtime::component::Component::from_file(&plugins.runtime.engine, &component.path).unwrap();
    let exports: Vec<String> = component.component_type().exports(&plugins.runtime.engine).map(|(name, _)| name.to_owned()).collect();
    assert!(exports.iter().any(|name| name == "wasm-connect:connector/record-transform@0.1.3"), "{exports:?}");
    let chain = build(&plugins, &[transform("old", "wasm", &[("plugin", "legacy-record-transform")])]).unwrap();
    let mut wasm = WasmTransforms::open(&chain, &plugins.runtime, "test", 0, None).unwrap();
    let text = |text: &str| Record { value: Some(text.as_bytes().to_vec()), ..record(json!(null)) };
    let output = chain.apply(vec![text("a"), text("drop"), text("fail"), text("b")], &mut wasm).unwrap();
    let kept: Vec<&[u8]> = output.records.iter().map(|record| record.value.as_deref().unwrap()).collect();
    assert_eq!((kept, output.failed.len()), (vec![b"a".as_slice(), b"b".as_slice()], 1));

    let refused = problems(&[
        transform("none", "wasm", &[]),
        transform("missing", "wasm", &[("plugin", "no-such-transform")]),
        transform("sink", "wasm", &[("plugin", "file-sink")]),
        transform("hostile", "wasm", &[("plugin", "../../etc/passwd")]),
        transform("geo", "wasm", &[("plugin", "geo-transform@0.1.0"), ("format", "geojson"), ("colour", "red")]),
    ]);
    assert!(refused["transforms.none.plugin"].contains("is required"), "{refused:?}");
    assert!(refused["transforms.missing.plugin"].contains("no plugin no-such-transform"), "{refused:?}");
    assert!(refused["transforms.sink.plugin"].contains("is a sink plugin"), "{refused:?}");
    assert!(refused["transforms.hostile.plugin"].contains("is not a plugin name"), "{refused:?}");
    assert!(refused["transforms.geo.colour"].contains("unknown"), "{refused:?}");
    assert_eq!(refused.len(), 5, "{refused:?}");
    let refused = problems(&[transform("geo", "wasm", &[("plugin", "geo-transform"), ("format", "geojson")])]);
    assert!(refused["transforms.geo.format"].contains("object, string, array or wkt"), "{refused:?}");
}

fn header(directory: &Path) -> String {
    format!(
        "version: 1\ndata_dir: {}\nadmin:\n  listen: 127.0.0.1:0\nplugins:\n  dir: {}\n  restart_backoff: 100ms\nconnectors:\n",
        directory.join("data").display(),
        support::test_plugins_dir().display()
    )
}

/// What the sink's chain below makes of a simulated flight: Jq marks the flights of
/// two aircraft, the scripted transform fails one and splits the other in two, the geo
/// transform adds the point.
fn expected(flight: &Value) -> Option<Vec<Value>> {
    let hex = flight["hex"].as_str().unwrap();
    let located = |mut value: Value| {
        value["location"] = json!({"lat": flight["lat"], "lon": flight["lng"]});
        value
    };
    if hex.ends_with('0') {
        return None;
    }
    if hex.ends_with('1') {
        return Some(
            (0..2)
                .map(|copy| {
                    let mut value = flight.clone();
                    value["copies"] = json!(2);
                    value["copy"] = json!(copy);
                    located(value)
                })
                .collect(),
        );
    }
    Some(vec![located(flight.clone())])
}

#[test]
fn a_pipeline_with_wasm_transforms_writes_what_they_made_and_dead_letters_what_they_failed() {
    const LIMIT: usize = 600;
    let directory = tempfile::tempdir().unwrap();
    let (output, letters) = (directory.path().join("output"), directory.path().join("letters"));
    let text = [
        header(directory.path()),
        format!(
            "  - name: flights-sim\n    plugin: flight-simulator\n    topic: flights\n    batch_size: 100\n    config: {{ seed: 5, rate: 0, \
             start: \"2024-05-01T00:00:00Z\", limit: {LIMIT} }}\n"
        ),
        format!("  - name: files\n    plugin: file-sink\n    topics: [flights]\n    config: {{ directory: {} }}\n", output.display()),
        "    transforms:\n".to_owned(),
        "      - { name: mark, type: Jq$Value, expression: 'if (.hex | endswith(\"0\")) then . + {do: \"fail\"} elif (.hex | \
         endswith(\"1\")) then . + {do: \"split\", copies: 2} else . end' }\n"
            .to_owned(),
        "      - { name: script, type: wasm, plugin: scripted-transform }\n".to_owned(),
        "      - { name: geo, type: wasm, plugin: geo-transform, format: object }\n".to_owned(),
        "    errors: { tolerance: all, dead_letter_topic: flights-letters }\n".to_owned(),
        format!(
            "  - name: letters\n    plugin: file-sink\n    topics: [flights-letters]\n    config: {{ directory: {} }}\n",
            letters.display()
        ),
    ]
    .concat();
    let flights = simulated_values("flight-simulator", "5", "2024-05-01T00:00:00Z", LIMIT);
    let mut kept: Vec<Value> = Vec::new();
    let mut failed: Vec<Value> = Vec::new();
    for flight in &flights {
        match expected(flight) {
            Some(values) => kept.extend(values),
            None => failed.push(flight.clone()),
        }
    }
    assert!(!failed.is_empty() && kept.len() > flights.len() - failed.len(), "the seed marks some flights of each kind");

    let host = Host::start(&write_config(directory.path(), &text));
    let count = |directory: &Path, topic: &str| read_sink_output(directory).get(topic).map_or(0, Vec::len);
    host.wait_until("every flight written or dead-lettered", Duration::from_secs(120), || {
        count(&output, "flights") >= kept.len() && count(&letters, "flights-letters") >= failed.len()
    });
    let metrics = host.get_text("/metrics");
    let calls = support::metric(
        &metrics,
        "wasm_connect_plugin_call_duration_seconds_count",
        &[("connector", "files"), ("plugin", "geo-transform"), ("call", "apply")],
    );
    assert!(calls >= 1.0, "the geo transform's calls are timed:\n{metrics}");
    host.stop();

    // In an order that does not depend on the order of fields.
    let sorted = |values: Vec<Value>| {
        let mut texts: Vec<String> = values.iter().map(|value| canonical(value).to_string()).collect();
        texts.sort();
        texts
    };
    let written = read_sink_output(&output);
    assert_eq!(sorted(written["flights"].iter().map(|line| line.value.clone()).collect()), sorted(kept));
    let dead = read_sink_output(&letters);
    let dead = &dead["flights-letters"];
    // As the source made them, before the chain.
    assert_eq!(sorted(dead.iter().map(|line| line.value.clone()).collect()), sorted(failed));
    for letter in dead {
        assert_eq!(letter.headers["__connect.errors.stage"], "TRANSFORMATION");
        assert_eq!(letter.headers["__connect.errors.class.name"], "scripted-transform@0.1.0");
        assert_eq!(
            letter.headers["__connect.errors.exception.message"],
            "the transform script (scripted-transform@0.1.0) failed the record: asked to fail"
        );
    }
}

#[test]
fn wasm_transforms_are_tried_over_http_before_they_run() {
    let directory = tempfile::tempdir().unwrap();
    let host = Host::start(&write_config(directory.path(), &header(directory.path()).replace("connectors:\n", "connectors: []\n")));
    let config = json!({
        "transforms": "script,geo",
        "transforms.script.type": "wasm",
        "transforms.script.plugin": "scripted-transform",
        "transforms.geo.type": "wasm",
        "transforms.geo.plugin": "geo-transform",
        "transforms.geo.format": "string",
    });
    let records = json!([
        {"value": {"lat": 1.5, "lng": 2, "do": "split", "copies": 2}},
        {"value": {"do": "fail"}},
        {"value": {"do": "trap"}},
        {"value": {"do": "tag"}},
    ]);
    let (status, answer) = host.call("POST", "/transforms/test", Some(&json!({"config": config, "records": records})));
    assert_eq!(status, 200, "{answer}");
    let split = &answer["records"][0];
    assert_eq!(split["output"]["value"], json!({"lat": 1.5, "lng": 2, "copies": 2, "copy": 0, "location": "1.5,2"}), "{answer}");
    assert_eq!(split["more"][0]["value"]["copy"], 1, "{answer}");
    assert_eq!(split["stages"][0]["more"].as_array().map(Vec::len), Some(1), "{answer}");
    assert_eq!(
        answer["records"][1]["error"],
        json!({"transform": "script", "type": "scripted-transform@0.1.0", "message": "asked to fail"})
    );
    // A sample that traps the plugin fails alone: the next one gets a new instance.
    let trapped = answer["records"][2]["error"]["message"].as_str().unwrap_or_else(|| panic!("{answer}"));
    assert!(trapped.contains("plugin trapped: the transform script"), "{trapped}");
    assert_eq!(answer["records"][3]["output"]["value"]["tagged"], "yes", "{answer}");

    // A connector with a WASM transform: its secret option reads back [hidden] and,
    // sent back unchanged, keeps its value.
    let connector = json!({
        "connector.class": "log-sink",
        "topics": "orders",
        "transforms": "script",
        "transforms.script.type": "wasm",
        "transforms.script.plugin": "scripted-transform",
        "transforms.script.salt": "s3cr3t-salt",
        "transforms.script.tag": "green",
    });
    assert_eq!(host.call("PUT", "/connectors/salty/config", Some(&connector)).0, 201);
    let (_, shown) = host.call("GET", "/connectors/salty/config", None);
    assert_eq!((shown["transforms.script.salt"].as_str(), shown["transforms.script.tag"].as_str()), (Some("[hidden]"), Some("green")));
    assert_eq!(host.call("PUT", "/connectors/salty/config", Some(&shown)).0, 200);
    let salted = json!({"records": [{"value": {"do": "salt"}}]});
    let (status, answer) = host.call("POST", "/connectors/salty/transforms/test", Some(&salted));
    assert_eq!((status, answer["records"][0]["output"]["value"]["salted"].as_u64()), (200, Some(11)), "{answer}");
    let (_, everything) = host.call("GET", "/connectors?expand=info", None);
    assert!(!everything.to_string().contains("s3cr3t-salt"), "{everything}");

    let old = json!({"transforms": "old", "transforms.old.type": "wasm", "transforms.old.plugin": "legacy-transform"});
    let (status, refused) = host.call("POST", "/transforms/test", Some(&json!({"config": old, "records": []})));
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("transforms.old.plugin"), "{refused}");
    host.stop();
}
